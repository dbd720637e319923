"""Pharmacokinetics against closed-form solutions (one-compartment oral) and mass balance."""

import jax.numpy as jnp
import numpy as np
import pytest
from common_twins import one_compartment, one_compartment_oral_concentration, two_compartment

import vht

HOURS = np.array([0.25, 0.5, 1.0, 2.0, 3.5, 5.0, 8.0, 12.0, 24.0])
TIGHT = dict(rtol=1e-12, atol=1e-12, max_steps=20_000)


@pytest.mark.parametrize(
    "ka, clearance, volume, lag, f",
    [
        (1.2, 3.0, 30.0, 0.0, 1.0),  # ka != ke
        (0.1, 3.0, 30.0, 0.0, 1.0),  # ka == ke (the limit the closed form needs separately)
        (1.2, 3.0, 30.0, 0.75, 0.8),  # with lag time and bioavailability
    ],
    ids=["ka-ne-ke", "ka-eq-ke", "lag-and-F"],
)
def test_one_compartment_oral_matches_closed_form(ka, clearance, volume, lag, f, record_property):
    twin = one_compartment(ka=ka, clearance=clearance, volume=volume, lag_time=lag,
                           bioavailability=f)
    dose = 320.0
    scenario = vht.Scenario([vht.OralDose("drug.depot", dose, time=0.0)])
    solution = vht.simulate(twin, scenario, ts=jnp.asarray(HOURS * vht.HOUR), **TIGHT)
    simulated = np.asarray(solution["drug.concentration"])
    expected = np.asarray(one_compartment_oral_concentration(HOURS, dose, ka, clearance, volume,
                                                             lag, f))
    after_lag = HOURS > lag
    relative = np.abs(simulated[after_lag] - expected[after_lag]) / expected[after_lag]
    record_property("max_relative_error", float(relative.max()))
    assert relative.max() < 1e-8, relative
    assert np.all(simulated[~after_lag] == 0.0)  # nothing arrives before the lag time


def test_dose_units_are_converted():
    twin = one_compartment()
    in_mg = vht.simulate(twin, vht.Scenario([vht.Bolus("drug.central", 250.0, 0.0)]), t1=60.0)
    in_g = vht.simulate(twin, vht.Scenario([vht.Bolus("drug.central", 0.25, 0.0, unit="g")]),
                        t1=60.0)
    np.testing.assert_allclose(in_g.ys, in_mg.ys, rtol=1e-12)


def test_constant_infusion_reaches_its_analytic_plateau():
    twin = one_compartment(clearance=3.0, volume=30.0)
    rate_mg_per_h = 12.0
    scenario = vht.Scenario([vht.Infusion("drug.central", rate_mg_per_h, unit="mg/h")])
    hours = np.array([1.0, 5.0, 10.0, 40.0])
    solution = vht.simulate(twin, scenario, ts=jnp.asarray(hours * 60.0), **TIGHT)
    ke = 3.0 / 30.0
    expected = rate_mg_per_h / 3.0 * (1.0 - np.exp(-ke * hours))
    np.testing.assert_allclose(solution["drug.concentration"], expected, rtol=1e-9)


def test_infusion_window_stops_on_time():
    """A 2-hour infusion: after it stops the concentration decays mono-exponentially."""
    twin = one_compartment(clearance=3.0, volume=30.0)
    scenario = vht.Scenario([vht.Infusion("drug.central", 60.0, start=30.0, duration=120.0,
                                          unit="mg/h")])
    hours = np.array([0.25, 1.5, 2.5, 4.0, 6.0])
    solution = vht.simulate(twin, scenario, ts=jnp.asarray(hours * 60.0), **TIGHT)
    ke, t_on, t_off = 0.1, 0.5, 2.5
    plateau = 60.0 / 3.0
    during = plateau * (1 - np.exp(-ke * (np.clip(hours, t_on, t_off) - t_on)))
    expected = np.where(hours <= t_off, during, during * np.exp(-ke * (hours - t_off)))
    np.testing.assert_allclose(solution["drug.concentration"], expected, rtol=1e-9, atol=1e-12)


def test_two_compartment_conserves_drug_mass():
    """depot + central + peripheral + eliminated = dose (elimination integrated by trapezoid)."""
    twin = two_compartment()
    dose = 500.0
    fine = jnp.linspace(0.0, 24 * 60.0, 20_001)
    solution = vht.simulate(twin, vht.Scenario([vht.OralDose("drug.depot", dose, 0.0)]),
                            ts=fine, **TIGHT)
    body = np.asarray(solution.ys).sum(axis=1)
    rate = float(twin["drug"].clearance) / 60.0 * np.asarray(solution["drug.concentration"])
    eliminated = np.concatenate([[0.0], np.cumsum((rate[1:] + rate[:-1]) / 2 * np.diff(fine))])
    np.testing.assert_allclose((body + eliminated)[::500], dose, rtol=1e-6)
    assert body[-1] < 0.5 * dose  # elimination really happened
