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
    shapes = {(s.times.shape, s.dose_times.shape) for s in subjects}
    if len(shapes) != 1:
        raise ValueError("subjects must share their padding to be stacked: read them with the "
                         "same n_observations and n_doses")
    span = (min(s.span[0] for s in subjects), max(s.span[1] for s in subjects))
    return SubjectData("", *(np.stack([getattr(s, f) for s in subjects]) for f in (
        "times", "values", "variable_index", "mask", "dose_times", "dose_amounts",
        "dose_durations", "route_index", "parameters")), span=span)


def read_subjects(records: pd.DataFrame, subjects: list[str], observed: Mapping[str, str],
                  dose_units: Mapping[str, str], minutes_per_time_unit: float,
                  parameters: tuple[str, ...] = ()) -> SubjectData:
    """Several subjects, padded to a common size and stacked."""
    sizes = [(int((~records[records["subject"] == s]["value"].isna()).sum()),
              int((~records[records["subject"] == s]["dose_amount"].isna()).sum()))
             for s in subjects]
    n_observations = max(n for n, _ in sizes)
    n_doses = max(d for _, d in sizes)
    return stack_subjects([read_subject(records, s, observed, dose_units, minutes_per_time_unit,
                                        n_observations, n_doses, parameters) for s in subjects])


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
    if rows.empty:
        raise ValueError(f"no records for subject {subject!r}")
    names = list(observed)
    obs = rows[~rows["value"].isna()]
    doses = rows[~rows["dose_amount"].isna()]
    unknown = sorted(set(obs["variable"]) - set(names))
    if unknown:
        raise ValueError(f"subject {subject}: observations of {unknown}, which the problem does "
                         f"not observe (it observes {names})")
    n_observations = len(obs) if n_observations is None else n_observations
    n_doses = len(doses) if n_doses is None else n_doses
    if len(obs) > n_observations or len(doses) > n_doses:
        raise ValueError(f"subject {subject}: more records than the padding allows")

    def pad(values, size, fill=0.0):
        out = np.full(size, fill, dtype=float)
        out[: len(values)] = values
        return out

    # padded observation slots repeat the last time, so that save times stay increasing
    last_time = float(obs["time"].max()) if len(obs) else 0.0

    values = [vht.conversion_factor(u or "dimensionless", observed[v]) * x
              for v, x, u in zip(obs["variable"], obs["value"], obs["unit"])]
    amounts = [vht.conversion_factor(u or "dimensionless", dose_units[r]) * a
               for a, r, u in zip(doses["dose_amount"], doses["route"], doses["unit"])]
    known = []
    for name in parameters:
        if name not in rows.columns:
            raise ValueError(f"the records have no column {name!r} for the subject parameter "
                             f"{name}")
        distinct = rows[name].dropna().unique()
        if len(distinct) != 1:
            raise ValueError(f"subject {subject}: subject parameter {name} needs one value, "
                             f"found {len(distinct)}")
        known.append(float(distinct[0]))
    # doses after the last observation cannot change a prediction: the span ends there
    last = obs["time"].to_numpy() if len(obs) else doses["time"].to_numpy()
    first = np.concatenate([obs["time"].to_numpy(), doses["time"].to_numpy(), [0.0]])
    span = (float(first.min()) * minutes_per_time_unit,
            float(np.max(last, initial=0.0)) * minutes_per_time_unit)
    return SubjectData(
        subject=str(subject),
        times=pad(obs["time"].to_numpy() * minutes_per_time_unit, n_observations,
                  last_time * minutes_per_time_unit),
        values=pad(values, n_observations),
        variable_index=pad([names.index(v) for v in obs["variable"]], n_observations).astype(int),
        mask=pad(np.ones(len(obs)), n_observations).astype(bool),
        dose_times=pad(doses["time"].to_numpy() * minutes_per_time_unit, n_doses),
        dose_amounts=pad(amounts, n_doses),
        dose_durations=pad(doses["duration"].to_numpy() * minutes_per_time_unit, n_doses),
        route_index=pad([ROUTES.index(r) for r in doses["route"]], n_doses).astype(int),
        parameters=np.asarray(known, dtype=float),
        span=span,
    )
