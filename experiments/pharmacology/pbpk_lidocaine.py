"""Lidocaine PBPK: plasma and tissue concentrations, and what halving cardiac output does.

The twin is ``{"heart": FixedCardiacOutput, "drug": lidocaine_pbpk()}`` (a prescribed cardiac
output feeding the whole-body PBPK organ; connect a circulation model's ``cardiac_output``
instead to let a hemorrhage drive it). Four arms in one vmapped, compiled program:

1. IV bolus 1.5 mg/kg (110 mg at 73 kg), resting cardiac output 6.5 L/min;
2. the same bolus at half the cardiac output (3.25 L/min: a severe low-output state);
3. an antiarrhythmic regimen, 100 mg bolus then 2 mg/min for 6 h, at rest;
4. the same regimen at half the cardiac output.

Output: ``pbpk_lidocaine.png`` (plasma and tissue concentrations after the bolus; plasma after
the bolus and under the infusion at both cardiac outputs, with the usual 1.5-5 mg/L therapeutic
range; well-stirred hepatic clearance and extraction against cardiac output) and a summary on
stdout (clearance, Vss, terminal half-life, AUC and steady-state ratios at half output).

Run ``python -m experiments.pharmacology.pbpk_lidocaine --out DIR``.
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
from physiology_models.pharmacology import FixedCardiacOutput, lidocaine_pbpk  # noqa: E402
from physiology_models.pharmacology.pbpk import (  # noqa: E402
    REFERENCE_BODY_MASS,
    RESTING_CARDIAC_OUTPUT,
)

ARMS = {  # label: (cardiac output L/min, bolus mg, infusion mg/min)
    "bolus, rest": (RESTING_CARDIAC_OUTPUT, 1.5 * REFERENCE_BODY_MASS, 0.0),
    "bolus, half output": (0.5 * RESTING_CARDIAC_OUTPUT, 1.5 * REFERENCE_BODY_MASS, 0.0),
    "infusion, rest": (RESTING_CARDIAC_OUTPUT, 100.0, 2.0),
    "infusion, half output": (0.5 * RESTING_CARDIAC_OUTPUT, 100.0, 2.0),
}
INFUSION_HOURS = 6.0
TISSUES = ("lung", "liver", "kidney", "muscle", "fat", "rest")


def run(out: Path, hours: float = 12.0, n_save: int = 721) -> Path:
    started = time.perf_counter()
    organ = lidocaine_pbpk()
    twin = vht.Twin({"heart": FixedCardiacOutput(), "drug": organ},
                    connections=[("heart.cardiac_output", "drug.cardiac_output")])
    # 0.1 min apart over the first half hour (the bolus spike), so trapezoid AUCs are accurate
    ts = jnp.asarray(np.unique(np.concatenate([np.linspace(0.0, 30.0, 301),
                                               np.linspace(30.0, hours * vht.HOUR, n_save)])))
    outputs, boluses, rates = (jnp.asarray([a[k] for a in ARMS.values()]) for k in range(3))

    @eqx.filter_jit
    def simulate_arms(outputs, boluses, rates):
        def one(cardiac_output, bolus, rate):
            scenario = vht.Scenario([
                vht.Bolus("drug.venous_blood", bolus, 0.0),
                vht.Infusion("drug.venous_blood", rate, start=0.0,
                             duration=INFUSION_HOURS * vht.HOUR, unit="mg/min")])
            return vht.simulate(twin.replace({"heart.cardiac_output": cardiac_output}), scenario,
                                ts=ts, rtol=1e-8, atol=1e-10, throw=False)
        return jax.vmap(one)(outputs, boluses, rates)

    print(f"simulating {len(ARMS)} arms of the lidocaine PBPK twin "
          f"({len(twin.state_names)} states, {hours:g} h) ...", flush=True)
    solution = simulate_arms(outputs, boluses, rates)
    if not np.all(np.asarray(solution.status) == vht.Status.OK):
        raise RuntimeError(f"solver status {np.asarray(solution.status)}")
    minutes = np.asarray(ts)
    out.mkdir(parents=True, exist_ok=True)
    path = out / "pbpk_lidocaine.png"
    plot(organ, minutes / vht.HOUR, solution, path)
    summarise(organ, minutes, solution)
    print(f"\nfigure: {path.resolve()}\ndone in {time.perf_counter() - started:.1f} s")
    return path


def summarise(organ, minutes: np.ndarray, solution: vht.Solution) -> None:
    plasma = np.asarray(solution["drug.concentration"])
    names = list(ARMS)
    bolus = ARMS["bolus, rest"][1]
    late = minutes >= 6 * 60.0
    slopes = [np.polyfit(minutes[late], np.log(plasma[k, late]), 1)[0] for k in range(2)]
    slope = slopes[0]
    aucs = [np.trapezoid(plasma[k], minutes) + plasma[k, -1] / -slopes[k] for k in range(2)]
    mass = REFERENCE_BODY_MASS
    print(f"\nlidocaine, {mass:g} kg reference adult (plasma basis unless stated)")
    print(f"  hepatic blood flow            {float(organ.hepatic_blood_flow()):.2f} L/min")
    print(f"  hepatic extraction (rest)     {float(organ.hepatic_extraction()):.2f}")
    print(f"  clearance (from the AUC)      {bolus / aucs[0] * 1000 / mass:.1f} mL/min/kg")
    print(f"  Vss                           {float(organ.steady_state_volume()) / mass:.2f} L/kg")
    print(f"  terminal half-life            {np.log(2) / -slope / 60:.2f} h")
    print(f"  bolus AUC, half / rest output {aucs[1] / aucs[0]:.2f}")
    end = np.searchsorted(minutes, INFUSION_HOURS * 60.0) - 1  # just before the infusion stops
    print(f"  plasma at {INFUSION_HOURS:g} h of infusion      "
          f"{plasma[names.index('infusion, rest'), end]:.2f} mg/L at rest, "
          f"{plasma[names.index('infusion, half output'), end]:.2f} mg/L at half output")


def plot(organ, hours: np.ndarray, solution: vht.Solution, path: Path) -> None:
    figure, axes = plt.subplots(2, 2, figsize=(11, 8))
    names = list(ARMS)
    rest = names.index("bolus, rest")
    ax = axes[0, 0]
    ax.plot(hours, solution["drug.concentration"][rest], "k", lw=2, label="venous plasma")
    for tissue in TISSUES:
        ax.plot(hours, solution[f"drug.{tissue}_concentration"][rest], label=tissue)
    ax.set_yscale("log")
    ax.set_ylim(1e-2, 50.0)
    ax.set_title(f"IV bolus {ARMS['bolus, rest'][1]:.0f} mg at rest: plasma and tissues")
    ax.set_ylabel("concentration [mg/L]")
    ax.legend(fontsize=8, ncol=2)

    ax = axes[0, 1]
    for k, style in ((names.index("bolus, rest"), "-"), (names.index("bolus, half output"), "--")):
        ax.plot(hours, solution["drug.concentration"][k], style, label=names[k])
    ax.set_yscale("log")
    ax.set_title("IV bolus: halving cardiac output")
    ax.set_ylabel("plasma concentration [mg/L]")
    ax.legend(fontsize=8)

    ax = axes[1, 0]
    for k, style in ((names.index("infusion, rest"), "-"),
                     (names.index("infusion, half output"), "--")):
        ax.plot(hours, solution["drug.concentration"][k], style, label=names[k])
    ax.axhspan(1.5, 5.0, color="tab:green", alpha=0.1, label="1.5-5 mg/L")
    ax.axvline(INFUSION_HOURS, color="k", lw=0.8, ls=":")
    ax.set_ylim(0.0, 8.0)  # the bolus peak (about 25 mg/L in venous blood) is off the scale
    ax.set_title(f"100 mg, then 2 mg/min for {INFUSION_HOURS:g} h")
    ax.set_ylabel("plasma concentration [mg/L]")
    ax.legend(fontsize=8)
    for a in axes.flat[:3]:
        a.set_xlabel("time [h]")
        a.grid(True, which="both", alpha=0.3)

    ax = axes[1, 1]
    cardiac_output = np.linspace(1.5, 10.0, 100)
    ax.plot(cardiac_output, organ.hepatic_blood_flow(cardiac_output), "k:",
            label="hepatic blood flow Q_h")
    ax.plot(cardiac_output, organ.hepatic_clearance(cardiac_output), "tab:blue",
            label="hepatic blood clearance Q_h E_H")
    for co in (RESTING_CARDIAC_OUTPUT, 0.5 * RESTING_CARDIAC_OUTPUT):
        ax.plot(co, organ.hepatic_clearance(co), "o", color="tab:blue")
    ax.set_xlabel("cardiac output [L/min]")
    ax.set_ylabel("flow, clearance [L/min]")
    twin_axis = ax.twinx()
    twin_axis.plot(cardiac_output, organ.hepatic_extraction(cardiac_output), "tab:red",
                   label="extraction E_H")
    twin_axis.set_ylabel("hepatic extraction ratio", color="tab:red")
    twin_axis.set_ylim(0.0, 1.0)
    ax.set_title("Well-stirred liver: clearance follows flow")
    ax.legend(fontsize=8, loc="upper left")
    ax.grid(True, alpha=0.3)
    figure.suptitle("Lidocaine whole-body PBPK (flow-limited, well-stirred liver)")
    figure.tight_layout()
    figure.savefig(path, dpi=120)
    plt.close(figure)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m experiments.pharmacology.pbpk_lidocaine",
                                     description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, default=Path("results/pharmacology"),
                        help="output folder (default: results/pharmacology)")
    parser.add_argument("--hours", type=float, default=12.0, help="horizon (default 12)")
    args = parser.parse_args(argv)
    run(args.out, hours=args.hours)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
