"""Tidy long CSV: one row per measurement (``subject, time, variable, value, unit``), plus an
optional dosing table (``subject, time, drug, amount, unit`` and optionally ``route``,
``duration``).

Variables in the long table may be observations or covariates (a weight row with ``kg``);
columns named after a declared covariate carry it on every row instead. Times are numbers in
``time_unit`` or ISO 8601 date-times (then relative to each subject's first record). Every
other column is dropped with a warning; see ``vht.data.ingest`` for the checks that follow.
Cells are read as text, so that vht (not pandas) decides what a malformed number is.
"""

from __future__ import annotations

import csv
from pathlib import Path

import pandas as pd

from ._dictionary import DataDictionary
from ._errors import SchemaError
from ._ingest import PatientData, Repairs, ingest, screen_columns
from ._privacy import Pseudonymizer

OBSERVATION_COLUMNS = ("subject", "time", "variable", "value", "unit")
DOSE_COLUMNS = ("subject", "time", "drug", "amount", "unit")
DOSE_OPTIONAL = ("route", "duration")


def _read(path: Path, required, optional, dictionary, table, repairs,
          allow_empty: bool = False) -> pd.DataFrame:
    with open(path, newline="", encoding="utf-8") as handle:
        header = next(csv.reader(handle), None)
    if not header:
        raise SchemaError(f"{table}: the file is empty")
    header = [h.strip() for h in header]
    missing = [c for c in required if c not in header]
    if missing:
        raise SchemaError(f"{table}: missing columns {missing} (a tidy table has "
                          f"{list(required)})")
    covariate_columns = [c for c in header if c not in required and c not in optional
                         and dictionary.knows("covariate", c)]
    kept = screen_columns(header, [*required, *optional, *covariate_columns], table, repairs)
    frame = pd.read_csv(path, dtype=str, keep_default_na=False, usecols=lambda c: c.strip()
                        in kept, skipinitialspace=True)
    frame.columns = [c.strip() for c in frame.columns]
    if frame.empty and not allow_empty:
        raise SchemaError(f"{table}: no rows")
    return frame, covariate_columns


def read_tidy_csv(observations: str | Path, dictionary: DataDictionary,
                  pseudonyms: Pseudonymizer, doses: str | Path | None = None, *,
                  time_unit: str | None = None, reference: str = "first_record") -> PatientData:
    """Ingest a tidy long CSV of observations and an optional dosing CSV."""
    repairs = Repairs()
    frame, covariate_columns = _read(Path(observations), OBSERVATION_COLUMNS, (), dictionary,
                                     "observations", repairs)
    rows = []
    for number, row in enumerate(frame.itertuples(index=False), start=2):
        position = f"observation row {number}"
        kind = "covariate" if (dictionary.knows("covariate", row.variable)
                               and not dictionary.knows("observation", row.variable)) \
            else "observation"
        rows.append({"position": position, "subject": row.subject, "kind": kind,
                     "code": row.variable, "time": row.time, "value": row.value,
                     "unit": row.unit, "route": "", "duration": ""})
        for column in covariate_columns:
            entry = dictionary.covariates[dictionary.lookup("covariate", column)]
            rows.append({"position": position, "subject": row.subject, "kind": "covariate",
                         "code": column, "time": row.time, "value": getattr(row, column),
                         "unit": entry.unit and _ucum_of(entry.unit), "route": "",
                         "duration": ""})
    if doses is not None:
        dose_frame, dose_covariates = _read(Path(doses), DOSE_COLUMNS, DOSE_OPTIONAL,
                                            dictionary, "doses", repairs, allow_empty=True)
        if dose_covariates:
            raise SchemaError(f"doses: covariate columns {dose_covariates} belong in the "
                              "observations table")
        for number, row in enumerate(dose_frame.itertuples(index=False), start=2):
            rows.append({"position": f"dose row {number}", "subject": row.subject,
                         "kind": "dose", "code": row.drug, "time": row.time,
                         "value": row.amount, "unit": row.unit,
                         "route": getattr(row, "route", ""),
                         "duration": getattr(row, "duration", "")})
    return ingest(pd.DataFrame(rows), dictionary, pseudonyms, source="tidy CSV",
                  time_unit=time_unit, reference=reference, repairs=repairs)


def _ucum_of(pint_unit: str) -> str:
    # a covariate column carries its values in the dictionary's unit
    from ._ucum import ucum_code

    return ucum_code(pint_unit)
