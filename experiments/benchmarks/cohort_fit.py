"""Cohort fit benchmark: every subject in one vmapped program against a Python loop, and
against pyPESTO + AMICI fitting the same subjects with the same model.

    python experiments/benchmarks/cohort_fit.py [--synthetic 1000] [--amici-python PATH]
                                                [--peer-subjects M]

vht's two variants run the same per-subject program (3 starts of the default optimiser, then
the Laplace covariance), compiled before timing; the cohort program vmaps it over subjects,
the loop calls it once per subject. The peer (``amici_peer.py``, run by ``--amici-python``,
default ``/work/amici-venv/bin/python`` where it exists; its install recipe is in that
script) fits each subject with pyPESTO multistart (3 starts, L-BFGS-B, adjoint sensitivities
at the same tolerances) after compiling its model, timed the same way. Objectives compare
directly: both are the full Gaussian negative log-likelihood of the same data. Data: Theoph
(12 subjects) and N simulated subjects with the same design. ``--peer-subjects M`` lets the
peer fit only the first M subjects of each data set (its fits per second are a per-subject
rate, so a subset measures it; at 1,000 subjects the peer alone would take about 35 minutes):
the table says so, and the objective gap then covers those M. Writes
``experiments/benchmarks/results/cohort_fit.json`` and ``cohort_fit.md``.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import tempfile
from pathlib import Path

import jax

jax.config.update("jax_enable_x64", True)

import jax.numpy as jnp  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402

import calibration as cal  # noqa: E402

HERE = Path(__file__).resolve().parent
RESULTS = HERE / "results"
AMICI_PYTHON = Path("/work/amici-venv/bin/python")


def run_amici(records, amici_python: Path, starts: int, subjects: int | None = None
              ) -> dict | None:
    """The peer on the same observations (dose and concentration units as in ``records``),
    on the first ``subjects`` subjects (all by default)."""
    if not amici_python.exists():
        print(f"pyPESTO + AMICI not run: {amici_python} does not exist (see amici_peer.py)")
        return None
    if subjects is not None:
        first = list(dict.fromkeys(records["subject"]))[:subjects]
        records = records[records["subject"].isin(first)]
    observed = records[records["variable"] == "drug.concentration"]
    doses = records[records["route"] == "oral"].set_index("subject")["dose_amount"]
    table = pd.DataFrame({"subject": observed["subject"], "time": observed["time"],
                          "conc": observed["value"],
                          "dose": observed["subject"].map(doses).to_numpy()})
    with tempfile.TemporaryDirectory() as tmp:
        data, out = Path(tmp) / "subjects.csv", Path(tmp) / "amici.json"
        table.to_csv(data, index=False)
        env = {"PATH": f"{amici_python.parent}:/usr/bin:/bin", "OMP_NUM_THREADS": "1",
               "OPENBLAS_NUM_THREADS": "1", "HOME": tmp}
        subprocess.run([str(amici_python), str(HERE / "amici_peer.py"), "--data", str(data),
                        "--starts", str(starts), "--out", str(out)], check=True, env=env)
        return json.loads(out.read_text())


def measure(name: str, records, amici_python: Path, starts: int = 3,
            peer_subjects: int | None = None, solution: str = "auto",
            peer: dict | None = None) -> dict:
    """One row: vht's cohort and loop fits (predictions by ``solution``), and the peer's
    (run here, or ``peer``: its result for the same subjects from an earlier row)."""
    p = cal.theoph_problem(solution=solution)
    cohort = cal.fit_cohort(p, records, starts=starts, spread=0.5, steps=50)
    z_loop, loop_seconds = cal.loop_fit(p, records, starts=starts, spread=0.5, steps=50)
    agreement = float(np.max(np.abs(cohort.z - z_loop)))
    row = {"data": name, "subjects": len(cohort.subjects), "predictions": p.solution,
           "cohort_seconds": cohort.seconds,
           "loop_seconds": loop_seconds, "speed_up": loop_seconds / cohort.seconds,
           "fits_per_second": len(cohort.subjects) / cohort.seconds,
           "max_abs_difference_cohort_vs_loop": agreement}
    if peer is None:
        peer = run_amici(records, amici_python, starts, peer_subjects)
    row["peer_result"] = peer
    if peer is not None:
        theirs = {str(r["subject"]): r.get("nllh") for r in peer["subjects"]}
        # positive: vht's objective is higher (worse) than the peer's for that subject
        gaps = [float(o) - theirs[s] if theirs.get(s) is not None else float("-inf")
                for s, o in zip(cohort.subjects, cohort.objective) if s in theirs]
        row["amici"] = {k: peer[k] for k in ("fit_seconds", "fits_per_second",
                                             "compile_seconds", "fit_cpu_seconds")}
        row["amici"]["settings"] = peer["settings"]
        row["amici"]["subjects"] = len(peer["subjects"])
        row["fits_per_second_ratio_vht_over_amici"] = (row["fits_per_second"]
                                                       / peer["fits_per_second"])
        row["objective_vht_minus_amici_max"] = max(gaps)
        row["subjects_where_vht_objective_is_worse_by_1e-3"] = int(sum(g > 1e-3 for g in gaps))
    print({k: v for k, v in row.items() if k != "peer_result"}, flush=True)
    return row


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--synthetic", type=int, default=1000)
    parser.add_argument("--amici-python", type=Path, default=AMICI_PYTHON,
                        help="the Python of the pyPESTO + AMICI environment")
    parser.add_argument("--peer-subjects", type=int, default=None,
                        help="the peer fits only the first M subjects of each data set")
    args = parser.parse_args()
    theoph = cal.validate_records(cal.theoph_records(dose_per_kg=True))
    rows = [measure("Theoph", theoph, args.amici_python, peer_subjects=args.peer_subjects)]
    # the same fits through the ODE solver, against the same peer run: what the closed form
    # gains, and what vht gains without it
    rows.append(measure("Theoph", theoph, args.amici_python, solution="ode",
                        peer=rows[0]["peer_result"]))
    if args.synthetic:
        population = cal.theoph_population()
        outer = population.pack(jnp.asarray([0.47, -3.23, -0.77]),
                                jnp.diag(jnp.asarray([0.64, 0.17]) ** 2),
                                jnp.log(jnp.asarray([0.7])))
        records, _ = cal.simulate_population(population, outer,
                                             [0.25, 0.5, 1, 2, 3.5, 5, 7, 9, 12, 24], 4.5,
                                             n_subjects=args.synthetic, seed=3)
        rows.append(measure(f"synthetic ({args.synthetic})", records, args.amici_python,
                            peer_subjects=args.peer_subjects))
    for r in rows:
        del r["peer_result"]
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / "cohort_fit.json").write_text(json.dumps(rows, indent=2) + "\n")
    lines = ["| data | subjects | vht predictions | vmapped cohort [s] | Python loop [s] | "
             "speed-up | fits per second | max difference of estimates | pyPESTO + AMICI [s] | "
             "peer subjects | fits/s ratio vht/AMICI | objective vht - AMICI (max) |",
             "|---|---|---|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        peer = r.get("amici")
        versus = (f"{peer['fit_seconds']:.2f} | {peer['subjects']} | "
                  f"{r['fits_per_second_ratio_vht_over_amici']:.1f} | "
                  f"{r['objective_vht_minus_amici_max']:+.1e}") if peer else "not run | | | "
        lines.append(f"| {r['data']} | {r['subjects']} | {r['predictions'].replace('_', ' ')} | "
                     f"{r['cohort_seconds']:.2f} | "
                     f"{r['loop_seconds']:.2f} | {r['speed_up']:.2f} | "
                     f"{r['fits_per_second']:.1f} | "
                     f"{r['max_abs_difference_cohort_vs_loop']:.1e} | {versus} |")
    table = "\n".join(lines) + (
        "\n\nCompilation excluded from all (AMICI's model build too); 3 starts per subject "
        "everywhere; vht's fits/s are the vmapped cohort's; the peer's from the subjects it "
        "fitted (peer subjects) and the objective gap over those; 2 CPU cores, the peer on one "
        "thread as it runs by default.\n")
    (RESULTS / "cohort_fit.md").write_text(table)
    print(table)


if __name__ == "__main__":
    main()
