"""Patient records: the one table calibration reads (and patient-data ingestion writes).

One row per observation or dose, columns:

| column | type | meaning |
|---|---|---|
| subject | str | patient identifier (pseudonymous) |
| time | float | time of the observation or dose, in the table's time unit |
| variable | str | observed signal or state, ``"organ.name"`` (empty for a dose) |
| value | float | observed value (NaN for a dose) |
| unit | str | unit of ``value``, or of ``dose_amount`` on a dose row |
| dose_amount | float | amount given (NaN for an observation) |
| route | str | ``oral``, ``iv`` (bolus), ``infusion``, ``meal`` or ``subcutaneous`` (doses) |
| duration | float | infusion duration in the table's time unit (0 for a bolus or oral dose) |

Ingestion may add columns (covariates, flags); it may not rename these. A row is a dose when
``dose_amount`` is set and an observation when ``value`` is. ``validate_records`` checks the
columns, types, units and ordering and raises ``ValueError`` naming the row.
"""

from __future__ import annotations

import math
from collections.abc import Mapping

import equinox as eqx
import numpy as np
import pandas as pd

import vht
from vht.data._dictionary import ROUTES  # one list of routes for ingestion and calibration

COLUMNS = ("subject", "time", "variable", "value", "unit", "dose_amount", "route", "duration")


def validate_records(records: pd.DataFrame) -> pd.DataFrame:
    """Check a records table and return it sorted by subject and time (doses first at a tie)."""
    missing = [c for c in COLUMNS if c not in records.columns]
    if missing:
        raise ValueError(f"records lack columns {missing}; the table needs {list(COLUMNS)}")
    table = records.copy()
    table["subject"] = table["subject"].astype(str)
    for column in ("time", "value", "dose_amount", "duration"):
        try:
            table[column] = pd.to_numeric(table[column])
        except (TypeError, ValueError) as error:
            raise ValueError(f"records column {column!r} must be numeric: {error}") from None
    for column in ("variable", "unit", "route"):
        table[column] = table[column].fillna("").astype(str)
    table["duration"] = table["duration"].fillna(0.0)
    for index, row in table.iterrows():
        where = f"records row {index} (subject {row.subject}, time {row.time})"
        is_dose, is_observation = not math.isnan(row.dose_amount), not math.isnan(row.value)
        if is_dose == is_observation:
            raise ValueError(f"{where}: set exactly one of value (observation) and dose_amount "
                             "(dose)")
        if not math.isfinite(row.time):
            raise ValueError(f"{where}: time must be finite")
        if is_observation:
            if not row.variable:
                raise ValueError(f"{where}: an observation needs its variable ('organ.name')")
            if not math.isfinite(row.value):
                raise ValueError(f"{where}: observed value must be finite, got {row.value}")
        else:
            if row.route not in ROUTES:
                raise ValueError(f"{where}: route must be one of {ROUTES}, got {row.route!r}")
            if not row.dose_amount >= 0:
                raise ValueError(f"{where}: dose amount must be >= 0, got {row.dose_amount}")
            if row.route == "infusion" and not row.duration > 0:
                raise ValueError(f"{where}: an infusion needs a positive duration")
        try:
            vht.unit_registry.Unit(row.unit if row.unit else "dimensionless")
        except Exception:
            raise ValueError(f"{where}: unknown unit {row.unit!r}") from None
    table["_is_dose"] = ~table["dose_amount"].isna()
    table = table.sort_values(["subject", "time", "_is_dose"], ascending=[True, True, False],
                              kind="stable").drop(columns="_is_dose")
    return table.reset_index(drop=True)


class SubjectData(eqx.Module):
    """One subject's records as padded arrays (``mask`` marks real observations and doses).

    Observation ``variable_index`` indexes ``Problem.observed``; dose ``route_index`` indexes
    ``ROUTES``. Times are in framework minutes; values in the observed variable's model unit;
    dose amounts in the target state's unit (converted by the problem).
    """

    subject: str = eqx.field(static=True)
    times: np.ndarray
    values: np.ndarray
    variable_index: np.ndarray
    mask: np.ndarray
    dose_times: np.ndarray
    dose_amounts: np.ndarray
    dose_durations: np.ndarray
    route_index: np.ndarray
    parameters: np.ndarray  # known subject parameters (``Problem.subject_parameters``)
    # (first, last) time of the records in minutes, with 0 included: the solve's span where it
    # must be concrete (a clocked twin); stacked subjects share the widest
    span: tuple[float, float] = eqx.field(static=True, default=(0.0, 0.0))


def stack_subjects(subjects: list[SubjectData]) -> SubjectData:
    """Subjects of equal padding stacked along a leading axis (for ``jax.vmap``); the stacked
    record's ``subject`` is empty (keep the ids in order beside it)."""
    return _stack([{f: getattr(s, f) for f in (*_ARRAY_FIELDS, "span")} for s in subjects])


_ARRAY_FIELDS = ("times", "values", "variable_index", "mask", "dose_times", "dose_amounts",
                 "dose_durations", "route_index", "parameters")


def _stack(fields: list[dict]) -> SubjectData:
    """``stack_subjects`` of subjects given as their fields (``_subject_arrays``): building a
    ``SubjectData`` per subject first costs 0.1 ms each, a tenth of a 1,000-subject fit."""
    shapes = {(f["times"].shape, f["dose_times"].shape) for f in fields}
    if len(shapes) != 1:
        raise ValueError("subjects must share their padding to be stacked: read them with the "
                         "same n_observations and n_doses")
    span = (min(f["span"][0] for f in fields), max(f["span"][1] for f in fields))
    return SubjectData("", *(np.stack([f[name] for f in fields]) for name in _ARRAY_FIELDS),
                       span=span)


def read_subjects(records: pd.DataFrame, subjects: list[str], observed: Mapping[str, str],
                  dose_units: Mapping[str, str], minutes_per_time_unit: float,
                  parameters: tuple[str, ...] = ()) -> SubjectData:
    """Several subjects, padded to a common size and stacked."""
    # numpy columns of the whole table, split by subject once: filtering the table per subject
    # is quadratic, and pandas' per-call overhead on a subject's few rows is most of the cost
    # (4 s for 1,000 subjects before)
    columns = _columns(records, parameters)
    ids = records["subject"].astype(str).to_numpy()
    order = np.argsort(ids, kind="stable")
    cuts = np.flatnonzero(ids[order][1:] != ids[order][:-1]) + 1
    rows_of = {ids[k[0]]: k for k in np.split(order, cuts)} if len(ids) else {}
    own = [{c: v[rows_of.get(str(s), np.zeros(0, int))] for c, v in columns.items()}
           for s in subjects]
    n_observations = max(int(np.sum(~c["no_value"])) for c in own)
    n_doses = max(int(np.sum(~c["no_dose"])) for c in own)
    return _stack([_subject_arrays(c, s, observed, dose_units, minutes_per_time_unit,
                                   n_observations, n_doses, parameters)
                   for c, s in zip(own, subjects)])


def _columns(records: pd.DataFrame, parameters: tuple[str, ...]) -> dict[str, np.ndarray]:
    """The records columns one subject's arrays are made of, as numpy arrays."""
    for name in parameters:
        if name not in records.columns:
            raise ValueError(f"the records have no column {name!r} for the subject parameter "
                             f"{name}")
    columns = {c: records[c].to_numpy() for c in ("variable", "value", "unit", "dose_amount",
                                                  "route", *parameters)}
    columns |= {c: records[c].to_numpy(dtype=float) for c in ("time", "duration")}
    columns["no_value"] = records["value"].isna().to_numpy()
    columns["no_dose"] = records["dose_amount"].isna().to_numpy()
    return columns


def subject_ids(records: pd.DataFrame) -> list[str]:
    return list(dict.fromkeys(records["subject"].astype(str)))


def read_subject(records: pd.DataFrame, subject: str, observed: Mapping[str, str],
                 dose_units: Mapping[str, str], minutes_per_time_unit: float,
                 n_observations: int | None = None, n_doses: int | None = None,
                 parameters: tuple[str, ...] = ()) -> SubjectData:
    """Arrays of one subject, padded to ``n_observations`` and ``n_doses`` (for batching).

    ``observed`` maps each observed variable to its model unit; ``dose_units`` maps each route
    to the unit of its target state. ``parameters``: records columns of known subject
    parameters (``Problem.subject_parameters``), one value per subject.
    """
    rows = records[records["subject"].astype(str) == str(subject)]
    return SubjectData(subject=str(subject), **_subject_arrays(
        _columns(rows, parameters), subject, observed, dose_units, minutes_per_time_unit,
        n_observations, n_doses, parameters))


def _subject_arrays(column: Mapping[str, np.ndarray], subject: str,
                    observed: Mapping[str, str], dose_units: Mapping[str, str],
                    minutes_per_time_unit: float, n_observations: int | None,
                    n_doses: int | None, parameters: tuple[str, ...]) -> dict:
    """The fields of ``read_subject``'s answer but its id, from the subject's rows as numpy
    columns (``_columns``)."""
    if not len(column["time"]):
        raise ValueError(f"no records for subject {subject!r}")
    names = list(observed)
    is_obs, is_dose = ~column["no_value"], ~column["no_dose"]
    obs = {c: v[is_obs] for c, v in column.items()}
    doses = {c: v[is_dose] for c, v in column.items()}
    unknown = sorted(set(obs["variable"]) - set(names))
    if unknown:
        raise ValueError(f"subject {subject}: observations of {unknown}, which the problem does "
                         f"not observe (it observes {names})")
    n_obs, n_given = int(is_obs.sum()), int(is_dose.sum())
    n_observations = n_obs if n_observations is None else n_observations
    n_doses = n_given if n_doses is None else n_doses
    if n_obs > n_observations or n_given > n_doses:
        raise ValueError(f"subject {subject}: more records than the padding allows")

    def pad(values, size, fill=0.0):
        out = np.full(size, fill, dtype=float)
        out[: len(values)] = values
        return out

    # padded observation slots repeat the last time, so that save times stay increasing
    last_time = float(np.max(obs["time"])) if n_obs else 0.0

    values = [vht.conversion_factor(u or "dimensionless", observed[v]) * x
              for v, x, u in zip(obs["variable"], obs["value"], obs["unit"])]
    amounts = [vht.conversion_factor(u or "dimensionless", dose_units[r]) * a
               for a, r, u in zip(doses["dose_amount"], doses["route"], doses["unit"])]
    known = []
    for name in parameters:
        distinct = pd.unique(pd.Series(column[name]).dropna())
        if len(distinct) != 1:
            raise ValueError(f"subject {subject}: subject parameter {name} needs one value, "
                             f"found {len(distinct)}")
        known.append(float(distinct[0]))
    # doses after the last observation cannot change a prediction: the span ends there
    last = obs["time"] if n_obs else doses["time"]
    first = np.concatenate([obs["time"], doses["time"], [0.0]]).astype(float)
    span = (float(first.min()) * minutes_per_time_unit,
            float(np.max(last, initial=0.0)) * minutes_per_time_unit)
    return dict(
        times=pad(obs["time"] * minutes_per_time_unit, n_observations,
                  last_time * minutes_per_time_unit),
        values=pad(values, n_observations),
        variable_index=pad([names.index(v) for v in obs["variable"]], n_observations).astype(int),
        mask=pad(np.ones(n_obs), n_observations).astype(bool),
        dose_times=pad(doses["time"] * minutes_per_time_unit, n_doses),
        dose_amounts=pad(amounts, n_doses),
        dose_durations=pad(doses["duration"] * minutes_per_time_unit, n_doses),
        route_index=pad([ROUTES.index(r) for r in doses["route"]], n_doses).astype(int),
        parameters=np.asarray(known, dtype=float),
        span=span,
    )
