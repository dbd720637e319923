"""Compartmental PK: one-, two- and three-compartment concentration-time curves.

Each model of ``physiology_models.pharmacology`` at its default parameters (one and two
compartments: the theophylline-like small molecule of ``OneCompartmentPK``/``TwoCompartmentPK``;
three compartments: propofol, Schnider 1998) receives the same three regimens of 100 mg: an IV
bolus, a 1-hour IV infusion, and an oral dose after a 30-minute lag. The regimens of one model
are stacked into one vmapped, compiled program. Output: ``pk_models.png`` (concentrations on a
log scale, one panel per regimen) and a table of Cmax, tmax, C(24 h) and AUC(0-inf) on stdout
(for these linear models AUC(0-inf) = F D / CL whatever the regimen, a check on the curves). The
three-compartment model's oral route uses illustrative absorption parameters (propofol is given
intravenously).

Run ``python -m experiments.pharmacology.pk_models --out DIR``.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import jax

jax.config.update("jax_enable_x64", True)

import equinox as eqx  # noqa: E402
import jax.numpy as jnp  # noqa: E402
import matplotlib  # noqa: E402

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

import vht  # noqa: E402
from physiology_models.pharmacology import (  # noqa: E402
    OneCompartmentPK,
    ThreeCompartmentPK,
    TwoCompartmentPK,
)

DOSE = 100.0  # mg
MODELS = {
    "one-compartment": OneCompartmentPK(lag_time=0.5),
    "two-compartment": TwoCompartmentPK(lag_time=0.5),
    "three-compartment (propofol)": ThreeCompartmentPK(lag_time=0.5),
}
REGIMENS = ("IV bolus", "IV infusion over 1 h", "oral, 30 min lag")


def regimen(bolus: float, infusion: float, oral: float) -> vht.Scenario:
    """Every regimen has the same interventions (so they stack); unused ones are zero."""
    return vht.Scenario([
        vht.Bolus("drug.central", bolus, 0.0),
        vht.Infusion("drug.central", infusion, start=0.0, duration=vht.HOUR, unit="mg/h"),
        vht.OralDose("drug.depot", oral, 0.0),
    ])


def run(out: Path, hours: float = 24.0, n_save: int = 481) -> Path:
    started = time.perf_counter()
    ts = jnp.linspace(0.0, hours * vht.HOUR, n_save)
    arms = vht.stack([regimen(DOSE, 0.0, 0.0), regimen(0.0, DOSE, 0.0), regimen(0.0, 0.0, DOSE)])
    curves = {}
    for name, organ in MODELS.items():
        twin = vht.Twin({"drug": organ})
        print(f"simulating {name} ({len(twin.state_names)} states) x {len(REGIMENS)} regimens",
              flush=True)
        run_arms = eqx.filter_jit(jax.vmap(lambda s, twin=twin: vht.simulate(
            twin, s, ts=ts, rtol=1e-8, atol=1e-10, throw=False)))
        solution = run_arms(arms)
        if not np.all(np.asarray(solution.status) == vht.Status.OK):
            raise RuntimeError(f"{name}: solver status {np.asarray(solution.status)}")
        curves[name] = np.asarray(solution["drug.concentration"])

    hours_axis = np.asarray(ts) / vht.HOUR
    out.mkdir(parents=True, exist_ok=True)
    path = out / "pk_models.png"
    plot(hours_axis, curves, path)
    summarise(hours_axis, curves)
    print(f"\nfigure: {path.resolve()}\ndone in {time.perf_counter() - started:.1f} s")
    return path


def summarise(hours: np.ndarray, curves: dict[str, np.ndarray]) -> None:
    header = (f"{'model':<30}{'regimen':<24}{'Cmax mg/L':>10}{'tmax h':>8}{'C(end) mg/L':>12}"
              f"{'AUC(0-inf) mg h/L':>19}")
    print("\n" + header + "\n" + "-" * len(header))
    for name, c in curves.items():
        organ = MODELS[name]
        for k, label in enumerate(REGIMENS):
            f = float(organ.bioavailability) if label.startswith("oral") else 1.0
            auc = f * DOSE / float(organ.clearance)
            print(f"{name:<30}{label:<24}{c[k].max():>10.3g}{hours[np.argmax(c[k])]:>8.2f}"
                  f"{c[k][-1]:>12.3g}{auc:>19.3g}")


def plot(hours: np.ndarray, curves: dict[str, np.ndarray], path: Path) -> None:
    figure, axes = plt.subplots(1, len(REGIMENS), figsize=(14, 4.5), sharey=True)
    for k, (ax, label) in enumerate(zip(axes, REGIMENS)):
        for name, c in curves.items():
            ax.plot(hours, np.where(c[k] > 0.0, c[k], np.nan), label=name)
        ax.set_yscale("log")
        ax.set_ylim(1e-4, 50.0)
        ax.set_title(f"{label}, {DOSE:g} mg")
        ax.set_xlabel("time [h]")
        ax.grid(True, which="both", alpha=0.3)
    axes[0].set_ylabel("plasma concentration [mg/L]")
    axes[0].legend(fontsize=8)
    figure.suptitle("Compartmental PK models at their default parameters (log scale)")
    figure.tight_layout()
    figure.savefig(path, dpi=120)
    plt.close(figure)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m experiments.pharmacology.pk_models",
                                     description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, default=Path("results/pharmacology"),
                        help="output folder (default: results/pharmacology)")
    parser.add_argument("--hours", type=float, default=24.0, help="horizon (default 24)")
    args = parser.parse_args(argv)
    run(args.out, hours=args.hours)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
