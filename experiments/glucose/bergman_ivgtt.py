"""Insulin-modified IVGTT on the Bergman minimal model: the typical subject and a population.

The twin is ``physiology_models.glucose_insulin.bergman_minimal.minimal_model_twin``: the
minimal model with Denti et al. (2010) typical values, driven by a one-compartment plasma
insulin organ. The test: 0.3 g/kg glucose at 0 min, 0.03 U/kg insulin at 20 min (a bolus; with
``--infusion`` over 5 min as in Denti's protocol). A virtual population (``--n`` subjects,
log-normal with Denti's between-subject SDs and correlations, fixed ``--seed``) runs as one
vmapped program. Printed: the typical subject's glucose landmarks and the population's sample
SDs of the log-parameters against Denti's. Output: a PNG figure (glucose, insulin, insulin
action; the population as a 5-95 % band).

    python -m experiments.glucose.bergman_ivgtt --out results/glucose
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
from physiology_models.glucose_insulin import bergman_minimal as bm  # noqa: E402

ROOT = Path(__file__).resolve().parents[2]
TS = jnp.arange(0.0, 241.0)
BAND = 5.0  # mg/dL around basal glucose: "back at basal"


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--out", type=Path, default=ROOT / "results" / "glucose")
    parser.add_argument("--n", type=int, default=400, help="virtual subjects")
    parser.add_argument("--seed", type=int, default=2010)
    parser.add_argument("--infusion", action="store_true",
                        help="give the insulin over 5 min instead of as a bolus")
    args = parser.parse_args(argv)
    args.out.mkdir(parents=True, exist_ok=True)
    scenario = bm.ivgtt(insulin_duration=5.0 if args.infusion else None)
    twin = bm.minimal_model_twin()
    gb = float(twin["glucose"].Gb)

    typical = vht.simulate(twin, scenario, ts=TS, rtol=1e-10, atol=1e-10)
    g = np.asarray(typical["glucose.glucose"])
    back = int(np.argmax(np.abs(g - gb) < BAND))
    print(f"typical subject: G(0) {g[0]:.1f} mg/dL (basal {gb}), nadir {g.min():.1f} at "
          f"{int(np.argmin(g))} min, within {BAND} mg/dL of basal from {back} min, "
          f"G(180) {g[180]:.1f} mg/dL")

    params = bm.sample_population(jax.random.key(args.seed), args.n)

    def subject(p):
        member = twin.replace({f"glucose.{k}": v for k, v in p.items()})
        solution = vht.simulate(member, scenario, ts=TS, throw=False, rtol=1e-8, atol=1e-8)
        return solution.ys, solution.signals, solution.status

    start = time.perf_counter()
    ys, signals, status = jax.block_until_ready(jax.jit(jax.vmap(subject))(params))
    elapsed = time.perf_counter() - start
    ys, signals, status = np.asarray(ys), np.asarray(signals), np.asarray(status)
    glucose = signals[:, :, typical.signal_names.index("glucose.glucose")]
    print(f"population: {args.n} subjects in {elapsed:.1f} s (compilation included), "
          f"{int(np.sum(status == 0))} ok; back within {BAND} mg/dL at 180 min: "
          f"{np.mean(np.abs(glucose[:, 180] - gb) < BAND):.0%}")
    summary = {}
    print(f"{'parameter':10s} {'typical':>10s} {'geo mean':>10s} {'log SD':>8s} "
          f"{'Denti':>6s} {'CV':>6s}")
    for name, omega in bm.OMEGA.items():
        values = np.asarray(params[name])
        sd = float(np.std(np.log(values), ddof=1))
        cv = float(np.std(values, ddof=1) / np.mean(values))
        summary[name] = sd
        print(f"{name:10s} {bm.TYPICAL[name]:10.4g} {np.exp(np.mean(np.log(values))):10.4g} "
              f"{sd:8.3f} {omega:6.3f} {cv:6.3f}")

    figure, axes = plt.subplots(3, 1, figsize=(8, 9), sharex=True)
    t = np.asarray(TS)
    traces = (("glucose.glucose", "glucose [mg/dL]", signals, typical.signal_names),
              ("insulin.concentration", "plasma insulin [pmol/L]", signals,
               typical.signal_names),
              ("glucose.X", "insulin action X [1/min]", ys, typical.state_names))
    for ax, (key, label, data, names) in zip(axes, traces):
        column = data[:, :, names.index(key)]
        low, high = np.percentile(column, [5, 95], axis=0)
        ax.fill_between(t, low, high, color="C0", alpha=0.25, label=f"population 5-95 % "
                        f"(n = {args.n})")
        ax.plot(t, np.asarray(typical[key]), color="C0", lw=1.5, label="typical subject")
        ax.set_ylabel(label)
    axes[0].axhspan(gb - BAND, gb + BAND, color="0.9", zorder=0, label=f"basal +- {BAND} mg/dL")
    axes[0].legend(fontsize=8)
    axes[1].set_yscale("log")
    axes[0].set_title("Insulin-modified IVGTT, Bergman minimal model (Denti 2010 values)")
    axes[2].set_xlabel("time [min]")
    figure.tight_layout()
    path = args.out / "bergman_ivgtt.png"
    figure.savefig(path, dpi=120)
    plt.close(figure)
    print(f"figure: {path}")
    return summary


if __name__ == "__main__":
    main()
