"""Validation studies: calibrate each patient on part of their data, predict the rest, and
say how good the predictions were (``vht validate study.toml``).

For each patient of the study's data (ingested through ``vht.data``, so pseudonymised, unit
checked and screened):

1. the observations split into a calibration set and a validation set (the study's
   ``[split]``: the last ``count`` samples, every k-th sample, or two time windows); a study
   whose two sets share an observation, or whose windows overlap, is refused;
2. the free parameters are fitted to the calibration set (``fit_cohort``: every patient in
   one compiled program, with the Laplace Hessian and the identifiability flag);
3. the validation set is predicted: the point prediction at the estimate, and a prediction
   interval at the study's level from ``samples`` draws of the Laplace posterior (error
   parameters included) each with its residual error drawn from the observation model;
4. per observed variable, overall and per group: RMSE and bias (prediction - observation) of
   the point predictions, and the coverage of the prediction intervals, with the binomial
   range a calibrated interval would show.

Outputs (every file readable by its owner only, holding pseudonyms and relative times only):
``report.html`` and ``report.md``, ``metrics.json`` (what the credibility report reads),
``predictions.csv`` (each held-out observation with its prediction and interval),
``estimates.csv`` and ``figures/`` (visual predictive check, observed vs predicted, individual
predictions).
"""

from __future__ import annotations

import dataclasses
import datetime
import hashlib
import json
import math
import os
import secrets
import time
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import pandas as pd
from scipy import stats

import vht
from vht import data as vdata

from ._cohort import CohortFit, fit_cohort
from ._study import Study, StudyFileError, read_study

METRICS_VERSION = 1


@dataclasses.dataclass
class ValidationResult:
    """The outcome of ``run_validation``; ``metrics`` is what ``metrics.json`` holds."""

    study: Study
    patient_data: vdata.PatientData
    calibration: pd.DataFrame
    validation: pd.DataFrame
    fit: CohortFit
    predictions: pd.DataFrame
    metrics: dict
    warnings: list[str]
    seconds: dict[str, float]
    key_source: str
    draws: np.ndarray  # predictive draws per row of ``predictions`` (rows x samples)


# -- data ------------------------------------------------------------------------------------

def _pseudonymizer(study: Study, key_file: str | Path | None, warnings: list[str]):
    chosen = key_file or (study.data_path("key_file") if "key_file" in study.data else None)
    if chosen is not None:
        pseudonyms = vdata.Pseudonymizer.from_file(chosen)
        pseudonyms.check_not_inside(study.folder)
        return pseudonyms, pseudonyms.source
    if os.environ.get(vdata._privacy.KEY_ENVIRONMENT_VARIABLE):
        pseudonyms = vdata.Pseudonymizer.from_environment()
        return pseudonyms, pseudonyms.source
    warnings.append("no pseudonym key was given (key_file, --key-file or "
                    f"${vdata._privacy.KEY_ENVIRONMENT_VARIABLE}): this run's pseudonyms come "
                    "from a random key that is not kept, so they cannot be joined with other "
                    "runs")
    return vdata.Pseudonymizer(secrets.token_hex(32)), "a random key for this run only"


def load_study_data(study: Study, pseudonyms) -> vdata.PatientData:
    """The study's patient data, ingested with its dictionary and format."""
    spec = study.data
    dictionary = vdata.DataDictionary.from_toml(study.data_path("dictionary"))
    fmt = spec["format"]
    try:
        if fmt == "tidy_csv":
            return vdata.read_tidy_csv(study.data_path("observations"), dictionary, pseudonyms,
                                       doses=study.data_path("doses") if "doses" in spec
                                       else None)
        if fmt == "nonmem":
            options = spec.get("nonmem", {})
            return vdata.read_nonmem(
                study.data_path("dataset"), dictionary, pseudonyms,
                compartments={int(k): v for k, v in options.get("compartments", {}).items()},
                dv_units=options.get("dv_units", "1"), amount_unit=options.get("amount_unit",
                                                                               "mg"),
                time_unit=options.get("time_unit", "h"))
        if fmt == "fhir":
            bundles = spec.get("bundles", [])
            return vdata.read_fhir([study.folder / b for b in bundles], dictionary, pseudonyms)
        return vdata.read_omop(study.data_path("database"), dictionary, pseudonyms)
    except KeyError as error:
        raise StudyFileError(f"{study.path.name}: data: format {fmt!r} needs the key "
                             f"{error.args[0]!r}") from None


def split_records(records: pd.DataFrame, study: Study) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Calibration and validation records: each holds its observations and every dose.
    Raises ``StudyFileError`` when an observation would fall in both."""
    split = study.split
    observations = records[records["value"].notna()].copy()
    doses = records[records["dose_amount"].notna()]
    observations["_rank"] = observations.groupby("subject").cumcount()
    counts = observations.groupby("subject")["_rank"].transform("size")
    if split.hold_out == "last":
        validate = observations["_rank"] >= counts - split.count
        calibrate = ~validate
    elif split.hold_out == "every":
        validate = (observations["_rank"] % split.every) == split.every - 1
        calibrate = ~validate
    else:  # half-open calibration window, closed validation window
        (c0, c1), (v0, v1) = split.calibrate, split.validate
        t = observations["time"]
        calibrate = (t >= c0) & (t < c1)
        validate = (t >= v0) & (t <= v1)
    key = ["subject", "variable", "time"]
    both = observations[calibrate & validate]
    shared = pd.merge(observations[calibrate][key], observations[validate][key], on=key)
    if len(both) or len(shared):
        raise StudyFileError(f"{study.path.name}: split: calibration and validation data "
                             f"overlap in {max(len(both), len(shared))} observations; they "
                             "must be disjoint")
    observations = observations.drop(columns="_rank")

    def with_doses(mask):
        out = pd.concat([observations[mask.to_numpy()], doses]).sort_values(
            ["subject", "time"], kind="stable")
        return out.reset_index(drop=True)

    return with_doses(calibrate), with_doses(validate)


# -- prediction ------------------------------------------------------------------------------

def _predictive_program(problem, level: float):
    low_q, high_q = (1.0 - level) / 2.0, 1.0 - (1.0 - level) / 2.0

    def draws(z_hat, chol, subject, key, n_samples):
        k_params, k_noise = jax.random.split(key)
        eps = jax.random.normal(k_params, (n_samples, z_hat.size))
        z = z_hat + eps @ chol.T
        predicted = jax.vmap(lambda w: problem.predict(w, subject))(z)
        params = jax.vmap(problem.constrained)(z)
        index = jnp.asarray(subject.variable_index)
        noisy = predicted
        for k, (variable, model) in enumerate(problem.observations):
            own = {p: params[f"error.{variable}.{p}"][:, None] for p in model.parameters}
            sampled = model.sample(jax.random.fold_in(k_noise, k), predicted, own)
            noisy = jnp.where(index[None, :] == k, sampled, noisy)
        ok = jnp.all(jnp.isfinite(noisy), axis=1)
        noisy = jnp.where(ok[:, None], noisy, jnp.nan)
        quantiles = jnp.nanquantile(noisy, jnp.asarray([low_q, 0.5, high_q]), axis=0)
        return problem.predict(z_hat, subject), quantiles, noisy, jnp.sum(~ok)

    return draws


def _cholesky(covariance: np.ndarray) -> np.ndarray:
    """A square root of a (possibly singular) covariance, by eigendecomposition."""
    values, vectors = np.linalg.eigh(0.5 * (covariance + covariance.T))
    return vectors * np.sqrt(np.clip(values, 0.0, None))[None, :]


def _coverage_range(n: int, level: float) -> tuple[float, float]:
    """The central 95 % range of the coverage a calibrated interval shows on n points."""
    if n == 0:
        return (math.nan, math.nan)
    low, high = stats.binom.ppf([0.025, 0.975], n, level)
    return float(low / n), float(high / n)


def _metrics_of(frame: pd.DataFrame, level: float) -> dict:
    n = int(len(frame))
    error = frame["predicted"] - frame["observed"]
    covered = (frame["observed"] >= frame["low"]) & (frame["observed"] <= frame["high"])
    low, high = _coverage_range(n, level)
    mean_observed = float(frame["observed"].mean()) if n else math.nan
    rmse = float(np.sqrt(np.mean(error ** 2))) if n else math.nan
    return {"n": n, "rmse": rmse, "bias": float(error.mean()) if n else math.nan,
            "relative_rmse": rmse / abs(mean_observed) if n and mean_observed else math.nan,
            "mean_observed": mean_observed,
            "coverage": float(covered.mean()) if n else math.nan,
            "coverage_expected": level, "coverage_range": [low, high],
            "coverage_ok": bool(n and low <= covered.mean() <= high),
            "subjects": int(frame["subject"].nunique())}


def _with_subject_parameters(records: pd.DataFrame, patient_data: vdata.PatientData,
                             study: Study) -> pd.DataFrame:
    """The records with one column per known subject parameter (``model.per_subject``): each
    subject's value from the twin its covariate builds."""
    covariate = study.per_subject[1]
    covariates = patient_data.covariates
    if covariate not in covariates.columns:
        raise StudyFileError(f"{study.path.name}: model.per_subject.covariate: {covariate!r} "
                             f"is not a covariate of the data (it has "
                             f"{list(covariates.columns)})")
    built: dict[str, dict[str, float]] = {}
    per_subject = {}
    for subject, value in covariates[covariate].items():
        if value not in built:
            built[value] = study.subject_parameters(value)
        per_subject[subject] = built[value]
    known = pd.DataFrame.from_dict(per_subject, orient="index")
    return records.join(known, on="subject")


def _covariate_summary(patient_data: vdata.PatientData, study: Study,
                       subjects: list[str]) -> dict:
    """Ranges (numeric) and counts (categorical) of the validated subjects' covariates: what
    the study's results apply to (read by the credibility report)."""
    dictionary = vdata.DataDictionary.from_toml(study.data_path("dictionary"))
    covariates = patient_data.covariates.loc[subjects]
    summary = {}
    for name in covariates.columns:
        entry = dictionary.covariates.get(name)
        values = covariates[name]
        if entry is not None and entry.unit:
            numeric = pd.to_numeric(values, errors="coerce").dropna()
            if len(numeric):
                summary[name] = {"unit": entry.unit, "min": float(numeric.min()),
                                 "max": float(numeric.max()),
                                 "median": float(numeric.median())}
        else:
            summary[name] = {"levels": {str(k): int(v) for k, v in
                                        values.astype(str).value_counts().sort_index().items()}}
    return summary


def _group_labels(patient_data: vdata.PatientData, study: Study) -> dict[str, str]:
    covariates = patient_data.covariates
    if study.groups is None:
        return {s: "all" for s in covariates.index}
    name = study.groups.covariate
    if name not in covariates.columns:
        raise StudyFileError(f"{study.path.name}: groups.covariate: {name!r} is not a "
                             f"covariate of the data (it has {list(covariates.columns)})")
    values = covariates[name]
    if study.groups.edges is None:
        return {s: str(v) for s, v in values.items()}
    edges = study.groups.edges
    labels = {}
    for subject, value in values.items():
        value = float(value)
        band = next((i for i in range(len(edges) - 1) if edges[i] <= value < edges[i + 1]),
                    None)
        labels[subject] = (f"{name} {edges[band]:g}-{edges[band + 1]:g}" if band is not None
                           else f"{name} outside bands")
    return labels


def run_validation(path_or_study: str | Path | Study, *, key_file: str | Path | None = None,
                   progress: bool = True) -> ValidationResult:
    """Run a validation study (see the module docstring)."""
    study = path_or_study if isinstance(path_or_study, Study) else read_study(path_or_study)
    seconds, warnings = {}, []

    def stage(text):
        if progress:
            print(f"  [{time.strftime('%H:%M:%S')}] {text}", flush=True)

    started = time.perf_counter()
    stage("reading the patient data")
    pseudonyms, key_source = _pseudonymizer(study, key_file, warnings)
    patient_data = load_study_data(study, pseudonyms)
    problem = study.problem
    records = patient_data.records.copy()
    factor = vht.conversion_factor(patient_data.time_unit, problem.time_unit)
    records["time"] *= factor
    records["duration"] *= factor
    if patient_data.repairs:
        warnings.append(f"ingestion repaired the data {len(patient_data.repairs)} times (see "
                        "the data section)")
    if study.per_subject is not None:
        records = _with_subject_parameters(records, patient_data, study)
    calibration, validation = split_records(records, study)
    n_free = len(problem.free)
    usable = []
    for subject in patient_data.subjects:
        n_cal = int((calibration["subject"] == subject).sum() - calibration[
            calibration["subject"] == subject]["dose_amount"].notna().sum())
        n_val = int(validation[validation["subject"] == subject]["value"].notna().sum())
        if n_cal <= n_free or n_val == 0:
            warnings.append(f"subject {subject} is left out: {n_cal} calibration and {n_val} "
                            f"validation observations (it needs more than {n_free} and at "
                            "least 1)")
        else:
            usable.append(subject)
    if not usable:
        raise StudyFileError(f"{study.path.name}: no subject has enough calibration and "
                             "validation observations under this split")
    seconds["data"] = time.perf_counter() - started

    stage(f"calibrating {len(usable)} patients in one compiled program "
          f"({', '.join(f.name for f in problem.free)})")
    started = time.perf_counter()
    fit = fit_cohort(problem, calibration, usable, starts=study.starts, steps=study.steps,
                     seed=study.seed)
    seconds["calibration"] = time.perf_counter() - started
    unidentifiable = fit.unidentifiable
    flagged = sorted({name for names in unidentifiable.values() for name in names})
    if flagged:
        warnings.append(f"the calibration data do not determine {', '.join(flagged)} for "
                        f"{sum(bool(v) for v in unidentifiable.values())} of {len(usable)} "
                        "patients (identifiability flag)")
    bad = [s for s, o in zip(usable, fit.objective) if not np.isfinite(o)]
    if bad:
        warnings.append(f"{len(bad)} calibrations failed (non-finite objective: the solves "
                        "failed at every start; model.max_steps, rtol and atol are the settings "
                        "to check)")

    stage(f"predicting the held-out data ({study.samples} posterior draws per patient, "
          f"{study.level:.0%} intervals)")
    started = time.perf_counter()
    batch = problem.read_subjects(validation, usable)
    draws = _predictive_program(problem, study.level)
    chol = np.stack([_cholesky(c) for c in fit.covariances])
    keys = jax.random.split(jax.random.PRNGKey(study.seed), len(usable))
    program = jax.jit(jax.vmap(lambda z, c, s, k: draws(z, c, s, k, study.samples)))
    point, quantiles, noisy, failures = jax.block_until_ready(
        program(jnp.asarray(fit.z), jnp.asarray(chol), batch, keys))
    seconds["prediction"] = time.perf_counter() - started
    if int(np.sum(failures)):
        warnings.append(f"{int(np.sum(failures))} posterior draws failed to solve and are left "
                        "out of the intervals")

    groups = _group_labels(patient_data, study)
    rows, row_draws = [], []
    noisy = np.asarray(noisy)
    variables = list(problem.observed)
    for i, subject in enumerate(usable):
        mask = np.asarray(batch.mask[i])
        for j in np.flatnonzero(mask):
            rows.append({"subject": subject, "group": groups.get(subject, "all"),
                         "variable": variables[int(batch.variable_index[i, j])],
                         "time": float(batch.times[i, j]) / problem.minutes_per_time_unit,
                         "observed": float(batch.values[i, j]),
                         "predicted": float(point[i, j]), "low": float(quantiles[i, 0, j]),
                         "median": float(quantiles[i, 1, j]), "high": float(quantiles[i, 2, j])})
            row_draws.append(noisy[i, :, j])
    predictions = pd.DataFrame(rows)
    units = problem.observed
    metrics = {"version": METRICS_VERSION, "study": study.title,
               "context_of_use": study.context_of_use, "question": study.question,
               "level": study.level, "split": dataclasses.asdict(study.split),
               "n_subjects": len(usable), "n_excluded": len(patient_data.subjects) - len(usable),
               "n_calibration_observations": int(calibration["value"].notna().sum()),
               "n_validation_observations": int(len(predictions)),
               "unidentifiable": {s: v for s, v in unidentifiable.items() if v},
               "free_parameters": [f.name for f in problem.free],
               "covariates": _covariate_summary(patient_data, study, usable),
               "variables": {}}
    for variable, frame in predictions.groupby("variable"):
        entry = {"unit": units[variable], "overall": _metrics_of(frame, study.level),
                 "groups": {g: _metrics_of(f, study.level) for g, f in frame.groupby("group")}}
        metrics["variables"][variable] = entry
        overall = entry["overall"]
        if not overall["coverage_ok"]:
            low, high = overall["coverage_range"]
            verdict = ("wider than the data need (conservative)" if overall["coverage"] > high
                       else "too narrow: the predictions are overconfident")
            warnings.append(f"{variable}: the {study.level:.0%} prediction intervals cover "
                            f"{overall['coverage']:.1%} of held-out observations, outside the "
                            f"{low:.1%}-{high:.1%} a calibrated interval shows on "
                            f"{overall['n']} points: {verdict}")
    metrics["seconds"] = seconds
    return ValidationResult(study, patient_data, calibration, validation, fit, predictions,
                            metrics, warnings, seconds, key_source, np.asarray(row_draws))


# -- outputs ---------------------------------------------------------------------------------

def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()[:16]


def _data_files(study: Study) -> list[Path]:
    keys = ("dictionary", "observations", "doses", "dataset", "database")
    files = [study.data_path(k) for k in keys if k in study.data]
    files += [study.folder / b for b in study.data.get("bundles", [])]
    return [f for f in files if f.is_file()]


def provenance(result: ValidationResult) -> dict:
    study = result.study
    return {"vht version": vht.__version__, "study file": study.path.name,
            "study file sha256": _sha256(study.path),
            "data files sha256": {f.name: _sha256(f) for f in _data_files(study)},
            "data format": result.patient_data.source,
            "model": study.model_description, "model hash": vht.model_hash(study.problem.twin),
            "solver tolerances": f"rtol {study.problem.rtol:g}, atol {study.problem.atol:g}",
            "pseudonym key": result.key_source, "seed": study.seed,
            "written": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds")}


def write_validation(result: ValidationResult, directory: str | Path) -> dict[str, Path]:
    """Write the report (HTML and Markdown), metrics, predictions, estimates and figures into
    ``directory``, every file readable by its owner only; return the paths by name."""
    from ._validation_report import report_sections

    directory = Path(directory)
    with vdata.private_umask():
        directory.mkdir(parents=True, exist_ok=True)
        figures_dir = directory / "figures"
        figures_dir.mkdir(exist_ok=True)
        sections, figure_files = report_sections(result, figures_dir)
        files = {"metrics": directory / "metrics.json",
                 "predictions": directory / "predictions.csv",
                 "estimates": directory / "estimates.csv",
                 "html": directory / "report.html", "markdown": directory / "report.md"}
        metrics = dict(result.metrics, provenance=provenance(result),
                       warnings=list(result.warnings))
        files["metrics"].write_text(json.dumps(metrics, indent=2, default=float) + "\n")
        result.predictions.to_csv(files["predictions"], index=False)
        estimates = result.fit.estimates.copy()
        for name in result.fit.standard_errors.columns:
            estimates[f"{name} SE"] = result.fit.standard_errors[name]
        estimates["objective"] = result.fit.objective
        estimates.index.name = "subject"
        estimates.to_csv(files["estimates"])
        title = f"Validation: {result.study.title}"
        vht.write_document(files["html"], title=title, sections=sections,
                           warnings=result.warnings, provenance=provenance(result))
        relative = {alt: f"figures/{Path(p).name}" for alt, p in figure_files.items()}
        files["markdown"].write_text(vht.markdown_document(
            title=title, sections=sections, warnings=result.warnings,
            provenance=provenance(result), figure_files=relative))
        files.update({f"figure {alt}": Path(p) for alt, p in figure_files.items()})
    vdata.make_private(directory)
    return files


def validate_main(study_path: str | Path, out: str | Path | None = None, *,
                  key_file: str | Path | None = None, progress: bool = True):
    """What ``vht validate`` runs: the study, then its outputs."""
    result = run_validation(study_path, key_file=key_file, progress=progress)
    out = Path(out) if out else Path("results") / "validation" / Path(study_path).stem
    return result, write_validation(result, out)
