"""The credibility report of a model for one context of use, in the manner of ASME V&V 40
(2018) (``vht credibility context.toml``).

V&V 40 judges a computational model's credibility for one **context of use** (what the model
is used for, and in which role) and one **question of interest**, never in general. The rigour
the evidence needs grows with the **model risk**: the model's influence on the decision and the
consequence of a wrong decision. The evidence is organised in 13 credibility factors:

| # | group | factor |
|---|---|---|
| 1 | code verification | software quality assurance |
| 2 | code verification | numerical code verification |
| 3 | calculation verification | discretization error |
| 4 | calculation verification | numerical solver error |
| 5 | calculation verification | use error |
| 6 | validation: computational model | model form |
| 7 | validation: computational model | model inputs |
| 8 | validation: comparator | test samples |
| 9 | validation: comparator | test conditions |
| 10 | validation: assessment | equivalency of input parameters |
| 11 | validation: assessment | output comparison |
| 12 | applicability | relevance of the quantities of interest |
| 13 | applicability | relevance of the validation activities to the context of use |

This module reads a context file (below), takes each factor's numbers from the file that holds
them, computes the one piece of evidence no file holds (a solver-tolerance sweep on the
context's reference scenario), and writes ``credibility.md``, ``credibility.html`` and
``credibility.json``. Every factor row names its source. A factor without evidence says
"not assessed" and why; nothing is filled in. Text evidence a context file states for a factor
is reported as "stated, not measured".

Where the numbers come from:

- a validation run's ``metrics.json`` (``vht validate``, see ``calibration._validation``) and
  the ``estimates.csv`` beside it: factors 6, 7, 8, 10, 11, 12, 13;
- the latest test run's ``summary.json`` (``tests/run_suite.py``): the pass/fail counts for
  factor 1, and the measurements tests record with ``record_property`` for any factor the
  context's ``[[measurements]]`` name (numerical code verification, discretization error);
- the tolerance sweep this command runs: factor 4;
- the validation study file (TOML, read as text, nothing built): the starting values, priors
  and error models of factor 7, and the solver tolerances when ``metrics.json`` lacks them.

The context file (paths relative to ``root``, which is relative to the context file and
defaults to its folder; the shipped files set ``root = "../../.."``, the repository root)::

    title = "Theophylline exposure after one oral dose"
    root = "../../.."

    [context]                       # required: both non-empty, else CredibilityError
    context_of_use = "..."
    question = "..."

    [model]
    name = "one-compartment oral PK (physiology_models.twins.oral_pk)"
    source = "physiology_models/pharmacology/one_compartment.py"   # where the assumptions are
    assumptions = "..."             # one or two sentences from its docstring
    quantity_of_interest = "drug.concentration"

    [risk]                          # low, medium or high, each with a sentence why
    model_influence = "medium"
    model_influence_why = "..."
    decision_consequence = "medium"
    decision_consequence_why = "..."

    [evidence]
    validation = "results/validation/theoph/metrics.json"
    study = "experiments/validation/studies/theoph.toml"
    test_summary = ".cache/reports/summary.json"          # the default

    [[measurements]]                # test measurements that are evidence for a factor
    factor = "numerical_code_verification"
    test = "tests.test_pk_analytic::test_one_compartment_oral_matches_closed_form[ka-ne-ke]"
    key = "max_relative_error"
    at_most = 1e-8                  # or at_least; optional
    what = "one-compartment oral PK against its closed form"

    [sweep]                         # the reference scenario of factor 4
    kind = "oral_dose"              # or "uva_padova_day"
    ...                             # see _sweep_case
    rtols = [1e-4, 1e-6, 1e-8]
    reference_rtol = 1e-12
    atol_per_rtol = 0.01            # atol = rtol x this (the Problem default 1e-10 / 1e-8)

    [goals.output_comparison]       # required credibility goals, per factor (GOAL_KEYS)
    relative_rmse_at_most = 0.3
    coverage_in_range = true

    [applicability.population]      # the population the context of use is for
    weight = ["50 kg", "90 kg"]     # numeric: [low, high]; categorical: a list of levels

    [factors.test_conditions]       # text evidence no file holds: "stated, not measured"
    evidence = "..."
    source = "..."

Errors are ``CredibilityError`` naming the file, line and key (``theoph_exposure.toml:7:
context.question: missing or empty: ...``); ``vht credibility`` exits with status 2 on them.
A missing evidence file is not an error: the factors that need it say "not assessed".
"""

from __future__ import annotations

import dataclasses
import datetime
import hashlib
import inspect
import json
import math
import re
import time
import tomllib
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

import vht
from vht._whatif_file import key_lines, line_of, quantity_value
from vht._whatif_file import only_keys as _only

REPORT_VERSION = 1

FACTORS: tuple[tuple[str, str, str], ...] = (
    ("software_quality_assurance", "code verification", "software quality assurance"),
    ("numerical_code_verification", "code verification", "numerical code verification"),
    ("discretization_error", "calculation verification", "discretization error"),
    ("numerical_solver_error", "calculation verification", "numerical solver error"),
    ("use_error", "calculation verification", "use error"),
    ("model_form", "validation: computational model", "model form"),
    ("model_inputs", "validation: computational model", "model inputs"),
    ("test_samples", "validation: comparator", "test samples"),
    ("test_conditions", "validation: comparator", "test conditions"),
    ("equivalency_of_input_parameters", "validation: assessment",
     "equivalency of input parameters"),
    ("output_comparison", "validation: assessment", "output comparison"),
    ("relevance_of_quantities_of_interest", "applicability",
     "relevance of the quantities of interest"),
    ("relevance_of_validation_activities", "applicability",
     "relevance of the validation activities to the context of use"),
)
FACTOR_IDS = tuple(f[0] for f in FACTORS)
LEVELS = ("low", "medium", "high")

# The goals each factor can state: key -> kind. Every factor also takes ``within_bounds``
# (every [[measurements]] entry of the factor present and within its bound).
GOAL_KEYS: dict[str, dict[str, str]] = {
    "software_quality_assurance": {"failed_at_most": "int", "age_days_at_most": "number"},
    "numerical_solver_error": {"fraction_of_rmse_at_most": "number"},
    "model_form": {"abs_relative_bias_at_most": "number",
                   "unidentifiable_fraction_at_most": "number"},
    "test_samples": {"subjects_at_least": "int", "validation_observations_at_least": "int"},
    "output_comparison": {"relative_rmse_at_most": "number", "rmse_at_most": "quantity",
                          "abs_relative_bias_at_most": "number", "coverage_in_range": "bool"},
    "relevance_of_quantities_of_interest": {"qoi_validated": "bool"},
    "relevance_of_validation_activities": {"population_covered": "bool"},
}

_NOT_DOCUMENTED = {
    "use_error": "no file documents use error (the inputs entered, the settings chosen, a "
                 "second analyst repeating the run); state it with [factors.use_error] evidence",
    "test_conditions": "metrics.json records no test conditions (how, where and with which "
                       "assay the comparator data were measured); state them with "
                       "[factors.test_conditions] evidence",
    "discretization_error": "the model is a system of ODEs without spatial discretization; its "
                            "time discretization is the adaptive solver's, whose error is "
                            "factor 4; name fixed-step convergence tests in [[measurements]] or "
                            "state evidence in [factors.discretization_error]",
    "numerical_code_verification": "the context file names no test measurements for this "
                                   "factor ([[measurements]] with factor = "
                                   "\"numerical_code_verification\")",
}


class CredibilityError(ValueError):
    """A context file that cannot be read, lacks its context of use or question of interest,
    or states something that does not make sense."""


# -- the context file --------------------------------------------------------------------------

@dataclasses.dataclass(frozen=True)
class Measurement:
    """A test measurement (``summary.json``'s ``measurements[test][key]``) cited for a factor."""

    factor: str
    test: str
    key: str
    at_most: float | None
    at_least: float | None
    what: str


@dataclasses.dataclass
class SweepCase:
    """The reference scenario of the tolerance sweep, built and ready to simulate."""

    description: str
    twin: vht.Twin
    scenario: vht.Scenario
    times: np.ndarray  # save times, minutes
    t1: float
    output: str
    unit: str
    rtols: tuple[float, ...]
    reference_rtol: float
    atol_per_rtol: float


@dataclasses.dataclass
class Context:
    """A parsed context file (see the module docstring)."""

    path: Path
    title: str
    context_of_use: str
    question: str
    model: dict[str, str]
    risk: dict[str, str] | None
    root: Path
    validation: Path | None
    study: Path | None
    test_summary: Path
    measurements: tuple[Measurement, ...]
    sweep: SweepCase | None
    goals: dict[str, dict[str, Any]]
    stated: dict[str, dict[str, str]]
    population: dict[str, Any]
    raw: dict[str, Any]

    def shown(self, path: Path | None) -> str:
        """A path as the report shows it: relative to the root where it lies inside."""
        if path is None:
            return "none"
        try:
            return path.resolve().relative_to(self.root.resolve()).as_posix()
        except ValueError:
            return str(path)


def _failer(path: Path, lines: dict[str, int]):
    def fail(key: str, message: str) -> CredibilityError:
        line = line_of(lines, key)
        where = f"{path.name}:{line}" if line else path.name
        return CredibilityError(f"{where}: {key}: {message}")
    return fail


def _text(table: Mapping, key: str, where: str, fail, default: str = "") -> str:
    value = table.get(key, default)
    if not isinstance(value, str):
        raise fail(f"{where}.{key}", f"must be text, not {value!r}")
    return value.strip()


def read_context(path: str | Path) -> Context:
    """Parse and check a context file; raises ``CredibilityError``."""
    path = Path(path)
    if not path.is_file():
        raise CredibilityError(f"no context file at {path}")
    text = path.read_text(encoding="utf-8")
    try:
        raw = tomllib.loads(text)
    except tomllib.TOMLDecodeError as error:
        raise CredibilityError(f"{path.name}: not valid TOML: {error}") from None
    fail = _failer(path, key_lines(text))
    _only(raw, {"title", "root", "context", "model", "risk", "evidence", "measurements", "sweep",
                "goals", "applicability", "factors"}, "", fail)

    # The context of use and the question come first: without them nothing else is judged.
    context = raw.get("context", {})
    if not isinstance(context, Mapping):
        raise fail("context", "must be a table with context_of_use and question")
    _only(context, {"context_of_use", "question"}, "context", fail)
    for key in ("context_of_use", "question"):
        value = context.get(key)
        if not isinstance(value, str) or not value.strip():
            raise fail(f"context.{key}", "missing or empty: V&V 40 judges a model's "
                       "credibility for one context of use and one question of interest; "
                       "state both in [context]")

    root = path.parent / _text(raw, "root", "", fail, ".")
    model = raw.get("model", {})
    _only(model, {"name", "source", "assumptions", "quantity_of_interest"}, "model", fail)
    model = {k: _text(model, k, "model", fail) for k in model}
    risk = _risk(raw["risk"], fail) if "risk" in raw else None

    evidence = raw.get("evidence", {})
    _only(evidence, {"validation", "study", "test_summary"}, "evidence", fail)

    def resolve(key: str, default: str | None = None) -> Path | None:
        value = _text(evidence, key, "evidence", fail, default or "")
        return (root / value) if value else None

    measurements = _measurements(raw.get("measurements", []), fail)
    goals = _goals(raw.get("goals", {}), measurements, fail)
    factors = raw.get("factors", {})
    _only(factors, set(FACTOR_IDS), "factors", fail)
    stated = {}
    for factor, entry in factors.items():
        _only(entry, {"evidence", "source"}, f"factors.{factor}", fail)
        stated_text = _text(entry, "evidence", f"factors.{factor}", fail)
        if not stated_text:
            raise fail(f"factors.{factor}.evidence", "missing or empty")
        stated[factor] = {"evidence": stated_text,
                          "source": _text(entry, "source", f"factors.{factor}", fail)}
    applicability = raw.get("applicability", {})
    _only(applicability, {"population"}, "applicability", fail)
    population = applicability.get("population", {})
    _only(population, set(population), "applicability.population", fail)
    for name, spec in population.items():
        if not isinstance(spec, list) or not spec:
            raise fail(f"applicability.population.{name}", "give [\"low\", \"high\"] with "
                       "units for a numeric covariate, or a list of levels")
    sweep = _sweep_case(raw["sweep"], fail) if "sweep" in raw else None
    return Context(path=path, title=_text(raw, "title", "", fail, path.stem),
                   context_of_use=context["context_of_use"].strip(),
                   question=context["question"].strip(), model=model, risk=risk, root=root,
                   validation=resolve("validation"), study=resolve("study"),
                   test_summary=resolve("test_summary", ".cache/reports/summary.json"),
                   measurements=measurements, sweep=sweep, goals=goals, stated=stated,
                   population=dict(population), raw=raw)


def _risk(table, fail) -> dict[str, str]:
    keys = ("model_influence", "decision_consequence")
    _only(table, {*keys, *(f"{k}_why" for k in keys)}, "risk", fail)
    risk = {}
    for key in keys:
        level = table.get(key)
        if level not in LEVELS:
            raise fail(f"risk.{key}", f"must be one of {list(LEVELS)}, not {level!r}")
        why = _text(table, f"{key}_why", "risk", fail)
        if not why:
            raise fail(f"risk.{key}_why", "missing: say in a sentence why the level is "
                       f"{level}")
        risk[key], risk[f"{key}_why"] = level, why
    # The 3 x 3 map of influence and consequence with five levels, as V&V 40's example map.
    risk["level"] = str(LEVELS.index(risk["model_influence"])
                        + LEVELS.index(risk["decision_consequence"]) + 1)
    return risk


def _number(value, key: str, fail) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise fail(key, f"must be a number, not {value!r}")
    return float(value)


def _measurements(entries, fail) -> tuple[Measurement, ...]:
    if not isinstance(entries, list):
        raise fail("measurements", "must be an array of tables ([[measurements]])")
    out = []
    for i, entry in enumerate(entries):
        where = f"measurements[{i}]"
        _only(entry, {"factor", "test", "key", "at_most", "at_least", "what"}, where, fail)
        factor = entry.get("factor")
        if factor not in FACTOR_IDS:
            raise fail(f"{where}.factor", f"must be one of {list(FACTOR_IDS)}, not {factor!r}")
        for key in ("test", "key"):
            if not _text(entry, key, where, fail):
                raise fail(f"{where}.{key}", "missing: the test id and the measurement key as "
                           "summary.json's measurements list them")
        bounds = {k: _number(entry[k], f"{where}.{k}", fail) if k in entry else None
                  for k in ("at_most", "at_least")}
        out.append(Measurement(factor, entry["test"].strip(), entry["key"].strip(),
                               bounds["at_most"], bounds["at_least"],
                               _text(entry, "what", where, fail) or entry["test"].strip()))
    return tuple(out)


def _goals(table, measurements, fail) -> dict[str, dict[str, Any]]:
    _only(table, set(FACTOR_IDS), "goals", fail)
    goals = {}
    for factor, spec in table.items():
        where = f"goals.{factor}"
        allowed = dict(GOAL_KEYS.get(factor, {}), within_bounds="bool")
        _only(spec, set(allowed), where, fail)
        if "within_bounds" in spec and not any(m.factor == factor for m in measurements):
            raise fail(f"{where}.within_bounds", "the context names no [[measurements]] for "
                       f"{factor}")
        checked = {}
        for key, value in spec.items():
            kind = allowed[key]
            if kind == "bool" and not isinstance(value, bool):
                raise fail(f"{where}.{key}", f"must be true or false, not {value!r}")
            if kind == "int" and (isinstance(value, bool) or not isinstance(value, int)):
                raise fail(f"{where}.{key}", f"must be a whole number, not {value!r}")
            if kind == "number":
                value = _number(value, f"{where}.{key}", fail)
            if kind == "quantity" and not isinstance(value, str):
                raise fail(f"{where}.{key}", "give a quantity with its unit, such as "
                           "\"1 mg/L\"")
            checked[key] = value
        goals[factor] = checked
    return goals


def _sweep_case(spec, fail) -> SweepCase:
    """The reference scenario: ``kind = "oral_dose"`` (a builder of physiology_models.twins,
    ``parameters``, ``dose = { state, amount }`` at time 0, ``duration``, ``samples``) or
    ``kind = "uva_padova_day"`` (``patient``, ``meals = [[minute, grams], ...]`` each with a
    bolus of grams / CR from Quest.csv, ``duration``, saved every minute)."""
    common = {"kind", "description", "output", "duration", "rtols", "reference_rtol",
              "atol_per_rtol"}
    kind = spec.get("kind") if isinstance(spec, Mapping) else None
    if kind == "oral_dose":
        _only(spec, common | {"twin", "arguments", "parameters", "dose", "samples"}, "sweep",
              fail)
        from physiology_models import twins

        name = spec.get("twin")
        builder = getattr(twins, str(name), None)
        if not callable(builder) or str(name).startswith("_"):
            raise fail("sweep.twin", f"no twin builder {name!r} in physiology_models.twins")
        try:
            twin = builder(**spec.get("arguments", {}))
        except (TypeError, ValueError) as error:
            raise fail("sweep.arguments", str(error)) from None
        info = twin.parameter_info()
        values = {}
        for parameter, raw in spec.get("parameters", {}).items():
            if parameter not in info:
                raise fail(f"sweep.parameters.{parameter}", "not a parameter of the twin")
            values[parameter] = quantity_value(raw, info[parameter].unit,
                                               f"sweep.parameters.{parameter}", fail)
        twin = twin.replace(values) if values else twin
        dose = spec.get("dose", {})
        _only(dose, {"state", "amount"}, "sweep.dose", fail)
        state = dose.get("state")
        if state not in twin.state_names:
            raise fail("sweep.dose.state", f"{state!r} is not a state of the twin")
        amount = quantity_value(dose.get("amount"), twin.state_units[twin.state_index(state)],
                                "sweep.dose.amount", fail)
        scenario = vht.Scenario([vht.OralDose(state, amount, time=0.0)])
        samples = spec.get("samples", 97)
        if isinstance(samples, bool) or not isinstance(samples, int) or samples < 2:
            raise fail("sweep.samples", f"must be a whole number of 2 or more, not {samples!r}")
        t1 = quantity_value(spec.get("duration", "24 h"), "min", "sweep.duration", fail)
        times = np.linspace(0.0, t1, samples)
    elif kind == "uva_padova_day":
        _only(spec, common | {"patient", "meals"}, "sweep", fail)
        from physiology_models.glucose_insulin import uva_padova as uva

        patient = spec.get("patient")
        if patient not in uva.patient_names():
            raise fail("sweep.patient", f"{patient!r} is not one of simglucose's 30 patients")
        twin = uva.patient_twin(patient)
        meals = spec.get("meals", [])
        if not isinstance(meals, list) or not all(isinstance(m, list) and len(m) == 2
                                                  for m in meals):
            raise fail("sweep.meals", "give [[minute, grams], ...]")
        try:
            scenario = uva.day_scenario([(float(m), float(g)) for m, g in meals],
                                        uva.quest(patient)["CR"])
        except ValueError as error:
            raise fail("sweep.meals", str(error)) from None
        # The one-minute clock needs concrete t0 and t1; save every minute of the day.
        t1 = quantity_value(spec.get("duration", "24 h"), "min", "sweep.duration", fail)
        times = np.arange(0.0, t1, 1.0)
    else:
        raise fail("sweep.kind", f"must be \"oral_dose\" or \"uva_padova_day\", not {kind!r}")
    units = dict(zip(twin.state_names, twin.state_units)) | dict(zip(twin.signal_names,
                                                                     twin.signal_units))
    output = spec.get("output")
    if output not in units:
        raise fail("sweep.output", f"{output!r} is neither a state nor a signal of the twin")
    rtols = spec.get("rtols", [1e-4, 1e-6, 1e-8])
    if not isinstance(rtols, list) or not rtols:
        raise fail("sweep.rtols", "give a list of relative tolerances")
    rtols = tuple(_number(r, "sweep.rtols", fail) for r in rtols)
    reference = _number(spec.get("reference_rtol", 1e-12), "sweep.reference_rtol", fail)
    if not all(reference < r < 1 for r in rtols):
        raise fail("sweep.rtols", f"every tolerance must lie between reference_rtol "
                   f"{reference:g} and 1")
    return SweepCase(description=_text(spec, "description", "sweep", fail) or kind,
                     twin=twin, scenario=scenario, times=times, t1=float(t1), output=output,
                     unit=units[output], rtols=tuple(sorted(rtols, reverse=True)),
                     reference_rtol=reference,
                     atol_per_rtol=_number(spec.get("atol_per_rtol", 0.01),
                                           "sweep.atol_per_rtol", fail))


# -- evidence files ------------------------------------------------------------------------------

@dataclasses.dataclass
class Evidence:
    """What the evidence files hold (``None`` where a file is absent)."""

    metrics: dict | None
    estimates: pd.DataFrame | None
    summary: dict | None
    summary_written: datetime.datetime | None
    study: dict | None
    tolerances: tuple[float, float, str]   # rtol, atol of the validation solves, and whence


def _read_json(path: Path | None) -> dict | None:
    if path is None or not path.is_file():
        return None
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as error:
        raise CredibilityError(f"{path}: not valid JSON: {error}") from None


def _validation_tolerances(context: Context, metrics: dict | None, study: dict | None
                           ) -> tuple[float, float, str]:
    """The tolerances the validation solved with: what the run recorded, else what its study
    file states, else the study reader's default, else the Problem's."""
    recorded = ((metrics or {}).get("provenance") or {}).get("solver tolerances", "")
    match = re.fullmatch(r"rtol ([0-9.eE+-]+), atol ([0-9.eE+-]+)", str(recorded))
    if match:
        return (float(match.group(1)), float(match.group(2)),
                f"{context.shown(context.validation)} (provenance)")
    model = (study or {}).get("model", {})
    if "rtol" in model and "atol" in model:
        return float(model["rtol"]), float(model["atol"]), context.shown(context.study)
    if context.study is not None and context.study.is_file():
        from ._study import read_study

        try:
            problem = read_study(context.study).problem
            return problem.rtol, problem.atol, f"{context.shown(context.study)} (as read)"
        except Exception:  # noqa: BLE001 - a study that does not read is vht validate's to
            pass           # report; here it only means the tolerances fall back (and say so)
    from ._problem import Problem

    defaults = inspect.signature(Problem.__init__).parameters
    return (float(defaults["rtol"].default), float(defaults["atol"].default),
            "the Problem defaults (calibration/_problem.py)")


def read_evidence(context: Context) -> Evidence:
    metrics = _read_json(context.validation)
    estimates = None
    if context.validation is not None:
        estimates_file = context.validation.parent / "estimates.csv"
        if estimates_file.is_file():
            estimates = pd.read_csv(estimates_file, index_col=0)
    summary = _read_json(context.test_summary)
    written = (datetime.datetime.fromtimestamp(context.test_summary.stat().st_mtime,
                                               datetime.UTC) if summary is not None else None)
    study = None
    if context.study is not None and context.study.is_file():
        try:
            study = tomllib.loads(context.study.read_text(encoding="utf-8"))
        except tomllib.TOMLDecodeError:
            study = None
    return Evidence(metrics, estimates, summary, written, study,
                    _validation_tolerances(context, metrics, study))


# -- the tolerance sweep -------------------------------------------------------------------------

def run_sweep(case: SweepCase, validation_tolerance: tuple[float, float] | None = None,
              progress: bool = False) -> dict:
    """Solve the reference scenario at each tolerance (and at the validation's), and compare
    the output with a solve at ``reference_rtol``: the maximum absolute error and that error
    relative to the largest reference value (the output is 0 at a dose's start, so a pointwise
    relative error would divide by zero)."""
    def solve(rtol: float, atol: float):
        started = time.perf_counter()
        solution = vht.simulate(case.twin, case.scenario, ts=case.times, t0=0.0, t1=case.t1,
                                rtol=rtol, atol=atol, throw=False)
        values = np.asarray(solution[case.output])
        ok = int(solution.status) == int(vht.Status.OK)
        return values, ok, int(np.sum(np.asarray(solution.n_steps))), \
            time.perf_counter() - started

    tolerances = [(r, r * case.atol_per_rtol, "sweep") for r in case.rtols]
    if validation_tolerance is not None:
        match = [i for i, (r, a, _) in enumerate(tolerances)
                 if (r, a) == tuple(validation_tolerance)]
        if match:
            tolerances[match[0]] = (*tolerances[match[0]][:2], "sweep, validation")
        else:
            tolerances.append((*validation_tolerance, "validation"))
    tolerances.sort(key=lambda row: -row[0])
    reference_atol = case.reference_rtol * case.atol_per_rtol
    if progress:
        print(f"  [{time.strftime('%H:%M:%S')}] tolerance sweep: {case.description} "
              f"({len(tolerances) + 1} solves)", flush=True)
    reference, ok, steps, seconds = solve(case.reference_rtol, reference_atol)
    if not ok:
        raise CredibilityError(f"the sweep's reference solve at rtol {case.reference_rtol:g} "
                               "failed; loosen sweep.reference_rtol")
    peak = float(np.max(np.abs(reference)))
    rows = []
    for rtol, atol, role in tolerances:
        values, ok, n_steps, secs = solve(rtol, atol)
        error = float(np.max(np.abs(values - reference))) if ok else math.nan
        rows.append({"rtol": rtol, "atol": atol, "role": role, "ok": ok, "steps": n_steps,
                     "max_abs_error": error, "max_relative_error": error / peak if peak
                     else math.nan, "seconds": secs})
    return {"description": case.description, "output": case.output, "unit": case.unit,
            "reference": {"rtol": case.reference_rtol, "atol": reference_atol, "steps": steps,
                          "peak": peak}, "rows": rows}


# -- the factors ---------------------------------------------------------------------------------

@dataclasses.dataclass
class Factor:
    """One row of the report."""

    number: int
    id: str
    group: str
    name: str
    status: str          # "assessed" or "not assessed"
    basis: str           # "measured", "computed", "by construction", "stated, not measured", ""
    evidence: str
    source: str
    goal: str = ""       # the required goal and whether it is met ("" when none is stated)
    goal_met: bool | None = None
    numbers: dict = dataclasses.field(default_factory=dict)


def _g(x) -> str:
    """A number for people: three significant digits."""
    if x is None or (isinstance(x, float) and not math.isfinite(x)):
        return "n/a"
    return f"{x:.3g}"


def _pct(x) -> str:
    return "n/a" if x is None or not math.isfinite(x) else f"{100 * x:.1f} %"


def _evaluate(checks: list[tuple[str, bool | None, str]]) -> tuple[str, bool | None]:
    """Goal text and verdict from (goal, met or None when it cannot be shown, value)."""
    if not checks:
        return "", None
    parts = [f"{goal}: {'met' if met else 'not met' if met is False else 'not shown'}"
             + (f" ({value})" if value else "") for goal, met, value in checks]
    verdicts = [met for _, met, _ in checks]
    met = False if False in verdicts else (None if None in verdicts else True)
    return "; ".join(parts), met


class _Assessor:
    """Builds the 13 factor rows of one context from its evidence."""

    def __init__(self, context: Context, evidence: Evidence, sweep: dict | None,
                 sweep_skipped: bool):
        self.context, self.evidence, self.sweep = context, evidence, sweep
        self.sweep_skipped = sweep_skipped
        self.metrics = evidence.metrics
        self.validation_source = context.shown(context.validation)
        study = context.shown(context.study) if context.study else "<study file>"
        if context.validation is None:
            self.no_validation = ("the context file names no validation run ([evidence] "
                                  "validation)")
        else:
            self.no_validation = (f"no validation run at {self.validation_source}; run "
                                  f"`vht validate {study}`")
        qoi = context.model.get("quantity_of_interest", "")
        variables = (self.metrics or {}).get("variables", {})
        self.qoi = qoi if qoi in variables else None
        self.variable = self.qoi or next(iter(variables), None)

    # helpers

    def row(self, factor: str, status: str, basis: str, evidence: str, source: str,
            checks=(), numbers=None) -> Factor:
        number = FACTOR_IDS.index(factor) + 1
        _, group, name = FACTORS[number - 1]
        stated = self.context.stated.get(factor)
        if stated:
            text = f"stated, not measured: {stated['evidence']}"
            where = stated["source"] or self.context.shown(self.context.path)
            if status == "assessed":
                evidence, source = f"{evidence} {text}", f"{source}; {where}"
                basis = f"{basis}; stated, not measured"
            else:
                evidence, source, basis, status = text, where, "stated, not measured", \
                    "assessed"
        if status == "not assessed" and not evidence.startswith("not assessed"):
            evidence = f"not assessed: {evidence}"
        checks = list(checks)
        if factor in self.context.goals and status == "not assessed":
            checks = [(goal, None, "factor not assessed") for goal, _, _ in checks] or [
                (", ".join(f"{k} = {v}" for k, v in self.context.goals[factor].items()), None,
                 "factor not assessed")]
        goal, met = _evaluate(checks)
        return Factor(number, factor, group, name, status, basis, evidence, source, goal, met,
                      numbers or {})

    def goal(self, factor: str, key: str):
        return self.context.goals.get(factor, {}).get(key)

    def measured(self, factor: str) -> tuple[list[str], list[tuple], dict, bool]:
        """Texts, goal checks and numbers of the factor's [[measurements]]; the last value
        says whether any of them is in the summary."""
        entries = [m for m in self.context.measurements if m.factor == factor]
        recorded = (self.evidence.summary or {}).get("measurements", {})
        texts, numbers, found, within = [], {}, False, True
        for m in entries:
            raw = recorded.get(m.test, {}).get(m.key)
            if raw is None:
                texts.append(f"{m.what}: {m.key} absent from the summary ({m.test})")
                within = False
                continue
            found = True
            try:
                value = float(raw)
            except (TypeError, ValueError):
                value = None
            shown = _g(value) if value is not None else str(raw)
            bounds = []
            if m.at_most is not None:
                ok = value is not None and value <= m.at_most
                bounds.append(f"<= {m.at_most:g}: {'within' if ok else 'NOT within'}")
                within &= ok
            if m.at_least is not None:
                ok = value is not None and value >= m.at_least
                bounds.append(f">= {m.at_least:g}: {'within' if ok else 'NOT within'}")
                within &= ok
            texts.append(f"{m.what}: {m.key} = {shown}"
                         + (f" ({'; '.join(bounds)})" if bounds else ""))
            numbers[f"{m.test} {m.key}"] = value if value is not None else raw
        checks = []
        if self.goal(factor, "within_bounds") is not None and entries:
            wanted = self.goal(factor, "within_bounds")
            present = sum(recorded.get(m.test, {}).get(m.key) is not None for m in entries)
            checks.append(("every named measurement present and within its bound",
                           within == wanted if found else None,
                           f"{present} of {len(entries)} present"))
        return texts, checks, numbers, found

    def summary_source(self) -> str:
        written = self.evidence.summary_written
        return (f"{self.context.shown(self.context.test_summary)} (written "
                f"{written:%Y-%m-%d %H:%M} UTC)" if written else
                self.context.shown(self.context.test_summary))

    def no_summary(self) -> str:
        return (f"no test summary at {self.context.shown(self.context.test_summary)}; run "
                "`.venv/bin/python tests/run_suite.py`")

    def failures_note(self) -> str:
        s = self.evidence.summary or {}
        failed = s.get("main", {}).get("failed", 0) + s.get("mpi", {}).get("failed", 0)
        return (f" The run had {failed} failed tests; summary.json does not say which, so a "
                "measurement may come from a failed test." if failed else "")

    # the factors

    def software_quality_assurance(self) -> Factor:
        factor = "software_quality_assurance"
        s = self.evidence.summary
        if s is None:
            return self.row(factor, "not assessed", "", self.no_summary(), "",
                            self._sqa_checks(None, None))
        main, mpi = s.get("main", {}), s.get("mpi", {})
        age = (datetime.datetime.now(datetime.UTC) - self.evidence.summary_written
               ).total_seconds() / 86400.0
        failed = main.get("failed", 0) + mpi.get("failed", 0)
        mpi_text = (f"MPI leg (mpirun) {mpi.get('passed', 0)} passed, {mpi.get('failed', 0)} "
                    f"failed, {mpi.get('skipped', 0)} skipped" if sum(mpi.values()) else
                    "MPI leg not run")
        problems = s.get("problems", [])
        text = (f"test suite run {age:.1f} days before this report: main leg "
                f"{main.get('passed', 0)} passed, {main.get('failed', 0)} failed, "
                f"{main.get('skipped', 0)} skipped; {mpi_text}; "
                f"{len(s.get('measurements', {}))} tests recorded measurements; "
                + (f"problems: {'; '.join(problems)}" if problems else "no problems reported")
                + (f"; wall time {s['wall_time_s']:g} s" if "wall_time_s" in s else "") + ".")
        texts, checks, numbers, _ = self.measured(factor)
        if texts:
            text += " " + "; ".join(texts) + "."
        numbers.update(passed=main.get("passed", 0), failed=failed,
                       skipped=main.get("skipped", 0), mpi_passed=mpi.get("passed", 0),
                       age_days=age)
        return self.row(factor, "assessed", "measured", text, self.summary_source(),
                        self._sqa_checks(failed, age) + checks, numbers)

    def _sqa_checks(self, failed, age) -> list[tuple]:
        checks = []
        limit = self.goal("software_quality_assurance", "failed_at_most")
        if limit is not None:
            checks.append((f"failed tests <= {limit}", None if failed is None else
                           failed <= limit, "" if failed is None else f"{failed}"))
        limit = self.goal("software_quality_assurance", "age_days_at_most")
        if limit is not None:
            checks.append((f"test run at most {limit:g} days old", None if age is None else
                           age <= limit, "" if age is None else f"{age:.1f} days"))
        return checks

    def measurement_factor(self, factor: str) -> Factor:
        entries = [m for m in self.context.measurements if m.factor == factor]
        if not entries:
            reason = _NOT_DOCUMENTED.get(factor, "the context file names no test "
                                         f"measurements for {factor}")
            return self.row(factor, "not assessed", "", reason, "")
        texts, checks, numbers, found = self.measured(factor)
        if self.evidence.summary is None:
            return self.row(factor, "not assessed", "", self.no_summary(), "", checks)
        if not found:
            return self.row(factor, "not assessed", "", f"none of the {len(entries)} test "
                            f"measurements named for this factor is in "
                            f"{self.context.shown(self.context.test_summary)}: "
                            + "; ".join(texts), self.summary_source(), checks)
        return self.row(factor, "assessed", "measured", "; ".join(texts) + "."
                        + self.failures_note(), self.summary_source(), checks, numbers)

    def numerical_solver_error(self) -> Factor:
        factor = "numerical_solver_error"
        limit = self.goal(factor, "fraction_of_rmse_at_most")
        goal_text = (f"error at the validation tolerance <= {limit:g} x validation RMSE"
                     if limit is not None else None)
        if self.sweep is None:
            reason = ("sweep skipped (--no-sweep)" if self.sweep_skipped else
                      "the context file has no [sweep] reference scenario")
            return self.row(factor, "not assessed", "", reason, "",
                            [(goal_text, None, "")] if goal_text else [])
        sweep, unit = self.sweep, self.sweep["unit"]
        parts = [f"reference scenario: {sweep['description']}; maximum error of "
                 f"{sweep['output']} against rtol {sweep['reference']['rtol']:g} "
                 f"(peak {_g(sweep['reference']['peak'])} {unit}):"]
        for r in sweep["rows"]:
            label = "validation tolerance " if "validation" in r["role"] else ""
            parts.append(f"{label}rtol {r['rtol']:g} (atol {r['atol']:g}): "
                         + (f"{_g(r['max_abs_error'])} {unit} ({_g(r['max_relative_error'])} "
                            "of the peak)" if r["ok"] else "the solve failed") + ";")
        swept = [r for r in sweep["rows"] if "sweep" in r["role"] and r["ok"]]
        for loose, tight in zip(swept, swept[1:]):
            # An error that tighter tolerances do not shrink is a floor (a non-smooth term
            # such as a clamp switching at a slightly different time, or the reference's own
            # error): worth saying, since it bounds what any tolerance can achieve.
            if tight["max_abs_error"] > 0.5 * loose["max_abs_error"]:
                parts.append(f"the error does not fall from rtol {loose['rtol']:g} to "
                             f"{tight['rtol']:g} ({_g(loose['max_abs_error'])} vs "
                             f"{_g(tight['max_abs_error'])} {unit}): a floor that tighter "
                             "tolerances do not remove;")
        used = next(r for r in sweep["rows"] if "validation" in r["role"])
        rmse = None
        if self.metrics is not None and self.variable == sweep["output"]:
            rmse = self.metrics["variables"][self.variable]["overall"]["rmse"]
        fraction = used["max_abs_error"] / rmse if rmse else None
        if fraction is not None:
            parts.append(f"the validation tolerance's error is {_g(100 * fraction)} % of the "
                         f"validation RMSE {_g(rmse)} {unit}: "
                         + ("well below it (< 1 %)." if fraction < 0.01 else
                            "NOT well below it (>= 1 %)."))
        else:
            parts.append("no validation RMSE of this output to compare it with ("
                         + (self.no_validation if self.metrics is None else
                            f"metrics.json has no {sweep['output']}") + ").")
        checks = [(goal_text, None if fraction is None else fraction <= limit,
                   "" if fraction is None else f"{_g(fraction)}")] if goal_text else []
        numbers = {"validation_rtol": used["rtol"], "validation_atol": used["atol"],
                   "validation_max_abs_error": used["max_abs_error"],
                   "fraction_of_rmse": fraction}
        source = (f"vht credibility (tolerance sweep, this run); validation tolerance from "
                  f"{self.evidence.tolerances[2]}")
        return self.row(factor, "assessed", "computed", " ".join(parts), source, checks,
                        numbers)

    def stated_only(self, factor: str) -> Factor:
        return self.row(factor, "not assessed", "", _NOT_DOCUMENTED[factor], "")

    def model_form(self) -> Factor:
        factor = "model_form"
        model = self.context.model
        assumptions = (f"Assumptions ({model.get('source') or 'the context file'}): "
                       f"{model['assumptions']}" if model.get("assumptions") else
                       "Assumptions: not stated in the context file ([model] assumptions).")
        checks = []
        bias_limit = self.goal(factor, "abs_relative_bias_at_most")
        flag_limit = self.goal(factor, "unidentifiable_fraction_at_most")
        if self.metrics is None or self.variable is None:
            if bias_limit is not None:
                checks.append((f"|bias| / mean observation <= {bias_limit:g}", None, ""))
            if flag_limit is not None:
                checks.append((f"patients with an unidentifiable parameter <= "
                               f"{flag_limit:.0%}", None, ""))
            reason = (self.no_validation if self.metrics is None
                      else "metrics.json holds no observed variable")
            return self.row(factor, "not assessed", "", f"{reason}. {assumptions}", "",
                            checks)
        m = self.metrics
        entry = m["variables"][self.variable]
        o, unit = entry["overall"], entry["unit"]
        relative = o["bias"] / abs(o["mean_observed"]) if o.get("mean_observed") else math.nan
        direction = ("the model under-predicts" if o["bias"] < 0 else
                     "the model over-predicts" if o["bias"] > 0 else "no bias")
        groups = "; ".join(f"{g}: {_g(v['bias'])} {unit}" for g, v in entry["groups"].items())
        flagged: dict[str, int] = {}
        for names in m.get("unidentifiable", {}).values():
            for name in names:
                flagged[name] = flagged.get(name, 0) + 1
        n = m.get("n_subjects", 0)
        n_flagged = sum(1 for v in m.get("unidentifiable", {}).values() if v)
        identifiability = ("identifiability: no parameter flagged for any of the "
                           f"{n} patients" if not flagged else "identifiability: "
                           + ", ".join(f"{k} unidentifiable for {v} of {n} patients"
                                       for k, v in sorted(flagged.items())))
        text = (f"{assumptions} Held-out bias of {self.variable} (prediction - observation): "
                f"{_g(o['bias'])} {unit}, {_pct(relative)} of the mean observation "
                f"{_g(o['mean_observed'])} {unit} ({direction}); per group: {groups}; "
                f"{identifiability}.")
        if bias_limit is not None:
            checks.append((f"|bias| / mean observation <= {bias_limit:g}",
                           abs(relative) <= bias_limit, _g(abs(relative))))
        if flag_limit is not None:
            share = n_flagged / n if n else math.nan
            checks.append((f"patients with an unidentifiable parameter <= {flag_limit:.0%}",
                           share <= flag_limit, f"{n_flagged} of {n}"))
        source = self.validation_source + (f"; {model['source']}" if model.get("source")
                                           else "")
        return self.row(factor, "assessed", "measured", text, source, checks,
                        {"bias": o["bias"], "relative_bias": relative,
                         "unidentifiable": flagged, "n_subjects": n})

    def _parameter_units(self) -> dict[str, str]:
        """Units of the study twin's parameters (empty when it cannot be built)."""
        name = ((self.evidence.study or {}).get("model") or {}).get("twin")
        try:
            from physiology_models import twins

            builder = getattr(twins, str(name))
            arguments = self.evidence.study["model"].get("arguments", {})
            return {k: v.unit for k, v in builder(**arguments).parameter_info().items()}
        except Exception:  # any failure only costs the units in the text
            return {}

    def model_inputs(self) -> Factor:
        factor = "model_inputs"
        if self.metrics is None:
            return self.row(factor, "not assessed", "", self.no_validation, "")
        m = self.metrics
        free = m.get("free_parameters", [])
        parts = [f"{len(free)} parameters calibrated per patient ({', '.join(free)}) on "
                 f"{m.get('n_calibration_observations', 'n/a')} calibration observations of "
                 f"{m.get('n_subjects', 'n/a')} patients"]
        sources = [self.validation_source]
        numbers: dict[str, Any] = {"free_parameters": free}
        units = self._parameter_units()
        estimates = self.evidence.estimates
        if estimates is not None:
            spans = []
            for name in free:
                if name not in estimates.columns:
                    continue
                values = estimates[name].to_numpy(dtype=float)
                text = (f"{name} {_g(np.nanmin(values))}-{_g(np.nanmax(values))}"
                        f"{' ' + units[name] if units.get(name) else ''}")
                if f"{name} SE" in estimates.columns:
                    rse = np.nanmedian(estimates[f"{name} SE"].to_numpy(dtype=float) / values)
                    text += f" (median relative SE {_pct(rse)})"
                    numbers[f"{name} median relative SE"] = float(rse)
                numbers[f"{name} range"] = [float(np.nanmin(values)), float(np.nanmax(values))]
                spans.append(text)
            if spans:
                parts.append("estimates across patients: " + "; ".join(spans))
                sources.append(self.context.shown(self.context.validation.parent
                                                  / "estimates.csv"))
        else:
            parts.append("estimates: not found (no estimates.csv beside metrics.json)")
        study = (self.evidence.study or {}).get("model")
        if study:
            fixed = {k: v for k, v in study.get("parameters", {}).items()}
            if fixed:
                parts.append("starting values: " + ", ".join(f"{k} {v}" for k, v in
                                                             fixed.items()))
            priors = []
            for name, spec in study.get("free", {}).items():
                for kind, args in (spec.get("prior") or {}).items():
                    priors.append(f"{name} {kind}({', '.join(map(str, args))})")
            parts.append("priors: " + (", ".join(priors) if priors else "none"))
            errors = [f"{k} {v.get('model')}" + "".join(f" {p} {v[p]}" for p in
                                                         ("sd", "cv", "sd_log") if p in v)
                      for k, v in study.get("error", {}).items()]
            if errors:
                parts.append("error model: " + ", ".join(errors))
            sources.append(self.context.shown(self.context.study))
        elif self.context.study is not None:
            parts.append(f"starting values and priors: no study file at "
                         f"{self.context.shown(self.context.study)}")
        if m.get("n_excluded"):
            parts.append(f"{m['n_excluded']} patients left out for too few observations")
        return self.row(factor, "assessed", "measured", "; ".join(parts) + ".",
                        "; ".join(sources), (), numbers)

    def _covariates(self) -> str:
        covariates = (self.metrics or {}).get("covariates")
        if not covariates:
            return "covariates: not recorded in metrics.json"
        parts = []
        for name, spec in covariates.items():
            if "levels" in spec:
                parts.append(f"{name} " + ", ".join(f"{k} {v}" for k, v in
                                                    spec["levels"].items()))
            else:
                unit = spec.get("unit", "")
                parts.append(f"{name} {_g(spec.get('min'))}-{_g(spec.get('max'))}"
                             f"{' ' + unit if unit and unit not in ('1', 'dimensionless') else ''}")
        return "covariates: " + "; ".join(parts)

    def _split(self) -> str:
        split = (self.metrics or {}).get("split") or {}
        kind = split.get("hold_out")
        if kind == "last":
            return f"each patient's last {split.get('count')} observations held out"
        if kind == "every":
            return f"every {split.get('every')}-th observation held out"
        if kind == "window":
            return (f"calibration window {split.get('calibrate')}, validation window "
                    f"{split.get('validate')} (model time unit)")
        return "split: not recorded"

    def test_samples(self) -> Factor:
        factor = "test_samples"
        subjects = self.goal(factor, "subjects_at_least")
        observations = self.goal(factor, "validation_observations_at_least")
        checks = []
        if self.metrics is None:
            if subjects is not None:
                checks.append((f"patients >= {subjects}", None, ""))
            if observations is not None:
                checks.append((f"held-out observations >= {observations}", None, ""))
            return self.row(factor, "not assessed", "", self.no_validation, "", checks)
        m = self.metrics
        n, n_val = m.get("n_subjects", 0), m.get("n_validation_observations", 0)
        text = (f"{n} patients ({m.get('n_excluded', 0)} left out), "
                f"{m.get('n_calibration_observations', 'n/a')} calibration and {n_val} held-out "
                f"observations ({self._split()}); {self._covariates()}.")
        if subjects is not None:
            checks.append((f"patients >= {subjects}", n >= subjects, f"{n}"))
        if observations is not None:
            checks.append((f"held-out observations >= {observations}", n_val >= observations,
                           f"{n_val}"))
        return self.row(factor, "assessed", "measured", text, self.validation_source, checks,
                        {"n_subjects": n, "n_validation_observations": n_val})

    def equivalency_of_input_parameters(self) -> Factor:
        factor = "equivalency_of_input_parameters"
        if self.metrics is None:
            return self.row(factor, "not assessed", "", self.no_validation, "")
        text = (f"by construction: each held-out prediction of the {self.metrics['n_subjects']} "
                "patients uses the patient's own recorded doses and dose times (the validation "
                "keeps every dose in both the calibration and the validation data) and the "
                "parameters calibrated on the same patient's earlier observations.")
        numbers = {}
        case, estimates = self.context.sweep, self.evidence.estimates
        if case is not None and estimates is not None:
            inside, outside = [], []
            values = case.twin.parameters()
            for name in self.metrics.get("free_parameters", []):
                if name not in estimates.columns or name not in values:
                    continue
                value = float(values[name])
                low, high = float(estimates[name].min()), float(estimates[name].max())
                (inside if low <= value <= high else outside).append(
                    f"{name} {_g(value)} ({'within' if low <= value <= high else 'OUTSIDE'} "
                    f"{_g(low)}-{_g(high)})")
                numbers[name] = value
            if inside or outside:
                text += (" The reference scenario's parameter values against the calibrated "
                         "range: " + "; ".join(inside + outside) + ".")
        return self.row(factor, "assessed", "by construction", text,
                        f"{self.validation_source}; calibration/_validation.py", (), numbers)

    def output_comparison(self) -> Factor:
        factor = "output_comparison"
        goals = self.context.goals.get(factor, {})
        if self.metrics is None or self.variable is None:
            checks = [(self._goal_text(k, v, ""), None, "") for k, v in goals.items()]
            reason = (self.no_validation if self.metrics is None
                      else "metrics.json holds no observed variable")
            return self.row(factor, "not assessed", "", reason, "", checks)
        m = self.metrics
        entry = m["variables"][self.variable]
        unit = entry["unit"]

        def describe(label: str, v: dict) -> str:
            low, high = v["coverage_range"]
            inside = low <= v["coverage"] <= high
            return (f"{label}: n {v['n']}, RMSE {_g(v['rmse'])} {unit} (relative "
                    f"{_g(v['relative_rmse'])}), bias {_g(v['bias'])} {unit}, "
                    f"{m['level']:.0%} interval coverage {_pct(v['coverage'])} (calibrated "
                    f"range {_pct(low)}-{_pct(high)}: {'inside' if inside else 'OUTSIDE'})")

        o = entry["overall"]
        parts = [describe(f"{self.variable} overall", o)]
        parts += [describe(g, v) for g, v in entry["groups"].items() if len(entry["groups"]) > 1]
        checks = []
        for key, limit in goals.items():
            text = self._goal_text(key, limit, unit)
            if key == "relative_rmse_at_most":
                checks.append((text, o["relative_rmse"] <= limit, _g(o["relative_rmse"])))
            elif key == "rmse_at_most":
                bound = quantity_value(limit, unit, f"goals.{factor}.{key}",
                                       _failer(self.context.path, {}))
                checks.append((text, o["rmse"] <= bound, f"{_g(o['rmse'])} {unit}"))
            elif key == "abs_relative_bias_at_most":
                relative = abs(o["bias"]) / abs(o["mean_observed"])
                checks.append((text, relative <= limit, _g(relative)))
            elif key == "coverage_in_range":
                low, high = o["coverage_range"]
                inside = low <= o["coverage"] <= high
                checks.append((text, inside == limit, _pct(o["coverage"])))
        numbers = {k: o[k] for k in ("n", "rmse", "relative_rmse", "bias", "coverage",
                                     "coverage_range")}
        source = self.validation_source
        if self.qoi is None:
            parts.append(f"(the context's quantity of interest "
                         f"{self.context.model.get('quantity_of_interest')!r} is not in "
                         f"metrics.json; shown: {self.variable})")
        return self.row(factor, "assessed", "measured", "; ".join(parts) + ".", source, checks,
                        numbers)

    @staticmethod
    def _goal_text(key: str, value, unit: str) -> str:
        return {"relative_rmse_at_most": f"relative RMSE <= {value}",
                "rmse_at_most": f"RMSE <= {value}",
                "abs_relative_bias_at_most": f"|bias| / mean observation <= {value}",
                "coverage_in_range": "interval coverage inside its calibrated range"
                if value else "interval coverage outside its calibrated range"}[key]

    def relevance_of_quantities_of_interest(self) -> Factor:
        factor = "relevance_of_quantities_of_interest"
        qoi = self.context.model.get("quantity_of_interest", "")
        wanted = self.goal(factor, "qoi_validated")
        goal = "the quantity of interest is a validated variable"
        if self.metrics is None:
            return self.row(factor, "not assessed", "", self.no_validation, "",
                            [(goal, None, "")] if wanted is not None else [])
        variables = self.metrics.get("variables", {})
        if not qoi:
            text = ("the context file names no quantity of interest ([model] "
                    "quantity_of_interest); validated: " + ", ".join(variables))
            validated = None
        elif qoi in variables:
            v = variables[qoi]
            text = (f"the context's quantity of interest {qoi} ({v['unit']}) is the variable "
                    f"the validation compared with data: {v['overall']['n']} held-out "
                    f"observations of {v['overall']['subjects']} patients, "
                    f"{self._split()}.")
            validated = True
        else:
            text = (f"the context's quantity of interest {qoi} was NOT validated; metrics.json "
                    f"holds {', '.join(variables) or 'no variable'}.")
            validated = False
        checks = [(goal, None if validated is None else validated == wanted, "")] \
            if wanted is not None else []
        return self.row(factor, "assessed", "measured", text, self.validation_source, checks,
                        {"validated": validated})

    def relevance_of_validation_activities(self) -> Factor:
        factor = "relevance_of_validation_activities"
        wanted = self.goal(factor, "population_covered")
        goal = "the validation cohort spans the intended population"
        if self.metrics is None:
            return self.row(factor, "not assessed", "", self.no_validation, "",
                            [(goal, None, "")] if wanted is not None else [])
        m = self.metrics
        parts = [f"the validation study {m.get('study', '')!r} states its context of use: "
                 f"\"{m.get('context_of_use', 'not recorded')}\"; it predicted "
                 f"{self._split()}; {self._covariates()}"]
        covered, numbers = self._population(parts)
        numbers["covariates"] = m.get("covariates")
        checks = [(goal, None if covered is None else covered == wanted, "")] \
            if wanted is not None else []
        return self.row(factor, "assessed", "measured", "; ".join(parts) + ".",
                        self.validation_source, checks, numbers)

    def _population(self, parts: list[str]) -> tuple[bool | None, dict]:
        """Compare the context's intended population with the recorded covariate ranges."""
        population = self.context.population
        if not population:
            parts.append("the context file states no intended population "
                         "([applicability.population])")
            return None, {}
        covariates = self.metrics.get("covariates") or {}
        fail = _failer(self.context.path, {})
        verdicts, numbers = [], {}
        for name, spec in population.items():
            recorded = covariates.get(name)
            if recorded is None:
                parts.append(f"intended {name} {'-'.join(map(str, spec))}, but the "
                             f"cohort's {name} is not recorded")
                verdicts.append(None)
                continue
            if "levels" in recorded:
                missing = [str(level) for level in spec if str(level) not in recorded["levels"]]
                verdicts.append(not missing)
                parts.append(f"intended {name} {', '.join(map(str, spec))}: "
                             + (f"NOT in the cohort: {', '.join(missing)}" if missing
                                else "all in the cohort"))
                continue
            unit = recorded.get("unit", "1")
            if len(spec) != 2:
                raise CredibilityError(f"{self.context.path.name}: applicability.population."
                                       f"{name}: give [\"low\", \"high\"] for a numeric "
                                       "covariate")
            low, high = (quantity_value(v, unit, f"applicability.population.{name}", fail)
                         if isinstance(v, str) else float(v) for v in spec)
            inside = recorded["min"] <= low and high <= recorded["max"]
            verdicts.append(inside)
            numbers[name] = {"intended": [low, high],
                             "cohort": [recorded["min"], recorded["max"]]}
            parts.append(f"intended {name} {_g(low)}-{_g(high)} {unit}: "
                         + ("inside the cohort's range" if inside else
                            f"NOT inside the cohort's {_g(recorded['min'])}-"
                            f"{_g(recorded['max'])} {unit} (outside it the model is "
                            "extrapolated)"))
        covered = False if False in verdicts else (None if None in verdicts else True)
        return covered, numbers

    def all(self) -> list[Factor]:
        return [self.software_quality_assurance(),
                self.measurement_factor("numerical_code_verification"),
                self.measurement_factor("discretization_error"),
                self.numerical_solver_error(),
                self.stated_only("use_error"),
                self.model_form(),
                self.model_inputs(),
                self.test_samples(),
                self.stated_only("test_conditions"),
                self.equivalency_of_input_parameters(),
                self.output_comparison(),
                self.relevance_of_quantities_of_interest(),
                self.relevance_of_validation_activities()]


# -- the report ---------------------------------------------------------------------------------

@dataclasses.dataclass
class CredibilityResult:
    context: Context
    evidence: Evidence
    factors: list[Factor]
    sweep: dict | None
    warnings: list[str]
    seconds: float


def assess(path_or_context: str | Path | Context, *, sweep: bool = True,
           progress: bool = False) -> CredibilityResult:
    """Read a context file and its evidence, run the tolerance sweep (unless ``sweep`` is
    False) and build the 13 factor rows."""
    started = time.perf_counter()
    context = (path_or_context if isinstance(path_or_context, Context)
               else read_context(path_or_context))
    evidence = read_evidence(context)
    sweep_result = None
    if sweep and context.sweep is not None:
        sweep_result = run_sweep(context.sweep, evidence.tolerances[:2], progress=progress)
    factors = _Assessor(context, evidence, sweep_result, sweep_skipped=not sweep).all()
    warnings = []
    if context.risk is None:
        warnings.append("the context file states no model risk ([risk]): V&V 40 sizes the "
                        "evidence a context needs by it")
    if evidence.metrics is None:
        reason = _Assessor(context, evidence, None, True).no_validation
        warnings.append(f"no validation evidence: {reason}")
    missing = [f for f in factors if f.status == "not assessed"]
    if missing:
        warnings.append(f"{len(missing)} of 13 factors not assessed: "
                        + ", ".join(f"({f.number}) {f.name}" for f in missing))
    warnings += [f"goal not met for ({f.number}) {f.name}: {f.goal}" for f in factors
                 if f.goal_met is False]
    return CredibilityResult(context, evidence, factors, sweep_result, warnings,
                             time.perf_counter() - started)


def _sha256(path: Path | None) -> str:
    if path is None or not path.is_file():
        return "absent"
    return hashlib.sha256(path.read_bytes()).hexdigest()[:16]


def provenance(result: CredibilityResult) -> dict:
    context = result.context
    out = {"vht version": vht.__version__, "context file": context.shown(context.path),
           "context file sha256": _sha256(context.path),
           "validation metrics": f"{context.shown(context.validation)} "
                                 f"(sha256 {_sha256(context.validation)})",
           "test summary": f"{context.shown(context.test_summary)} "
                           f"(sha256 {_sha256(context.test_summary)})",
           "study file": f"{context.shown(context.study)} (sha256 {_sha256(context.study)})",
           "validation solver tolerances": f"rtol {result.evidence.tolerances[0]:g}, atol "
                                           f"{result.evidence.tolerances[1]:g} (from "
                                           f"{result.evidence.tolerances[2]})"}
    if context.sweep is not None:
        out["sweep model hash"] = vht.model_hash(context.sweep.twin)
    out["written"] = datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds")
    return out


def _status_cell(f: Factor) -> str:
    return f.status + (f" ({f.basis})" if f.basis else "")


def report_sections(result: CredibilityResult) -> list[vht.Section]:
    context = result.context
    risk = context.risk
    rows = [("context of use", context.context_of_use), ("question of interest",
                                                        context.question),
            ("model", context.model.get("name", "not stated")),
            ("quantity of interest", context.model.get("quantity_of_interest", "not stated"))]
    if risk:
        rows += [("model influence", f"{risk['model_influence']}: "
                                     f"{risk['model_influence_why']}"),
                 ("decision consequence", f"{risk['decision_consequence']}: "
                                          f"{risk['decision_consequence_why']}"),
                 ("model risk", f"level {risk['level']} of 5 (influence x consequence)")]
    else:
        rows.append(("model risk", "not stated"))
    metrics = result.evidence.metrics
    if metrics:
        rows.append(("the validation study's own context of use",
                     str(metrics.get("context_of_use", "not recorded"))))
    sections = [vht.Section("Context of use", "What the model is used for, the question it "
                            "answers, and the risk of relying on it (ASME V&V 40).",
                            ("item", "statement"), tuple(rows), kind="context")]
    assessed = sum(f.status == "assessed" for f in result.factors)
    met = sum(f.goal_met is True for f in result.factors)
    with_goal = sum(bool(f.goal) for f in result.factors)
    sections.append(vht.Section(
        "Credibility factors",
        f"{assessed} of 13 factors assessed; goals stated for {with_goal}, met for {met}. "
        "Status 'measured': numbers from the named file; 'computed': by this command; 'by "
        "construction': follows from how the validation is run; 'stated, not measured': text "
        "of the context file.",
        ("#", "group", "factor", "status", "evidence", "source", "goal"),
        tuple((str(f.number), f.group, f.name, _status_cell(f), f.evidence, f.source or "-",
               f.goal or "none stated") for f in result.factors), kind="factors"))
    if metrics and metrics.get("variables"):
        rows = []
        for variable, entry in metrics["variables"].items():
            for label, v in [("overall", entry["overall"]), *entry["groups"].items()]:
                low, high = v["coverage_range"]
                rows.append((variable, label, str(v["n"]), f"{_g(v['rmse'])} {entry['unit']}",
                             _g(v["relative_rmse"]), f"{_g(v['bias'])} {entry['unit']}",
                             _pct(v["coverage"]), f"{_pct(low)}-{_pct(high)}"))
        sections.append(vht.Section(
            "Output comparison", f"Held-out predictions against observations "
            f"({context.shown(context.validation)}); {metrics.get('level', 0.9):.0%} "
            "prediction intervals; the calibrated range is the central 95 % of the coverage a "
            "calibrated interval shows on that many points.",
            ("variable", "group", "n", "RMSE", "relative RMSE", "bias", "coverage",
             "calibrated range"), tuple(rows), kind="output-comparison"))
    if result.sweep:
        s = result.sweep
        rows = tuple((f"{r['rtol']:g}", f"{r['atol']:g}", r["role"], str(r["steps"]),
                      _g(r["max_abs_error"]), _g(r["max_relative_error"]))
                     for r in s["rows"])
        sections.append(vht.Section(
            "Tolerance sweep", f"{s['description']}: the maximum error of {s['output']} "
            f"({s['unit']}) at each tolerance against a solve at rtol "
            f"{s['reference']['rtol']:g}, absolute and relative to the peak "
            f"{_g(s['reference']['peak'])} {s['unit']}.",
            ("rtol", "atol", "role", "steps", f"max abs error [{s['unit']}]",
             "max error / peak"), rows, kind="sweep"))
    return sections


def as_json(result: CredibilityResult) -> dict:
    context = result.context
    return {"version": REPORT_VERSION, "title": context.title,
            "context_file": context.shown(context.path),
            "context_of_use": context.context_of_use, "question": context.question,
            "model": context.model, "risk": context.risk,
            "factors": [dataclasses.asdict(f) for f in result.factors],
            "sweep": result.sweep, "warnings": result.warnings,
            "provenance": provenance(result)}


def _plain(value):
    """JSON-ready: NumPy scalars as Python numbers, NaN and infinities (missing numbers) as
    null."""
    if isinstance(value, Mapping):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    if isinstance(value, (np.generic, float)) and not isinstance(value, (bool, np.bool_)):
        value = value.item() if isinstance(value, np.generic) else value
        return value if not isinstance(value, float) or math.isfinite(value) else None
    if isinstance(value, np.bool_):
        return bool(value)
    return value


def write_credibility(result: CredibilityResult, directory: str | Path) -> dict[str, Path]:
    """Write credibility.html, credibility.md and credibility.json into ``directory``."""
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    title = f"Credibility: {result.context.title}"
    sections = report_sections(result)
    prov = provenance(result)
    files = {"html": directory / "credibility.html", "markdown": directory / "credibility.md",
             "json": directory / "credibility.json"}
    vht.write_document(files["html"], title=title, sections=sections,
                       warnings=result.warnings, provenance=prov)
    files["markdown"].write_text(vht.markdown_document(
        title=title, sections=sections, warnings=result.warnings, provenance=prov),
        encoding="utf-8")
    files["json"].write_text(json.dumps(_plain(as_json(result)), indent=2,
                                        allow_nan=False) + "\n", encoding="utf-8")
    return files


def credibility_main(context_path: str | Path, out: str | Path | None = None, *,
                     sweep: bool = True, progress: bool = True):
    """What ``vht credibility`` runs: assess, then write the report (default
    ``results/credibility/<context file stem>/``)."""
    result = assess(context_path, sweep=sweep, progress=progress)
    out = Path(out) if out else Path("results") / "credibility" / Path(context_path).stem
    return result, write_credibility(result, out)
