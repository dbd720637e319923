"""The circulation at rest and under hemorrhage, with and without the baroreflex.

    python -m experiments.cardiovascular.hemorrhage_reflex [--out results/cardiovascular]

Left: one resting beat of the pulsatile circulation (pressures and the left ventricle's
pressure-volume loop). Right: the beat-averaged circulation losing 20 % of its blood over
15 minutes, with and without the Ursino baroreflex (two arms in one vmapped program): mean
arterial pressure, heart rate and cardiac output over an hour. Writes ``hemorrhage_reflex.png``.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import jax

jax.config.update("jax_enable_x64", True)

import jax.numpy as jnp  # noqa: E402
import matplotlib  # noqa: E402

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

import vht  # noqa: E402
from physiology_models.twins import mean_flow_circulation, pulsatile_circulation  # noqa: E402


def run(out: Path) -> Path:
    pulsatile = pulsatile_circulation(reflex=False)
    steady = vht.steady_state(pulsatile)
    beat = jnp.linspace(0.0, float(steady.period), 400)
    one_beat = vht.simulate(pulsatile, y0=steady.y, ts=beat, rtol=1e-9, atol=1e-9)

    bleed = vht.Scenario([vht.ParameterStep("circulation.hemorrhage_rate", 1100.0 / 15.0,
                                            time=5.0, duration=15.0, unit="mL/min")])
    ts = jnp.linspace(0.0, 60.0, 241)
    arms = {}
    for reflex in (True, False):
        twin = mean_flow_circulation(reflex=reflex)
        arms[reflex] = vht.simulate(twin, bleed, y0=vht.steady_state(twin).y, ts=ts,
                                    throw=False)

    figure, axes = plt.subplots(2, 3, figsize=(13, 7))
    seconds = np.asarray(beat) * 60.0
    for name, label in (("arterial_pressure", "aorta"), ("left_ventricular_pressure", "LV"),
                        ("pulmonary_arterial_pressure", "pulmonary artery"),
                        ("central_venous_pressure", "central veins")):
        axes[0, 0].plot(seconds, one_beat[f"circulation.{name}"], label=label)
    axes[0, 0].set(xlabel="time [s]", ylabel="pressure [mmHg]", title="one resting beat")
    axes[0, 0].legend(fontsize=8)
    axes[1, 0].plot(one_beat["circulation.left_ventricle"],
                    one_beat["circulation.left_ventricular_pressure"])
    axes[1, 0].set(xlabel="LV volume [mL]", ylabel="LV pressure [mmHg]",
                   title="pressure-volume loop")
    panels = [("circulation.mean_arterial_pressure", "mean arterial pressure [mmHg]"),
              ("circulation.heart_rate", "heart rate [1/min]"),
              ("circulation.cardiac_output", "cardiac output [L/min]"),
              ("circulation.blood_volume", "blood volume [mL]")]
    for ax, (name, label) in zip([axes[0, 1], axes[0, 2], axes[1, 1], axes[1, 2]], panels):
        for reflex, solution in arms.items():
            ax.plot(ts, solution[name], label="with reflex" if reflex else "without reflex")
        ax.axvspan(5.0, 20.0, color="tab:red", alpha=0.06)
        ax.set(xlabel="time [min]", ylabel=label)
        ax.grid(True, alpha=0.3)
    axes[0, 1].legend(fontsize=8)
    figure.suptitle("Pulsatile circulation at rest; beat-averaged circulation bleeding 1.1 L "
                    "(20 %) over minutes 5-20 (shaded)")
    figure.tight_layout()
    out.mkdir(parents=True, exist_ok=True)
    path = out / "hemorrhage_reflex.png"
    figure.savefig(path, dpi=110)
    plt.close(figure)
    for reflex, solution in arms.items():
        print(f"{'with' if reflex else 'without'} reflex: MAP at 60 min "
              f"{float(solution['circulation.mean_arterial_pressure'][-1]):.1f} mmHg, heart rate "
              f"{float(solution['circulation.heart_rate'][-1]):.1f}/min")
    print(f"figure: {path.resolve()}")
    return path


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, default=Path("results/cardiovascular"))
    run(parser.parse_args(argv).out)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
