"""FOCE's per-subject objective and its exact gradient, written out from the derivatives of
the model's predictions at the conditional mode.

One subject with q random effects eta, outer vector x = (theta [n], omega [n_omega],
s [n_error]) and m observation rows j. Its unknowns are z = (theta + D eta, s); the model
predicts f_j(theta + D eta) and the observation models give, row by row, the negative
log-likelihood l_j(f_j, s), the prediction on the normal scale g_j(f_j, s) (``linearised``)
and the weight w_j(f_j, s) = 1 / variance (0 on padding rows). With Omega^-1 = O,

    c(eta, x)    = sum_j l_j + eta' O eta / 2                  (conditional objective)
    c_eta        = sum_j l_f F_j + O eta                        F_j = d f_j / d eta
    C (Hessian)  = sum_j (l_ff F_j F_j' + l_f H_j) + O          H_j = d^2 f_j / d eta^2
    M = d c_eta / d x:  theta: sum_j (l_ff F_j T_j' + l_f G_j)  T_j = d f_j / d theta,
                        omega: (d O / d omega) eta               G_j = d^2 f_j / d eta d theta
                        s:     sum_j l_fs F_j
    J_j = g_f F_j,   I = sum_j w_j J_j J_j' + O,
    -2 log L_i = 2 c + log det Omega + log det I                 (at the mode eta_hat)

The mode moves with x as d eta_hat / d x = E = -C^-1 M (implicit function theorem), so with
P = I^-1, v_j = P J_j and the total derivatives of f_j, s and J_j along x

    d f_j = F_j' E + T_j' d theta,     d w_j = w_f d f_j + w_s d s,
    d J_j = (g_ff d f_j + g_fs d s) F_j + g_f (H_j E + G_j d theta),

the gradient is

    d(-2 log L_i) = 2 (c_eta' E + dc/dx) + d log det Omega
                    + sum_j (J_j' P J_j) d w_j + 2 sum_j w_j v_j' d J_j + tr(P dO).

Everything here is sums over rows of products of these few numbers: they are computed once
(``ModelJets`` from one forward-over-forward model pass along (eta, theta),
``ObservationJets`` from the elementwise observation models), instead of differentiating
the whole objective, observation models and log-determinant again along every direction of
(eta, x): on 1,000 subjects that took 2.4-5.6 ms per evaluation beside the model pass, this
about 1 ms. Tests compare the result with JAX differentiating -2 log L itself
(``tests/test_calibration_population.py``: additive, combined and log-normal error, full
covariance).
"""

from __future__ import annotations

from typing import NamedTuple

import jax
import jax.numpy as jnp
from jaxtyping import Array

from . import _small_linalg as small


class ModelJets(NamedTuple):
    """The predictions and their derivatives at one point (rows j of the subject)."""

    f: Array  # (m,)
    f_eta: Array  # (m, q)
    f_theta: Array  # (m, n)
    f_eta_theta: Array  # (m, q, n)
    f_eta_eta: Array  # (m, q, q)


class ObservationJets(NamedTuple):
    """Per row: the observation model's -log likelihood l, normal-scale prediction g and
    weight w = 1 / variance (both masked), with their derivatives in the prediction f and
    the error parameters s."""

    nll: Array  # (m,)
    nll_f: Array  # (m,)
    nll_ff: Array  # (m,)
    nll_s: Array  # (m, n_error)
    nll_fs: Array  # (m, n_error)
    linear_f: Array  # (m,)
    linear_ff: Array  # (m,)
    linear_fs: Array  # (m, n_error)
    weight: Array  # (m,)
    weight_f: Array  # (m,)
    weight_s: Array  # (m, n_error)


class PriorTerms(NamedTuple):
    """Omega^-1, log det Omega and their derivatives along the outer vector (shared by every
    subject)."""

    omega_inverse: Array  # (q, q)
    d_omega_inverse: Array  # (q, q, p)
    log_det_omega: Array  # ()
    d_log_det_omega: Array  # (p,)


def _mm(a: Array, b: Array) -> Array:
    """a @ b for small matrices (or a vector on either side) as a broadcast product and a
    sum: batched over 1,000 subjects, XLA's CPU matrix products of a few-by-few blocks cost
    a library call per subject, where elementwise arithmetic fuses into one loop."""
    if a.ndim == 1 and b.ndim == 1:
        return jnp.sum(a * b)
    if a.ndim == 1:
        return jnp.sum(a[:, None] * b, axis=0)
    if b.ndim == 1:
        return jnp.sum(a * b[None, :], axis=1)
    return jnp.sum(a[:, :, None] * b[None, :, :], axis=1)


def kept(x):
    """``x`` (arrays) computed once and stored: XLA would otherwise fuse the arithmetic
    that makes it (a model's derivatives, an unrolled small solve) into each of its
    consumers and recompute it for every element they produce (on 1,000 subjects that
    made this gradient's few thousand products cost milliseconds). Only where the program
    keeps barriers to code generation: XLA's CPU pipeline removes them before fusion unless
    told not to (``calibration._population._compiler_options``)."""
    return jax.lax.optimization_barrier(x)


def _where_moving(moving: Array, derivative: Array) -> Array:
    """A row's derivative in its prediction where the prediction moves with the unknowns,
    else 0: the chain rule multiplies it by zero tangents (a pre-dose sample predicted 0),
    and where the observation model is singular at the prediction (the log of 0) 0 times
    its infinite derivative would be NaN."""
    mask = moving.reshape(moving.shape + (1,) * (derivative.ndim - 1))
    return jnp.where(mask, derivative, 0.0)


def conditional_parts(eta: Array, f_eta: Array, f_eta_eta: Array, nll: Array, nll_f: Array,
                      nll_ff: Array, omega_inverse: Array):
    """(c, c_eta, C): the conditional objective, its gradient and exact Hessian in eta, from
    the predictions' derivatives along eta and the rows' -log likelihood (c is inf where
    the model or the likelihood is not finite)."""
    nll_f, nll_ff = (_where_moving(jnp.any(f_eta != 0, axis=1), d) for d in (nll_f, nll_ff))
    total = jnp.sum(nll)
    value = jnp.where(jnp.isfinite(total), total, jnp.inf) + 0.5 * _mm(eta, _mm(omega_inverse,
                                                                             eta))
    gradient = _mm(nll_f, f_eta) + _mm(omega_inverse, eta)
    hessian = (_mm(f_eta.T * nll_ff, f_eta) + jnp.sum(nll_f[:, None, None] * f_eta_eta, axis=0)
               + omega_inverse)
    return value, gradient, hessian


def value_and_gradient(eta: Array, model: ModelJets, rows: ObservationJets, prior: PriorTerms,
                       n_omega: int):
    """(-2 log L_i with constants, its gradient along the outer vector, d eta_hat / d outer,
    P = I^-1: the covariance of eta given the data in the model linearised at the mode, and
    each row's J_j' P J_j: the variance of its normal-scale prediction under that
    distribution) at the conditional mode ``eta`` (see the module docstring)."""
    model, rows = kept((model, rows))
    moving = jnp.any(model.f_eta != 0, axis=1) | jnp.any(model.f_theta != 0, axis=1)
    rows = rows._replace(**{name: _where_moving(moving, getattr(rows, name)) for name in (
        "nll_f", "nll_ff", "nll_fs", "linear_f", "linear_ff", "linear_fs", "weight_f")})
    n = model.f_theta.shape[1]
    n_error = rows.nll_s.shape[1]
    f_eta, f_theta = model.f_eta, model.f_theta
    omega_inverse = prior.omega_inverse
    d_omega_inverse = prior.d_omega_inverse[..., n: n + n_omega]  # the rest is 0

    def along_x(leading, theta=None, omega=None, error=None):
        """A derivative along x (last axis) from its theta, omega and error blocks (None:
        zero)."""
        blocks = [(theta, n), (omega, n_omega), (error, n_error)]
        return jnp.concatenate([jnp.zeros(leading + (size,), eta.dtype) if block is None
                                else block for block, size in blocks], axis=-1)

    c, c_eta, c_hessian = conditional_parts(eta, f_eta, model.f_eta_eta, rows.nll, rows.nll_f,
                                            rows.nll_ff, omega_inverse)
    q, m = eta.shape[0], f_eta.shape[0]
    mixed = along_x(
        (q,),
        theta=(_mm(f_eta.T * rows.nll_ff, f_theta)
               + jnp.sum(rows.nll_f[:, None, None] * model.f_eta_theta, axis=0)),
        omega=jnp.sum(d_omega_inverse * eta[None, :, None], axis=1),
        error=_mm(f_eta.T, rows.nll_fs))
    d_eta = kept(-small.solve(c_hessian, mixed))  # (q, p)
    partial_c = along_x(
        (), theta=_mm(rows.nll_f, f_theta),
        omega=0.5 * jnp.sum(eta[:, None, None] * d_omega_inverse * eta[None, :, None],
                            axis=(0, 1)),
        error=jnp.sum(rows.nll_s, axis=0))
    d_c = _mm(c_eta, d_eta) + partial_c

    jac = f_eta * rows.linear_f[:, None]  # J_j
    information = _mm(jac.T * rows.weight, jac) + omega_inverse
    lower = small.cholesky(information)
    inverse = kept(small.inverse_from_cholesky(lower))  # P
    log_det_information = 2.0 * jnp.sum(jnp.log(jnp.diagonal(lower)))
    v = kept(_mm(jac, inverse))  # rows v_j' = J_j' P
    d_f = kept(_mm(f_eta, d_eta) + along_x((m,), theta=f_theta))
    d_weight = rows.weight_f[:, None] * d_f + along_x((m,), error=rows.weight_s)
    v_h = kept(jnp.sum(v[:, :, None] * model.f_eta_eta, axis=1))  # v_j' H_j
    v_g = kept(jnp.sum(v[:, :, None] * model.f_eta_theta, axis=1))  # v_j' G_j
    v_d_jac = ((rows.linear_ff[:, None] * d_f + along_x((m,), error=rows.linear_fs))
               * jnp.sum(v * f_eta, axis=1)[:, None]
               + rows.linear_f[:, None] * (_mm(v_h, d_eta) + along_x((m,), theta=v_g)))
    spread = jnp.sum(v * jac, axis=1)  # J_j' P J_j
    d_log_det_information = (_mm(spread, d_weight)
                             + 2.0 * _mm(rows.weight, v_d_jac)
                             + along_x((), omega=jnp.sum(inverse.T[:, :, None] * d_omega_inverse,
                                                         axis=(0, 1))))

    value = 2.0 * c + prior.log_det_omega + log_det_information
    gradient = 2.0 * d_c + prior.d_log_det_omega + d_log_det_information
    return value, gradient, d_eta, inverse, spread
