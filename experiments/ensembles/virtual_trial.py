"""A virtual trial: a population of type 1 diabetes twins under two insulin regimens.

    python -m experiments.ensembles.virtual_trial [--members 2000] [--out results/ensembles]
    vht sweep experiments/ensembles/virtual_trial.py          # the same sweep, resumable
    mpirun -n 2 vht sweep experiments/ensembles/virtual_trial.py

Members: the UVA/Padova model (simglucose's adolescent#001 as the typical patient) with
between-patient variability on insulin action (``Vmx``, CV 30 %; ``p2u``, CV 20 %), gastric
emptying (``kmax``, CV 20 %) and intestinal absorption (``kabs``, CV 20 %): parameters that
leave the patient's basal state a steady state (at basal the remote insulin action X is
zero), so every member starts at rest. Members whose ``Vmx`` falls outside 0.025-0.25
mg/kg/min per pmol/L are redrawn. Illustrative variability, not a validated population.

Arms, each a day with three meals (45 g at 07:00, 72 g at 12:00, 83 g at 19:00) on top of basal
insulin: boluses by the typical patient's carbohydrate ratio ("bolus by CR"), and no boluses
at all ("missed boluses").

The twin is non-stiff, so ``run_sweep`` takes the batch-major integrator of
``vht.simulate_ensemble`` (idle clock ticks crossed); the result file says so in its
provenance. ``main`` runs the sweep, prints time in range per arm, and writes a figure of the
5-95 % and 25-75 % bands of plasma glucose per arm.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import jax

jax.config.update("jax_enable_x64", True)

import numpy as np  # noqa: E402

import vht  # noqa: E402
from physiology_models.glucose_insulin import uva_padova as uva  # noqa: E402

PATIENT = "adolescent#001"
MEALS = ((420, 45.0), (720, 72.0), (1140, 83.0))
VARIABILITY = {"patient.Vmx": 0.3, "patient.p2u": 0.2, "patient.kmax": 0.2, "patient.kabs": 0.2}
ROOT = Path(__file__).resolve().parents[2]


def sweep(members: int = 2000, chunk_size: int = 500) -> vht.Sweep:
    twin = uva.patient_twin(PATIENT)
    base = twin.parameters()
    population = vht.VirtualPopulation(
        {name: vht.LogNormal(float(base[name]), cv=cv) for name, cv in VARIABILITY.items()},
        plausible={"patient.Vmx": (0.025, 0.25)})
    carb_ratio = uva.quest(PATIENT)["CR"]
    arms = {"bolus by CR": uva.day_scenario(MEALS, carb_ratio),
            "missed boluses": uva.day_scenario(MEALS)}
    return vht.Sweep(twin, population, arms, members=members, chunk_size=chunk_size,
                     ts=np.arange(0.0, 1441.0, 5.0), outputs=["patient.glucose"], seed=2026,
                     name="virtual T1D trial")


def time_in_range(glucose: np.ndarray, low: float = 70.0, high: float = 180.0) -> np.ndarray:
    """Fraction of the save times (equally spaced) with glucose in [low, high], per member."""
    return np.mean((glucose >= low) & (glucose <= high), axis=-1)


def plot(dataset, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    hours = dataset["time"].values / 60.0
    figure, axes = plt.subplots(1, 2, figsize=(11, 4), sharey=True)
    for ax, arm in zip(axes, dataset["arm"].values):
        q = dataset["quantile:patient.glucose"].sel(arm=arm)
        ax.fill_between(hours, q.sel(quantile=0.05), q.sel(quantile=0.95), alpha=0.25,
                        label="5-95 %")
        ax.fill_between(hours, q.sel(quantile=0.25), q.sel(quantile=0.75), alpha=0.45,
                        label="25-75 %")
        ax.plot(hours, q.sel(quantile=0.5), lw=1.5, label="median")
        ax.axhspan(70, 180, color="0.92", zorder=0, label="70-180 mg/dL")
        ax.set_title(f"{arm} ({dataset.sizes['member']} virtual patients)")
        ax.set_xlabel("time [h]")
        ax.set_xticks(range(0, 25, 4))
    axes[0].set_ylabel(f"plasma glucose [{dataset['patient.glucose'].attrs['units']}]")
    axes[0].legend(fontsize=8, loc="upper left")
    figure.tight_layout()
    figure.savefig(path, dpi=120)
    plt.close(figure)


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--members", type=int, default=2000)
    parser.add_argument("--out", type=Path, default=ROOT / "results" / "ensembles")
    args = parser.parse_args(argv)
    args.out.mkdir(parents=True, exist_ok=True)
    started = time.perf_counter()
    result = vht.run_sweep(sweep(args.members), args.out / "virtual_trial.h5", overwrite=True)
    elapsed = time.perf_counter() - started
    dataset = result.open()
    summary = {"members": args.members, "seconds (compilation included)": round(elapsed, 1),
               "integrator": result.manifest["solver"],
               "acceptance_rate": round(result.manifest["acceptance_rate"], 3),
               "status": result.manifest["status_counts"]}
    for arm in dataset["arm"].values:
        tir = time_in_range(dataset["patient.glucose"].sel(arm=arm).values)
        summary[f"time in range, {arm}: median [5 %, 95 %]"] = (
            f"{np.median(tir):.1%} [{np.percentile(tir, 5):.1%}, {np.percentile(tir, 95):.1%}]")
    plot(dataset, args.out / "virtual_trial.png")
    dataset.close()
    print(json.dumps(summary, indent=2))
    print(f"results: {result.path}\nfigure: {args.out / 'virtual_trial.png'}")
    return summary


if __name__ == "__main__":
    main()
