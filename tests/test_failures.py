"""Honest failure: a failed solve has a failure status and NaN outputs, never inf, and inside
vmap it leaves the other members untouched."""

from typing import ClassVar

import diffrax
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from common_twins import one_compartment

import vht
from vht import State, parameter


class Fragile(vht.AbstractOrgan):
    """dx/dt = -sqrt(breakdown - t): NaN once t passes ``breakdown`` (minutes)."""

    breakdown: jnp.ndarray = parameter(100.0, unit="min")
    states: ClassVar = (State("x", "mL", 10.0),)

    def rates(self, t, state, inputs):
        return {"x": -0.01 * jnp.sqrt(self.breakdown - t)}


def _fragile_twins(breakdowns):
    return jax.vmap(lambda b: vht.Twin({"f": Fragile(breakdown=b)}))(jnp.asarray(breakdowns))


def test_step_budget_exhausted_gives_status_and_nan():
    twin = one_compartment()
    scenario = vht.Scenario([vht.Bolus("drug.central", 100.0, 0.0)])
    solution = vht.simulate(twin, scenario, t1=600.0, max_steps=3, throw=False)
    assert int(solution.status) == vht.Status.MAX_STEPS
    assert np.all(np.isnan(solution.ys)) and np.all(np.isnan(solution.signals))
    with pytest.raises(Exception, match="exhausted its step budget: raise max_steps"):
        vht.simulate(twin, scenario, t1=600.0, max_steps=3)


@pytest.mark.parametrize("stepping", ["adaptive", "fixed"])
def test_nan_vector_field_fails_and_spares_other_members(stepping):
    options = dict(dt=0.5) if stepping == "fixed" else {}
    run = jax.vmap(lambda tw: vht.simulate(tw, t1=50.0, n_save=11, throw=False, max_steps=2000,
                                           **options))
    mixed = run(_fragile_twins([100.0, 20.0, 200.0]))
    clean = run(_fragile_twins([100.0, 150.0, 200.0]))
    status = np.asarray(mixed.status)
    assert status[0] == vht.Status.OK and status[2] == vht.Status.OK
    assert status[1] != vht.Status.OK
    assert np.all(np.isnan(mixed.ys[1])) and not np.any(np.isinf(mixed.ys))
    # the healthy members are bitwise what they are in a batch without the failing one
    np.testing.assert_array_equal(mixed.ys[0], clean.ys[0])
    np.testing.assert_array_equal(mixed.ys[2], clean.ys[2])


def test_nan_failure_raises_when_asked():
    twin = vht.Twin({"f": Fragile(breakdown=20.0)})
    with pytest.raises(Exception, match="solver failed|became NaN|step budget"):
        vht.simulate(twin, t1=50.0, max_steps=2000)
    with pytest.raises(Exception, match="became NaN or infinite"):
        vht.simulate(twin, t1=50.0, dt=0.5)


def test_implausible_state_names_state_and_advice():
    twin = one_compartment()
    drain = vht.Scenario([vht.Bolus("drug.central", 10.0, 0.0),
                          vht.Infusion("drug.central", -100.0, unit="mg/h")])
    with pytest.raises(Exception, match=r"state drug.central \[mg\] left its plausible range "
                                        r"\[0.0, inf\]"):
        vht.simulate(twin, drain, t1=60.0)
    solution = vht.simulate(twin, drain, t1=60.0, throw=False)
    assert int(solution.status) == vht.Status.IMPLAUSIBLE
    unchecked = vht.simulate(twin, drain, t1=60.0, check_bounds=False)
    assert float(unchecked["drug.central"][-1]) < 0  # the user asked for raw numbers


def test_circulation_bleeding_dry_gives_its_advice():
    from common_twins import circulation_steady_state

    twin, steady = circulation_steady_state()
    bleed = vht.Scenario([vht.ParameterStep("circulation.hemorrhage_rate", 50.0)])  # mL/s
    with pytest.raises(Exception, match="lower the hemorrhage rate"):
        vht.simulate(twin, bleed, y0=steady.y, t1=3.0, max_steps=200_000)


def test_diffrax_inf_fill_never_escapes():
    """An event-terminated segment leaves diffrax's inf in unsaved slots; vht masks them."""
    twin = one_compartment()
    scenario = vht.Scenario([
        vht.Bolus("drug.central", 300.0, 0.0),
        vht.Trigger("drug.concentration", 5.0, "drug.central", 20.0, release=6.0, unit="mg/h"),
    ])
    solution = vht.simulate(twin, scenario, t1=24 * 60.0, n_save=50)
    assert np.all(np.isfinite(solution.ys))


def test_solver_override_is_recorded():
    solution = vht.simulate(one_compartment(), t1=10.0, solver=diffrax.Dopri5())
    assert dict(solution.config)["solver"] == "Dopri5"


def test_step_budget_in_vmap_fails_only_the_member_that_needs_more_steps():
    """A member with a thousandfold faster absorption needs far more explicit steps."""
    def batch(kas):
        twins = jax.vmap(lambda ka: one_compartment().replace({"drug.ka": ka}))(jnp.asarray(kas))
        scenario = vht.Scenario([vht.OralDose("drug.depot", 100.0, 0.0)])
        return jax.vmap(lambda tw: vht.simulate(tw, scenario, t1=600.0, n_save=5,
                                                max_steps=150, throw=False))(twins)

    mixed, clean = batch([1.2, 5000.0, 0.8]), batch([1.2, 1.0, 0.8])
    assert list(np.asarray(mixed.status)) == [vht.Status.OK, vht.Status.MAX_STEPS, vht.Status.OK]
    assert np.all(np.isnan(mixed.ys[1]))
    np.testing.assert_array_equal(mixed.ys[0], clean.ys[0])
    np.testing.assert_array_equal(mixed.ys[2], clean.ys[2])


def test_an_emptied_depot_within_the_solver_tolerance_is_not_implausible():
    # An oral dose saved only 9-24 h later: the depot is then nearly empty, and the solver's
    # own error (atol) can put it a hair below 0. Saved alone, those values once set the
    # bound check's scale, so a healthy run came back IMPLAUSIBLE (found by vht validate on
    # Theoph); the slack is now at least ten times atol.
    from physiology_models.twins import oral_pk

    twin = oral_pk().replace({"drug.ka": 3.9, "drug.clearance": 3.7, "drug.volume": 37.9})
    scenario = vht.Scenario([vht.OralDose("drug.depot", 319.8, 0.0)])
    solution = vht.simulate(twin, scenario, ts=jnp.array([541.8, 727.2, 1444.8]), t0=0.0,
                            rtol=1e-7, atol=1e-9, throw=False)
    assert int(solution.status) == vht.Status.OK
    assert np.all(np.isfinite(solution["drug.concentration"]))
    assert abs(float(solution["drug.depot"][-1])) < 1e-6
