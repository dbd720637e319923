"""Population (non-linear mixed-effects) fits: FOCE with interaction.

Model. Subject i's unknowns on the problem's unconstrained scale are
``z_i = theta + D eta_i`` (the error-model parameters are shared), with random effects
``eta_i ~ N(0, Omega)``; ``D`` (the design) says which unknowns each random effect moves
(by default each named random effect moves the free parameter of the same name). ``Omega`` is
diagonal or full (Cholesky factor with a log diagonal).

Objective (first-order conditional estimation with interaction). For each subject the
conditional mode ``eta_hat`` minimises ``c(eta) = -log p(y | eta) + eta' Omega^-1 eta / 2``
(Levenberg-damped Newton with the exact Hessian, made positive definite where it is not, and
steps of at most one unit of eta; the mode is differentiated implicitly, through the
implicit function theorem with the exact Hessian of c, not through the iterations). With the
predictions, observations and residual variances on the scale where the error model is
normal (``ErrorModel.linearised``), ``J = d f / d eta`` at the mode and ``V`` the residual
variances:

    -2 log L_i = -2 log p(y_i | eta_hat) + eta_hat' Omega^-1 eta_hat + log det Omega
                 + log det(J' V^-1 J + Omega^-1)

This is the Laplace approximation with the Gauss-Newton Hessian; at the mode it equals the
log-likelihood of the model linearised there (Lindstrom and Bates 1990, as R nlme computes it).
``-2 log L`` keeps every constant; the NONMEM-convention objective function value omits
``N_obs log(2 pi)``. Derivatives are forward mode throughout (``diffrax.ForwardMode``), so
second derivatives of the ODE solution (inside ``J``'s derivative) are available; twins with
closed-form solutions (``Problem.solution``) are differentiated the same way without a solver.

Fitting (``fit_population``): one compiled program returns -2 log L, its exact gradient
(written out from one model pass at each mode, ``calibration._foce_gradient``), the outer
products of the subjects' gradients and the empirical Bayes estimates; Levenberg-
Marquardt steps with those outer products as Hessian (many subjects) or scipy's L-BFGS-B
(few) drive it; standard errors come from the observed information (forward differences of
the exact gradient). Each subject's Laplace posterior given the population
(``individual_posteriors``) feeds what-if predictions.
"""

from __future__ import annotations

import dataclasses
import sys
import time
from collections.abc import Sequence

import diffrax
import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import pandas as pd
from jaxtyping import Array

import vht

from . import _foce_gradient as foce
from . import _small_linalg as small
from ._branch import branch_summary
from ._compaction import compacted_while_loop
from ._forward import value_and_jacobian
from ._problem import Problem
from ._records import SubjectData, read_subjects, subject_ids

_FORWARD = diffrax.ForwardMode()
_LOG_2PI = float(np.log(2.0 * np.pi))
# a Newton step below this (in units of eta) ends the mode search: the step is taken
# unverified, leaving an error of its square's order (1e-10). Against 1e-6 it saved a
# Newton iteration of most subjects in most early evaluations of a fit (full-batch iterations
# 18 -> 16 on 1,000 synthetic subjects, warm fits 7 % faster in interleaved runs), with the
# same optimum (-2 log L to 1e-9, estimates to 2e-16) and standard errors within 1.4e-11
# relative on 60, 200 and 1,000 subjects: near the optimum the extrapolated modes are far
# closer than this anyway
_ENDGAME = 1e-5


class PopulationProblem(eqx.Module):
    """A ``Problem`` with random effects (see the module docstring)."""

    problem: Problem
    random_effects: tuple[str, ...] = eqx.field(static=True)
    design: tuple[tuple[float, ...], ...] = eqx.field(static=True)
    covariance: str = eqx.field(static=True)

    def __init__(self, problem: Problem, random_effects: Sequence[str],
                 design: np.ndarray | None = None, covariance: str = "diagonal"):
        free = [f.name for f in problem.free]
        if covariance not in ("diagonal", "full"):
            raise ValueError(f"covariance must be 'diagonal' or 'full', not {covariance!r}")
        if design is None:
            unknown = [name for name in random_effects if name not in free]
            if unknown:
                raise ValueError(f"random effects {unknown} name no free parameter; give a design "
                                 "matrix to attach them")
            design = np.array([[1.0 if f == r else 0.0 for r in random_effects] for f in free])
        design = np.asarray(design, dtype=float)
        if design.shape != (len(free), len(random_effects)):
            raise ValueError(f"design has shape {design.shape}; expected "
                             f"({len(free)} free parameters, {len(random_effects)} random effects)")
        self.problem = problem
        self.random_effects = tuple(random_effects)
        self.design = tuple(tuple(float(v) for v in row) for row in design)
        self.covariance = covariance

    # -- the outer vector ------------------------------------------------------------------------

    @property
    def n_fixed(self) -> int:
        return len(self.problem.free)

    @property
    def q(self) -> int:
        return len(self.random_effects)

    @property
    def n_omega(self) -> int:
        return self.q if self.covariance == "diagonal" else self.q * (self.q + 1) // 2

    @property
    def names(self) -> tuple[str, ...]:
        fixed = tuple(f"theta.{f.name}" for f in self.problem.free)
        omega = tuple(f"omega.log_sd.{r}" for r in self.random_effects)
        if self.covariance == "full":
            omega += tuple(f"omega.chol.{self.random_effects[i]}.{self.random_effects[j]}"
                           for i in range(self.q) for j in range(i))
        return fixed + omega + self.problem.error_names

    def initial(self, omega_sd: float = 0.3) -> Array:
        z = self.problem.initial()
        omega = [np.log(omega_sd)] * self.q + [0.0] * (self.n_omega - self.q)
        return jnp.concatenate([z[: self.n_fixed], jnp.asarray(omega, dtype=float),
                                z[self.n_fixed:]])

    def pack(self, theta: Array, omega: Array, error_z: Array) -> Array:
        """The outer vector from fixed effects, the covariance Omega and error parameters."""
        chol = jnp.linalg.cholesky(jnp.asarray(omega, dtype=float))
        parts = [jnp.asarray(theta, dtype=float), jnp.log(jnp.diag(chol))]
        if self.covariance == "full":
            parts.append(jnp.asarray([chol[i, j] for i in range(self.q) for j in range(i)]))
        return jnp.concatenate(parts + [jnp.asarray(error_z, dtype=float)])

    def unpack(self, outer: Array) -> tuple[Array, Array, Array]:
        """(theta, Cholesky factor of Omega, error-model parameters)."""
        theta = outer[: self.n_fixed]
        omega = outer[self.n_fixed: self.n_fixed + self.n_omega]
        chol = jnp.diag(jnp.exp(omega[: self.q]))
        if self.covariance == "full":
            k = self.q
            for i in range(self.q):
                for j in range(i):
                    chol = chol.at[i, j].set(omega[k])
                    k += 1
        return theta, chol, outer[self.n_fixed + self.n_omega:]

    def omega(self, outer: Array) -> Array:
        _, chol, _ = self.unpack(outer)
        return chol @ chol.T

    def individual(self, outer: Array, eta: Array) -> Array:
        """The subject's unconstrained unknowns for random effects ``eta``."""
        theta, _, error_z = self.unpack(outer)
        return jnp.concatenate([theta + jnp.asarray(self.design) @ eta, error_z])

    # -- FOCE ------------------------------------------------------------------------------------

    def _conditional(self, eta: Array, outer: Array, subject: SubjectData):
        """(conditional objective c = -log p(y | eta) + eta' Omega^-1 eta / 2, (f, w)) with the
        predictions f on the linearised scale and w the masked inverse residual variances:
        the definition that ``subject_minus_2_log_likelihood`` differentiates, against which
        the fits' written-out derivatives are tested."""
        problem = self.problem
        z = self.individual(outer, eta)
        predicted = problem.predict(z, subject, _FORWARD)
        _, chol, _ = self.unpack(outer)
        u = small.solve_lower(chol, eta)
        _, f, variance = problem.linearised(predicted, z, subject)
        weights = jnp.where(jnp.asarray(subject.mask), 1.0 / variance, 0.0)
        value = problem.neg_log_likelihood_of(predicted, z, subject) + 0.5 * u @ u
        return value, (f, weights)

    def _parts(self, eta: Array, outer: Array, subject: SubjectData):
        """(c, its gradient in eta, J = df/deta, weights) from one ODE solve carrying one
        tangent per random effect."""
        (value, _, weights), (gradient, jac, _) = value_and_jacobian(
            lambda e: (lambda c, fw: (c, *fw))(*self._conditional(e, outer, subject)), eta)
        return value, gradient, jac, weights

    def _information(self, jac: Array, weights: Array, outer: Array) -> Array:
        _, chol, _ = self.unpack(outer)
        omega_inverse = small.inverse_from_cholesky(chol)
        return jac.T @ (jac * weights[:, None]) + omega_inverse

    def _exact_derivatives(self, eta: Array, outer: Array, subject: SubjectData,
                           mixed: bool = True):
        """(gradient of c in eta, exact Hessian in eta, and with ``mixed`` the derivative of
        that gradient in ``outer``), forward over forward mode."""
        def gradient_in_eta(x):
            e, o = x[: self.q], (x[self.q:] if mixed else outer)
            return jax.jacfwd(lambda e_: self._conditional(e_, o, subject)[0])(e)

        x = jnp.concatenate([eta, outer]) if mixed else eta
        gradient, second = value_and_jacobian(gradient_in_eta, x)
        return gradient, second[:, : self.q], second[:, self.q:]

    def _newton_parts(self, eta: Array, outer: Array, subject: SubjectData):
        """(c, its gradient in eta, a positive definite Hessian for the step) from one
        forward-over-forward model pass along eta (``foce.conditional_parts``): the exact
        Hessian, shifted by a multiple of the identity where it is not positive definite (far
        from the mode, where a Newton step on an indefinite Hessian would climb) until
        Gershgorin's bound puts every eigenvalue above 1e-6 of its scale. (A Cholesky test
        and that bound; an eigendecomposition of every subject's small matrix costs more on
        the CPU than the model.)"""
        theta, chol, error_z = self.unpack(outer)
        design = jnp.asarray(self.design, dtype=outer.dtype)
        z = lambda e: jnp.concatenate([theta + design @ e, error_z])  # noqa: E731
        (f, f_eta), (_, f_eta_eta) = foce.kept(value_and_jacobian(
            lambda e: value_and_jacobian(
                lambda e_: self.problem.predict(z(e_), subject, _FORWARD), e), eta))
        # each row's -log L depends on its own prediction only: derivatives along all of
        # them at once are every row's own
        (nll, nll_f), (_, nll_ff) = value_and_jacobian(
            lambda a: value_and_jacobian(
                lambda a_: self.problem.neg_log_likelihood_rows(f + a_[0], z(eta), subject), a),
            jnp.zeros(1, outer.dtype))
        value, gradient, hessian = foce.conditional_parts(
            eta, f_eta, f_eta_eta, nll, nll_f[:, 0], nll_ff[:, 0, 0],
            small.inverse_from_cholesky(chol))
        hessian = 0.5 * (hessian + hessian.T)
        lowest, scale = small.gershgorin_bounds(hessian)
        shift = jnp.where(small.positive_definite(hessian), 0.0,
                          jnp.maximum(1e-6 * scale - lowest, 0.0))
        return value, gradient, hessian + shift * jnp.eye(self.q, dtype=hessian.dtype)

    def _search_mode(self, outer: Array, subject: SubjectData, max_iterations: int,
                     tolerance: float, start: Array | None = None):
        """Levenberg-damped Newton with the exact Hessian (made positive definite where it is
        not) from eta = 0, or from the first finite one of the guesses ``start`` (one
        guess, shape (q,), or several, (k, q)): the mode at an optimiser's previous, nearby
        point, extrapolated along its implicit derivative, is within a step or two. (No
        guess is compared with another: evaluating c at each cost more, on 1,000 subjects,
        than the Newton iterations a worse start adds.)
        The loop stops once the remaining Newton step is below ``_ENDGAME`` (1e-5), after
        ``max_iterations``, or when no damped step lowers c any more (round-off at the mode);
        a last undamped Newton step is then taken without evaluating the model again:
        Newton's error after a step of size s is of order s^2, about 1e-10 here, and
        verifying it would cost a whole second-order pass for every subject of the batch.
        (eta_hat, converged), converged when that last step was below ``_ENDGAME`` or
        ``tolerance`` (in units of eta, a test that a gradient test is not when Omega is
        nearly singular). Newton converges quadratically where Gauss-Newton, with large
        residuals, only linearly: in a vmapped batch every subject waits for the slowest,
        and on 1,000 synthetic subjects the slowest needed 16 Gauss-Newton iterations to
        1e-5 against 3 Newton ones to 1e-11."""
        carry = self._mode_search_start(outer, subject, start)
        carry = jax.lax.while_loop(
            lambda c: self._mode_search_continues(c, max_iterations, tolerance),
            lambda c: self._mode_search_step(c, outer, subject), carry)
        return self._mode_search_end(carry, tolerance)

    # the search's pieces, per subject, for ``_search_mode`` and for the batched search of a
    # population fit (``_evaluate_in_process``, which drops the subjects that are done); the
    # carry is (eta, c, its gradient, positive definite Hessian, damping mu, iterations,
    # whether the last step was refused)

    def _mode_search_start(self, outer: Array, subject: SubjectData, start: Array | None):
        eta0 = jnp.zeros(self.q, dtype=outer.dtype)
        if start is not None:
            guesses = jnp.reshape(start, (-1, self.q))
            finite = jnp.all(jnp.isfinite(guesses), axis=1)
            eta0 = jnp.where(jnp.any(finite), guesses[jnp.argmax(finite)], eta0)
        parts = self._newton_parts(eta0, outer, subject)
        # where c cannot be evaluated at the guess (far off, or the model failed there), the
        # first step goes back towards eta = 0, the typical subject, and is taken if c is
        # finite there
        usable = jnp.isfinite(parts[0]) & jnp.all(jnp.isfinite(parts[1])) & jnp.all(
            jnp.isfinite(parts[2]))
        parts = (jnp.where(usable, parts[0], jnp.inf), jnp.where(usable, parts[1], eta0),
                 jnp.where(usable, parts[2], jnp.eye(self.q, dtype=outer.dtype)))
        return (eta0, *parts, jnp.asarray(1e-3, outer.dtype), jnp.asarray(0),
                jnp.asarray(False))

    @staticmethod
    def _mode_search_continues(carry, max_iterations: int, tolerance: float):
        _, _, gradient, hessian, mu, i, refused = carry
        left = jnp.max(jnp.abs(small.solve(hessian, gradient)))  # the Newton step left
        # a refused step within the tolerance is round-off at the mode: stop there
        return ((i < max_iterations) & (mu < 1e8) & ~(left < _ENDGAME)
                & ~(refused & (left < tolerance)))

    def _mode_search_step(self, carry, outer: Array, subject: SubjectData):
        eta, value, gradient, hessian, mu, i, _ = carry
        step = small.solve(hessian + mu * jnp.eye(self.q), gradient)
        # at most one unit of eta (a factor e on a log parameter) per step: a wild trial
        # point makes a stiff solve, and in a vmapped batch every subject waits for it
        candidate = eta - step / jnp.maximum(1.0, jnp.max(jnp.abs(step)))
        parts = self._newton_parts(candidate, outer, subject)
        # steps this small are Newton's quadratic endgame, where c changes by round-off
        # only and cannot tell a better point from a worse one: take them
        endgame = jnp.max(jnp.abs(eta - candidate)) < _ENDGAME
        better = jnp.isfinite(parts[0]) & ((parts[0] <= value) | endgame)
        eta, value, gradient, hessian = jax.tree.map(
            lambda new, old: jnp.where(better, new, old), (candidate, *parts),
            (eta, value, gradient, hessian))
        mu = jnp.where(better, jnp.maximum(mu / 10.0, 1e-12), mu * 10.0)
        return eta, value, gradient, hessian, mu, i + 1, ~better

    @staticmethod
    def _mode_search_end(carry, tolerance: float):
        """(eta_hat, converged): the last Newton step taken unverified where it is below
        ``_ENDGAME``."""
        eta, _, gradient, hessian, _, _, _ = carry
        step = small.solve(hessian, gradient)
        left = jnp.max(jnp.abs(step))
        close = left < _ENDGAME
        return jnp.where(close, eta - step, eta), close | (left < tolerance)

    def conditional_mode(self, outer: Array, subject: SubjectData, max_iterations: int = 100,
                         tolerance: float = 1e-8, start: Array | None = None):
        """(eta_hat, converged) for one subject. The mode is searched for without derivatives
        through the iterations and differentiated in ``outer`` implicitly:
        d eta_hat = -H^-1 (d grad_eta c / d outer), with H the exact Hessian of c at the mode.
        ``start``: a guess of the mode (it changes where the search begins, not its answer)."""
        start = jnp.full(self.q, jnp.nan, outer.dtype) if start is None else start

        @jax.custom_jvp
        def mode(outer_, subject_, start_):
            return self._search_mode(outer_, subject_, max_iterations, tolerance, start_)

        @mode.defjvp
        def mode_jvp(primals, tangents):
            outer_, subject_, start_ = primals
            eta, converged = mode(outer_, subject_, start_)
            _, hessian, mixed = self._exact_derivatives(eta, outer_, subject_)
            d_eta = -small.solve(hessian, mixed @ tangents[0])
            return (eta, converged), (d_eta, np.zeros(converged.shape, jax.dtypes.float0))

        # custom_jvp wants array leaves (records may hold numpy arrays)
        return mode(outer, jax.tree.map(jnp.asarray, subject), jnp.asarray(start))

    def subject_minus_2_log_likelihood(self, outer: Array, subject: SubjectData,
                                       start: Array | None = None):
        """(-2 log L_i with constants, eta_hat, converged) for one subject; ``start``: a
        guess of its conditional mode (``conditional_mode``)."""
        eta, converged = self.conditional_mode(outer, subject, start=start)
        _, chol, _ = self.unpack(outer)
        value, _, jac, weights = self._parts(eta, outer, subject)
        information = self._information(jac, weights, outer)
        log_det_omega = 2.0 * jnp.sum(jnp.log(jnp.diag(chol)))
        log_det_information = small.log_det_spd(information)
        return 2.0 * value + log_det_omega + log_det_information, eta, converged

    def subject_value_and_gradient(self, outer: Array, subject: SubjectData,
                                   start: Array | None = None):
        """(-2 log L_i, its gradient in ``outer``, eta_hat, converged, d eta_hat / d outer)
        for one subject; ``start``: guesses of the mode (``_search_mode``). The gradient is
        written out (``foce.value_and_gradient``) from one model pass at the mode carrying
        (q + 1)(n_fixed + 1) tangents (``_model_jets``) and the observation models'
        derivatives row by row; the mode moves with outer along its implicit derivative.
        The same numbers as differentiating ``subject_minus_2_log_likelihood`` (a test
        compares them)."""
        subject = jax.tree.map(jnp.asarray, subject)
        eta, converged = self._search_mode(outer, subject, 100, 1e-8, start)
        value, gradient, eta, d_eta, *_ = self._value_and_gradient_at_mode(outer, subject, eta)
        return value, gradient, eta, converged, d_eta

    def _value_and_gradient_at_mode(self, outer: Array, subject: SubjectData, eta: Array):
        """(-2 log L_i, its gradient in ``outer``, eta, d eta_hat / d outer, the conditional
        covariance of eta in the linearised model, (the predictions, the variances of their
        normal-scale values under that covariance)) with ``eta`` the subject's conditional
        mode (``subject_value_and_gradient``)."""
        model = self._model_jets(eta, outer, subject)
        rows = self._observation_jets(model.f, outer, subject)
        value, gradient, d_eta, covariance, spread = foce.value_and_gradient(
            eta, model, rows, self._prior_terms(outer), self.n_omega)
        return value, gradient, eta, d_eta, covariance, (model.f, spread)

    def _model_jets(self, eta: Array, outer: Array, subject: SubjectData) -> foce.ModelJets:
        """The predictions at (eta, theta) with their first derivatives and the second ones
        along eta and (eta, theta), from one model pass along eta inside one along theta:
        H = d^2 f / d eta^2 = G D with G = d^2 f / d eta d theta (the unknowns move as
        theta + D eta). The predictions do not depend on Omega or the error parameters, and
        the gradient never needs them twice along theta: (q + 1)(n_fixed + 1) tangents (12
        for fm3) where all second derivatives along (eta, outer) would carry (q + 1)
        (q + p + 1) (27)."""
        design = jnp.asarray(self.design, dtype=outer.dtype)
        theta, _, error_z = self.unpack(outer)

        def along_eta(theta_):
            z = lambda e: jnp.concatenate([theta_ + design @ (eta + e), error_z])  # noqa: E731
            return value_and_jacobian(
                lambda e: self.problem.predict(z(e), subject, _FORWARD), jnp.zeros_like(eta))

        (f, f_eta), (f_theta, f_eta_theta) = foce.kept(value_and_jacobian(along_eta, theta))
        f_eta_eta = jnp.sum(f_eta_theta[..., None] * design, axis=-2)  # G D, elementwise
        return foce.ModelJets(f, f_eta, f_theta, f_eta_theta, f_eta_eta)

    def _observation_jets(self, predicted: Array, outer: Array,
                          subject: SubjectData) -> foce.ObservationJets:
        """Every row's -log L, normal-scale prediction and weight with their derivatives in
        the prediction and the error parameters, to second order (``foce.ObservationJets``):
        one forward pass along (a shift of every prediction, the error parameters) inside
        one along the shift, which gives each row its own derivatives because rows depend on
        their own prediction only."""
        problem = self.problem
        theta, _, error_z = self.unpack(outer)
        mask = jnp.asarray(subject.mask)

        def rows(x):
            shifted = predicted + x[0]
            z = jnp.concatenate([theta, error_z + x[1:]])
            _, linear, variance = problem.linearised(shifted, z, subject)
            return jnp.stack([problem.neg_log_likelihood_rows(shifted, z, subject), linear,
                              jnp.where(mask, 1.0 / variance, 0.0)])

        # first derivatives along all of x, and theirs along the shift only (no second
        # derivative in the error parameters alone is needed)
        x0 = jnp.zeros(1 + error_z.size, outer.dtype)
        (value, first), (_, along_f) = jax.jvp(
            lambda x: value_and_jacobian(rows, x), (x0,), (x0.at[0].set(1.0),))
        return foce.ObservationJets(
            nll=value[0], nll_f=first[0, :, 0], nll_ff=along_f[0, :, 0],
            nll_s=first[0, :, 1:], nll_fs=along_f[0, :, 1:],
            linear_f=first[1, :, 0], linear_ff=along_f[1, :, 0], linear_fs=along_f[1, :, 1:],
            weight=value[2], weight_f=first[2, :, 0], weight_s=first[2, :, 1:])

    def _prior_terms(self, outer: Array) -> foce.PriorTerms:
        """Omega^-1 and log det Omega with their derivatives along ``outer``."""
        def terms(o):
            _, chol, _ = self.unpack(o)
            return small.inverse_from_cholesky(chol), 2.0 * jnp.sum(jnp.log(jnp.diag(chol)))

        (inverse, log_det), (d_inverse, d_log_det) = value_and_jacobian(terms, outer)
        return foce.PriorTerms(inverse, d_inverse, log_det, d_log_det)

    def minus_2_log_likelihood(self, outer: Array, subjects: SubjectData) -> Array:
        """-2 log L of all subjects (stacked ``SubjectData``), every constant included."""
        values, _, _ = jax.vmap(self.subject_minus_2_log_likelihood, in_axes=(None, 0))(
            outer, subjects)
        return jnp.sum(values)

    def conditional_posterior(self, outer: Array, subject: SubjectData):
        """(eta_hat, its Laplace covariance H^-1 with H the exact Hessian of c, converged): the
        subject's individual parameters given its data and the population as prior."""
        eta, converged = self._search_mode(outer, subject, 100, 1e-8)
        _, hessian, _ = self._exact_derivatives(eta, outer, subject, mixed=False)
        return eta, jnp.linalg.inv(0.5 * (hessian + hessian.T)), converged

    def empirical_bayes(self, outer: Array, subjects: SubjectData):
        """Every subject's conditional mode eta_hat and whether its search converged."""
        return jax.vmap(self.conditional_mode, in_axes=(None, 0))(outer, subjects)


@dataclasses.dataclass
class PopulationFit:
    """Estimates, standard errors and likelihood of a population fit.

    ``outer`` and ``covariance`` are on the optimiser's scale (see ``PopulationProblem.names``);
    ``eta`` holds each subject's empirical Bayes estimate (rows in the order of ``subjects``).
    """

    population: PopulationProblem
    subjects: list[str]
    outer: np.ndarray
    covariance: np.ndarray
    minus_2_log_likelihood: float
    n_observations: int
    eta: np.ndarray
    eta_converged: np.ndarray
    gradient_norm: float
    history: np.ndarray
    seconds: float
    message: str = ""

    @property
    def log_likelihood(self) -> float:
        return -0.5 * self.minus_2_log_likelihood

    @property
    def objective_function_value(self) -> float:
        """NONMEM's OFV: -2 log L without N_obs log(2 pi)."""
        return self.minus_2_log_likelihood - self.n_observations * _LOG_2PI

    @property
    def estimates(self) -> dict[str, float]:
        return dict(zip(self.population.names, map(float, self.outer)))

    @property
    def standard_errors(self) -> dict[str, float]:
        return dict(zip(self.population.names,
                        map(float, np.sqrt(np.clip(np.diag(self.covariance), 0.0, None)))))

    def standard_error(self, weights: Sequence[float]) -> float:
        """Standard error of a linear combination ``weights . outer`` of the estimates (for
        example a log rate constant that is a difference of two log parameters)."""
        w = np.asarray(weights, dtype=float)
        return float(np.sqrt(w @ self.covariance @ w))

    def omega(self) -> np.ndarray:
        return np.asarray(self.population.omega(jnp.asarray(self.outer)))

    def random_effect_sds(self) -> dict[str, float]:
        return dict(zip(self.population.random_effects, np.sqrt(np.diag(self.omega()))))

    def individual_estimates(self) -> pd.DataFrame:
        """Each subject's parameters (natural scale) at its empirical Bayes estimate."""
        problem = self.population.problem
        outer = jnp.asarray(self.outer)
        rows = [problem.constrained(self.population.individual(outer, jnp.asarray(e)))
                for e in self.eta]
        return pd.DataFrame({f.name: [float(r[f.name]) for r in rows] for f in problem.free},
                            index=self.subjects)

    def individual_posteriors(self, records: pd.DataFrame) -> IndividualPosteriors:
        """Each subject's Laplace posterior at the fitted population parameters (the
        uncertainty around its empirical Bayes estimate), from the records that were fitted."""
        return individual_posteriors(self.population, records, self.outer, self.subjects)

    def plots(self, records: pd.DataFrame, directory, max_subjects: int = 16) -> list:
        """Observed vs predicted (population and individual), individual fits on a grid and
        residuals, as PNG files in ``directory`` (see ``calibration._plots``)."""
        from ._plots import diagnostic_plots

        outer = jnp.asarray(self.outer)
        individual = jax.vmap(self.population.individual, in_axes=(None, 0))(
            outer, jnp.asarray(self.eta))
        typical = self.population.individual(outer, jnp.zeros(self.population.q))
        return diagnostic_plots(self.population.problem, records, self.subjects,
                                np.asarray(individual), directory, population_z=typical,
                                max_subjects=max_subjects, title="population fit (FOCE)")

    def report(self) -> str:
        converged = int(np.sum(self.eta_converged))
        lines = ["population fit (FOCE with interaction)",
                 f"-2 log-likelihood (all constants) {self.minus_2_log_likelihood:.4f}; "
                 f"log-likelihood {self.log_likelihood:.4f}",
                 f"objective function value (NONMEM convention, without N_obs log 2 pi) "
                 f"{self.objective_function_value:.4f}",
                 f"{self.n_observations} observations, {len(self.subjects)} subjects; "
                 f"{len(self.history)} optimiser steps ({self.message}), gradient norm "
                 f"{self.gradient_norm:.2e}; conditional modes converged for {converged} of "
                 f"{len(self.subjects)} subjects; {self.seconds:.1f} s",
                 f"{'parameter':<48}{'estimate':>14}{'SE':>12}"]
        errors = self.standard_errors
        for name, value in self.estimates.items():
            lines.append(f"{name:<48}{value:>14.6g}{errors[name]:>12.4g}")
        lines.append("random-effect SDs: " + ", ".join(
            f"{r} {s:.4g}" for r, s in self.random_effect_sds().items()))
        individual = self.individual_estimates()
        lines += branch_summary({k: individual[k].to_numpy() for k in individual})
        return "\n".join(lines)


def observed_information(gradients, outer: np.ndarray, gradient: np.ndarray,
                         step: float = 1e-5) -> np.ndarray:
    """Hessian by forward differences of an exact gradient, ``gradient`` at ``outer``:
    ``gradients`` maps a stack of points (rows) to the stack of their gradients (numpy in and
    out). p evaluations where central differences take 2 p; with a step of 1e-5 their error
    (half the step times the third derivative, plus the gradient's round-off over the step)
    is about 1e-5 relative, which a standard error does not notice and a Newton step from
    near the optimum cannot tell from the exact Hessian."""
    steps = step * np.maximum(1.0, np.abs(outer))
    columns = gradients(outer + np.diag(steps))
    hessian = (columns - np.asarray(gradient)[None, :]).T / steps
    return 0.5 * (hessian + hessian.T)


@dataclasses.dataclass
class IndividualPosteriors:
    """Each subject's parameters given its data, with the population as prior (Laplace):
    unknowns z_i = theta + D eta_i with eta_i ~ N(eta_hat_i, C_i)."""

    population: PopulationProblem
    outer: np.ndarray
    subjects: list[str]
    eta: np.ndarray
    covariance: np.ndarray
    converged: np.ndarray

    def _moments(self, name: str):
        problem = self.population.problem
        index = [f.name for f in problem.free].index(name)
        row = np.asarray(self.population.design)[index]
        mean = self.outer[index] + self.eta @ row
        sd = np.sqrt(np.einsum("j,ijk,k->i", row, self.covariance, row))
        return problem.free[index].transform, mean, sd

    def intervals(self, level: float = 0.9) -> pd.DataFrame:
        """Per subject and free parameter: the estimate (natural scale) and a ``level``
        interval, formed on the unconstrained scale and transformed (transforms are
        monotone, so positivity and bounds hold)."""
        import scipy.stats

        z = scipy.stats.norm.ppf(0.5 + level / 2)
        table = {}
        for free in self.population.problem.free:
            transform, mean, sd = self._moments(free.name)
            for label, value in (("", mean), (".lower", mean - z * sd), (".upper", mean + z * sd)):
                table[free.name + label] = np.asarray(transform.forward(jnp.asarray(value)))
        return pd.DataFrame(table, index=self.subjects)

    def samples(self, subject: str, n: int = 1000, seed: int = 0) -> dict[str, np.ndarray]:
        """Laplace samples of one subject's free parameters (natural scale)."""
        i = self.subjects.index(subject)
        rng = np.random.default_rng(seed)
        eta = rng.multivariate_normal(self.eta[i], self.covariance[i], size=n)
        z = jax.vmap(self.population.individual, in_axes=(None, 0))(
            jnp.asarray(self.outer), jnp.asarray(eta))
        natural = jax.vmap(self.population.problem.constrained)(z)
        return {f.name: np.asarray(natural[f.name]) for f in self.population.problem.free}


def individual_posteriors(population: PopulationProblem, records: pd.DataFrame, outer: Array,
                          subjects: list[str] | None = None) -> IndividualPosteriors:
    """Every subject's conditional (Laplace) posterior at population parameters ``outer``:
    a fit's estimates, or known values in a recovery study."""
    subjects = subject_ids(records) if subjects is None else list(subjects)
    batch = _batch(population, records, subjects)
    eta, covariance, converged = _posteriors(population, batch, jnp.asarray(outer, dtype=float))
    return IndividualPosteriors(population, np.asarray(outer, dtype=float), subjects,
                                np.asarray(eta), np.asarray(covariance), np.asarray(converged))


@eqx.filter_jit
def _posteriors(population: PopulationProblem, batch: SubjectData, outer: Array):
    return jax.vmap(population.conditional_posterior, in_axes=(None, 0))(outer, batch)


def _batch(population: PopulationProblem, records: pd.DataFrame, subjects: list[str]):
    problem = population.problem
    # one transfer of the whole tree (0.5 ms on 1,000 subjects; 0.9 ms array by array)
    return jax.device_put(read_subjects(
        records, subjects, problem.observed, problem.dose_units,
        problem.minutes_per_time_unit))


def population_minus_2_log_likelihood(population: PopulationProblem, records: pd.DataFrame,
                                      outer: Array, subjects: list[str] | None = None, *,
                                      gradient: bool = False):
    """-2 log L (FOCE, all constants) of ``records`` at the outer vector ``outer`` (see
    ``PopulationProblem.pack``), and its gradient with ``gradient=True``. Evaluating the
    objective at published estimates tests it apart from any optimiser."""
    subjects = subject_ids(records) if subjects is None else list(subjects)
    batch = _batch(population, records, subjects)
    rows = (0, len(subjects), len(subjects))
    value, grad, *_ = _evaluator(population, batch, rows, False)(
        jnp.asarray(outer, dtype=float), None)
    return (float(value), np.asarray(grad)) if gradient else float(value)


def fit_population(population: PopulationProblem, records: pd.DataFrame,
                   subjects: list[str] | None = None, *, start: Array | None = None,
                   steps: int = 200, tolerance: float = 1e-6, optimizer: str = "auto",
                   distributed: bool = False, progress: bool | None = None
                   ) -> PopulationFit:
    """FOCE maximum likelihood of ``records`` (every subject, or ``subjects``).

    One compiled program evaluates -2 log L, its exact gradient (forward mode, the conditional
    modes differentiated implicitly), the outer-product approximation of its Hessian and the
    empirical Bayes estimates; an optimiser drives it from Python until the gradient's
    largest entry is below ``tolerance``:

    - ``optimizer="outer_product"``: Levenberg-Marquardt steps with the outer products of the
      subjects' gradients as Hessian (``_outer_product_newton``), handing over to L-BFGS-B if
      that approximation stops serving. Nearly Newton's steps when subjects are many. From
      the default start, one expectation-maximisation step comes first
      (``_expectation_maximisation_start``: the fixed effects, Omega and the error
      parameters from the subjects' conditional distributions at the guess). On 1,000
      synthetic Theoph-like subjects 7 evaluations (the guess, that step and 5
      outer-product steps) bring the fit close enough for Newton steps with the observed
      information, where L-BFGS-B takes 22;
    - ``optimizer="lbfgs"``: L-BFGS-B (scipy) alone. (Optax's L-BFGS inlines the objective
      at each call site of its line search, and each copy of this program takes about a
      minute to compile);
    - ``"auto"`` (default): the outer products where there are at least
      ``_OUTER_PRODUCT_SUBJECTS_PER_UNKNOWN`` (5) subjects per outer unknown, else L-BFGS-B
      (Theoph's 12 subjects are too few for fm3's 6 unknowns). ``PopulationFit.message``
      says which ran.

    Standard errors come from the observed information: the Hessian of -log L, by forward
    differences of the exact gradient, where the optimiser stops; one to four Newton steps
    with it end every fit.

    ``distributed=True`` splits the subjects over MPI ranks in contiguous blocks: each rank
    evaluates its own subjects and ``vht.distributed.sum_over_ranks`` adds the objectives and
    gradients inside the compiled program, so every rank takes the same optimiser steps.
    ``start``: the outer vector to start from (default ``population.initial()``).
    ``progress``: a progress bar of optimiser steps with the current -2 log L on stderr (rank
    0 only); by default shown when stderr is a terminal.
    """
    import scipy.optimize
    from tqdm.auto import tqdm

    if optimizer not in ("auto", "outer_product", "lbfgs"):
        raise ValueError(f"optimizer must be 'auto', 'outer_product' or 'lbfgs', not "
                         f"{optimizer!r}")
    subjects = subject_ids(records) if subjects is None else list(subjects)
    if distributed:
        size, rank = vht.distributed.world_size(), vht.distributed.rank()
        if len(subjects) < size:
            raise ValueError(f"{len(subjects)} subjects cannot be split over {size} ranks")
        bounds = np.linspace(0, len(subjects), size + 1).round().astype(int)
        mine = slice(int(bounds[rank]), int(bounds[rank + 1]))
    else:
        mine = slice(0, len(subjects))
    batch = _batch(population, records, subjects[mine])
    rows = (mine.start, mine.stop, len(subjects))

    # each evaluation's search for the conditional modes starts from the last evaluation's
    # modes moved to the new point along their implicit derivatives (an optimiser's steps are
    # near each other, and that extrapolation errs by the square of the step: no Newton
    # iteration or one, instead of three); modes and derivatives stay on the device
    evaluate_one = _evaluator(population, batch, rows, distributed)
    last = {"previous": None}
    evaluated: dict[bytes, tuple] = {}  # scipy's answer is a point it has evaluated

    def evaluate(outer, expectation=False):
        outer = np.asarray(outer, dtype=float)
        if expectation or outer.tobytes() not in evaluated:
            # numpy in (the compiled program's call transfers it, cheaper than an eager
            # jnp.asarray) and out (one transfer for the results read here)
            value, gradient, products, eta, converged, moments, error, modes = evaluate_one(
                outer, last["previous"], True, expectation)
            value, gradient, products, moments, error = jax.device_get(
                (value, gradient, products, moments, error))
            evaluated[outer.tobytes()] = (
                (float(value), gradient, products, eta, converged, (*moments, error)),
                (outer, *modes))
        result, previous = evaluated[outer.tobytes()]
        if np.isfinite(result[0]):
            last["previous"] = previous
        # (value, gradient, outer products, eta_hat, converged,
        #  (sum of eta_hat, sum of eta_hat eta_hat' + P, error parameters))
        return result

    def value_and_gradient(x):
        value, gradient, *_ = evaluate(x)
        value, gradient = float(value), np.asarray(gradient, dtype=float)
        if not np.isfinite(value):  # a failed solve: tell the line search to step back
            return np.inf, np.zeros_like(gradient)
        return value, gradient

    outer0 = np.asarray(_initial(population) if start is None else start, dtype=float)
    history: list[float] = []

    if progress is None:
        progress = sys.stderr.isatty()
    bar = tqdm(total=steps, desc="FOCE optimiser steps", unit="step",
               disable=not progress or vht.distributed.rank() != 0)

    def on_step(value):
        history.append(float(value))
        bar.update(1)
        bar.set_postfix_str(f"-2 log L {history[-1]:.4f}")

    def lbfgs(x, message):
        result = scipy.optimize.minimize(
            value_and_gradient, x, jac=True, method="L-BFGS-B",
            callback=lambda intermediate_result: on_step(intermediate_result.fun),
            options={"maxiter": max(steps - len(history), 1), "gtol": tolerance,
                     "ftol": 1e-14, "maxcor": 20})
        return np.asarray(result.x), (message + "; then " if message else "") + (
            f"L-BFGS-B: {result.message}")

    def information_and_newton(x):
        """The observed information at x and Newton steps with it: one always (the
        optimisers stop at a small gradient, not at the optimum, and one step takes the rest
        away, so fits that differ only in rounding, on one process or several ranks, agree),
        more while the gradient's largest entry is above ``tolerance``, each taken only if
        -2 log L does not rise."""
        value, gradient, *_ = evaluate(x)
        # all p points dispatched before any result is read (no wait between them), each
        # with the modes at x moved along their implicit derivatives and not searched
        # further: they err by the square of the difference step, so the column of the
        # information errs by the order of the step, as forward differences do anyway
        # (on 1,000 synthetic subjects the information moved by 2e-7 relative and the
        # standard errors by 3e-8 against searching every mode afresh, which made these six
        # evaluations about 1.6 times as long)
        search = not np.isfinite(value)  # then ``previous`` is not x's
        hessian = observed_information(
            lambda xs: np.stack(jax.device_get([
                evaluate_one(z, last["previous"], search)[1] for z in xs])),
            x, gradient)
        for k in range(_NEWTON_STEPS):
            if k and np.max(np.abs(gradient)) < tolerance:
                break
            candidate = x - np.linalg.lstsq(hessian, gradient, rcond=None)[0]
            new_value, new_gradient, *_ = evaluate(candidate)
            if not (np.isfinite(new_value) and new_value <= value + 1e-9 * abs(value)):
                break
            x, value, gradient = candidate, new_value, new_gradient
            on_step(value)
        return x, hessian

    started = time.perf_counter()
    outer, status, message = outer0, "stopped", ""
    if optimizer == "outer_product" or (
            optimizer == "auto"
            and len(subjects) >= _OUTER_PRODUCT_SUBJECTS_PER_UNKNOWN * outer0.size):
        if start is None:
            outer = _expectation_maximisation_start(population, evaluate, outer0,
                                                    len(subjects))
            if outer is not outer0:
                on_step(evaluate(outer)[0])
                message = "one expectation-maximisation step, then "
        outer, status, products_message = _outer_product_newton(
            lambda x: evaluate(x)[:3], outer, steps, tolerance, on_step)
        message += products_message
    if status == "stopped":
        outer, message = lbfgs(outer, message)
    outer, hessian = information_and_newton(outer)
    if status == "close" and np.max(np.abs(evaluate(outer)[1])) >= tolerance:
        # Newton did not finish from where the outer products handed over: L-BFGS-B does
        outer, message = lbfgs(outer, message)
        outer, hessian = information_and_newton(outer)
    elif status == "close":
        message += ", then Newton with the observed information"
    bar.close()
    covariance = np.linalg.pinv(0.5 * hessian, hermitian=True)  # of -log L
    value, gradient, _, eta, converged, _ = evaluate(outer)
    eta, converged = np.asarray(eta), np.asarray(converged)
    seconds = time.perf_counter() - started
    n_obs = int(np.sum(np.asarray(batch.mask)))
    if distributed:
        n_obs = int(vht.distributed.sum_over_ranks(np.asarray(n_obs, dtype=np.int64)))
    return PopulationFit(population, subjects, outer, covariance, float(value), n_obs, eta,
                         converged.astype(bool), float(np.linalg.norm(gradient)),
                         np.asarray(history), seconds, message)


# ``PopulationProblem.initial`` compiled: about twenty eager operations cost 2 ms a fit, the
# compiled call 0.15 ms
_initial = eqx.filter_jit(PopulationProblem.initial)


def _expectation_maximisation_start(population: PopulationProblem, evaluate,
                                    outer: np.ndarray, n_subjects: int) -> np.ndarray:
    """The default start moved by one expectation-maximisation step, or ``outer`` itself
    where that does not lower -2 log L. The default start is a guess (the twin's parameter
    values, random-effect SDs of 0.3); with the conditional distributions of every
    subject's eta at it (the modes eta_i and the linearised covariances P_i, which each
    evaluation returns summed), the step sets

        theta    <- theta + D m,                            m = mean_i eta_i
        Omega    <- mean_i (eta_i eta_i' + P_i) - m m'      (its diagonal if diagonal)
        s        <- argmin of the expected -log p(y | eta)  (``_expected_error_parameters``)

    (the first moves the subjects' means to the fixed effects, leaving every subject's
    unknowns theta + D eta_i where they were; the second and third are the M-step of EM for
    Omega and the error parameters given those distributions, the first evaluation's
    program computing the third). Outer-product steps far from the optimum are short (they
    overstate the curvature), and this step takes the random-effect and residual SDs most of
    the way at once. On nine synthetic Theoph-like data sets of 40 to 1,000 subjects the
    fits took 183 evaluations in all with it (this one included) against 246 from the guess
    (1,000 subjects: 15 against 20; 200: 15 against 21); with proportional, combined and
    log-normal errors (100 and 400 subjects) 106 against 111, at the same optima. On
    Theoph's 12 subjects (L-BFGS-B) it saved none, and it is not taken there.
    ``evaluate(x, expectation) -> (value, gradient, products, eta, converged, (sum of eta_i,
    sum of eta_i eta_i' + P_i, error parameters))``."""
    value, *_, (first, second, error) = evaluate(outer, expectation=True)
    if not np.isfinite(value):
        return outer
    # numpy in: filter_jit traces numpy arrays as it does JAX arrays, without the eager
    # conversions (0.5 ms for these five)
    candidate = np.asarray(_expectation_maximisation_step(
        population, outer, first, second, np.asarray(float(n_subjects)), error))
    if not np.all(np.isfinite(candidate)):
        return outer
    new_value = evaluate(candidate)[0]
    return candidate if np.isfinite(new_value) and new_value < value else outer


@eqx.filter_jit
def _expectation_maximisation_step(population: PopulationProblem, outer: Array, first: Array,
                                   second: Array, n_subjects: Array, error: Array) -> Array:
    """``_expectation_maximisation_start``'s step from the sums over subjects of eta_i
    (``first``) and of eta_i eta_i' + P_i (``second``), with error parameters ``error``."""
    mean = first / n_subjects
    omega = second / n_subjects - jnp.outer(mean, mean)
    if population.covariance == "diagonal":
        omega = jnp.diag(jnp.diag(omega))
    theta, _, _ = population.unpack(outer)
    return population.pack(theta + jnp.asarray(population.design) @ mean, omega, error)


# the outer-product phase needs this many subjects per outer unknown: their sum of rank-one
# terms must be well conditioned (Theoph's 12 subjects for fm3's 6 unknowns are too few)
_OUTER_PRODUCT_SUBJECTS_PER_UNKNOWN = 5
# where the outer products predict less than this decrease of -2 log L, Newton steps with the
# observed information (computed for the standard errors anyway) finish the fit. The
# information is computed there, not at the optimum, and the standard errors err by about
# the distance between the two in standard errors (a decrease d left is sqrt(d) of them).
# Against the information at the optimum (central differences), on four synthetic data sets
# of 60 to 1,000 subjects from the expectation-maximisation start: 3e-5 gives standard
# errors within 2.9e-4 relative; 1e-4 (measured before the start moved the error
# parameters too) one evaluation fewer on 1,000 subjects but 7.2e-4 on one set of 60, 1e-5
# one more on 60
_CLOSE = 3e-5
# refused steps of unit scale in a row, each retried with ten times the damping (at least
# 1e-2), before L-BFGS-B takes over. On nine synthetic data sets of 40 to 1,000 subjects,
# three of the five with 40 (a rough Hessian from the outer products) handed over at their
# first refusal and took 33-34 evaluations; with the retries none did (25, 34, 28), and the
# nine fits took 205 evaluations in all against 219 (measured when the start moved theta and
# Omega only)
_REFUSALS = 3
# Newton steps with the observed information at most, after the optimiser
_NEWTON_STEPS = 4


def _outer_product_newton(evaluate, x: np.ndarray, steps: int, tolerance: float, on_step):
    """Minimise -2 log L by Levenberg-Marquardt steps with the outer-product (BHHH; Berndt,
    Hall, Hall and Hausman 1974) approximation of its Hessian, B = sum_i g_i g_i' / 2, which
    each evaluation returns beside the gradient: for many subjects of a well-specified model
    it approaches the information, so steps are nearly Newton's without second derivatives of
    the marginal objective. Far from the optimum it overstates the curvature several-fold
    (the subjects' gradients are large and alike), so each step is scaled by the curvature
    the last one met along itself (s'Bs / s'y, the secant, clipped to [1/2, 16]) and is at
    most one unit in every coordinate. ``evaluate(x) -> (value, gradient, B)``.

    Returns (x, status, message) with status ``"converged"`` (the gradient's largest entry
    below ``tolerance``), ``"close"`` (B predicts less than ``_CLOSE`` of decrease left:
    near the optimum its steps converge only linearly, as fast as B matches the Hessian,
    where Newton's with the observed information converge quadratically) or ``"stopped"``
    (after ``steps``, or after ``_REFUSALS`` + 1 refused steps of unit scale in a row, each
    retried with more damping, where the approximation no longer serves: L-BFGS-B goes on
    from there). On 1,000 synthetic Theoph-like subjects, from the expectation-maximisation
    start, it is close after 5 steps (6 evaluations)."""
    value, gradient, product = evaluate(x)
    mu, scale, taken, refused = 1e-3, 1.0, 0, 0
    while taken < steps and np.isfinite(value):
        if np.max(np.abs(gradient)) < tolerance:
            return x, "converged", f"outer-product Newton: converged in {taken} steps"
        if 0.5 * gradient @ np.linalg.lstsq(product, gradient, rcond=None)[0] < _CLOSE:
            return x, "close", f"outer-product Newton: {taken} steps"
        damped = product + mu * np.diag(np.diag(product))
        step = scale * np.linalg.lstsq(damped, gradient, rcond=None)[0]
        step /= max(1.0, float(np.max(np.abs(step))))
        new_value, new_gradient, new_product = evaluate(x - step)
        # close to the optimum a step changes -2 log L by less than its round-off (a sum
        # over subjects): such a step is taken, as a Newton step would be
        if np.isfinite(new_value) and new_value <= value + 1e-12 * abs(value):
            met = -step @ (new_gradient - gradient)  # curvature met along the step ...
            expected = step @ product @ step  # ... and the outer products' of it
            scale = float(np.clip(expected / met, 0.5, 16.0)) if met > 0 else 4.0
            x, value, gradient, product = x - step, new_value, new_gradient, new_product
            mu = max(mu / 10.0, 1e-8)
            taken += 1
            refused = 0
            on_step(value)
        elif scale > 1.0:  # the longer step overshot: back towards the approximation's own
            scale = max(1.0, scale / 4.0)
        elif refused < _REFUSALS:  # Levenberg-Marquardt: a shorter step, nearer the gradient
            mu = max(mu * 10.0, 1e-2)
            refused += 1
        else:
            break
    return x, "stopped", f"outer-product Newton: {taken} steps, stopped unconverged"


def _evaluate_in_process(population: PopulationProblem, batch: SubjectData, outer: Array,
                        rows: tuple[int, int, int], previous, search, expectation, combine):
    """(-2 log L, its gradient, the outer-product approximation of its Hessian, every
    subject's eta_hat, converged flags, the sums of the conditional moments of eta (first
    and second), (eta_hat, d eta_hat / d outer) of this process's subjects) of this
    process's subjects ``rows[0]:rows[1]`` of ``rows[2]``, each subject's
    row of the fourth and fifth filled by the process that owns it (the others stay 0, for a
    sum over ranks). ``previous``: (outer vector, eta_hat, d eta_hat / d outer) of an earlier
    evaluation; each mode search starts from that eta_hat moved to ``outer`` along its
    derivative (or from the eta_hat itself where that is not finite). ``search`` (a traced
    bool): False takes the moved modes as they are, without a search (for points a
    difference step away from ``previous``'s, where they err by the step's square;
    ``fit_population``'s observed information). ``expectation`` (a traced bool): True adds
    the error parameters of ``_expected_error_parameters`` (else they are returned as they
    are), after the other results; ``combine`` sums over MPI ranks."""
    first, last, n_subjects = rows
    earlier, eta_before, slopes_before = previous
    moved = eta_before + jnp.sum(slopes_before * (outer - earlier), axis=-1)
    start = jnp.stack([moved, eta_before], axis=1)
    eta, converged = jax.lax.cond(
        search, lambda: _batched_mode_search(population, batch, outer, start),
        lambda: (moved, jnp.all(jnp.isfinite(moved), axis=1)))
    values, gradients, eta, slopes, covariances, (fitted, spread) = jax.vmap(
        population._value_and_gradient_at_mode, in_axes=(None, 0, 0))(outer, batch, eta)
    everyone = jnp.zeros((n_subjects, population.q), outer.dtype).at[first:last].set(eta)
    converged = jnp.zeros(n_subjects, outer.dtype).at[first:last].set(converged)
    # sum_i g_i g_i' / 2 with g_i the gradient of -2 log L_i: the outer-product (BHHH)
    # approximation of the Hessian of -2 log L (the score of log L_i is -g_i / 2)
    outer_products = 0.5 * gradients.T @ gradients
    # the sums over subjects of E[eta_i] and E[eta_i eta_i'] under their conditional
    # distributions (linearised at the modes), for ``_expectation_maximisation_step``
    moments = (jnp.sum(eta, axis=0),
               jnp.sum(eta[:, :, None] * eta[:, None, :] + covariances, axis=0))
    error = jax.lax.cond(
        expectation,
        lambda: _expected_error_parameters(population, batch, outer, eta, fitted, spread,
                                           combine),
        lambda: population.unpack(outer)[2])
    return (jnp.sum(values), jnp.sum(gradients, axis=0), outer_products, everyone, converged,
            moments, error, (eta, slopes))


def _expected_error_parameters(population: PopulationProblem, batch: SubjectData,
                               outer: Array, eta: Array, fitted: Array, spread: Array, combine,
                               iterations: int = 16) -> Array:
    """The error-model parameters s that minimise the expected -log p(y | eta) over the
    subjects' conditional distributions of eta, in the model linearised at their modes (the
    M-step of expectation-maximisation for s, ``_expectation_maximisation_start``): on the
    normal scale of each row (``Problem.linearised``: observation y_j, prediction g_j at the
    mode, variance V_j(s)) and with u_j = J_j' P J_j the variance of g_j under the
    conditional distribution,

        Q(s) = sum_ij [log V_j(s) + ((y_j - g_j)^2 + u_j) / V_j(s)] / 2.

    For an additive error the minimum is V = mean((y - g)^2 + u) (a test checks it); for any
    error model it is found by Newton steps on s until a step is below 1e-10, at most
    ``iterations`` (the Hessian's eigenvalues taken by magnitude, so each step goes
    downhill; at most one unit per coordinate; from below the minimum a step of a log SD
    covers at most 1/2), with sums over MPI ranks by ``combine``. Rows whose variance is
    not positive at the current s (a proportional error on a prediction of 0) are left out.
    Returns the current s where the result is not finite."""
    theta, _, current = population.unpack(outer)
    design = jnp.asarray(population.design, dtype=outer.dtype)

    def expected(s):
        def subject_q(subject, eta_i, f, u):
            z = jnp.concatenate([theta + design @ eta_i, s])
            y, g, variance = population.problem.linearised(f, z, subject)
            use = jnp.asarray(subject.mask) & (variance > 0)
            safe = jnp.where(use, variance, 1.0)
            return 0.5 * jnp.sum(jnp.where(use, jnp.log(safe) + ((y - g) ** 2 + u) / safe, 0.0))

        return jnp.sum(jax.vmap(subject_q, in_axes=(0, 0, 0, 0))(batch, eta, fitted, spread))

    def newton(carry):
        k, s, _ = carry
        gradient, hessian = value_and_jacobian(jax.jacfwd(expected), s)
        gradient, hessian = combine(gradient), combine(hessian)
        values, vectors = jnp.linalg.eigh(0.5 * (hessian + hessian.T))
        values = jnp.maximum(jnp.abs(values), 1e-12 * jnp.max(jnp.abs(values)))
        step = vectors @ ((vectors.T @ gradient) / values)
        step = step / jnp.maximum(1.0, jnp.max(jnp.abs(step)))
        return k + 1, s - step, jnp.max(jnp.abs(step))

    # until the step is below 1e-10 (the same on every rank: the sums are)
    _, found, _ = jax.lax.while_loop(
        lambda carry: (carry[0] < iterations) & (carry[2] > 1e-10), newton,
        (0, current, jnp.asarray(jnp.inf, current.dtype)))
    return jnp.where(jnp.all(jnp.isfinite(found)), found, current)


def _batched_mode_search(population: PopulationProblem, batch: SubjectData, outer: Array,
                         start: Array):
    """Every subject's (eta_hat, converged) as ``PopulationProblem._search_mode`` finds them,
    with the subjects that are done dropped from the loop as it goes
    (``calibration._compaction``): all take ``_SEARCH_FIRST`` iterations together, then those
    still searching go on a quarter of the batch at a time. Over a fit on 1,000 synthetic
    subjects most evaluations need one or two Newton iterations for most subjects but a few
    more for a few (the first, from eta = 0, 12 for 9 subjects and 4 or fewer for 825), and a
    plain vmapped loop iterates the whole batch until its slowest subject is done."""
    batch = jax.tree.map(jnp.asarray, batch)
    carry = jax.vmap(population._mode_search_start, in_axes=(None, 0, 0))(outer, batch, start)
    lanes = start.shape[0]
    carry = compacted_while_loop(
        lambda c, s: population._mode_search_continues(c, 100, 1e-8),
        lambda c, s: population._mode_search_step(c, outer, s), carry, batch,
        first=_SEARCH_FIRST, capacity=max(1, lanes // 4), chunk=_SEARCH_FIRST)
    return jax.vmap(lambda c: population._mode_search_end(c, 1e-8))(carry)


# Newton iterations of every subject before the batched mode search drops those that are done
_SEARCH_FIRST = 2


def _evaluator(population: PopulationProblem, batch: SubjectData, rows: tuple[int, int, int],
               distributed: bool):
    """A function ``(outer, previous, search=True, expectation=False) -> (-2 log L,
    gradient, outer products, eta_hat, converged, conditional moments of eta, error
    parameters, (own eta_hat, own d eta_hat / d outer))`` of one compiled program
    (``_evaluate_in_process``), the first six summed over MPI ranks when ``distributed``;
    ``previous``: (outer, own eta_hat, own d eta_hat / d outer) of an earlier evaluation to
    start the mode searches from, or None (from eta = 0); ``search=False`` takes the modes
    of ``previous`` moved to ``outer`` without searching; ``expectation=True`` returns the
    error parameters of ``_expected_error_parameters`` (else those of ``outer``).
    The population and the data are split into arrays, passed on each call, and the rest,
    which keys a module-level cache of compiled programs, so refits with new data of the
    same shapes reuse the program; equinox's ``filter_jit`` would split them again at every
    call, which on Theoph costs as much as the evaluation itself (0.5 ms)."""
    arrays, static = eqx.partition((population, batch), eqx.is_array)
    leaves, arrays_def = jax.tree.flatten(arrays)
    static_leaves, static_def = jax.tree.flatten(static)
    key = (static_def, tuple(static_leaves), arrays_def, rows, distributed)
    try:
        program = _PROGRAMS.get(key)
    except TypeError:  # a static part that cannot be hashed: compile for this fit only
        key, program = None, None
    if program is None:
        combine = vht.distributed.sum_over_ranks if distributed else (lambda x: x)

        def evaluate(leaves_, outer, previous, search, expectation):
            population_, batch_ = eqx.combine(jax.tree.unflatten(arrays_def, leaves_), static)
            *summed, error, own = _evaluate_in_process(population_, batch_, outer, rows,
                                                       previous, search, expectation, combine)
            return (*jax.tree.map(combine, summed), error, own)

        program = jax.jit(evaluate, compiler_options=_compiler_options())
        if key is not None:
            if len(_PROGRAMS) >= 32:  # each holds a compiled program: forget the oldest
                _PROGRAMS.pop(next(iter(_PROGRAMS)))
            _PROGRAMS[key] = program
    own = (rows[1] - rows[0], population.q)

    def call(outer, previous, search=True, expectation=False):
        if previous is None:  # from eta = 0
            p = outer.shape[0]
            previous = (outer, np.zeros(own, outer.dtype), np.zeros(own + (p,), outer.dtype))
        return program(leaves, outer, previous, search, expectation)

    return call


_PROGRAMS: dict = {}


def _compiler_options() -> dict[str, str] | None:
    """XLA options of the evaluator's program on the CPU, measured on 1,000 subjects (a
    warm fit 0.29 s without them, 0.16 s with both):

    - keep ``jax.lax.optimization_barrier`` (``foce.kept``) through to code generation.
      The CPU pipeline's ``cse_barrier_expander`` removes barriers before fusion; XLA then
      fuses the model's derivatives into each consumer and recomputes them there;
    - no YNNPACK fusions: their float64 reductions over the few rows of a subject were the
      slowest operations of the program."""
    if jax.default_backend() != "cpu":
        return None
    return {"xla_disable_hlo_passes": "cse_barrier_expander",
            "xla_cpu_experimental_ynn_fusion_type": ""}
