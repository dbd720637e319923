"""Where the batch-major integrator spends its time: XLA thunks grouped by loop region.

    python -m experiments.benchmarks.profile_ensemble_integrator [--members 1024] [--saves 289]

Runs ``vht.simulate_ensemble`` on model A of ``ensemble_throughput`` (UVA/Padova,
adolescent#001 population, three-meal day, rtol = atol = 1e-8), compiled first, then once
under ``jax.profiler.trace``. Every XLA:CPU thunk of the trace is mapped to the HLO
computation that holds it (the main loop's body, the save loop, the clock-tick loop, the
``lax.cond`` branches, the code outside the loop), and the exclusive time per region and the
slowest thunks of the main body are printed. Profiling adds about 1 us per thunk, so the
shares matter, not the absolute times; the warm time without the profiler is printed first.

Why it exists: the benchmark's strict efficiency (bare right-hand side in a compiled loop) is
about 5 % on model A, and the per-iteration cost grows linearly with the chunk width (about
0.7 us per member and step on 2 cores, of which the six right-hand-side evaluations take about
0.07-0.1 us), so the integrator's own arithmetic and the number of kernels per step, not
dispatch, decide the next speed-up. This tool measures that split, and the floor: the same
Dormand-Prince arithmetic without any bookkeeping (``dopri5_floor``), which bounds what any
rewrite of the bookkeeping can gain.
"""

from __future__ import annotations

import argparse
import collections
import glob
import gzip
import json
import os
import re
import tempfile
import time

import numpy as np

from . import ensemble_throughput as et


def _computation_of_each_instruction(hlo_text: str) -> dict[str, str]:
    """Instruction name -> name of the HLO computation it belongs to."""
    where, current = {}, None
    for line in hlo_text.split("\n"):
        head = re.match(r"^(ENTRY )?%?([\w.\-]+) (\(|\{)", line)
        if head and not line.startswith(" "):
            current = head.group(2)
            continue
        instruction = re.match(r"\s+(ROOT )?%([\w.\-]+) = ", line)
        if instruction and current:
            where[instruction.group(2)] = current
    return where


def _exclusive_thunk_times(trace_dir: str) -> tuple[collections.Counter, collections.Counter]:
    """Exclusive time (us) and call count per thunk name from a perfetto trace."""
    path = sorted(glob.glob(f"{trace_dir}/**/*.trace.json.gz", recursive=True))[-1]
    events = [e for e in json.load(gzip.open(path))["traceEvents"]
              if e.get("ph") == "X" and not e["name"].startswith("$")
              and not any(s in e["name"] for s in ("Thunk", "PjRt", "Pjit"))]
    by_thread = collections.defaultdict(list)
    for e in events:
        by_thread[(e["pid"], e["tid"])].append(e)
    exclusive, calls = collections.Counter(), collections.Counter()
    for thread_events in by_thread.values():
        thread_events.sort(key=lambda e: (e["ts"], -e["dur"]))
        stack = []
        for e in thread_events:
            while stack and stack[-1]["ts"] + stack[-1]["dur"] <= e["ts"]:
                stack.pop()
            if stack:  # a nested thunk (inside a while or cond): not its parent's own time
                exclusive[stack[-1]["name"]] -= e["dur"]
            exclusive[e["name"]] += e["dur"]
            calls[e["name"]] += 1
            stack.append(e)
    return exclusive, calls


def dopri5_floor(members: int, iterations: int = 200) -> dict:
    """Microseconds per loop iteration of the integrator's irreducible arithmetic on model A:
    one Dormand-Prince attempt per iteration (six right-hand sides, first same as last, the
    stage sums, the error norm, the dense-output coefficients, the accept-or-reject selects
    and the step-size update), in the integrator's own layout (one (members,) vector per
    state) and with its own helpers, inside one compiled ``fori_loop``; and the six
    right-hand sides alone. No clock ticks, saves, doses or edges: the gap between this and
    the measured iteration is the bookkeeping."""
    jax = et._jax()
    import jax.numpy as jnp

    from vht import _simulate_ensemble as se

    twin, params, ys, t0 = et._rhs_inputs("A", members)
    n = ys.shape[1]

    def components(p, t, *y):
        dy = twin.replace(p).rates(t, jnp.stack(y))
        return tuple(dy[i] for i in range(n))

    rows_rates = jax.vmap(components)

    def f(t, y):
        return se._Rows(rows_rates(params, t, *y))

    def attempt(_, carry):
        t, y, k1, h = carry
        ks = [k1]  # first same as last: the previous accepted step's seventh stage
        for i in range(1, 7):
            ks.append(f(t + se._C[i] * h, se._combine(y, h, ks, se._A[i])))
        y_end = se._combine(y, h, ks[:6], se._A[6])
        error = sum(w * k for w, k in zip(se._E, ks) if w != 0.0) * h
        norm = (error / (1e-8 * se._maximum(abs(y), abs(y_end)) + 1e-8)).rms()
        accepted = jnp.isfinite(norm) & (norm <= 1.0)
        dense = se._dense_coefficients(y, y_end, h, ks)
        # the dense output feeds the carry so that the compiler cannot drop it
        y_new = se._where(accepted, se._dense(dense, jnp.full_like(t, 0.5)) * 0.0 + y_end, y)
        factor = jnp.clip(se.SAFETY * jnp.maximum(norm, 1e-10) ** se._ERROR_EXPONENT,
                          se.FACTOR_MIN, se.FACTOR_MAX)
        k_new = se._where(accepted, ks[6], k1)
        return jnp.where(accepted, t + h, t), y_new, k_new, jnp.minimum(h * factor, 1.0)

    @jax.jit
    def loop(t, y, h):
        return jax.lax.fori_loop(0, iterations, attempt, (t, y, f(t, y), h))

    @jax.jit
    def six_rates(t, y):
        def body(i, y):
            for _ in range(6):
                y = y + f(t + i, y) * 1e-12
            return y
        return jax.lax.fori_loop(0, iterations, body, y)

    y = se._Rows(ys[:, i] for i in range(n))
    h = jnp.full((members,), 0.1)
    step = et._best_time(loop, t0, y, h) / iterations
    rates = et._best_time(six_rates, t0, y) / iterations
    return {"dopri5_us_per_iteration": step * 1e6, "six_rhs_us_per_iteration": rates * 1e6}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--members", type=int, default=1024)
    parser.add_argument("--saves", type=int, default=len(et.TS),
                        help="save times over the day (289: every 5 min)")
    args = parser.parse_args()
    work = tempfile.mkdtemp(prefix="vht_profile_")
    # the optimised HLO names the thunks of the trace; dump it before JAX starts
    os.environ["XLA_FLAGS"] = (os.environ.get("XLA_FLAGS", "") +
                               f" --xla_dump_to={work}/hlo --xla_dump_hlo_as_text")
    jax = et._jax()
    import jax.numpy as jnp

    import vht

    jax.config.update("jax_compilation_cache_dir", None)  # a cached program dumps no HLO
    setup = et.vht_setup("A")
    twin = setup["twin"]
    base = twin.parameters()
    rng = np.random.default_rng(0)
    values = {name: jnp.asarray(float(base[name]) * np.exp(cv * rng.standard_normal(
        args.members))) for name, cv in et.POPULATIONS["A"].items()}
    twins = jax.vmap(lambda p: twin.replace(p))(values)
    ts = np.linspace(0.0, 1440.0, args.saves)

    def run():
        solution = vht.simulate_ensemble(twins, setup["scenario"], ts=ts, rtol=et.RTOL,
                                         atol=et.ATOL, max_steps=1_000_000)
        jax.block_until_ready(solution.ys)
        return solution

    run()
    started = time.perf_counter()
    solution = run()
    warm = time.perf_counter() - started
    steps = np.asarray(solution.n_steps)
    print(f"N = {args.members}, {args.saves} saves: warm {warm:.3f} s, "
          f"{args.members / warm:.0f} members/s, steps per member mean {steps.mean():.0f} "
          f"max {steps.max()} (loop iterations), {warm / steps.max() * 1e6:.0f} us per "
          f"iteration")
    floor = dopri5_floor(args.members)
    print(f"arithmetic floor (one Dopri5 attempt per iteration, no bookkeeping): "
          f"{floor['dopri5_us_per_iteration']:.0f} us per iteration, of which the six "
          f"right-hand sides {floor['six_rhs_us_per_iteration']:.0f} us; the integrator's "
          f"iteration costs {warm / steps.max() * 1e6 / floor['dopri5_us_per_iteration']:.1f}"
          " times the floor")
    with jax.profiler.trace(f"{work}/trace", create_perfetto_trace=True):
        run()
    hlo = sorted(glob.glob(f"{work}/hlo/*simulate_ensemble_jit.cpu_after_optimizations.txt"))
    where = _computation_of_each_instruction(open(hlo[-1]).read())
    exclusive, calls = _exclusive_thunk_times(f"{work}/trace")
    regions, thunks = collections.Counter(), collections.Counter()
    for name, us in exclusive.items():
        regions[where.get(name, "(other compiled programs)")] += us
        thunks[where.get(name, "(other compiled programs)")] += 1
    total = sum(regions.values())
    print(f"\nexclusive thunk time by HLO computation (profiled total {total / 1e3:.0f} ms):")
    for region, us in regions.most_common(12):
        print(f"  {us / 1e3:8.1f} ms  {100 * us / total:5.1f} %  {thunks[region]:4d} thunks"
              f"  {region}")
    body = regions.most_common(1)[0][0]
    print(f"\nslowest thunks of {body} (us per call):")
    mine = sorted(((us / calls[n], n) for n, us in exclusive.items() if where.get(n) == body),
                  reverse=True)
    for us, name in mine[:15]:
        print(f"  {us:7.1f}  {name}")
    print(f"\nHLO and trace kept in {work}")


if __name__ == "__main__":
    main()
