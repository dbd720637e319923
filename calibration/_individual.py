"""Individual fits: one patient's parameters by maximum a posteriori (or likelihood), from
several starts at once, with Laplace uncertainty and identifiability diagnostics.

All starts run in one compiled program (``jax.vmap`` over starting points, ``lax.scan`` over
optimiser steps), with gradients through diffrax. The best start wins; the report says how
many starts reached the same objective, the final gradient norm, and which parameters the
data cannot determine.

Uncertainty (Laplace): the Hessian H of the objective at the optimum, in the unconstrained
space, approximates the posterior precision. Its inverse, mapped to the natural scale by the
transforms' derivatives (delta method), gives standard errors; 95 % intervals are formed on the
unconstrained scale and transformed (so they respect positivity and bounds); posterior samples
are drawn from N(z*, H^-1) and transformed.

Identifiability (Fisher information): eigenvalues of H below ``1e-8`` times the largest mark
directions the data do not inform; a parameter whose weight in such a direction exceeds 0.3
is flagged. ``profile`` re-optimises the others over a grid of one parameter's values: a flat
profile confirms the flag.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from pathlib import Path

import diffrax
import jax
import jax.numpy as jnp
import numpy as np
import optax
from jaxtyping import Array

import vht

from ._branch import branch_summary
from ._forward import forward_gradient, newton
from ._problem import Problem
from ._records import SubjectData

Z95 = 1.959963984540054

# up to this many unknowns, gradients come from forward mode (one solve with a tangent per
# unknown, ``_forward``); beyond it, from diffrax's checkpointed reverse mode
FORWARD_MODE_UNKNOWNS = 16


def objective_of(problem: Problem, subject: SubjectData, map_estimate: bool = True):
    """The subject's objective ``z -> problem.objective(z, subject)`` for optimisers: its
    gradient by forward mode for problems with up to ``FORWARD_MODE_UNKNOWNS`` unknowns
    (measured on Theoph's four with L-BFGS: cohort and loop fits about twice as fast as with
    the checkpointed adjoint, 6.3 -> 3.4 s and 5.2 -> 2.3 s), by reverse mode beyond."""
    if problem.size <= FORWARD_MODE_UNKNOWNS:
        forward = diffrax.ForwardMode()
        objective = forward_gradient(
            lambda z: problem.objective(z, subject, map_estimate, forward))
        # clocked twins (a UVA/Padova day: 1,440 segments) stay on L-BFGS under "auto": there
        # a four-step validation fit with Newton predicted worse (RMSE 22.5 against 10.9
        # mg/dL), and Newton's n^2 tangents through every segment are not yet measured
        objective.newton_by_default = problem.twin.sample_period() is None
        return objective
    return lambda z: problem.objective(z, subject, map_estimate)


OPTIMIZERS = ("auto", "newton", "lbfgs", "adam")
GRADIENT_TOLERANCE = 1e-6  # optimisers stop once the gradient norm is below it


def _optimiser(name: str, learning_rate: float):
    if name == "lbfgs":
        return optax.lbfgs()
    if name == "adam":
        return optax.adam(learning_rate)
    raise ValueError(f"optimizer must be one of {OPTIMIZERS}, not {name!r}")


def minimise(objective, starts: Array, *, optimizer: str = "auto", steps: int = 100,
             learning_rate: float = 0.05, tolerance: float = GRADIENT_TOLERANCE):
    """Minimise ``objective(z)`` from every row of ``starts`` in one compiled program.

    ``optimizer``: ``"newton"`` (damped Newton with exact forward-mode Hessians,
    ``calibration._forward.newton``), optax's ``"lbfgs"`` (zoom line search) or ``"adam"``
    (``learning_rate``); ``"auto"`` takes Newton for an objective from ``objective_of`` with
    forward-mode derivatives (few unknowns: about six times faster than L-BFGS on Theoph, the
    same optimum) of a twin without a clock, and L-BFGS otherwise.

    Each start stops once the norm of its gradient falls below ``tolerance`` (or after
    ``steps`` steps). Returns (final z per start, final objective per start, objective history
    per start, NaN after the start stopped).
    """
    return jax.jit(lambda s: minimise_traced(objective, s, optimizer=optimizer, steps=steps,
                                             learning_rate=learning_rate,
                                             tolerance=tolerance))(starts)


def resolved_optimizer(objective, optimizer: str) -> str:
    """The optimiser ``"auto"`` stands for with this objective (see ``minimise``)."""
    if optimizer == "auto":
        return "newton" if getattr(objective, "newton_by_default", False) else "lbfgs"
    return optimizer


def twice_differentiable(objective):
    """The form of ``objective`` that Newton differentiates twice in forward mode."""
    return getattr(objective, "forward_mode", None) or objective


def minimise_traced(objective, starts: Array, *, optimizer: str = "auto", steps: int = 100,
                    learning_rate: float = 0.05, tolerance: float = GRADIENT_TOLERANCE):
    """``minimise`` without its own ``jit``, to run inside a larger traced program (a cohort
    vmapped over subjects)."""
    optimizer = resolved_optimizer(objective, optimizer)
    if optimizer == "newton":
        return jax.vmap(lambda z0: newton(twice_differentiable(objective), z0, steps=steps,
                                          tolerance=tolerance))(starts)
    opt = _optimiser(optimizer, learning_rate)
    value_and_grad = optax.value_and_grad_from_state(objective) if optimizer == "lbfgs" else (
        jax.value_and_grad(objective))

    def run(z0):
        # a while loop, not a scan of fixed length: past convergence, L-BFGS's line search
        # finds no decrease and spends its whole budget of evaluations on every step
        def keep_going(carry):
            _, _, i, _, gradient_norm = carry
            return (i < steps) & (gradient_norm >= tolerance)

        def step(carry):
            z, state, i, history, _ = carry
            if optimizer == "lbfgs":
                value, grad = value_and_grad(z, state=state)
                updates, state = opt.update(grad, state, z, value=value, grad=grad,
                                            value_fn=objective)
            else:
                value, grad = value_and_grad(z)
                updates, state = opt.update(grad, state, z)
            gradient_norm = jnp.linalg.norm(grad)
            # stop before stepping from a point that already satisfies the tolerance
            z_new = jnp.where(gradient_norm < tolerance, z, optax.apply_updates(z, updates))
            # a failed solve gives inf: refuse to step into it
            z_new = jnp.where(jnp.all(jnp.isfinite(z_new)), z_new, z)
            gradient_norm = jnp.where(jnp.isfinite(gradient_norm), gradient_norm, jnp.inf)
            return z_new, state, i + 1, history.at[i].set(value), gradient_norm

        history = jnp.full(steps, jnp.nan, dtype=z0.dtype)
        z, _, _, history, _ = jax.lax.while_loop(
            keep_going, step, (z0, opt.init(z0), 0, history, jnp.asarray(jnp.inf, z0.dtype)))
        return z, objective(z), history

    return jax.vmap(run)(starts)


@dataclasses.dataclass
class IndividualFit:
    """The outcome of ``fit_individual``."""

    problem: Problem
    subject: str
    z: np.ndarray
    objective: float
    gradient_norm: float
    estimates: dict[str, float]
    standard_errors: dict[str, float]
    intervals: dict[str, tuple[float, float]]
    covariance_z: np.ndarray
    starts: int
    starts_at_optimum: int
    unidentifiable: list[str]
    fisher_eigenvalues: np.ndarray
    history: np.ndarray

    @property
    def converged(self) -> bool:
        return bool(np.isfinite(self.objective) and self.gradient_norm < 1e-3)

    @property
    def twin(self) -> vht.Twin:
        """The calibrated twin: the problem's twin with the estimates set."""
        return self.problem.twin_at(jnp.asarray(self.z))

    def posterior_samples(self, n: int = 1000, seed: int = 0) -> dict[str, np.ndarray]:
        """Laplace samples of every unknown on its natural scale."""
        covariance = jnp.asarray(self.covariance_z)
        draws = jax.random.multivariate_normal(jax.random.PRNGKey(seed), jnp.asarray(self.z),
                                               covariance, (n,), method="eigh")
        values = jax.vmap(self.problem.constrained)(draws)
        return {k: np.asarray(v) for k, v in values.items()}

    def report(self) -> str:
        lines = [f"individual fit of subject {self.subject}",
                 f"objective (-log posterior) {self.objective:.6f}; gradient norm "
                 f"{self.gradient_norm:.2e}; {self.starts_at_optimum}/{self.starts} starts "
                 f"reached it; converged: {self.converged}",
                 f"{'parameter':<40}{'estimate':>14}{'SE':>12}{'95 % interval':>28}"]
        for name, value in self.estimates.items():
            low, high = self.intervals[name]
            flag = "  NOT IDENTIFIABLE" if name in self.unidentifiable else ""
            lines.append(f"{name:<40}{value:>14.6g}{self.standard_errors[name]:>12.4g}"
                         f"{'[' + format(low, '.4g') + ', ' + format(high, '.4g') + ']':>28}"
                         f"{flag}")
        if self.unidentifiable:
            lines.append("the data do not determine " + ", ".join(self.unidentifiable) +
                         " separately (Fisher information nearly singular along them); fix one "
                         "or add data that separates them")
        lines += branch_summary({k: np.asarray(v) for k, v in self.estimates.items()})
        return "\n".join(lines)

    def save(self, path: str | Path, n_samples: int = 1000, seed: int = 0) -> Path:
        """Write the calibrated twin as a twin file, with Laplace posterior samples of the free
        twin parameters and the fit report as metadata."""
        samples = self.posterior_samples(n_samples, seed)
        twin_samples = {f.name: samples[f.name] for f in self.problem.free}
        metadata = {"fit": "individual", "subject": self.subject, "report": self.report(),
                    "estimates": self.estimates, "standard_errors": self.standard_errors}
        return vht.save_twin(path, self.twin, posterior=twin_samples, metadata=metadata)


def _identifiability(hessian: np.ndarray, names: Sequence[str], relative: float = 1e-8,
                     loading: float = 0.3):
    eigenvalues, vectors = np.linalg.eigh(hessian)
    scale = max(float(np.max(np.abs(eigenvalues))), 1e-300)
    weak = [i for i, value in enumerate(eigenvalues) if value < relative * scale]
    flagged = sorted({names[j] for i in weak for j in range(len(names))
                      if abs(vectors[j, i]) > loading}, key=list(names).index)
    return eigenvalues, flagged


def fit_individual(problem: Problem, subject: SubjectData, *, starts: int = 8,
                   spread: float = 1.0, optimizer: str = "auto", steps: int = 100,
                   learning_rate: float = 0.05, seed: int = 0,
                   map_estimate: bool = True) -> IndividualFit:
    """Fit one subject: ``starts`` starting points (the problem's initial values, and others
    drawn N(0, spread^2) around them in the unconstrained space), optimised together by
    ``optimizer`` (see ``minimise``)."""
    z0 = problem.initial()
    noise = spread * jax.random.normal(jax.random.PRNGKey(seed), (starts, z0.size))
    starting = z0 + noise.at[0].set(0.0)

    objective = objective_of(problem, subject, map_estimate)
    z_all, values, history = minimise(objective, starting, optimizer=optimizer, steps=steps,
                                      learning_rate=learning_rate)
    values = np.asarray(values)
    best = int(np.nanargmin(np.where(np.isfinite(values), values, np.inf)))
    z = jnp.asarray(z_all[best])
    gradient = np.asarray(jax.grad(objective)(z))
    # forward over forward: the checkpointed reverse adjoint has no forward-mode derivative
    forward = diffrax.ForwardMode()
    hessian = np.asarray(jax.jit(jax.jacfwd(jax.jacfwd(
        lambda w: problem.objective(w, subject, map_estimate, forward))))(z))
    hessian = 0.5 * (hessian + hessian.T)
    names = problem.names
    eigenvalues, unidentifiable = _identifiability(hessian, names)
    covariance_z = np.linalg.pinv(hessian, hermitian=True)
    se_z = np.sqrt(np.clip(np.diag(covariance_z), 0.0, None))
    natural = {k: float(v) for k, v in problem.constrained(z).items()}
    slopes = np.asarray(jax.jacfwd(lambda w: jnp.stack(list(problem.constrained(w).values())))(z))
    se_natural = np.sqrt(np.clip(np.einsum("ij,jk,ik->i", slopes, covariance_z, slopes), 0, None))
    low = problem.constrained(z - Z95 * jnp.asarray(se_z))
    high = problem.constrained(z + Z95 * jnp.asarray(se_z))
    intervals = {k: tuple(sorted((float(low[k]), float(high[k])))) for k in natural}
    tolerance = 1e-4 * max(1.0, abs(float(values[best])))
    return IndividualFit(
        problem=problem, subject=subject.subject, z=np.asarray(z),
        objective=float(values[best]), gradient_norm=float(np.linalg.norm(gradient)),
        estimates=natural,
        standard_errors={k: float(s) for k, s in zip(natural, se_natural)},
        intervals=intervals, covariance_z=covariance_z, starts=starts,
        starts_at_optimum=int(np.sum(np.abs(values - values[best]) <= tolerance)),
        unidentifiable=unidentifiable, fisher_eigenvalues=eigenvalues,
        history=np.asarray(history[best]))


def profile(problem: Problem, subject: SubjectData, name: str, values: Sequence[float], *,
            start: Array | None = None, steps: int = 100, map_estimate: bool = True) -> np.ndarray:
    """The profile objective of parameter ``name``: for each value, the minimum over the other
    unknowns (all grid points optimised together in one program)."""
    names = problem.names
    if name not in names:
        raise ValueError(f"{name!r} is not an unknown of the problem ({', '.join(names)})")
    index = names.index(name)
    transform = problem.free[index].transform if index < len(problem.free) else None
    fixed = jnp.asarray([float(transform.inverse(v)) if transform is not None else float(
        np.log(v)) for v in values])
    start = problem.initial() if start is None else jnp.asarray(start)
    others = jnp.delete(start, index)

    def full(w, fixed_value):
        return jnp.insert(w, index, fixed_value)

    def run(fixed_value):
        subject_objective = objective_of(problem, subject, map_estimate)

        def objective(w):
            return subject_objective(full(w, fixed_value))
        w, value, _ = minimise_traced(objective, others[None, :], steps=steps)
        return value[0]

    return np.asarray(jax.jit(jax.vmap(run))(fixed))
