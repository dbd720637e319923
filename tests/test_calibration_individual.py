"""Individual calibration: records, transforms, observation models, multi-start fits with
Laplace uncertainty, identifiability, twin files."""

import jax
import jax.numpy as jnp
import numpy as np
import pandas as pd
import pytest
from scipy import stats

import calibration as cal
import vht
from physiology_models.twins import oral_pk

RECORDS = cal.validate_records(cal.theoph_records())


def _problem(free=("drug.ka", "drug.clearance", "drug.volume"), rtol=1e-8, atol=1e-10,
             twin=None):
    parameters = [cal.FreeParameter(name, cal.Bounded(0.05, 1.0) if name ==
                                    "drug.bioavailability" else cal.Log()) for name in free]
    return cal.Problem(twin or oral_pk(), parameters, {"drug.concentration": cal.Additive(0.5)},
                       {"oral": "drug.depot"}, time_unit="h", rtol=rtol, atol=atol)


PROBLEM = _problem()
SUBJECT_1 = cal.read_subject(RECORDS, "1", PROBLEM.observed, PROBLEM.dose_units,
                             PROBLEM.minutes_per_time_unit)


# tests sharing this fixture run on one xdist worker (tests/run_suite.py uses --dist loadgroup);
# the fixture is session-scoped so that tests of other modules run between them do not
# tear it down
FIT_GROUP = pytest.mark.xdist_group("theoph_subject_1")


@pytest.fixture(scope="session")
def fit():
    return cal.fit_individual(PROBLEM, SUBJECT_1, starts=6, steps=60)


def test_records_table_is_validated_with_row_names():
    good = cal.theoph_records()
    assert list(cal.validate_records(good).columns[:8]) == list(cal.COLUMNS)
    with pytest.raises(ValueError, match="records lack columns \\['route'\\]"):
        cal.validate_records(good.drop(columns="route"))
    bad = good.copy()
    bad.loc[1, "dose_amount"] = 3.0  # a row that is both an observation and a dose
    with pytest.raises(ValueError, match="records row 1 .* set exactly one of value"):
        cal.validate_records(bad)
    bad = good.copy()
    bad.loc[0, "route"] = "nasal"
    with pytest.raises(ValueError, match="route must be one of"):
        cal.validate_records(bad)
    bad = good.copy()
    bad.loc[2, "unit"] = "mg/parsec-ish"
    with pytest.raises(ValueError, match="unknown unit"):
        cal.validate_records(bad)
    bad = good.copy()
    bad.loc[2, "value"] = np.inf
    with pytest.raises(ValueError, match="observed value must be finite"):
        cal.validate_records(bad)
    with pytest.raises(ValueError, match="which the problem does not observe"):
        cal.read_subject(RECORDS, "1", {"drug.central": "mg"}, PROBLEM.dose_units, 60.0)


def test_records_are_read_into_padded_arrays_with_units_converted():
    """Rows of two subjects interleaved and out of time order, mixed units: each subject's
    observations and doses land in its own row, in table order, converted to the model's
    units, padded (observation slots repeat the subject's last time), with the span."""
    table = pd.DataFrame({
        "subject": ["b", "a", "b", "a", "b", "a", "b"],
        "time": [0.0, 0.0, 2.0, 1.0, 0.5, 3.0, 6.0],
        "variable": ["", "", "drug.concentration", "drug.concentration", "drug.concentration",
                     "drug.concentration", ""],
        "value": [np.nan, np.nan, 4.0, 2500.0, 3.0, 1.5, np.nan],
        "unit": ["g", "mg", "mg/L", "ug/L", "ug/mL", "mg/L", "mg"],
        "dose_amount": [0.25, 320.0, np.nan, np.nan, np.nan, np.nan, 100.0],
        "route": ["oral", "oral", "", "", "", "", "oral"],
        "duration": [0.0] * 7})
    batch = cal.read_subjects(table, ["a", "b"], PROBLEM.observed, PROBLEM.dose_units, 60.0)
    np.testing.assert_array_equal(batch.times, [[60.0, 180.0], [120.0, 30.0]])
    np.testing.assert_allclose(batch.values, [[2.5, 1.5], [4.0, 3.0]], rtol=1e-15)
    np.testing.assert_array_equal(batch.mask, [[True, True], [True, True]])
    np.testing.assert_allclose(batch.dose_amounts, [[320.0, 0.0], [250.0, 100.0]], rtol=1e-15)
    np.testing.assert_array_equal(batch.dose_times, [[0.0, 0.0], [0.0, 360.0]])
    assert batch.span == (0.0, 180.0)  # b's dose after its last observation does not count
    one = cal.read_subject(table, "a", PROBLEM.observed, PROBLEM.dose_units, 60.0,
                           n_observations=4)
    np.testing.assert_array_equal(one.times, [60.0, 180.0, 180.0, 180.0])
    np.testing.assert_array_equal(one.mask, [True, True, False, False])
    assert one.subject == "a" and one.span == (0.0, 180.0)
    with pytest.raises(ValueError, match="no records for subject 'c'"):
        cal.read_subjects(table, ["a", "c"], PROBLEM.observed, PROBLEM.dose_units, 60.0)
    with pytest.raises(ValueError, match="subject b: more records than the padding allows"):
        cal.read_subject(table, "b", PROBLEM.observed, PROBLEM.dose_units, 60.0, n_doses=1)


def test_transforms_round_trip():
    for transform, value in ((cal.Log(), 3.7), (cal.Bounded(0.1, 2.0), 0.4),
                             (cal.Identity(), -1.5)):
        np.testing.assert_allclose(transform.forward(transform.inverse(value)), value, rtol=1e-12)
    with pytest.raises(ValueError, match="Bounded needs lower < upper"):
        cal.Bounded(1.0, 1.0)


def test_observation_models_are_exact_log_densities():
    y, f = jnp.array([1.2, 3.4]), jnp.array([1.0, 3.0])
    np.testing.assert_allclose(cal.Additive().neg_log_likelihood(y, f, {"sd": 0.3}),
                               -stats.norm(f, 0.3).logpdf(y), rtol=1e-12)
    np.testing.assert_allclose(cal.Proportional().neg_log_likelihood(y, f, {"cv": 0.2}),
                               -stats.norm(f, 0.2 * f).logpdf(y), rtol=1e-12)
    combined = np.sqrt(0.1**2 + (0.2 * np.asarray(f)) ** 2)
    np.testing.assert_allclose(cal.Combined().neg_log_likelihood(y, f, {"sd": 0.1, "cv": 0.2}),
                               -stats.norm(f, combined).logpdf(y), rtol=1e-12)
    np.testing.assert_allclose(cal.LogNormalError().neg_log_likelihood(y, f, {"sd_log": 0.25}),
                               -stats.lognorm(0.25, scale=f).logpdf(y), rtol=1e-12)
    np.testing.assert_allclose(cal.LogNormal(2.0, 0.5).neg_log_density(3.0),
                               -stats.lognorm(0.5, scale=2.0).logpdf(3.0), rtol=1e-12)
    np.testing.assert_allclose(cal.Normal(1.0, 2.0).neg_log_density(0.5),
                               -stats.norm(1.0, 2.0).logpdf(0.5), rtol=1e-12)


def test_problem_errors():
    with pytest.raises(ValueError, match="is not a parameter of the twin"):
        _problem(free=("drug.speed",))
    with pytest.raises(ValueError, match="neither a state nor a signal"):
        cal.Problem(oral_pk(), [], {"drug.nothing": cal.Additive()}, {"oral": "drug.depot"})
    with pytest.raises(ValueError, match="dose route 'nasal'"):
        cal.Problem(oral_pk(), [], {"drug.concentration": cal.Additive()}, {"nasal": "drug.depot"})


def test_gradient_agrees_with_finite_differences():
    problem = _problem(rtol=1e-12, atol=1e-14)
    z = problem.initial() + jnp.array([0.1, -0.2, 0.05, 0.3])
    gradient = np.asarray(jax.grad(lambda w: problem.objective(w, SUBJECT_1))(z))
    h = 1e-5
    central = [(float(problem.objective(z.at[i].add(h), SUBJECT_1))
                - float(problem.objective(z.at[i].add(-h), SUBJECT_1))) / (2 * h)
               for i in range(z.size)]
    np.testing.assert_allclose(gradient, central, rtol=1e-6)
    # the optimisers' objective: the same gradient, by forward mode (``calibration._forward``)
    forward = np.asarray(jax.grad(cal.objective_of(problem, SUBJECT_1))(z))
    np.testing.assert_allclose(forward, gradient, rtol=1e-9)


def test_newton_and_lbfgs_find_the_rosenbrock_minimum_and_a_failed_start_stays_put():
    """The damped Newton optimiser on a curved valley (no ODE: the optimiser alone), beside
    optax's L-BFGS; a start where the objective is NaN does not move and reports inf."""
    def rosenbrock(z):
        value = (1.0 - z[0]) ** 2 + 100.0 * (z[1] - z[0] ** 2) ** 2
        return jnp.where(z[0] > 5.0, jnp.nan, value)

    starts = jnp.array([[-1.2, 1.0], [2.0, -1.0], [6.0, 0.0]])
    z, values, history = cal.minimise(rosenbrock, starts, optimizer="newton", steps=200)
    np.testing.assert_allclose(np.asarray(z[:2]), 1.0, atol=1e-6)
    assert np.all(np.asarray(values[:2]) < 1e-12)
    taken = np.sum(np.isfinite(np.asarray(history)), axis=1)
    assert np.all(taken[:2] < 60)  # quadratic convergence near the end; L-BFGS needs more
    np.testing.assert_array_equal(np.asarray(z[2]), [6.0, 0.0])
    assert np.isinf(float(values[2]))
    z_lbfgs, _, _ = cal.minimise(rosenbrock, starts[:2], optimizer="lbfgs", steps=200)
    np.testing.assert_allclose(np.asarray(z_lbfgs), np.asarray(z[:2]), atol=1e-5)


@FIT_GROUP
def test_subject_fit_converges_from_every_start_to_the_least_squares_optimum(fit, record_property):
    """With an additive normal error the ML fit is least squares, as R's nlsList(SSfol)."""
    assert fit.converged and fit.starts_at_optimum >= 4
    ke = fit.estimates["drug.clearance"] / fit.estimates["drug.volume"]
    for name, value in (("ka", fit.estimates["drug.ka"]), ("ke", ke),
                        ("clearance", fit.estimates["drug.clearance"])):
        record_property(name, value)
    assert fit.estimates["drug.ka"] > ke  # the canonical (non flip-flop) branch
    prediction = PROBLEM.predict(jnp.asarray(fit.z), SUBJECT_1)
    residuals = np.asarray(SUBJECT_1.values - prediction)
    n = residuals.size
    # the ML error SD is the root mean square residual
    np.testing.assert_allclose(fit.estimates["error.drug.concentration.sd"],
                               np.sqrt(np.sum(residuals**2) / n), rtol=1e-6)
    low, high = fit.intervals["drug.clearance"]
    assert low < fit.estimates["drug.clearance"] < high
    assert fit.unidentifiable == []
    assert "converged: True" in fit.report()


@FIT_GROUP
def test_laplace_samples_travel_in_the_twin_file(fit, tmp_path):
    path = fit.save(tmp_path / "subject1.h5", n_samples=400)
    twin = vht.load_twin(path)
    np.testing.assert_allclose(twin.parameters()["drug.ka"], fit.estimates["drug.ka"], rtol=1e-12)
    samples = vht.load_posterior(path)
    assert samples["drug.clearance"].shape == (400,)
    se = fit.standard_errors["drug.clearance"]
    assert abs(np.std(samples["drug.clearance"]) / se - 1.0) < 0.2


def test_bioavailability_with_volume_and_clearance_is_flagged_and_its_profile_is_flat():
    """Oral data alone determine V/F and CL/F, not F: the fit must say so."""
    problem = _problem(free=("drug.ka", "drug.clearance", "drug.volume", "drug.bioavailability"),
                       twin=oral_pk().replace({"drug.bioavailability": 0.6}))
    result = cal.fit_individual(problem, SUBJECT_1, starts=4, steps=80)
    assert "drug.bioavailability" in result.unidentifiable
    assert "NOT IDENTIFIABLE" in result.report()
    grid = [0.3, 0.5, 0.7, 0.9]
    values = cal.profile(problem, SUBJECT_1, "drug.bioavailability", grid,
                         start=jnp.asarray(result.z), steps=80)
    assert np.ptp(values) < 1e-6 * abs(values.mean())


@FIT_GROUP
def test_subject_fit_matches_r_nlslist(fit):
    """R's nlsList(SSfol) for subject 1 (dose in mg/kg; stored with the script that made it)."""
    from pathlib import Path

    import pandas as pd

    reference = pd.read_csv(Path(__file__).resolve().parents[1] / "experiments" / "calibration"
                            / "r_references" / "theoph_nlslist.csv")
    row = reference[reference["Subject"].astype(str) == "1"].iloc[0]
    weight = float(RECORDS[RECORDS["subject"] == "1"]["weight"].iloc[0])
    ka, clearance = fit.estimates["drug.ka"], fit.estimates["drug.clearance"]
    ke = clearance / fit.estimates["drug.volume"]
    np.testing.assert_allclose(np.log(ka), row.lKa, atol=1e-4)
    np.testing.assert_allclose(np.log(ke), row.lKe, atol=1e-4)
    np.testing.assert_allclose(np.log(clearance / weight), row.lCl, atol=1e-4)
