"""Conserved-flow networks conserve their totals by construction."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from common_twins import circulation_steady_state

import vht
from vht.network import Clearance, Compliance, Network, Resistance, SmoothValve, softplus


def test_closed_circulation_conserves_blood_volume_to_round_off(record_property):
    """Six compartments, four valves, a hemorrhage-free beating heart: total volume is exact."""
    twin, steady = circulation_steady_state()
    solution = vht.simulate(twin, y0=steady.y, t1=0.5, n_save=101)  # 36 beats
    (group,) = twin.conserved_groups()
    totals = np.asarray(solution.ys)[:, group].sum(axis=1)
    relative = np.abs(totals - totals[0]) / totals[0]
    record_property("max_relative_drift", float(relative.max()))
    assert relative.max() < 1e-12, relative.max()
    np.testing.assert_allclose(totals[0], float(twin["circulation"].blood_volume), rtol=1e-12)


def test_hemorrhage_and_infusion_change_volume_by_exactly_their_amounts():
    twin, steady = circulation_steady_state()
    scenario = vht.Scenario([
        vht.ParameterStep("circulation.hemorrhage_rate", 300.0, time=0.1, duration=0.5,
                          unit="mL/min"),
        vht.Infusion("circulation.systemic_veins", 60.0, start=0.3, duration=1.0),
    ])
    solution = vht.simulate(twin, scenario, y0=steady.y, t1=1.5, n_save=4)
    volume = np.asarray(solution["circulation.blood_volume"])
    expected = float(twin["circulation"].blood_volume) - 300.0 * 0.5 + 60.0 * 1.0
    np.testing.assert_allclose(volume[-1], expected, rtol=1e-12)


def _random_closed_network():
    names = ["a", "b", "c", "d"]
    return Network(
        compartments={n: Compliance(1.0 + i, 100.0 * i) for i, n in enumerate(names)},
        conductances={"ab": Resistance(0.7), "bc": SmoothValve(0.1, 4.0), "cd": Resistance(2.0),
                      "da": Resistance(0.3), "ac": Resistance(1.1)},
        links=(("ab", "a", "b"), ("bc", "b", "c"), ("cd", "c", "d"), ("da", "d", "a"),
               ("ac", "a", "c")),
    )


def test_network_rates_and_solute_fluxes_sum_to_zero():
    network = _random_closed_network()
    assert network.closed
    key = jax.random.PRNGKey(0)
    volumes = dict(zip("abcd", 200.0 + 300.0 * jax.random.uniform(key, (4,))))
    rates = network.rates(0.0, volumes)
    total = sum(rates.values())
    assert abs(float(total)) <= 1e-12 * max(abs(float(r)) for r in rates.values())
    flows = network.flows(0.0, network.potentials(0.0, volumes))
    concentrations = dict(zip("abcd", jnp.array([1.0, 0.2, 5.0, 0.0])))
    solute = network.solute_rates(flows, concentrations)
    assert abs(float(sum(solute.values()))) < 1e-12 * max(abs(float(r)) for r in solute.values())


def test_solute_mass_is_conserved_along_a_trajectory():
    """A tracer carried by the flows of a closed network: its total mass stays exact."""
    network = _random_closed_network()
    names = list(network.compartments)

    def rates(t, y, args):
        volumes = dict(zip(names, y[:4]))
        masses = dict(zip(names, y[4:]))
        flows = network.flows(t, network.potentials(t, volumes))
        concentrations = {n: masses[n] / volumes[n] for n in names}
        dv = network.balance(flows)
        dm = network.solute_rates(flows, concentrations)
        return jnp.stack([dv[n] for n in names] + [dm[n] for n in names])

    import diffrax

    y0 = jnp.array([300.0, 400.0, 500.0, 600.0, 10.0, 0.0, 0.0, 0.0])
    solution = diffrax.diffeqsolve(diffrax.ODETerm(rates), diffrax.Tsit5(), 0.0, 50.0, 0.01, y0,
                                   saveat=diffrax.SaveAt(ts=jnp.linspace(0, 50.0, 11)),
                                   stepsize_controller=diffrax.PIDController(rtol=1e-8, atol=1e-8))
    volumes, masses = np.asarray(solution.ys[:, :4]), np.asarray(solution.ys[:, 4:])
    np.testing.assert_allclose(volumes.sum(1), 1800.0, rtol=1e-12)
    np.testing.assert_allclose(masses.sum(1), 10.0, rtol=1e-12)
    assert masses[-1, 2] > 0.1  # the tracer really moved


def test_network_rejects_bad_links():
    with pytest.raises(ValueError, match="names no conductance"):
        Network({"a": Compliance(1.0, 0.0)}, {}, (("x", "a", None),))
    with pytest.raises(ValueError, match="unknown compartment 'b'"):
        Network({"a": Compliance(1.0, 0.0)}, {"x": Resistance(1.0)}, (("x", "a", "b"),))
    with pytest.raises(ValueError, match="outside world to itself"):
        Network({"a": Compliance(1.0, 0.0)}, {"x": Resistance(1.0)}, (("x", None, None),))
    with pytest.raises(ValueError, match="source for unknown compartment"):
        Network({"a": Compliance(1.0, 0.0)}, {}, ()).balance({}, {"z": 1.0})


def test_clearance_to_the_outside_world_removes_mass():
    network = Network({"blood": vht.network.VolumeOfDistribution(10.0)},
                      {"kidney": Clearance(2.0)}, (("kidney", "blood", None),))
    assert not network.closed
    rates = network.rates(0.0, {"blood": jnp.asarray(50.0)})
    np.testing.assert_allclose(rates["blood"], -2.0 * 5.0)


def test_softplus_equals_jax_softplus_and_its_derivative_is_the_logistic():
    """vht.network.softplus drops jax's NaN guard (which SBML export would write as a
    piecewise) and must change nothing else: the same float64 values, bit for bit, and the
    logistic function as its derivative."""
    x = jnp.concatenate([jnp.linspace(-50.0, 50.0, 2001), jnp.array([-1e3, -1e-300, 0.0, 1e3])])
    np.testing.assert_array_equal(softplus(x), jax.nn.softplus(x))
    slope = jax.vmap(jax.grad(softplus))(x)
    np.testing.assert_allclose(slope, jax.nn.sigmoid(x), rtol=1e-14, atol=1e-300)
    # second derivatives too (forward over forward, as FOCE and Newton fits take them)
    curvature = jax.vmap(jax.jacfwd(jax.jacfwd(softplus)))(x)
    expected = jax.nn.sigmoid(x) * (1.0 - jax.nn.sigmoid(x))
    np.testing.assert_allclose(curvature, expected, rtol=1e-12, atol=1e-300)
