"""Cohort fit benchmark: every subject in one vmapped program against a Python loop.

    python experiments/benchmarks/cohort_fit.py [--synthetic 200]

Both run the same per-subject program (3 starts of L-BFGS, then the Laplace covariance),
compiled before timing; the cohort program vmaps it over subjects, the loop calls it once per
subject. Data: Theoph (12 subjects) and N simulated subjects with the same design. Writes
``experiments/benchmarks/results/cohort_fit.json`` and ``cohort_fit.md``.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import jax

jax.config.update("jax_enable_x64", True)

import jax.numpy as jnp  # noqa: E402
import numpy as np  # noqa: E402

import calibration as cal  # noqa: E402

RESULTS = Path(__file__).resolve().parent / "results"


def measure(name: str, records) -> dict:
    p = cal.theoph_problem()
    cohort = cal.fit_cohort(p, records, starts=3, spread=0.5, steps=50)
    z_loop, loop_seconds = cal.loop_fit(p, records, starts=3, spread=0.5, steps=50)
    agreement = float(np.max(np.abs(cohort.z - z_loop)))
    row = {"data": name, "subjects": len(cohort.subjects), "cohort_seconds": cohort.seconds,
           "loop_seconds": loop_seconds, "speed_up": loop_seconds / cohort.seconds,
           "fits_per_second": len(cohort.subjects) / cohort.seconds,
           "max_abs_difference_cohort_vs_loop": agreement}
    print(row, flush=True)
    return row


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--synthetic", type=int, default=200)
    args = parser.parse_args()
    rows = [measure("Theoph", cal.validate_records(cal.theoph_records(dose_per_kg=True)))]
    if args.synthetic:
        population = cal.theoph_population()
        outer = population.pack(jnp.asarray([0.47, -3.23, -0.77]),
                                jnp.diag(jnp.asarray([0.64, 0.17]) ** 2),
                                jnp.log(jnp.asarray([0.7])))
        records, _ = cal.simulate_population(population, outer,
                                             [0.25, 0.5, 1, 2, 3.5, 5, 7, 9, 12, 24], 4.5,
                                             n_subjects=args.synthetic, seed=3)
        rows.append(measure(f"synthetic ({args.synthetic})", records))
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / "cohort_fit.json").write_text(json.dumps(rows, indent=2) + "\n")
    lines = ["| data | subjects | vmapped cohort [s] | Python loop [s] | speed-up | "
             "fits per second | max difference of estimates |", "|---|---|---|---|---|---|---|"]
    lines += [f"| {r['data']} | {r['subjects']} | {r['cohort_seconds']:.2f} | "
              f"{r['loop_seconds']:.2f} | {r['speed_up']:.2f} | {r['fits_per_second']:.1f} | "
              f"{r['max_abs_difference_cohort_vs_loop']:.1e} |" for r in rows]
    table = "\n".join(lines) + "\n\nCompilation excluded from both; 2 CPU cores.\n"
    (RESULTS / "cohort_fit.md").write_text(table)
    print(table)


if __name__ == "__main__":
    main()
