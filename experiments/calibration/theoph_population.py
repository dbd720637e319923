"""Calibrate twins to the theophylline data: cohort fits and a population (FOCE) fit.

    python experiments/calibration/theoph_population.py [--out results/calibration]

Writes the fit reports, each subject's population-informed twin file (with Laplace posterior
samples) for the first subject, and the goodness-of-fit figures (observed vs predicted,
individual fits, residuals) for both fits.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import jax

jax.config.update("jax_enable_x64", True)

import numpy as np  # noqa: E402

import calibration as cal  # noqa: E402
import vht  # noqa: E402


def main(out: Path) -> None:
    out.mkdir(parents=True, exist_ok=True)
    # doses in mg/kg as R's nlme examples use them (so clearance and volume are per kg)
    records = cal.validate_records(cal.theoph_records(dose_per_kg=True))
    problem = cal.theoph_problem()  # ka, CL, V free; additive error

    # 1. every subject on its own, in one compiled program
    cohort = cal.fit_cohort(problem, records, starts=3, spread=0.5, steps=50)
    print(cohort.report())
    print(cohort.table().round(4).to_string())
    cohort.plots(records, out / "cohort")

    # 2. the population, as nlme's fm3: random effects on log ka and log CL (V = CL/ke moves
    # with CL), diagonal covariance
    population = cal.theoph_population(("lKa", "lCl"))
    fit = cal.fit_population(population, records, progress=True)
    report = fit.report()
    print(report)
    (out / "population_report.txt").write_text(report + "\n")
    fit.plots(records, out / "population")

    # 3. each subject given the population: estimates, 90 % intervals and samples for what-if
    posteriors = fit.individual_posteriors(records)
    intervals = posteriors.intervals(0.9)
    print(intervals.round(4).to_string())
    subject = posteriors.subjects[0]
    samples = posteriors.samples(subject, n=500)
    estimates = intervals.loc[subject, [f.name for f in problem.free]].to_dict()
    path = vht.save_twin(out / f"theoph_subject_{subject}.h5", problem.twin.replace(estimates),
                         posterior={k: np.asarray(v) for k, v in samples.items()},
                         metadata={"fit": "population FOCE, Laplace posterior of subject "
                                          f"{subject}", "report": report})
    print(f"wrote {path} and figures under {out}")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=Path("results/calibration"))
    main(parser.parse_args().out)
