"""Forward-mode derivatives of objectives with few unknowns.

An individual fit has a handful of unknowns (three to ten) and an ODE inside its objective.
Reverse mode through diffrax (checkpointed adjoint) re-runs the solve backwards from stored
checkpoints; forward mode carries one tangent per unknown through a single solve, with no
checkpoints, which for few unknowns is cheaper, and under ``vmap`` (a cohort) it avoids
batching the adjoint's checkpointed loops. ``forward_gradient`` gives an objective whose
reverse-mode gradient (what optax's L-BFGS and line search ask for) is computed this way;
``newton`` minimises with exact Hessians from forward over forward mode.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
from jaxtyping import Array

from . import _small_linalg as small


def value_and_jacobian(function, x: Array):
    """``function(x)`` and its Jacobian (trailing axis over x) by forward mode: one
    evaluation carrying one tangent per input (so an ODE inside is solved once)."""
    basis = jnp.eye(x.size, dtype=x.dtype)
    primal, tangents = jax.vmap(lambda t: jax.jvp(function, (x,), (t,)),
                                out_axes=(None, -1))(basis)
    return primal, tangents


def forward_gradient(objective):
    """``objective`` (scalar of a vector ``z``, forward-differentiable: its ODE solves use
    ``diffrax.ForwardMode()``) with a reverse-mode rule that computes the gradient by forward
    mode (``value_and_jacobian``). The result supports ``jax.grad`` and ``vjp``, not ``jvp``."""
    @jax.custom_vjp
    def wrapped(z):
        return objective(z)

    def forward(z):
        value, gradient = value_and_jacobian(objective, z)
        return value, gradient

    def backward(gradient, cotangent):
        return (cotangent * gradient,)

    wrapped.defvjp(forward, backward)
    wrapped.forward_mode = objective  # the original, for forward-over-forward Hessians
    return wrapped


def value_gradient_hessian(objective, z: Array):
    """(value, gradient, Hessian) of a forward-differentiable scalar ``objective`` in one
    forward-over-forward pass (a solve carrying n + n^2 tangents)."""
    (value, gradient), (_, hessian) = value_and_jacobian(
        lambda w: value_and_jacobian(objective, w), z)
    return value, gradient, 0.5 * (hessian + hessian.T)


def newton(objective, z0: Array, *, steps: int = 100, tolerance: float = 1e-6):
    """Minimise a forward-differentiable scalar ``objective`` from ``z0`` by Newton's method
    with Levenberg damping: the step solves (H + mu I) d = -g with the exact Hessian H,
    mu raised above Gershgorin's bound on H's most negative eigenvalue where H is not positive
    definite (a Cholesky test: a batched eigendecomposition of small matrices costs more on
    the CPU than the model), each step at most 1 in every coordinate (a factor e on a log
    parameter: a wild trial point makes a stiff solve, and in a vmapped batch every member
    waits for it); a step that does not lower the objective is refused and mu grows tenfold,
    an accepted one shrinks it tenfold.

    For the few unknowns of an individual fit this converges quadratically in about ten
    iterations, each one forward-over-forward solve, where L-BFGS takes twenty to thirty steps
    of a line search whose own bookkeeping (small operations in nested loops) costs more than
    the model. Stops when the gradient norm is below ``tolerance``, after ``steps``
    iterations, or when mu exceeds 1e10 (no descent left at rounding level). Returns (z,
    value, history of values, NaN after the stop).
    """
    z, value, *_, history = jax.lax.while_loop(
        lambda c: newton_continues(c, steps, tolerance), lambda c: newton_step(objective, c),
        newton_start(objective, z0, steps))
    return z, value, history


def newton_start(objective, z0: Array, steps: int):
    """The state of ``newton`` at ``z0``: (z, value, gradient, Hessian, mu, iteration,
    history). Split out, with ``newton_continues`` and ``newton_step``, so that a cohort can
    run many starts' iterations in its own loop (``calibration._compaction``)."""
    value, gradient, hessian = value_gradient_hessian(objective, z0)
    # a start where the solve fails does not move (its value stays inf; other starts win)
    usable = jnp.isfinite(value) & jnp.all(jnp.isfinite(gradient)) & jnp.all(
        jnp.isfinite(hessian))
    value = jnp.where(usable, value, jnp.inf)
    history = jnp.full(steps, jnp.nan, dtype=z0.dtype)
    return (z0, value, gradient, jnp.where(usable, hessian, jnp.eye(z0.size, dtype=z0.dtype)),
            jnp.where(usable, 1e-3, 1e11).astype(z0.dtype), jnp.asarray(0), history)


def newton_continues(carry, steps: int, tolerance: float) -> Array:
    """Whether ``newton`` takes another step from the state ``carry``."""
    _, _, gradient, _, mu, i, _ = carry
    norm = jnp.linalg.norm(gradient)
    return (i < steps) & ~(norm < tolerance) & (mu < 1e10)


def newton_step(objective, carry):
    """One damped Newton step of ``newton`` (accepted or refused) from the state ``carry``."""
    z, value, gradient, hessian, mu, i, history = carry
    lowest, _ = small.gershgorin_bounds(hessian)
    damping = mu + jnp.where(small.positive_definite(hessian), 0.0,
                             jnp.maximum(0.0, -lowest) * (1.0 + 1e-6))
    d = -small.solve(hessian + damping * jnp.eye(z.size, dtype=z.dtype), gradient)
    d = d / jnp.maximum(1.0, jnp.max(jnp.abs(d)))
    candidate = value_gradient_hessian(objective, z + d)
    better = jnp.isfinite(candidate[0]) & (candidate[0] <= value) & jnp.all(
        jnp.isfinite(candidate[1])) & jnp.all(jnp.isfinite(candidate[2]))
    z, value, gradient, hessian = jax.tree.map(
        lambda new, old: jnp.where(better, new, old), (z + d, *candidate),
        (z, value, gradient, hessian))
    mu = jnp.where(better, jnp.maximum(mu / 10.0, 1e-12), mu * 10.0)
    return z, value, gradient, hessian, mu, i + 1, history.at[i].set(value)
