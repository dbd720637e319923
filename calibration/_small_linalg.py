"""Linear algebra of the few-by-few matrices of random effects, unrolled into scalar arithmetic.

A FOCE fit solves, factorises and takes log-determinants of one q x q matrix per subject and
evaluation (q, the number of random effects, is 1 to 4). Batched over 1,000 subjects on the
CPU, ``jnp.linalg``'s LAPACK calls cost 0.1-0.3 ms each (a 2 x 2 solve 0.2 ms, a Cholesky
factorisation 0.17 ms, against 0.025 ms for an elementwise exponential of the same batch),
and each one breaks XLA's fusion of the elementwise work around it. For small q the same
factorisations written as loops over matrix entries become elementwise operations on the
batch, which fuse, and differentiate (forward and reverse mode) like any arithmetic. Above
``UNROLL_UP_TO`` the functions fall back to ``jnp.linalg`` (unrolled code grows as q^3).

All functions take the matrix as the last two axes of an array, without pivoting: they are for
symmetric positive definite matrices (the ``solve`` of a symmetric matrix that is not definite
works where its leading minors are not zero, as Gaussian elimination does).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
from jaxtyping import Array

UNROLL_UP_TO = 6


def _entries(a: Array, symmetric: bool = False) -> list[list[Array]]:
    """The entries of ``a`` as a nested list; with ``symmetric`` those of (a + a') / 2, so
    that derivatives along tangents that are not symmetric are those of jnp.linalg's
    log-determinant (which sees the whole matrix), not of one triangle."""
    q = a.shape[-1]
    if symmetric:
        return [[0.5 * (a[..., i, j] + a[..., j, i]) for j in range(q)] for i in range(q)]
    return [[a[..., i, j] for j in range(q)] for i in range(q)]


def cholesky(a: Array) -> Array:
    """Lower Cholesky factor L (L L' = a) of a symmetric positive definite ``a`` (of its
    symmetric part); NaN entries where ``a`` is not positive definite, as
    ``jnp.linalg.cholesky``."""
    q = a.shape[-1]
    if q > UNROLL_UP_TO:
        return jnp.linalg.cholesky(0.5 * (a + jnp.swapaxes(a, -1, -2)))
    m = _entries(a, symmetric=True)
    lower = [[jnp.zeros_like(m[0][0]) for _ in range(q)] for _ in range(q)]
    for j in range(q):
        pivot = m[j][j] - sum((lower[j][k] ** 2 for k in range(j)), jnp.zeros_like(m[j][j]))
        lower[j][j] = jnp.sqrt(jnp.where(pivot > 0, pivot, jnp.nan))
        for i in range(j + 1, q):
            off = m[i][j] - sum((lower[i][k] * lower[j][k] for k in range(j)),
                                jnp.zeros_like(m[i][j]))
            lower[i][j] = off / lower[j][j]
    return jnp.stack([jnp.stack(row, axis=-1) for row in lower], axis=-2)


def solve_lower(lower: Array, b: Array) -> Array:
    """x with ``lower`` x = b (forward substitution); ``b`` a vector (last axis q)."""
    q = lower.shape[-1]
    if q > UNROLL_UP_TO:
        return jax.scipy.linalg.solve_triangular(lower, b[..., None], lower=True)[..., 0]
    x: list[Array] = []
    for i in range(q):
        partial = sum((lower[..., i, k] * x[k] for k in range(i)), jnp.zeros_like(b[..., i]))
        x.append((b[..., i] - partial) / lower[..., i, i])
    return jnp.stack(x, axis=-1)


def inverse_from_cholesky(lower: Array) -> Array:
    """a^-1 = L'^-1 L^-1 from a's Cholesky factor L."""
    q = lower.shape[-1]
    if q > UNROLL_UP_TO:
        return jax.scipy.linalg.cho_solve(
            (lower, True), jnp.broadcast_to(jnp.eye(q, dtype=lower.dtype), lower.shape))
    # the rows of L^-1 by forward substitution on the identity's columns
    columns = [solve_lower(lower, jnp.broadcast_to(jnp.eye(q, dtype=lower.dtype)[k],
                                                   lower.shape[:-1]))
               for k in range(q)]
    inverse_lower = jnp.stack(columns, axis=-1)  # L^-1
    # (L^-1)' L^-1 as a broadcast product and sum, not a matrix product: batched over
    # subjects, XLA's CPU matrix product of small blocks is a library call per block
    return jnp.sum(inverse_lower[..., :, :, None] * inverse_lower[..., :, None, :], axis=-3)


def log_det_spd(a: Array) -> Array:
    """log det of a symmetric positive definite ``a`` (NaN where it is not definite)."""
    lower = cholesky(a)
    return 2.0 * jnp.sum(jnp.log(jnp.diagonal(lower, axis1=-2, axis2=-1)), axis=-1)


def solve(a: Array, b: Array) -> Array:
    """x with a x = b by Gaussian elimination without pivoting (for symmetric ``a``: exact
    arithmetic of a Cholesky solve when ``a`` is positive definite); ``b`` a vector (last
    axis q) or a matrix (last two axes q x k)."""
    q = a.shape[-1]
    vector = b.ndim == a.ndim - 1
    if q > UNROLL_UP_TO:
        return jnp.linalg.solve(a, b[..., None])[..., 0] if vector else jnp.linalg.solve(a, b)
    m = _entries(a)
    rhs = [b[..., i, None] if vector else b[..., i, :] for i in range(q)]
    for j in range(q):  # eliminate below the pivot
        for i in range(j + 1, q):
            factor = m[i][j] / m[j][j]
            m[i] = [m[i][k] - factor * m[j][k] for k in range(q)]
            rhs[i] = rhs[i] - factor[..., None] * rhs[j]
    x: list[Array] = [jnp.zeros_like(rhs[0])] * q
    for i in reversed(range(q)):  # back substitution
        partial = sum((m[i][k][..., None] * x[k] for k in range(i + 1, q)),
                      jnp.zeros_like(rhs[i]))
        x[i] = (rhs[i] - partial) / m[i][i][..., None]
    out = jnp.stack(x, axis=-2)
    return out[..., 0] if vector else out


def positive_definite(a: Array) -> Array:
    """Whether ``a`` (its symmetric part) is positive definite: its Cholesky factor exists."""
    return jnp.all(jnp.isfinite(cholesky(a)), axis=(-2, -1))


def gershgorin_bounds(a: Array) -> tuple[Array, Array]:
    """(a lower bound on every eigenvalue of a symmetric ``a``, an upper bound on their
    magnitudes), from Gershgorin's discs: the cheap stand-ins for an eigendecomposition that
    damped Newton steps need to make an indefinite Hessian definite."""
    diagonal = jnp.diagonal(a, axis1=-2, axis2=-1)
    radius = jnp.sum(jnp.abs(a), axis=-1) - jnp.abs(diagonal)
    return jnp.min(diagonal - radius, axis=-1), jnp.max(jnp.abs(diagonal) + radius, axis=-1)
