"""``steady_state``: resting states and periodic (beating) states with conserved totals fixed.

A closed network conserves its total (blood volume), so its Jacobian is singular along that
total and a plain root finder has no unique answer. ``steady_state`` replaces, for every
conserved group the organs declare, the equation of the group's first state by
``sum(group) - total = 0``, with the total taken from the starting state. Then:

- a twin without a pulsatile organ: Newton's method on ``f(y) = 0`` (Jacobian by forward-mode
  autodiff), started from a short time-march;
- a twin with a pulsatile organ (one that declares ``period()``): shooting. Newton's method on
  ``Phi_T(y0) - y0 = 0``, where ``Phi_T`` integrates one period T (forward-mode sensitivities
  through diffrax), started after ``settle_periods`` beats.

The result says whether Newton converged and the final residual; it never silently returns an
unconverged state as converged.
"""

from __future__ import annotations

import diffrax
import equinox as eqx
import jax.numpy as jnp
import optimistix as optx
from jaxtyping import Array, ArrayLike

from ._twin import Twin


class SteadyState(eqx.Module):
    """The state, whether Newton converged, the max-norm residual and (periodic) the period."""

    y: Array
    converged: Array
    residual: Array
    period: Array | None
    periodic: bool = eqx.field(static=True)


def _constrain(twin: Twin, y_start: Array):
    """Residual wrapper replacing one equation per conserved group by its total, and the
    equations of held states (phases, running totals) by their starting values."""
    groups = twin.conserved_groups()
    totals = [jnp.sum(y_start[g]) for g in groups]
    clocks = twin.held_indices()

    def apply(residual: Array, y: Array) -> Array:
        for group, total in zip(groups, totals):
            residual = residual.at[group[0]].set(jnp.sum(y[group]) - total)
        if clocks.size:
            residual = residual.at[clocks].set(y[clocks] - y_start[clocks])
        return residual

    return apply


def _flow_map(twin: Twin, period: Array, rtol: float, atol: float, max_steps: int):
    term = diffrax.ODETerm(lambda t, y, args: twin.rates(t, y))
    controller = diffrax.PIDController(rtol=rtol, atol=atol)

    def flow(y0: Array, n_periods: ArrayLike = 1.0) -> Array:
        solution = diffrax.diffeqsolve(
            term, diffrax.Tsit5(), 0.0, period * n_periods, None, y0,
            stepsize_controller=controller, max_steps=max_steps,
            adjoint=diffrax.ForwardMode(), throw=True)
        return solution.ys[-1]

    return flow


@eqx.filter_jit
def _periodic(twin, y_start, settle_periods, rtol, atol, tolerance, max_steps):
    period = twin.period()
    flow = _flow_map(twin, period, rtol, atol, max_steps)
    y_settled = flow(y_start, settle_periods)
    constrain = _constrain(twin, y_start)

    def residual(y, args):
        return constrain(flow(y) - y, y)

    solution = optx.root_find(residual, optx.Newton(rtol=tolerance, atol=tolerance), y_settled,
                              max_steps=50, throw=False)
    final = residual(solution.value, None)
    return solution.value, solution.result == optx.RESULTS.successful, final, period


@eqx.filter_jit
def _resting(twin, y_start, settle_time, rtol, atol, tolerance, max_steps):
    term = diffrax.ODETerm(lambda t, y, args: twin.rates(t, y))
    march = diffrax.diffeqsolve(
        term, diffrax.Kvaerno3() if twin.stiffness == "stiff" else diffrax.Tsit5(), 0.0,
        settle_time, None, y_start,
        stepsize_controller=diffrax.PIDController(rtol=rtol, atol=atol), max_steps=max_steps,
        throw=False)
    y_settled = jnp.where(jnp.all(jnp.isfinite(march.ys[-1])), march.ys[-1], y_start)
    constrain = _constrain(twin, y_start)

    def residual(y, args):
        return constrain(twin.rates(0.0, y), y)

    solution = optx.root_find(residual, optx.Newton(rtol=tolerance, atol=tolerance), y_settled,
                              max_steps=100, throw=False)
    final = residual(solution.value, None)
    return solution.value, solution.result == optx.RESULTS.successful, final


def steady_state(
    twin: Twin,
    *,
    y0: ArrayLike | None = None,
    periodic: bool | None = None,
    settle_time: float = 60.0,
    settle_periods: int = 20,
    rtol: float = 1e-10,
    atol: float = 1e-10,
    tolerance: float = 1e-8,
    max_steps: int = 100_000,
) -> SteadyState:
    """Find the resting state of ``twin`` (or its periodic state, for a pulsatile twin).

    Args:
        y0: starting state (default ``twin.initial_state()``); conserved totals are taken from
            it and held fixed.
        periodic: force shooting (True) or a fixed point (False); by default periodic exactly
            when an organ declares a period.
        settle_time: minutes of time-marching before Newton (fixed point).
        settle_periods: periods of time-marching before shooting (periodic).
        rtol: relative integration tolerance.
        atol: absolute integration tolerance.
        tolerance: Newton's relative and absolute tolerance.

    For a periodic twin, ``y`` is the state at the start of a period (t = 0), so
    ``simulate(twin, y0=result.y)`` starts in the beating steady state.
    """
    y_start = twin.initial_state() if y0 is None else jnp.asarray(y0, dtype=jnp.result_type(float))
    period = twin.period()
    periodic = period is not None if periodic is None else periodic
    if periodic and period is None:
        raise ValueError("periodic=True needs an organ that declares a period()")
    if periodic:
        y, converged, residual, period = _periodic(
            twin, y_start, jnp.asarray(float(settle_periods)), float(rtol), float(atol),
            float(tolerance), int(max_steps))
    else:
        y, converged, residual = _resting(twin, y_start, jnp.asarray(float(settle_time)),
                                          float(rtol), float(atol), float(tolerance),
                                          int(max_steps))
        period = None
    return SteadyState(y, converged, jnp.max(jnp.abs(residual)), period, bool(periodic))
