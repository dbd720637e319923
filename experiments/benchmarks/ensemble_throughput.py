"""Ensemble throughput benchmark: vht.run_sweep against scipy, libroadrunner and simglucose.

    python -m experiments.benchmarks.ensemble_throughput [--members 10000] [--quick]

Two models, each over a 24 h scenario saved every 5 min (289 save times), float64, every
implementation at rtol = atol = 1e-8:

- A: UVA/Padova T1D (``UVAPadovaT1D``, adolescent#001, simglucose's one-minute sample-and-hold
  clock), three meals with boluses (45 g at 07:00, 72 g at 12:00, 83 g at 19:00, bolus grams /
  CR; the day of tests/test_uva_padova.py and experiments/glucose/), population log-normal
  (CV 10 %) on kabs, kmax and Vmx;
- B: the beat-averaged circulation with baroreflex and the whole-body PBPK of lidocaine fed by
  its cardiac output (39 states, stiff; the circulation and PBPK part of the reference
  whole-body twin), a bleed of 0.5 mL/s for 20 min at 06:00, systemic resistance x 1.3 from
  12:00 to 18:00 (a vasoconstrictor, as its effect) and lidocaine 2 mg/min all day;
  population on lv_elastance_max, systemic_venous_compliance and blood_volume.

vht rows (``vht.Sweep`` + ``vht.run_sweep``, each in a fresh subprocess so that its peak
resident memory is its own; warm: compiled by a one-chunk sweep first, cold: that sweep):

- ``auto``: what ``run_sweep`` chooses, the batch-major integrator of ``vht.simulate_ensemble``
  for model A (non-stiff) and vmapped diffrax Kvaerno3 for model B (stiff);
- the other integrator for comparison: plain vmapped diffrax (Tsit5) for model A, the
  explicit batch-major integrator forced onto the stiff model B (stability-limited steps).

Peers: ``scipy.integrate.solve_ivp`` (LSODA) on a sample of members, libroadrunner (CVODE) on a
sample, simglucose 0.2.11 (model A) on 2-3 member-days; the peers' equations are in
``ensemble_models.py`` and are checked against ``twin.rates`` before anything is timed. Each
peer's largest relative deviation from vht (same members, every output and save time) is
reported. Throughput against N (fresh process per N, peak RSS) and against MPI ranks
(``mpirun -n 2``) for model A. The dev extra brings libroadrunner; the peers also need
``pip install antimony simglucose==0.2.11`` (with ``-c .ci/constraints.txt``), and a peer
that is missing is reported as missing in the table instead of timed.

Solver efficiency: right-hand-side evaluations per second inside the solver over the rate of
bare right-hand-side evaluations, two ways:

- per call: ``jax.jit(jax.vmap(twin.replace(p).rates))`` called repeatedly on a batch of one
  chunk of states and on ``LARGE_BATCH`` (100,000) members, the higher of the two rates
  (Python dispatch included; at 100,000 members it is a small part of a call);
- in a loop: the same vmapped right-hand side evaluated 200 times inside one compiled
  ``fori_loop`` (no dispatch), in the fastest of three layouts (member-major, state-major, a
  vector per state as ``simulate_ensemble`` keeps it): the arithmetic the model needs and
  nothing else, the stricter ceiling.

vht's evaluations are counted from ``n_steps`` of the result file: 6 per step for Tsit5 and
for the batch-major Dopri5 (7 stages, first same as last; evaluations after stops and the
starting step not counted), at least 3 per step for Kvaerno3 (3 implicit stages, one Newton
iteration each; Jacobians not counted), so model B's diffrax figure is a lower bound. scipy's
count is ``nfev``. libroadrunner does not report evaluations; for the stiff model B its
CVODE steps are counted (one variable-step run) to give a cost per member-step beside vht's.

Results go to results/ensemble_throughput.json, .md and .png in this folder.

Internal: ``--worker`` runs one sweep (used by the parent, under mpirun for ranks).
"""

from __future__ import annotations

import argparse
import functools
import json
import math
import os
import platform
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from . import ensemble_models as em

HERE = Path(__file__).resolve().parent
RESULTS = HERE / "results"
ROOT = HERE.parents[1]
PYTHON = sys.executable

RTOL = ATOL = 1e-8
TS = np.arange(0.0, 1440.0 + 1e-9, 5.0)  # 289 save times (minutes)
MEALS = ((420, 45.0), (720, 72.0), (1140, 83.0))  # as tests/test_uva_padova.py
PATIENT = "adolescent#001"
B_STEPS = {"hemorrhage_rate": [(360.0, 380.0, 0.5)],
           "systemic_resistance": [(720.0, 1080.0, 0.94 * 1.3)]}
INFUSIONS = [(0.0, 1440.0, 2.0)]  # model B: lidocaine (start, end, mg/min)
POPULATIONS = {
    "A": {"patient.kabs": 0.1, "patient.kmax": 0.1, "patient.Vmx": 0.1},
    "B": {"circulation.lv_elastance_max": 0.1, "circulation.systemic_venous_compliance": 0.1,
          "circulation.blood_volume": 0.1},
}
OUTPUTS = {"A": ("patient.glucose", "patient.subcutaneous_glucose", "patient.plasma_insulin"),
           "B": em.MODEL_B_OUTPUTS}
TITLES = {"A": "UVA/Padova T1D (18 states, 1440 clock ticks), three-meal day",
          "B": "beat-averaged circulation + baroreflex + lidocaine PBPK (39 states, stiff), "
               "bleed + pressor + infusion"}
EVALS_PER_STEP = {"ensemble": 6, "diffrax A": 6, "diffrax B": 3}
# The comparison rows: the integrator run_sweep does not choose for the model
OTHER_INTEGRATOR = {"A": "diffrax", "B": "ensemble"}
GOALS = {"libroadrunner": 10.0, "scipy": 100.0, "simglucose": 10_000.0}


# -- the vht side -------------------------------------------------------------------------------

def _jax():
    import jax

    jax.config.update("jax_enable_x64", True)
    return jax


def vht_setup(model: str) -> dict:
    """Twin, scenario, population and outputs of model A or B."""
    _jax()
    import vht

    if model == "A":
        from physiology_models.glucose_insulin import uva_padova as uva

        twin = vht.Twin({"patient": uva.UVAPadovaT1D.from_patient(PATIENT)})
        scenario = uva.day_scenario(MEALS, uva.quest(PATIENT)["CR"], name="three meals")
    else:
        from physiology_models.cardiovascular import (
            Baroreflex,
            MeanFlowCirculation,
            reflex_connections,
        )
        from physiology_models.pharmacology import lidocaine_pbpk

        twin = vht.Twin({"circulation": MeanFlowCirculation(), "reflex": Baroreflex(),
                         "drug": lidocaine_pbpk()},
                        reflex_connections() + [("circulation.cardiac_output",
                                                 "drug.cardiac_output")])
        scenario = vht.Scenario(
            [vht.ParameterStep(f"circulation.{name}", value, time=start, duration=end - start)
             for name, steps in B_STEPS.items() for start, end, value in steps]
            + [vht.Infusion(f"drug.{em.VENOUS_STATE}", rate, start=start, duration=end - start,
                            unit="mg/min") for start, end, rate in INFUSIONS],
            name="bleed, pressor and lidocaine")
    base = twin.parameters()
    population = vht.VirtualPopulation(
        {name: vht.LogNormal(float(base[name]), cv=cv) for name, cv in POPULATIONS[model].items()})
    return {"twin": twin, "scenario": scenario, "population": population,
            "outputs": OUTPUTS[model]}


def make_sweep(setup: dict, members: int, chunk_size: int, name: str, integrator: str = "auto"):
    import vht

    return vht.Sweep(setup["twin"], setup["population"], {"day": setup["scenario"]},
                     members=members, chunk_size=chunk_size, ts=TS, outputs=setup["outputs"],
                     rtol=RTOL, atol=ATOL, max_steps=1_000_000, seed=0, name=name,
                     integrator=integrator)


def worker(args) -> None:
    """One sweep in this process: warm-up (one chunk per rank: compilation), then the timed
    sweep of ``--members``; rank 0 writes a JSON summary to ``--result``."""
    _jax()
    import vht
    from vht import _distributed as distributed

    setup = vht_setup(args.model)
    rank, world = distributed.rank(), distributed.world_size()
    chunk = min(args.chunk_size, args.members)
    out = Path(args.output)
    timed = make_sweep(setup, args.members, chunk, "benchmark", args.integrator)
    summary = {"model": args.model, "members": args.members, "chunk_size": chunk,
               "ranks": world, "runner": "vht.run_sweep", "integrator": timed.integrator,
               "solver": timed.describe()["solver"],
               "memory_bound_mib": timed.chunk_memory_bytes() / 2**20}
    started = time.perf_counter()
    vht.run_sweep(make_sweep(setup, chunk * world, chunk, "warm-up", args.integrator),
                  out.with_name(out.stem + "_warmup.h5"), progress=False, overwrite=True)
    summary["cold_seconds"] = time.perf_counter() - started
    summary["cold_members"] = chunk * world
    started = time.perf_counter()
    result = vht.run_sweep(timed, out, progress=False, overwrite=True)
    summary["warm_seconds"] = time.perf_counter() - started
    summary["status_counts"] = result.manifest.get("status_counts")
    summary["path"] = str(out)
    summary["members_per_second"] = args.members / summary["warm_seconds"]
    summary["peak_rss_mib"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0
    rss = distributed.sum_over_ranks(np.asarray(summary["peak_rss_mib"])) if world > 1 else \
        summary["peak_rss_mib"]
    summary["peak_rss_mib_all_ranks"] = float(rss)
    if rank == 0:
        Path(args.result).write_text(json.dumps(summary, indent=2) + "\n")


def run_worker(model: str, members: int, chunk_size: int, workdir: Path, ranks: int = 1,
               timeout: float | None = None, integrator: str = "auto") -> dict:
    """A worker in a fresh process (under ``mpirun -n ranks`` for ranks > 1)."""
    tag = f"{model}_{members}_{ranks}_{integrator}"
    result = workdir / f"{tag}.json"
    command = [PYTHON, "-m", "experiments.benchmarks.ensemble_throughput", "--worker",
               "--model", model, "--members", str(members), "--chunk-size", str(chunk_size),
               "--integrator", integrator,
               "--output", str(workdir / f"{tag}.h5"), "--result", str(result)]
    env = dict(os.environ)
    env["PYTHONPATH"] = str(ROOT) + os.pathsep + env.get("PYTHONPATH", "")
    if ranks > 1:
        mpirun = shutil.which("mpirun")
        if mpirun is None:
            return {"error": "mpirun not found"}
        command = [mpirun, "--allow-run-as-root", "--oversubscribe", "-n", str(ranks)] + command
        env.pop("VHT_DISABLE_MPI", None)
    else:
        env["VHT_DISABLE_MPI"] = "1"
    print(f"  worker: model {model}, N = {members}, ranks = {ranks}, integrator {integrator}",
          flush=True)
    try:
        completed = subprocess.run(command, cwd=ROOT, env=env, timeout=timeout,
                                   capture_output=True, text=True)
    except subprocess.TimeoutExpired:
        return {"error": f"timed out after {timeout} s"}
    if completed.returncode != 0 or not result.exists():
        tail = (completed.stderr or completed.stdout)[-1500:]
        return {"error": f"worker failed (exit {completed.returncode}): {tail}"}
    summary = json.loads(result.read_text())
    print(f"    {summary['members_per_second']:.2f} members/s, warm {summary['warm_seconds']:.1f}"
          f" s, cold {summary['cold_seconds']:.1f} s, peak RSS "
          f"{summary['peak_rss_mib']:.0f} MiB ({summary['solver']})", flush=True)
    return summary


def load_vht(summary: dict, model: str, sample: int) -> dict:
    """Parameters and outputs of the first ``sample`` members, n_steps of all of them."""
    path = Path(summary["path"])
    names = list(POPULATIONS[model])
    import vht

    ds = vht.open_sweep(path)
    try:
        return {"parameters": {n: ds[f"parameter:{n}"].values[:sample] for n in names},
                "outputs": {o: ds[o].values[:sample, 0, :] for o in OUTPUTS[model]},
                "n_steps": ds["n_steps"].values[:, 0], "status": ds["status"].values[:, 0]}
    finally:
        ds.close()


def _rhs_inputs(model: str, batch: int):
    """The twin, ``batch`` members' sampled parameters, states near the initial state and
    times: the inputs of the bare right-hand-side measurements."""
    _jax()
    import jax.numpy as jnp

    twin = vht_setup(model)["twin"]
    rng = np.random.default_rng(1)
    base = twin.parameters()
    params = {n: jnp.asarray(float(base[n]) * np.exp(0.1 * rng.standard_normal(batch)))
              for n in POPULATIONS[model]}
    y0 = np.asarray(twin.initial_state())
    ys = jnp.asarray(y0 * (1.0 + 0.01 * rng.standard_normal((batch, y0.size))))
    return twin, params, ys, jnp.asarray(rng.uniform(0.0, 1440.0, batch))


def bare_rhs_rate(model: str, batch: int, seconds: float = 2.0) -> float:
    """Right-hand-side evaluations per second of jit(vmap(twin.replace(p).rates)) on a batch of
    ``batch`` members (the vector width inside a chunk), states near the initial state."""
    jax = _jax()

    twin, params, ys, t = _rhs_inputs(model, batch)
    f = jax.jit(jax.vmap(lambda p, t, y: twin.replace(p).rates(t, y)))
    jax.block_until_ready(f(params, t, ys))
    calls, started = 0, time.perf_counter()
    while time.perf_counter() - started < seconds:
        ys = ys + 1e-9 * f(params, t, ys)  # dependent calls: nothing is elided
        calls += 1
    jax.block_until_ready(ys)
    return calls * batch / (time.perf_counter() - started)


def _best_time(program, *args, repeats: int = 3) -> float:
    """Fastest of ``repeats`` timed calls of a compiled program (compiled by a first call)."""
    import jax

    jax.block_until_ready(program(*args))
    best = math.inf
    for _ in range(repeats):
        started = time.perf_counter()
        jax.block_until_ready(program(*args))
        best = min(best, time.perf_counter() - started)
    return best


def bare_rhs_rate_in_loop(model: str, batch: int, evaluations: int = 200) -> dict:
    """Right-hand-side evaluations per second of the vmapped ``twin.rates`` evaluated
    ``evaluations`` times inside one compiled ``fori_loop`` (no dispatch), in three layouts:
    member-major (batch, states), state-major (states, batch) and one (batch,) vector per
    state; returns all three and the fastest."""
    jax = _jax()
    import jax.numpy as jnp

    twin, params, ys, t = _rhs_inputs(model, batch)
    rates = {}
    for layout, axis in (("member-major", 0), ("state-major", 1)):
        f = jax.vmap(lambda p, t, y: twin.replace(p).rates(t, y), in_axes=(0, 0, axis),
                     out_axes=axis)

        @jax.jit
        def loop(params, t, y, f=f):
            return jax.lax.fori_loop(0, evaluations,
                                     lambda i, y: y + 1e-12 * f(params, t + i, y), y)

        rates[layout] = evaluations * batch / _best_time(loop, params, t,
                                                         ys if axis == 0 else ys.T)
    # one (batch,) vector per state, the layout of vht.simulate_ensemble
    n = ys.shape[1]

    def components(params, t, *y):
        dy = twin.replace(params).rates(t, jnp.stack(y))
        return tuple(dy[i] for i in range(n))

    f_rows = jax.vmap(components)

    @jax.jit
    def loop_rows(params, t, y):
        def body(i, y):
            return tuple(a + 1e-12 * b for a, b in zip(y, f_rows(params, t + i, *y)))
        return jax.lax.fori_loop(0, evaluations, body, y)

    rows = tuple(ys[:, i] for i in range(n))
    rates["vector per state"] = evaluations * batch / _best_time(loop_rows, params, t, rows)
    rates["best"] = max(rates.values())
    return rates


def roadrunner_steps(model: str) -> int | None:
    """CVODE's internal steps for one member-day of model B (a variable-step run)."""
    try:
        import antimony
        import roadrunner
    except ImportError:
        return None
    base = _base_b()
    antimony.clearPreviousLoads()
    antimony.loadAntimonyString(em.model_b_antimony(base["c"], base["r"], base["d"], B_STEPS,
                                                    INFUSIONS))
    rr = roadrunner.RoadRunner(antimony.getSBMLString(antimony.getMainModuleName()))
    rr.integrator.relative_tolerance = RTOL
    rr.integrator.absolute_tolerance = ATOL
    rr.integrator.stiff = True
    rr.integrator.maximum_num_steps = 100_000
    rr.integrator.variable_step_size = True
    rr.timeCourseSelections = ["time"]
    result = rr.simulate(0.0, float(TS[-1]))
    return int(result.shape[0] - 1)


# -- the peers ----------------------------------------------------------------------------------

def member_dicts(model: str, vht_members: dict, k: int):
    """Peer parameter dicts of member k: the base values with the sampled ones replaced."""
    sampled = {n.split(".", 1)[1]: float(v[k]) for n, v in vht_members["parameters"].items()}
    if model == "A":
        from physiology_models.glucose_insulin import uva_padova as uva

        p = uva.patient_parameters(PATIENT)
        p.update(sampled)
        return p
    setup_params = _base_b()
    c = dict(setup_params["c"])
    c.update(sampled)
    return c, setup_params["r"], setup_params["d"]


def _base_b():
    c, r, d = em.model_b_parameters(vht_setup("B")["twin"])
    return {"c": c, "r": r, "d": d}


def _uva_day():
    from physiology_models.glucose_insulin import uva_padova as uva

    return em.uva_actions(MEALS, uva.quest(PATIENT)["CR"], uva.basal_insulin_rate(PATIENT))


def relative_deviation(peer: dict, reference: dict, k: int) -> float:
    worst = 0.0
    for name, values in peer.items():
        ref = reference[name][k]
        worst = max(worst, float(np.max(np.abs(np.asarray(values) - ref)
                                        / np.maximum(np.abs(ref), 1e-12))))
    return worst


def run_scipy(model: str, vht_members: dict, sample: int, method: str = "LSODA",
              every_minute: bool = False) -> dict:
    cho, insulin = _uva_day() if model == "A" else (None, None)
    seconds, nfev, deviation = 0.0, 0, 0.0
    for k in range(sample):
        started = time.perf_counter()
        if model == "A":
            outputs, _, n = em.solve_uva(member_dicts(model, vht_members, k), cho, insulin, TS,
                                         rtol=RTOL, atol=ATOL, method=method,
                                         every_minute=every_minute)
            outputs = {f"patient.{name}": v for name, v in outputs.items()}
        else:
            c, r, d = member_dicts(model, vht_members, k)
            outputs, _, n = em.solve_model_b(c, r, d, B_STEPS, INFUSIONS, TS, rtol=RTOL,
                                             atol=ATOL, method=method)
        seconds += time.perf_counter() - started
        nfev += n
        deviation = max(deviation, relative_deviation(outputs, vht_members["outputs"], k))
    return {"members": sample, "seconds": seconds, "members_per_second": sample / seconds,
            "rhs_evaluations": nfev, "max_relative_deviation": deviation,
            "method": method + (", restarted every minute (simglucose's scheme)" if every_minute
                                else ", restarted where the held action changes" if model == "A"
                                else ", restarted at the scenario's step edges")}


def run_roadrunner(model: str, vht_members: dict, sample: int) -> dict:
    try:
        import roadrunner
    except ImportError:
        return {"missing": "libroadrunner is not installed: pip install libroadrunner antimony"}
    try:
        import antimony
    except ImportError:
        return {"missing": "antimony is not installed: pip install antimony"}
    if model == "A":
        from physiology_models.glucose_insulin import uva_padova as uva

        cho, insulin = _uva_day()
        text = em.uva_antimony(uva.patient_parameters(PATIENT), cho, insulin)
        selections = ["time", "glucose", "subcutaneous_glucose", "plasma_insulin"]
    else:
        base = _base_b()
        text = em.model_b_antimony(base["c"], base["r"], base["d"], B_STEPS, INFUSIONS)
        selections = ["time", "mean_arterial_pressure", "cardiac_output", "heart_rate",
                      "drug_concentration"]
    antimony.clearPreviousLoads()
    if antimony.loadAntimonyString(text) < 0:
        raise RuntimeError(antimony.getLastError())
    sbml = antimony.getSBMLString(antimony.getMainModuleName())
    rr = roadrunner.RoadRunner(sbml)
    rr.timeCourseSelections = selections
    rr.integrator.relative_tolerance = RTOL
    rr.integrator.absolute_tolerance = ATOL
    rr.integrator.stiff = model == "B"
    rr.integrator.maximum_num_steps = 100_000
    seconds, deviation = 0.0, 0.0
    for k in range(sample):
        started = time.perf_counter()
        rr.resetAll()
        if model == "A":
            for name, value in member_dicts(model, vht_members, k).items():
                rr[f"p_{name}"] = value
        else:
            c, r, _ = member_dicts(model, vht_members, k)
            for name in POPULATIONS["B"]:
                short = name.split(".", 1)[1]
                rr[f"c_{short}"] = c[short]
            for name, value in zip(em.CIRCULATION_STATES + em.REFLEX_STATES,
                                   em.circulation_initial_state(c, r)):
                rr[name] = value
        result = rr.simulate(0.0, float(TS[-1]), TS.size)
        seconds += time.perf_counter() - started
        names = ([f"patient.{n}" for n in selections[1:]] if model == "A"
                 else list(em.MODEL_B_OUTPUTS))  # the selections' order
        outputs = {name: np.asarray(result[:, j + 1]) for j, name in enumerate(names)}
        deviation = max(deviation, relative_deviation(outputs, vht_members["outputs"], k))
    return {"members": sample, "seconds": seconds, "members_per_second": sample / seconds,
            "max_relative_deviation": deviation, "version": roadrunner.__version__,
            "method": f"CVODE ({'BDF' if model == 'B' else 'Adams'}), scenario as SBML events"}


def run_simglucose(vht_members: dict, sample: int) -> dict:
    try:
        import pandas as pd
        from scipy.integrate import ode
        from simglucose.patient.t1dpatient import Action, T1DPatient
    except ImportError:
        return {"missing": "simglucose is not installed: pip install simglucose==0.2.11"}
    from importlib import metadata, resources

    from physiology_models.glucose_insulin import uva_padova as uva

    with resources.files("simglucose").joinpath("params", "vpatient_params.csv").open() as f:
        table = pd.read_csv(f)
    row = table.loc[table.Name == PATIENT].squeeze()
    carb_ratio = uva.quest(PATIENT)["CR"]
    announced = dict(MEALS)
    seconds, deviation = 0.0, 0.0
    for k in range(sample):
        params = row.copy()
        for name, values in vht_members["parameters"].items():
            params[name.split(".", 1)[1]] = float(values[k])
        started = time.perf_counter()
        patient = T1DPatient(params)
        # simglucose's own scheme (dopri5 restarted every minute) at this benchmark's tolerances
        # instead of its defaults (rtol 1e-6, atol 1e-12).
        patient._odesolver = ode(patient.model).set_integrator("dopri5", rtol=RTOL, atol=ATOL)
        patient._odesolver.set_initial_value(patient.init_state, patient.t0)
        basal = params.u2ss * params.BW / 6000.0
        states = []
        for minute in range(int(TS[-1]) + 1):
            if minute % 5 == 0:
                states.append(np.array(patient.state, dtype=float))
            if minute == int(TS[-1]):
                break
            grams = announced.get(minute, 0.0)
            patient.step(Action(CHO=grams, insulin=basal + (grams / carb_ratio if grams > 0
                                                             else 0.0)))
        seconds += time.perf_counter() - started
        x = np.array(states)
        outputs = {"patient.glucose": x[:, 3] / params.Vg,
                   "patient.subcutaneous_glucose": x[:, 12] / params.Vg,
                   "patient.plasma_insulin": x[:, 5] / params.Vi}
        deviation = max(deviation, relative_deviation(outputs, vht_members["outputs"], k))
    return {"members": sample, "seconds": seconds, "members_per_second": sample / seconds,
            "max_relative_deviation": deviation, "version": metadata.version("simglucose"),
            "method": "T1DPatient.step per minute, dopri5 at rtol = atol = 1e-8"}


def check_peers_against_vht() -> dict:
    """Largest relative difference of the peers' right-hand sides from twin.rates at random
    states (model A: the 13 continuous states; model B: all 39)."""
    jax = _jax()
    import jax.numpy as jnp

    rng = np.random.default_rng(0)
    out = {}
    setup = vht_setup("A")
    twin = setup["twin"]
    from physiology_models.glucose_insulin import uva_padova as uva

    p = uva.patient_parameters(PATIENT)
    y0 = np.asarray(twin.initial_state())
    worst = 0.0
    for _ in range(20):
        y = y0 * (1.0 + 0.3 * rng.standard_normal(y0.size))
        y[:3] = rng.uniform(0.0, 3e4, 3)
        y[13], y[14], y[16], y[17] = rng.uniform(0, 5e4), rng.uniform(0, 50), 5.0, 0.05
        a = np.asarray(twin.rates(0.0, jnp.asarray(y)))[:13]
        b = em.uva_rhs(0.0, y[:13], p, (y[16], y[17], y[13], y[14]))
        worst = max(worst, float(np.max(np.abs(a - b) / (np.abs(a) + 1e-12))))
    out["A"] = worst
    out["B"] = em.check_model_b(vht_setup("B")["twin"])
    del jax
    return out


# -- the report ---------------------------------------------------------------------------------

def machine() -> str:
    jax = _jax()
    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return f"{cpu}, {os.cpu_count()} CPU cores, {jax.device_count()} JAX device(s), " \
           f"jax {jax.__version__}, Python {platform.python_version()}"


def _fmt(x, digits=3):
    if x is None or (isinstance(x, float) and not math.isfinite(x)):
        return "-"
    if isinstance(x, str):
        return x
    if abs(x) >= 100:
        return f"{x:,.0f}"
    return f"{x:.{digits}g}"


def _vht_row(label: str, v: dict) -> str:
    if "members_per_second" not in v:
        return f"| {label} | - | failed: {v.get('error', '')[:200]} | | | | | | |"
    return (f"| {label} | {v['members']:,} | {_fmt(v['members_per_second'])} (cold "
            f"{v['cold_seconds']:.0f} s) | 1 | | 0 | {_fmt(v.get('mean_steps_per_member'))} | "
            f"{_fmt(v.get('solver_efficiency_per_call'))} | "
            f"{_fmt(v.get('solver_efficiency_in_loop'))} |")


def markdown(report: dict) -> str:
    lines = []
    if report["quick"]:
        lines += ["**Quick run** (`--quick`: small N, few peer members): indicative only.", ""]
    lines += [f"24 h scenarios saved every 5 min (289 times), float64, rtol = atol = "
              f"{RTOL:g} everywhere. vht rows are `vht.run_sweep` on one process and one CPU "
              "device (one core); ratios are against the first vht row of each model, which "
              "is the integrator `run_sweep` chooses (`auto`). Solver efficiency: RHS "
              "evaluations per second inside the solver over bare vmapped RHS evaluations, "
              "per call (jit-dispatched, the higher rate of one chunk and of "
              f"{LARGE_BATCH:,} members) and in a compiled loop (the stricter "
              "ceiling; see the benchmark's docstring).", ""]
    for model in ("A", "B"):
        m = report["models"][model]
        lines += [f"**Model {model}: {TITLES[model]}**", "",
                  "| implementation | members timed | members/s | vht / peer | goal | "
                  "max rel. deviation from vht | steps per member | efficiency (per call) | "
                  "efficiency (in loop) |",
                  "|---|---|---|---|---|---|---|---|---|"]
        for key in ("vht", "vht other"):
            if key in m:
                v = m[key]
                lines.append(_vht_row(f"vht: {v.get('solver', v.get('integrator', '?'))}"
                                      f"{' (auto)' if key == 'vht' else ''}, chunk "
                                      f"{v.get('chunk_size', '-')}", v))
        for name, peer in m["peers"].items():
            if "missing" in peer or "error" in peer:
                lines.append(f"| {name} | - | {peer.get('missing') or peer.get('error')} "
                             "| | | | | | |")
                continue
            goal = GOALS.get(name.split(" ")[0])
            verdict = ""
            if goal:
                met = peer["ratio_vht_over_peer"] >= goal
                verdict = f">= {_fmt(goal)} {'met' if met else 'not met'}"
            lines.append(
                f"| {name}: {peer['method']} | {peer['members']} | "
                f"{_fmt(peer['members_per_second'])} | {_fmt(peer['ratio_vht_over_peer'])} | "
                f"{verdict} | {peer['max_relative_deviation']:.1e} | "
                f"{_fmt(peer.get('steps_per_member'))} | "
                f"{_fmt(peer.get('solver_efficiency_per_call'))} | "
                f"{_fmt(peer.get('solver_efficiency_in_loop'))} |")
        if "bare_rhs_per_call" in m:
            loop = m["bare_rhs_in_loop"]
            per_call = (f"{_fmt(m['bare_rhs_per_call'])} evaluations/s per call" if
                        "bare_rhs_per_call_large_batch" not in m else
                        f"{_fmt(m['bare_rhs_per_call_at_batch'])} evaluations/s per call "
                        f"({_fmt(m['bare_rhs_per_call_large_batch'])} at "
                        f"{m['bare_rhs_large_batch']:,} members; the per-call efficiency "
                        "is against the higher)")
            lines += ["", f"Bare vmapped right-hand side, batch {m['bare_rhs_batch']}: "
                      f"{per_call}; in a compiled "
                      f"loop {_fmt(loop['member-major'])} (member-major), "
                      f"{_fmt(loop['state-major'])} (state-major), "
                      f"{_fmt(loop['vector per state'])} (a vector per state)."]
        if m.get("cost_per_member_step"):
            lines += ["", "Cost per member-step (wall time / (members x steps per member)):",
                      "", "| implementation | steps per member | microseconds per member-step |",
                      "|---|---|---|"]
            for name, row in m["cost_per_member_step"].items():
                lines.append(f"| {name} | {_fmt(row['steps'])} | {_fmt(row['microseconds'])} |")
        lines.append("")
    scan = report.get("scan", [])
    if scan:
        lines += ["**vht throughput against N** (model A, `auto`, fresh process per N)", "",
                  "| N | members/s | warm wall [s] | cold first chunk [s] | chunk memory bound "
                  "[MiB] | peak RSS [MiB] |", "|---|---|---|---|---|---|"]
        for row in scan:
            if "members_per_second" in row:
                lines.append(f"| {row['members']:,} | {_fmt(row['members_per_second'])} | "
                             f"{row['warm_seconds']:.1f} | {row['cold_seconds']:.1f} | "
                             f"{row.get('memory_bound_mib', 0):.0f} | "
                             f"{row['peak_rss_mib']:.0f} |")
            else:
                lines.append(f"| {row['members']:,} | {row.get('skipped') or row.get('error')} "
                             "| | | | |")
        lines.append("")
    ranks = report.get("ranks", [])
    if ranks:
        lines += ["**vht against MPI ranks** (model A, `auto`; 2 ranks use both cores)", "",
                  "| ranks | N | members/s | warm wall [s] | peak RSS, all ranks [MiB] |",
                  "|---|---|---|---|---|"]
        for row in ranks:
            if "members_per_second" in row:
                lines.append(f"| {row['ranks']} | {row['members']:,} | "
                             f"{_fmt(row['members_per_second'])} | {row['warm_seconds']:.1f} | "
                             f"{row['peak_rss_mib_all_ranks']:.0f} |")
            else:
                lines.append(f"| {row.get('ranks')} | | {row.get('error', '')[:200]} | | |")
        lines.append("")
    lines.append(f"Measured on {report['machine']}. Peers' members/s from the members timed "
                 "(a loop, one member after another, one core); vht's from the whole sweep "
                 "(N / wall time of run_sweep, compiled beforehand).")
    return "\n".join(lines) + "\n"


def plot(report: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = [r for r in report.get("scan", []) if "members_per_second" in r]
    if not rows:
        return
    fig, axes = plt.subplots(1, 2, figsize=(10, 4))
    n = [r["members"] for r in rows]
    axes[0].loglog(n, [r["members_per_second"] for r in rows], "o-", label="vht, 1 rank")
    for r in report.get("ranks", []):
        if "members_per_second" in r and r["ranks"] > 1:
            axes[0].loglog([r["members"]], [r["members_per_second"]], "s",
                           label=f"vht, {r['ranks']} ranks")
    for k, (name, peer) in enumerate(report["models"]["A"]["peers"].items()):
        if "members_per_second" in peer:
            axes[0].axhline(peer["members_per_second"], ls="--", lw=1, color=f"C{k + 2}",
                            label=f"{name} (loop)")
    axes[0].set_xlabel("members N")
    axes[0].set_ylabel("members per second")
    axes[0].set_title("model A: throughput")
    axes[0].legend(fontsize=7)
    axes[1].semilogx(n, [r["peak_rss_mib"] for r in rows], "o-")
    axes[1].set_xlabel("members N")
    axes[1].set_ylabel("peak resident memory [MiB]")
    axes[1].set_title("model A: peak RSS of the process")
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


# a batch large enough that one call's dispatch (tens of microseconds) is a small part of it
LARGE_BATCH = 100_000


@functools.cache
def bare_rates(model: str, batch: int) -> dict:
    """The bare right-hand-side rates (measured once): per call at vector width ``batch`` and
    at ``LARGE_BATCH`` members, and in a compiled loop at width ``batch``. ``per_call`` is
    the higher of the two per-call rates, so that a per-call efficiency cannot owe itself to
    the dispatch of a small batch."""
    at_batch, large = bare_rhs_rate(model, batch), bare_rhs_rate(model, LARGE_BATCH)
    return {"per_call": max(at_batch, large), "per_call_at_batch": at_batch,
            "per_call_large_batch": large, "in_loop": bare_rhs_rate_in_loop(model, batch)}


def _efficiencies(v: dict, model: str, batch: int, evals: float, seconds: float) -> None:
    """Efficiency against the bare rates at vector width ``batch``: a vht row's own chunk; for
    a peer (a loop over members) the auto row's chunk, the ceiling vht is measured against."""
    bare = bare_rates(model, batch)
    v["rhs_evaluations"] = evals
    v["rhs_evaluations_per_second"] = evals / seconds
    v["bare_rhs_batch"] = batch
    v["solver_efficiency_per_call"] = v["rhs_evaluations_per_second"] / bare["per_call"]
    v["solver_efficiency_in_loop"] = v["rhs_evaluations_per_second"] / bare["in_loop"]["best"]


def measure_vht(model: str, v: dict, entry: dict, sample: int) -> dict:
    """Steps, evaluations and efficiencies of a vht row; the first ``sample`` members."""
    vm = load_vht(v, model, sample)
    ok = vm["status"] == 0
    per_step = EVALS_PER_STEP["ensemble" if v["integrator"] == "ensemble"
                              else f"diffrax {model}"]
    _efficiencies(v, model, min(v["chunk_size"], v["members"]),
                  per_step * float(np.sum(vm["n_steps"][ok])), v["warm_seconds"])
    v["rhs_evaluations_note"] = f"{per_step} x n_steps summed over members" + (
        " (lower bound)" if per_step == 3 else "")
    v["mean_steps_per_member"] = float(np.mean(vm["n_steps"][ok]))
    return vm


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--members", type=int, default=None,
                        help="N for model A's auto row (default 10000; 200 with --quick)")
    parser.add_argument("--members-b", type=int, default=None,
                        help="N for model B's auto row, vmapped Kvaerno3 (default 1000; 50 "
                        "with --quick)")
    parser.add_argument("--members-other", type=int, default=None,
                        help="N for the comparison rows (default 400 for model A and 64 for "
                        "model B, whose explicit steps are stability-limited; 20 with --quick)")
    parser.add_argument("--quick", action="store_true",
                        help="small N everywhere, scan N up to 1000, fewer peer members")
    parser.add_argument("--chunk-size", type=int, default=1024,
                        help="chunk size of the batch-major integrator's sweeps")
    parser.add_argument("--chunk-size-diffrax", type=int, default=256,
                        help="chunk size of the vmapped diffrax sweeps")
    parser.add_argument("--scan-limit", type=float, default=600.0,
                        help="skip a scan N whose estimated time exceeds this (s)")
    parser.add_argument("--no-scan", action="store_true")
    parser.add_argument("--no-ranks", action="store_true")
    parser.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--model", choices=("A", "B"), help=argparse.SUPPRESS)
    parser.add_argument("--integrator", default="auto", help=argparse.SUPPRESS)
    parser.add_argument("--output", help=argparse.SUPPRESS)
    parser.add_argument("--result", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        worker(args)
        return
    quick = args.quick
    members = {"A": args.members or (200 if quick else 10_000),
               "B": args.members_b or (50 if quick else 1000)}
    other_members = {model: args.members_other or (20 if quick else n)
                     for model, n in (("A", 400), ("B", 64))}
    if quick:
        samples = {"scipy": 3, "libroadrunner": 10, "simglucose": 1, "scipy per minute": 1}
        scan_n = sorted({1, 10, 100, 1000, members["A"]})
    else:
        samples = {"scipy": 10, "libroadrunner": 50, "simglucose": 3, "scipy per minute": 2}
        scan_n = sorted({1, 10, 100, 1000, 10_000, 100_000, members["A"]})
    rank_members = members["A"]
    chunks = {"ensemble": args.chunk_size, "diffrax": args.chunk_size_diffrax}
    report = {"quick": quick, "members": members, "members_other": other_members,
              "rtol": RTOL, "atol": ATOL, "save_times": TS.size, "machine": machine(),
              "chunk_sizes": chunks, "peer_samples": samples, "models": {}}
    print("checking the peers' right-hand sides against twin.rates", flush=True)
    report["peer_rhs_max_relative_difference"] = check_peers_against_vht()
    print(f"  {report['peer_rhs_max_relative_difference']}", flush=True)
    workdir = Path(tempfile.mkdtemp(prefix="vht_ensemble_bench_"))
    auto = {"A": "ensemble", "B": "diffrax"}
    try:
        for model in ("A", "B"):
            print(f"== model {model}: {TITLES[model]} ==", flush=True)
            chunk = chunks[auto[model]]
            v = run_worker(model, members[model], chunk, workdir)
            entry = {"title": TITLES[model], "vht": v, "peers": {}}
            report["models"][model] = entry
            if "members_per_second" not in v:
                print(f"  vht failed: {v.get('error')}", flush=True)
                continue
            batch = min(chunk, members[model])
            entry["bare_rhs_batch"] = batch
            bare = bare_rates(model, batch)
            entry["bare_rhs_per_call"] = bare["per_call"]
            entry["bare_rhs_per_call_at_batch"] = bare["per_call_at_batch"]
            entry["bare_rhs_per_call_large_batch"] = bare["per_call_large_batch"]
            entry["bare_rhs_large_batch"] = LARGE_BATCH
            entry["bare_rhs_in_loop"] = bare["in_loop"]
            vm = measure_vht(model, v, entry, min(max(samples.values()), members[model]))

            other = OTHER_INTEGRATOR[model]
            o = run_worker(model, other_members[model],
                           min(chunks[other], other_members[model]), workdir, integrator=other)
            entry["vht other"] = o
            if "members_per_second" in o:
                measure_vht(model, o, entry, 0)
                o["ratio_auto_over_this"] = v["members_per_second"] / o["members_per_second"]

            peers = entry["peers"]
            k = min(samples["scipy"], members[model])
            print(f"  scipy LSODA, {k} members", flush=True)
            peers["scipy"] = run_scipy(model, vm, k)
            if model == "A":
                k = min(samples["scipy per minute"], members[model])
                print(f"  scipy LSODA restarted every minute, {k} members", flush=True)
                peers["scipy (per-minute restarts)"] = run_scipy(model, vm, k, every_minute=True)
            k = min(samples["libroadrunner"], members[model])
            print(f"  libroadrunner, {k} members", flush=True)
            peers["libroadrunner"] = run_roadrunner(model, vm, k)
            if model == "A":
                k = min(samples["simglucose"], members[model])
                print(f"  simglucose, {k} members", flush=True)
                peers["simglucose"] = run_simglucose(vm, k)
            for name, peer in peers.items():
                if "members_per_second" in peer:
                    peer["ratio_vht_over_peer"] = v["members_per_second"] / peer[
                        "members_per_second"]
                if "rhs_evaluations" in peer:  # against the same vectorised ceiling
                    _efficiencies(peer, model, batch, peer["rhs_evaluations"], peer["seconds"])
                print(f"    {name}: {json.dumps(peer)}", flush=True)
            if model == "B":
                # the stiff model: cost per member-step of each implementation that counts
                costs = {}
                for row in (v, o):
                    if "mean_steps_per_member" in row:
                        costs[f"vht {row['solver']}"] = {
                            "steps": row["mean_steps_per_member"],
                            "microseconds": 1e6 / row["members_per_second"]
                            / row["mean_steps_per_member"]}
                rr = peers.get("libroadrunner", {})
                steps = roadrunner_steps(model) if "members_per_second" in rr else None
                if steps:
                    rr["steps_per_member"] = steps
                    costs["libroadrunner CVODE (BDF)"] = {
                        "steps": steps, "microseconds": 1e6 / rr["members_per_second"] / steps}
                entry["cost_per_member_step"] = costs
                print(f"  cost per member-step: {json.dumps(costs)}", flush=True)
        if not args.no_scan:
            print("== throughput against N (model A) ==", flush=True)
            main_a = report["models"]["A"]["vht"]
            rate = main_a.get("members_per_second")
            scan = []
            for n in scan_n:
                estimate = n / rate if rate else None
                if estimate is not None and estimate > args.scan_limit and n != members["A"]:
                    scan.append({"members": n, "skipped": f"skipped: estimated "
                                 f"{estimate / 60:.0f} min at {rate:.1f} members/s, over the "
                                 f"{args.scan_limit / 60:.0f} min limit"})
                    print(f"  N = {n}: {scan[-1]['skipped']}", flush=True)
                    continue
                row = main_a if n == members["A"] else run_worker(
                    "A", n, min(args.chunk_size, n), workdir)
                scan.append(dict(row, members=n))
            report["scan"] = scan
        if not args.no_ranks:
            print("== throughput against ranks (model A) ==", flush=True)
            report["ranks"] = []
            for ranks in (1, 2):
                if ranks == 1:
                    row = report["models"]["A"]["vht"]
                else:
                    row = run_worker("A", rank_members, args.chunk_size, workdir, ranks=ranks)
                report["ranks"].append(dict(row, ranks=ranks, members=rank_members))
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / "ensemble_throughput.json").write_text(json.dumps(report, indent=2,
                                                                 default=float) + "\n")
    table = markdown(report)
    (RESULTS / "ensemble_throughput.md").write_text(table)
    plot(report, RESULTS / "ensemble_throughput.png")
    print(table)


if __name__ == "__main__":
    main()
