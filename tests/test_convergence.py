"""Observed convergence order of fixed-step solvers on vht's own models.

A hidden kink in a model shows up as a lost order. Errors are measured at the end of the
interval against an adaptive Tsit5 reference at rtol = atol = 1e-12, in the max-norm of the
state scaled by max(|y_ref|, 1); the observed order is the least-squares slope of log(error)
against log(dt) over the finest three step sizes.
"""

import diffrax
import jax.numpy as jnp
import numpy as np
import optimistix as optx
import pytest
from common_twins import circulation_steady_state, two_compartment

import vht

NEWTON = optx.Newton(rtol=1e-12, atol=1e-12)
EXPLICIT = diffrax.Bosh3()  # order 3
IMPLICIT_EULER = diffrax.ImplicitEuler(root_finder=NEWTON)  # order 1
KVAERNO3 = diffrax.Kvaerno3(root_finder=NEWTON)  # order 3


def _observed_order(errors, steps):
    errors, steps = np.asarray(errors), np.asarray(steps)
    slope, _ = np.polyfit(np.log(steps[-3:]), np.log(errors[-3:]), 1)
    return slope


def _errors(twin, y0, t_end, scenario, solver, subdivisions):
    reference = vht.simulate(twin, scenario, y0=y0, ts=jnp.array([t_end]), rtol=1e-12,
                             atol=1e-12, max_steps=200_000).ys[-1]
    scale = jnp.maximum(jnp.abs(reference), 1.0)
    errors = []
    for n in subdivisions:
        y = vht.simulate(twin, scenario, y0=y0, ts=jnp.array([t_end]), dt=t_end / n,
                         solver=solver, max_steps=10_000).ys[-1]
        errors.append(float(jnp.max(jnp.abs(y - reference) / scale)))
    return errors, [t_end / n for n in subdivisions]


@pytest.mark.parametrize("solver, theory", [(EXPLICIT, 3), (IMPLICIT_EULER, 1)],
                         ids=["Bosh3", "ImplicitEuler"])
def test_circulation_with_smooth_valves_keeps_its_order(solver, theory, record_property):
    twin, steady = circulation_steady_state("smooth")
    errors, steps = _errors(twin, steady.y, float(steady.period), None, solver,
                            [800, 1600, 3200, 6400])
    order = _observed_order(errors, steps)
    record_property("observed_order", round(float(order), 4))
    assert abs(order - theory) < 0.3, (order, errors)


def test_ideal_valves_cost_a_high_order_method_its_order(record_property):
    """The kink of an ideal valve at every opening and closing: Bosh3 falls far below 3."""
    twin, steady = circulation_steady_state("ideal")
    errors, steps = _errors(twin, steady.y, float(steady.period), None, EXPLICIT,
                            [800, 1600, 3200, 6400])
    order = _observed_order(errors, steps)
    record_property("observed_order", round(float(order), 4))
    assert order < 3 - 0.3, (order, errors)


@pytest.mark.parametrize("solver, theory", [(EXPLICIT, 3), (KVAERNO3, 3)],
                         ids=["Bosh3", "Kvaerno3"])
def test_pk_with_a_bolus_between_steps_keeps_its_order(solver, theory, record_property):
    """The bolus at 5.3 h falls inside a step; vht splits the solve there, so no order is lost."""
    twin = two_compartment()
    scenario = vht.Scenario([vht.OralDose("drug.depot", 400.0, 0.0),
                             vht.Bolus("drug.central", 200.0, 5.3 * vht.HOUR)])
    errors, steps = _errors(twin, None, 12 * vht.HOUR, scenario, solver, [24, 48, 96, 192])
    order = _observed_order(errors, steps)
    record_property("observed_order", round(float(order), 4))
    assert abs(order - theory) < 0.3, (order, errors)


def test_pk_with_an_infusion_window_between_steps_keeps_its_order(record_property):
    """The infusion starts at 1.3 h and stops at 7.1 h, inside steps: its edges are jump times
    for fixed-step solves too, so no order is lost."""
    twin = two_compartment()
    scenario = vht.Scenario([vht.Infusion("drug.central", 50.0, start=1.3 * vht.HOUR,
                                          duration=5.8 * vht.HOUR, unit="mg/h")])
    errors, steps = _errors(twin, None, 12 * vht.HOUR, scenario, EXPLICIT, [24, 48, 96, 192])
    order = _observed_order(errors, steps)
    record_property("observed_order", round(float(order), 4))
    assert abs(order - 3) < 0.3, (order, errors)
