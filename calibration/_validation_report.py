"""The sections and figures of a validation study's report (see ``calibration._validation``).

Figures, one PNG file each and embedded in the HTML:

- ``vpc_<variable>.png``, the visual predictive check: the held-out observations against
  time, the observed 5th, 50th and 95th percentiles per time bin (dashed), and the predictive
  median and interval at the study's level per bin (line and band) pooled over the patients'
  posterior draws;
- ``observed_vs_predicted_<variable>.png``: each held-out observation against its point
  prediction, with its prediction interval as a bar, coloured by group, identity line;
- ``individual_predictions.png``: per patient (up to 16), the calibration data (filled), the
  held-out data (open), the fitted twin's trajectory and the intervals at the held-out times.
"""

from __future__ import annotations

import io
from pathlib import Path

import jax
import jax.numpy as jnp
import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402

import vht  # noqa: E402

from ._plots import _dense  # noqa: E402

_COLOURS = ("#1f77b4", "#d62728", "#2ca02c", "#ff7f0e", "#9467bd", "#8c564b")


def _png(fig) -> bytes:
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=100)
    plt.close(fig)
    return buffer.getvalue()


def _bins(times: np.ndarray, n_max: int = 10) -> np.ndarray:
    """Bin index per time: clusters of nominal sampling times (a gap of more than 5 % of the
    time range starts a new one) when there are 2 to ``n_max`` of them, else quantile bins."""
    order = np.sort(times)
    span = max(float(order[-1] - order[0]), 1e-12)
    starts = order[1:][np.diff(order) > 0.05 * span]
    if 1 <= len(starts) < n_max:
        return np.searchsorted(starts, times, side="right")
    edges = np.quantile(times, np.linspace(0, 1, n_max + 1))
    return np.clip(np.searchsorted(edges, times, side="right") - 1, 0, n_max - 1)


def vpc_figure(frame: pd.DataFrame, draws: np.ndarray, level: float, variable: str,
               unit: str, time_unit: str) -> bytes:
    """The visual predictive check of one variable (``draws``: predictive draws per row)."""
    fig, ax = plt.subplots(figsize=(7.5, 3.8), layout="constrained")
    times = frame["time"].to_numpy()
    bins = _bins(times)
    tail = (1.0 - level) / 2.0
    centres, observed, predicted = [], [], []
    for b in np.unique(bins):
        rows = bins == b
        centres.append(np.median(times[rows]))
        observed.append(np.quantile(frame["observed"].to_numpy()[rows], [tail, 0.5, 1 - tail]))
        pooled = draws[rows].ravel()
        pooled = pooled[np.isfinite(pooled)]
        predicted.append(np.quantile(pooled, [tail, 0.5, 1 - tail]) if pooled.size
                         else [np.nan] * 3)
    centres, observed, predicted = map(np.asarray, (centres, observed, predicted))
    ax.fill_between(centres, predicted[:, 0], predicted[:, 2], color="#1f77b4", alpha=0.25,
                    label=f"predictive {level:.0%} interval")
    ax.plot(centres, predicted[:, 1], color="#1f77b4", label="predictive median")
    ax.scatter(times, frame["observed"], s=12, color="#333333", alpha=0.6,
               label="held-out observations")
    for k, style in ((0, ":"), (1, "--"), (2, ":")):
        ax.plot(centres, observed[:, k], color="#d62728", linestyle=style,
                label="observed median" if k == 1 else (
                    f"observed {tail:.0%} / {1 - tail:.0%} percentiles" if k == 0 else None))
    ax.set_xlabel(f"time [{time_unit}]")
    ax.set_ylabel(f"{variable} [{unit}]")
    ax.set_title(f"visual predictive check of the held-out data: {variable}", fontsize=10)
    ax.legend(fontsize=8, loc="best")
    return _png(fig)


def observed_vs_predicted_figure(frame: pd.DataFrame, variable: str, unit: str) -> bytes:
    fig, ax = plt.subplots(figsize=(5.5, 5.0), layout="constrained")
    for k, (group, rows) in enumerate(frame.groupby("group")):
        colour = _COLOURS[k % len(_COLOURS)]
        ax.errorbar(rows["predicted"], rows["observed"],
                    xerr=[np.clip(rows["predicted"] - rows["low"], 0, None),
                          np.clip(rows["high"] - rows["predicted"], 0, None)],
                    fmt="o", ms=3, color=colour, ecolor=colour, alpha=0.6, elinewidth=0.7,
                    label=str(group))
    low = float(np.nanmin([frame["observed"].min(), frame["low"].min()]))
    high = float(np.nanmax([frame["observed"].max(), frame["high"].max()]))
    ax.plot([low, high], [low, high], color="#333333", linewidth=0.8, label="identity")
    ax.set_xlabel(f"predicted {variable} [{unit}] (bars: prediction interval)")
    ax.set_ylabel(f"observed {variable} [{unit}]")
    ax.set_title("held-out observations against their predictions", fontsize=10)
    ax.legend(fontsize=8)
    return _png(fig)


def individual_figure(result, max_subjects: int = 16, n_points: int = 200) -> bytes:
    problem = result.study.problem
    subjects = result.fit.subjects[:max_subjects]
    variable = next(iter(problem.observed))
    unit = problem.observed[variable]
    everything = pd.concat([result.calibration, result.validation[
        result.validation["value"].notna()]])
    batch = problem.read_subjects(everything, subjects)
    dense = _dense(batch, n_points, problem.twin.sample_period())
    z = jnp.asarray(result.fit.z[:len(subjects)])
    curves = np.asarray(jax.jit(jax.vmap(problem.predict))(z, dense))
    columns = min(4, len(subjects))
    rows = int(np.ceil(len(subjects) / columns))
    fig, axes = plt.subplots(rows, columns, figsize=(2.6 * columns, 2.1 * rows),
                             sharex=True, squeeze=False, layout="constrained")
    per_minute = problem.minutes_per_time_unit
    for ax, subject, i in zip(axes.ravel(), subjects, range(len(subjects))):
        # the twin's curve on top: dense data (CGM every 5 min) would hide it
        ax.plot(dense.times[i] / per_minute, curves[i], color="#1f77b4", linewidth=1.0,
                zorder=3)
        cal = result.calibration[(result.calibration["subject"] == subject)
                                 & (result.calibration["variable"] == variable)]
        dense_data = len(cal) > 60
        ax.plot(cal["time"], cal["value"], "o", ms=1.5 if dense_data else 3, color="#333333",
                alpha=0.6 if dense_data else 1.0)
        held = result.predictions[(result.predictions["subject"] == subject)
                                  & (result.predictions["variable"] == variable)]
        ax.errorbar(held["time"], held["predicted"],
                    yerr=[np.clip(held["predicted"] - held["low"], 0, None),
                          np.clip(held["high"] - held["predicted"], 0, None)],
                    fmt="none", ecolor="#1f77b4", alpha=0.7)
        ax.plot(held["time"], held["observed"], "o", ms=4, mfc="none", color="#d62728")
        ax.set_title(subject, fontsize=7)
        ax.tick_params(labelsize=7)
    for ax in axes.ravel()[len(subjects):]:
        ax.set_visible(False)
    fig.supxlabel(f"time [{problem.time_unit}]", fontsize=9)
    fig.supylabel(f"{variable} [{unit}]", fontsize=9)
    fig.suptitle("calibration data (filled), held-out data (open), fitted twin and "
                 f"{result.study.level:.0%} prediction intervals", fontsize=9)
    return _png(fig)


def _fmt(x: float, digits: int = 3) -> str:
    return "n/a" if x is None or not np.isfinite(x) else f"{x:.{digits}g}"


def report_sections(result, figures_dir: Path):
    """The report's sections and the figure files written into ``figures_dir``."""
    study, metrics, fit = result.study, result.metrics, result.fit
    problem = study.problem
    split = study.split
    split_text = {"last": f"the last {split.count} observations of each patient held out",
                  "every": f"every {split.every}th observation of each patient held out",
                  "window": (f"calibration window [{split.calibrate[0]:g}, "
                             f"{split.calibrate[1]:g}) {problem.time_unit}, validation window "
                             f"[{split.validate[0]:g}, {split.validate[1]:g}] "
                             f"{problem.time_unit}") if split.calibrate else ""}[split.hold_out]
    overview = vht.Section(
        "Study", text=f"Context of use: {study.context_of_use} Question: {study.question}",
        columns=("item", "value"), kind="study",
        rows=(("model", study.model_description),
              ("data", f"{result.patient_data.source}, {len(result.patient_data.subjects)} "
                       f"patients ({metrics['n_excluded']} left out)"),
              ("split", split_text),
              ("observations", f"{metrics['n_calibration_observations']} for calibration, "
                               f"{metrics['n_validation_observations']} held out"),
              ("prediction intervals", f"{study.level:.0%}, from {study.samples} Laplace "
                                       "posterior draws per patient with residual error"),
              ("run time", ", ".join(f"{k} {v:.1f} s" for k, v in result.seconds.items()))))
    repairs = result.patient_data.repairs
    data_section = vht.Section(
        "Data repairs", kind="repairs",
        text=(f"Ingestion made {len(repairs)} repairs under vht's documented policy"
              + (" (the first 30 shown)." if len(repairs) > 30 else ".")) if repairs
        else "Ingestion made no repairs: every row was accepted as given.",
        columns=("rule", "where", "what") if repairs else (),
        rows=tuple((r.rule, r.position, r.message) for r in repairs[:30]))
    names = list(fit.estimates.columns)
    flagged = fit.unidentifiable
    calibration = vht.Section(
        "Calibration", kind="calibration",
        text=f"{len(fit.subjects)} patients fitted in one compiled program "
             f"({fit.seconds:.1f} s after compilation); estimates with Laplace standard errors. "
             "A flag marks unknowns the calibration data do not determine.",
        columns=("patient", *names, "objective", "not identifiable"),
        rows=tuple((s, *(f"{_fmt(fit.estimates.loc[s, n], 4)} ± "
                         f"{_fmt(fit.standard_errors.loc[s, n], 2)}" for n in names),
                    _fmt(float(o), 6), ", ".join(flagged[s]) or "-")
                   for s, o in zip(fit.subjects, fit.objective)))
    metric_rows = []
    for variable, entry in metrics["variables"].items():
        unit = entry["unit"]
        for group, m in [("all", entry["overall"]), *entry["groups"].items()]:
            if group != "all" and len(entry["groups"]) == 1:
                continue
            low, high = m["coverage_range"]
            metric_rows.append((variable, group, str(m["subjects"]), str(m["n"]),
                                f"{_fmt(m['rmse'])} {unit}", f"{_fmt(m['bias'])} {unit}",
                                f"{m['relative_rmse']:.1%}",
                                f"{m['coverage']:.1%} (expected {m['coverage_expected']:.0%}; "
                                f"{low:.1%}-{high:.1%})",
                                "yes" if m["coverage_ok"] else "NO"))
    metric_section = vht.Section(
        "Prediction of the held-out data", kind="metrics",
        text="RMSE and bias (prediction minus observation) of the point predictions at each "
             "patient's estimate; coverage of the prediction intervals, with the central 95 % "
             "range a calibrated interval shows on that many points.",
        columns=("variable", "group", "patients", "observations", "RMSE", "bias",
                 "RMSE / mean observed", "interval coverage", "coverage as expected"),
        rows=tuple(metric_rows))

    figures, files = [], {}
    draws = result.draws
    for variable, frame in result.predictions.groupby("variable"):
        unit = problem.observed[variable]
        rows = frame.index.to_numpy()
        safe = variable.replace(".", "_")
        for name, png, caption in (
                (f"vpc_{safe}", vpc_figure(frame, draws[rows], study.level, variable, unit,
                                           problem.time_unit),
                 f"visual predictive check of {variable}"),
                (f"observed_vs_predicted_{safe}", observed_vs_predicted_figure(frame, variable,
                                                                              unit),
                 f"held-out {variable}: observed against predicted")):
            path = figures_dir / f"{name}.png"
            path.write_bytes(png)
            files[name] = path
            figures.append((png, name, caption))
    png = individual_figure(result)
    (figures_dir / "individual_predictions.png").write_bytes(png)
    files["individual_predictions"] = figures_dir / "individual_predictions.png"
    figures.append((png, "individual_predictions", "per patient: calibration data, held-out "
                    "data, the fitted twin and the prediction intervals"))
    figure_section = vht.Section("Figures", kind="figures", figures=tuple(figures))
    return [overview, metric_section, calibration, data_section, figure_section], files
