"""NONMEM-style datasets: one record per row, ``ID TIME DV AMT EVID CMT MDV RATE`` and
covariate columns.

NONMEM files carry no units and no variable names, so the reader is told them: which
dictionary entry each compartment number is (``compartments={1: "theophylline", 2:
"theophylline"}`` for a dose into the depot and concentrations in the central compartment, the
same name serving as drug and as observed variable), the UCUM unit of DV per observed
compartment and of AMT, and the time unit. Covariate columns hold values in the dictionary's
unit.

Record semantics follow NONMEM 7 (NONMEM Users Guide, Part V, "Data Preprocessor"):

| column | meaning here |
|---|---|
| ID | subject; a subject whose rows are not contiguous is refused (NONMEM would read two) |
| TIME | time in ``time_unit`` (clock times "08:30" are refused: give decimal times) |
| DV | observed value; "." is missing |
| AMT | dose amount in ``amount_unit`` |
| EVID | 0 observation, 1 dose, 2 other (skipped, warning), 3-4 resets refused; default 1 if AMT |
| MDV | 1 on an observation: excluded by the dataset (skipped, warning) |
| CMT | compartment number, looked up in ``compartments`` (required when several are mapped) |
| RATE | > 0: infusion lasting AMT / RATE; -1, -2 (modelled) refused |
| ADDL, II | ADDL additional doses every II after this one (expanded here) |
| SS | steady-state doses are refused (SS = 0 only) |

A row whose ID starts with ``#`` or ``@``, or whose ``C`` column is ``C`` (NONMEM's comment
conventions), is skipped with a warning.
"""

from __future__ import annotations

import csv
import math
from collections.abc import Mapping
from pathlib import Path

import pandas as pd

from ._dictionary import DataDictionary
from ._errors import CodeError, SchemaError, ValueDataError
from ._ingest import PatientData, Repairs, _number, ingest, screen_columns
from ._privacy import Pseudonymizer
from ._ucum import parse_ucum, ucum_code

REQUIRED = ("ID", "TIME", "DV")
OPTIONAL = ("AMT", "EVID", "CMT", "MDV", "RATE", "ADDL", "II", "SS", "C")


def _field(row: Mapping, column: str, position: str, default=math.nan) -> float:
    if column not in row:
        return default
    try:
        value = _number(row[column])
    except ValueError:
        raise ValueDataError(f"{position}: {column} is not a number "
                             f"(text of {len(str(row[column]).strip())} characters)") from None
    return default if math.isnan(value) else value


def _integer(row, column, position, default) -> int:
    value = _field(row, column, position, default)
    if isinstance(value, float) and (math.isnan(value) or not value.is_integer()):
        raise ValueDataError(f"{position}: {column} must be a whole number, got {value:g}")
    return int(value)


def _compartment(row, position, mapped: Mapping[int, str]) -> int:
    """CMT of a record; without one, the only compartment of its kind."""
    if str(row.get("CMT", "")).strip() not in ("", "."):
        return _integer(row, "CMT", position, math.nan)
    if len(mapped) == 1:
        return next(iter(mapped))
    raise SchemaError(f"{position}: no CMT, and {len(mapped)} compartments of this record's "
                      "kind are mapped; give CMT")


def read_nonmem(path: str | Path, dictionary: DataDictionary, pseudonyms: Pseudonymizer, *,
                compartments: Mapping[int, str], dv_units: Mapping[int, str] | str,
                amount_unit: str, time_unit: str = "h",
                reference: str = "first_record") -> PatientData:
    """Ingest a NONMEM-style CSV (see the module docstring for the column semantics).

    ``compartments`` maps CMT numbers to dictionary names (a dose, an observed variable, or
    both); ``dv_units`` is the UCUM unit of DV (one for all, or per observed compartment);
    ``amount_unit`` the UCUM unit of AMT; ``time_unit`` the UCUM unit of TIME.
    """
    path = Path(path)
    repairs = Repairs()
    for code in ([dv_units] if isinstance(dv_units, str) else list(dv_units.values())) + [
            amount_unit, time_unit]:
        parse_ucum(code)
    time_unit_pint = parse_ucum(time_unit).pint
    with open(path, newline="", encoding="utf-8") as handle:
        reader = csv.reader(handle)
        header = next(reader, None)
    if not header:
        raise SchemaError("NONMEM dataset: the file is empty")
    header = [h.strip() for h in header]
    missing = [c for c in REQUIRED if c not in header]
    if missing:
        raise SchemaError(f"NONMEM dataset: missing columns {missing} (it needs "
                          f"{list(REQUIRED)}; optional {list(OPTIONAL)})")
    covariate_columns = [c for c in header if c not in REQUIRED + OPTIONAL
                         and dictionary.knows("covariate", c)]
    kept = screen_columns(header, [*REQUIRED, *OPTIONAL, *covariate_columns], "NONMEM dataset",
                          repairs)
    frame = pd.read_csv(path, dtype=str, keep_default_na=False, skipinitialspace=True)
    frame.columns = [c.strip() for c in frame.columns]
    frame = frame[kept]
    if frame.empty:
        raise SchemaError("NONMEM dataset: no rows")
    observed = {cmt: name for cmt, name in compartments.items() if name in dictionary.observations}
    dosed = {cmt: name for cmt, name in compartments.items() if name in dictionary.doses}
    unknown = sorted(set(compartments.values()) - set(dictionary.observations)
                     - set(dictionary.doses))
    if unknown:
        raise CodeError(f"NONMEM compartments name {unknown}, which the data dictionary does not "
                        "declare as observations or doses")

    rows, finished, current = [], set(), None
    for number, row in enumerate(frame.to_dict("records"), start=2):
        position = f"NONMEM row {number}"
        subject = str(row["ID"]).strip()
        if subject.startswith(("#", "@")) or str(row.get("C", "")).strip() == "C":
            repairs.add("comment-row", position, "", "a comment row (NONMEM's # / @ / C) is "
                        "skipped")
            continue
        if subject != current:
            if subject in finished:
                raise SchemaError(f"{position}: a subject's rows are not contiguous (NONMEM "
                                  "would read them as two individuals); sort by ID first")
            if current is not None:
                finished.add(current)
            current = subject
        amount = _field(row, "AMT", position, 0.0)
        evid = _integer(row, "EVID", position, 1 if amount > 0 else 0)
        mdv = _integer(row, "MDV", position, 0 if evid == 0 else 1)
        if evid in (3, 4):
            raise SchemaError(f"{position}: EVID {evid} (a reset) is not supported")
        if evid == 2:
            repairs.add("other-event", position, "", "EVID 2 (other event) carries no "
                        "observation or dose; skipped")
            continue
        if evid not in (0, 1):
            raise CodeError(f"{position}: EVID must be 0, 1, 2, 3 or 4, got {evid}")
        if _integer(row, "SS", position, 0) != 0:
            raise SchemaError(f"{position}: steady-state dosing (SS != 0) is not supported")
        cmt = _compartment(row, position, observed if evid == 0 else dosed)
        base = {"position": position, "subject": subject, "time": row["TIME"],
                "route": "", "duration": ""}
        if evid == 0:
            if amount:
                raise SchemaError(f"{position}: an observation record (EVID 0) has AMT "
                                  f"{amount:g}")
            if mdv == 1:
                repairs.add("mdv", position, "", "MDV 1: the dataset excludes this observation; "
                            "skipped")
                continue
            if cmt not in observed:
                raise CodeError(f"{position}: observation compartment CMT {cmt} is not among "
                                f"the observed ones {sorted(observed)}")
            unit = dv_units if isinstance(dv_units, str) else dv_units.get(cmt)
            if unit is None:
                raise CodeError(f"{position}: no DV unit is given for CMT {cmt}")
            rows.append({**base, "kind": "observation", "code": observed[cmt],
                         "value": row["DV"], "unit": unit})
        else:
            if cmt not in dosed:
                raise CodeError(f"{position}: dose compartment CMT {cmt} is not among the dosed "
                                f"ones {sorted(dosed)}")
            rate = _field(row, "RATE", position, 0.0)
            if rate < 0:
                raise SchemaError(f"{position}: RATE {rate:g} (a modelled rate or duration) is "
                                  "not supported; give the infusion's rate")
            duration = amount / rate if rate > 0 else 0.0
            additional = _integer(row, "ADDL", position, 0)
            interval = _field(row, "II", position, 0.0)
            if additional < 0 or (additional > 0 and not interval > 0):
                raise ValueDataError(f"{position}: ADDL {additional} needs a positive II")
            start = _field(row, "TIME", position)
            for k in range(additional + 1):
                rows.append({**base, "kind": "dose", "code": dosed[cmt],
                             "time": row["TIME"] if k == 0 else start + k * interval,
                             "value": row.get("AMT", ""), "unit": amount_unit,
                             "route": "iv" if rate > 0 else "", "duration": duration})
        for column in covariate_columns:
            entry = dictionary.covariates[dictionary.lookup("covariate", column)]
            rows.append({**base, "kind": "covariate", "code": column, "value": row[column],
                         "unit": ucum_code(entry.unit) if entry.unit else ""})
    if not rows:
        raise SchemaError("NONMEM dataset: no observation or dose records")
    return ingest(pd.DataFrame(rows), dictionary, pseudonyms, source="NONMEM",
                  time_unit=time_unit_pint, reference=reference, repairs=repairs)
