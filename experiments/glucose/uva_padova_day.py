"""A patient-day on the UVA/Padova T1D model (simglucose 0.2.11 port), compared with simglucose.

Each patient eats three meals (45 g at 07:00, 72 g at 12:00, 83 g at 19:00, at simglucose's
5 g/min) with a bolus of grams / CR units at each meal's start (CR from simglucose's
Quest.csv) on top of the patient's basal insulin u2ss BW / 6000 U/min. The stored simglucose
outputs of the same day (tests/data/simglucose/, made by
``experiments/glucose/generate_simglucose_references.py``) are read back, and the max and RMS
differences of the subcutaneous glucose (simglucose's Gsub, x[12] / Vg) and of plasma glucose are
printed per patient; the adolescent#001 50 g meal reference is compared as well. Output: a PNG
figure of glucose and insulin for every patient, vht as lines and simglucose as dots.

    python -m experiments.glucose.uva_padova_day --out results/glucose

``--references DIR`` reads the references from another folder (for example one regenerated for
all 30 patients with the generator's ``--patients``); ``--patients`` chooses the patients (by
default those with a reference file in that folder).
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import jax

jax.config.update("jax_enable_x64", True)

import jax.numpy as jnp  # noqa: E402
import matplotlib  # noqa: E402

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

import vht  # noqa: E402
from physiology_models.glucose_insulin import uva_padova as uva  # noqa: E402

ROOT = Path(__file__).resolve().parents[2]
REFERENCES = ROOT / "tests" / "data" / "simglucose"
MEALS = ((420, 45.0), (720, 72.0), (1140, 83.0))  # (minute, grams): the references' day
TS = jnp.arange(1440.0)


def reference_file(name: str) -> str:
    return name.replace("#", "") + "_day.csv"


def simulate_day(name: str, meals=MEALS) -> dict[str, np.ndarray]:
    """One patient-day (meals with boluses at grams / CR) on the simglucose-matching solver."""
    twin = vht.Twin({"patient": uva.UVAPadovaT1D.from_patient(name)})
    # one scenario name for every patient: the name is static, a new one would recompile
    scenario = uva.day_scenario(meals, uva.quest(name)["CR"], name="three meals")
    solution = vht.simulate(twin, scenario, ts=TS, **uva.SIMGLUCOSE_SOLVER)
    return {k: np.asarray(solution[f"patient.{k}"]) for k in
            ("subcutaneous_glucose", "glucose", "insulin", "CHO")}


def simulate_meal_file() -> np.ndarray:
    """adolescent#001, basal insulin, 50 g at minute 60 with a 50/12 U bolus."""
    twin = vht.Twin({"patient": uva.UVAPadovaT1D.from_patient("adolescent#001")})
    scenario = vht.Scenario(uva.meal_with_bolus(50.0, 60, 12.0))
    solution = vht.simulate(twin, scenario, ts=TS, **uva.SIMGLUCOSE_SOLVER)
    return np.asarray(solution["patient.subcutaneous_glucose"])


def error_stats(simulated: np.ndarray, reference: np.ndarray) -> tuple[float, float]:
    error = simulated - reference
    return float(np.max(np.abs(error))), float(np.sqrt(np.mean(error ** 2)))


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--out", type=Path, default=ROOT / "results" / "glucose")
    parser.add_argument("--references", type=Path, default=REFERENCES)
    parser.add_argument("--patients", nargs="*", default=None,
                        help="patient names, or 'all' (default: those with a reference file)")
    args = parser.parse_args(argv)
    args.out.mkdir(parents=True, exist_ok=True)
    if args.patients is None:
        names = [n for n in uva.patient_names()
                 if (args.references / reference_file(n)).exists()]
    elif args.patients == ["all"]:
        names = list(uva.patient_names())
    else:
        names = args.patients

    summary = {}
    meal_file = args.references / "adolescent001_50g_meal_basal.csv"
    if meal_file.exists():
        reference = np.genfromtxt(meal_file, delimiter=",", names=True)["Gsub_mg_dl"]
        max_error, rms_error = error_stats(simulate_meal_file(), reference)
        summary["adolescent#001 50 g meal"] = (max_error, rms_error, max_error, rms_error)
        print(f"adolescent#001, 50 g meal file: Gsub max error {max_error:.2e}, "
              f"RMS {rms_error:.2e} mg/dL")

    results, references = {}, {}
    print(f"{'patient':16s} {'Gsub max':>10s} {'Gsub RMS':>10s} {'BG max':>10s} {'BG RMS':>10s}"
          "  (mg/dL, vht - simglucose)   run time")
    for name in names:
        start = time.perf_counter()
        results[name] = simulate_day(name)
        elapsed = time.perf_counter() - start
        path = args.references / reference_file(name)
        if not path.exists():
            g = results[name]["subcutaneous_glucose"]
            print(f"{name:16s} (no reference)  Gsub {g.min():.1f}-{g.max():.1f} mg/dL   "
                  f"{elapsed:.2f} s")
            continue
        ref = np.genfromtxt(path, delimiter=",", names=True)
        references[name] = ref
        stats = (*error_stats(results[name]["subcutaneous_glucose"], ref["Gsub_mg_dl"]),
                 *error_stats(results[name]["glucose"], ref["BG_mg_dl"]))
        summary[name] = stats
        print(f"{name:16s} {stats[0]:10.2e} {stats[1]:10.2e} {stats[2]:10.2e} {stats[3]:10.2e}"
              f"{'':31s}{elapsed:.2f} s")
    if summary:
        worst = max(summary, key=lambda k: summary[k][0])
        print(f"worst Gsub max error: {summary[worst][0]:.2e} mg/dL ({worst}); requirement "
              "0.5 mg/dL")

    figure, axes = plt.subplots(2, 1, figsize=(10, 7), sharex=True,
                                gridspec_kw={"height_ratios": [3, 1]})
    hours = np.asarray(TS) / 60.0
    for k, name in enumerate(results):
        color = f"C{k % 10}"
        axes[0].plot(hours, results[name]["subcutaneous_glucose"], color=color, lw=1.2,
                     label=name)
        if name in references:
            axes[0].plot(hours[::20], references[name]["Gsub_mg_dl"][::20], "o", ms=2.5,
                         color=color)
        axes[1].plot(hours, results[name]["insulin"], color=color, lw=0.8)
    axes[0].axhspan(70, 180, color="0.92", zorder=0)
    axes[0].set_ylabel("subcutaneous glucose [mg/dL]")
    axes[0].set_title("UVA/Padova T1D (vht, lines) vs simglucose 0.2.11 (dots): meals at "
                      "7:00, 12:00, 19:00")
    axes[0].legend(fontsize=8, ncol=3)
    axes[1].set_yscale("log")
    axes[1].set_ylabel("insulin [U/min]")
    axes[1].set_xlabel("time [h]")
    axes[1].set_xticks(range(0, 25, 3))
    figure.tight_layout()
    path = args.out / "uva_padova_day.png"
    figure.savefig(path, dpi=120)
    plt.close(figure)
    print(f"figure: {path}")
    return summary


if __name__ == "__main__":
    main()
