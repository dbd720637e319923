"""Cohort fits: every patient's individual parameters in one compiled, vmapped program.

The subjects' records are padded to a common size and stacked; the multi-start optimisation of
``fit_individual`` runs over all (subject, start) pairs, then the Laplace covariance of each
subject's optimum. With Newton (the default for closed-form and ODE twins without a clock)
the pairs are lanes of one compacted loop (``calibration._compaction``), which drops the
finished lanes as it goes: on 1,000 synthetic subjects x 3 starts it ran 0.26-0.27 s against
0.70 s for the plain vmapped loop, which waited for one flat start at its step limit.
``loop_fit`` runs the same per-subject program in a Python loop, for the
speed comparison the cohort fit exists to win.
"""

from __future__ import annotations

import dataclasses
import time

import diffrax
import jax
import jax.numpy as jnp
import numpy as np
import pandas as pd
from jaxtyping import Array

from ._branch import absorption_branch, branch_summary
from ._compaction import compacted_while_loop
from ._forward import newton_continues, newton_start, newton_step
from ._individual import (
    GRADIENT_TOLERANCE,
    minimise_traced,
    objective_of,
    resolved_optimizer,
    twice_differentiable,
)
from ._problem import Problem
from ._records import subject_ids


@dataclasses.dataclass
class CohortFit:
    """Per-subject estimates (natural scale), their standard errors and objectives;
    ``seconds``: the compiled program's run time (compilation excluded)."""

    problem: Problem
    subjects: list[str]
    z: np.ndarray
    objective: np.ndarray
    estimates: pd.DataFrame
    standard_errors: pd.DataFrame
    seconds: float
    hessians: np.ndarray | None = None  # per subject, of the objective in z

    @property
    def covariances(self) -> np.ndarray:
        """Laplace covariances of each subject's z (pseudo-inverse Hessians)."""
        return np.stack([np.linalg.pinv(0.5 * (h + h.T), hermitian=True) for h in
                         self.hessians])

    @property
    def unidentifiable(self) -> dict[str, list[str]]:
        """Per subject, the unknowns the data do not determine (the Fisher-information flag
        of ``fit_individual``)."""
        from ._individual import _identifiability

        names = self.problem.names
        return {s: _identifiability(0.5 * (h + h.T), names)[1]
                for s, h in zip(self.subjects, self.hessians)}

    def plots(self, records: pd.DataFrame, directory, max_subjects: int = 16) -> list:
        """Observed vs predicted, individual fits on a grid and residuals, as PNG files in
        ``directory`` (see ``calibration._plots``)."""
        from ._plots import diagnostic_plots

        return diagnostic_plots(self.problem, records, self.subjects, self.z, directory,
                                max_subjects=max_subjects, title="cohort fit")

    def table(self) -> pd.DataFrame:
        """Estimates per subject, the absorption branch (flip-flop) where the twin has one,
        and the objective."""
        out = self.estimates.copy()
        for organ, branch in absorption_branch(self.estimates).items():
            out[f"{organ}.branch"] = branch
        out["objective"] = self.objective
        return out

    def report(self) -> str:
        lines = [f"cohort fit of {len(self.subjects)} subjects in one compiled program "
                 f"({self.seconds:.1f} s)"] + branch_summary(self.estimates)
        return "\n".join(lines)


def _starting_points(problem: Problem, starts: int, spread: float, seed: int) -> Array:
    z0 = problem.initial()
    noise = spread * jax.random.normal(jax.random.PRNGKey(seed), (starts, z0.size))
    return z0 + noise.at[0].set(0.0)


def _best_with_uncertainty(problem: Problem, map_estimate: bool):
    """``(subject, z per start, objective per start) -> (z, objective, standard errors,
    Hessian)`` at the subject's best start: the Laplace covariance of its optimum."""
    forward = diffrax.ForwardMode()

    def finish(subject, z_all, values):
        best = jnp.argmin(jnp.where(jnp.isfinite(values), values, jnp.inf))
        z = z_all[best]
        hessian = jax.jacfwd(jax.jacfwd(
            lambda w: problem.objective(w, subject, map_estimate, forward)))(z)
        hessian = 0.5 * (hessian + hessian.T)
        covariance = jnp.linalg.pinv(hessian, hermitian=True)
        slopes = jax.jacfwd(lambda w: jnp.stack(list(problem.constrained(w).values())))(z)
        se = jnp.sqrt(jnp.clip(jnp.einsum("ij,jk,ik->i", slopes, covariance, slopes), 0.0))
        return z, values[best], se, hessian

    return finish


def _subject_program(problem: Problem, starts: int, spread: float, steps: int,
                     map_estimate: bool, seed: int, optimizer: str):
    """One subject's multi-start fit and Laplace covariance (``loop_fit``'s program)."""
    starting = _starting_points(problem, starts, spread, seed)
    finish = _best_with_uncertainty(problem, map_estimate)

    def fit_one(subject):
        z_all, values, _ = minimise_traced(objective_of(problem, subject, map_estimate),
                                           starting, steps=steps, optimizer=optimizer)
        return finish(subject, z_all, values)

    return fit_one


def _cohort_program(problem: Problem, starts: int, spread: float, steps: int,
                    map_estimate: bool, seed: int, optimizer: str):
    """Every subject's fit: for Newton, all (subject, start) pairs as lanes of one compacted
    loop (``calibration._compaction``); other optimisers vmap ``_subject_program``."""
    plain = jax.vmap(_subject_program(problem, starts, spread, steps, map_estimate, seed,
                                      optimizer))
    starting = _starting_points(problem, starts, spread, seed)
    finish = jax.vmap(_best_with_uncertainty(problem, map_estimate))

    def objective(subject):
        return twice_differentiable(objective_of(problem, subject, map_estimate))

    def program(batch):
        n_subjects = jax.tree.leaves(batch)[0].shape[0]
        first = jax.tree.map(lambda x: x[0], batch)
        if resolved_optimizer(objective_of(problem, first, map_estimate), optimizer) != "newton":
            return plain(batch)
        # lane k: subject k // starts from start k % starts
        data = jax.tree.map(lambda x: jnp.repeat(x, starts, axis=0), batch)
        z0 = jnp.tile(starting, (n_subjects, 1))
        carry = jax.vmap(lambda z, s: newton_start(objective(s), z, steps))(z0, data)
        lanes = n_subjects * starts
        # half the starts converge within 12 iterations (1,000 synthetic Theoph subjects);
        # the rest continue a sixteenth of the lanes at a time, 4 iterations a round (of the
        # settings tried, the fastest there and on Theoph through the ODE solver)
        carry = compacted_while_loop(
            lambda c, s: newton_continues(c, steps, GRADIENT_TOLERANCE),
            lambda c, s: newton_step(objective(s), c), carry, data,
            first=12, capacity=max(1, lanes // 16), chunk=4)
        z_all = carry[0].reshape(n_subjects, starts, -1)
        values = carry[1].reshape(n_subjects, starts)
        return finish(batch, z_all, values)

    return program


def fit_cohort(problem: Problem, records: pd.DataFrame, subjects: list[str] | None = None, *,
               starts: int = 4, spread: float = 0.5, steps: int = 60,
               map_estimate: bool = True, seed: int = 0, optimizer: str = "auto") -> CohortFit:
    """Fit every subject of ``records`` (or ``subjects``) in one compiled program
    (``optimizer``: see ``calibration.minimise``)."""
    subjects = subject_ids(records) if subjects is None else list(subjects)
    batch = problem.read_subjects(records, subjects)
    program = jax.jit(_cohort_program(problem, starts, spread, steps, map_estimate, seed,
                                      optimizer))
    compiled = program.lower(batch).compile()  # compile outside the timing, as loop_fit does
    started = time.perf_counter()
    z, objective, se, hessians = jax.block_until_ready(compiled(batch))
    seconds = time.perf_counter() - started
    natural = jax.vmap(problem.constrained)(z)
    # the problem's order, which the standard errors follow (a vmapped dict comes back with
    # its keys sorted)
    names = list(problem.names)
    estimates = pd.DataFrame({k: np.asarray(natural[k]) for k in names}, index=subjects)
    errors = pd.DataFrame(np.asarray(se), columns=names, index=subjects)
    return CohortFit(problem, subjects, np.asarray(z), np.asarray(objective), estimates, errors,
                     seconds, np.asarray(hessians))


def loop_fit(problem: Problem, records: pd.DataFrame, subjects: list[str] | None = None, *,
             starts: int = 4, spread: float = 0.5, steps: int = 60, map_estimate: bool = True,
             seed: int = 0, optimizer: str = "auto") -> tuple[np.ndarray, float]:
    """The same fits one subject at a time (one compiled program, called in a Python loop).
    Returns (z per subject, seconds of the loop after compilation)."""
    subjects = subject_ids(records) if subjects is None else list(subjects)
    batch = problem.read_subjects(records, subjects)
    program = jax.jit(_subject_program(problem, starts, spread, steps, map_estimate, seed,
                                       optimizer))
    first = jax.tree.map(lambda x: x[0], batch)
    jax.block_until_ready(program(first))  # compile outside the timing
    started = time.perf_counter()
    results = [jax.block_until_ready(program(jax.tree.map(lambda x, i=i: x[i], batch)))
               for i in range(len(subjects))]
    return np.stack([np.asarray(r[0]) for r in results]), time.perf_counter() - started
