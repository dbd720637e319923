"""Closed-form solutions of linear organs (``vht.simulate_closed_form``) against the ODE solver,
their limits where rates meet, and the cases they refuse."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from common_twins import one_compartment

import calibration as cal
import vht
from physiology_models.cardiovascular import MeanFlowCirculation
from physiology_models.pharmacology import (
    EffectCompartment,
    OneCompartmentPK,
    ThreeCompartmentPK,
    TwoCompartmentPK,
)
from vht.network import decay_convolution, decay_integral

TIGHT = dict(rtol=1e-12, atol=1e-12, max_steps=20_000)


def _mixed_scenario():
    """Every kind of input the closed form superposes, overlapping in time."""
    return vht.Scenario([
        vht.OralDose("drug.depot", 320.0, 0.0),
        vht.OralDose("drug.depot", 100.0, 6.0 * vht.HOUR),
        vht.Bolus("drug.central", 50.0, 3.0 * vht.HOUR),
        vht.Infusion("drug.central", 2.0, start=10.0 * vht.HOUR, duration=2.0 * vht.HOUR),
        vht.Infusion("drug.central", 0.5, start=20.0 * vht.HOUR),  # runs to the end
    ])


def test_superposition_matches_the_ode_solution_for_doses_lag_and_infusions(record_property):
    twin = one_compartment(lag_time=0.3, bioavailability=0.8)
    y0 = jnp.asarray([40.0, 25.0])  # drug already in the depot and in plasma at t0
    ts = jnp.linspace(0.0, 30.0 * vht.HOUR, 121)  # saves fall on the dose times too
    ode = vht.simulate(twin, _mixed_scenario(), ts=ts, y0=y0, **TIGHT)
    exact = vht.simulate_closed_form(twin, _mixed_scenario(), ts=ts, y0=y0)
    assert int(exact.status) == vht.Status.OK
    assert exact.state_names == ode.state_names and exact.signal_names == ode.signal_names
    scale = np.max(np.abs(np.asarray(ode.ys)), axis=0)
    worst = float(np.max(np.abs(np.asarray(exact.ys - ode.ys)) / scale))
    record_property("max_error_over_state_range", worst)
    assert worst < 1e-9
    np.testing.assert_allclose(exact["drug.concentration"], ode["drug.concentration"],
                               rtol=1e-8, atol=1e-12)


@pytest.mark.parametrize("organ", [
    TwoCompartmentPK(lag_time=0.3, bioavailability=0.8),
    # ka equal to the fast disposition rate alpha: the convolutions meet their limit
    TwoCompartmentPK(ka=TwoCompartmentPK()._disposition()[4]),
    ThreeCompartmentPK(lag_time=0.3, bioavailability=0.8),
    # a rate matrix with a repeated eigenvalue (no rapid peripheral compartment: 0 twice)
    ThreeCompartmentPK(clearance=10.0, central_volume=20.0, intercompartmental_clearance=0.0),
], ids=["two-lag-and-F", "two-ka-equals-alpha", "three-lag-and-F", "three-repeated-root"])
def test_multi_compartment_superposition_matches_the_ode(organ, record_property):
    twin = vht.Twin({"drug": organ})
    y0 = jnp.asarray([40.0, 25.0, 10.0, 5.0][: len(twin.state_names)])
    ts = jnp.linspace(0.0, 30.0 * vht.HOUR, 121)
    scenario = _mixed_scenario()
    if isinstance(organ, ThreeCompartmentPK):  # its closed form takes a rate into the depot too
        scenario = vht.Scenario(list(scenario.interventions) + [
            vht.Infusion("drug.depot", 0.5, start=20.0 * vht.HOUR)])
    ode = vht.simulate(twin, scenario, ts=ts, y0=y0, **(TIGHT | {"max_steps": 50_000}))
    exact = vht.simulate_closed_form(twin, scenario, ts=ts, y0=y0)
    scale = np.max(np.abs(np.asarray(ode.ys)), axis=0)
    worst = float(np.max(np.abs(np.asarray(exact.ys - ode.ys)) / scale))
    record_property("max_error_over_state_range", worst)
    assert int(exact.status) == vht.Status.OK and worst < 1e-9


def test_responses_stay_exact_where_rates_meet_and_at_zero_rate():
    t = jnp.linspace(0.0, 30.0, 61)
    k = 0.37
    np.testing.assert_allclose(decay_convolution(k, k, t), t * jnp.exp(-k * t), rtol=1e-14)
    # next to the limit the textbook difference quotient loses digits; the series does not
    near = decay_convolution(k * (1 + 1e-9), k, t)
    np.testing.assert_allclose(near, t * jnp.exp(-k * t), rtol=1e-7)
    np.testing.assert_allclose(decay_integral(0.0, t), t, rtol=0, atol=0)
    np.testing.assert_allclose(decay_integral(k, t), -jnp.expm1(-k * t) / k, rtol=1e-14)
    far = decay_convolution(2.0, 0.1, t)
    np.testing.assert_allclose(far, (jnp.exp(-0.1 * t) - jnp.exp(-2.0 * t)) / 1.9, rtol=1e-13)

    # FOCE differentiates three times: the third derivative in ka is continuous through ka = ke
    def third(ka):
        f = lambda a: decay_convolution(a, k, 5.0)  # noqa: E731
        return jax.jacfwd(jax.jacfwd(jax.jacfwd(f)))(ka)

    at, below, above = third(k), third(k * (1 - 1e-6)), third(k * (1 + 1e-6))
    assert np.isfinite(at) and abs(below - at) < 1e-5 * abs(at) and abs(above - at) < 1e-5 * abs(at)
    # and at ka = ke each derivative is the series' own: d^n/da^n = (-1)^n t^(n+1) e^(-kt) / (n+1)
    f = lambda a: decay_convolution(a, k, 5.0)  # noqa: E731
    for n, derivative in enumerate([jax.grad(f), jax.grad(jax.grad(f)), third], start=1):
        np.testing.assert_allclose(derivative(k), (-1) ** n * 5.0 ** (n + 1) * np.exp(-5.0 * k)
                                   / (n + 1), rtol=1e-14)
    # a fast rate times a long time is far beyond exp's range; the convolution is not
    slow_then_fast = np.exp(-0.1 * 100.0) / 9.9 * -np.expm1(-9.9 * 100.0)
    np.testing.assert_allclose(decay_convolution(0.1, 10.0, 100.0), slow_then_fast, rtol=1e-14)
    np.testing.assert_allclose(decay_convolution(10.0, 0.1, 100.0), slow_then_fast, rtol=1e-14)


@pytest.mark.parametrize("build", [
    lambda k: OneCompartmentPK(ka=k, clearance=3.0, volume=30.0),
    lambda k: TwoCompartmentPK(ka=1.2, intercompartmental_clearance=8.0 * k),
    lambda k: ThreeCompartmentPK(ka=1.2, deep_intercompartmental_clearance=40.0 * k),
], ids=["one-compartment-ka", "two-compartment-Q", "three-compartment-Q3"])
def test_closed_form_gradients_match_the_ode_gradients(build):
    ts = jnp.asarray([0.5, 1.0, 2.0, 6.0, 12.0, 24.0]) * vht.HOUR
    scenario = vht.Scenario([vht.OralDose("drug.depot", 320.0, 0.0)])

    def exposure(k, solve):
        return jnp.sum(solve(vht.Twin({"drug": build(k)}))["drug.concentration"])

    exact = jax.grad(lambda k: exposure(k, lambda tw: vht.simulate_closed_form(
        tw, scenario, ts=ts)))(1.2)
    ode = jax.grad(lambda k: exposure(k, lambda tw: vht.simulate(tw, scenario, ts=ts,
                                                                 **TIGHT)))(1.2)
    np.testing.assert_allclose(exact, ode, rtol=1e-7)


def test_closed_form_outputs_are_the_solutions_states_and_signals_unmasked():
    """``closed_form_outputs`` (the population fits' predictions) gives the same states and
    signals as ``simulate_closed_form``, and leaves a value that is not finite as it is where
    the Solution masks every output with NaN."""
    from vht._closed_form import closed_form_outputs

    twin = one_compartment(lag_time=0.3, bioavailability=0.8)
    ts = jnp.linspace(0.0, 30.0 * vht.HOUR, 61)
    solution = vht.simulate_closed_form(twin, _mixed_scenario(), ts=ts)
    central, concentration = closed_form_outputs(
        twin, _mixed_scenario(), ["drug.central", "drug.concentration"], ts=ts)
    np.testing.assert_array_equal(central, solution["drug.central"])
    np.testing.assert_array_equal(concentration, solution["drug.concentration"])
    (depot,) = closed_form_outputs(twin, _mixed_scenario(), ["drug.depot"], ts=ts)
    np.testing.assert_array_equal(depot, solution["drug.depot"])
    # two doses whose sum overflows: the depot is infinite from their arrival on
    huge = vht.Scenario([vht.OralDose("drug.depot", 1e308, 0.0)] * 2)
    masked = vht.simulate_closed_form(one_compartment(), huge, ts=ts)
    (unmasked,) = closed_form_outputs(one_compartment(), huge, ["drug.depot"], ts=ts)
    assert int(masked.status) == vht.Status.NONFINITE
    assert np.all(np.isnan(masked["drug.depot"]))
    assert np.isposinf(unmasked[0]) and not np.any(np.isnan(unmasked))


def test_what_cannot_be_superposed_is_refused_with_the_reason():
    ts = jnp.linspace(0.0, 600.0, 5)
    with pytest.raises(ValueError, match="declare no impulse_response"):
        vht.simulate_closed_form(vht.Twin({"heart": MeanFlowCirculation()}), ts=ts)
    connected = vht.Twin({"drug": OneCompartmentPK(), "effect": EffectCompartment()},
                         connections=[("drug.concentration", "effect.plasma_concentration")])
    with pytest.raises(ValueError, match="connected"):
        vht.simulate_closed_form(connected, ts=ts)
    trigger = vht.Scenario([vht.Trigger("drug.concentration", 1.0, "drug.central", 1.0)])
    with pytest.raises(ValueError, match="only doses and infusions superpose"):
        vht.simulate_closed_form(one_compartment(), trigger, ts=ts)
    into_depot = vht.Scenario([vht.Infusion("drug.depot", 1.0, start=0.0, duration=60.0)])
    with pytest.raises(NotImplementedError, match="constant rate into 'depot'"):
        vht.simulate_closed_form(one_compartment(), into_depot, ts=ts)


def test_problems_take_the_closed_form_where_it_applies_and_agree_with_the_ode():
    problem = cal.theoph_problem()
    assert problem.solution == "closed_form"
    ode = cal.Problem(
        problem.twin, problem.free, dict(problem.observations), dict(problem.dose_targets),
        time_unit=problem.time_unit, rtol=1e-10, atol=1e-12, solution="ode")
    assert ode.solution == "ode"
    batch = problem.read_subjects(cal.theoph_records(dose_per_kg=True), ["1", "2", "3"])
    z = problem.initial() + 0.1
    exact, solved = (jax.vmap(lambda s, p=p: p.predict(z, s))(batch) for p in (problem, ode))
    np.testing.assert_allclose(exact, solved, rtol=1e-7, atol=1e-9)
    with pytest.raises(ValueError, match="not possible"):
        cal.Problem(one_compartment(), [cal.FreeParameter("drug.ka")],
                    {"drug.concentration": cal.Additive(0.5)},
                    {"oral": "drug.depot", "infusion": "drug.depot"}, solution="closed_form")
    with pytest.raises(ValueError, match="solution must be one of"):
        cal.Problem(one_compartment(), [cal.FreeParameter("drug.ka")],
                    {"drug.concentration": cal.Additive(0.5)}, {"oral": "drug.depot"},
                    solution="exact")
    infused = cal.Problem(one_compartment(), [cal.FreeParameter("drug.ka")],
                          {"drug.concentration": cal.Additive(0.5)},
                          {"infusion": "drug.depot"})
    assert infused.solution == "ode"  # no closed form for a constant rate into the depot
