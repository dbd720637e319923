"""Goodness-of-fit figures for calibrated twins (PNG files).

- ``observed_vs_predicted.png``: observations against individual predictions (and against
  population predictions when a population fit gives them), with the identity line;
- ``individual_fits.png``: one panel per subject (up to ``max_subjects``), observations and the
  individual prediction on a dense time grid (and the population prediction);
- ``residuals.png``: individual weighted residuals (y - f) / sd, on the scale where the
  observation model is normal, against time and against the prediction, with +-1.96 lines.

Works from unconstrained vectors per subject, so individual, cohort and population fits all
draw the same way (``diagnostic_plots``).
"""

from __future__ import annotations

from pathlib import Path

import jax
import jax.numpy as jnp
import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402

from ._problem import Problem  # noqa: E402
from ._records import SubjectData  # noqa: E402


def _dense(batch: SubjectData, n_points: int, period: float | None = None) -> SubjectData:
    """The same subjects with observation slots on a dense grid from 0 to the last sample
    (on the clock ticks of a twin with sample ``period``, in minutes)."""
    last = np.max(np.where(batch.mask, batch.times, 0.0), axis=1)
    grid = np.linspace(0.0, 1.0, n_points)[None, :] * last[:, None]
    if period is not None:
        grid = batch.span[0] + np.round((grid - batch.span[0]) / period) * period
    zeros = np.zeros_like(grid)
    return SubjectData("", grid, zeros, zeros.astype(int), np.ones_like(grid, dtype=bool),
                       batch.dose_times, batch.dose_amounts, batch.dose_durations,
                       batch.route_index, batch.parameters, span=batch.span)


def diagnostic_plots(problem: Problem, records: pd.DataFrame, subjects: list[str],
                     individual_z: np.ndarray, directory: str | Path, *,
                     population_z: np.ndarray | None = None, max_subjects: int = 16,
                     title: str = "") -> list[Path]:
    """Write the three figures for ``subjects`` with unconstrained vectors ``individual_z``
    (one row per subject; ``population_z`` likewise, or one shared row) and return their
    paths. Only the first observed variable is drawn in the grid of individual fits."""
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    batch = problem.read_subjects(records, subjects)
    individual_z = jnp.asarray(individual_z, dtype=float)
    if population_z is not None:
        population_z = jnp.broadcast_to(jnp.asarray(population_z, dtype=float),
                                        individual_z.shape)

    @jax.jit
    def predictions(z, subjects_):
        predicted = jax.vmap(problem.predict)(z, subjects_)
        lin = jax.vmap(problem.linearised)(predicted, z, subjects_)
        return predicted, lin

    mask = np.asarray(batch.mask)
    to_hours = 1.0 / problem.minutes_per_time_unit
    ipred, (y_lin, f_lin, variance) = (jax.tree.map(np.asarray, p)
                                       for p in predictions(individual_z, batch))
    observed = np.asarray(batch.values)
    times = np.asarray(batch.times) * to_hours
    weighted = (y_lin - f_lin) / np.sqrt(variance)
    paths = []

    # observed vs predicted
    panels = 1 if population_z is None else 2
    fig, axes = plt.subplots(1, panels, figsize=(5 * panels, 4.6), squeeze=False)
    sets = [("individual prediction", ipred)]
    if population_z is not None:
        pred = np.asarray(jax.jit(jax.vmap(problem.predict))(population_z, batch))
        sets.insert(0, ("population prediction", pred))
    for ax, (label, values) in zip(axes[0], sets):
        ax.scatter(values[mask], observed[mask], s=12, alpha=0.7)
        top = float(np.nanmax([values[mask].max(), observed[mask].max()])) * 1.05
        ax.plot([0, top], [0, top], "k--", lw=1)
        ax.set(xlabel=f"{label}", ylabel="observed", xlim=(0, top), ylim=(0, top))
    fig.suptitle(title or "observed vs predicted")
    fig.tight_layout()
    paths.append(directory / "observed_vs_predicted.png")
    fig.savefig(paths[-1], dpi=110)
    plt.close(fig)

    # individual fits on a grid
    shown = min(len(subjects), max_subjects)
    dense = jax.tree.map(lambda a: a[:shown], _dense(batch, 120, problem.twin.sample_period()))
    curves = np.asarray(jax.jit(jax.vmap(problem.predict))(individual_z[:shown], dense))
    population_curves = None if population_z is None else np.asarray(
        jax.jit(jax.vmap(problem.predict))(population_z[:shown], dense))
    columns = int(np.ceil(np.sqrt(shown)))
    rows = int(np.ceil(shown / columns))
    fig, axes = plt.subplots(rows, columns, figsize=(2.8 * columns, 2.3 * rows), sharex=True,
                             squeeze=False)
    variable, unit = next(iter(problem.observed.items()))
    for k, ax in enumerate(axes.flat):
        if k >= shown:
            ax.axis("off")
            continue
        grid = np.asarray(dense.times[k]) * to_hours
        ax.plot(grid, curves[k], lw=1.4, label="individual")
        if population_curves is not None:
            ax.plot(grid, population_curves[k], "--", lw=1, color="grey", label="population")
        ax.plot(times[k][mask[k]], observed[k][mask[k]], "o", ms=3.5, color="k")
        ax.set_title(subjects[k], fontsize=9)
    axes[0, 0].legend(fontsize=7)
    fig.supxlabel(f"time [{problem.time_unit}]")
    fig.supylabel(f"{variable} [{unit}]")
    fig.tight_layout()
    paths.append(directory / "individual_fits.png")
    fig.savefig(paths[-1], dpi=110)
    plt.close(fig)

    # residuals
    fig, axes = plt.subplots(1, 2, figsize=(10, 4), sharey=True)
    for ax, x, label in ((axes[0], times, f"time [{problem.time_unit}]"),
                         (axes[1], ipred, "individual prediction")):
        ax.scatter(x[mask], weighted[mask], s=12, alpha=0.7)
        for level in (-1.96, 0.0, 1.96):
            ax.axhline(level, color="k", lw=1, ls="-" if level == 0 else "--")
        ax.set_xlabel(label)
    axes[0].set_ylabel("individual weighted residual")
    fig.suptitle(title or "residuals")
    fig.tight_layout()
    paths.append(directory / "residuals.png")
    fig.savefig(paths[-1], dpi=110)
    plt.close(fig)
    return paths
