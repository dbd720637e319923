"""From source rows to the records table: the checks and repairs every format shares.

Each reader (tidy CSV, NONMEM, FHIR, OMOP) turns its format into *source rows*, one per
observation, dose or covariate value, and hands them to ``ingest``:

| column | meaning |
|---|---|
| position | how messages name the row ("observation row 14", "Bundle entry 3"): never data |
| subject | the raw subject identifier (replaced by its pseudonym first of all) |
| kind | "observation", "dose" or "covariate" |
| code | source name or code of the variable, drug or covariate |
| time | a number in the source's time unit, or a date-time (ISO 8601 text or Timestamp) |
| value | the value as the source has it (text or number); the amount for a dose |
| unit | its UCUM code |
| route | a dose's route as the source spells it ("" for the dictionary's default) |
| duration | an infusion's duration in the source's time unit (0 or NaN: bolus or oral) |

What ingestion refuses (``DataError`` subclasses) and what it repairs (a logged warning, kept
in ``PatientData.repairs``) is the policy of ``docs/content/howto/patient_data.md``:

| problem | outcome |
|---|---|
| unknown code, route or sex | ``CodeError`` |
| unknown, ambiguous or wrong-dimension unit | ``UnitError`` |
| text in a numeric field, inf | ``ValueDataError`` |
| a value outside its valid range (negative, impossible, swapped units) | ``ValueDataError`` |
| a missing observed value (empty cell, NaN) | row dropped, warning |
| missing time, numbers mixed with dates | ``TimeError`` |
| the same time with two different values | ``TimeError`` |
| rows out of time order | sorted, warning |
| an exact duplicate row | dropped, warning |
| a dose after the subject's last observation | dropped, warning |
| a subject without observations | dropped, warning |
| a covariate that changes within a subject | first value in time kept, warning |
| a declared covariate missing for a subject | NaN, warning |
| undeclared or identifying columns (readers) | dropped, warning (column name only) |

Calendar times become times since each subject's first dose or observation (or first dose,
``reference="first_dose"``), so no date leaves ingestion; a birth date becomes the ``age``
covariate at that reference and is then discarded.
"""

from __future__ import annotations

import dataclasses
import logging
import math
import re
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pandas as pd

from .._units import conversion_factor
from ._dictionary import ROUTES, SEXES, DataDictionary
from ._errors import CodeError, DataError, SchemaError, TimeError, UnitError, ValueDataError
from ._privacy import Pseudonymizer, private_umask
from ._ucum import convert, parse_ucum

logger = logging.getLogger("vht.data")

RECORD_COLUMNS = ("subject", "time", "variable", "value", "unit", "dose_amount", "route",
                  "duration")
"""The columns of the records table calibration reads (see ``calibration._records``)."""

SOURCE_COLUMNS = ("position", "subject", "kind", "code", "time", "value", "unit", "route",
                  "duration")
KINDS = ("observation", "dose", "covariate")
BIRTH_DATE = "birth_date"

# how sources spell routes: FHIR and OMOP use SNOMED CT codes, NONMEM implies them
_ROUTE_SPELLINGS = {
    "oral": "oral", "po": "oral", "by mouth": "oral", "26643006": "oral", "4132161": "oral",
    "iv": "iv", "intravenous": "iv", "47625008": "iv", "4171047": "iv",
    "infusion": "infusion", "iv infusion": "infusion",
    "meal": "meal", "subcutaneous": "subcutaneous", "sc": "subcutaneous",
    "34206005": "subcutaneous", "4142048": "subcutaneous",
}
_SEX_SPELLINGS = {"female": "female", "f": "female", "8532": "female",
                  "male": "male", "m": "male", "8507": "male",
                  "other": "other", "unknown": "unknown", "8551": "unknown"}
# units tried when a value falls outside its valid range, to name a likely unit swap
_SWAP_CANDIDATES = ("mg/dL", "mmol/L", "mg/L", "ug/mL", "ng/mL", "umol/L", "g/L", "g/dL",
                    "kg", "[lb_av]", "g", "cm", "[in_i]", "m", "mm[Hg]", "kPa", "Cel", "[degF]",
                    "/min", "/s", "/h", "mg", "ug", "h", "min", "d")


@dataclasses.dataclass(frozen=True)
class Repair:
    """A change ingestion made to the data under its policy, and why."""

    rule: str
    position: str
    subject: str
    message: str

    def __str__(self) -> str:
        subject = f" (subject {self.subject})" if self.subject else ""
        return f"{self.position}{subject}: {self.message}"


class Repairs(list):
    """Repairs in the order made; each is also logged as a warning on ``vht.data``."""

    def add(self, rule: str, position: str, subject: str, message: str) -> None:
        repair = Repair(rule, position, subject, message)
        self.append(repair)
        logger.warning("%s [%s]", repair, rule)


@dataclasses.dataclass
class PatientData:
    """Ingested patient data: the records table calibration reads (pseudonymous subjects,
    times in ``time_unit`` since each subject's reference, values in model units, one column
    per covariate), the covariates per subject, and what ingestion repaired."""

    records: pd.DataFrame
    covariates: pd.DataFrame
    time_unit: str
    source: str
    repairs: list[Repair]

    @property
    def subjects(self) -> list[str]:
        return list(self.covariates.index)

    def to_hdf5(self, path: str | Path) -> Path:
        """Write the records and covariates to an HDF5 file readable by its owner only. The
        file holds pseudonyms and relative times only; its attributes say the source format,
        time unit and vht version."""
        import h5py

        from .. import __version__

        path = Path(path)
        with private_umask(), h5py.File(path, "w") as handle:
            handle.attrs["vht_version"] = __version__
            handle.attrs["source"] = self.source
            handle.attrs["time_unit"] = self.time_unit
            handle.attrs["n_subjects"] = len(self.covariates)
            for name, table in (("records", self.records),
                                ("covariates", self.covariates.reset_index())):
                group = handle.create_group(name)
                group.attrs["columns"] = list(table.columns)
                for column in table.columns:
                    values = table[column].to_numpy()
                    if values.dtype.kind in "fiub":
                        group.create_dataset(column, data=values.astype(float))
                    else:
                        group.create_dataset(column, data=values.astype(str).astype(object),
                                             dtype=h5py.string_dtype())
            handle.create_dataset("repairs", data=np.array([str(r) for r in self.repairs],
                                                           dtype=object),
                                  dtype=h5py.string_dtype())
        return path

    @classmethod
    def from_hdf5(cls, path: str | Path) -> PatientData:
        import h5py

        tables = {}
        with h5py.File(path, "r") as handle:
            for name in ("records", "covariates"):
                group = handle[name]
                tables[name] = pd.DataFrame({
                    column: (group[column].asstr()[()] if group[column].dtype.kind == "O"
                             else group[column][()])
                    for column in group.attrs["columns"]})
            repairs = [Repair("stored", "", "", text) for text in handle["repairs"].asstr()[()]]
            attrs = dict(handle.attrs)
        records = tables["records"]
        for column in ("variable", "unit", "route"):
            records[column] = records[column].replace("nan", "")
        return cls(records, tables["covariates"].set_index("subject"), str(attrs["time_unit"]),
                   str(attrs["source"]), repairs)


def _number(value) -> float:
    """A source value as a float: NaN for an empty cell; raises ValueError for text."""
    if value is None:
        return math.nan
    if isinstance(value, (int, float, np.integer, np.floating)) and not isinstance(value, bool):
        return float(value)
    text = str(value).strip()
    if not text or text.lower() in ("nan", "na", "."):
        return math.nan
    return float(text)  # raises ValueError on text such as "<0.1" or a name


def _text_note(value) -> str:
    # what a message may say about an unparseable cell: its length, never its content
    return f"text of {len(str(value).strip())} characters"


def ingest(rows: pd.DataFrame, dictionary: DataDictionary, pseudonyms: Pseudonymizer, *,
           source: str, time_unit: str | None = None, reference: str = "first_record",
           repairs: Sequence[Repair] = ()) -> PatientData:
    """Check, convert and pseudonymise source rows into ``PatientData`` (see the module's
    policy table). ``time_unit`` is the unit of numeric source times (default: the
    dictionary's); ``reference`` is ``"first_record"`` or ``"first_dose"``."""
    missing = [c for c in SOURCE_COLUMNS if c not in rows.columns]
    if missing:
        raise SchemaError(f"source rows lack columns {missing}")
    if reference not in ("first_record", "first_dose"):
        raise ValueError(f"reference must be 'first_record' or 'first_dose', got {reference!r}")
    log = Repairs(repairs)
    if rows.empty:
        raise SchemaError(f"{source}: no records")
    source_time_unit = time_unit or dictionary.time_unit
    rows = rows.reset_index(drop=True)

    subjects = []
    for position, raw in zip(rows["position"], rows["subject"]):
        if raw is None or (isinstance(raw, float) and math.isnan(raw)) or not str(raw).strip():
            raise SchemaError(f"{position}: no subject identifier")
        subjects.append(pseudonyms(raw))
    rows = rows.assign(subject=subjects)
    bad_kinds = sorted(set(rows["kind"]) - set(KINDS))
    if bad_kinds:
        raise SchemaError(f"{source}: row kinds {bad_kinds} are not among {KINDS}")

    hours = _relative_hours(rows, source_time_unit, reference)
    time_factor = conversion_factor("h", dictionary.time_unit)
    rows = rows.assign(hours=hours)
    observations, doses = [], []
    covariates: dict[str, dict[str, list]] = {}

    for order, row in enumerate(rows.itertuples(index=False)):
        where = f"{row.position} (subject {row.subject})"
        if row.kind == "covariate":
            _covariate(row, where, dictionary, covariates, log)
            continue
        if row.kind == "observation":
            name = _lookup(dictionary, "observation", row.code, where)
            entry = dictionary.observations[name]
            converted = _measured(row, where, name, entry.unit, entry.molar_mass,
                                  entry.valid_range)
            if converted is None:
                log.add("missing-value", row.position, row.subject,
                        f"{name} has no value; the row is dropped")
                continue
            observations.append({"order": order, "position": row.position,
                                 "subject": row.subject, "time": row.hours * time_factor,
                                 "variable": entry.variable, "value": converted,
                                 "unit": entry.unit, "name": name})
        else:
            name = _lookup(dictionary, "dose", row.code, where)
            entry = dictionary.doses[name]
            try:
                amount = _number(row.value)
            except ValueError:
                raise ValueDataError(f"{where}: the amount of {name} is not a number "
                                     f"({_text_note(row.value)})") from None
            if not math.isfinite(amount):
                raise ValueDataError(f"{where}: the amount of {name} is {amount}; a dose needs "
                                     "a finite amount")
            if amount < 0:
                raise ValueDataError(f"{where}: the amount of {name} is negative ({amount:g})")
            amount = _convert(amount, row.unit, entry.unit, entry.molar_mass, where, name)
            try:
                duration = _number(row.duration)
            except ValueError:
                raise ValueDataError(f"{where}: the duration of {name} is not a number") from None
            duration = 0.0 if math.isnan(duration) else duration
            if duration < 0 or not math.isfinite(duration):
                raise ValueDataError(f"{where}: the duration of {name} is {duration:g}")
            route = _route(row.route, entry.route, where)
            if duration > 0 and route == "iv":
                route = "infusion"
            if route == "infusion" and duration <= 0:
                raise ValueDataError(f"{where}: an infusion of {name} needs a positive duration")
            if route == "oral" and duration > 0:
                raise ValueDataError(f"{where}: an oral dose of {name} has a duration; "
                                     "only infusions last")
            duration_hours = duration * conversion_factor(source_time_unit, "h")
            doses.append({"order": order, "position": row.position, "subject": row.subject,
                          "time": row.hours * time_factor, "dose_amount": amount,
                          "unit": entry.unit, "route": route,
                          "duration": duration_hours * time_factor, "name": name})

    observations = _tidy(pd.DataFrame(observations), "value", log)
    doses = _tidy(pd.DataFrame(doses), "dose_amount", log)
    observations, doses = _drop_unusable(observations, doses, log)
    covariate_table = _covariate_table(covariates, dictionary, observations, rows, log)
    records = _records(observations, doses, covariate_table)
    return PatientData(records, covariate_table, dictionary.time_unit, source, list(log))


def _measured(row, where, name, unit, molar_mass, valid_range) -> float | None:
    """A measured value in its model unit, checked: None when it is missing; raises on text,
    inf, an impossible unit or a value outside ``valid_range`` (naming a likely unit swap)."""
    try:
        value = _number(row.value)
    except ValueError:
        raise ValueDataError(f"{where}: {name} is not a number "
                             f"({_text_note(row.value)})") from None
    if math.isnan(value):
        return None
    if not math.isfinite(value):
        raise ValueDataError(f"{where}: {name} is {value}, not a finite number")
    converted = _convert(value, row.unit, unit, molar_mass, where, name)
    lower, upper = valid_range
    if not lower <= converted <= upper:
        raise ValueDataError(
            f"{where}: {name} = {value:g} {row.unit} lies outside its valid range "
            f"[{lower:g}, {upper:g}] {unit}"
            f"{_swap_hint(value, row.unit, unit, molar_mass, lower, upper)}")
    return converted


def _lookup(dictionary, kind, code, where) -> str:
    try:
        return dictionary.lookup(kind, code)
    except CodeError:
        declared = {"observation": dictionary.observations, "dose": dictionary.doses,
                    "covariate": dictionary.covariates}[kind]
        raise CodeError(f"{where}: the {kind} code ({_text_note(code)}) is not in the data "
                        f"dictionary, which declares {sorted(declared)}") from None


def _convert(value, unit, to_unit, molar_mass, where, name) -> float:
    unit = "" if unit is None or (isinstance(unit, float) and math.isnan(unit)) else str(unit)
    if not unit.strip():
        if _dimensionless(to_unit):
            return float(value)
        raise UnitError(f"{where}: {name} has no unit (its model unit is {to_unit})")
    try:
        return float(convert(value, unit, to_unit, molar_mass))
    except UnitError as error:
        raise UnitError(f"{where}: the unit of {name} {error.redacted}") from None


def _dimensionless(unit: str) -> bool:
    try:
        conversion_factor(unit, "dimensionless")
    except ValueError:
        return False
    return True


def _swap_hint(value, unit, model_unit, molar_mass, lower, upper) -> str:
    likely = []
    for candidate in _SWAP_CANDIDATES:
        if candidate == unit:
            continue
        try:
            converted = float(convert(value, candidate, model_unit, molar_mass))
        except (UnitError, ValueError):
            continue
        if lower <= converted <= upper:
            likely.append(candidate)
    if not likely:
        return ""
    return f"; it would lie inside if its unit were {' or '.join(likely[:3])} (a unit swap?)"


def _route(raw, default, where) -> str:
    text = "" if raw is None or (isinstance(raw, float) and math.isnan(raw)) else str(raw)
    text = text.strip().lower()
    if not text:
        return default
    if text not in _ROUTE_SPELLINGS:
        raise CodeError(f"{where}: the route ({_text_note(raw)}) is not one vht knows "
                        f"({ROUTES}, or the SNOMED CT codes 26643006 oral, 47625008 "
                        "intravenous and 34206005 subcutaneous)")
    return _ROUTE_SPELLINGS[text]


def _relative_hours(rows: pd.DataFrame, time_unit: str, reference: str) -> np.ndarray:
    """Each row's time in hours since its subject's reference (calendar times) or as given
    (numeric times, converted from ``time_unit``)."""
    timed = rows["kind"] != "covariate"
    times = rows["time"]
    numeric = np.full(len(rows), np.nan)
    calendar = pd.Series(pd.NaT, index=rows.index, dtype="datetime64[ns, UTC]")
    kinds = set()
    for index, (position, value, is_timed) in enumerate(zip(rows["position"], times, timed)):
        if value is None or (isinstance(value, float) and math.isnan(value)) or (
                isinstance(value, str) and not value.strip()) or value is pd.NaT:
            if is_timed:
                raise TimeError(f"{position}: no time")
            continue
        try:
            numeric[index] = _number(value)
            kinds.add("numeric")
            continue
        except (ValueError, TypeError):
            pass
        calendar.iloc[index] = _timestamp(value, position)
        kinds.add("calendar")
    if kinds == {"numeric", "calendar"}:
        raise TimeError("times mix numbers and calendar dates; give one kind for all rows")
    if kinds == {"numeric"}:
        hours = numeric * conversion_factor(time_unit, "h")
        bad = timed.to_numpy() & ~np.isfinite(hours)
        if bad.any():
            raise TimeError(f"{rows['position'].iloc[int(np.argmax(bad))]}: the time is not "
                            "finite")
        return hours
    # calendar: hours since each subject's reference
    out = np.full(len(rows), np.nan)
    for subject, group in rows[timed].groupby("subject", sort=False):
        stamps = calendar.loc[group.index]
        if reference == "first_dose" and (group["kind"] == "dose").any():
            origin = stamps[group["kind"] == "dose"].min()
        else:
            origin = stamps.min()
        every = rows.index[rows["subject"] == subject]
        out[every] = ((calendar.loc[every] - origin).dt.total_seconds() / 3600.0).to_numpy()
    rows.attrs["reference"] = {
        subject: (calendar.loc[group.index].min() if reference == "first_record"
                  or not (group["kind"] == "dose").any()
                  else calendar.loc[group.index][group["kind"] == "dose"].min())
        for subject, group in rows[timed].groupby("subject", sort=False)}
    return out


_ISO_8601 = re.compile(r"^\d{4}-\d{2}-\d{2}([T ]\d{2}:\d{2}(:\d{2}(\.\d+)?)?"
                       r"(Z|[+-]\d{2}:?\d{2})?)?$")


def _timestamp(value, position) -> pd.Timestamp:
    """A calendar time in UTC (times without an offset are taken as UTC)."""
    if isinstance(value, pd.Timestamp):
        stamp = value
    elif isinstance(value, str) and _ISO_8601.match(value.strip()):
        stamp = pd.Timestamp(value.strip())
    else:
        raise TimeError(f"{position}: the time is neither a number nor an ISO 8601 date-time "
                        f"({_text_note(value)})")
    return stamp.tz_localize("UTC") if stamp.tzinfo is None else stamp.tz_convert("UTC")


def _tidy(table: pd.DataFrame, value_column: str, log: Repairs) -> pd.DataFrame:
    """Sort each subject's rows by time (warning when the source was not) and resolve rows of
    the same variable at the same time: exact duplicates go, conflicts raise."""
    if table.empty:
        return table
    for subject, group in table.groupby("subject", sort=False):
        for name, series in group.groupby("name", sort=False):
            if not series["time"].is_monotonic_increasing:
                first = series.index[np.argmax(np.diff(series["time"].to_numpy()) < 0) + 1]
                log.add("unsorted", table.at[first, "position"], subject,
                        f"{name} times are out of order; the rows are sorted by time")
    # subjects stay in the order the source gives them (not their pseudonyms' order), so that
    # a study's results do not depend on the pseudonym key
    table = table.assign(_first=table.groupby("subject")["order"].transform("min"))
    table = table.sort_values(["_first", "name", "time", "order"], kind="stable")
    table = table.drop(columns="_first")
    keep = np.ones(len(table), dtype=bool)
    previous = None
    for i, row in enumerate(table.itertuples(index=False)):
        key = (row.subject, row.name, row.time)
        if previous is not None and key == previous[0]:
            same = getattr(row, value_column) == previous[1]
            if value_column == "dose_amount":
                same = same and (row.route, row.duration) == previous[2]
            if not same:
                raise TimeError(f"{row.position} (subject {row.subject}): {row.name} at time "
                                f"{row.time:g} is given twice with different values "
                                f"({previous[1]:g} and {getattr(row, value_column):g})")
            keep[i] = False
            log.add("duplicate", row.position, row.subject,
                    f"{row.name} at time {row.time:g} repeats an earlier row exactly; dropped")
            continue
        previous = (key, getattr(row, value_column),
                    (row.route, row.duration) if value_column == "dose_amount" else None)
    return table[keep]


def _drop_unusable(observations, doses, log: Repairs):
    if observations.empty:
        raise DataError("no observations are left to calibrate on")
    last = observations.groupby("subject")["time"].max()
    if not doses.empty:
        late = doses["time"].to_numpy() > doses["subject"].map(last).fillna(-np.inf).to_numpy()
        for row in doses[late].itertuples(index=False):
            if row.subject in last.index:
                log.add("dose-after-record", row.position, row.subject,
                        f"{row.name} at time {row.time:g} follows the last observation "
                        f"({last[row.subject]:g}); it cannot affect the record and is dropped")
            else:
                log.add("no-observations", row.position, row.subject,
                        f"{row.name} is given to a subject without observations; dropped")
        doses = doses[~late]
    return observations, doses


def _covariate(row, where, dictionary, covariates, log) -> None:
    if str(row.code) == BIRTH_DATE:
        covariates.setdefault(row.subject, {}).setdefault(BIRTH_DATE, []).append(
            (row.position, row.value))
        return
    name = _lookup(dictionary, "covariate", row.code, where)
    entry = dictionary.covariates[name]
    if name == "sex" or not entry.unit:
        text = str(row.value).strip().lower()
        if text in ("", "nan", "none"):
            log.add("missing-covariate", row.position, row.subject, f"{name} is empty; ignored")
            return
        if name == "sex":
            if text not in _SEX_SPELLINGS:
                raise CodeError(f"{where}: sex code is not one of {SEXES} (or OMOP's 8507, "
                                "8532, 8551)")
            text = _SEX_SPELLINGS[text]
        value = text
    else:
        value = _measured(row, where, name, entry.unit, None, entry.valid_range)
        if value is None:
            log.add("missing-covariate", row.position, row.subject, f"{name} is empty; ignored")
            return
    covariates.setdefault(row.subject, {}).setdefault(name, []).append(
        (row.position, value, row.hours))


def _covariate_table(covariates, dictionary, observations, rows, log) -> pd.DataFrame:
    subjects = list(dict.fromkeys(observations["subject"]))
    references = rows.attrs.get("reference", {})
    table = {}
    for subject in subjects:
        values = covariates.get(subject, {})
        out = {}
        for name, entry in dictionary.covariates.items():
            given = values.get(name, [])
            if name == "age" and not given and BIRTH_DATE in values:
                given = [_age(values[BIRTH_DATE], references.get(subject), entry.unit, subject)]
            if not given:
                log.add("missing-covariate", "covariates", subject,
                        f"no {name} is given; set to NaN")
                out[name] = math.nan if entry.unit else ""
                continue
            given = sorted(given, key=lambda item: (item[2] if len(item) > 2 and item[2] is not
                                                    None and not math.isnan(item[2])
                                                    else -math.inf))
            first = given[0][1]
            if any(v[1] != first for v in given[1:]):
                log.add("varying-covariate", given[0][0], subject,
                        f"{name} changes within the subject; its first value ({first}) is kept")
            out[name] = first
        table[subject] = out
    frame = pd.DataFrame.from_dict(table, orient="index",
                                   columns=list(dictionary.covariates) or None)
    frame.index.name = "subject"
    return frame


def _age(birth_dates, reference, unit, subject):
    position, value = birth_dates[0]
    if reference is None:
        raise TimeError(f"{position} (subject {subject}): an age needs calendar times to "
                        "measure from the birth date")
    try:
        born = _timestamp(str(value), position)
    except (TimeError, ValueError):
        raise ValueDataError(f"{position} (subject {subject}): the birth date is not an ISO "
                             "8601 date") from None
    years = (reference - born).total_seconds() / (365.25 * 86400.0)
    if years < 0:
        raise ValueDataError(f"{position} (subject {subject}): the birth date follows the "
                             "first record")
    return (position, years * conversion_factor("year", unit), None)


def _records(observations, doses, covariates) -> pd.DataFrame:
    observation_rows = pd.DataFrame({
        "subject": observations["subject"], "time": observations["time"],
        "variable": observations["variable"], "value": observations["value"],
        "unit": observations["unit"], "dose_amount": np.nan, "route": "", "duration": 0.0})
    frames = [observation_rows]
    if not doses.empty:
        frames.append(pd.DataFrame({
            "subject": doses["subject"], "time": doses["time"], "variable": "",
            "value": np.nan, "unit": doses["unit"], "dose_amount": doses["dose_amount"],
            "route": doses["route"], "duration": doses["duration"]}))
    records = pd.concat(frames, ignore_index=True)
    records["_is_dose"] = ~records["dose_amount"].isna()
    order = {s: i for i, s in enumerate(covariates.index)}
    records["_subject_order"] = records["subject"].map(order)
    records = records.sort_values(["_subject_order", "time", "_is_dose"],
                                  ascending=[True, True, False], kind="stable")
    records = records.drop(columns=["_is_dose", "_subject_order"]).reset_index(drop=True)
    for name in covariates.columns:
        records[name] = records["subject"].map(covariates[name])
    return records


_IDENTIFYING_WORDS = ("name", "mrn", "birth", "dob", "phone", "email", "address", "street",
                      "ssn", "zip", "postcode", "postal", "insurance", "passport", "nhs",
                      "recordnumber", "socialsecurity")


def is_identifying(column: str) -> bool:
    """Whether a column's name says it holds a direct identifier (a name, record number,
    birth date, contact detail)."""
    squeezed = re.sub(r"[^a-z0-9]", "", str(column).lower())
    return any(word in squeezed for word in _IDENTIFYING_WORDS)


def screen_columns(columns: Sequence[str], keep: Sequence[str], table: str,
                   repairs: Repairs) -> list[str]:
    """The columns a reader keeps: ``keep`` (required, optional and declared ones); every
    other column is dropped with a warning that names the column, never its values."""
    seen, kept = set(), []
    for column in columns:
        if column in seen:
            raise SchemaError(f"{table}: column {column!r} appears twice")
        seen.add(column)
        if column in keep:
            kept.append(column)
        elif is_identifying(column):
            repairs.add("identifying-column", table, "",
                        f"column {column!r} looks identifying and is not declared; dropped "
                        "unread")
        else:
            repairs.add("undeclared-column", table, "",
                        f"column {column!r} is not declared in the data dictionary; dropped")
    return kept


def unit_of(code: str) -> str:
    """The pint unit a UCUM code stands for (for documentation and tables)."""
    return parse_ucum(code).pint
