"""``simulate_ensemble``: many members of one twin at once, forward only, with a batch-major
explicit Runge-Kutta integrator.

Why it exists: vmapped diffrax spends most of its time outside the model (a 6-state toy model
ran at 3-5 % of the rate at which its right-hand side evaluates bare; UVA/Padova at 20 %),
and ``simulate`` restarts the solver at every clock tick of a sample-and-hold organ. Forward
sweeps (virtual trials, what-if bands) need no reverse-mode gradients, so they can take a
lean path: one ``lax.while_loop`` whose every iteration attempts one step for every member
of the batch, each with its own time, step size, error control and status.

The method is the Dormand-Prince 5(4) pair (Dormand and Prince, J Comput Appl Math
1980;6:19-26) with Hairer's fourth-order continuous extension for output at the save times
(Hairer, Norsett and Wanner, Solving Ordinary Differential Equations I, 2nd ed., 1993, section
II.6, and the coefficients of its ``dopri5.f``), first-same-as-last (six new evaluations per
step), the RMS error norm with scale ``atol + rtol * max(|y0|, |y1|)`` and an integral step
controller (safety 0.9, factor within [0.2, 10]), as diffrax's ``PIDController`` defaults.
The first step size per member comes from Hairer's starting-step algorithm.

How a scenario reaches it (the same semantics as ``simulate``, member by member):

- doses (``Bolus``, ``OralDose``; arrival times may differ per member, as lag times do) end a
  step exactly at their time; the amount is added there, before a clock tick at the same
  instant; a save time at a dose time sees the state after the dose (except at ``t1``);
- rate windows and ``ParameterStep`` edges end a step exactly at the edge; the stages at the
  step's end are evaluated just before the edge (``nextafter`` towards ``t0``), as diffrax's
  ``ClipStepSizeController`` does, so each step sees one side of the discontinuity;
- sample-and-hold clock ticks (``twin.sample`` at ``t0 + k * period``): a tick where the
  organ's update leaves every state unchanged changes nothing, so steps may cross it. Every
  tick inside a candidate step is checked on the continuous extension; at the first tick whose
  update would change the state the step is rejected and retried to end exactly on it, and the
  update is applied to the step's end state. After a tick that changed the state the next tick
  is a hard stop (eating goes on minute after minute); ``skip_idle_ticks=False`` makes every
  tick a hard stop, as ``simulate`` does;
- ``Trigger`` thresholds: after each accepted step the triggers' values are evaluated at its
  end; a crossing is located by bisection on the continuous extension, the step is cut there
  (its state taken from the extension, as diffrax's events do) and the treatment switches;
  ``max_switches`` bounds the switches per trigger (``Status.SWITCH_BUDGET`` beyond).

Status contract, as ``simulate``: each member ends ``OK``, ``MAX_STEPS`` (more than
``max_steps`` attempted steps between two stops), ``SOLVER_FAILED`` (step size underflow),
``NONFINITE``, ``SWITCH_BUDGET`` or ``IMPLAUSIBLE``, and anything but ``OK`` comes with NaN
outputs. A member that has finished or failed is frozen: the loop runs until the slowest
member is done, and no member's arithmetic reads another's, so a failing member leaves the
others' results bitwise unchanged.

Explicit methods need many small steps on stiff twins: ``run_sweep`` uses this integrator for
non-stiff twins and vmapped diffrax (Kvaerno3) for stiff ones and for anything that needs
reverse-mode gradients. Forward-mode derivatives pass through the loop (the derivative of the
discrete algorithm, step-size control included; a located trigger crossing passes none for
its time); ``vht optimize`` differentiates treatments that way.
The result is verified against ``simulate`` member by member for every non-stiff
model of the library (tests/test_simulate_ensemble.py).
"""

from __future__ import annotations

import functools
import math

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
from jaxtyping import Array, ArrayLike

from ._scenario import ParameterStep, Scenario, Trigger
from ._simulate import Solution, Status, _resolve, _sample_count, _stack, finish_run
from ._twin import Twin

# -- Dormand-Prince 5(4): Butcher tableau, error weights, continuous extension ------------------

_C = (0.0, 1 / 5, 3 / 10, 4 / 5, 8 / 9, 1.0, 1.0)
_A = (
    (),
    (1 / 5,),
    (3 / 40, 9 / 40),
    (44 / 45, -56 / 15, 32 / 9),
    (19372 / 6561, -25360 / 2187, 64448 / 6561, -212 / 729),
    (9017 / 3168, -355 / 33, 46732 / 5247, 49 / 176, -5103 / 18656),
    (35 / 384, 0.0, 500 / 1113, 125 / 192, -2187 / 6784, 11 / 84),
)
# fifth-order weights minus fourth-order weights (the embedded error estimate), stages 1-7
_E = (71 / 57600, 0.0, -71 / 16695, 71 / 1920, -17253 / 339200, 22 / 525, -1 / 40)
# Hairer's dense-output weights (dopri5.f, CONTD5), stages 1-7
_D = (-12715105075 / 11282082432, 0.0, 87487479700 / 32700410799,
      -10690763975 / 1880347072, 701980252875 / 199316789632, -1453857185 / 822651844,
      69997945 / 29380423)

SAFETY, FACTOR_MIN, FACTOR_MAX = 0.9, 0.2, 10.0
_ERROR_EXPONENT = -1.0 / 5.0
_BISECTIONS = 60  # halvings of a step to locate a trigger crossing (2**-60 of the step)

METHOD = "Dopri5 (batch-major, vht)"
"""The name ``simulate_ensemble`` writes into provenance (``Solution.config``)."""


@jax.tree_util.register_pytree_node_class
class _Rows(tuple):
    """The state of every member as one (members,) vector per state: arithmetic acts row by
    row, and a per-member scalar (members,) broadcasts over the rows.

    Why not one (states, members) array: the twin's right-hand side splits its state into
    components and stacks its derivatives, and on one array XLA kept those slices and stacks
    as separate kernels; with a vector per state they vanish, and the UVA/Padova right-hand
    side evaluated in 17-22 ns per member instead of 41-58 (inside a compiled loop, 2 cores).
    """

    def tree_flatten(self):
        return tuple(self), None

    @classmethod
    def tree_unflatten(cls, _, children):
        return cls(children)

    def _apply(self, other, op):
        if isinstance(other, _Rows):
            return _Rows(op(a, b) for a, b in zip(self, other))
        return _Rows(op(a, other) for a in self)

    def __add__(self, other):
        return self._apply(other, lambda a, b: a + b)

    def __radd__(self, other):
        return self if isinstance(other, int) and other == 0 else self + other

    def __sub__(self, other):
        return self._apply(other, lambda a, b: a - b)

    def __mul__(self, other):
        return self._apply(other, lambda a, b: a * b)

    __rmul__ = __mul__

    def __truediv__(self, other):
        return self._apply(other, lambda a, b: a / b)

    def __abs__(self):
        return _Rows(jnp.abs(a) for a in self)

    def rms(self):
        return jnp.sqrt(sum(a * a for a in self) / len(self))

    def all_finite(self):
        return functools.reduce(jnp.logical_and, [jnp.isfinite(a) for a in self])

    def differs(self, other):
        """Per member: does any state differ from ``other``'s?"""
        return functools.reduce(jnp.logical_or, [a != b for a, b in zip(self, other)])

    def stacked(self):
        """One (members, states) array."""
        return jnp.stack(self, axis=1)


def _where(mask, a, b):
    """Per member: ``a`` where ``mask``, else ``b``."""
    return _Rows(jnp.where(mask, x, y) for x, y in zip(a, b))


def _row_min(x):
    """Per member (row) minimum over a short second axis, as elementwise minima of its
    columns: XLA:CPU ran ``jnp.min(x, axis=1)`` at (1024, few) as a reduction kernel of about
    10 us per call, every iteration of the loop; elementwise minima fuse with their inputs."""
    return functools.reduce(jnp.minimum, [x[:, j] for j in range(x.shape[1])])


def _row_any(x):
    """Per member (row): any over a short second axis (see ``_row_min``)."""
    return functools.reduce(jnp.logical_or, [x[:, j] for j in range(x.shape[1])])


def _maximum(a, b):
    return _Rows(jnp.maximum(x, y) for x, y in zip(a, b))


def _combine(y, h, ks, weights):
    terms = [w * k for k, w in zip(ks, weights) if w != 0.0]
    return y if not terms else y + sum(terms) * h


def _dense_coefficients(y0, y1, h, ks):
    """Hairer's continuous extension of a Dormand-Prince step, as the five coefficients of
    ``_dense`` (computed once per step, evaluated at every save and tick)."""
    k1, k7 = ks[0], ks[6]
    ydiff = y1 - y0
    bspl = k1 * h - ydiff
    rc5 = sum(w * k for w, k in zip(_D, ks) if w != 0.0) * h
    return y0, ydiff, bspl, ydiff - k7 * h - bspl, rc5


def _dense(coefficients, theta):
    """The continuous extension at fraction ``theta`` (members,) of the step."""
    r1, r2, r3, r4, r5 = coefficients
    th1 = 1.0 - theta
    return r1 + (r2 + (r3 + (r4 + r5 * th1) * theta) * th1) * theta


class _Member(eqx.Module):
    """One member's twin with its scenario resolved (vmapped: every array gains a member axis)."""

    twin: Twin
    forcing: eqx.Module
    dose_amounts: Array  # (doses,) in the target state's unit
    dose_times: Array  # (doses,)
    trigger_thresholds: Array  # (triggers,)
    trigger_releases: Array  # (triggers,)


def _check_batched(twins: Twin) -> int:
    leaves = jax.tree.leaves(eqx.filter(twins, eqx.is_array))
    sizes = {x.shape[0] if x.ndim else None for x in leaves}
    if not leaves or None in sizes or len(sizes) != 1:
        raise ValueError(
            "simulate_ensemble expects a twin with a leading member axis on every parameter, "
            "built with jax.vmap: twins = jax.vmap(lambda p: twin.replace(p))(values), where "
            "values maps 'organ.parameter' names to arrays of shape (members,)")
    return sizes.pop()


@eqx.filter_jit
def _simulate_ensemble_jit(twins, scenario, y0, ts, t0, t1, static):
    rtol, atol, max_steps, bound_check, n_samples, skip_idle_ticks = static
    n_members, n_states = y0.shape
    dtype = y0.dtype
    y0 = _Rows(y0[:, i] for i in range(n_states))  # a (members,) vector per state
    n_save = ts.shape[0]
    template = jax.tree.map(lambda x: x[0] if eqx.is_array(x) else x, twins)
    doses0, forcing0, triggers0 = _resolve(template, scenario)
    dose_index = np.array([d[0] for d in doses0], dtype=int)
    trigger_specs = scenario.of_type(Trigger)
    n_doses, n_triggers = len(doses0), len(triggers0)
    trigger_signal = np.array([g[0] for g in triggers0], dtype=int)
    trigger_sign = np.array([1.0 if g.below else -1.0 for g in trigger_specs])
    switch_budget = np.array([g.max_switches for g in trigger_specs], dtype=np.int32)
    period = template.sample_period() if n_samples else None
    has_edges = forcing0.jump_times(t1) is not None

    def resolve(twin):
        doses, forcing, triggers = _resolve(twin, scenario)
        return _Member(twin, forcing, _stack([d[1] for d in doses]),
                       _stack([d[2] for d in doses]), _stack([g[1] for g in triggers]),
                       _stack([g[2] for g in triggers]))

    members = jax.vmap(resolve)(twins)
    edges = jax.vmap(lambda m: m.forcing.jump_times(t1))(members) if has_edges else None

    def f(t, y, active, at_edge=None):
        """dy/dt of every member; ``at_edge``: evaluate just before ``t`` (the left limit)."""
        if at_edge is not None:
            # nextafter has no derivative rule; the left limit moves with t (forward-mode
            # derivatives pass through this integrator)
            fixed = jax.lax.stop_gradient(t)
            left = t + (jnp.nextafter(fixed, -jnp.inf) - fixed)
            t = jnp.where(at_edge, left, t)

        def one(m, t, a, *y):
            dy = m.forcing.rates(m.twin, t, jnp.stack(y), a)
            return tuple(dy[i] for i in range(n_states))

        return _Rows(jax.vmap(one)(members, t, active, *y))

    def trigger_values(t, y, active):
        if not n_triggers:
            return jnp.zeros((n_members, 0), dtype)

        def one(m, t, a, *y):
            signals = m.forcing.twin_at(m.twin, t).signals(t, jnp.stack(y))[trigger_signal]
            return jnp.where(a, trigger_sign * (m.trigger_releases - signals),
                             trigger_sign * (signals - m.trigger_thresholds))

        return jax.vmap(one)(members, t, active, *y)

    def sample_changes(t, y):
        return jax.vmap(lambda m, t, *y: m.forcing.twin_at(m.twin, t).sample_changes(
            t, jnp.stack(y)))(members, t, *y)

    def sample(t, y):
        def one(m, t, *y):
            new = m.forcing.twin_at(m.twin, t).sample(t, jnp.stack(y))
            return tuple(new[i] for i in range(n_states))

        return _Rows(jax.vmap(one)(members, t, *y))

    def tick_time(k):
        return t0 + k.astype(dtype) * period

    def ticks_up_to(t):
        """The number of clock ticks at or before ``t`` (exact at tick times)."""
        n = jnp.floor((t - t0) / period).astype(jnp.int32) + 1
        n = jnp.where(tick_time(n - 1) > t, n - 1, n)
        n = jnp.where(tick_time(n) <= t, n + 1, n)
        return jnp.clip(n, 0, n_samples)

    def next_hard_stop(t, applied, tick, hard_tick, forced):
        stop = jnp.full((n_members,), t1, dtype)
        if n_doses:
            pending = jnp.where(applied, jnp.inf, members.dose_times)
            stop = jnp.minimum(stop, _row_min(pending))
        if has_edges:
            ahead = jnp.where(edges > t[:, None], edges, jnp.inf)
            stop = jnp.minimum(stop, _row_min(ahead))
        if n_samples:
            tick_t = jnp.where(tick < n_samples, tick_time(tick), jnp.inf)
            hard = hard_tick | (not skip_idle_ticks)
            stop = jnp.minimum(stop, jnp.where(hard, tick_t, jnp.inf))
        return jnp.maximum(jnp.minimum(stop, forced), t)

    def is_edge(t):
        if not has_edges:
            return jnp.zeros((n_members,), bool)
        return _row_any(edges == t[:, None])

    def segment_offset(t, y, active, just_fired):
        """simulate's rule: a trigger that has just fired sits at zero; lift it by 1e-6 of its
        level for the segment that follows, so that its next genuine crossing is seen."""
        if not n_triggers:
            return jnp.zeros((n_members, 0), dtype)
        levels = jnp.where(active, members.trigger_releases, members.trigger_thresholds)
        tolerance = 1e-6 * (1.0 + jnp.abs(levels))
        values = trigger_values(t, y, active)
        return jnp.where(just_fired & (values < tolerance), tolerance, 0.0)

    def discrete_updates(t, y, applied, tick, hard_tick, active, just_fired, landed):
        """At a stop (members that ``landed`` at ``t``): the doses due, then the clock tick at
        ``t``, then the triggers re-evaluated. Returns the new values and whether the state or
        a treatment changed (so the derivative must be evaluated again)."""
        y_before = y
        if n_doses:
            due = landed[:, None] & ~applied & (members.dose_times <= t[:, None])
            amounts = jnp.where(due, members.dose_amounts, 0.0)
            rows = list(y)
            for d, state in enumerate(dose_index):
                rows[state] = rows[state] + amounts[:, d]
            y = _Rows(rows)
            applied = applied | due
        if n_samples:
            count = ticks_up_to(t)
            tick_due = landed & (count > tick) & (tick_time(count - 1) == t)
            sampled = sample(t, y)
            ticked = _where(tick_due, sampled, y)
            hard_tick = jnp.where(tick_due, ticked.differs(y), hard_tick)
            y = ticked
            tick = jnp.where(landed, jnp.maximum(tick, count), tick)
        changed = y.differs(y_before)
        if n_triggers:
            # a dose may have carried a signal across a threshold (simulate re-evaluates at
            # every segment start); a trigger that has just fired keeps its new state
            values = trigger_values(t, y, active)
            reevaluated = jnp.where(active, values > 0.0, values < 0.0)
            new_active = jnp.where(landed[:, None] & ~just_fired, reevaluated, active)
            changed = changed | jnp.any(new_active != active, axis=1)
            active = new_active
        return y, applied, tick, hard_tick, active, changed

    def initial_step(t, y, k1, active):
        """Hairer's starting step size (one extra evaluation per member)."""
        scale = abs(y) * rtol + atol
        d0, d1 = (y / scale).rms(), (k1 / scale).rms()
        h0 = jnp.where((d0 < 1e-5) | (d1 < 1e-5), 1e-6, 0.01 * d0 / jnp.maximum(d1, 1e-300))
        h0 = jnp.minimum(h0, jnp.maximum(t1 - t0, 1e-12))
        k2 = f(t + h0, y + k1 * h0, active)
        d2 = ((k2 - k1) / scale).rms() / h0
        big = jnp.maximum(d1, d2)
        h1 = jnp.where(big <= 1e-15, jnp.maximum(1e-6, h0 * 1e-3),
                       (0.01 / jnp.maximum(big, 1e-300)) ** (1.0 / 5.0))
        h = jnp.minimum(100.0 * h0, h1)
        return jax.lax.stop_gradient(jnp.where(jnp.isfinite(h) & (h > 0), h, 1e-6))

    def save(saved, save_ptr, t_start, t_stop, h, dense, accepted):
        """Write the continuous extension of the accepted steps at their save times in
        [t_start, t_stop), or [t_start, t_stop] for a step that reaches t1 (``simulate``'s
        rule: a save time at a stop sees the state after the stop's updates, except at t1).
        ``saved``: the (members, saves, states) output and each member's lowest and highest
        saved value per state, kept as they are written so that the plausibility check needs
        no second pass over the saved values."""

        def pending(ptr):
            s = ts[jnp.minimum(ptr, n_save - 1)]
            return accepted & (ptr < n_save) & ((s < t_stop) | ((t_stop >= t1) & (s <= t1)))

        def body(carry):
            (out, lowest, highest), ptr = carry
            now = pending(ptr)
            slot = jnp.minimum(ptr, n_save - 1)
            theta = jnp.where(h > 0, (ts[slot] - t_start) / jnp.where(h > 0, h, 1.0), 0.0)
            value = _dense(dense, jnp.clip(theta, 0.0, 1.0))
            # members with nothing to save write out of bounds, which the scatter drops
            where = (jnp.arange(n_members), jnp.where(now, slot, n_save))
            value = value.stacked()
            out = out.at[where].set(value, mode="drop")
            # minimum and maximum propagate NaN, so a non-finite saved value is seen too
            lowest = jnp.where(now[:, None], jnp.minimum(lowest, value), lowest)
            highest = jnp.where(now[:, None], jnp.maximum(highest, value), highest)
            return (out, lowest, highest), ptr + now.astype(ptr.dtype)

        # a step holds at most one save time for most members: write that one unconditionally
        # (members without one write out of bounds) and enter the loop only in iterations
        # where some member has more pending
        carry = body((saved, save_ptr))
        return jax.lax.cond(
            jnp.any(pending(carry[1])),
            lambda c: jax.lax.while_loop(lambda c: jnp.any(pending(c[1])), body, c),
            lambda c: c, carry)

    def first_changing_tick(t, h, dense, tick, t_end, lands):
        """The first clock tick in (t, t_end) (and at t_end for a step that does not land on
        a stop) whose update would change the state: its time, or inf."""

        def inside(k):
            tk = tick_time(k)
            return (k < n_samples) & ((tk < t_end) | (~lands & (tk == t_end)))

        def body(carry):
            k, found = carry
            look = inside(k) & ~jnp.isfinite(found)
            tk = tick_time(k)
            theta = jnp.clip((tk - t) / jnp.where(h > 0, h, 1.0), 0.0, 1.0)
            y_k = _dense(dense, theta)
            changes = sample_changes(tk, y_k)
            found = jnp.where(look & changes, tk, found)
            return k + look.astype(k.dtype), found

        def more(carry):
            k, found = carry
            return jnp.any(inside(k) & ~jnp.isfinite(found))

        none = jnp.full((n_members,), jnp.inf, dtype)
        return jax.lax.while_loop(more, body, (tick, none))[1]

    def locate_crossing(t, h, dense, active, offset):
        """Fraction of the step at which the first trigger's value reaches zero: bisection on
        the continuous extension (the value is positive at the start, not at the end)."""

        def value(theta):
            y = _dense(dense, theta)
            return _row_min(trigger_values(t + theta * h, y, active) + offset)

        def body(_, bracket):
            lo, hi = bracket
            mid = 0.5 * (lo + hi)
            positive = value(mid) > 0.0
            return jnp.where(positive, mid, lo), jnp.where(positive, hi, mid)

        zeros = jnp.zeros((n_members,), dtype)
        return jax.lax.fori_loop(0, _BISECTIONS, body, (zeros, jnp.ones_like(zeros)))[1]

    # -- the start: updates at t0, the first derivative and step size ---------------------------
    t = jnp.full((n_members,), t0, dtype)
    no_triggers = jnp.zeros((n_members, n_triggers), bool)
    y, applied, tick, hard_tick, active, _ = discrete_updates(
        t, y0, jnp.zeros((n_members, n_doses), bool), jnp.zeros((n_members,), jnp.int32),
        jnp.ones((n_members,), bool), no_triggers, no_triggers, jnp.ones((n_members,), bool))
    k1 = f(t, y, active)
    carry = dict(
        t=t, y=y, k1=k1, h=initial_step(t, y, k1, active), applied=applied, tick=tick,
        hard_tick=hard_tick, forced=jnp.full((n_members,), jnp.inf, dtype), active=active,
        just_fired=no_triggers, offset=jnp.zeros((n_members, n_triggers), dtype),
        switches=jnp.zeros((n_members, n_triggers), jnp.int32),
        saved=(jnp.full((n_members, n_save, n_states), jnp.nan, dtype),
               jnp.full((n_members, n_states), jnp.inf, dtype),
               jnp.full((n_members, n_states), -jnp.inf, dtype)),
        save_ptr=jnp.zeros((n_members,), jnp.int32),
        status=jnp.full((n_members,), Status.OK, jnp.int32),
        n_steps=jnp.zeros((n_members,), jnp.int32),
        since_stop=jnp.zeros((n_members,), jnp.int32),
        done=jnp.zeros((n_members,), bool),
    )

    def attempt(c):
        live = ~c["done"]
        t, y, k1, h, active = c["t"], c["y"], c["k1"], c["h"], c["active"]
        stop = next_hard_stop(t, c["applied"], c["tick"], c["hard_tick"], c["forced"])
        room = stop - t
        lands = h >= room
        h_step = jnp.where(lands, room, h)
        t_end = jnp.where(lands, stop, t + h_step)
        end_edge = lands & is_edge(stop)

        ks = [k1]
        for i in range(1, 7):
            y_i = _combine(y, h_step, ks, _A[i])
            if _C[i] == 1.0:  # the step's end: just before an edge it lands on
                ks.append(f(t_end, y_i, active, at_edge=end_edge))
            else:
                ks.append(f(t + _C[i] * h_step, y_i, active))
        y_end = _combine(y, h_step, ks[:6], _A[6])
        error = sum(w * k for w, k in zip(_E, ks) if w != 0.0) * h_step
        norm = (error / (rtol * _maximum(abs(y), abs(y_end)) + atol)).rms()
        # step sizes carry no derivative, as in diffrax's PIDController: forward-mode
        # derivatives then follow the states only, not every time and step-size decision
        norm = jax.lax.stop_gradient(norm)
        finite = jnp.isfinite(norm) & y_end.all_finite()
        accepted = live & finite & (norm <= 1.0)
        factor = SAFETY * jnp.where(norm > 0, norm, 1e-10) ** _ERROR_EXPONENT
        factor = jnp.where(finite, jnp.clip(factor, FACTOR_MIN, FACTOR_MAX), FACTOR_MIN)
        dense = _dense_coefficients(y, y_end, h_step, ks)

        # a clock tick inside the step whose update would change the state: retry to end on it
        forced = c["forced"]
        if n_samples and skip_idle_ticks:
            changing = first_changing_tick(t, h_step, dense, c["tick"], t_end, lands)
            cut = accepted & jnp.isfinite(changing)
            forced = jnp.where(cut, changing, forced)
            accepted = accepted & ~cut
        else:
            cut = jnp.zeros((n_members,), bool)

        # a trigger crossing inside the step: the step ends at the crossing
        t_stop, y_stop = t_end, y_end
        if n_triggers:
            offset = c["offset"]
            end_values = trigger_values(t_end, y_end, active) + offset
            crossing = accepted & _row_any(end_values <= 0.0)
            # the bisection only in the iterations where some member crossed
            theta = jax.lax.cond(
                jnp.any(crossing),
                lambda: jnp.where(crossing, locate_crossing(t, h_step, dense, active, offset),
                                  1.0),
                lambda: jnp.ones_like(t))
            t_stop = jnp.where(crossing, t + theta * h_step, t_end)
            y_stop = _where(crossing, _dense(dense, theta), y_end)
            values = trigger_values(t_stop, y_stop, active) + offset
            levels = jnp.where(active, members.trigger_releases, members.trigger_thresholds)
            at_zero = jnp.abs(values) <= 2.0 * 1e-6 * (1.0 + jnp.abs(levels))
            first = jnp.arange(n_triggers)[None, :] == jnp.argmin(values, axis=1)[:, None]
            fired = crossing[:, None] & (at_zero | first)
            lands = lands & ~crossing
        else:
            crossing = jnp.zeros((n_members,), bool)
            fired = c["just_fired"]

        saved, save_ptr = save(c["saved"], c["save_ptr"], t, t_stop, h_step, dense, accepted)
        t_new = jnp.where(accepted, t_stop, t)
        y_new = _where(accepted, y_stop, y)
        k_new = _where(accepted, ks[6], k1)
        reached_t1 = accepted & (t_new >= t1)
        landed = accepted & lands & ~reached_t1
        forced = jnp.where(landed & (t_new >= forced), jnp.inf, forced)
        tick = c["tick"]
        if n_samples:  # ticks crossed by an accepted step were checked: identities
            crossed = ticks_up_to(t_new)
            crossed = jnp.where(landed & (tick_time(crossed - 1) == t_new), crossed - 1, crossed)
            tick = jnp.where(accepted & ~landed, jnp.maximum(tick, crossed), tick)

        # stops are rare (doses, edges, clock ticks that change something): skip the updates
        # in the iterations where no member has landed on one
        no_change = jnp.zeros((n_members,), bool)
        y_new, applied, tick, hard_tick, active_new, changed = jax.lax.cond(
            jnp.any(landed), discrete_updates,
            lambda t, y, applied, tick, hard_tick, active, just_fired, landed: (
                y, applied, tick, hard_tick, active, no_change),
            t_new, y_new, c["applied"], tick, c["hard_tick"], active, c["just_fired"], landed)
        if n_triggers:
            active_new = jnp.where(fired, ~active_new, active_new)
            switches = c["switches"] + fired.astype(jnp.int32)
            # as in simulate: a segment that ends without an event clears "just fired"
            just_fired = jnp.where(crossing[:, None], fired,
                                   jnp.where(landed[:, None], False, c["just_fired"]))
            new_segment = landed | crossing
            offset = jnp.where(new_segment[:, None],
                               segment_offset(t_new, y_new, active_new, just_fired), c["offset"])
        else:
            switches, just_fired, offset = c["switches"], c["just_fired"], c["offset"]
        refresh = (landed & (changed | is_edge(t_new))) | crossing
        k_new = jax.lax.cond(
            jnp.any(refresh),
            lambda: _where(refresh, f(t_new, y_new, active_new), k_new),
            lambda: k_new)

        h_next = h_step * jnp.where(accepted, factor, jnp.minimum(factor, 1.0))
        # a step shortened to land on a stop says nothing against the longer one before it
        h_next = jnp.where(accepted & lands & (h_step < h), jnp.maximum(h_next, h), h_next)
        h_next = jnp.where(cut, forced - t, h_next)
        if n_triggers:
            h_next = jnp.where(crossing, jnp.maximum(h_step * theta, 1e-3 * h_step), h_next)
        h_new = jnp.where(live, h_next, h)

        n_steps = c["n_steps"] + live.astype(jnp.int32)
        since_stop = jnp.where(landed | crossing, 0, c["since_stop"] + live.astype(jnp.int32))
        ok = live & (c["status"] == Status.OK)
        underflow = ~accepted & ~cut & (h_new <= 1e-14 * jnp.maximum(1.0, jnp.abs(t)))
        status = jnp.where(ok & underflow, Status.SOLVER_FAILED, c["status"])
        status = jnp.where(ok & (status == Status.OK) & (since_stop > max_steps),
                           Status.MAX_STEPS, status)
        if n_triggers:
            over = jnp.any(switches > switch_budget, axis=1)
            status = jnp.where(ok & (status == Status.OK) & over, Status.SWITCH_BUDGET, status)
        done = c["done"] | reached_t1 | (status != Status.OK)
        return dict(t=t_new, y=y_new, k1=k_new, h=h_new, applied=applied, tick=tick,
                    hard_tick=hard_tick, forced=forced, active=active_new, just_fired=just_fired,
                    offset=offset, switches=switches, saved=saved, save_ptr=save_ptr, status=status,
                    n_steps=n_steps, since_stop=since_stop, done=done)

    final = jax.lax.while_loop(lambda c: ~jnp.all(c["done"]), attempt, carry)
    out, lowest, highest = final["saved"]
    # a member that missed a save time would hold NaN there: the same failure as in simulate
    status = jnp.where((final["status"] == Status.OK) & (final["save_ptr"] < n_save),
                       Status.NONFINITE, final["status"])
    finish = jax.vmap(lambda m, ys, s, lo, hi: finish_run(
        m.twin, m.forcing, ts, ys, s, bound_check, atol, extremes=(lo, hi)))
    ys, signals, status, _ = finish(members, out, status, lowest, highest)
    return ys, signals, status, final["n_steps"]


def simulate_ensemble(
    twins: Twin,
    scenario: Scenario | None = None,
    *,
    t1: ArrayLike | None = None,
    ts: ArrayLike | None = None,
    n_save: int = 201,
    t0: float = 0.0,
    y0: ArrayLike | None = None,
    rtol: float = 1e-6,
    atol: float = 1e-8,
    max_steps: int = 100_000,
    check_bounds: bool = True,
    skip_idle_ticks: bool = True,
) -> Solution:
    """Simulate every member of a cohort under one scenario, forward only (minutes).

    Args:
        twins: a twin with a leading member axis on every parameter:
            ``jax.vmap(lambda p: twin.replace(p))({"drug.clearance": values, ...})``.
        scenario: interventions, the same for every member (doses may still arrive at
            different times, through the members' lag times).
        t1, ts, n_save, t0: save times as in ``vht.simulate``.
        y0: initial states, shape (members, states) (default each member's
            ``initial_state()``).
        rtol, atol: tolerances of the error control (RMS norm, as diffrax's).
        max_steps: each member's budget of attempted steps between two stops (doses, window
            edges, clock ticks that change the state, trigger switches).
        check_bounds: a state outside its declared physiological bounds is a failure.
        skip_idle_ticks: let steps cross sample-and-hold clock ticks whose update changes
            nothing (checked on the continuous extension); False stops at every tick.

    Returns:
        A ``Solution`` whose arrays have a leading member axis (``ys``: members x times x
        states), a status per member and NaN outputs for failed members. Forward-mode
        derivatives (``jax.jvp``, ``jax.jacfwd``) pass through it, as ``vht optimize`` uses
        them for a few decision variables; reverse mode does not (a while loop): use
        ``vht.simulate`` (diffrax) for gradients with respect to many parameters.
    """
    if not isinstance(twins, Twin):
        raise ValueError(f"simulate_ensemble expects a Twin, got {type(twins).__name__}")
    n_members = _check_batched(twins)
    scenario = Scenario() if scenario is None else scenario
    if not isinstance(scenario, Scenario):
        raise ValueError(f"scenario must be a vht.Scenario, got {type(scenario).__name__}")
    for item in scenario.interventions:
        if any(x.ndim for x in jax.tree.leaves(eqx.filter(item, eqx.is_array))):
            raise ValueError("simulate_ensemble runs one scenario for every member: its "
                             "numbers must be scalars (stack arms into separate calls)")
    scenario = Scenario(scenario.interventions)
    dtype = jnp.result_type(float)
    if ts is None:
        if t1 is None:
            raise ValueError("simulate_ensemble needs t1 (end time) or ts (save times)")
        ts = np.linspace(float(t0), float(t1), int(n_save))
    ts_np = np.atleast_1d(np.asarray(ts, dtype=float))
    t1 = float(ts_np[-1]) if t1 is None else float(t1)
    if np.any(np.diff(ts_np) < 0):
        raise ValueError("save times ts must be increasing")
    if ts_np[0] < float(t0) or ts_np[-1] > t1:
        raise ValueError(f"save times must lie within [t0, t1] = [{float(t0)}, {t1}]")
    if max_steps < 1 or math.isinf(max_steps):
        raise ValueError("max_steps must be a positive integer")
    template = jax.tree.map(lambda x: x[0] if eqx.is_array(x) else x, twins)
    n_samples = _sample_count(template, float(t0), t1)
    for step in scenario.of_type(ParameterStep):
        step.resolved(template)
    n_states = len(twins.state_names)
    if y0 is None:
        y0 = jax.vmap(lambda tw: tw.initial_state())(twins)
    y0 = jnp.asarray(y0, dtype=dtype)
    if y0.shape != (n_members, n_states):
        raise ValueError(f"y0 has shape {y0.shape}; expected (members, states) = "
                         f"({n_members}, {n_states})")
    static = (float(rtol), float(atol), int(max_steps), bool(check_bounds), n_samples,
              bool(skip_idle_ticks))
    ys, signals, status, n_steps = _simulate_ensemble_jit(
        twins, scenario, y0, jnp.asarray(ts_np, dtype), jnp.asarray(float(t0), dtype),
        jnp.asarray(t1, dtype), static)
    config = (
        ("solver", METHOD),
        ("stepping", "adaptive"),
        ("rtol", repr(float(rtol))),
        ("atol", repr(float(atol))),
        ("max_steps", str(int(max_steps))),
        ("adjoint", "none (forward only)"),
        ("clock_ticks", "skipped when idle" if skip_idle_ticks else "every tick a stop"),
        ("time_unit", "min"),
    )
    return Solution(jnp.asarray(ts_np, dtype), ys, signals, status, n_steps, twins.state_names,
                    twins.state_units, twins.signal_names, twins.signal_units, config)
