"""Resting and periodic steady states with conserved totals held fixed."""

import jax.numpy as jnp
import numpy as np
import pytest
from common_twins import circulation_steady_state, one_compartment

import vht


def test_periodic_circulation_repeats_after_one_beat_with_its_blood_volume():
    twin, steady = circulation_steady_state()
    assert bool(steady.converged) and steady.periodic
    np.testing.assert_allclose(steady.period, 60.0 / 72.0 / 60.0, rtol=1e-12)  # minutes
    after = vht.simulate(twin, y0=steady.y, ts=jnp.array([float(steady.period)]), rtol=1e-11,
                         atol=1e-11, max_steps=50_000).ys[-1]
    np.testing.assert_allclose(after, steady.y, rtol=1e-7, atol=1e-6)
    (group,) = twin.conserved_groups()
    np.testing.assert_allclose(jnp.sum(steady.y[group]), float(twin["circulation"].blood_volume),
                               rtol=1e-12)


def test_resting_circulation_is_a_physiological_adult():
    """The default adult at rest: values within textbook ranges."""
    twin, steady = circulation_steady_state()
    beat = jnp.linspace(0.0, float(steady.period), 201)
    solution = vht.simulate(twin, y0=steady.y, ts=beat, rtol=1e-9, atol=1e-9)
    pressure = np.asarray(solution["circulation.arterial_pressure"])
    lv = np.asarray(solution["circulation.left_ventricle"])
    assert 100 <= pressure.max() <= 140 and 60 <= pressure.min() <= 90
    assert 70 <= pressure.mean() <= 105
    assert 5.0 <= float(solution["circulation.cardiac_output"][-1]) <= 6.2
    assert 0.5 <= (lv.max() - lv.min()) / lv.max() <= 0.7
    assert 2 <= float(np.mean(solution["circulation.central_venous_pressure"])) <= 8


def test_resting_state_of_an_infused_drug_is_the_analytic_plateau():
    """A non-pulsatile twin: Newton on f(y) = 0. An organ with a constant input has a unique
    resting state; here the depot is empty and central = R / ke."""
    from typing import ClassVar

    class Infused(vht.AbstractOrgan):
        rate: jnp.ndarray = vht.parameter(6.0, unit="mg/h")
        ke: jnp.ndarray = vht.parameter(0.1, unit="1/h")
        states: ClassVar = (vht.State("amount", "mg", 1.0),)
        time_unit: ClassVar = "h"

        def rates(self, t, state, inputs):
            return {"amount": self.rate - self.ke * state["amount"]}

    result = vht.steady_state(vht.Twin({"drug": Infused()}))
    assert bool(result.converged) and not result.periodic
    np.testing.assert_allclose(result.y, [60.0], rtol=1e-10)


def test_closed_network_resting_state_keeps_its_total():
    """Two compliances joined by a resistance: the resting state equalises pressure and keeps
    the total volume that the start state had (the Jacobian alone is singular)."""
    from typing import ClassVar

    from vht.network import Compliance, Network, Resistance

    class Pair(vht.AbstractOrgan):
        states: ClassVar = (vht.State("a", "mL", 300.0), vht.State("b", "mL", 100.0))

        def rates(self, t, state, inputs):
            net = Network({"a": Compliance(2.0, 50.0), "b": Compliance(6.0, 20.0)},
                          {"r": Resistance(1.0)}, (("r", "a", "b"),))
            return net.rates(t, state)

        def conserved(self):
            return (("a", "b"),)

    result = vht.steady_state(vht.Twin({"pair": Pair()}))
    a, b = np.asarray(result.y)
    assert bool(result.converged)
    np.testing.assert_allclose(a + b, 400.0, rtol=1e-12)
    np.testing.assert_allclose((a - 50.0) / 2.0, (b - 20.0) / 6.0, rtol=1e-9)


def test_periodic_requires_a_pulsatile_organ():
    with pytest.raises(ValueError, match="needs an organ that declares a period"):
        vht.steady_state(one_compartment(), periodic=True)
