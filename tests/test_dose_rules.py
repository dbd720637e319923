"""Meal and insulin records in calibration (organ dose rules), known per-subject parameters, and
tick-aligned saving of clocked twins (``simulate(save_at_ticks=True)``).

The UVA/Padova patient eats ``meal`` records as simglucose eats a meal (5 g/min) and takes
``subcutaneous`` records as a one-minute bolus; a calibration problem built on those records
must predict exactly what the hand-written scenario gives.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pandas as pd
import pytest

import vht
from calibration import Additive, FreeParameter, Problem
from physiology_models.glucose_insulin import uva_padova
from physiology_models.pharmacology import OneCompartmentPK

HORIZON = 360.0  # minutes: breakfast and its aftermath keep the clocked solves short
TIMES = np.arange(5.0, HORIZON + 0.5, 5.0)
MEALS = {"adult#001": [(60, 45.0), (240, 22.0)], "child#003": [(90, 30.0)]}


def _records(with_parameters: bool = True) -> pd.DataFrame:
    rows = []
    for subject, meals in MEALS.items():
        ratio = uva_padova.quest(subject)["CR"]
        for t in TIMES:
            rows.append({"subject": subject, "time": t, "variable":
                         "patient.subcutaneous_glucose", "value": 100.0, "unit": "mg/dL",
                         "dose_amount": np.nan, "route": "", "duration": 0.0})
        for minute, grams in meals:
            rows.append({"subject": subject, "time": float(minute), "variable": "",
                         "value": np.nan, "unit": "g", "dose_amount": grams, "route": "meal",
                         "duration": 0.0})
            rows.append({"subject": subject, "time": float(minute), "variable": "",
                         "value": np.nan, "unit": "U", "dose_amount": grams / ratio,
                         "route": "subcutaneous", "duration": 0.0})
    records = pd.DataFrame(rows)
    if with_parameters:
        for subject in MEALS:
            for name, value in uva_padova.patient_twin(subject).parameters().items():
                if name != "patient.Vmx":
                    records.loc[records["subject"] == subject, name] = float(value)
    return records


def _problem(**overrides) -> Problem:
    twin = uva_padova.patient_twin("adolescent#001")
    known = tuple(p for p in twin.parameter_info() if p != "patient.Vmx")
    arguments = dict(free=[FreeParameter("patient.Vmx")],
                     observations={"patient.subcutaneous_glucose": Additive(10.0)},
                     dose_targets={"meal": "patient.carb_rate",
                                   "subcutaneous": "patient.bolus_rate"},
                     time_unit="min", rtol=1e-8, atol=1e-10, max_steps=256,
                     subject_parameters=known)
    arguments.update(overrides)
    return Problem(twin, **arguments)


def _direct(subject: str, vmx: float) -> np.ndarray:
    """The same patient and meals as a hand-written scenario, saved the ordinary way."""
    twin = uva_padova.patient_twin(subject).replace({"patient.Vmx": vmx})
    scenario = uva_padova.day_scenario(MEALS[subject], uva_padova.quest(subject)["CR"])
    solution = vht.simulate(twin, scenario, ts=TIMES, t0=0.0, t1=HORIZON, rtol=1e-8,
                            atol=1e-10, max_steps=256)
    return np.asarray(solution["patient.subcutaneous_glucose"])


@pytest.fixture(scope="module")
def predictions():
    problem = _problem()
    batch = problem.read_subjects(_records(), list(MEALS))
    z = problem.initial()
    predict = jax.jit(jax.vmap(lambda s: problem.predict(z, s)))
    vmx = float(problem.twin.parameters()["patient.Vmx"])
    return problem, batch, np.asarray(predict(batch)), vmx


def test_meal_and_bolus_records_predict_what_the_scenario_gives(predictions):
    """Meal and insulin rows of the records table, through the organ's dose rules, give the
    hand-written meals-with-boluses scenario to solver precision, for a subject with fewer
    doses than the padding too (its empty slots must not cancel a real meal)."""
    problem, batch, predicted, vmx = predictions
    assert batch.dose_times.shape == (2, 4)  # the child's two dose slots are padding
    for i, subject in enumerate(MEALS):
        expected = _direct(subject, vmx)
        assert np.max(np.abs(predicted[i] - expected)) < 1e-6, subject
        assert np.max(expected) > 150.0  # the meals were eaten: glucose rose


def test_subject_parameters_come_from_the_records(predictions):
    """Each subject's own physiology (known parameters) comes from its records columns: the
    child's prediction differs from the adult's under the same free parameter."""
    problem, batch, predicted, _ = predictions
    assert batch.parameters.shape == (2, len(problem.subject_parameters))
    weights = batch.parameters[:, problem.subject_parameters.index("patient.BW")]
    assert weights == pytest.approx([uva_padova.patient_parameters(n)["BW"] for n in MEALS])
    assert np.max(np.abs(predicted[0] - predicted[1])) > 10.0


def test_missing_or_inconsistent_subject_parameters_are_refused():
    problem = _problem()
    with pytest.raises(ValueError, match="no column 'patient.BW'"):
        problem.read_subjects(_records().drop(columns="patient.BW"), list(MEALS))
    records = _records()
    records.loc[records.index[0], "patient.BW"] = 1.0
    with pytest.raises(ValueError, match="needs one value, found 2"):
        problem.read_subjects(records, list(MEALS))
    with pytest.raises(ValueError, match="both free and a known subject parameter"):
        _problem(subject_parameters=("patient.Vmx",))
    plain = _problem(subject_parameters=("patient.BW",))
    with pytest.raises(ValueError, match="read the subjects with"):
        plain.twin_at(plain.initial(), None)


def test_dose_routes_and_targets_must_match():
    with pytest.raises(ValueError, match="not a parameter of the twin"):
        _problem(dose_targets={"meal": "patient.Qsto1"})
    with pytest.raises(ValueError, match="no dose rule for 'Vmx'"):
        _problem(dose_targets={"meal": "patient.Vmx"})
    with pytest.raises(ValueError, match="is not one of"):
        _problem(dose_targets={"inhaled": "patient.carb_rate"})


def test_observations_between_clock_ticks_are_refused():
    records = _records()
    records.loc[records.index[3], "time"] = 17.5
    records = records.sort_values(["subject", "time"], kind="stable")
    with pytest.raises(ValueError, match="between the twin's clock ticks"):
        _problem().read_subjects(records, list(MEALS))


def test_save_at_ticks_equals_interpolated_saving():
    """Reading a clocked twin at its ticks gives what saving inside every segment gives, at
    ticks, at dose instants and at t1."""
    twin = uva_padova.patient_twin("adult#001")
    scenario = uva_padova.day_scenario([(30, 40.0)], 10.0)
    ts = jnp.asarray([0.0, 1.0, 30.0, 31.0, 95.0, 120.0])
    plain = vht.simulate(twin, scenario, ts=ts, t0=0.0, t1=120.0, max_steps=256)
    ticks = vht.simulate(twin, scenario, ts=ts, t0=0.0, t1=120.0, max_steps=256,
                         save_at_ticks=True)
    assert int(ticks.status) == vht.Status.OK
    np.testing.assert_allclose(np.asarray(ticks.ys), np.asarray(plain.ys), rtol=0, atol=1e-9)
    off = vht.simulate(twin, scenario, ts=jnp.asarray([0.5, 120.0]), t0=0.0, t1=120.0,
                       max_steps=256, save_at_ticks=True, throw=False)
    assert int(off.status) != vht.Status.OK
    with pytest.raises(ValueError, match="needs a twin with a sample period"):
        vht.simulate(vht.Twin({"drug": OneCompartmentPK()}), t1=10.0, save_at_ticks=True)
