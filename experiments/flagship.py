"""Flagship demo: a bleeding patient's twin under four treatment arms.

The twin (``physiology_models.twins.circulation_with_vasopressor``) is a pulsatile closed-loop
circulation (every heartbeat resolved) with its arterial baroreflex (Ursino 1998), composed with
a vasopressor's pharmacokinetics and an effect compartment that raises systemic vascular
resistance. The scenario: the patient bleeds 250 mL/min from minute 2 to minute 12 (2.5 L, 45 %
of blood volume, ATLS class IV), and each arm applies a rule-based treatment while the
monitor's mean arterial pressure (MAP) is below 65 mmHg:

1. no treatment;
2. IV fluids, 100 mL/min while MAP < 65 mmHg, until MAP is back above 70;
3. vasopressor, 7 ug/min (0.1 ug/kg/min at 70 kg) while MAP < 65 mmHg, until above 75;
4. both.

The four arms run in one compiled program (``jax.lax.map`` over the stacked arms: with
threshold triggers, arms that switch at different times make a vmapped batch wait for its
slowest member at every switch); threshold crossings are located by diffrax events. Outputs:
an HDF5 file (xarray, dims arm x time, units and provenance) and a PNG figure. Run
``python -m experiments.flagship --help`` for options.

The reflex (with its chemoreceptors below 80 mmHg) raises heart rate, contractility, resistance
and venous tone as pressure falls and holds MAP near 65 mmHg until about 40 % of the blood is
lost; beyond that the untreated circulation decompensates, and only the arms that give fluid
bring pressure back. The twin has no transcapillary refill and no catecholamines.

The vasopressor's parameters are illustrative (see ``physiology_models.twins``): this is a
demonstration of the machinery, not a clinical recommendation.
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
from physiology_models.twins import circulation_with_vasopressor  # noqa: E402

ARMS = ("no treatment", "fluids", "vasopressor", "fluids + vasopressor")
FLUID_RATE = 100.0  # mL/min while the rule is on
DRUG_RATE = 7.0  # ug/min while the rule is on


def arm_scenario(fluids: bool, vasopressor: bool, bleed_rate: float) -> vht.Scenario:
    """Every arm has the same interventions (so arms stack and vmap); unused ones have rate 0."""
    return vht.Scenario([
        vht.ParameterStep("circulation.hemorrhage_rate", bleed_rate, time=2.0, duration=10.0,
                          unit="mL/min"),
        vht.Trigger("circulation.mean_arterial_pressure", 65.0, "circulation.systemic_veins",
                    FLUID_RATE if fluids else 0.0, release=70.0, unit="mL/min"),
        vht.Trigger("circulation.mean_arterial_pressure", 65.0, "drug.central",
                    DRUG_RATE if vasopressor else 0.0, release=75.0, unit="ug/min"),
    ])


def run(out: Path, minutes: float = 30.0, bleed_rate: float = 250.0, n_save: int = 601):
    """Simulate all arms and write ``flagship.h5`` and ``flagship.png`` into ``out``."""
    started = time.perf_counter()
    twin = circulation_with_vasopressor()
    print(f"[1/4] twin: {', '.join(twin.names)}; {len(twin.state_names)} states; finding the "
          "beating steady state ...", flush=True)
    steady = vht.steady_state(twin)
    if not bool(steady.converged):
        raise RuntimeError(f"no periodic steady state (residual {float(steady.residual):.2e})")

    arms = vht.stack([arm_scenario(f, v, bleed_rate) for f, v in
                      ((False, False), (True, False), (False, True), (True, True))])
    ts = jnp.linspace(0.0, minutes, n_save)
    print(f"[2/4] simulating {len(ARMS)} arms x {minutes:g} min (about {int(minutes * 72)} "
          "heartbeats each) in one compiled program ...", flush=True)

    @jax.jit
    def simulate_arms(y0, scenarios):
        return jax.lax.map(lambda s: vht.simulate(twin, s, y0=y0, ts=ts, max_steps=400_000,
                                                  throw=False), scenarios)

    solution = simulate_arms(steady.y, arms)
    jax.block_until_ready(solution.ys)

    print("[3/4] writing results ...", flush=True)
    dataset = vht.to_dataset(solution, twin, arms, batch_dims=("arm",), coords={"arm": list(ARMS)},
                             attrs={"experiment": "experiments.flagship",
                                    "bleed_rate_mL_per_min": str(bleed_rate)})
    out.mkdir(parents=True, exist_ok=True)
    h5_path = vht.save_dataset(dataset, out / "flagship.h5")
    png_path = out / "flagship.png"
    plot(dataset, png_path)

    print("[4/4] summary")
    summarise(dataset)
    print(f"\nresults: {h5_path.resolve()}\nfigure:  {png_path.resolve()}")
    print(f"done in {time.perf_counter() - started:.1f} s")
    return h5_path, png_path


def summarise(dataset) -> None:
    time_axis = dataset["time"].values
    dt = np.diff(time_axis, prepend=time_axis[0])
    header = f"{'arm':<22}{'status':<8}{'MAP nadir':>10}{'MAP end':>9}{'min <65':>9}" \
             f"{'fluids mL':>11}{'volume end':>12}"
    print(header + "\n" + "-" * len(header))
    for arm in dataset["arm"].values:
        sel = dataset.sel(arm=arm)
        status = vht.Status(int(sel["status"])).name.lower()
        mean_pressure = sel["circulation.mean_arterial_pressure"].values
        volume = sel["circulation.blood_volume"].values
        bled = float(dataset.attrs["bleed_rate_mL_per_min"]) * 10.0
        fluids = volume[-1] - (volume[0] - bled)
        print(f"{arm:<22}{status:<8}{np.nanmin(mean_pressure):>10.1f}{mean_pressure[-1]:>9.1f}"
              f"{np.sum(dt * (mean_pressure < 65.0)):>9.1f}{fluids:>11.0f}{volume[-1]:>12.0f}")


def plot(dataset, path: Path) -> None:
    figure, axes = plt.subplots(2, 2, figsize=(11, 7), sharex=True)
    panels = [("circulation.mean_arterial_pressure", "mean arterial pressure"),
              ("circulation.cardiac_output", "cardiac output"),
              ("circulation.blood_volume", "blood volume"),
              ("effect.factor", "systemic resistance factor (vasopressor)")]
    for ax, (name, title) in zip(axes.flat, panels):
        vht.plot_signal(dataset, name, ax, by="arm")
        ax.set_title(title)
    axes[0, 0].axhline(65.0, color="k", lw=0.8, ls="--")
    axes[0, 0].legend(fontsize=8)
    for ax in axes.flat:
        ax.axvspan(2.0, 12.0, color="tab:red", alpha=0.06)
    bleed = dataset.attrs["bleed_rate_mL_per_min"]
    figure.suptitle(f"Hemorrhage {bleed} mL/min (minutes 2-12, shaded): four treatment rules")
    figure.tight_layout()
    figure.savefig(path, dpi=120)
    plt.close(figure)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m experiments.flagship",
                                     description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, default=Path("results/flagship"),
                        help="output folder (default: results/flagship)")
    parser.add_argument("--minutes", type=float, default=30.0, help="horizon (default 30)")
    parser.add_argument("--bleed-rate", type=float, default=250.0,
                        help="hemorrhage rate in mL/min during minutes 2-12 (default 250)")
    args = parser.parse_args(argv)
    run(args.out, minutes=args.minutes, bleed_rate=args.bleed_rate)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
