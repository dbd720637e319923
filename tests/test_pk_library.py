"""The compartmental PK library against closed-form solutions, mass balance and linearity.

One-, two- and three-compartment models (``OneCompartmentPK``, ``TwoCompartmentPK``,
``ThreeCompartmentPK``) are checked against the sum-of-exponentials solutions of the linear
mammillary model (Gibaldi and Perrier, Pharmacokinetics, 2nd ed., 1982): IV bolus, constant-rate
infusion during and after the infusion, and first-order oral absorption with lag time. The
exponents are the eigenvalues of the compartment matrix, in closed form: the root of a linear
equation (one compartment), the quadratic formula (two) and Viete's trigonometric solution of
the cubic (three), each polished by one Newton step. The closed forms are themselves checked
against the matrix exponential (``scipy.linalg.expm``) of the same linear ODE.

Every twin here carries a small test organ that integrates ``CL * C`` (the drug eliminated), so
that "drug in the body + eliminated = dose" is checked to round-off, and the effect compartment
rides along with the one-compartment drug. All tests of a twin share one scenario structure (a
bolus, an infusion and an oral dose, unused ones set to zero) and one save grid, so each twin
compiles once.
"""

from __future__ import annotations

import math
from typing import ClassVar

import jax.numpy as jnp
import numpy as np
import pytest
import scipy.linalg
from jaxtyping import Array

import vht
from physiology_models.pharmacology import (
    EffectCompartment,
    OneCompartmentPK,
    ThreeCompartmentPK,
    TwoCompartmentPK,
)
from vht import Input, State, parameter

HOURS = np.array([0.1, 0.3, 0.6, 1.0, 1.5, 2.2, 3.0, 4.5, 6.0, 9.0, 12.0, 18.0, 24.0])
TS = jnp.asarray(HOURS * vht.HOUR)
TIGHT = dict(rtol=1e-12, atol=1e-12, max_steps=50_000)


class EliminatedDrug(vht.AbstractOrgan):
    """Test instrument: integrates the elimination rate ``CL * C`` of a PK organ (mg)."""

    clearance: Array = parameter(1.0, unit="L/h", bounds=(0.0, math.inf))
    states: ClassVar = (State("eliminated", "mg"),)
    inputs: ClassVar = (Input("concentration", "mg/L"),)
    time_unit: ClassVar = "h"

    def rates(self, t, state, inputs):
        return {"eliminated": self.clearance * inputs["concentration"]}


# Parameters of the three drugs (h, L, L/h). The one- and two-compartment sets are not the
# defaults, so the closed forms are exercised away from the shipped values; the three-compartment
# set is the shipped default (propofol, Schnider 1998).
ONE = dict(ka=1.2, clearance=3.0, volume=30.0, lag_time=0.4, bioavailability=0.8)
TWO = dict(ka=0.9, clearance=4.0, central_volume=20.0, intercompartmental_clearance=9.0,
           peripheral_volume=35.0, lag_time=0.35, bioavailability=0.7)
THREE = dict(lag_time=0.25, bioavailability=0.9)
PD = dict(ke0=2.0, emax=0.8, ec50=1.5, hill=2.5)


def _twin(kind: str) -> vht.Twin:
    if kind == "one":
        drug = OneCompartmentPK(**ONE)
        return vht.Twin(
            {"drug": drug, "sink": EliminatedDrug(clearance=drug.clearance),
             "effect": EffectCompartment(**PD)},
            connections=[("drug.concentration", "sink.concentration"),
                         ("drug.concentration", "effect.plasma_concentration")])
    drug = TwoCompartmentPK(**TWO) if kind == "two" else ThreeCompartmentPK(**THREE)
    return vht.Twin({"drug": drug, "sink": EliminatedDrug(clearance=drug.clearance)},
                    connections=[("drug.concentration", "sink.concentration")])


TWINS = {kind: _twin(kind) for kind in ("one", "two", "three")}


def _scenario(bolus=0.0, rate=0.0, start=0.0, duration=math.inf, oral=0.0, oral_time=0.0):
    """Every test's scenario has this structure (hours in, minutes to vht)."""
    return vht.Scenario([
        vht.Bolus("drug.central", bolus, 0.0),
        vht.Infusion("drug.central", rate, start=start * vht.HOUR,
                     duration=duration * vht.HOUR, unit="mg/h"),
        vht.OralDose("drug.depot", oral, oral_time * vht.HOUR),
    ])


def _simulate(kind, scenario, y0=None):
    return vht.simulate(TWINS[kind], scenario, ts=TS, y0=y0, **TIGHT)


# -- the closed forms ------------------------------------------------------------------------


def _rates(drug) -> tuple[float, float, list[tuple[float, float]]]:
    """(V1, k10, [(k1j, kj1), ...]) of a mammillary model, per hour."""
    if isinstance(drug, OneCompartmentPK):
        v1, pairs = float(drug.volume), []
    else:
        v1 = float(drug.central_volume)
        pairs = [(float(drug.intercompartmental_clearance), float(drug.peripheral_volume))]
        if isinstance(drug, ThreeCompartmentPK):
            pairs.append((float(drug.deep_intercompartmental_clearance),
                          float(drug.deep_peripheral_volume)))
    return v1, float(drug.clearance) / v1, [(q / v1, q / v) for q, v in pairs]


def _characteristic(k10, pairs) -> np.ndarray:
    """Coefficients (highest power first) of prod (lambda - lambda_i) = 0."""
    if not pairs:
        return np.array([1.0, -k10])
    if len(pairs) == 1:
        (k12, k21), = pairs
        return np.array([1.0, -(k10 + k12 + k21), k10 * k21])
    (k12, k21), (k13, k31) = pairs
    a2 = k10 + k12 + k13 + k21 + k31
    a1 = k10 * k21 + k10 * k31 + k12 * k31 + k13 * k21 + k21 * k31
    a0 = k10 * k21 * k31
    return np.array([1.0, -a2, a1, -a0])


def eigenvalues(k10, pairs) -> np.ndarray:
    """Disposition rate constants lambda_i > 0 in closed form (see the module docstring)."""
    c = _characteristic(k10, pairs)
    if len(c) == 2:
        roots = np.array([k10])
    elif len(c) == 3:
        s, p = -c[1], c[2]
        alpha = 0.5 * (s + math.sqrt(s * s - 4.0 * p))
        roots = np.array([alpha, p / alpha])  # beta = p / alpha avoids cancellation
    else:
        a2, a1, a0 = -c[1], c[2], -c[3]
        # lambda = x + a2/3 gives x^3 + p x + q = 0 with three real roots (Viete)
        p = a1 - a2 * a2 / 3.0
        q = -2.0 * a2**3 / 27.0 + a2 * a1 / 3.0 - a0
        r = 2.0 * math.sqrt(-p / 3.0)
        phi = math.acos(3.0 * q / (p * r))
        roots = np.array([a2 / 3.0 + r * math.cos((phi - 2.0 * math.pi * k) / 3.0)
                          for k in range(3)])
    for _ in range(2):  # Newton polish against round-off in the closed forms
        roots = roots - np.polyval(c, roots) / np.polyval(np.polyder(c), roots)
    return np.sort(roots)[::-1]


def unit_coefficients(drug) -> tuple[np.ndarray, np.ndarray]:
    """(lambda_i, A_i): C1(t) = D sum_i A_i exp(-lambda_i t) after an IV bolus D."""
    v1, k10, pairs = _rates(drug)
    lam = eigenvalues(k10, pairs)
    coefficients = []
    for i, li in enumerate(lam):
        numerator = np.prod([kj1 - li for _, kj1 in pairs]) if pairs else 1.0
        denominator = np.prod([lam[m] - li for m in range(len(lam)) if m != i])
        coefficients.append(numerator / denominator / v1)
    return lam, np.array(coefficients)


def bolus_concentration(drug, t, dose):
    lam, a = unit_coefficients(drug)
    return dose * np.sum(a[:, None] * np.exp(-lam[:, None] * t[None, :]), axis=0)


def infusion_concentration(drug, t, rate, start, duration):
    lam, a = unit_coefficients(drug)
    tau = np.clip(t - start, 0.0, None)[None, :]
    on = np.minimum(tau, duration)
    off = np.maximum(tau - duration, 0.0)
    terms = (a / lam)[:, None] * (1.0 - np.exp(-lam[:, None] * on)) * np.exp(-lam[:, None] * off)
    return rate * np.sum(terms, axis=0)


def oral_concentration(drug, t, dose, dose_time):
    lam, a = unit_coefficients(drug)
    ka, f, lag = float(drug.ka), float(drug.bioavailability), float(drug.lag_time)
    tau = np.clip(t - dose_time - lag, 0.0, None)[None, :]
    terms = (a / (ka - lam))[:, None] * (np.exp(-lam[:, None] * tau) - np.exp(-ka * tau))
    return f * dose * ka * np.sum(terms, axis=0)


def _relative_error(simulated, expected):
    return float(np.max(np.abs(np.asarray(simulated) - expected) / np.abs(expected)))


# -- the closed forms are right -----------------------------------------------------------


def test_closed_forms_match_the_matrix_exponential(record_property):
    """Viete's roots and the partial-fraction coefficients reproduce expm of the linear ODE."""
    errors = []
    for kind in ("one", "two", "three"):
        drug = TWINS[kind]["drug"]
        v1, k10, pairs = _rates(drug)
        n = 1 + len(pairs)
        matrix = np.zeros((n, n))  # amounts: central, peripherals (per hour)
        matrix[0, 0] = -(k10 + sum(k1j for k1j, _ in pairs))
        for j, (k1j, kj1) in enumerate(pairs, start=1):
            matrix[0, j], matrix[j, 0], matrix[j, j] = kj1, k1j, -kj1
        x0 = np.zeros(n)
        x0[0] = 100.0
        by_expm = np.array([(scipy.linalg.expm(matrix * t) @ x0)[0] / v1 for t in HOURS])
        closed = bolus_concentration(drug, HOURS, 100.0)
        errors.append(_relative_error(closed, by_expm))
        np.testing.assert_allclose(np.sort(-np.linalg.eigvals(matrix).real)[::-1],
                                   eigenvalues(k10, pairs), rtol=1e-10)
    record_property("max_relative_error_closed_form_vs_expm", max(errors))
    assert max(errors) < 1e-11, errors


# -- simulations against the closed forms -------------------------------------------------


@pytest.mark.parametrize("kind", ["one", "two", "three"])
def test_iv_bolus_is_a_sum_of_exponentials(kind, record_property):
    solution = _simulate(kind, _scenario(bolus=250.0))
    expected = bolus_concentration(TWINS[kind]["drug"], HOURS, 250.0)
    error = _relative_error(solution["drug.concentration"], expected)
    record_property("max_relative_error", error)
    assert error < 1e-8, error


@pytest.mark.parametrize("kind", ["one", "two", "three"])
def test_constant_rate_infusion_during_and_after(kind, record_property):
    start, duration, rate = 0.5, 4.0, 60.0  # hours, hours, mg/h
    solution = _simulate(kind, _scenario(rate=rate, start=start, duration=duration))
    after_start = HOURS > start
    expected = infusion_concentration(TWINS[kind]["drug"], HOURS, rate, start, duration)
    simulated = np.asarray(solution["drug.concentration"])
    during = after_start & (HOURS <= start + duration)
    after = HOURS > start + duration
    assert during.sum() >= 4 and after.sum() >= 4
    error = _relative_error(simulated[after_start], expected[after_start])
    record_property("max_relative_error", error)
    assert error < 1e-8, error
    assert np.all(simulated[~after_start] == 0.0)


@pytest.mark.parametrize("kind", ["two", "three"])
def test_oral_absorption_with_lag_time(kind, record_property):
    """Two compartments: tri-exponential; three: tetra-exponential; nothing before the lag."""
    dose, dose_time = 400.0, 0.2
    drug = TWINS[kind]["drug"]
    solution = _simulate(kind, _scenario(oral=dose, oral_time=dose_time))
    arrived = HOURS > dose_time + float(drug.lag_time)
    simulated = np.asarray(solution["drug.concentration"])
    expected = oral_concentration(drug, HOURS, dose, dose_time)
    error = _relative_error(simulated[arrived], expected[arrived])
    record_property("max_relative_error", error)
    assert error < 1e-8, error
    assert np.all(simulated[~arrived] == 0.0) and (~arrived).sum() >= 2


# -- conservation, linearity, the effect site ---------------------------------------------


@pytest.mark.parametrize("kind", ["one", "two", "three"])
def test_drug_in_body_plus_eliminated_equals_dose(kind, record_property):
    """Bolus + infusion window + oral dose: every state of the drug plus the eliminated amount
    equals what has arrived so far (the oral dose after bioavailability and lag)."""
    twin = TWINS[kind]
    drug = twin["drug"]
    bolus, rate, start, duration, oral, oral_time = 100.0, 20.0, 1.0, 3.0, 200.0, 0.5
    solution = _simulate(kind, _scenario(bolus, rate, start, duration, oral, oral_time))
    names = [n for n in twin.state_names if n.startswith("drug.")] + ["sink.eliminated"]
    total = sum(np.asarray(solution[n]) for n in names)
    arrived_oral = float(drug.bioavailability) * oral * (HOURS >= oral_time
                                                         + float(drug.lag_time))
    given = bolus + rate * np.clip(HOURS - start, 0.0, duration) + arrived_oral
    error = float(np.max(np.abs(total - given) / given))
    record_property("max_relative_mass_error", error)
    assert error < 1e-12, error
    assert float(solution["sink.eliminated"][-1]) > 0.5 * given[-1]  # elimination happened


def test_exposure_is_proportional_to_dose(record_property):
    """Linear PK: doubling an IV + oral regimen doubles the AUC (CL * AUC = eliminated)."""
    single = _simulate("three", _scenario(bolus=50.0, oral=100.0, oral_time=1.0))
    double = _simulate("three", _scenario(bolus=100.0, oral=200.0, oral_time=1.0))
    clearance = float(TWINS["three"]["drug"].clearance)
    auc_single = float(single["sink.eliminated"][-1]) / clearance
    auc_double = float(double["sink.eliminated"][-1]) / clearance
    ratio_error = abs(auc_double / auc_single - 2.0) / 2.0
    record_property("auc_ratio_relative_error", ratio_error)
    assert ratio_error < 1e-10, ratio_error
    np.testing.assert_allclose(double["drug.concentration"], 2.0 * single["drug.concentration"],
                               rtol=1e-10)


@pytest.mark.parametrize("plasma", [0.5, 1.5, 4.0])
def test_effect_site_equilibrates_to_the_sigmoid_emax(plasma, record_property):
    """A plasma concentration held constant (central amount C V, infusion rate CL C): the effect
    site follows Ce = C (1 - exp(-ke0 t)) and the effect settles at Emax C^n/(EC50^n + C^n)."""
    twin = TWINS["one"]
    drug = twin["drug"]
    y0 = np.zeros(len(twin.state_names))
    y0[twin.state_index("drug.central")] = plasma * float(drug.volume)
    scenario = _scenario(rate=plasma * float(drug.clearance))
    solution = _simulate("one", scenario, y0=jnp.asarray(y0))
    np.testing.assert_allclose(solution["drug.concentration"], plasma, rtol=1e-12)
    ke0, emax, ec50, n = (PD[k] for k in ("ke0", "emax", "ec50", "hill"))
    site = plasma * (1.0 - np.exp(-ke0 * HOURS))
    site_error = _relative_error(solution["effect.effect_site_concentration"], site)
    expected = emax * plasma**n / (ec50**n + plasma**n)
    effect_error = abs(float(solution["effect.effect"][-1]) - expected) / expected
    record_property("max_relative_error_effect_site", site_error)
    record_property("relative_error_equilibrium_effect", effect_error)
    assert site_error < 1e-8, site_error
    assert effect_error < 1e-10, effect_error
    np.testing.assert_allclose(solution["effect.factor"][-1], 1.0 + expected, rtol=1e-10)
