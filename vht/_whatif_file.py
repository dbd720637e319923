"""What-if scenario files: TOML that a clinical analyst writes without Python.

A file names the patient, what happens to them in every arm (meals, a bleed), the treatment
arms, the outcomes and where the uncertainty comes from::

    title = "adolescent#001: three insulin strategies"
    horizon = "24 h"
    save_every = "5 min"

    [patient]
    virtual = "uva_padova/adolescent#001"    # or  twin = "circulation_with_fluids"
                                             # or  twin_file = "fitted_twin.h5"
    start = "initial"                        # or "steady_state": each member's own
    [uncertainty]
    source = "population"                    # "posterior" (twin file), "population", "none"
    members = 40
    seed = 1
    cv = { "patient.kabs" = 0.2, "patient.Vmx" = 0.2 }

    [[events]]                               # in every arm
    kind = "meal"
    time = "7 h"
    carbs = "45 g"

    [[arms]]
    name = "basal-bolus"
    treatments = [
      { kind = "basal_insulin", rate = "0.83 U/h" },
      { kind = "meal_bolus", carb_ratio = "10 g/U" },
    ]

    [[outcomes]]
    kind = "time_in_range"
    low = "70 mg/dL"
    high = "180 mg/dL"

Every amount, rate and time is a quantity with its unit (``"45 g"``, ``"100 mL/min"``,
``"7 h"``), converted to the twin's units; a bare number where a quantity belongs is an error.
A syntax error names the line; an error of meaning names the key path and its line
(``scenario.toml:31: arms[2].treatments[0].rate: ...``), as ``ScenarioFileError``.

The kinds, with the keys each takes (``[optional]``):

Events: ``meal`` (time, carbs; UVA/Padova twins), ``hemorrhage`` (start, duration, rate),
``parameter`` (parameter, value, start, [duration]).

Treatments:

- ``basal_insulin`` (rate, [start], [duration]): the pump's basal rate;
- ``insulin_bolus`` (dose, time);
- ``meal_bolus`` (carb_ratio): a bolus of carbs / carb ratio with every meal;
- ``correction_insulin`` (above, rate, [until]): the controller in the loop, extra insulin
  at ``rate`` into the subcutaneous depot while glucose is above ``above``, until it falls
  below ``until`` (default ``above``); glucose is the model's plasma glucose;
- ``drug_regimen`` (dose, [interval], [count], [start], [route] = "iv" | "oral" |
  "infusion", [duration] for infusions, [target]);
- ``iv_fluid`` (rate, [start], [duration], [target]);
- ``fluid_rule`` (below, rate, [until], [signal], [target]): fluids while a signal (default
  mean arterial pressure) is below ``below``;
- ``drug_rule`` (below, rate, [until], [signal], [target]): a drug infused into its
  ``central`` state by the same kind of rule (a vasopressor while MAP < 65 mmHg);
- ``parameter`` (parameter, value, [start], [duration]).

Outcomes (each with [name], [signal], [start], [end] for its window): ``time_in_range`` (low,
high), ``time_below`` (threshold), ``time_above`` (threshold), ``time_at_least`` (threshold),
``peak``, ``trough``, ``mean``, ``final``, ``auc``. Time fractions are in percent of the save
times in the window, as CGM metrics count 5-minute readings.

An ``[optimize]`` table (read by ``vht optimize``; ``vht whatif`` runs the arms without it)
adds one arm whose treatments hold decision variables, ``{ between = [low, high] }`` in place
of a quantity, with an optional ``start``::

    [optimize]
    arm = "optimised basal + boluses"
    maximize = "time in range 70-180 mg/dL"         # or minimize = "<outcome>", or
                                                    # target = { outcome = "...", value = "..." }
    constraints = [ { outcome = "time glucose < 70 mg/dL", at_most = "1 %" } ]
    treatments = [
      { kind = "basal_insulin", rate = { between = ["0.3 U/h", "2 U/h"], start = "0.8 U/h" } },
      { kind = "insulin_bolus", time = "7 h", dose = { between = ["0 U", "10 U"] } },
    ]

Objective and constraints name outcomes of the file. Optional keys: ``sharpness`` (the width
of the sigmoids that smooth threshold outcomes, in the signal's unit; default 5 % of each
threshold), ``penalty`` (objective units per unit of constraint violation, default 10),
``starts`` (points of a space-filling pre-scan, default 1: the start values) and
``max_evaluations`` (gradient evaluations, default 40). See ``vht._optimize``.
"""

from __future__ import annotations

import dataclasses
import hashlib
import re
import tomllib
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from ._units import units as ureg


class ScenarioFileError(ValueError):
    """A what-if scenario file that cannot be read or does not make sense."""


# -- where each key is: TOML has no positions in tomllib, so index the text ---------------------

_HEADER = re.compile(r"^\s*(\[\[?)\s*([^\]]+?)\s*\]\]?\s*(#.*)?$")
_KEY = re.compile(r'^\s*("(?:[^"\\]|\\.)*"|[A-Za-z0-9_\-]+(?:\s*\.\s*[A-Za-z0-9_\-"]+)*)\s*=')


def _split_dotted(key: str) -> list[str]:
    parts = re.findall(r'"((?:[^"\\]|\\.)*)"|([A-Za-z0-9_\-]+)', key)
    return [a or b for a, b in parts]


def key_lines(text: str) -> dict[str, int]:
    """Map each key path (``arms[2].treatments``, ``patient.virtual``) to its line number.

    Tables and arrays of tables are followed by their headers; a key whose value is an inline
    table or array maps its own path, and paths inside it resolve to that line (see
    ``line_of``).
    """
    lines: dict[str, int] = {}
    counters: dict[str, int] = {}
    table = ""
    for number, line in enumerate(text.splitlines(), start=1):
        header = _HEADER.match(line)
        if header:
            array = header.group(1) == "[["
            parts = _split_dotted(header.group(2))
            path = ""
            for i, part in enumerate(parts):
                path = f"{path}.{part}" if path else part
                if i < len(parts) - 1 and path in counters:  # inside the latest element
                    path = f"{path}[{counters[path]}]"
            if array:
                counters[path] = counters.get(path, -1) + 1
                path = f"{path}[{counters[path]}]"
            table = path
            lines.setdefault(path, number)
            continue
        key = _KEY.match(line)
        if key:
            path = ".".join([table] + _split_dotted(key.group(1)) if table
                            else _split_dotted(key.group(1)))
            lines.setdefault(path, number)
    return lines


def only_keys(table, allowed: set[str], where: str, fail) -> None:
    """Refuse a table with a key outside ``allowed`` (or a value that is not a table):
    ``fail(key, message)`` builds the caller's error, with the key's line. Shared by the study
    and credibility files."""
    if not isinstance(table, Mapping):
        raise fail(where, "must be a table")
    unknown = sorted(set(table) - allowed)
    if unknown:
        raise fail(f"{where}.{unknown[0]}" if where else unknown[0],
                   f"unknown key (allowed: {sorted(allowed)})")


def line_of(lines: dict[str, int], path: str) -> int | None:
    """The line of ``path`` or of its nearest enclosing key or table."""
    while path:
        if path in lines:
            return lines[path]
        cut = max(path.rfind("."), path.rfind("["))
        path = path[:cut] if cut > 0 else ""
    return None


# -- the parsed file ------------------------------------------------------------------------------

@dataclasses.dataclass(frozen=True)
class Item:
    """One event, treatment or outcome: its kind, its keys, and where it is in the file."""

    kind: str
    values: dict[str, Any]
    path: str  # "arms[1].treatments[0]"


@dataclasses.dataclass(frozen=True)
class Arm:
    name: str
    treatments: tuple[Item, ...]
    path: str


@dataclasses.dataclass(frozen=True)
class Optimize:
    """The ``[optimize]`` table: the arm to optimise, what it aims at, within what limits."""

    arm: str
    sense: str  # "maximize", "minimize" or "target"
    outcome: str  # the name of an outcome of the file
    target: str | None  # the target value (a quantity string) when sense is "target"
    constraints: tuple[dict, ...]  # {"outcome", "at_most" | "at_least", "path"}
    treatments: tuple[Item, ...]
    sharpness: str | None
    penalty: float
    starts: int
    max_evaluations: int


@dataclasses.dataclass(frozen=True)
class WhatIfFile:
    """A what-if scenario file, read and checked for form (its meaning against the twin is
    checked when the scenarios are built: ``vht._whatif.build``)."""

    title: str
    horizon: float  # minutes
    save_every: float  # minutes
    patient: dict[str, Any]
    uncertainty: dict[str, Any]
    events: tuple[Item, ...]
    arms: tuple[Arm, ...]
    outcomes: tuple[Item, ...]
    source: str  # the file's name, for messages
    folder: Path  # relative paths (twin files) resolve from here
    sha256: str
    lines: dict[str, int] = dataclasses.field(repr=False)
    optimize: Optimize | None = None

    def error(self, path: str, message: str) -> ScenarioFileError:
        """An error of meaning at key ``path``, with its line."""
        line = line_of(self.lines, path)
        where = f"{self.source}:{line}" if line else self.source
        return ScenarioFileError(f"{where}: {path}: {message}")


EVENT_KINDS = ("meal", "hemorrhage", "parameter")
TREATMENT_KINDS = ("basal_insulin", "insulin_bolus", "meal_bolus", "correction_insulin",
                   "drug_regimen", "iv_fluid", "fluid_rule", "drug_rule", "parameter")
OUTCOME_KINDS = ("time_in_range", "time_below", "time_above", "time_at_least", "peak",
                 "trough", "mean", "final", "auc")
UNCERTAINTY_SOURCES = ("none", "population", "posterior")
_TOP_KEYS = {"title", "horizon", "save_every", "patient", "uncertainty", "events", "arms",
             "outcomes", "optimize"}
# The keys whose value may be a decision variable, per treatment kind: amounts and rates (not
# times or thresholds, whose derivatives a switch or a jump in time hides from the gradient).
OPTIMIZABLE = {"basal_insulin": ("rate",), "insulin_bolus": ("dose",),
               "meal_bolus": ("carb_ratio",), "correction_insulin": ("rate",),
               "drug_regimen": ("dose",), "iv_fluid": ("rate",), "fluid_rule": ("rate",),
               "drug_rule": ("rate",), "parameter": ("value",)}
OBJECTIVES = ("maximize", "minimize", "target")


def read_whatif(source: str | Path) -> WhatIfFile:
    """Read a what-if scenario file (a path, or TOML text) and check its form."""
    if isinstance(source, Path) or (isinstance(source, str) and "\n" not in source
                                    and source.endswith(".toml")):
        path = Path(source)
        if not path.is_file():
            raise ScenarioFileError(f"no scenario file at {path}")
        text, name, folder = path.read_text(), path.name, path.resolve().parent
    else:
        text, name, folder = str(source), "<scenario>", Path.cwd()
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as error:  # its message ends "(at line L, column C)"
        line = re.search(r"line (\d+)", str(error))
        raise ScenarioFileError(f"{name}:{line.group(1) if line else '?'}: TOML syntax "
                                f"error: {error}") from None
    lines = key_lines(text)

    def fail(path, message):
        line = line_of(lines, path)
        return ScenarioFileError(f"{name}:{line}: {path}: {message}" if line
                                 else f"{name}: {path}: {message}")

    unknown = sorted(set(data) - _TOP_KEYS)
    if unknown:
        raise fail(unknown[0], f"unknown key; a scenario file has {sorted(_TOP_KEYS)}")
    for key in ("title", "horizon", "patient", "arms"):
        if key not in data:
            raise ScenarioFileError(f"{name}: the key {key!r} is missing")
    title = data["title"]
    if not isinstance(title, str) or not title.strip():
        raise fail("title", "give the report's title as a non-empty string")
    horizon = quantity_value(data["horizon"], "min", "horizon", fail)
    if horizon <= 0:
        raise fail("horizon", "the horizon must be positive")
    save_every = quantity_value(data.get("save_every", "5 min"), "min", "save_every", fail)
    if not 0 < save_every <= horizon:
        raise fail("save_every", "must be positive and no longer than the horizon")

    patient = data["patient"]
    if not isinstance(patient, dict):
        raise fail("patient", "must be a table: [patient]")
    chosen = [k for k in ("virtual", "twin", "twin_file") if k in patient]
    if len(chosen) != 1:
        raise fail("patient", "give exactly one of virtual = \"uva_padova/adolescent#001\", "
                   "twin = \"<builder>\" or twin_file = \"<path>\"")
    extra = sorted(set(patient) - {"virtual", "twin", "twin_file", "arguments", "start"})
    if extra:
        raise fail(f"patient.{extra[0]}", "unknown key; [patient] takes virtual, twin (with "
                   "arguments) or twin_file, and start")
    if patient.get("start", "initial") not in ("initial", "steady_state"):
        raise fail("patient.start", "must be \"initial\" (the twin's initial state) or "
                   "\"steady_state\" (each member's own resting or beating steady state)")

    uncertainty = data.get("uncertainty", {"source": "none"})
    if not isinstance(uncertainty, dict):
        raise fail("uncertainty", "must be a table: [uncertainty]")
    source_kind = uncertainty.get("source", "none")
    if source_kind not in UNCERTAINTY_SOURCES:
        raise fail("uncertainty.source", f"must be one of {list(UNCERTAINTY_SOURCES)}, not "
                   f"{source_kind!r}")
    extra = sorted(set(uncertainty) - {"source", "members", "seed", "cv"})
    if extra:
        raise fail(f"uncertainty.{extra[0]}", "unknown key; [uncertainty] takes source, "
                   "members, seed and cv")
    members = uncertainty.get("members", 1 if source_kind == "none" else 50)
    if not isinstance(members, int) or isinstance(members, bool) or members < 1:
        raise fail("uncertainty.members", "must be a whole number of at least 1")
    seed = uncertainty.get("seed", 0)
    if not isinstance(seed, int) or isinstance(seed, bool):
        raise fail("uncertainty.seed", "must be a whole number")
    cv = uncertainty.get("cv", {})
    if not isinstance(cv, dict):
        raise fail("uncertainty.cv", "must be a table of parameter = coefficient of variation")
    for parameter, value in cv.items():
        if not isinstance(value, (int, float)) or isinstance(value, bool) or not 0 < value < 3:
            raise fail(f"uncertainty.cv.{parameter}", "a coefficient of variation is a number "
                       "between 0 and 3 (0.2 for 20 %)")
    if source_kind == "population" and not cv:
        raise fail("uncertainty.cv", "population variability needs at least one parameter's "
                   "coefficient of variation")
    if source_kind == "posterior" and "twin_file" not in patient:
        raise fail("uncertainty.source", "posterior samples come from a calibrated twin file: "
                   "give [patient] twin_file")
    uncertainty = {"source": source_kind, "members": members, "seed": seed, "cv": dict(cv)}

    events = _items(data.get("events", []), "events", EVENT_KINDS, fail)
    arms_data = data["arms"]
    if not isinstance(arms_data, list) or not arms_data:
        raise fail("arms", "give at least one arm: [[arms]] with a name and treatments")
    arms, names = [], set()
    for i, arm in enumerate(arms_data):
        path = f"arms[{i}]"
        if not isinstance(arm, dict):
            raise fail(path, "an arm is a table with a name and treatments")
        extra = sorted(set(arm) - {"name", "treatments"})
        if extra:
            raise fail(f"{path}.{extra[0]}", "unknown key; an arm has a name and treatments")
        arm_name = arm.get("name")
        if not isinstance(arm_name, str) or not arm_name.strip():
            raise fail(f"{path}.name", "every arm needs a name")
        if arm_name in names:
            raise fail(f"{path}.name", f"two arms are named {arm_name!r}")
        names.add(arm_name)
        treatments = _items(arm.get("treatments", []), f"{path}.treatments", TREATMENT_KINDS,
                            fail)
        arms.append(Arm(arm_name, treatments, path))
    outcomes = _items(data.get("outcomes", []), "outcomes", OUTCOME_KINDS, fail)
    if not outcomes:
        raise fail("outcomes", "give at least one outcome: [[outcomes]] with a kind")
    optimize = _optimize(data["optimize"], names, fail) if "optimize" in data else None
    for arm in arms:
        for item in arm.treatments:
            for key, value in item.values.items():
                if isinstance(value, dict) and "between" in value:
                    raise fail(f"{item.path}.{key}", "a decision variable ({ between = ... }) "
                               "belongs in the [optimize] table's treatments")
    return WhatIfFile(title=title, horizon=horizon, save_every=save_every, patient=dict(patient),
                      uncertainty=uncertainty, events=events, arms=tuple(arms),
                      outcomes=outcomes, source=name, folder=folder,
                      sha256=hashlib.sha256(text.encode()).hexdigest(), lines=lines,
                      optimize=optimize)


def _whole(value, path: str, fail, low: int, high: int) -> int:
    if not isinstance(value, int) or isinstance(value, bool) or not low <= value <= high:
        raise fail(path, f"must be a whole number from {low} to {high}")
    return value


def _optimize(table, arm_names: set[str], fail) -> Optimize:
    """Check the form of the ``[optimize]`` table (its meaning is checked by the optimiser)."""
    if not isinstance(table, dict):
        raise fail("optimize", "must be a table: [optimize]")
    known = {"arm", "constraints", "treatments", "sharpness", "penalty", "starts",
             "max_evaluations", *OBJECTIVES}
    extra = sorted(set(table) - known)
    if extra:
        raise fail(f"optimize.{extra[0]}", f"unknown key; [optimize] takes {sorted(known)}")
    arm = table.get("arm")
    if not isinstance(arm, str) or not arm.strip():
        raise fail("optimize.arm", "name the arm the optimiser adds (arm = \"optimised\")")
    if arm in arm_names:
        raise fail("optimize.arm", f"an arm is already named {arm!r}")
    senses = [k for k in OBJECTIVES if k in table]
    if len(senses) != 1:
        raise fail("optimize", "give exactly one objective: maximize = \"<outcome>\", "
                   "minimize = \"<outcome>\" or target = { outcome = \"...\", value = \"...\" }")
    sense = senses[0]
    target = None
    if sense == "target":
        goal = table["target"]
        if not isinstance(goal, dict) or set(goal) != {"outcome", "value"}:
            raise fail("optimize.target", "must be { outcome = \"<outcome>\", value = "
                       "\"<quantity>\" }")
        outcome, target = goal["outcome"], goal["value"]
        if not isinstance(target, str):
            raise fail("optimize.target.value", "give the target with its unit as a string")
    else:
        outcome = table[sense]
    if not isinstance(outcome, str):
        raise fail(f"optimize.{sense}", "name an outcome of the file")
    constraints = []
    raw = table.get("constraints", [])
    if not isinstance(raw, list):
        raise fail("optimize.constraints", "must be a list of tables")
    for i, entry in enumerate(raw):
        path = f"optimize.constraints[{i}]"
        bounds = [k for k in ("at_most", "at_least") if isinstance(entry, dict) and k in entry]
        if (not isinstance(entry, dict) or len(bounds) != 1
                or set(entry) != {"outcome", bounds[0]}):
            raise fail(path, "a constraint is { outcome = \"<outcome>\", at_most = \"...\" } "
                       "(or at_least)")
        if not isinstance(entry["outcome"], str) or not isinstance(entry[bounds[0]], str):
            raise fail(path, "give the outcome's name and the limit as strings")
        constraints.append({"outcome": entry["outcome"], bounds[0]: entry[bounds[0]],
                            "path": path})
    treatments = _items(table.get("treatments", []), "optimize.treatments", TREATMENT_KINDS,
                        fail)
    variables = 0
    for item in treatments:
        for key, value in item.values.items():
            if not (isinstance(value, dict) and "between" in value):
                continue
            path = f"{item.path}.{key}"
            if key not in OPTIMIZABLE.get(item.kind, ()):
                raise fail(path, f"{item.kind!r} cannot optimise {key!r}; it can optimise "
                           f"{list(OPTIMIZABLE.get(item.kind, ()))}")
            extra = sorted(set(value) - {"between", "start"})
            between = value["between"]
            if extra or not (isinstance(between, list) and len(between) == 2
                             and all(isinstance(b, str) for b in between)):
                raise fail(path, "a decision variable is { between = [\"<low>\", \"<high>\"] }"
                           " with an optional start = \"<value>\"")
            variables += 1
    if not variables:
        raise fail("optimize.treatments", "no decision variable: give a treatment value as "
                   "{ between = [\"<low>\", \"<high>\"] }")
    sharpness = table.get("sharpness")
    if sharpness is not None and not isinstance(sharpness, str):
        raise fail("optimize.sharpness", "give the sigmoids' width with its unit, for example "
                   "\"4 mg/dL\"")
    penalty = table.get("penalty", 10.0)
    if isinstance(penalty, bool) or not isinstance(penalty, (int, float)) or penalty <= 0:
        raise fail("optimize.penalty", "must be a positive number (objective units per unit of "
                   "constraint violation)")
    return Optimize(arm=arm, sense=sense, outcome=outcome, target=target,
                    constraints=tuple(constraints), treatments=treatments,
                    sharpness=sharpness, penalty=float(penalty),
                    starts=_whole(table.get("starts", 1), "optimize.starts", fail, 1, 256),
                    max_evaluations=_whole(table.get("max_evaluations", 40),
                                           "optimize.max_evaluations", fail, 1, 10_000))


def _items(raw, path: str, kinds: tuple[str, ...], fail) -> tuple[Item, ...]:
    if not isinstance(raw, list):
        raise fail(path, "must be a list of tables")
    items = []
    for i, entry in enumerate(raw):
        here = f"{path}[{i}]"
        if not isinstance(entry, dict):
            raise fail(here, "must be a table with a kind")
        kind = entry.get("kind")
        if kind not in kinds:
            raise fail(f"{here}.kind", f"must be one of {list(kinds)}, not {kind!r}")
        items.append(Item(kind, {k: v for k, v in entry.items() if k != "kind"}, here))
    return tuple(items)


def quantity_value(raw, unit: str, path: str, fail) -> float:
    """A quantity string (``"45 g"``) in ``unit``; an error names the key path."""
    if not isinstance(raw, str):  # a bare TOML number (or a table): say how to write it
        example = raw if isinstance(raw, (int, float)) and not isinstance(raw, bool) else 1
        raise fail(path, f"give a quantity with its unit as a string, for example "
                   f"\"{example} {unit}\"")
    try:
        quantity = ureg.Quantity(raw)
    except Exception as error:  # pint raises several types for unparsable text
        raise fail(path, f"cannot read {raw!r} as a quantity ({type(error).__name__}: "
                   f"{error})") from None
    if not hasattr(quantity, "units"):  # pint reads "80" as a plain number
        quantity = ureg.Quantity(quantity, "dimensionless")
    if quantity.dimensionless and not ureg.Quantity(1.0, unit).dimensionless:
        raise fail(path, f"{raw!r} has no unit; write it with one, such as \"{raw} {unit}\"")
    try:
        return float(quantity.to(unit).magnitude)
    except Exception:
        raise fail(path, f"{raw!r} is not convertible to {unit}") from None
