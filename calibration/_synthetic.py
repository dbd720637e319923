"""Synthetic cohorts: records simulated from a population model.

For recovery studies (fit the simulated records, compare with the truth that made them) and
for study design (how much does a sparse sampling schedule lose?). Each subject gets the same
dosing and sampling design; its random effects are drawn from N(0, Omega) and its observations
from the problem's observation model around the twin's predictions.
"""

from __future__ import annotations

from collections.abc import Sequence

import jax
import jax.numpy as jnp
import numpy as np
import pandas as pd
from jaxtyping import Array

from ._population import PopulationProblem
from ._records import read_subjects, validate_records


def simulate_population(population: PopulationProblem, outer: Array, times: Sequence[float],
                        dose_amount: float, *, n_subjects: int, route: str = "oral",
                        dose_unit: str | None = None, seed: int = 0
                        ) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Records of ``n_subjects`` virtual patients, and the truth behind them.

    Every subject receives one dose of ``dose_amount`` (in ``dose_unit``, by default the
    target state's unit) at time 0 by ``route`` and is sampled at ``times`` (the problem's time
    unit) for its first observed variable. ``outer`` holds the population parameters
    (``PopulationProblem.pack``). Returns (records, truth); truth has one row per subject with
    the random effects (``eta.<name>``) and the individual parameters on their natural scale.
    """
    problem = population.problem
    variable, model = problem.observations[0]
    unit = problem.observed[variable]
    dose_unit = problem.dose_units[route] if dose_unit is None else dose_unit
    subjects = [f"S{i + 1:04d}" for i in range(n_subjects)]
    rows = []
    for subject in subjects:
        rows.append({"subject": subject, "time": 0.0, "variable": "", "value": np.nan,
                     "unit": dose_unit, "dose_amount": float(dose_amount), "route": route,
                     "duration": 0.0})
        rows += [{"subject": subject, "time": float(t), "variable": variable, "value": 1.0,
                  "unit": unit, "dose_amount": np.nan, "route": "", "duration": 0.0}
                 for t in sorted(times)]
    records = validate_records(pd.DataFrame(rows))
    batch = read_subjects(records, subjects, problem.observed, problem.dose_units,
                          problem.minutes_per_time_unit)

    outer = jnp.asarray(outer, dtype=float)
    _, chol, _ = population.unpack(outer)
    eta_key, noise_key = jax.random.split(jax.random.PRNGKey(seed))
    eta = jax.random.normal(eta_key, (n_subjects, population.q), dtype=float) @ chol.T

    @jax.jit
    def observe(eta_all):
        z = jax.vmap(population.individual, in_axes=(None, 0))(outer, eta_all)
        predicted = jax.vmap(problem.predict)(z, batch)
        params = problem.constrained(z[0])  # the error parameters are shared
        own = {p: params[f"error.{variable}.{p}"] for p in model.parameters}
        return z, model.sample(noise_key, predicted, own)

    z, observed = (np.asarray(a) for a in observe(eta))
    if not np.all(np.isfinite(observed[np.asarray(batch.mask)])):
        raise ValueError("a simulated subject's solve failed: check the population parameters")
    is_observation = records["dose_amount"].isna().to_numpy()
    n_times = len(times)
    records.loc[is_observation, "value"] = observed[:, :n_times].reshape(-1)

    natural = jax.vmap(problem.constrained)(jnp.asarray(z))
    truth = pd.DataFrame({f"eta.{name}": np.asarray(eta[:, k])
                          for k, name in enumerate(population.random_effects)}, index=subjects)
    for free in problem.free:
        truth[free.name] = np.asarray(natural[free.name])
    truth.index.name = "subject"
    return records, truth
