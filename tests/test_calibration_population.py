"""Population (FOCE) fits of the theophylline data against R nlme (fm3 and fm1, Pinheiro and
Bates 2000), with the references stored in experiments/calibration/r_references/.

nlme parameterises the one-compartment oral model by lKe, lKa and lCl (dose in mg/kg); vht's
twin by ka, clearance and volume. With V = Cl/Ke, the fixed effects map as theta_ka = lKa,
theta_cl = lCl, theta_v = lCl - lKe, and a random effect on lCl moves both clearance and
volume (the design matrix says so).
"""

from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import pandas as pd
import pytest

import calibration as cal

REFERENCES = Path(__file__).resolve().parents[1] / "experiments" / "calibration" / "r_references"


def nlme_reference(fit: str) -> dict[str, float]:
    table = pd.read_csv(REFERENCES / "theoph_nlme_fits.csv")
    rows = table[table["fit"] == fit]
    return dict(zip(rows["quantity"], rows["value"]))


@pytest.fixture(scope="session")
def records():
    return cal.validate_records(cal.theoph_records(dose_per_kg=True))


def fm3_outer(population, reference):
    lke, lka, lcl = (reference[f"fixed.{k}"] for k in ("lKe", "lKa", "lCl"))
    sds = jnp.asarray([reference["sd.lKa"], reference["sd.lCl"]])
    return population.pack(jnp.asarray([lka, lcl, lcl - lke]), jnp.diag(sds**2),
                           jnp.asarray([np.log(reference["sd.Residual"])]))


@pytest.fixture(scope="session")
def fm3(records):
    return cal.fit_population(cal.theoph_population(), records)


def test_foce_likelihood_at_nlme_estimates(records, record_property):
    """The objective apart from the optimiser: nlme's fm3 estimates in, its logLik out."""
    population = cal.theoph_population()
    reference = nlme_reference("fm3")
    value = cal.population_minus_2_log_likelihood(population, records,
                                                  fm3_outer(population, reference))
    record_property("foce_loglik_at_nlme_fm3", -0.5 * value)
    assert abs(-0.5 * value - reference["logLik"]) < 0.01


def test_foce_gradient_matches_finite_differences(records, record_property):
    population = cal.theoph_population()
    outer = fm3_outer(population, nlme_reference("fm3")) + 0.05
    value, gradient = cal.population_minus_2_log_likelihood(population, records, outer,
                                                            gradient=True)
    differences = []
    for i in range(outer.size):
        h = 1e-5
        up = cal.population_minus_2_log_likelihood(population, records, outer.at[i].add(h))
        down = cal.population_minus_2_log_likelihood(population, records, outer.at[i].add(-h))
        differences.append((up - down) / (2 * h))
    error = np.max(np.abs(np.asarray(gradient) - differences) / (1.0 + np.abs(differences)))
    record_property("foce_gradient_vs_fd", error)
    assert np.isfinite(value)
    assert error < 1e-5


def test_gradient_pass_matches_differentiating_the_objective(records, record_property):
    """The fits' gradient (written out from one model pass at the modes,
    ``calibration/_foce_gradient.py``) against JAX differentiating -2 log L itself (reverse
    mode through the modes' implicit derivative), for fm1's full covariance of three
    effects."""
    population = cal.theoph_population(("lKe", "lKa", "lCl"), "full")
    outer = population.initial() + 0.05
    value, gradient = cal.population_minus_2_log_likelihood(population, records, outer,
                                                            gradient=True)
    batch = cal.read_subjects(records, cal.subject_ids(records), population.problem.observed,
                              population.problem.dose_units,
                              population.problem.minutes_per_time_unit)
    expected_value, expected = jax.jit(jax.value_and_grad(
        lambda o: population.minus_2_log_likelihood(o, batch)))(outer)
    error = float(np.max(np.abs(gradient - np.asarray(expected)) / (1.0 + np.abs(expected))))
    record_property("foce_gradient_pass_vs_autodiff", error)
    assert abs(value - float(expected_value)) < 1e-9 * abs(value)
    assert error < 1e-9


@pytest.mark.parametrize("error", ["combined", "log-normal"])
def test_gradient_pass_with_error_models_that_depend_on_the_prediction(records, error,
                                                                        record_property):
    """The written-out gradient where the residual variance depends on the prediction
    (combined error: the weights move with eta and theta) and where the normal scale is not
    the prediction's own (log-normal: d log f / d f enters J and its derivatives)."""
    from physiology_models.twins import oral_pk

    model = cal.Combined(0.3, 0.1) if error == "combined" else cal.LogNormalError(0.2)
    twin = oral_pk().replace({"drug.ka": 1.5, "drug.clearance": 0.04, "drug.volume": 0.5})
    problem = cal.Problem(twin, [cal.FreeParameter(n) for n in
                                 ("drug.ka", "drug.clearance", "drug.volume")],
                          {"drug.concentration": model}, {"oral": "drug.depot"}, time_unit="h")
    population = cal.PopulationProblem(problem, ["drug.ka", "drug.clearance"])
    # no pre-dose samples: a log-normal model of a prediction of 0 has no density (and
    # JAX's own derivatives of it are NaN)
    kept = records[records["value"].isna() | (records["time"] > 0)]
    outer = population.initial() + 0.05
    value, gradient = cal.population_minus_2_log_likelihood(population, kept, outer,
                                                            gradient=True)
    batch = cal.read_subjects(kept, cal.subject_ids(kept), problem.observed,
                              problem.dose_units, problem.minutes_per_time_unit)
    expected_value, expected = jax.jit(jax.value_and_grad(
        lambda o: population.minus_2_log_likelihood(o, batch)))(outer)
    error_ = float(np.max(np.abs(gradient - np.asarray(expected)) / (1.0 + np.abs(expected))))
    record_property(f"foce_gradient_pass_vs_autodiff_{error}", error_)
    assert abs(value - float(expected_value)) < 1e-9 * abs(value)
    assert error_ < 1e-9


def differences_from_nlme(fit, reference, effects) -> dict[str, float]:
    """vht's estimates mapped to nlme's lKe, lKa, lCl, and their largest differences."""
    theta = fit.estimates
    lcl = theta["theta.drug.clearance"]
    fixed = {"lKa": theta["theta.drug.ka"], "lCl": lcl, "lKe": lcl - theta["theta.drug.volume"]}
    sds = fit.random_effect_sds()
    return {
        "fixed_max_abs_log_diff": max(abs(fixed[k] - reference[f"fixed.{k}"]) for k in fixed),
        "random_sd_max_rel_diff": max(abs(sds[k] / reference[f"sd.{k}"] - 1) for k in effects),
        "residual_sd_rel_diff": abs(np.exp(theta["error.drug.concentration.sd"])
                                    / reference["sd.Residual"] - 1),
        "loglik_diff": abs(fit.log_likelihood - reference["logLik"])}


def assert_matches_nlme(fit, reference, effects, label, record_property):
    errors = differences_from_nlme(fit, reference, effects)
    for name, value in errors.items():
        record_property(f"{label}_{name}", value)
    record_property(f"{label}_seconds", fit.seconds)
    assert fit.eta_converged.all()
    assert errors["fixed_max_abs_log_diff"] < 0.03
    assert errors["random_sd_max_rel_diff"] < 0.05
    assert errors["residual_sd_rel_diff"] < 0.02
    assert errors["loglik_diff"] < 0.2


# tests sharing the fm3 fit run on one xdist worker (tests/run_suite.py uses --dist loadgroup)
@pytest.mark.xdist_group("theoph_fm3")
def test_fm3_matches_nlme(fm3, record_property):
    assert_matches_nlme(fm3, nlme_reference("fm3"), ("lKa", "lCl"), "fm3", record_property)
    # -2 log L keeps every constant; NONMEM's OFV drops N_obs log(2 pi)
    assert fm3.objective_function_value == pytest.approx(
        fm3.minus_2_log_likelihood - 132 * np.log(2 * np.pi))


@pytest.mark.xdist_group("theoph_fm3")
def test_fm3_empirical_bayes_and_standard_errors(fm3, record_property):
    reference = nlme_reference("fm3")
    ranef = pd.read_csv(REFERENCES / "theoph_fm3_ranef.csv")
    ranef["Subject"] = ranef["Subject"].astype(str)
    ranef = ranef.set_index("Subject").loc[fm3.subjects]
    eta_error = np.max(np.abs(fm3.eta - ranef[["lKa", "lCl"]].to_numpy()))
    # SE of lKe = theta_cl - theta_v, a linear combination of the estimates
    names = list(fm3.estimates)
    weights_lke = np.zeros(len(names))
    weights_lke[names.index("theta.drug.clearance")] = 1.0
    weights_lke[names.index("theta.drug.volume")] = -1.0
    se = {"lKa": fm3.standard_errors["theta.drug.ka"],
          "lCl": fm3.standard_errors["theta.drug.clearance"],
          "lKe": fm3.standard_error(weights_lke)}
    se_error = max(abs(se[k] / reference[f"se.{k}"] - 1) for k in se)
    record_property("fm3_ebe_max_abs_diff", eta_error)
    record_property("fm3_se_max_rel_diff", se_error)
    assert eta_error < 0.05
    assert se_error < 0.15


def test_fm1_full_covariance_matches_nlme(records, record_property):
    """fm1: correlated random effects on lKe, lKa and lCl (V = Cl/Ke moves with both)."""
    population = cal.theoph_population(("lKe", "lKa", "lCl"), covariance="full")
    fit = cal.fit_population(population, records)
    assert_matches_nlme(fit, nlme_reference("fm1"), ("lKe", "lKa", "lCl"), "fm1",
                        record_property)


def test_outer_product_newton_reaches_the_optimum_lbfgs_reaches(record_property):
    """On 60 synthetic subjects (10 per outer unknown) ``auto`` takes the outer-product
    steps: the same optimum as L-BFGS-B alone, in fewer steps; Theoph's 12 subjects are too
    few for it, and fm3 there runs L-BFGS-B (its test above checks it against nlme)."""
    population = cal.theoph_population()
    truth = population.pack(jnp.asarray([0.47, -3.23, -0.77]),
                            jnp.diag(jnp.asarray([0.64, 0.17]) ** 2), jnp.log(jnp.asarray([0.7])))
    records, _ = cal.simulate_population(population, truth, [0.25, 0.5, 1, 2, 3.5, 5, 7, 9, 12,
                                                             24], 4.5, n_subjects=60, seed=3)
    products = cal.fit_population(population, records)
    lbfgs = cal.fit_population(population, records, optimizer="lbfgs")
    record_property("outer_product_steps", len(products.history))
    record_property("lbfgs_steps", len(lbfgs.history))
    assert products.message.startswith("one expectation-maximisation step, then outer-product "
                                       "Newton")
    # the step from the default start lowered -2 log L (it is the first entry of the history)
    guess = cal.population_minus_2_log_likelihood(population, records, population.initial())
    assert products.history[0] < guess
    assert lbfgs.message.startswith("L-BFGS-B")
    assert len(products.history) < len(lbfgs.history)
    assert abs(products.minus_2_log_likelihood - lbfgs.minus_2_log_likelihood) < 1e-7
    np.testing.assert_allclose(products.outer, lbfgs.outer, atol=1e-6)
    # each from the observed information where its optimiser stopped, a little apart
    np.testing.assert_allclose(np.sqrt(np.diag(products.covariance)),
                               np.sqrt(np.diag(lbfgs.covariance)), rtol=1e-3)
    np.testing.assert_allclose(products.covariance, lbfgs.covariance,
                               atol=1e-3 * np.max(np.diag(lbfgs.covariance)))
    with pytest.raises(ValueError, match="optimizer must be 'auto', 'outer_product' or"):
        cal.fit_population(population, records, optimizer="newton")


@pytest.mark.parametrize("covariance", ["diagonal", "full"])
def test_expectation_maximisation_step(covariance):
    """The step that moves the default start of a many-subject fit: theta takes up the mean
    of the modes (every subject's unknowns theta + D eta_i stay where they were once the
    modes are centred), Omega becomes the modes' covariance plus the mean conditional
    covariance (its diagonal for a diagonal Omega), the error parameters are those given
    (``_expected_error_parameters``)."""
    from calibration._population import _expectation_maximisation_step

    population = cal.theoph_population(("lKe", "lKa", "lCl"), covariance=covariance)
    rng = np.random.default_rng(0)
    n, q = 40, population.q
    outer = rng.normal(size=len(population.names))
    eta = rng.normal(0.3, 0.5, size=(n, q))
    factors = rng.normal(size=(n, q, q)) * 0.2
    conditional = factors @ factors.transpose(0, 2, 1) + 0.01 * np.eye(q)
    first = eta.sum(axis=0)
    second = np.sum(eta[:, :, None] * eta[:, None, :] + conditional, axis=0)
    error = np.array([0.7])
    new = np.asarray(_expectation_maximisation_step(
        population, jnp.asarray(outer), jnp.asarray(first), jnp.asarray(second),
        jnp.asarray(float(n)), jnp.asarray(error)))
    design = np.asarray(population.design)
    mean = eta.mean(axis=0)
    theta, theta_new = outer[: population.n_fixed], new[: population.n_fixed]
    np.testing.assert_allclose(theta_new + (eta - mean) @ design.T, theta + eta @ design.T,
                               atol=1e-13)
    centred = eta - mean
    expected = np.mean(centred[:, :, None] * centred[:, None, :] + conditional, axis=0)
    if covariance == "diagonal":
        expected = np.diag(np.diag(expected))
    np.testing.assert_allclose(np.asarray(population.omega(jnp.asarray(new))), expected,
                               atol=1e-13)
    np.testing.assert_array_equal(new[-1:], error)


@pytest.mark.parametrize("error", ["additive", "proportional"])
def test_expected_error_parameters_closed_form(records, error):
    """The M-step for the error parameters where it has a closed form: the residual variance
    on the normal scale is the mean of (y - f)^2 + u (additive, sd) or of ((y - f)^2 + u) / f^2
    (proportional, cv), u being each row's variance of the prediction under the subject's
    conditional distribution."""
    from calibration._population import _expected_error_parameters
    from physiology_models.twins import oral_pk

    model = cal.Additive(0.5) if error == "additive" else cal.Proportional(0.2)
    twin = oral_pk().replace({"drug.ka": 1.5, "drug.clearance": 0.04, "drug.volume": 0.5})
    problem = cal.Problem(twin, [cal.FreeParameter(n) for n in
                                 ("drug.ka", "drug.clearance", "drug.volume")],
                          {"drug.concentration": model}, {"oral": "drug.depot"}, time_unit="h")
    population = cal.PopulationProblem(problem, ["drug.ka", "drug.clearance"])
    kept = records[records["value"].isna() | (records["time"] > 0)]  # f > 0 on every row
    batch = jax.tree.map(jnp.asarray, cal.read_subjects(
        kept, cal.subject_ids(kept), problem.observed, problem.dose_units,
        problem.minutes_per_time_unit))
    rng = np.random.default_rng(1)
    n, m = batch.values.shape
    eta = rng.normal(0.0, 0.3, size=(n, population.q))
    fitted = np.asarray(batch.values) * np.exp(rng.normal(0.0, 0.2, size=(n, m))) + 0.1
    spread = rng.uniform(0.0, 0.05, size=(n, m))
    outer = np.asarray(population.initial()) - 1.5  # the error parameter far below
    found = np.asarray(jax.jit(
        lambda o, e, f, u: _expected_error_parameters(population, batch, o, e, f, u,
                                                      lambda x: x))(outer, eta, fitted, spread))
    mask = np.asarray(batch.mask)
    squares = (np.asarray(batch.values) - fitted) ** 2 + spread
    if error == "proportional":
        squares = squares / fitted**2
    expected = 0.5 * np.log(np.sum(squares[mask]) / np.sum(mask))
    assert abs(expected - outer[-1]) > 1.0  # the Newton steps had a way to go
    np.testing.assert_allclose(found, [expected], atol=1e-12)


@pytest.mark.xdist_group("theoph_fm3")
def test_fm3_on_theoph_runs_lbfgs(fm3):
    assert fm3.message.startswith("L-BFGS-B")


def test_population_problem_errors():
    problem = cal.theoph_problem()
    with pytest.raises(ValueError, match="name no free parameter"):
        cal.PopulationProblem(problem, ["lKa"])
    with pytest.raises(ValueError, match="design has shape"):
        cal.PopulationProblem(problem, ["lKa"], design=[[1.0, 0.0]])
    with pytest.raises(ValueError, match="covariance must be"):
        cal.PopulationProblem(problem, ["drug.ka"], covariance="block")
    with pytest.raises(ValueError, match="not among"):
        cal.theoph_population(("lV",))


@pytest.mark.xdist_group("theoph_fm3")
def test_fm3_diagnostic_plots(fm3, records, tmp_path):
    import matplotlib.image

    paths = fm3.plots(records, tmp_path)
    assert [p.name for p in paths] == ["observed_vs_predicted.png", "individual_fits.png",
                                       "residuals.png"]
    for path in paths:
        image = matplotlib.image.imread(path)[..., :3]
        # not blank: a real share of the pixels differs from the white background
        assert np.mean(np.any(image < 0.95, axis=-1)) > 0.01
    assert "12 of 12 on the canonical branch" in fm3.report()
