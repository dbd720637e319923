"""Sample-and-hold organs: discrete updates at clock ticks, as simglucose's per-minute steps."""

from typing import ClassVar

import jax.numpy as jnp
import numpy as np
import pytest

import vht


class HeldRate(vht.AbstractOrgan):
    """x grows at a rate held from the last tick; the rate is read from a parameter."""

    demand: jnp.ndarray = vht.parameter(1.0, unit="mL/min")
    states: ClassVar = (vht.State("x", "mL"), vht.State("held", "mL/min"),
                        vht.State("ticks", "1"))
    sample_period: ClassVar = 1.0  # minutes

    def rates(self, t, state, inputs):
        return {"x": state["held"], "held": 0.0 * state["held"], "ticks": 0.0 * state["ticks"]}

    def sample(self, t, state):
        return {"held": self.demand, "ticks": state["ticks"] + 1.0}


def test_updates_happen_at_every_tick_with_the_parameters_of_that_instant():
    twin = vht.Twin({"organ": HeldRate()})
    scenario = vht.Scenario([vht.ParameterStep("organ.demand", 3.0, time=2.5, duration=2.0)])
    ts = jnp.arange(0.0, 10.5, 0.5)
    solution = vht.simulate(twin, scenario, ts=ts, rtol=1e-10, atol=1e-10)
    ticks = np.asarray(solution["organ.ticks"])
    # ticks at 0, 1, ..., 9 (before t1 = 10); the save at a tick sees the update
    np.testing.assert_array_equal(ticks, np.floor(np.asarray(ts)) + 1 - (np.asarray(ts) == 10.0))
    # the demand of 3 mL/min is sampled at ticks 3 and 4 only (the step covers [2.5, 4.5))
    held = np.where((np.floor(ts) >= 3) & (np.floor(ts) <= 4), 3.0, 1.0)
    np.testing.assert_array_equal(np.asarray(solution["organ.held"])[:-1], held[:-1])
    np.testing.assert_allclose(solution["organ.x"][-1], 10.0 + 2 * 2.0, rtol=1e-10)


def test_sampling_organs_must_agree_on_a_period():
    class Slow(HeldRate):
        sample_period: ClassVar = 2.0

    twin = vht.Twin({"a": HeldRate(), "b": Slow()})
    with pytest.raises(ValueError, match="organs sample at different periods"):
        vht.simulate(twin, t1=5.0)


def test_sample_must_return_declared_states():
    class Wrong(HeldRate):
        def sample(self, t, state):
            return {"nonsense": state["x"]}

    with pytest.raises(ValueError, match=r"sample\(\) returns \['nonsense'\], which are not "
                                         "declared states"):
        vht.Twin({"w": Wrong()})


def test_sample_period_must_be_positive():
    with pytest.raises(ValueError, match="sample_period must be positive"):
        class Bad(HeldRate):
            sample_period: ClassVar = 0.0


def test_a_sampling_twin_needs_a_concrete_horizon():
    import jax

    twin = vht.Twin({"organ": HeldRate()})
    with pytest.raises(ValueError, match="needs concrete t0 and t1"):
        jax.jit(lambda t1: vht.simulate(twin, t1=t1).ys)(10.0)


def test_a_sampling_twin_runs_under_jit_with_a_python_horizon():
    import jax

    twin = vht.Twin({"organ": HeldRate()})
    ticks = jax.jit(lambda demand: vht.simulate(twin.replace({"organ.demand": demand}),
                                                t1=5.0, n_save=2)["organ.x"][-1])(2.0)
    np.testing.assert_allclose(ticks, 10.0, rtol=1e-8)
