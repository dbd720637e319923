"""Validation study files: TOML that says which patients, which model, which data calibrate it
and which data judge its predictions (read by ``vht validate``).

```toml
title = "Theoph: each subject's last three samples predicted from the first eight"

[context]                                   # required: a study without them is refused
context_of_use = "Predict ... for ..."
question = "Does ... ?"

[data]
format = "tidy_csv"                         # tidy_csv, nonmem, fhir, omop
dictionary = "data/theoph_dictionary.toml"  # paths are relative to this file
observations = "data/theoph_observations.csv"
doses = "data/theoph_doses.csv"
# key_file = "/secure/study.key"            # else $VHT_PSEUDONYM_KEY, else a key for this run

[model]
twin = "oral_pk"                            # a builder of physiology_models.twins
arguments = {}
time_unit = "h"
doses = { oral = "drug.depot" }             # route -> dosed state
parameters = { "drug.volume" = "32 L" }     # starting values (quantities with units)
# max_steps = 20000                         # solver steps per segment (between doses, ticks)
# per_subject = { argument = "name", covariate = "virtual_patient" }
#                                           # each subject's own twin: builder(name=<covariate>);
#                                           # its parameters are known, the free ones estimated

[model.free."drug.ka"]                      # estimated per patient
transform = "log"                           # log, identity, bounded (with bounds = [lo, hi])
prior = { lognormal = ["1.5 1/h", 1.0] }    # or normal = ["mean", "sd"]; optional

[model.error."drug.concentration"]
model = "additive"                          # additive (sd), proportional (cv), combined, lognormal
sd = "0.5 mg/L"

[split]
hold_out = "last"                           # last (count), every (every), window
count = 3                                   # window: calibrate = ["0 h", "24 h"], validate = [...]

[fit]
starts = 4
steps = 100

[prediction]
level = 0.9                                 # prediction-interval level
samples = 400                               # parameter draws per patient (Laplace posterior)
seed = 0

[groups]                                    # optional: results per group
covariate = "weight"
edges = ["0 kg", "65 kg", "75 kg", "200 kg"]   # numeric covariates: bands; categorical: as is
```

Errors are ``StudyFileError`` naming the key and its line (``theoph.toml:12: split.count:
...``).
"""

from __future__ import annotations

import dataclasses
import inspect
import tomllib
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import vht
from vht._whatif_file import key_lines, quantity_value
from vht._whatif_file import only_keys as _only

from ._problem import (
    Additive,
    Bounded,
    Combined,
    FreeParameter,
    Identity,
    Log,
    LogNormal,
    LogNormalError,
    Normal,
    Problem,
    Proportional,
)

FORMATS = ("tidy_csv", "nonmem", "fhir", "omop")
SPLITS = ("last", "every", "window")


class StudyFileError(ValueError):
    """A validation study file that cannot be read or does not make sense."""


@dataclasses.dataclass(frozen=True)
class Split:
    """How each patient's observations divide into calibration and validation data."""

    hold_out: str
    count: int = 0
    every: int = 0
    calibrate: tuple[float, float] | None = None   # in the model's time unit
    validate: tuple[float, float] | None = None


@dataclasses.dataclass(frozen=True)
class Groups:
    covariate: str
    edges: tuple[float, ...] | None = None   # numeric bands, in the covariate's unit


@dataclasses.dataclass
class Study:
    """A parsed study file (see the module docstring)."""

    path: Path
    title: str
    context_of_use: str
    question: str
    data: dict[str, Any]
    problem: Problem
    model_description: str
    split: Split
    starts: int
    steps: int
    level: float
    samples: int
    seed: int
    groups: Groups | None
    raw: dict[str, Any]
    # each subject's own twin: the builder argument and the covariate that gives its value
    per_subject: tuple[str, str] | None = None

    def subject_parameters(self, value) -> dict[str, float]:
        """The known parameters of a subject whose ``per_subject`` covariate is ``value``:
        the twin builder's twin for that argument (free parameters left out)."""
        from physiology_models import twins

        model = self.raw["model"]
        argument, covariate = self.per_subject
        builder = getattr(twins, str(model["twin"]))
        try:
            twin = builder(**{**model.get("arguments", {}), argument: value})
        except (TypeError, ValueError, KeyError) as error:
            raise StudyFileError(f"{self.path.name}: model.per_subject: covariate {covariate} "
                                 f"= {value!r} builds no twin: {error}") from None
        values = twin.parameters()
        return {name: float(values[name]) for name in self.problem.subject_parameters}

    @property
    def folder(self) -> Path:
        return self.path.parent

    def data_path(self, key: str) -> Path:
        value = self.data[key]
        path = Path(value)
        return path if path.is_absolute() else self.folder / path


def read_study(path: str | Path) -> Study:
    """Parse and check a study file; raises ``StudyFileError``."""
    path = Path(path)
    if not path.is_file():
        raise StudyFileError(f"no study file at {path}")
    text = path.read_text(encoding="utf-8")
    try:
        raw = tomllib.loads(text)
    except tomllib.TOMLDecodeError as error:
        raise StudyFileError(f"{path.name}: not valid TOML: {error}") from None
    lines = key_lines(text)

    def fail(key: str, message: str) -> StudyFileError:
        line = lines.get(key) or lines.get(key.rsplit(".", 1)[0])
        return StudyFileError(f"{path.name}:{line}: {key}: {message}" if line
                              else f"{path.name}: {key}: {message}")

    _only(raw, {"title", "context", "data", "model", "split", "fit", "prediction", "groups"},
          "", fail)
    context = raw.get("context", {})
    for key in ("context_of_use", "question"):
        if not str(context.get(key, "")).strip():
            raise fail(f"context.{key}", "missing: a validation study states its context of "
                       "use and the question it answers (ASME V&V 40); the credibility report "
                       "refuses to run without them")
    data = dict(raw.get("data", {}))
    if data.get("format") not in FORMATS:
        raise fail("data.format", f"must be one of {list(FORMATS)}, not {data.get('format')!r}")
    if "dictionary" not in data:
        raise fail("data.dictionary", "missing: the data dictionary (TOML) the data are read "
                   "with")
    problem, description, per_subject = _problem(raw.get("model", {}), fail)
    time_unit = problem.time_unit
    split = _split(raw.get("split", {}), time_unit, fail)
    fit = raw.get("fit", {})
    _only(fit, {"starts", "steps"}, "fit", fail)
    prediction = raw.get("prediction", {})
    _only(prediction, {"level", "samples", "seed"}, "prediction", fail)
    level = float(prediction.get("level", 0.9))
    if not 0.5 <= level < 1.0:
        raise fail("prediction.level", f"must lie in [0.5, 1), not {level}")
    samples = _positive_int(prediction.get("samples", 400), "prediction.samples", fail)
    groups = None
    if "groups" in raw:
        spec = raw["groups"]
        _only(spec, {"covariate", "edges", "unit"}, "groups", fail)
        if "covariate" not in spec:
            raise fail("groups.covariate", "missing: the covariate that names the groups")
        edges = None
        if "edges" in spec:
            edges = tuple(_magnitude(e, "groups.edges", fail) for e in spec["edges"])
            if len(edges) < 2 or any(b <= a for a, b in zip(edges, edges[1:])):
                raise fail("groups.edges", "needs two or more increasing values")
        groups = Groups(str(spec["covariate"]), edges)
    return Study(path=path, title=str(raw.get("title", path.stem)),
                 context_of_use=str(context["context_of_use"]).strip(),
                 question=str(context["question"]).strip(), data=data, problem=problem,
                 model_description=description, split=split,
                 starts=_positive_int(fit.get("starts", 4), "fit.starts", fail),
                 steps=_positive_int(fit.get("steps", 100), "fit.steps", fail),
                 level=level, samples=samples, seed=int(prediction.get("seed", 0)),
                 groups=groups, raw=raw, per_subject=per_subject)


def _positive_int(value, key, fail) -> int:
    if not isinstance(value, int) or isinstance(value, bool) or value < 1:
        raise fail(key, f"must be a positive whole number, not {value!r}")
    return value


def _magnitude(raw, key, fail) -> float:
    """A quantity's magnitude in its own unit (group edges share one unit)."""
    if isinstance(raw, (int, float)) and not isinstance(raw, bool):
        return float(raw)
    try:
        return float(vht.unit_registry.Quantity(str(raw)).magnitude)
    except Exception:
        raise fail(key, f"cannot read {raw!r} as a number or quantity") from None


def _problem(model: Mapping, fail) -> tuple[Problem, str, tuple[str, str] | None]:
    from physiology_models import twins

    _only(model, {"twin", "arguments", "time_unit", "doses", "parameters", "free", "error",
                  "rtol", "atol", "max_steps", "per_subject"}, "model", fail)
    name = model.get("twin")
    builder = getattr(twins, str(name), None)
    if not callable(builder) or str(name).startswith("_"):
        raise fail("model.twin", f"no twin builder {name!r} in physiology_models.twins")
    arguments = model.get("arguments", {})
    try:
        twin = builder(**arguments)
    except (TypeError, ValueError) as error:
        raise fail("model.arguments", str(error)) from None
    info = twin.parameter_info()
    values = {}
    for parameter, raw in model.get("parameters", {}).items():
        if parameter not in info:
            raise fail(f"model.parameters.{parameter}", "not a parameter of the twin")
        values[parameter] = quantity_value(raw, info[parameter].unit,
                                           f"model.parameters.{parameter}", fail)
    twin = twin.replace(values) if values else twin
    free = []
    for parameter, spec in model.get("free", {}).items():
        where = f"model.free.{parameter}"
        if parameter not in info:
            raise fail(where, "not a parameter of the twin")
        _only(spec, {"transform", "bounds", "prior"}, where, fail)
        unit = info[parameter].unit
        transform = spec.get("transform", "log")
        if transform == "log":
            chosen = Log()
        elif transform == "identity":
            chosen = Identity()
        elif transform == "bounded":
            bounds = spec.get("bounds")
            if not isinstance(bounds, list) or len(bounds) != 2:
                raise fail(f"{where}.bounds", "a bounded transform needs bounds = [low, high]")
            low, high = (quantity_value(b, unit, f"{where}.bounds", fail) for b in bounds)
            if not low < high:
                raise fail(f"{where}.bounds", "needs low < high")
            chosen = Bounded(low, high)
        else:
            raise fail(f"{where}.transform", f"must be log, identity or bounded, not "
                       f"{transform!r}")
        prior = None
        if "prior" in spec:
            kind, arguments_ = next(iter(spec["prior"].items()), (None, None))
            if kind == "lognormal" and isinstance(arguments_, list) and len(arguments_) == 2:
                prior = LogNormal(quantity_value(arguments_[0], unit, f"{where}.prior", fail),
                                  float(arguments_[1]))
            elif kind == "normal" and isinstance(arguments_, list) and len(arguments_) == 2:
                prior = Normal(quantity_value(arguments_[0], unit, f"{where}.prior", fail),
                               quantity_value(arguments_[1], unit, f"{where}.prior", fail))
            else:
                raise fail(f"{where}.prior", "give lognormal = [\"median\", sd_log] or normal = "
                           "[\"mean\", \"sd\"]")
        free.append(FreeParameter(parameter, chosen, prior))
    if not free:
        raise fail("model.free", "missing: name at least one parameter to calibrate")
    units = dict(zip(twin.state_names, twin.state_units)) | dict(zip(twin.signal_names,
                                                                     twin.signal_units))
    errors = {}
    for variable, spec in model.get("error", {}).items():
        where = f"model.error.{variable}"
        if variable not in units:
            raise fail(where, "neither a state nor a signal of the twin")
        kind = spec.get("model")
        unit = units[variable]
        if kind == "additive":
            errors[variable] = Additive(quantity_value(spec.get("sd"), unit, f"{where}.sd", fail))
        elif kind == "proportional":
            errors[variable] = Proportional(float(spec.get("cv", 0.1)))
        elif kind == "combined":
            errors[variable] = Combined(quantity_value(spec.get("sd"), unit, f"{where}.sd", fail),
                                        float(spec.get("cv", 0.1)))
        elif kind == "lognormal":
            errors[variable] = LogNormalError(float(spec.get("sd_log", 0.1)))
        else:
            raise fail(f"{where}.model", "must be additive, proportional, combined or "
                       f"lognormal, not {kind!r}")
    if not errors:
        raise fail("model.error", "missing: an error model per observed variable")
    per_subject, subject_parameters = None, ()
    if "per_subject" in model:
        spec = model["per_subject"]
        _only(spec, {"argument", "covariate"}, "model.per_subject", fail)
        if not {"argument", "covariate"} <= set(spec):
            raise fail("model.per_subject", "give argument (of the twin builder) and covariate "
                       "(whose value each subject's twin is built with)")
        parameters = inspect.signature(builder).parameters
        if spec["argument"] not in parameters:
            raise fail("model.per_subject.argument", f"{name} takes no argument "
                       f"{spec['argument']!r} (it takes {list(parameters)})")
        per_subject = (str(spec["argument"]), str(spec["covariate"]))
        free_names = {f.name for f in free}
        subject_parameters = tuple(p for p in info if p not in free_names)
    time_unit = str(model.get("time_unit", "h"))
    try:
        problem = Problem(twin, free, errors, dict(model.get("doses", {})), time_unit=time_unit,
                          rtol=float(model.get("rtol", 1e-7)), atol=float(model.get("atol", 1e-9)),
                          max_steps=_positive_int(model.get("max_steps", 20_000),
                                                  "model.max_steps", fail),
                          subject_parameters=subject_parameters)
    except ValueError as error:
        raise fail("model", str(error)) from None
    own = f", each subject's own {per_subject[0]} from {per_subject[1]}" if per_subject else ""
    return (problem, f"{name}({arguments or ''}) with {', '.join(f.name for f in free)} free"
            f"{own}", per_subject)


def _split(spec: Mapping, time_unit: str, fail) -> Split:
    _only(spec, {"hold_out", "count", "every", "calibrate", "validate"}, "split", fail)
    kind = spec.get("hold_out")
    if kind not in SPLITS:
        raise fail("split.hold_out", f"must be one of {list(SPLITS)}, not {kind!r}")
    if kind == "last":
        return Split("last", count=_positive_int(spec.get("count"), "split.count", fail))
    if kind == "every":
        every = _positive_int(spec.get("every"), "split.every", fail)
        if every < 2:
            raise fail("split.every", "must be 2 or more (every k-th observation held out)")
        return Split("every", every=every)
    windows = {}
    for key in ("calibrate", "validate"):
        window = spec.get(key)
        if not isinstance(window, list) or len(window) != 2:
            raise fail(f"split.{key}", "give a window [\"start\", \"end\"] with time units")
        low, high = (quantity_value(w, time_unit, f"split.{key}", fail) for w in window)
        if not low < high:
            raise fail(f"split.{key}", "needs start < end")
        windows[key] = (low, high)
    (c0, c1), (v0, v1) = windows["calibrate"], windows["validate"]
    if c0 < v1 and v0 < c1:
        raise fail("split", f"the calibration window [{c0:g}, {c1:g}] {time_unit} and the "
                   f"validation window [{v0:g}, {v1:g}] {time_unit} overlap: calibration and "
                   "validation data must be disjoint")
    return Split("window", calibrate=windows["calibrate"], validate=windows["validate"])

