"""The reference whole-body twin over twelve hours: a lidocaine infusion, a hemorrhage, fluids
and a glucose tolerance test in one patient.

    python -m experiments.whole_body [--out results/whole_body] [--hours 12] [--write-docs]

The twin (``physiology_models.twins.whole_body``): beat-averaged circulation, baroreflex,
interstitium and kidney, lidocaine PBPK fed by the circulation's cardiac output, and the
Bergman minimal model of glucose. Two arms run side by side from the twin's steady state:

- control: lidocaine 100 mg IV bolus at 0 h and 2 mg/min for the whole run; an insulin-modified
  IVGTT (0.3 g/kg glucose, 0.03 U/kg insulin 20 min later) at 8 h;
- hemorrhage: the same, plus 1.1 L of blood lost over 20 minutes at 2 h and 1 L of crystalloid
  over 30 minutes at 3 h.

The hemorrhage lowers cardiac output, hence hepatic blood flow, hence the clearance of this
high-extraction drug: its concentration rises; the interstitium refills the plasma and dilutes
the red cells; the kidney's urine output falls with pressure. Writes ``whole_body.h5`` and
``whole_body.png``; ``--write-docs`` regenerates docs/content/whole_body.md, whose diagram is
drawn from the twin's own connections.
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

import vht  # noqa: E402
from physiology_models.twins import whole_body  # noqa: E402

PAGE = Path(__file__).resolve().parents[1] / "docs" / "content" / "whole_body.md"
ARMS = ("control", "hemorrhage")


def arm(hemorrhage: bool) -> vht.Scenario:
    """Both arms hold the same interventions (they stack); the control's bleed and fluids are
    zero."""
    ivgtt_start = 8 * vht.HOUR  # the protocol of bergman_minimal.ivgtt, shifted to 8 h
    return vht.Scenario([
        vht.Bolus("drug.venous_blood", 100.0, 0.0, unit="mg"),
        vht.Infusion("drug.venous_blood", 2.0, unit="mg/min"),
        vht.ParameterStep("circulation.hemorrhage_rate", 55.0 if hemorrhage else 0.0,
                          time=2 * vht.HOUR, duration=20.0, unit="mL/min"),
        vht.Infusion("circulation.systemic_veins", 1000.0 / 30.0 if hemorrhage else 0.0,
                     start=3 * vht.HOUR, duration=30.0, unit="mL/min"),
        vht.Bolus("glucose.Q", 0.3, time=ivgtt_start, unit="g/kg"),
        vht.Bolus("insulin.A", 0.03, time=ivgtt_start + 20.0, unit="U/kg"),
    ])


def page(twin: vht.Twin) -> str:
    return "\n".join([
        "# The reference whole-body twin",
        "",
        "`physiology_models.twins.whole_body()` composes the beat-averaged circulation, the",
        "baroreflex, the interstitium, the kidney, a lidocaine PBPK model and the Bergman",
        "minimal model into one twin for hours to days; `whole_body_pulsatile()` is the same",
        "with the pulsatile circulation, for horizons up to about 30 minutes. Start either from",
        "`vht.steady_state(twin)`.",
        "",
        "The diagram is generated from the twin's own connections by `vht.twin_diagram`",
        "(`python -m experiments.whole_body --write-docs`; a test checks it is current):",
        "",
        "```mermaid",
        vht.twin_diagram(twin),
        "```",
        "",
        "What couples what:",
        "",
        "- the **baroreflex** reads the mean arterial pressure and sets heart period,",
        "  contractility, resistance and venous tone;",
        "- the **interstitium** exchanges fluid with the plasma (Starling forces from the",
        "  circulation's pressures and the plasma protein it tracks) and the **kidney** makes",
        "  urine from the arterial pressure; both return the volume the blood loses;",
        "- the **PBPK** model takes its organ blood flows from the circulation's cardiac output,",
        "  so that a hemorrhage lowers hepatic clearance;",
        "- the **glucose** model runs beside them, driven by its plasma insulin.",
        "",
        "`python -m experiments.whole_body` runs twelve hours of a lidocaine infusion with and",
        "without a hemorrhage, fluids and a glucose tolerance test:",
        "",
        "![whole-body twin, two arms over twelve hours](img/whole_body.png)",
        "",
    ])


def run(out: Path, hours: float = 12.0, write_docs: bool = False):
    started = time.perf_counter()
    twin = whole_body()
    print(f"[1/3] whole-body twin: {len(twin.names)} organs, {len(twin.state_names)} states; "
          "steady state ...", flush=True)
    steady = vht.steady_state(twin)
    arms = vht.stack([arm(False), arm(True)])
    ts = jnp.linspace(0.0, hours * vht.HOUR, int(hours * 12) + 1)
    print(f"[2/3] simulating {len(ARMS)} arms x {hours:g} h ...", flush=True)
    solution = jax.jit(jax.vmap(lambda s: vht.simulate(twin, s, y0=steady.y, ts=ts,
                                                       throw=False)))(arms)
    dataset = vht.to_dataset(solution, twin, arms, batch_dims=("arm",), coords={"arm": list(ARMS)})
    out.mkdir(parents=True, exist_ok=True)
    h5 = vht.save_dataset(dataset, out / "whole_body.h5")
    png = out / "whole_body.png"
    figure, axes = plt.subplots(2, 3, figsize=(13, 7), sharex=True)
    for ax, name in zip(axes.flat, ("circulation.mean_arterial_pressure",
                                    "circulation.heart_rate", "interstitium.plasma_volume",
                                    "kidney.urine_flow", "drug.concentration",
                                    "glucose.glucose")):
        vht.plot_signal(dataset, name, ax, by="arm", time_unit="h")
        ax.set_title(name.split(".")[1].replace("_", " "))
    axes[0, 0].legend()
    figure.suptitle("Whole-body twin: lidocaine infusion; bleed 1.1 L at 2 h, 1 L fluids at 3 h "
                    "(hemorrhage arm); IVGTT at 8 h")
    figure.tight_layout()
    figure.savefig(png, dpi=110)
    plt.close(figure)
    print("[3/3] status per arm:", [vht.Status(int(s)).name for s in dataset["status"].values])
    concentration = dataset["drug.concentration"]
    for arm_name in ARMS:
        c = concentration.sel(arm=arm_name)
        print(f"  {arm_name:<11} lidocaine at 4 h {float(c.sel(time=4 * vht.HOUR)):.2f} mg/L, "
              f"at {hours:g} h {float(c.isel(time=-1)):.2f} mg/L")
    if write_docs:
        PAGE.write_text(page(twin))
        (PAGE.parent / "img").mkdir(exist_ok=True)
        (PAGE.parent / "img" / "whole_body.png").write_bytes(png.read_bytes())
        print(f"wrote {PAGE}")
    print(f"results: {h5.resolve()}\nfigure:  {png.resolve()}\ndone in "
          f"{time.perf_counter() - started:.1f} s")
    return h5, png


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m experiments.whole_body",
                                     description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, default=Path("results/whole_body"))
    parser.add_argument("--hours", type=float, default=12.0)
    parser.add_argument("--write-docs", action="store_true",
                        help="regenerate docs/content/whole_body.md and its figure")
    args = parser.parse_args(argv)
    run(args.out, args.hours, args.write_docs)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
