"""Scenario primitives against closed forms: boluses, windows, parameter steps, triggers."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from common_twins import one_compartment

import vht

TIGHT = dict(rtol=1e-12, atol=1e-12, max_steps=20_000)
HOUR = vht.HOUR


def _iv_twin():
    return one_compartment(clearance=3.0, volume=30.0)  # ke = 0.1 / h


def test_repeated_boluses_superpose():
    twin = _iv_twin()
    times = [0.0, 6 * HOUR, 12 * HOUR, 12 * HOUR]  # two at the same instant
    scenario = vht.Scenario([vht.Bolus("drug.central", 300.0, t) for t in times])
    hours = np.array([1.0, 6.0, 11.0, 12.0, 18.0])
    solution = vht.simulate(twin, scenario, ts=jnp.asarray(hours * HOUR), **TIGHT)
    expected = sum(10.0 * np.exp(-0.1 * (hours - t / HOUR)) * (hours >= t / HOUR) for t in times)
    np.testing.assert_allclose(solution["drug.concentration"], expected, rtol=1e-9)


def test_save_time_at_a_dose_sees_the_dose_and_late_doses_are_ignored():
    twin = _iv_twin()
    scenario = vht.Scenario([vht.Bolus("drug.central", 300.0, 2 * HOUR),
                             vht.Bolus("drug.central", 300.0, 50 * HOUR)])
    solution = vht.simulate(twin, scenario, ts=jnp.array([0.0, 2 * HOUR, 4 * HOUR]), **TIGHT)
    np.testing.assert_allclose(solution["drug.concentration"], [0.0, 10.0, 10 * np.exp(-0.2)],
                               rtol=1e-9)
    assert int(solution.status) == vht.Status.OK


def test_parameter_step_is_applied_over_its_window():
    twin = _iv_twin()
    scenario = vht.Scenario([
        vht.Bolus("drug.central", 300.0, 0.0),
        vht.ParameterStep("drug.clearance", 6.0, time=2 * HOUR, duration=1 * HOUR),
    ])
    hours = np.array([1.0, 2.5, 3.0, 5.0])
    solution = vht.simulate(twin, scenario, ts=jnp.asarray(hours * HOUR), **TIGHT)
    exponent = 0.1 * np.minimum(hours, 2) + 0.2 * np.clip(hours - 2, 0, 1) + 0.1 * np.clip(
        hours - 3, 0, None)
    np.testing.assert_allclose(solution["drug.concentration"], 10 * np.exp(-exponent), rtol=1e-9)


def test_parameter_step_units_are_converted():
    twin = _iv_twin()
    base = vht.Scenario([vht.Bolus("drug.central", 300.0, 0.0)])
    in_l_per_h = base + vht.Scenario([vht.ParameterStep("drug.clearance", 6.0, time=HOUR)])
    in_ml_per_min = base + vht.Scenario([vht.ParameterStep("drug.clearance", 100.0, time=HOUR,
                                                           unit="mL/min")])
    a = vht.simulate(twin, in_l_per_h, t1=3 * HOUR, **TIGHT)
    b = vht.simulate(twin, in_ml_per_min, t1=3 * HOUR, **TIGHT)
    np.testing.assert_allclose(a.ys, b.ys, rtol=1e-10)


def test_meal_delivers_its_amount_at_a_constant_rate():
    twin = one_compartment(clearance=1e-9, volume=30.0, ka=2.0)
    scenario = vht.Scenario([vht.Meal("drug.depot", 60.0, time=10.0, duration=20.0)])
    solution = vht.simulate(twin, scenario, ts=jnp.array([10.0, 20.0, 30.0, 300.0]), **TIGHT)
    total = np.asarray(solution["drug.depot"] + solution["drug.central"])
    np.testing.assert_allclose(total, [0.0, 30.0, 60.0, 60.0], rtol=1e-8, atol=1e-9)


def _trigger_scenario(max_switches=8):
    """Infuse 24 mg/h while the concentration is below 5 mg/L, until it is back above 6."""
    return vht.Scenario([
        vht.Bolus("drug.central", 300.0, 0.0),
        vht.Trigger("drug.concentration", 5.0, "drug.central", 24.0, release=6.0, unit="mg/h",
                    max_switches=max_switches),
    ])


def _trigger_closed_form(hours):
    """C0 = 10 mg/L decays with ke = 0.1/h; on: plateau R/CL = 8 mg/L."""
    switch_on = np.log(2.0) / 0.1
    on_phase = np.log(1.5) / 0.1  # 5 -> 6 towards the plateau 8
    off_phase = np.log(6.0 / 5.0) / 0.1  # 6 -> 5 by decay
    edges, t, on = [switch_on], switch_on, True
    while t < 30:
        t += on_phase if on else off_phase
        edges.append(t)
        on = not on
    out = []
    for h in hours:
        if h < switch_on:
            out.append(10 * np.exp(-0.1 * h))
            continue
        k = np.searchsorted(edges, h, side="right") - 1
        tau = h - edges[k]
        out.append(8 - 3 * np.exp(-0.1 * tau) if k % 2 == 0 else 6 * np.exp(-0.1 * tau))
    return np.array(out), edges


def test_trigger_switches_at_the_threshold_crossings():
    hours = np.linspace(0.0, 24.0, 97)
    solution = vht.simulate(_iv_twin(), _trigger_scenario(), ts=jnp.asarray(hours * HOUR),
                            **TIGHT)
    expected, edges = _trigger_closed_form(hours)
    assert sum(e < 24 for e in edges) == 6  # six switches in a day
    np.testing.assert_allclose(solution["drug.concentration"], expected, rtol=1e-7)


def test_trigger_needing_more_switches_than_allowed_fails_honestly():
    solution = vht.simulate(_iv_twin(), _trigger_scenario(max_switches=3),
                            ts=jnp.linspace(0.0, 24 * HOUR, 5), throw=False, **TIGHT)
    assert int(solution.status) == vht.Status.SWITCH_BUDGET
    assert np.all(np.isnan(solution.ys))
    with pytest.raises(Exception, match="switched more often than its max_switches"):
        vht.simulate(_iv_twin(), _trigger_scenario(max_switches=3), t1=24 * HOUR, **TIGHT)


def test_trigger_that_starts_active():
    """Below the threshold from the start: the treatment is on from t = 0."""
    scenario = vht.Scenario([vht.Trigger("drug.concentration", 5.0, "drug.central", 24.0,
                                         release=6.0, unit="mg/h")])
    solution = vht.simulate(_iv_twin(), scenario, ts=jnp.array([HOUR]), **TIGHT)
    np.testing.assert_allclose(solution["drug.concentration"], 8 * (1 - np.exp(-0.1)), rtol=1e-9)


def test_arms_vmap_over_stacked_scenarios():
    twin = _iv_twin()
    arms = vht.stack([vht.Scenario([vht.Bolus("drug.central", dose, 0.0)], name=f"{dose} mg")
                      for dose in (100.0, 200.0, 300.0)])
    run = jax.vmap(lambda s: vht.simulate(twin, s, ts=jnp.array([HOUR]), **TIGHT))
    solution = run(arms)
    np.testing.assert_allclose(solution["drug.concentration"][:, 0],
                               np.array([100, 200, 300]) / 30 * np.exp(-0.1), rtol=1e-9)
    assert arms.name == "100.0 mg | 200.0 mg | 300.0 mg"


def test_stack_rejects_arms_of_different_structure():
    a = vht.Scenario([vht.Bolus("drug.central", 1.0, 0.0)], name="a")
    b = vht.Scenario([vht.Infusion("drug.central", 1.0)], name="b")
    with pytest.raises(ValueError, match="scenario 1 \\('b'\\) differs in structure"):
        vht.stack([a, b])


def test_scenario_errors():
    twin = _iv_twin()
    with pytest.raises(ValueError, match="unknown state 'drug.liver'"):
        vht.simulate(twin, vht.Scenario([vht.Bolus("drug.liver", 1.0, 0.0)]), t1=1.0)
    with pytest.raises(ValueError, match="unknown parameter 'drug.speed'"):
        vht.simulate(twin, vht.Scenario([vht.ParameterStep("drug.speed", 1.0)]), t1=1.0)
    with pytest.raises(ValueError, match="unknown signal 'drug.map'"):
        vht.simulate(twin, vht.Scenario([vht.Trigger("drug.map", 1.0, "drug.central", 1.0)]),
                     t1=1.0)
    with pytest.raises(ValueError, match="unit mismatch"):
        vht.simulate(twin, vht.Scenario([vht.Bolus("drug.central", 1.0, 0.0, unit="mL")]),
                     t1=1.0)
    with pytest.raises(ValueError, match="scenario items must be interventions"):
        vht.Scenario([3.0])
    with pytest.raises(ValueError, match="simulate needs t1"):
        vht.simulate(twin)
    with pytest.raises(ValueError, match="save times ts must be increasing"):
        vht.simulate(twin, ts=jnp.array([2.0, 1.0]))
    with pytest.raises(ValueError, match="y0 has shape"):
        vht.simulate(twin, t1=1.0, y0=jnp.zeros(3))
    with pytest.raises(ValueError, match="expects a Twin"):
        vht.simulate(twin["drug"], t1=1.0)


def test_scenario_describes_itself_for_provenance():
    scenario = _trigger_scenario()
    record = scenario.describe()
    assert record["time_unit"] == "min"
    assert record["interventions"][1]["type"] == "Trigger"
    assert record["interventions"][1]["threshold"] == 5.0


def test_two_triggers_crossing_together_both_switch():
    """Fluids and a drug both start when the same signal crosses the same threshold."""
    scenario = vht.Scenario([
        vht.Bolus("drug.central", 300.0, 0.0),
        vht.Trigger("drug.concentration", 5.0, "drug.central", 12.0, release=9.0, unit="mg/h"),
        vht.Trigger("drug.concentration", 5.0, "drug.central", 12.0, release=9.0, unit="mg/h"),
    ])
    hours = np.array([5.0, 8.0, 10.0])
    solution = vht.simulate(_iv_twin(), scenario, ts=jnp.asarray(hours * HOUR), **TIGHT)
    expected, _ = _trigger_closed_form(hours)  # 2 x 12 mg/h is the single trigger's 24 mg/h
    np.testing.assert_allclose(solution["drug.concentration"][:2], expected[:2], rtol=1e-7)


def test_a_rule_without_hysteresis_that_chatters_is_reported():
    """On at C < 5 with a plateau above 5 and no release band: the rule switches off as soon as
    it switches on. vht follows every switch and reports the exhausted budget."""
    scenario = vht.Scenario([
        vht.Bolus("drug.central", 300.0, 0.0),
        vht.Trigger("drug.concentration", 5.0, "drug.central", 20.0, unit="mg/h"),
    ])
    solution = vht.simulate(_iv_twin(), scenario, t1=24 * HOUR, throw=False, **TIGHT)
    assert int(solution.status) == vht.Status.SWITCH_BUDGET
