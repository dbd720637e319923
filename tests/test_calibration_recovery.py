"""Synthetic recovery: a population with known parameters, simulated and fitted back.

One-compartment oral model (320 mg at time 0), a Theoph-like design of 10 samples over 24 h
(and a sparse one of 3), 10 % proportional plus 0.1 mg/L additive error, between-subject SDs
on the log scale of 0.55 (ka, CV 59 %), 0.3 (CL) and 0.3 (V) (CV 31 %).
"""

import jax.numpy as jnp
import numpy as np
import pytest

import calibration as cal
from physiology_models.twins import oral_pk

RICH = [0.25, 0.5, 1, 2, 3.5, 5, 7, 9, 12, 24]
SPARSE = [0.5, 4.0, 24.0]
FREE = ("drug.ka", "drug.clearance", "drug.volume")


def population() -> cal.PopulationProblem:
    # the twin's values are the starting point of the fit, away from the truth below
    twin = oral_pk().replace({"drug.ka": 1.0, "drug.clearance": 3.5, "drug.volume": 25.0})
    problem = cal.Problem(twin, [cal.FreeParameter(n) for n in FREE],
                          {"drug.concentration": cal.Combined(sd=0.2, cv=0.2)},
                          {"oral": "drug.depot"}, time_unit="h", rtol=1e-7, atol=1e-9)
    return cal.PopulationProblem(problem, list(FREE))


TYPICAL = np.array([1.5, 2.8, 32.0])  # ka [1/h], CL [L/h], V [L]
SDS = np.array([0.55, 0.3, 0.3])


def truth(pop):
    return pop.pack(jnp.log(jnp.asarray(TYPICAL)), jnp.diag(jnp.asarray(SDS) ** 2),
                    jnp.log(jnp.asarray([0.1, 0.1])))


@pytest.mark.slow
def test_population_fit_recovers_200_subjects(record_property):
    pop = population()
    records, _ = cal.simulate_population(pop, truth(pop), RICH, 320.0, n_subjects=200, seed=1)
    fit = cal.fit_population(pop, records, tolerance=1e-4)
    errors = fit.standard_errors
    z = {name: (fit.estimates[f"theta.{name}"] - np.log(value)) / errors[f"theta.{name}"]
         for name, value in zip(FREE, TYPICAL)}
    sds = fit.random_effect_sds()
    sd_error = {name: sds[name] / value - 1 for name, value in zip(FREE, SDS)}
    for name in FREE:
        record_property(f"recovery_z_{name}", z[name])
        record_property(f"recovery_sd_rel_error_{name}", sd_error[name])
    record_property("recovery_fit_seconds", fit.seconds)
    assert fit.eta_converged.all()
    assert all(abs(v) < 2 for v in z.values()), z
    assert all(abs(v) < 0.25 for v in sd_error.values()), sd_error
    assert "200 of 200 on the canonical branch" in fit.report()


@pytest.mark.parametrize("design", ["rich", "sparse"])
def test_laplace_intervals_of_clearance_cover_the_truth(design, record_property):
    """Each subject's 90 % Laplace interval (its data, the population as prior) covers its
    true CL for 85-95 % of 500 subjects; the sparse design is reported beside it."""
    pop = population()
    outer = truth(pop)
    times = RICH if design == "rich" else SPARSE
    records, true = cal.simulate_population(pop, outer, times, 320.0, n_subjects=500, seed=2)
    posteriors = cal.individual_posteriors(pop, records, outer)
    intervals = posteriors.intervals(0.9)
    cl = true["drug.clearance"]
    covered = (intervals["drug.clearance.lower"] <= cl) & (cl <= intervals["drug.clearance.upper"])
    coverage = float(covered.mean())
    record_property(f"cl_90pct_coverage_{design}", coverage)
    record_property(f"cl_median_interval_ratio_{design}", float(np.median(
        intervals["drug.clearance.upper"] / intervals["drug.clearance.lower"])))
    assert posteriors.converged.mean() > 0.99
    if design == "rich":
        assert 0.85 <= coverage <= 0.95
    else:  # reported; a broken posterior would leave this band
        assert 0.75 <= coverage <= 0.97
    samples = posteriors.samples(posteriors.subjects[0], n=2000)
    assert np.all(samples["drug.clearance"] > 0)
    lower, upper = np.quantile(samples["drug.clearance"], [0.05, 0.95])
    row = intervals.iloc[0]
    assert lower == pytest.approx(row["drug.clearance.lower"], rel=0.05)
    assert upper == pytest.approx(row["drug.clearance.upper"], rel=0.05)
