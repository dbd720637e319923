"""Closed-form solutions of linear organs: superposition of impulse and step responses.

A linear, time-invariant organ without inputs (a compartmental PK model, for example) is
solved exactly by superposition: every dose is an impulse into its state, every infusion a
step of constant rate switched on and off, and the initial state an impulse into each state at
``t0``. An organ that knows its responses in closed form (``AbstractOrgan.impulse_response``
and, for infusions, ``step_response``) can then be evaluated at any set of times without an
ODE solver: a few exponentials per dose and save time instead of an adaptive solve. This is
what makes population fits of such models cheap (R's ``SSfol`` is the same idea), and its
derivatives of any order are exact.

``simulate_closed_form`` has the contract of ``simulate`` (a ``Solution``; NaN outputs and
``Status.NONFINITE`` where a value is not finite) and refuses twins and scenarios it cannot
solve exactly: organ connections, organs without closed forms, sample-and-hold clocks,
parameter steps and triggers.

The helpers ``decay_integral`` and ``decay_convolution`` are the two integrals such responses
are made of, written so that they stay accurate (and differentiable to any order) when a rate
tends to zero or two rates meet, where the textbook formulas divide zero by zero.
``linear_impulse_response`` and ``linear_step_response`` give the responses of any linear
organ from the matrix exponential of its rate matrix, for organs whose eigenvalues have no
short closed form (three compartments: the roots of a cubic).
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np
from jaxtyping import Array, ArrayLike

from ._organ import AbstractOrgan
from ._scenario import AbstractDose, AbstractRateInput, Scenario
from ._simulate import Solution, Status
from ._twin import Twin
from ._units import time_factor

# Below this |x| the moments below come from their power series, whose first omitted term is
# below x^9 / 9! < 3e-15 relative there; above it, from the recurrence, whose cancellation
# costs about eps / x^k in the moment of order k (the k-th derivative): 1e-14 in the second
# derivatives a population fit's model passes take, 1e-13 in a third. (A threshold of 1
# with 20 terms was as fast in a population fit, but every order's series is then twice as
# long.)
_SERIES_BELOW = 0.1
_SERIES_TERMS = 9


def _moment_value(order: int, x: Array) -> Array:
    """The integral of s^order exp(-x s) over s in [0, 1] (finite at x = 0, for x >= 0 or
    moderately negative): the power series sum_n (-x)^n / (n! (n + order + 1)) for small
    |x|, else the recurrence M_j = (j M_(j-1) - exp(-x)) / x from M_0 = -expm1(-x) / x."""
    small = jnp.abs(x) < _SERIES_BELOW
    x_safe = jnp.where(small, 1.0, x)
    direct = -jnp.expm1(-x_safe) / x_safe
    if order:
        decayed = jnp.exp(-x_safe)
        for j in range(1, order + 1):
            direct = (j * direct - decayed) / x_safe
    factorials = np.cumprod([1.0] + list(range(1, _SERIES_TERMS)))
    series = jnp.zeros_like(x)
    for n in reversed(range(_SERIES_TERMS)):  # Horner in -x
        series = series * (-x) + 1.0 / (factorials[n] * (n + order + 1))
    return jnp.where(small, series, direct)


@functools.cache
def _moment(order: int):
    """``_moment_value(order, .)`` with its derivative written out: d M_k / dx = -M_(k+1).
    Forward mode then carries only that product along each tangent, and the branch between
    series and recurrence is taken once, on the value, where differentiating both branches
    of a ``jnp.where`` along every tangent (twelve in a population fit's model pass) cost
    half of the pass."""
    @jax.custom_jvp
    def moment(x):
        # computed once and kept: XLA would otherwise fuse the series and the recurrence into
        # every consumer, and each derivative's fusion would recompute them
        return jax.lax.optimization_barrier(_moment_value(order, x))

    @moment.defjvp
    def moment_jvp(primals, tangents):
        (x,), (dx,) = primals, tangents
        return moment(x), -_moment(order + 1)(x) * dx

    return moment


def _relative_decay(x: Array) -> Array:
    """(1 - exp(-x)) / x, equal to 1 at x = 0, for x >= 0 (or moderately negative)."""
    return _moment(0)(x)


def decay_integral(rate: ArrayLike, elapsed: ArrayLike) -> Array:
    """The integral of exp(-rate s) over s in [0, elapsed]: (1 - exp(-rate t)) / rate, and
    ``elapsed`` at rate 0 (a constant infusion into a first-order compartment)."""
    rate, elapsed = jnp.asarray(rate), jnp.asarray(elapsed)
    return elapsed * _relative_decay(rate * elapsed)


def decay_convolution(rate_a: ArrayLike, rate_b: ArrayLike, elapsed: ArrayLike) -> Array:
    """The convolution of exp(-a s) and exp(-b s) at ``elapsed``:
    (exp(-b t) - exp(-a t)) / (a - b), and t exp(-a t) at a = b (the Bateman term of a
    first-order chain). Written as t exp(-b t) R((a - b) t) with R(x) = (1 - exp(-x)) / x,
    an entire function (``_relative_decay``): exact for every a and b, smooth in both to
    every order (no |a - b| kink; at a = b too, where the difference quotient divides zero
    by zero). The convolution is symmetric in a and b: the smaller rate takes b's place, so
    R's argument is never negative and nothing overflows."""
    a, b, elapsed = jnp.asarray(rate_a), jnp.asarray(rate_b), jnp.asarray(elapsed)
    # the rates are exchanged as inputs, not through min and |a - b|: each side is the same
    # analytic formula, so its derivatives hold at a = b as well
    a_larger = a >= b
    low, high = jnp.where(a_larger, b, a), jnp.where(a_larger, a, b)
    return elapsed * jnp.exp(-low * elapsed) * _relative_decay((high - low) * elapsed)


def linear_rate_matrix(organ: AbstractOrgan) -> Array:
    """The matrix A of dy/dt = A y of a linear, homogeneous organ without inputs, in the order
    of ``organ.states``: the forward-mode derivative of its rates at the zero state, which is
    exact when the rates are linear (the equations are not written twice)."""
    names = [s.name for s in organ.states]

    def rates(y):
        values = organ.rates(0.0, dict(zip(names, y)), {})
        return jnp.stack([jnp.asarray(values.get(n, 0.0), y.dtype) for n in names])

    return jax.jacfwd(rates)(jnp.zeros(len(names), jnp.result_type(float)))


def _matrix_exponentials(matrix: Array, elapsed: Array) -> Array:
    """exp(matrix t) for every t in ``elapsed`` (stacked along elapsed's shape)."""
    elapsed = jnp.asarray(elapsed, matrix.dtype)
    return jax.scipy.linalg.expm(matrix * elapsed[..., None, None])


def linear_impulse_response(organ: AbstractOrgan, elapsed: ArrayLike,
                            source: str) -> dict[str, Array]:
    """``AbstractOrgan.impulse_response`` of a linear organ: column ``source`` of
    exp(A t), A from ``linear_rate_matrix`` (scaling and squaring with a Pade approximant,
    ``jax.scipy.linalg.expm``: exact where eigenvalues coincide and differentiable in the
    parameters to any order)."""
    names = [s.name for s in organ.states]
    columns = _matrix_exponentials(linear_rate_matrix(organ), elapsed)[..., names.index(source)]
    return {n: columns[..., i] for i, n in enumerate(names)}


def linear_step_response(organ: AbstractOrgan, elapsed: ArrayLike,
                         source: str) -> dict[str, Array]:
    """``AbstractOrgan.step_response`` of a linear organ: the integral of exp(A s) e_source
    over [0, t], the last column of exp(B t) with B = [[A, e_source], [0, 0]] (Van Loan 1978),
    so no inverse of A is needed (A may be singular: a closed system)."""
    names = [s.name for s in organ.states]
    matrix, n = linear_rate_matrix(organ), len(names)
    augmented = jnp.zeros((n + 1, n + 1), matrix.dtype).at[:n, :n].set(matrix)
    augmented = augmented.at[names.index(source), n].set(1.0)
    columns = _matrix_exponentials(augmented, elapsed)[..., :n, n]
    return {name: columns[..., i] for i, name in enumerate(names)}


def has_closed_form(organ: AbstractOrgan) -> bool:
    """Whether ``organ`` declares its impulse response (and so is linear and solvable by
    superposition)."""
    return type(organ).impulse_response is not AbstractOrgan.impulse_response


def closed_form_refusal(twin: Twin, scenario: Scenario | None = None) -> str | None:
    """Why ``simulate_closed_form`` cannot solve ``twin`` under ``scenario``; None if it can."""
    if twin.connections:
        return "its organs are connected (superposition holds for independent linear organs)"
    missing = [n for n, o in zip(twin.names, twin.organs) if not has_closed_form(o)]
    if missing:
        return f"organs {missing} declare no impulse_response"
    clocked = [n for n, o in zip(twin.names, twin.organs) if o.sample_period is not None]
    if clocked:
        return f"organs {clocked} sample and hold on a clock"
    if scenario is not None:
        other = [type(i).__name__ for i in scenario.interventions
                 if not isinstance(i, (AbstractDose, AbstractRateInput))]
        if other:
            return f"the scenario holds {sorted(set(other))}: only doses and infusions superpose"
    return None


def _organ_response(organ, kind: str, elapsed: Array, source: str) -> dict[str, Array]:
    """Responses of every state of ``organ`` at ``elapsed`` >= 0 (organ time units)."""
    response = getattr(organ, kind)(elapsed, source)
    return {s.name: jnp.broadcast_to(jnp.asarray(response.get(s.name, 0.0)), elapsed.shape)
            for s in organ.states}


def simulate_closed_form(twin: Twin, scenario: Scenario | None = None, *, ts: ArrayLike,
                         t0: ArrayLike = 0.0, y0: ArrayLike | None = None) -> Solution:
    """Solve a twin of linear organs exactly at the save times ``ts`` (minutes).

    The state starts from ``y0`` (default ``twin.initial_state()``) at ``t0``; a dose counts
    from its arrival time on (a save at that instant sees it, as in ``simulate``); an
    infusion adds its constant rate over [start, end). Raises ``ValueError`` for what cannot
    be superposed (``closed_form_refusal`` says why); use ``simulate`` for those.
    """
    scenario = Scenario() if scenario is None else scenario
    dtype = jnp.result_type(float)
    ts = jnp.atleast_1d(jnp.asarray(ts, dtype=dtype))
    ys = _superposed_states(twin, scenario, ts, t0, y0)
    signals = jax.vmap(twin.signals)(ts, ys)
    finite = jnp.all(jnp.isfinite(ys)) & jnp.all(jnp.isfinite(signals))
    status = jnp.where(finite, Status.OK, Status.NONFINITE).astype(jnp.int32)
    ys, signals = (jnp.where(finite, ys, jnp.nan), jnp.where(finite, signals, jnp.nan))
    config = (("solver", "closed form (superposition)"), ("time_unit", "min"))
    return Solution(ts, ys, signals, status, jnp.asarray(0), twin.state_names, twin.state_units,
                    twin.signal_names, twin.signal_units, config)


def closed_form_outputs(twin: Twin, scenario: Scenario | None, names: list[str], *,
                        ts: ArrayLike, t0: ArrayLike = 0.0) -> list[Array]:
    """The states or signals ``names`` of ``simulate_closed_form(twin, scenario, ts=ts,
    t0=t0)``, without its check that every output is finite (values that are not finite
    stay as computed, and no other output is computed): for a likelihood, which is infinite
    where a prediction is, and which differentiates the outputs along many tangents, where
    masking each one costs a select per tangent."""
    scenario = Scenario() if scenario is None else scenario
    ts = jnp.atleast_1d(jnp.asarray(ts, dtype=jnp.result_type(float)))
    ys = _superposed_states(twin, scenario, ts, t0, None)
    states = list(twin.state_names)
    if all(name in states for name in names):
        return [ys[:, states.index(name)] for name in names]
    signals = jax.vmap(twin.signals)(ts, ys)
    signal_names = list(twin.signal_names)
    return [ys[:, states.index(name)] if name in states
            else signals[:, signal_names.index(name)] for name in names]


def _superposed_states(twin: Twin, scenario: Scenario, ts: Array, t0: ArrayLike,
                       y0: ArrayLike | None) -> Array:
    """Every state at ``ts``, shape (len(ts), states), by superposition (see
    ``simulate_closed_form``)."""
    reason = closed_form_refusal(twin, scenario)
    if reason is not None:
        raise ValueError(f"simulate_closed_form cannot solve this twin: {reason}; use "
                         "vht.simulate")
    dtype = jnp.result_type(float)
    t0 = jnp.asarray(t0, dtype=dtype)
    if y0 is None:
        # evaluated now where it does not depend on traced parameters (a PK model starts
        # empty), so that the zeros below are known while tracing
        with jax.ensure_compile_time_eval():
            y0 = twin.initial_state()
    y0 = jnp.asarray(y0, dtype=dtype)
    if y0.shape != (len(twin.state_names),):
        raise ValueError(f"y0 has shape {y0.shape}; the twin has {len(twin.state_names)} states")

    # every input as (state index, amount or rate, on time, off time or None, kind); a state
    # known to start at zero adds no response: left out, not multiplied by zero, because its
    # response would be computed all the same (a population fit differentiates these
    # responses twice, and a one-compartment oral model's two empty states were two thirds of
    # its arithmetic)
    try:
        starts_empty = np.asarray(y0) == 0.0
    except jax.errors.TracerArrayConversionError:  # y0 depends on traced values
        starts_empty = np.zeros(len(twin.state_names), dtype=bool)
    inputs = [(k, y0[k], t0, None, "impulse_response") for k in range(len(twin.state_names))
              if not starts_empty[k]]
    for dose in scenario.of_type(AbstractDose):
        index, amount, arrival = dose.resolved(twin)
        inputs.append((index, amount, arrival, None, "impulse_response"))
    for window in scenario.interventions:
        if isinstance(window, AbstractRateInput):
            index, rate, start, end = window.window(twin)
            inputs.append((index, rate, start, end, "step_response"))

    names = twin.state_names
    total = {name: jnp.zeros_like(ts) for name in names}
    for index, size, on, off, kind in inputs:
        organ_name, _, state = names[index].partition(".")
        organ = twin[organ_name]
        scale = time_factor(organ.time_unit)  # organ time units per minute

        def response(since, organ=organ, kind=kind, state=state, scale=scale):
            elapsed = jnp.maximum(since, 0.0) * scale
            values = _organ_response(organ, kind, elapsed, state)
            return {k: jnp.where(since >= 0.0, v, 0.0) for k, v in values.items()}

        # an impulse response is per unit amount; a step response per unit rate in the
        # organ's time unit, and a rate per minute is 1 / scale times that rate
        weight = size if kind == "impulse_response" else size / scale
        on_part = response(ts - on)
        off_part = ({k: 0.0 for k in on_part} if off is None else
                    response(jnp.where(jnp.isfinite(off), ts - off, -1.0)))
        for k, v in on_part.items():
            key = f"{organ_name}.{k}"
            total[key] = total[key] + weight * (v - off_part[k])
    return jnp.stack([total[name] for name in names], axis=-1)
