"""The batch-major integrator (``vht.simulate_ensemble``) against diffrax (``vht.simulate``),
member by member, on every non-stiff model of the library, at rtol = atol = 1e-8; closed
forms where there are some; its status contract and failure isolation.

Agreement is measured as the largest |ensemble - diffrax| / (|diffrax| + 1e-3 max|diffrax|)
over members, save times and states (the second term keeps states that pass through zero
from dividing by zero): both solvers carry a global error of roughly 1e-8 times the number
of steps, so 1e-5 is the bound asserted and the measured value is recorded.
"""

from typing import ClassVar

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from common_twins import one_compartment, one_compartment_oral_concentration

import vht
from physiology_models import twins
from physiology_models.glucose_insulin import bergman_minimal as bm
from physiology_models.glucose_insulin import uva_padova as uva
from physiology_models.pharmacology import (
    EffectCompartment,
    FixedCardiacOutput,
    ThreeCompartmentPK,
    TwoCompartmentPK,
    lidocaine_pbpk,
)
from vht import State, parameter

TOL = dict(rtol=1e-8, atol=1e-8)
AGREEMENT = 1e-5
# The pulsatile circulation resolves every beat (4,000 steps in 15 s): at rtol 1e-8 both
# solvers carry global errors of that order. Measured against Dopri8 at rtol 1e-12: diffrax
# Tsit5 4.0e-5, the ensemble's Dopri5 1.0e-4 (7e-5 between them); at rtol 1e-10 they agree
# to 3.8e-7 (6.6e-7 and 2.7e-7 from the tight solution), so the difference is tolerance.
PULSATILE_AGREEMENT = 2e-4


def _cohort(twin, values):
    return jax.vmap(lambda p: twin.replace(p))({k: jnp.asarray(v) for k, v in values.items()})


def _reference(cohort, scenario, ts, **options):
    run = jax.vmap(lambda tw: vht.simulate(tw, scenario, ts=ts, throw=False, **options))
    return run(cohort)


def _disagreement(a, b):
    a, b = np.asarray(a), np.asarray(b)
    scale = np.abs(b) + 1e-3 * np.max(np.abs(b), axis=1, keepdims=True) + 1e-12
    return float(np.max(np.abs(a - b) / scale))


def _compare(twin, values, scenario, ts, record_property, name, max_steps=100_000,
             agreement=AGREEMENT, **options):
    cohort = _cohort(twin, values)
    fast = vht.simulate_ensemble(cohort, scenario, ts=ts, max_steps=max_steps, **TOL, **options)
    ref = _reference(cohort, scenario, ts, max_steps=max_steps, **TOL)
    assert np.all(np.asarray(fast.status) == vht.Status.OK), fast.status
    assert np.all(np.asarray(ref.status) == vht.Status.OK), ref.status
    states = _disagreement(fast.ys, ref.ys)
    signals = _disagreement(fast.signals, ref.signals) if fast.signals.shape[-1] else 0.0
    record_property(f"{name}_state_disagreement", states)
    record_property(f"{name}_signal_disagreement", signals)
    record_property(f"{name}_steps_ensemble_vs_diffrax",
                    f"{float(np.mean(fast.n_steps)):.0f} / {float(np.mean(ref.n_steps)):.0f}")
    assert states < agreement and signals < agreement, (states, signals)
    return fast, ref


def test_one_compartment_oral_with_lag_matches_closed_form(record_property):
    """Dose arrival times differ per member (lag time): each member's own stops."""
    lags = np.array([0.0, 0.37, 1.5])  # h
    kas = np.array([1.2, 0.7, 2.5])
    twin = one_compartment()
    cohort = _cohort(twin, {"drug.lag_time": lags, "drug.ka": kas})
    scenario = vht.Scenario([vht.OralDose("drug.depot", 400.0, time=0.0, unit="mg")])
    ts = np.linspace(0.0, 24 * 60.0, 97)
    solution = vht.simulate_ensemble(cohort, scenario, ts=ts, rtol=1e-10, atol=1e-10)
    worst = 0.0
    for k in range(lags.size):
        exact = one_compartment_oral_concentration(ts / 60.0, 400.0, kas[k], 3.0, 30.0,
                                                   lag=lags[k])
        got = np.asarray(solution["drug.concentration"][k])
        worst = max(worst, float(np.max(np.abs(got - exact) / (np.abs(exact) + 1e-6))))
    record_property("oral_lag_closed_form_max_relative_error", worst)
    assert worst < 1e-8
    assert "batch-major" in dict(solution.config)["solver"]


def test_two_and_three_compartment_doses_and_infusions(record_property):
    ts = np.linspace(0.0, 48 * 60.0, 97)
    scenario = vht.Scenario([
        vht.OralDose("drug.depot", 400.0, time=0.0, unit="mg"),
        vht.OralDose("drug.depot", 400.0, time=12 * 60.0, unit="mg"),
        vht.Infusion("drug.central", 10.0, start=100.0, duration=200.0, unit="mg/h"),
        vht.Bolus("drug.central", 50.0, time=1000.3, unit="mg"),  # between save times
    ])
    _compare(vht.Twin({"drug": TwoCompartmentPK()}),
             {"drug.clearance": [2.0, 2.8, 4.0]}, scenario, ts, record_property, "two_cpt")
    three = vht.Twin({"drug": ThreeCompartmentPK()})
    name = next(n for n in three.parameters() if n.endswith("clearance"))
    base = float(three.parameters()[name])
    iv = vht.Scenario([vht.Bolus("drug.central", 100.0, time=0.0, unit="mg"),
                       vht.Infusion("drug.central", 60.0, start=30.0, duration=90.0,
                                    unit="mg/h")])
    _compare(three, {name: base * np.array([0.7, 1.0, 1.4])}, iv,
             np.linspace(0.0, 12 * 60.0, 73), record_property, "three_cpt")


def test_forward_mode_derivatives_match_diffrax_gradients(record_property):
    """``vht optimize`` pushes derivatives forward through the ensemble integrator: with
    respect to a dose, an infusion rate (its window edges are stops evaluated at left
    limits) and a parameter step's value, they agree with reverse-mode gradients through
    diffrax, and the derivative with respect to the dose with linearity (conc / dose)."""
    twin = vht.Twin({"drug": TwoCompartmentPK()})
    ts = np.linspace(0.0, 24 * 60.0, 49)
    clearance = float(twin.parameters()["drug.clearance"])
    cohort = _cohort(twin, {"drug.clearance": [2.0, 2.8, 4.0]})

    def scenario(x):
        return vht.Scenario([
            vht.OralDose("drug.depot", x[0], time=0.0, unit="mg"),
            vht.Infusion("drug.central", x[1], start=100.0, duration=200.0, unit="mg/h"),
            vht.ParameterStep("drug.clearance", x[2], time=400.0, duration=300.0),
        ])

    def ensemble(x):
        solution = vht.simulate_ensemble(cohort, scenario(x), ts=ts, rtol=1e-10, atol=1e-10)
        return jnp.sum(solution["drug.concentration"] ** 2)

    def reference(x):
        run = jax.vmap(lambda tw: vht.simulate(tw, scenario(x), ts=ts, rtol=1e-10, atol=1e-10,
                                                throw=False)["drug.concentration"])
        return jnp.sum(run(cohort) ** 2)

    x = jnp.array([400.0, 10.0, 1.5 * clearance])
    forward = np.asarray(jax.jit(jax.jacfwd(ensemble))(x))
    reverse = np.asarray(jax.jit(jax.grad(reference))(x))
    error = float(np.max(np.abs(forward - reverse) / np.abs(reverse)))
    record_property("forward_vs_reverse_relative", error)
    assert np.all(np.abs(reverse) > 0) and error < 1e-6
    # the sum of squares is quadratic in (dose, rate) jointly: x . grad = 2 f along them
    value = float(jax.jit(ensemble)(x))
    along = float(forward[0] * x[0] + forward[1] * x[1])
    assert along == pytest.approx(2.0 * value, rel=1e-7)


def test_pk_with_effect_compartment(record_property):
    twin = vht.Twin({"drug": TwoCompartmentPK(), "effect": EffectCompartment(ec50=2.0)},
                    connections=[("drug.concentration", "effect.plasma_concentration")])
    scenario = vht.Scenario([vht.OralDose("drug.depot", 400.0, time=0.0, unit="mg"),
                             vht.OralDose("drug.depot", 400.0, time=12 * 60.0, unit="mg")])
    _compare(twin, {"effect.ec50": [1.0, 2.0, 4.0]}, scenario, np.linspace(0, 36 * 60.0, 73),
             record_property, "pkpd")


def test_pbpk_lidocaine_infusion(record_property):
    twin = vht.Twin({"heart": FixedCardiacOutput(), "drug": lidocaine_pbpk()},
                    connections=[("heart.cardiac_output", "drug.cardiac_output")])
    target = next(n for n in twin.state_names if n.startswith("drug.") and "venous" in n)
    scenario = vht.Scenario([vht.Infusion(target, 2.0, start=0.0, duration=60.0, unit="mg/min")])
    flow = next(n for n in twin.parameters() if n.startswith("heart."))
    base = float(twin.parameters()[flow])
    _compare(twin, {flow: base * np.array([0.6, 1.0, 1.3])}, scenario,
             np.linspace(0.0, 8 * 60.0, 49), record_property, "pbpk")


def test_bergman_ivgtt(record_property):
    twin = bm.minimal_model_twin()
    base = twin.parameters()
    _compare(twin, {"glucose.S_I": float(base["glucose.S_I"]) * np.array([0.5, 1.0, 2.0])},
             bm.ivgtt(), np.arange(0.0, 181.0, 5.0), record_property, "bergman")


def test_uva_padova_day_three_patients(record_property):
    """Sample-and-hold clock: idle ticks crossed (checked on the continuous extension), and
    every tick a stop; both against simulate, which restarts at every tick as simglucose."""
    patients = ("child#007", "adolescent#001", "adult#005")
    cohort = jax.vmap(lambda organ: vht.Twin({"patient": organ}))(uva.cohort(patients))
    meals = ((420, 45.0), (720, 72.0), (1140, 83.0))
    # one scenario for all three: boluses by adolescent#001's carbohydrate ratio
    scenario = uva.day_scenario(meals, uva.quest("adolescent#001")["CR"])
    ts = np.arange(0.0, 1441.0, 5.0)
    ref = _reference(cohort, scenario, ts, max_steps=100_000, **TOL)
    steps = {}
    for skip in (True, False):
        fast = vht.simulate_ensemble(cohort, scenario, ts=ts, skip_idle_ticks=skip, **TOL)
        assert np.all(np.asarray(fast.status) == vht.Status.OK)
        worst = _disagreement(fast.ys, ref.ys)
        glucose = float(jnp.max(jnp.abs(fast["patient.glucose"] - ref["patient.glucose"])))
        record_property(f"uva_skip_{skip}_state_disagreement", worst)
        record_property(f"uva_skip_{skip}_glucose_max_abs_mg_dl", glucose)
        steps[skip] = float(np.mean(fast.n_steps))
        assert worst < AGREEMENT and glucose < 1e-4
    record_property("uva_steps_skip_idle_every_tick_diffrax",
                    f"{steps[True]:.0f} / {steps[False]:.0f} / {float(np.mean(ref.n_steps)):.0f}")
    assert steps[True] < 0.75 * steps[False]  # crossing idle ticks is the point


def test_pulsatile_circulation_with_reflex_and_hemorrhage(record_property):
    twin = twins.pulsatile_circulation()
    name = "circulation.systemic_resistance"
    base = float(twin.parameters()[name])
    bleed = vht.Scenario([vht.ParameterStep("circulation.hemorrhage_rate", 5.0, time=0.05,
                                            duration=0.1)])
    _compare(twin, {name: base * np.array([0.8, 1.0, 1.25])}, bleed,
             np.linspace(0.0, 0.25, 31), record_property, "pulsatile",
             agreement=PULSATILE_AGREEMENT)


def test_whole_body_pulsatile(record_property):
    """Fluids, kidney, PBPK and glucose-insulin on the pulsatile circulation: the one twin of
    the library that holds every organ family at once."""
    twin = twins.whole_body_pulsatile()
    target = next(n for n in twin.state_names if n.startswith("drug.") and "venous" in n)
    scenario = vht.Scenario([vht.Infusion(target, 2.0, start=0.0, unit="mg/min"),
                             vht.Bolus("glucose.Q", 0.3, time=0.02, unit="g/kg")])
    name = "circulation.systemic_resistance"
    base = float(twin.parameters()[name])
    _compare(twin, {name: base * np.array([0.9, 1.1])}, scenario, np.linspace(0.0, 0.1, 11),
             record_property, "whole_body_pulsatile", agreement=PULSATILE_AGREEMENT)


def test_trigger_switches_where_simulate_does(record_property):
    twin = one_compartment()
    scenario = vht.Scenario([
        vht.Bolus("drug.central", 300.0, 0.0),
        vht.Trigger("drug.concentration", 5.0, "drug.central", 20.0, release=6.0, unit="mg/h"),
    ])
    fast, ref = _compare(twin, {"drug.clearance": [2.5, 3.0, 4.0]}, scenario,
                         np.linspace(0.0, 24 * 60.0, 145), record_property, "trigger")
    # the treatment ran: concentrations held between threshold and release after the dip
    late = np.asarray(fast["drug.concentration"])[:, 100:]
    assert np.all(late > 4.9) and np.all(late < 6.1)


# -- the status contract -------------------------------------------------------------------------


class Fragile(vht.AbstractOrgan):
    """dx/dt = -sqrt(breakdown - t): NaN once t passes ``breakdown`` (minutes)."""

    breakdown: jnp.ndarray = parameter(100.0, unit="min")
    states: ClassVar = (State("x", "mL", 10.0),)

    def rates(self, t, state, inputs):
        return {"x": -0.01 * jnp.sqrt(self.breakdown - t)}


def test_nan_member_fails_alone_and_others_are_bitwise_unchanged():
    twin = vht.Twin({"f": Fragile()})
    run = lambda b: vht.simulate_ensemble(  # noqa: E731
        _cohort(twin, {"f.breakdown": b}), t1=50.0, n_save=11, max_steps=2000)
    mixed, clean = run([100.0, 20.0, 200.0]), run([100.0, 150.0, 200.0])
    status = np.asarray(mixed.status)
    assert status[0] == vht.Status.OK and status[2] == vht.Status.OK
    assert status[1] in (vht.Status.SOLVER_FAILED, vht.Status.MAX_STEPS)
    assert np.all(np.isnan(mixed.ys[1])) and not np.any(np.isinf(mixed.ys))
    np.testing.assert_array_equal(mixed.ys[0], clean.ys[0])
    np.testing.assert_array_equal(mixed.ys[2], clean.ys[2])


def test_step_budget_fails_only_the_member_that_needs_more_steps():
    scenario = vht.Scenario([vht.OralDose("drug.depot", 100.0, 0.0)])

    def run(kas):
        return vht.simulate_ensemble(_cohort(one_compartment(), {"drug.ka": kas}), scenario,
                                     t1=600.0, n_save=5, max_steps=150)

    mixed, clean = run([1.2, 5000.0, 0.8]), run([1.2, 1.0, 0.8])
    assert list(np.asarray(mixed.status)) == [vht.Status.OK, vht.Status.MAX_STEPS, vht.Status.OK]
    assert np.all(np.isnan(mixed.ys[1]))
    np.testing.assert_array_equal(mixed.ys[0], clean.ys[0])
    np.testing.assert_array_equal(mixed.ys[2], clean.ys[2])


def test_implausible_and_switch_budget_statuses():
    twin = one_compartment()
    drain = vht.Scenario([vht.Bolus("drug.central", 10.0, 0.0),
                          vht.Infusion("drug.central", -100.0, unit="mg/h")])
    cohort = _cohort(twin, {"drug.clearance": [3.0, 3.0]})
    solution = vht.simulate_ensemble(cohort, drain, t1=60.0)
    assert list(np.asarray(solution.status)) == [vht.Status.IMPLAUSIBLE] * 2
    unchecked = vht.simulate_ensemble(cohort, drain, t1=60.0, check_bounds=False)
    assert float(unchecked["drug.central"][0, -1]) < 0
    chatter = vht.Scenario([vht.Bolus("drug.central", 300.0, 0.0),
                            vht.Trigger("drug.concentration", 5.0, "drug.central", 20.0,
                                        unit="mg/h", max_switches=2)])
    solution = vht.simulate_ensemble(cohort, chatter, t1=24 * 60.0)
    assert list(np.asarray(solution.status)) == [vht.Status.SWITCH_BUDGET] * 2


def test_errors_name_what_to_change():
    twin = one_compartment()
    with pytest.raises(ValueError, match="leading member axis on every parameter"):
        vht.simulate_ensemble(twin, t1=10.0)
    cohort = _cohort(twin, {"drug.clearance": [3.0, 4.0]})
    with pytest.raises(ValueError, match=r"y0 has shape \(3,\); expected \(members, states\)"):
        vht.simulate_ensemble(cohort, t1=10.0, y0=jnp.zeros(3))
    with pytest.raises(ValueError, match="needs t1"):
        vht.simulate_ensemble(cohort)
    arms = vht.stack([vht.Scenario([vht.Bolus("drug.central", d, 0.0)]) for d in (1.0, 2.0)])
    with pytest.raises(ValueError, match="one scenario for every member"):
        vht.simulate_ensemble(cohort, arms, t1=10.0)
