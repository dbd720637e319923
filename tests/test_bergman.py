"""Bergman minimal model with Denti et al. (2010) population values: basal steady state, the
insulin-modified IVGTT, insulin sensitivity by autodiff, and a simulated population."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import vht
from physiology_models.glucose_insulin import bergman_minimal as bm

TS = jnp.arange(0.0, 241.0)  # minutes 0 ... 240: a full IVGTT sampling window
TIGHT = dict(rtol=1e-10, atol=1e-10)
BASAL_BAND = 5.0  # mg/dL: "back at basal"; Denti's residual error SD at basal is 4.8 mg/dL
# (sqrt(4.28^2 + (0.0227 * 91.34)^2): additive 4.28 mg/dL and proportional 2.27 %)
N_SUBJECTS = 400
TWIN = bm.minimal_model_twin()


def ivgtt(twin=TWIN, **doses):
    solution = vht.simulate(twin, bm.ivgtt(**doses), ts=TS, **TIGHT)
    return np.asarray(solution["glucose.glucose"]), solution


@pytest.fixture(scope="module")
def typical():
    """The typical subject's IVGTT, and the same program with the insulin dose left out."""
    return ivgtt()[0], ivgtt(insulin_dose=0.0)[0]


# -- published values and steady state -----------------------------------------------------------


def test_defaults_are_denti_2010():
    organ = TWIN["glucose"]
    values = {k: float(getattr(organ, k)) for k in ("S_G", "S_I", "p2", "V", "Gb", "Ib")}
    assert values == {"S_G": 0.0192, "S_I": 5.83e-5, "p2": 0.0254, "V": 1.70, "Gb": 91.34,
                      "Ib": 26.98}
    assert bm.OMEGA == {"S_G": 0.210, "V": 0.104, "S_I": 0.475, "p2": 0.379}
    assert float(TWIN["insulin"].Ib) == values["Ib"]


def test_basal_state_is_a_steady_state(record_property):
    y0 = TWIN.initial_state()
    rates = np.asarray(TWIN.rates(0.0, y0))
    record_property("max_abs_rate_at_basal", float(np.max(np.abs(rates))))
    assert np.max(np.abs(rates)) < 1e-15
    signals = dict(zip(TWIN.signal_names, np.asarray(TWIN.signals(0.0, y0))))
    assert signals["glucose.glucose"] == pytest.approx(91.34, rel=1e-15)
    assert signals["insulin.concentration"] == pytest.approx(26.98, rel=1e-15)
    # nothing given: four hours at basal (the IVGTT's program with both doses zero)
    g, _ = ivgtt(glucose_dose=0.0, insulin_dose=0.0)
    assert np.max(np.abs(g - 91.34)) < 1e-10


def test_ivgtt_glucose_jump_and_return_to_basal(typical, record_property):
    """0.3 g/kg glucose at 0 min, 0.03 U/kg insulin at 20 min: G(0) = Gb + 300 / V, then back
    within 5 mg/dL of basal by 180 min, and staying there until 240 min."""
    g, _ = typical
    gb = 91.34
    assert g[0] == pytest.approx(gb + 300.0 / 1.70, rel=1e-12)  # 267.81 mg/dL
    # before the insulin dose, insulin action is zero: a pure exponential at S_G
    expected = gb + 300.0 / 1.70 * np.exp(-0.0192 * np.arange(21.0))
    np.testing.assert_allclose(g[:21], expected, rtol=1e-9)
    deviation = np.abs(g - gb)
    back = int(np.argmax(deviation < BASAL_BAND))
    record_property("first_minute_within_5_mg_dl", float(back))
    record_property("nadir_mg_dl", float(g.min()))
    record_property("glucose_at_180_min_mg_dl", float(g[180]))
    assert back <= 180
    assert np.max(deviation[180:]) < BASAL_BAND


def test_insulin_lowers_glucose(typical, record_property):
    with_insulin, without_insulin = typical
    np.testing.assert_array_equal(with_insulin[:21], without_insulin[:21])
    assert np.all(with_insulin[21:] < without_insulin[21:])
    record_property("glucose_at_180_without_insulin_mg_dl", float(without_insulin[180]))
    assert without_insulin[180] - 91.34 > BASAL_BAND  # S_G alone is too slow to get back


# -- insulin sensitivity by autodiff ---------------------------------------------------------------


def equilibrated_glucose_rate(organ: bm.BergmanMinimalModel):
    """dG/dt as a function of glucose G and insulin I, with the insulin action X at its
    equilibrium for I (dX/dt = 0; dX/dt is linear in X, so one Newton step from 0 is exact)."""

    def rate(g, insulin):
        inputs = {"insulin": insulin}

        def x_rate(x):
            return organ.rates(0.0, {"Q": organ.V * g, "X": x}, inputs)["X"]

        x_eq = -x_rate(0.0) / jax.grad(x_rate)(0.0)
        return organ.rates(0.0, {"Q": organ.V * g, "X": x_eq}, inputs)["Q"] / organ.V

    return rate


def sensitivities(organ):
    """(S_G, S_I, p2) recovered from the model by autodiff at the basal state."""
    rate = equilibrated_glucose_rate(organ)
    s_g = -jax.grad(rate, argnums=0)(organ.Gb, organ.Ib)
    s_i = -jax.grad(jax.grad(rate, argnums=0), argnums=1)(organ.Gb, organ.Ib)
    p2 = -jax.grad(lambda x: organ.rates(0.0, {"Q": organ.V * organ.Gb, "X": x},
                                         {"insulin": organ.Ib})["X"])(0.0)
    return s_g, s_i, p2


def test_insulin_sensitivity_by_autodiff_at_basal(record_property):
    organ = TWIN["glucose"]
    s_g, s_i, p2 = sensitivities(organ)
    record_property("S_I_autodiff", float(s_i))
    np.testing.assert_allclose(s_i, 5.83e-5, rtol=1e-12)
    np.testing.assert_allclose(s_g, 0.0192, rtol=1e-12)
    np.testing.assert_allclose(p2, 0.0254, rtol=1e-12)
    # and off the population values, so that the check is not a coincidence of the defaults
    other = bm.BergmanMinimalModel(S_G=0.03, S_I=2e-4, p2=0.05, V=1.5, Gb=100.0, Ib=60.0)
    np.testing.assert_allclose(sensitivities(other), (0.03, 2e-4, 0.05), rtol=1e-12)


# -- the population ------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def population():
    params = bm.sample_population(jax.random.key(2010), N_SUBJECTS)

    def subject(p):
        twin = TWIN.replace({f"glucose.{k}": v for k, v in p.items()})
        solution = vht.simulate(twin, bm.ivgtt(), ts=TS, throw=False, **TIGHT)
        return (solution["glucose.glucose"], solution.status,
                jnp.stack(sensitivities(twin["glucose"])))

    glucose, status, recovered = jax.jit(jax.vmap(subject))(params)
    return params, np.asarray(glucose), np.asarray(status), np.asarray(recovered)


def test_population_reproduces_denti_variability(population, record_property):
    """Parameters recovered from the simulated subjects (V from the glucose jump, S_G from the
    decay before insulin, S_I and p2 by autodiff) have Denti's between-subject SDs on the log
    scale and correlations, within 3 standard errors of a sample of 400."""
    params, glucose, status, recovered = population
    assert np.all(status == vht.Status.OK)
    gb, n = 91.34, N_SUBJECTS
    found = {
        "V": 300.0 / (glucose[:, 0] - gb),
        "S_G": np.log((glucose[:, 0] - gb) / (glucose[:, 20] - gb)) / 20.0,
        "S_I": recovered[:, 1],
        "p2": recovered[:, 2],
    }
    for name, values in found.items():
        np.testing.assert_allclose(values, params[name], rtol=1e-7, err_msg=name)
    logs = {k: np.log(v) for k, v in found.items()}
    for name, omega in bm.OMEGA.items():
        sd = float(np.std(logs[name], ddof=1))
        cv = float(np.std(found[name], ddof=1) / np.mean(found[name]))
        record_property(f"{name}_log_sd", sd)
        record_property(f"{name}_arithmetic_cv", cv)
        assert abs(sd - omega) < 3 * omega / np.sqrt(2 * (n - 1)), (name, sd, omega)
        typical_value = bm.TYPICAL[name]
        geometric_mean = float(np.exp(np.mean(logs[name])))
        assert abs(np.log(geometric_mean / typical_value)) < 3 * omega / np.sqrt(n), name
    for (a, b), rho in bm.CORRELATION.items():
        r = float(np.corrcoef(logs[a], logs[b])[0, 1])
        record_property(f"corr_{a}_{b}", r)
        assert abs(np.arctanh(r) - np.arctanh(rho)) < 3 / np.sqrt(n - 3), (a, b, r)
    # how many simulated subjects are back within 5 mg/dL of basal at 180 min (reported)
    record_property("fraction_back_at_180_min", float(np.mean(np.abs(glucose[:, 180] - gb)
                                                              < BASAL_BAND)))


def test_uncorrelated_sampling_option():
    params = bm.sample_population(jax.random.key(1), 2000, correlated=False)
    r = np.corrcoef(np.log(params["S_I"]), np.log(params["p2"]))[0, 1]
    assert abs(r) < 3 / np.sqrt(2000 - 3)
