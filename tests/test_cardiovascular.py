"""Cardiovascular library: the baroreflex's delay chains, the beat-averaged circulation's
consistency with the pulsatile one, conservation, and physiological direction."""

import diffrax
import jax.numpy as jnp
import numpy as np
import pytest

import vht
from physiology_models.cardiovascular import Baroreflex
from physiology_models.cardiovascular.baroreflex import erlang_chain_rates
from physiology_models.twins import mean_flow_circulation, pulsatile_circulation

# Ursino's delays and effector time constants: (delay, tau, documented bound on the deviation
# of the chain-delayed effector's normalised step response from the exactly delayed one)
EFFECTORS = {"elastance": (2.0, 8.0, 0.06), "resistance": (2.0, 6.0, 0.075),
             "venous volume": (5.0, 20.0, 0.06), "sympathetic period": (2.0, 2.0, 0.18),
             "vagal period": (0.2, 1.5, 0.03)}


@pytest.mark.parametrize("name", list(EFFECTORS))
def test_erlang_chain_keeps_the_published_mean_delay(name, record_property):
    delay, tau, bound = EFFECTORS[name]

    def rates(t, y, args):
        stages = erlang_chain_rates(1.0, tuple(y[:3]), delay)
        return jnp.stack([*stages, (y[2] - y[3]) / tau])

    ts = jnp.linspace(0.0, 12 * (delay + tau), 6001)
    solution = diffrax.diffeqsolve(
        diffrax.ODETerm(rates), diffrax.Tsit5(), 0.0, ts[-1], None, jnp.zeros(4),
        saveat=diffrax.SaveAt(ts=ts), max_steps=100_000,
        stepsize_controller=diffrax.PIDController(rtol=1e-11, atol=1e-12))
    t, chain, effector = np.asarray(ts), np.asarray(solution.ys[:, 2]), np.asarray(
        solution.ys[:, 3])
    mean_delay = np.trapezoid(1.0 - chain, t)  # first moment of the chain's impulse response
    exact = np.where(t >= delay, 1.0 - np.exp(-(t - delay) / tau), 0.0)
    deviation = np.abs(effector - exact).max()
    record_property("mean_delay_s", float(mean_delay))
    record_property("max_step_response_deviation", float(deviation))
    np.testing.assert_allclose(mean_delay, delay, rtol=1e-6)
    assert deviation < bound


def test_baroreflex_static_characteristic_and_reference_point():
    reflex = Baroreflex()
    at_rest = reflex.observe(0.0, reflex.initial_state())
    for name, neutral in (("heart_period_change", 0.0), ("reflex_resistance_factor", 1.0),
                          ("lv_elastance_factor", 1.0), ("venous_unstressed_volume_change", 0.0)):
        np.testing.assert_allclose(at_rest[name], neutral, atol=1e-12)
    low = reflex.observe(0.0, reflex.equilibrium(60.0))
    high = reflex.observe(0.0, reflex.equilibrium(120.0))
    # hypotension: faster heart, constriction, stronger contraction, venous mobilisation
    assert float(low["heart_rate"]) > 100 > 72 > float(high["heart_rate"])
    assert float(low["reflex_resistance_factor"]) > 1.3 and float(low["lv_elastance_factor"]) > 1.1
    assert float(low["venous_unstressed_volume_change"]) < -400
    f_cs, _, _ = reflex.firing(jnp.asarray(92.0))  # at P_n the afferent sits mid-range
    np.testing.assert_allclose(f_cs, (2.52 + 47.78) / 2, rtol=1e-12)


@pytest.fixture(scope="module")
def mean_flow():
    twin = mean_flow_circulation(reflex=True)
    return twin, vht.steady_state(twin)


@pytest.fixture(scope="module")
def pulsatile():
    twin = pulsatile_circulation(reflex=True)
    periodic = vht.steady_state(pulsatile_circulation(reflex=False))
    n_circulation = len(periodic.y)
    y0 = jnp.concatenate([periodic.y, twin.initial_state()[n_circulation:]])
    return twin, y0


def _beat_means(solution, names, last):
    return {n: float(np.mean(np.asarray(solution[n])[-last:])) for n in names}


MEASURES = ("circulation.mean_arterial_pressure", "circulation.cardiac_output",
            "circulation.central_venous_pressure")


def test_mean_flow_matches_pulsatile_at_rest(mean_flow, pulsatile, record_property):
    twin, steady = mean_flow
    averaged = {k: float(v) for k, v in twin.observe(0.0, steady.y).items()}
    p_twin, y0 = pulsatile
    beat = 60.0 / 72.0 / 60.0
    solution = vht.simulate(p_twin, y0=y0, ts=jnp.linspace(0.0, beat, 201)[:-1] + 1.0,
                            t0=0.0, max_steps=200_000)
    pulsatile_means = _beat_means(solution, ("circulation.arterial_pressure",
                                             "circulation.cardiac_output",
                                             "circulation.central_venous_pressure"), 200)
    pairs = zip(MEASURES, ("circulation.arterial_pressure", "circulation.cardiac_output",
                           "circulation.central_venous_pressure"))
    for mean_name, pulse_name in pairs:
        error = abs(averaged[mean_name] / pulsatile_means[pulse_name] - 1.0)
        record_property(f"rest_relative_error_{mean_name.split('.')[1]}", error)
        assert error < 0.05, (mean_name, averaged[mean_name], pulsatile_means[pulse_name])


def test_mean_flow_matches_pulsatile_after_a_ten_percent_hemorrhage(mean_flow, pulsatile,
                                                                   record_property):
    """550 mL (10 %) bled over 5 minutes, both with the baroreflex; compared 4 minutes after."""
    bleed = vht.Scenario([vht.ParameterStep("circulation.hemorrhage_rate", 110.0, time=1.0,
                                            duration=5.0, unit="mL/min")])
    twin, steady = mean_flow
    averaged = vht.simulate(twin, bleed, y0=steady.y, ts=jnp.array([10.0]))
    p_twin, y0 = pulsatile
    beat = 60.0 / 90.0 / 60.0  # about one beat at the bled heart rate
    ts = jnp.concatenate([jnp.array([5.0]), jnp.linspace(10.0 - 3 * beat, 10.0, 151)])
    pulsed = vht.simulate(p_twin, bleed, y0=y0, ts=ts, max_steps=400_000)
    pulsatile_means = _beat_means(pulsed, ("circulation.arterial_pressure",
                                           "circulation.cardiac_output",
                                           "circulation.central_venous_pressure"), 150)
    pairs = zip(MEASURES, ("circulation.arterial_pressure", "circulation.cardiac_output",
                           "circulation.central_venous_pressure"))
    for mean_name, pulse_name in pairs:
        value = float(averaged[mean_name][-1])
        error = abs(value / pulsatile_means[pulse_name] - 1.0)
        record_property(f"hemorrhage_relative_error_{mean_name.split('.')[1]}", error)
        assert error < 0.10, (mean_name, value, pulsatile_means[pulse_name])
    np.testing.assert_allclose(averaged["circulation.blood_volume"][-1], 5500.0 - 550.0,
                               rtol=1e-10)


def test_mean_flow_conserves_blood_and_fluids_restore_it(mean_flow):
    twin, steady = mean_flow
    scenario = vht.Scenario([
        vht.ParameterStep("circulation.hemorrhage_rate", 1375.0 / 10.0, time=1.0, duration=10.0,
                          unit="mL/min"),
        vht.Infusion("circulation.systemic_veins", 1375.0 / 20.0, start=30.0, duration=20.0),
    ])
    solution = vht.simulate(twin, scenario, y0=steady.y, ts=jnp.array([0.0, 25.0, 120.0]))
    volume = np.asarray(solution["circulation.blood_volume"])
    np.testing.assert_allclose(volume, [5500.0, 5500.0 - 1375.0, 5500.0], rtol=1e-12)
    pressure = np.asarray(solution["circulation.mean_arterial_pressure"])
    assert pressure[1] < pressure[0] - 15  # 25 % loss lowers pressure
    np.testing.assert_allclose(pressure[2], pressure[0], rtol=1e-3)  # fluids restore it


@pytest.mark.parametrize("factor", [0.8, 1.25])
def test_higher_resistance_raises_pressure(factor):
    base = mean_flow_circulation(reflex=False)
    changed = base.replace({"circulation.systemic_resistance": 0.94 * factor})
    map_base = float(base.observe(0.0, vht.steady_state(base).y)[
        "circulation.mean_arterial_pressure"])
    map_changed = float(changed.observe(0.0, vht.steady_state(changed).y)[
        "circulation.mean_arterial_pressure"])
    assert (map_changed - map_base) * (factor - 1.0) > 0
