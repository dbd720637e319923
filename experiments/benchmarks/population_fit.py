"""Population fit benchmark: vht FOCE against R nlme, side by side on this machine.

    python experiments/benchmarks/population_fit.py [--repetitions 20] [--rounds 3]
                                                    [--synthetic 1000]

The Theoph fm3 model (one compartment, first-order absorption; random effects on log ka and
log CL; additive error) is fitted by R nlme (``Rscript``, timed fits after a warm-up) and by
vht: cold (first fit in the process, compilation included) and warm (further fits; the
compiled program is reused). The two take turns, ``--rounds`` times, each round timing
``--repetitions`` fits of each (the first of the pair alternating between rounds): this
machine's speed drifts by up to a factor 2 within minutes, and R's time and vht's, measured
one after the other once, drifted apart between runs by as much. The table gives the median
over every round's fits and the range of the rounds' own time ratios. With ``--synthetic N``
the same comparison runs on N simulated subjects with the Theoph design (a quarter of the
repetitions, at least 3, for both). Writes
``experiments/benchmarks/results/population_fit.json`` and ``population_fit.md`` (the table
the docs include).
"""

from __future__ import annotations

import argparse
import json
import platform
import shutil
import subprocess
import tempfile
import time
from pathlib import Path

import jax

jax.config.update("jax_enable_x64", True)

import jax.numpy as jnp  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402

import calibration as cal  # noqa: E402

HERE = Path(__file__).resolve().parent
RESULTS = HERE / "results"


def r_table(records: pd.DataFrame) -> pd.DataFrame:
    """Records (one dose per subject at time 0) as nlme's Subject, Time, conc, Dose."""
    doses = records[~records["dose_amount"].isna()].set_index("subject")["dose_amount"]
    obs = records[records["dose_amount"].isna()]
    return pd.DataFrame({"Subject": obs["subject"].to_numpy(), "Time": obs["time"].to_numpy(),
                         "conc": obs["value"].to_numpy(),
                         "Dose": doses.loc[obs["subject"]].to_numpy()})


def run_r(records: pd.DataFrame, repetitions: int) -> dict:
    if shutil.which("Rscript") is None:
        raise SystemExit("Rscript not found: apt-get install -y r-base-core r-cran-nlme")
    with tempfile.TemporaryDirectory() as tmp:
        data, out = Path(tmp) / "data.csv", Path(tmp) / "out.json"
        r_table(records).to_csv(data, index=False)
        subprocess.run(["Rscript", str(HERE / "nlme_fm3.R"), str(data), str(repetitions),
                        str(out)], check=True)
        return json.loads(out.read_text())


def run_vht(records: pd.DataFrame, repetitions: int) -> dict:
    """``repetitions`` warm fits (the program compiled by an earlier fit of the same shapes)."""
    population = cal.theoph_population()
    seconds = []
    for _ in range(repetitions):
        started = time.perf_counter()
        fit = cal.fit_population(population, records)
        seconds.append(time.perf_counter() - started)
    theta = fit.estimates
    sds = fit.random_effect_sds()
    return {"seconds": seconds, "median_seconds": float(np.median(seconds)),
            "repetitions": repetitions, "lKa": theta["theta.drug.ka"],
            "lCl": theta["theta.drug.clearance"],
            "lKe": theta["theta.drug.clearance"] - theta["theta.drug.volume"],
            "sd_lKa": float(sds["lKa"]), "sd_lCl": float(sds["lCl"]),
            "sd_residual": float(np.exp(theta["error.drug.concentration.sd"])),
            "logLik": fit.log_likelihood, "optimiser_steps": len(fit.history)}


def cold_vht(records: pd.DataFrame) -> float:
    """Seconds of the first fit of these shapes in this process (compilation included)."""
    started = time.perf_counter()
    cal.fit_population(cal.theoph_population(), records)
    return time.perf_counter() - started


def synthetic_records(n: int) -> pd.DataFrame:
    """n subjects with Theoph's design and fm3's published estimates as the truth."""
    population = cal.theoph_population()
    outer = population.pack(jnp.asarray([0.47, -3.23, -0.77]),
                            jnp.diag(jnp.asarray([0.64, 0.17]) ** 2), jnp.log(jnp.asarray([0.7])))
    times = [0.25, 0.5, 1, 2, 3.5, 5, 7, 9, 12, 24]
    records, _ = cal.simulate_population(population, outer, times, 4.5, n_subjects=n, seed=7)
    return records


def compare(name: str, records: pd.DataFrame, repetitions: int, rounds: int) -> dict:
    print(f"== {name}: vht cold fit ==", flush=True)
    cold = cold_vht(records)
    r_rounds, v_rounds = [], []
    for k in range(rounds):
        print(f"== {name}: round {k + 1} of {rounds}: R nlme and vht, {repetitions} fits "
              "each ==", flush=True)
        order = (("R", run_r), ("vht", run_vht)) if k % 2 == 0 else (("vht", run_vht),
                                                                      ("R", run_r))
        for label, run in order:
            (r_rounds if label == "R" else v_rounds).append(run(records, repetitions))
    r, v = r_rounds[-1], v_rounds[-1]  # estimates (the same in every round)
    r_seconds = [t for one in r_rounds for t in one["seconds"]]
    v_seconds = [t for one in v_rounds for t in one["seconds"]]
    r = r | {"seconds": r_seconds, "median_seconds": float(np.median(r_seconds))}
    v = v | {"seconds": v_seconds, "median_seconds": float(np.median(v_seconds)),
             "cold_seconds": cold}
    ratios = [vr["median_seconds"] / rr["median_seconds"] for rr, vr in zip(r_rounds, v_rounds)]
    keys = ("lKe", "lKa", "lCl")
    return {"data": name, "subjects": int(records["subject"].nunique()), "R": r, "vht": v,
            "rounds": rounds,
            "max_fixed_effect_difference": max(abs(v[k] - r[k]) for k in keys),
            "max_sd_relative_difference": max(abs(v[k] / r[k] - 1) for k in
                                              ("sd_lKa", "sd_lCl", "sd_residual")),
            "loglik_difference": v["logLik"] - r["logLik"],
            "warm_time_ratio_vht_over_r": v["median_seconds"] / r["median_seconds"],
            "round_time_ratios_vht_over_r": ratios,
            "cold_time_ratio_vht_over_r": v["cold_seconds"] / r["median_seconds"]}


def markdown(rows: list[dict], machine: str) -> str:
    lines = ["| data | subjects | R nlme median [s] | vht warm median [s] | vht cold [s] | "
             "warm ratio vht/R | warm speed-up over R | speed-up, rounds' range | "
             "cold ratio vht/R | max fixed-effect diff (log) | max SD rel. diff | "
             "logLik vht - R |",
             "|---|---|---|---|---|---|---|---|---|---|---|---|"]
    for row in rows:
        ratio = row["warm_time_ratio_vht_over_r"]
        rounds = row["round_time_ratios_vht_over_r"]
        lines.append(
            f"| {row['data']} | {row['subjects']} | {row['R']['median_seconds']:.3f} | "
            f"{row['vht']['median_seconds']:.3f} | {row['vht']['cold_seconds']:.1f} | "
            f"{ratio:.3f} | {1 / ratio:.1f}x | {1 / max(rounds):.1f}-{1 / min(rounds):.1f}x | "
            f"{row['cold_time_ratio_vht_over_r']:.0f} | "
            f"{row['max_fixed_effect_difference']:.4f} | "
            f"{row['max_sd_relative_difference']:.4f} | {row['loglik_difference']:+.4f} |")
    lines.append("")
    rounds = rows[0]["rounds"]
    lines.append(f"Measured on {machine}; R and vht took turns in {rounds} rounds, medians "
                 "over every round's fits; a ratio above 1 means vht is slower.")
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repetitions", type=int, default=20)
    parser.add_argument("--rounds", type=int, default=3,
                        help="R and vht take turns this many times")
    parser.add_argument("--synthetic", type=int, default=0,
                        help="also compare on this many simulated subjects")
    args = parser.parse_args()
    rows = [compare("Theoph", cal.validate_records(cal.theoph_records(dose_per_kg=True)),
                    args.repetitions, args.rounds)]
    if args.synthetic:
        rows.append(compare(f"synthetic ({args.synthetic})", synthetic_records(args.synthetic),
                            max(3, args.repetitions // 4), args.rounds))
    machine = f"{platform.processor() or platform.machine()}, {jax.device_count()} JAX " \
              f"device(s), {len(jax.devices('cpu'))} CPU device(s)"
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / "population_fit.json").write_text(json.dumps(
        {"machine": machine, "rows": rows}, indent=2) + "\n")
    table = markdown(rows, machine)
    (RESULTS / "population_fit.md").write_text(table)
    print(table)


if __name__ == "__main__":
    main()
