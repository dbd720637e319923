"""Differentiability: autodiff against finite differences, adjoints against each other,
gradients with respect to dose time and amount, and no recompilation on new values."""

import diffrax
import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from common_twins import one_compartment, two_compartment

import vht
import vht._simulate

SAVE = jnp.array([1.0, 3.0, 6.0, 9.0, 12.0]) * vht.HOUR
NAMES = ("drug.ka", "drug.clearance", "drug.central_volume", "drug.intercompartmental_clearance",
         "drug.peripheral_volume")


# Built outside any trace: a cached twin first built inside a jit trace would hold that
# trace's values.
BASE = two_compartment()


def _loss(theta, *, dose_time, amount, **options):
    """Sum of squared concentrations after an oral dose; theta are the five PK parameters."""
    twin = BASE.replace(dict(zip(NAMES, theta)))
    scenario = vht.Scenario([vht.OralDose("drug.depot", amount, dose_time)])
    solution = vht.simulate(twin, scenario, ts=SAVE, **options)
    return jnp.sum(solution["drug.concentration"] ** 2)


THETA = jnp.array([1.593, 2.76, 32.13, 8.0, 20.0])
FIXED = dict(dt=1.0, solver=diffrax.Tsit5(), max_steps=2000)


def test_autodiff_matches_central_differences_on_a_fixed_step_solve(record_property):
    dose_time, amount = jnp.array(30.5), jnp.array(320.0)
    loss = jax.jit(lambda th, tau, a: _loss(th, dose_time=tau, amount=a, **FIXED))
    grad = jax.jit(jax.grad(lambda th, tau, a: _loss(th, dose_time=tau, amount=a, **FIXED),
                            argnums=(0, 1, 2)))
    g_theta, g_time, g_amount = grad(THETA, dose_time, amount)
    autodiff = np.concatenate([np.asarray(g_theta), [float(g_time), float(g_amount)]])

    def perturbed(k, h):
        theta, tau, a = THETA, dose_time, amount
        if k < 5:
            theta = theta.at[k].add(h)
        elif k == 5:
            tau = tau + h
        else:
            a = a + h
        return float(loss(theta, tau, a))

    central = []
    for k, x in enumerate([*np.asarray(THETA), float(dose_time), float(amount)]):
        h = 1e-5 * abs(x)
        central.append((perturbed(k, h) - perturbed(k, -h)) / (2 * h))
    relative = np.abs(autodiff - np.array(central)) / np.abs(np.array(central))
    record_property("max_relative_error", float(relative.max()))
    assert relative.max() < 1e-6, relative


def test_adjoints_agree(record_property):
    """Recursive checkpointing, direct (forward-over-reverse-capable) and forward mode."""
    tight = dict(rtol=1e-10, atol=1e-10, max_steps=4096)
    kwargs = dict(dose_time=jnp.array(30.5), amount=jnp.array(320.0), **tight)
    checkpoint = jax.grad(lambda th: _loss(th, adjoint=diffrax.RecursiveCheckpointAdjoint(),
                                           **kwargs))(THETA)
    direct = jax.grad(lambda th: _loss(th, adjoint=diffrax.DirectAdjoint(), **kwargs))(THETA)
    forward = jax.jacfwd(lambda th: _loss(th, adjoint=diffrax.ForwardMode(), **kwargs))(THETA)
    worst = 0.0
    for other in (direct, forward):
        relative = np.abs(np.asarray(other) - np.asarray(checkpoint)) / np.abs(
            np.asarray(checkpoint))
        worst = max(worst, float(relative.max()))
    record_property("max_relative_disagreement", worst)
    assert worst < 1e-10


def test_gradient_wrt_dose_time_and_amount_is_exact_and_nonzero():
    """C(t) after an IV bolus D at tau: dC/dD = C/D and dC/dtau = ke C (a later dose has
    decayed less). Both checked against the closed form at tight tolerance."""
    twin = one_compartment(clearance=3.0, volume=30.0)
    t_obs = jnp.array([8.0 * vht.HOUR])

    def concentration(amount, time):
        scenario = vht.Scenario([vht.Bolus("drug.central", amount, time)])
        solution = vht.simulate(twin, scenario, ts=t_obs, rtol=1e-12, atol=1e-12)
        return solution["drug.concentration"][0]

    amount, time = 300.0, 2.0 * vht.HOUR
    d_amount, d_time = jax.grad(concentration, argnums=(0, 1))(amount, time)
    c = 10.0 * np.exp(-0.1 * 6.0)
    ke_per_minute = 0.1 / 60.0
    assert d_amount != 0.0 and d_time != 0.0
    np.testing.assert_allclose(d_amount, c / amount, rtol=1e-8)
    np.testing.assert_allclose(d_time, ke_per_minute * c, rtol=1e-8)


def test_no_recompilation_when_only_values_change(monkeypatch):
    traces = []
    original = vht._simulate._resolve
    monkeypatch.setattr(vht._simulate, "_resolve",
                        lambda *a: traces.append(1) or original(*a))
    scenario = vht.Scenario([vht.OralDose("drug.depot", 100.0, 0.0)])
    base = two_compartment()
    vht.simulate(base, scenario, t1=600.0, n_save=7)
    first = len(traces)
    for k, value in enumerate([1.0, 2.0, 3.5]):
        twin = base.replace({"drug.ka": value, "drug.clearance": 1.0 + k})
        other = vht.Scenario([vht.OralDose("drug.depot", 50.0 * (k + 1), 10.0 * k)])
        vht.simulate(twin, other, t1=600.0 + k, n_save=7)
    assert first <= 1 and len(traces) == first


def test_a_jitted_function_of_parameters_traces_once():
    @eqx.filter_jit
    @eqx.debug.assert_max_traces(max_traces=1)
    def final_concentration(twin):
        scenario = vht.Scenario([vht.OralDose("drug.depot", 100.0, 0.0)])
        return vht.simulate(twin, scenario, t1=600.0, n_save=3)["drug.concentration"][-1]

    values = [final_concentration(two_compartment().replace({"drug.clearance": c}))
              for c in (1.0, 2.0, 4.0)]
    assert values[0] > values[1] > values[2]  # faster clearance, lower concentration


@pytest.mark.parametrize("name", ["drug.ka", "drug.clearance"])
def test_gradients_are_finite_through_an_oral_lag(name):
    twin = one_compartment(lag_time=0.5)

    def final(value):
        scenario = vht.Scenario([vht.OralDose("drug.depot", 100.0, 0.0)])
        tw = twin.replace({name: value})
        return vht.simulate(tw, scenario, ts=jnp.array([6 * vht.HOUR]))["drug.concentration"][0]

    g = jax.grad(final)(jnp.asarray(float(twin.parameters()[name])))
    assert np.isfinite(g) and g != 0.0
