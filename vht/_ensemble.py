"""Ensemble sweeps: N virtual members times scenario arms, in fixed chunks, streamed to HDF5,
resumable, and bitwise independent of how the work is spread over devices and MPI ranks.

The unit of work is a chunk of ``chunk_size`` members, fixed by the sweep:

- member ``i`` lies in chunk ``i // C`` at slot ``i % C``; its random key is
  ``fold_in(PRNGKey(seed), i)``; the last chunk is padded with copies of the last member,
  computed and discarded (masked);
- chunk ``c`` goes to MPI rank ``c % K`` (K ranks); a rank hands its chunks to its local
  devices, one whole chunk per device (dispatched asynchronously, side by side), so every
  device runs the same per-chunk program on the same inputs whatever the decomposition.
  Results are therefore bitwise identical on 1 or 4 devices and on 1 or 2 ranks (tested);
- inside a chunk the members are vmapped: adaptive steps run in lockstep, each member with its
  own step size and step budget (``max_steps``), and a failing member (solver failure, step
  budget, NaN) gets its status and NaN outputs without touching the others' bits. Twins of
  linear organs with closed-form responses, under scenarios of doses and infusions only, skip
  the solver: each member is evaluated exactly at the save times (``simulate_closed_form``).

Every finished chunk is committed to ``<output>.parts/`` at once; a killed sweep, run again
with the same command, recomputes only chunks that were not committed (at most one per device
per rank and kill), then assembles the single result file and writes the manifest (see
``vht._ensemble_store`` for the crash-safety rules).

Memory: a chunk's outputs take about ``8 * C * arms * times * (2 * states + signals +
outputs)`` bytes per device while it runs (``Sweep.chunk_memory_bytes``); a sweep whose chunk
exceeds ``memory_limit`` is refused with the chunk size that would fit. Assembly holds one
chunk at a time, and the quantiles read blocks of times within the same bound.
"""

from __future__ import annotations

import copy
import datetime
import hashlib
import json
import math
import os
import time as _time
from collections.abc import Mapping, Sequence
from pathlib import Path

import diffrax
import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np

from . import _distributed as distributed
from ._closed_form import closed_form_refusal, simulate_closed_form
from ._ensemble_store import SweepStore, assemble, fault, status_counts
from ._hashing import model_hash, parameter_hash
from ._results import provenance
from ._scenario import Scenario
from ._simulate import Status, _default_solver, simulate
from ._simulate_ensemble import METHOD as ENSEMBLE_METHOD
from ._simulate_ensemble import simulate_ensemble
from ._twin import Twin
from ._units import TIME_UNIT
from ._virtual_population import COVARIATE_UNITS, AbstractPopulation


class Sweep:
    """What to run: a base twin, a population to draw members from, and treatment arms.

    Args:
        twin: the base twin; members replace the parameters the population samples.
        population: a ``vht.VirtualPopulation`` (or another ``AbstractPopulation``).
        arms: ``{"name": Scenario}``, run for every member (a single Scenario is one arm named
            after it, or "baseline").
        members: N, the number of members.
        chunk_size: C, members per chunk (the unit of work, of commit and of resume).
        t1, ts, n_save: save times, as in ``vht.simulate`` (minutes).
        outputs: states and signals to store (default: every signal and state).
        seed: the sweep's random seed; member ``i`` draws from ``fold_in(PRNGKey(seed), i)``.
        rtol, atol, max_steps, solver: as in ``vht.simulate`` (max_steps is each member's step
            budget per segment).
        integrator: ``"auto"`` (default): the closed-form solution
            (``vht.simulate_closed_form``, no solver, exact; rtol, atol and max_steps unused)
            where every arm allows it, else the batch-major integrator of
            ``vht.simulate_ensemble`` for non-stiff twins, vmapped diffrax for stiff ones or
            when a diffrax ``solver`` is given; ``"closed_form"``, ``"ensemble"`` or
            ``"diffrax"`` to choose. The choice is part of the sweep's description, hash and
            provenance.
        overrides: ``{member_index: {"organ.parameter": value}}``, values pinned for given
            members (a real patient among virtual ones, a known edge case).
        quantiles: the quantiles written per arm and time.
        memory_limit: bytes a chunk may take per device while it runs.
        name: a label for reports.
    """

    def __init__(
        self,
        twin: Twin,
        population: AbstractPopulation,
        arms: Mapping[str, Scenario] | Scenario,
        *,
        members: int,
        chunk_size: int = 256,
        t1: float | None = None,
        ts: Sequence[float] | None = None,
        n_save: int = 101,
        outputs: Sequence[str] | None = None,
        seed: int = 0,
        rtol: float = 1e-6,
        atol: float = 1e-8,
        max_steps: int = 10_000,
        solver: diffrax.AbstractSolver | None = None,
        integrator: str = "auto",
        overrides: Mapping[int, Mapping[str, float]] | None = None,
        quantiles: Sequence[float] = (0.05, 0.25, 0.5, 0.75, 0.95),
        memory_limit: int = 2 * 2**30,
        name: str = "",
    ):
        if not isinstance(twin, Twin):
            raise ValueError(f"Sweep expects a vht.Twin, got {type(twin).__name__}")
        if not isinstance(population, AbstractPopulation):
            raise ValueError("Sweep expects a population (vht.VirtualPopulation), got "
                             f"{type(population).__name__}")
        population.check_against(twin)
        if isinstance(arms, Scenario):
            arms = {arms.name or "baseline": arms}
        arms = dict(arms)
        if not arms:
            raise ValueError("a Sweep needs at least one arm")
        for arm_name, scenario in arms.items():
            if not isinstance(scenario, Scenario):
                raise ValueError(f"arm {arm_name!r} is a {type(scenario).__name__}, not a "
                                 "vht.Scenario")
        if int(members) < 1:
            raise ValueError(f"members must be at least 1, got {members}")
        if int(chunk_size) < 1:
            raise ValueError(f"chunk_size must be at least 1, got {chunk_size}")
        if ts is None:
            if t1 is None:
                raise ValueError("a Sweep needs t1 (end time) or ts (save times)")
            ts = np.linspace(0.0, float(t1), int(n_save))
        ts = np.asarray(ts, dtype=float)
        if ts.ndim != 1 or ts.size < 1 or np.any(np.diff(ts) < 0) or ts[0] < 0:
            raise ValueError("save times ts must be a non-empty increasing 1-D sequence from 0")
        t1 = float(ts[-1]) if t1 is None else float(t1)
        known = set(twin.state_names) | set(twin.signal_names)
        outputs = tuple(twin.signal_names + twin.state_names) if outputs is None else tuple(
            outputs)
        for output in outputs:
            if output not in known:
                raise ValueError(f"output {output!r} is neither a state nor a signal of the "
                                 "twin")
        if len(set(outputs)) != len(outputs):
            raise ValueError("outputs are listed twice")
        parameters = twin.parameters()
        overrides = {int(i): dict(v) for i, v in (overrides or {}).items()}
        for index, values in overrides.items():
            if not 0 <= index < int(members):
                raise ValueError(f"override for member {index}, outside 0..{int(members) - 1}")
            for parameter in values:
                if parameter not in parameters:
                    raise ValueError(f"override of member {index} names {parameter!r}, which "
                                     "is not a parameter of the twin")
        integrator = _choose_integrator(twin, arms, solver, integrator)
        quantiles = tuple(float(q) for q in quantiles)
        if not all(0.0 <= q <= 1.0 for q in quantiles):
            raise ValueError("quantiles must lie in [0, 1]")
        self.twin = twin
        self.population = population
        self.arms = arms
        self.members = int(members)
        self.chunk_size = int(chunk_size)
        self.ts = ts
        self.t1 = t1
        self.outputs = outputs
        self.seed = int(seed)
        self.rtol, self.atol, self.max_steps = float(rtol), float(atol), int(max_steps)
        self.solver = solver
        self.integrator = integrator
        self.overrides = overrides
        self.quantiles = quantiles
        self.memory_limit = int(memory_limit)
        self.name = name
        if self.chunk_memory_bytes() > self.memory_limit:
            per_member = self.chunk_memory_bytes() / self.chunk_size
            fits = max(1, int(self.memory_limit // per_member))
            raise ValueError(
                f"a chunk of {self.chunk_size} members needs about "
                f"{self.chunk_memory_bytes() / 2**20:.0f} MiB per device, above memory_limit "
                f"{self.memory_limit / 2**20:.0f} MiB: use chunk_size <= {fits}, fewer save "
                "times or outputs, or raise memory_limit")

    def with_integrator(self, integrator: str) -> Sweep:
        """The same sweep with another integrator (``"auto"``, ``"closed_form"``,
        ``"ensemble"``, ``"diffrax"``): a different sweep, with its own hash, since the results
        differ within tolerance."""
        other = copy.copy(self)
        other.integrator = _choose_integrator(self.twin, self.arms, self.solver, integrator)
        return other

    # -- derived layout ----------------------------------------------------------------------

    @property
    def n_chunks(self) -> int:
        return math.ceil(self.members / self.chunk_size)

    def chunk_members(self, chunk: int) -> np.ndarray:
        """The member index in each slot of ``chunk``; padding slots repeat the last member."""
        slots = chunk * self.chunk_size + np.arange(self.chunk_size)
        return np.minimum(slots, self.members - 1)

    def override_names(self) -> tuple[str, ...]:
        sampled = self.population.parameter_names()
        extra = sorted({p for values in self.overrides.values() for p in values} - set(sampled))
        return tuple(sampled) + tuple(extra)

    def chunk_memory_bytes(self) -> int:
        """Estimated bytes one chunk's run takes on a device (see the module docstring)."""
        per_time = 2 * len(self.twin.state_names) + len(self.twin.signal_names) + \
            len(self.outputs)
        return 8 * self.chunk_size * len(self.arms) * self.ts.size * per_time

    def describe(self) -> dict:
        """Everything that determines the results (hashed into ``sweep_hash``)."""
        return {
            "name": self.name,
            "model_hash": model_hash(self.twin),
            "parameter_hash": parameter_hash(self.twin),
            "twin_origin": list(self.twin.origin) if self.twin.origin else None,
            "population": self.population.describe(),
            "arms": {k: v.describe() for k, v in self.arms.items()},
            "members": self.members,
            "chunk_size": self.chunk_size,
            "time": [float(t) for t in self.ts],
            "t1": self.t1,
            "outputs": list(self.outputs),
            "seed": self.seed,
            "integrator": self.integrator,
            "solver": _solver_label(self),
            "rtol": self.rtol,
            "atol": self.atol,
            "max_steps": self.max_steps,
            "overrides": {str(k): v for k, v in sorted(self.overrides.items())},
        }

    def sweep_hash(self) -> str:
        text = json.dumps(self.describe(), sort_keys=True, default=float)
        return hashlib.sha256(text.encode()).hexdigest()[:16]

    def _overrides_of(self, indices: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        names = self.override_names()
        values = np.zeros((indices.size, len(names)))
        mask = np.zeros((indices.size, len(names)), dtype=bool)
        for slot, index in enumerate(indices):
            for parameter, value in self.overrides.get(int(index), {}).items():
                values[slot, names.index(parameter)] = value
                mask[slot, names.index(parameter)] = True
        return values, mask


INTEGRATORS = ("auto", "closed_form", "ensemble", "diffrax")


def _choose_integrator(twin: Twin, arms: Mapping[str, Scenario], solver, integrator: str) -> str:
    if integrator not in INTEGRATORS:
        raise ValueError(f"integrator must be one of {INTEGRATORS}, not {integrator!r}")
    if integrator in ("ensemble", "closed_form") and solver is not None:
        raise ValueError(f"integrator={integrator!r} does not take a diffrax solver; a solver "
                         "needs integrator='diffrax' (or 'auto')")
    refusals = [r for r in (closed_form_refusal(twin, arm) for arm in arms.values())
                if r is not None]
    if integrator == "closed_form" and refusals:
        raise ValueError(f"integrator='closed_form' is not possible: {refusals[0]}")
    if integrator == "auto":
        if solver is None and not refusals:
            return "closed_form"
        # explicit steps on a stiff twin would be limited by stability, not accuracy
        return "diffrax" if twin.stiffness == "stiff" or solver is not None else "ensemble"
    return integrator


def _solver_label(sweep: Sweep) -> str:
    if sweep.integrator == "closed_form":
        return CLOSED_FORM_METHOD
    if sweep.integrator == "ensemble":
        return ENSEMBLE_METHOD
    return f"diffrax {type(sweep.solver or _default_solver(sweep.twin)).__name__}"


CLOSED_FORM_METHOD = "closed form (superposition of impulse and step responses, no solver)"


# -- the per-chunk program ----------------------------------------------------------------------


def _draw(twin, population, names, key, index, override_values, override_mask):
    """One member's parameters: drawn (with redraws until plausible), overrides applied."""
    member_key = jax.random.fold_in(key, index)
    base = twin.parameters()

    def draw(attempt):
        sampled, covariates = population.draw(jax.random.fold_in(member_key, attempt))
        values = {}
        for j, name in enumerate(names):
            drawn = sampled.get(name, base[name])
            values[name] = jnp.where(override_mask[j], override_values[j], drawn)
        member_twin = twin.replace(values)
        return values, covariates, population.accept(member_twin, values, covariates)

    values, covariates, accepted = draw(0)

    def more(carry):
        attempts, _, _, accepted = carry
        return (~accepted) & (attempts < population.max_attempts)

    def redraw(carry):
        attempts = carry[0]
        return (attempts + 1, *draw(attempts))

    attempts, values, covariates, accepted = jax.lax.while_loop(
        more, redraw, (jnp.array(1, jnp.int32), values, covariates, accepted))
    covariates = (jnp.stack([covariates[n] for n in population.covariate_names()])
                  if population.covariate_names() else jnp.zeros((0,)))
    return {"values": values, "covariates": covariates, "accepted": accepted,
            "attempts": attempts}


def _selected(solution, state_index, signal_index):
    """The sweep's outputs of a solution (states first, then signals), on its last axis."""
    return jnp.concatenate([solution.ys[..., np.array(state_index, dtype=int)],
                            solution.signals[..., np.array(signal_index, dtype=int)]], axis=-1)


@eqx.filter_jit
def _run_chunk(dynamic, static, config, key, indices, override_values, override_mask):
    """One chunk: its C members drawn, then every arm for all of them at once (the batch-major
    integrator) or vmapped member by member (closed form, diffrax). The same program for every
    chunk, device and rank."""
    (names, ts, t1, rtol, atol, max_steps, solver, state_index, signal_index,
     integrator) = config
    twin, population, arms = eqx.combine(dynamic, static)
    drawn = jax.vmap(lambda i, v, m: _draw(twin, population, names, key, i, v, m))(
        indices, override_values, override_mask)
    cohort = jax.vmap(twin.replace)(drawn["values"])
    outputs, statuses, steps = [], [], []
    for scenario in arms:
        if integrator == "closed_form":
            solution = jax.vmap(lambda member, scenario=scenario: simulate_closed_form(
                member, scenario, ts=jnp.asarray(ts)))(cohort)
        elif integrator == "ensemble":
            solution = simulate_ensemble(cohort, scenario, ts=np.asarray(ts), t1=t1, rtol=rtol,
                                         atol=atol, max_steps=max_steps)
        else:
            solution = jax.vmap(lambda member, scenario=scenario: simulate(
                member, scenario, ts=jnp.asarray(ts), t1=t1, rtol=rtol, atol=atol,
                max_steps=max_steps, solver=solver, throw=False))(cohort)
        status = jnp.where(drawn["accepted"], solution.status, Status.IMPLAUSIBLE)
        out = _selected(solution, state_index, signal_index)  # (member, time, output)
        outputs.append(jnp.where((status == Status.OK)[:, None, None], out, jnp.nan))
        statuses.append(status.astype(jnp.int32))
        steps.append(solution.n_steps.astype(jnp.int64))
    return {
        "outputs": jnp.stack(outputs, axis=1),  # (member, arm, time, output)
        "status": jnp.stack(statuses, axis=1),
        "n_steps": jnp.stack(steps, axis=1),
        "parameters": jnp.stack([drawn["values"][n] for n in names], axis=1),
        "covariates": drawn["covariates"],
        "accepted": drawn["accepted"],
        "attempts": drawn["attempts"],
    }


# -- the driver ---------------------------------------------------------------------------------


class SweepResult:
    """Where a finished sweep lies and what it measured (also in its manifest)."""

    def __init__(self, path: Path, manifest: dict, already_complete: bool = False):
        self.path = path
        self.manifest = manifest
        self.already_complete = already_complete  # found finished; nothing was run

    def open(self):
        """The result as a lazily loaded ``xarray.Dataset``."""
        return open_sweep(self.path)

    def __repr__(self) -> str:
        counts = self.manifest.get("status_counts")
        return f"SweepResult({str(self.path)!r}, status_counts={counts})"


def open_sweep(path: str | os.PathLike):
    """Open a sweep's result file lazily (``xarray.open_dataset``, h5netcdf engine): variables
    load on access, so a file larger than memory can be sliced."""
    import xarray as xr

    return xr.open_dataset(path, engine="h5netcdf", decode_times=False, decode_timedelta=False)


def _layout(sweep: Sweep) -> dict:
    twin = sweep.twin
    info = twin.parameter_info()
    units = dict(zip(twin.state_names, twin.state_units))
    units.update(zip(twin.signal_names, twin.signal_units))
    return {
        "members": sweep.members, "chunk_size": sweep.chunk_size, "n_chunks": sweep.n_chunks,
        "arms": list(sweep.arms), "time": sweep.ts, "time_unit": TIME_UNIT,
        "outputs": [(n, units[n], "state" if n in twin.state_names else "signal")
                    for n in _ordered_outputs(sweep)],
        "parameters": [(n, info[n].unit) for n in sweep.override_names()],
        "covariates": [(n, COVARIATE_UNITS.get(n, "1"))
                       for n in sweep.population.covariate_names()],
    }


def _ordered_outputs(sweep: Sweep) -> list[str]:
    """Outputs in the order the program returns them: states first, then signals."""
    states = [n for n in sweep.outputs if n in sweep.twin.state_names]
    return states + [n for n in sweep.outputs if n not in sweep.twin.state_names]


def _config(sweep: Sweep) -> tuple:
    twin = sweep.twin
    ordered = _ordered_outputs(sweep)
    states = tuple(twin.state_names.index(n) for n in ordered if n in twin.state_names)
    signals = tuple(twin.signal_names.index(n) for n in ordered if n not in twin.state_names)
    return (sweep.override_names(), tuple(float(t) for t in sweep.ts), sweep.t1, sweep.rtol,
            sweep.atol, sweep.max_steps, sweep.solver, states, signals, sweep.integrator)


def _chunk_arrays(sweep: Sweep, chunk: int, out: Mapping[str, np.ndarray],
                  layout: Mapping) -> dict[str, np.ndarray]:
    """The real members of ``chunk`` (padding dropped), keyed as the chunk file stores them."""
    indices = sweep.chunk_members(chunk)
    n_real = int(np.sum(chunk * sweep.chunk_size + np.arange(sweep.chunk_size) < sweep.members))
    take = lambda x: np.asarray(x[:n_real])  # noqa: E731
    arrays = {"member": indices[:n_real].astype(np.int64)}
    outputs = take(out["outputs"])  # (member, arm, time, output)
    for k, (name, _, _) in enumerate(layout["outputs"]):
        arrays[f"output/{name}"] = np.ascontiguousarray(outputs[..., k])
    arrays["status"] = take(out["status"]).astype(np.int32)
    arrays["n_steps"] = take(out["n_steps"]).astype(np.int64)
    parameters = take(out["parameters"])
    for k, (name, _) in enumerate(layout["parameters"]):
        arrays[f"parameter/{name}"] = parameters[:, k]
    covariates = take(out["covariates"])
    for k, (name, _) in enumerate(layout["covariates"]):
        arrays[f"covariate/{name}"] = covariates[:, k]
    arrays["accepted"] = take(out["accepted"]).astype(np.int8)
    arrays["attempts"] = take(out["attempts"]).astype(np.int32)
    return arrays


def run_sweep(
    sweep: Sweep,
    output: str | os.PathLike,
    *,
    devices: int | None = None,
    progress: bool = True,
    overwrite: bool = False,
    keep_parts: bool = False,
    use_mpi: bool = True,
) -> SweepResult:
    """Run ``sweep`` into the HDF5 file ``output``, or finish it after an interruption.

    Run the same call again after a crash (or ``kill -9``): committed chunks are kept, the rest
    is computed. Under ``mpirun -n K`` every rank calls this with the same arguments; chunks
    are spread over ranks, and the output directory must be one that every rank sees.

    Args:
        devices: how many local devices to use (default all ``jax.local_devices()``).
        progress: a progress bar with ETA on rank 0.
        overwrite: discard results of a different sweep found at ``output`` (otherwise an
            error) and recompute this one from scratch.
        keep_parts: keep the per-chunk files after assembly (normally removed).
        use_mpi: spread chunks over the MPI ranks (when mpi4py and mpi4jax are importable);
            False runs every chunk in this process, as on one rank.

    Returns:
        A ``SweepResult`` (``.path``, ``.manifest``, ``.open()``).
    """
    started = _time.perf_counter()
    if use_mpi and distributed.world_size() > 1:
        rank, world = distributed.rank(), distributed.world_size()
        total, largest, barrier = (distributed.sum_over_ranks, distributed.max_over_ranks,
                                   distributed.barrier)
    else:  # one rank: no collectives (an eager allreduce on one rank costs ~20 ms, measured)
        rank, world = 0, 1
        total = largest = lambda x: x  # noqa: E731
        barrier = lambda: None  # noqa: E731
    store = SweepStore(output)
    sweep_hash = sweep.sweep_hash()
    local = jax.local_devices()
    n_devices = len(local) if devices is None else int(devices)
    if not 1 <= n_devices <= len(local):
        raise ValueError(f"devices={devices}: this process has {len(local)} local devices")
    devices_used = local[:n_devices]

    # Every rank checks ownership before anyone writes, so that all of them refuse together.
    owner = store.recorded_hash()
    if owner is not None and owner != sweep_hash and not overwrite:
        raise ValueError(f"{store.output} holds results of a different sweep (hash {owner}, "
                         f"this one {sweep_hash}): choose another output or pass "
                         "overwrite=True (--overwrite)")
    barrier()
    if rank == 0:
        if overwrite and owner is not None:
            store.remove_all()
        if not store.finished(sweep_hash):
            store.output.parent.mkdir(parents=True, exist_ok=True)
            store.claim(sweep_hash, sweep.describe())
    barrier()
    if store.finished(sweep_hash):
        return SweepResult(store.output, json.loads(store.manifest.read_text()),
                           already_complete=True)

    layout = _layout(sweep)
    mine = [c for c in range(sweep.n_chunks) if c % world == rank]
    store.remove_stale_temporaries(mine)
    todo = [c for c in mine if not store.committed(c, sweep_hash)]
    groups = [todo[k:k + n_devices] for k in range(0, len(todo), n_devices)]
    n_rounds = int(largest(jnp.asarray(len(groups))))
    done_before = int(total(jnp.asarray(
        sum(_members_in(sweep, c) for c in mine if c not in todo))))

    twin, population, arms = sweep.twin, sweep.population, tuple(sweep.arms.values())
    dynamic, static = eqx.partition((twin, population, arms), eqx.is_array)
    dynamic_on = {device: jax.device_put(dynamic, device) for device in devices_used}
    config = _config(sweep)
    key = jax.random.PRNGKey(sweep.seed)
    bar = None
    if progress and rank == 0:
        from tqdm.auto import tqdm

        bar = tqdm(total=sweep.members, initial=done_before, unit="member",
                   desc=f"sweep {sweep.name or sweep_hash}", smoothing=0.1)
    fault("start")
    computed = []
    for round_index in range(n_rounds):
        group = groups[round_index] if round_index < len(groups) else []
        finished_members = 0
        if group:
            padded = group
            for chunk in group:
                store.log_start(chunk, rank)
            # One whole chunk per device, dispatched asynchronously so the devices run side
            # by side; each runs the one per-chunk program, so a member's bits do not depend on
            # how many devices (or ranks) share the sweep. (An SPMD-partitioned program over a
            # mesh was measured to differ in the last bits from the unpartitioned one.)
            pending = []
            for device, chunk in zip(devices_used, padded):
                values, mask = sweep._overrides_of(sweep.chunk_members(chunk))
                inputs = jax.device_put((key, sweep.chunk_members(chunk), values, mask), device)
                pending.append(_run_chunk(dynamic_on[device], static, config, *inputs))
            fault("compute")
            for chunk, out in zip(group, pending):
                out = jax.tree.map(np.asarray, out)
                store.write_chunk(chunk, sweep_hash, _chunk_arrays(sweep, chunk, out, layout))
                computed.append(chunk)
                finished_members += _members_in(sweep, chunk)
        finished_members = int(total(jnp.asarray(finished_members)))
        if bar is not None:
            bar.update(finished_members)
    if bar is not None:
        bar.close()
    barrier()

    computed_all = int(total(jnp.asarray(len(computed))))
    manifest = None
    if rank == 0:
        attrs = provenance(sweep.twin, seed=sweep.seed)
        attrs.update({"sweep_hash": sweep_hash, "sweep": json.dumps(sweep.describe()),
                      "members": str(sweep.members), "chunk_size": str(sweep.chunk_size),
                      "arms": json.dumps(list(sweep.arms))})
        summary = assemble(store, layout, attrs, sweep.quantiles,
                           memory_bound=sweep.memory_limit)
        fault("manifest")
        manifest = {
            "sweep_hash": sweep_hash,
            "result": store.output.name,
            "members": sweep.members,
            "arms": list(sweep.arms),
            "chunk_size": sweep.chunk_size,
            "n_chunks": sweep.n_chunks,
            "ranks": world,
            "devices_per_rank": n_devices,
            "integrator": sweep.integrator,
            "solver": sweep.describe()["solver"],
            "chunks_computed_by_this_run": computed_all,
            "wall_seconds_of_this_run": _time.perf_counter() - started,
            **summary,
            "finished_utc": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
        }
        store.write_manifest(manifest)
        if not keep_parts:
            import shutil

            shutil.rmtree(store.parts, ignore_errors=True)
    barrier()
    if manifest is None:
        manifest = json.loads(store.manifest.read_text())
    return SweepResult(store.output, manifest)


def _members_in(sweep: Sweep, chunk: int) -> int:
    return min(sweep.chunk_size, sweep.members - chunk * sweep.chunk_size)


__all__ = ["Sweep", "SweepResult", "open_sweep", "run_sweep", "status_counts"]
