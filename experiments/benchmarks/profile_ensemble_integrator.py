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
dispatch, decide the next speed-up. This tool measures that split.
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
