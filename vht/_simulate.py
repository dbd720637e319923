"""``simulate``: the one entry point into diffrax.

How a scenario reaches the solver:

- doses (``Bolus``, ``OralDose``) split the solve into segments at their arrival times and
  add their amount to the state between segments; the dose times are data (segment ends), so
  gradients with respect to dose time and amount are exact and non-zero;
- rate inputs (``Infusion``, ``Meal``) and ``ParameterStep`` windows enter the vector field as
  forcing, and their edges go to the step-size controller as ``jump_ts``;
- ``Trigger`` thresholds are diffrax ``Event``\\s with a bisection root finder; a crossing ends the
  segment and switches the treatment.

Segments run in a ``lax.scan`` of fixed length (doses + 1 + the triggers' switch budget), so
every scenario of the same structure shares one compiled program whatever its numbers are.

Failures are honest (three layers, as in diffrax): structural mistakes raise ``ValueError``
before tracing; solver failures come back as a ``Status`` per run with NaN outputs (never
diffrax's ``inf`` fill); with ``throw=True`` (the default for a single run) a failure or a
state outside its declared physiological bounds raises an error that says what to change.
Ensembles pass ``throw=False`` so one failed member never aborts its batch.
"""

from __future__ import annotations

import enum
import math

import diffrax
import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import optimistix as optx

# diffrax's marker for "take the root finder's tolerances from the step-size controller"
# (private, hence the pinned diffrax version).
from diffrax._root_finder import use_stepsize_tol as _USE_STEPSIZE_TOL
from jaxtyping import Array, ArrayLike

from ._scenario import AbstractDose, AbstractRateInput, ParameterStep, Scenario, Trigger
from ._twin import Twin


class Status(enum.IntEnum):
    """Outcome of one run. Anything but ``OK`` comes with NaN outputs."""

    OK = 0
    MAX_STEPS = 1  # the step budget (max_steps per segment) was exhausted
    SOLVER_FAILED = 2  # step size underflow, too many rejected steps, internal solver error
    NONFINITE = 3  # NaN or inf appeared in the solution
    SWITCH_BUDGET = 4  # a Trigger needed more switches than its max_switches
    IMPLAUSIBLE = 5  # a state left its declared physiological bounds


STATUS_MESSAGES = {
    Status.OK: "ok",
    Status.MAX_STEPS: "the solver exhausted its step budget: raise max_steps, loosen rtol/atol, "
    "or use an implicit solver if the twin is stiff",
    Status.SOLVER_FAILED: "the solver failed (step size underflow or repeated rejections): check "
    "the parameters for unphysiological values, or try an implicit solver",
    Status.NONFINITE: "the solution became NaN or infinite: a rate evaluated to NaN/inf "
    "(division by zero, log of a negative number?)",
    Status.SWITCH_BUDGET: "a Trigger switched more often than its max_switches allows: add "
    "hysteresis (release beyond threshold) or raise max_switches",
    Status.IMPLAUSIBLE: "a state left its declared physiological bounds",
}


class Solution(eqx.Module):
    """The outcome of ``simulate``: save times, states, output signals and status.

    ``ys[..., i]`` is state ``state_names[i]``; ``signals[..., j]`` is ``signal_names[j]``; both
    are NaN where ``status != Status.OK``. Index by name with ``solution["organ.name"]``.
    Under ``jax.vmap`` every array gains the leading batch axes.
    """

    ts: Array
    ys: Array
    signals: Array
    status: Array
    n_steps: Array
    state_names: tuple[str, ...] = eqx.field(static=True)
    state_units: tuple[str, ...] = eqx.field(static=True)
    signal_names: tuple[str, ...] = eqx.field(static=True)
    signal_units: tuple[str, ...] = eqx.field(static=True)
    config: tuple[tuple[str, str], ...] = eqx.field(static=True)

    def __getitem__(self, name: str) -> Array:
        if name in self.state_names:
            return self.ys[..., self.state_names.index(name)]
        if name in self.signal_names:
            return self.signals[..., self.signal_names.index(name)]
        raise KeyError(f"{name!r} is neither a state nor a signal of this solution")

    def unit(self, name: str) -> str:
        """The unit of state or signal ``name``."""
        if name in self.state_names:
            return self.state_units[self.state_names.index(name)]
        if name in self.signal_names:
            return self.signal_units[self.signal_names.index(name)]
        raise KeyError(name)

    @property
    def ok(self) -> Array:
        return self.status == Status.OK


class _Forcing(eqx.Module):
    """The scenario resolved against a twin: arrays the vector field reads."""

    window_index: tuple[int, ...] = eqx.field(static=True)  # target state of each window
    window_rates: Array
    window_starts: Array
    window_ends: Array
    step_names: tuple[str, ...] = eqx.field(static=True)
    step_values: Array
    step_starts: Array
    step_ends: Array
    trigger_index: tuple[int, ...] = eqx.field(static=True)  # target state of each trigger
    trigger_rates: Array

    def twin_at(self, twin: Twin, t: Array) -> Twin:
        """The twin with every parameter step active at ``t`` applied (later steps win)."""
        if not self.step_names:
            return twin
        base = twin.parameters()
        values = {}
        for k, name in enumerate(self.step_names):
            on = (t >= self.step_starts[k]) & (t < self.step_ends[k])
            values[name] = jnp.where(on, self.step_values[k], values.get(name, base[name]))
        return twin.replace(values)

    def rates(self, twin: Twin, t: Array, y: Array, active: Array) -> Array:
        dy = self.twin_at(twin, t).rates(t, y)
        if self.window_index:
            on = (t >= self.window_starts) & (t < self.window_ends)
            dy = dy.at[np.array(self.window_index)].add(jnp.where(on, self.window_rates, 0.0))
        if self.trigger_index:
            dy = dy.at[np.array(self.trigger_index)].add(
                jnp.where(active, self.trigger_rates, 0.0))
        return dy

    def jump_times(self, t1: Array) -> Array | None:
        edges = [self.window_starts, self.window_ends, self.step_starts, self.step_ends]
        edges = jnp.concatenate([jnp.ravel(e) for e in edges])
        if edges.size == 0:
            return None
        return jnp.where(jnp.isfinite(edges), edges, t1)


def _stack(values, n: int = 0) -> Array:
    return jnp.stack(values) if values else jnp.zeros((n,))


def _resolve(twin: Twin, scenario: Scenario):
    for item in scenario.interventions:
        if not isinstance(item, (AbstractDose, AbstractRateInput, ParameterStep, Trigger)):
            raise ValueError(f"simulate does not know how to apply {type(item).__name__}")
    doses = [d.resolved(twin) for d in scenario.of_type(AbstractDose)]
    windows = [w.window(twin) for w in scenario.of_type(AbstractRateInput)]
    steps = [p.resolved(twin) for p in scenario.of_type(ParameterStep)]
    triggers = [g.resolved(twin) for g in scenario.of_type(Trigger)]
    forcing = _Forcing(
        window_index=tuple(w[0] for w in windows),
        window_rates=_stack([w[1] for w in windows]),
        window_starts=_stack([w[2] for w in windows]),
        window_ends=_stack([w[3] for w in windows]),
        step_names=tuple(p[0] for p in steps),
        step_values=_stack([p[1] for p in steps]),
        step_starts=_stack([p[2] for p in steps]),
        step_ends=_stack([p[3] for p in steps]),
        trigger_index=tuple(g[3] for g in triggers),
        trigger_rates=_stack([g[4] for g in triggers]),
    )
    return doses, forcing, triggers


def _diffrax_status(result) -> Array:
    okay = (result == diffrax.RESULTS.successful) | (result == diffrax.RESULTS.event_occurred)
    code = jnp.where(okay, Status.OK, jnp.where(result == diffrax.RESULTS.max_steps_reached,
                                                Status.MAX_STEPS, Status.SOLVER_FAILED))
    return code.astype(jnp.int32)


def _default_solver(twin: Twin) -> diffrax.AbstractSolver:
    # Kvaerno3 for stiff twins: all its stages lie within the step (c <= 1), so a scenario's
    # window edges, clipped to step ends, are honoured exactly. Kvaerno4 and Kvaerno5 evaluate
    # a stage beyond the step (c = 1.15, 1.23), across the edge: a bleed's volume came out
    # 3e-7 off with Kvaerno5.
    return diffrax.Kvaerno3() if twin.stiffness == "stiff" else diffrax.Tsit5()


def _with_root_tolerances(solver, rtol: float, atol: float):
    """Implicit solvers take their Newton tolerances from an adaptive controller; on fixed
    steps there is none, so give them the run's tolerances explicitly."""
    finder = getattr(solver, "root_finder", None)
    if finder is not None and getattr(finder, "rtol", 0.0) is _USE_STEPSIZE_TOL:
        return eqx.tree_at(lambda s: s.root_finder, solver,
                           diffrax.VeryChord(rtol=rtol, atol=atol, norm=optx.max_norm))
    return solver


def plausibility(twin: Twin, lowest: Array, highest: Array, status: Array, bound_check: bool,
                 atol: float = 0.0) -> tuple[Array, Array]:
    """The status rule of every run from each state's lowest and highest saved value: a
    non-finite value, or a state outside its declared bounds, is a failure. Returns (status,
    index of the first state out of bounds)."""
    finite = jnp.all(jnp.isfinite(lowest)) & jnp.all(jnp.isfinite(highest))
    status = jnp.where((status == Status.OK) & ~finite, Status.NONFINITE, status)
    # Physiological plausibility: with a tolerance of 1e-6 of the state's own scale, and at
    # least ten times the solver's absolute tolerance, so that round-off and the solver's own
    # error around a bound (an emptied depot at -1e-10 mg, saved only once nearly empty) is
    # not an error.
    specs = twin.state_specs
    lower = np.array([s.lower for s in specs])
    upper = np.array([s.upper for s in specs])
    largest = jnp.maximum(jnp.abs(lowest), jnp.abs(highest))
    scale = jnp.maximum(1e-6 * jnp.maximum(largest, 1e-9), 10.0 * atol)
    violated = (lowest < lower - scale) | (highest > upper + scale)
    first_bad_state = jnp.argmax(violated)
    implausible = jnp.any(violated) & bound_check
    status = jnp.where((status == Status.OK) & implausible, Status.IMPLAUSIBLE, status)
    return status, first_bad_state


def finish_run(twin: Twin, forcing: _Forcing, ts: Array, ys: Array, status: Array,
               bound_check: bool, atol: float = 0.0, extremes: tuple[Array, Array] | None = None
               ) -> tuple[Array, Array, Array, Array]:
    """The last step of every run, single or ensemble member: non-finite values and states
    outside their declared bounds become failures (``plausibility``), failures get NaN
    states and signals, and the signals are evaluated at the save times. ``extremes``: each
    state's (lowest, highest) saved value when the solver kept them (else taken from ``ys``).
    Returns (ys, signals, status, index of the first state out of bounds)."""
    if extremes is None:
        extremes = (jnp.min(ys, axis=0), jnp.max(ys, axis=0))
    status, first_bad_state = plausibility(twin, *extremes, status, bound_check, atol)
    failed = status != Status.OK
    ys = jnp.where(failed, jnp.nan, ys)
    signals = jax.vmap(lambda t, y: forcing.twin_at(twin, t).signals(t, y))(ts, ys)
    signals = jnp.where(failed, jnp.nan, signals)
    return ys, signals, status.astype(jnp.int32), first_bad_state


@eqx.filter_jit
def _simulate_jit(twin, scenario, y0, ts, t0, t1, dt, static):
    solver, rtol, atol, max_steps, adjoint, throw, bound_check, n_samples, at_ticks = static
    n_states = y0.shape[0]
    doses, forcing, triggers = _resolve(twin, scenario)
    dose_times = [d[2] for d in doses]
    jumps = [jnp.zeros(n_states).at[d[0]].set(d[1]) for d in doses]
    edges = forcing.jump_times(t1)
    if dt is not None and edges is not None:
        # Fixed steps cannot be clipped to jump times (diffrax clips adaptive controllers
        # only), so window edges split the solve like doses that add nothing.
        dose_times += list(edges)
        jumps += [jnp.zeros(n_states)] * edges.size
    n_doses, n_triggers = len(dose_times), len(triggers)
    switch_budget = sum(g.max_switches for g in scenario.of_type(Trigger))
    n_segments = n_doses + n_samples + 1 + switch_budget
    sample_period = twin.sample_period() if n_samples else None

    if n_doses:
        dose_times = jnp.stack(dose_times)
        jumps = jnp.stack(jumps)
        order = jnp.argsort(dose_times)
        dose_times, jumps = dose_times[order], jumps[order]
    else:
        dose_times, jumps = jnp.full((1,), jnp.inf), jnp.zeros((1, n_states))

    if n_triggers:
        sign = jnp.array([1.0 if g.below else -1.0 for g in scenario.of_type(Trigger)])
        signal_index = np.array([g[0] for g in triggers])
        thresholds = jnp.stack([g[1] for g in triggers])
        releases = jnp.stack([g[2] for g in triggers])

        def trigger_values(t, y, active):
            signals = forcing.twin_at(twin, t).signals(t, y)[signal_index]
            return jnp.where(active, sign * (releases - signals), sign * (signals - thresholds))

        # One scalar condition, the smallest of the triggers' values: it reaches zero when the
        # first trigger crosses, and the crossing is bracketed by the step that crossed, so
        # bisection locates it without the divergence Newton sometimes showed on the dense
        # output. Which triggers fired is read off their values at the event (see below).
        # Without hysteresis a trigger that has just switched sits at zero; an offset of 1e-6
        # of its level lifts it clear, so that its next genuine crossing is seen as one.
        # flip=True states the bracket's orientation (positive at the step's start, not at its
        # end, by direction=False): under vmap the root find also runs for members whose step
        # crossed nothing, and optimistix's bracket check then raised for them.
        event = diffrax.Event(
            lambda t, y, args, **kwargs: jnp.min(trigger_values(t, y, args[0]) + args[1]),
            root_finder=optx.Bisection(rtol=1e-12, atol=1e-12, flip=True), direction=False)
    else:
        event = None

    term = diffrax.ODETerm(lambda t, y, args: forcing.rates(twin, t, y, args[0]))
    jump_ts = forcing.jump_times(t1)
    if dt is None:
        controller = diffrax.PIDController(rtol=rtol, atol=atol)
        if jump_ts is not None:
            controller = diffrax.ClipStepSizeController(controller, jump_ts=jump_ts)
    else:
        controller = diffrax.ConstantStepSize()
        solver = _with_root_tolerances(solver, rtol, atol)

    def segment(carry, _):
        t, y, ptr, sample_ptr, active, just_fired, status, out, n_steps = carry
        if n_triggers:  # a dose may have carried a signal across a threshold: re-evaluate
            values = trigger_values(t, y, active)
            # active: stays on while its release value is positive; inactive: switches on
            # if its threshold value is already negative. A trigger that has just fired keeps
            # its new state (its value sits at zero, where a sign test would be a coin toss).
            reevaluated = jnp.where(active, values > 0.0, values < 0.0)
            active = jnp.where(just_fired, active, reevaluated)
            levels = jnp.where(active, releases, thresholds)
            tolerance = 1e-6 * (1.0 + jnp.abs(levels))
            values = trigger_values(t, y, active)
            offset = jnp.where(just_fired & (values < tolerance), tolerance, 0.0)
        else:
            offset = jnp.zeros((0,))
        next_dose = jnp.where(ptr < n_doses, dose_times[jnp.minimum(ptr, dose_times.size - 1)],
                              jnp.inf)
        if n_samples:
            next_sample = jnp.where(sample_ptr < n_samples, t0 + sample_ptr * sample_period,
                                    jnp.inf)
            t_end = jnp.clip(jnp.minimum(next_dose, next_sample), t, t1)
        else:
            t_end = jnp.clip(next_dose, t, t1)
        if at_ticks:
            # save times on segment edges (clock ticks): the state as a segment starts (after
            # the tick's updates; a later segment starting at the same instant overwrites),
            # and the end state at t1; no interpolation inside the segment
            sol = diffrax.diffeqsolve(
                term, solver, t, t_end, dt, y, args=(active, offset),
                saveat=diffrax.SaveAt(subs=[diffrax.SubSaveAt(t1=True)]),
                stepsize_controller=controller, max_steps=max_steps, adjoint=adjoint,
                event=event, throw=False)
            reached, y_end = sol.ts[0][0], sol.ys[0][0]
            close = 1e-9 * (1.0 + jnp.abs(ts))
            starts_here = (jnp.abs(ts - t) <= close) & (t < t1)
            ends_here = (jnp.abs(ts - t1) <= close) & (reached >= t1) & (t < t1)
            out = jnp.where(starts_here[:, None], y[None, :], out)
            out = jnp.where(ends_here[:, None], y_end[None, :], out)
        else:
            sol = diffrax.diffeqsolve(
                term, solver, t, t_end, dt, y, args=(active, offset),
                saveat=diffrax.SaveAt(subs=[diffrax.SubSaveAt(ts=jnp.clip(ts, t, t_end)),
                                            diffrax.SubSaveAt(t1=True)]),
                stepsize_controller=controller, max_steps=max_steps, adjoint=adjoint,
                event=event, throw=False)
            reached = sol.ts[1][0]
            y_end = sol.ys[1][0]
            in_segment = (ts >= t) & ((ts < reached) | ((reached >= t1) & (ts <= t1)))
            out = jnp.where(in_segment[:, None], sol.ys[0], out)
        status = jnp.where(status == Status.OK, _diffrax_status(sol.result), status)
        n_steps = n_steps + jnp.asarray(sol.stats["num_steps"]).astype(n_steps.dtype)
        if n_triggers:
            event_happened = sol.result == diffrax.RESULTS.event_occurred
            # Every trigger at zero when the segment ends fired: two triggers on one signal
            # and threshold cross together. The one that ended the segment always counts.
            values = trigger_values(reached, y_end, active) + offset
            at_zero = jnp.abs(values) <= 2.0 * tolerance
            first = jnp.arange(n_triggers) == jnp.argmin(values)
            fired = event_happened & (at_zero | first)
            active = jnp.where(fired, ~active, active)
        else:
            fired, event_happened = just_fired, False
        take_dose = (~event_happened) & (ptr < n_doses) & (reached >= next_dose)
        y_end = y_end + jnp.where(take_dose, jumps[jnp.minimum(ptr, dose_times.size - 1)], 0.0)
        ptr = ptr + take_dose.astype(ptr.dtype)
        if n_samples:
            # Sample-and-hold organs update at their clock ticks, after every dose due at the
            # same instant, with the parameters that hold from that instant on.
            dose_pending = (ptr < n_doses) & (dose_times[jnp.minimum(ptr, dose_times.size - 1)]
                                              <= reached)
            take_sample = (~event_happened) & (reached >= next_sample) & ~dose_pending
            sampled = forcing.twin_at(twin, reached).sample(reached, y_end)
            y_end = jnp.where(take_sample, sampled, y_end)
            sample_ptr = sample_ptr + take_sample.astype(sample_ptr.dtype)
        return (reached, y_end, ptr, sample_ptr, active, fired, status, out, n_steps), None

    carry = (
        t0,
        y0,
        jnp.array(0, dtype=jnp.int32),
        jnp.array(0, dtype=jnp.int32),
        jnp.zeros((n_triggers,), dtype=bool),
        jnp.zeros((n_triggers,), dtype=bool),
        jnp.array(Status.OK, dtype=jnp.int32),
        jnp.full((ts.size, n_states), jnp.nan, dtype=y0.dtype),
        jnp.array(0, dtype=jnp.int32),
    )
    (t_final, _, ptr, _, _, _, status, ys, n_steps), _ = jax.lax.scan(
        segment, carry, None, length=n_segments)
    unfinished = (t_final < t1) | ((ptr < n_doses) & (dose_times[jnp.minimum(ptr, dose_times.size
                                                                              - 1)] <= t1))
    status = jnp.where((status == Status.OK) & unfinished, Status.SWITCH_BUDGET, status)
    ys, signals, status, first_bad_state = finish_run(twin, forcing, ts, ys, status, bound_check,
                                                      atol)
    failed = status != Status.OK
    specs = twin.state_specs

    if throw:
        messages = [STATUS_MESSAGES[s] for s in Status if s != Status.IMPLAUSIBLE]
        names = twin.state_names
        for i, spec in enumerate(specs):
            messages.append(f"state {names[i]} [{spec.unit}] left its plausible range "
                            f"[{spec.lower}, {spec.upper}]. " + (spec.advice or ""))
        index = jnp.where(status == Status.IMPLAUSIBLE, Status.IMPLAUSIBLE + first_bad_state,
                          status)
        ys = eqx.branched_error_if(ys, failed, index, messages)
    return ys, signals, status, n_steps


def _sample_count(twin: Twin, t0: Array, t1: Array) -> int:
    """Number of sample-and-hold ticks t0 + k * period < t1: static, so t0 and t1 must be
    concrete for a twin that samples."""
    period = twin.sample_period()
    if period is None:
        return 0
    if t1 is None or isinstance(t0, jax.core.Tracer) or isinstance(t1, jax.core.Tracer):
        raise ValueError("a twin with a sample period needs concrete t0 and t1 (the number of "
                         "clock ticks fixes the program): pass them as numbers, not traced "
                         "values")
    return max(int(np.ceil((float(t1) - float(t0)) / period - 1e-9)), 0)


def simulate(
    twin: Twin,
    scenario: Scenario | None = None,
    *,
    t1: ArrayLike | None = None,
    ts: ArrayLike | None = None,
    n_save: int = 201,
    t0: ArrayLike = 0.0,
    y0: ArrayLike | None = None,
    solver: diffrax.AbstractSolver | None = None,
    rtol: float = 1e-6,
    atol: float = 1e-8,
    dt: ArrayLike | None = None,
    max_steps: int = 100_000,
    adjoint: diffrax.AbstractAdjoint | None = None,
    throw: bool = True,
    check_bounds: bool = True,
    save_at_ticks: bool = False,
) -> Solution:
    """Simulate ``twin`` under ``scenario`` from ``t0`` and save at ``ts`` (minutes).

    Args:
        twin: the composed twin.
        scenario: interventions; ``None`` for none.
        t1: end time; with ``ts`` omitted, ``n_save`` equally spaced save times on [t0, t1].
        ts: save times, increasing, within [t0, t1]; ``t1`` defaults to ``ts[-1]``.
        y0: initial state vector (default ``twin.initial_state()``).
        solver: a diffrax solver; by default Tsit5 for non-stiff twins and Kvaerno3 for stiff
            ones (the twin's declared stiffness).
        rtol: relative tolerance of the adaptive step-size controller (and of an implicit
            solver's Newton iteration on fixed steps).
        atol: absolute tolerance, likewise.
        dt: a fixed step size (minutes); ``None`` for adaptive steps.
        max_steps: step budget per segment (segments are separated by doses, trigger switches
            and the clock ticks of sample-and-hold organs).
        adjoint: diffrax adjoint for reverse-mode gradients (default recursive checkpointing);
            ``diffrax.ForwardMode()`` for ``jax.jvp``/``jacfwd``.
        throw: raise on failure (with the reason) instead of only returning a failed status.
        check_bounds: treat a state outside its declared physiological bounds as a failure.
        save_at_ticks: for a twin with a sample period whose save times all lie on its clock
            ticks (or at t1): read the states at the ticks instead of interpolating inside
            every tick's segment, which is most of the cost of a clocked run saved at many
            times (a day of CGM readings: 1,440 segments, 288 save times). A save time off
            the ticks comes back NaN (failed status): check them before (calibration does).

    Returns:
        A ``Solution``. Its outputs are NaN when its status is not ``Status.OK``.
    """
    if not isinstance(twin, Twin):
        raise ValueError(f"simulate expects a Twin, got {type(twin).__name__}; wrap a lone organ "
                         "as vht.Twin({'name': organ})")
    scenario = Scenario() if scenario is None else scenario
    if not isinstance(scenario, Scenario):
        raise ValueError(f"scenario must be a vht.Scenario, got {type(scenario).__name__}")
    dtype = jnp.result_type(float)
    # Counted before conversion: under an outer jit, jnp.asarray of a Python float is traced.
    n_samples = _sample_count(twin, t0, t1 if t1 is not None else (
        ts[-1] if ts is not None and not isinstance(ts, jax.core.Tracer) else None))
    # The name is provenance, not structure: keep it out of the compiled program's cache key.
    scenario = Scenario(scenario.interventions)
    for step in scenario.of_type(ParameterStep):  # bounds of concrete values, before tracing
        step.resolved(twin)
    t0 = jnp.asarray(t0, dtype=dtype)
    if ts is None:
        if t1 is None:
            raise ValueError("simulate needs t1 (end time) or ts (save times)")
        ts = jnp.linspace(t0, jnp.asarray(t1, dtype=dtype), n_save)
    ts = jnp.atleast_1d(jnp.asarray(ts, dtype=dtype))
    t1 = ts[-1] if t1 is None else jnp.asarray(t1, dtype=dtype)
    if not isinstance(ts, jax.core.Tracer) and not isinstance(t1, jax.core.Tracer):
        ts_np = np.asarray(ts)
        if np.any(np.diff(ts_np) < 0):
            raise ValueError("save times ts must be increasing")
        if not isinstance(t0, jax.core.Tracer) and (ts_np[0] < float(t0) or ts_np[-1] > float(t1)):
            raise ValueError(f"save times must lie within [t0, t1] = [{float(t0)}, {float(t1)}]")
    y0 = twin.initial_state() if y0 is None else jnp.asarray(y0, dtype=dtype)
    if y0.shape != (len(twin.state_names),):
        raise ValueError(f"y0 has shape {y0.shape}; the twin has {len(twin.state_names)} states")
    solver = _default_solver(twin) if solver is None else solver
    adjoint = diffrax.RecursiveCheckpointAdjoint() if adjoint is None else adjoint
    if dt is not None:
        dt = jnp.asarray(dt, dtype=dtype)
    if max_steps < 1 or math.isinf(max_steps):
        raise ValueError("max_steps must be a positive integer")
    if save_at_ticks and not n_samples:
        raise ValueError("save_at_ticks needs a twin with a sample period (clock ticks)")
    if save_at_ticks and dt is not None:
        raise ValueError("save_at_ticks works with adaptive steps only (fixed steps split "
                         "segments at window edges too)")
    static = (solver, float(rtol), float(atol), int(max_steps), adjoint, bool(throw),
              bool(check_bounds), n_samples, bool(save_at_ticks))
    ys, signals, status, n_steps = _simulate_jit(twin, scenario, y0, ts, t0, t1, dt, static)
    config = (
        ("solver", type(solver).__name__),
        ("stepping", "adaptive" if dt is None else "fixed"),
        ("rtol", repr(float(rtol))),
        ("atol", repr(float(atol))),
        ("max_steps", str(int(max_steps))),
        ("adjoint", type(adjoint).__name__),
        ("time_unit", "min"),
    )
    return Solution(ts, ys, signals, status, n_steps, twin.state_names, twin.state_units,
                    twin.signal_names, twin.signal_units, config)
