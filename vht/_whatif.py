"""Clinical what-if: the arms of a scenario file run on one patient's twin, with uncertainty.

``run_whatif(file)`` reads a scenario file (``vht._whatif_file``), builds the patient's twin,
draws the uncertainty members (a calibrated twin file's posterior samples, or population
variability around the patient), turns every arm into a ``vht.Scenario``, simulates each arm
for all members at once (``vht.simulate_ensemble`` for non-stiff twins, vmapped
``vht.simulate`` otherwise), and computes each outcome per member with its median and 90 %
interval (5th and 95th percentiles) per arm. ``write_whatif`` writes the trajectories as HDF5
(xarray, dims arm x member x time, units and provenance) and a self-contained HTML report.

The clinical vocabulary reaches the twin through its port names, so any twin that follows
them works: insulin kinds set the organ's ``basal_rate`` / ``bolus_rate`` parameters (U/min)
and the correction controller infuses into its ``Isc1`` depot (pmol/kg; UVA/Padova), meals
set ``carb_rate`` as simglucose eats (5 g/min), a hemorrhage sets ``hemorrhage_rate``, fluids
go into ``systemic_veins`` and rules read ``mean_arterial_pressure``; drug regimens dose into
a ``central`` (IV) or ``depot`` (oral) state. A key ``target`` / ``signal`` names another
port explicitly. A name the twin lacks is an error at the key that asked for it.

Envelope warnings: inputs outside the ranges vht's validation covered (``VALIDATED``),
members outside the virtual cohort's covariates (a UVA/Padova parameter drawn beyond its range
over the 30 virtual patients), a horizon beyond a pulsatile circulation's intended 30
minutes; the report adds members that failed (``WhatIfResult.failures`` says why, as
``Status`` names).
"""

from __future__ import annotations

import dataclasses
import datetime
import functools
import math
import time as _time
from pathlib import Path
from typing import Any

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np

from ._closed_form import closed_form_refusal, simulate_closed_form
from ._scenario import Bolus, Infusion, OralDose, ParameterStep, Scenario, Trigger
from ._simulate import Status, simulate
from ._simulate_ensemble import simulate_ensemble
from ._twin import Twin
from ._whatif_file import Arm, Item, WhatIfFile, quantity_value, read_whatif

EAT_RATE = 5.0  # g/min: simglucose's eating rate (the UVA/Padova meal model)
PMOL_PER_U = 6000.0  # pmol of insulin per unit (simglucose's conversion)

# The ranges vht's own validation runs covered (tests/test_uva_padova.py: meals of 45-83 g,
# boluses up to 8.3 U, simglucose's basal rates 0.5-1.5 U/h over the 30 virtual patients;
# the circulation's hemorrhage checks up to 45 % of blood volume at up to 150 mL/min; fluids up
# to 100 mL/min in the flagship and fluid tests). A value outside is run, with a warning.
VALIDATED = {
    "carbs": (0.0, 100.0, "g"),
    "insulin_dose": (0.0, 15.0, "U"),
    "basal_rate": (0.0, 3.0, "U/h"),
    "hemorrhage_rate": (0.0, 150.0, "mL/min"),
    "fluid_rate": (0.0, 200.0, "mL/min"),
}
PULSATILE_HORIZON = 30.0  # minutes: what the pulsatile circulation is for


@dataclasses.dataclass
class WhatIfResult:
    """What ``run_whatif`` computed: the trajectories, the outcome table and the warnings."""

    spec: WhatIfFile
    dataset: Any  # xarray.Dataset, dims arm x member x time
    outcomes: list[dict]
    warnings: list[str]
    provenance: dict
    seconds: float
    failures: dict  # arm: the statuses of its failed members (MAX_STEPS, NONFINITE...)


# -- the patient and the members ----------------------------------------------------------------

def _patient(spec: WhatIfFile) -> tuple[Twin, dict | None, str]:
    from ._twin_file import load_posterior, load_twin

    patient = spec.patient
    if "virtual" in patient:
        name = patient["virtual"]
        model, _, who = str(name).partition("/")
        if model != "uva_padova":
            raise spec.error("patient.virtual", f"unknown virtual patient family {model!r}; "
                             "use \"uva_padova/<name>\" (adolescent#001 ... adult#010)")
        from physiology_models.glucose_insulin import uva_padova as uva

        if who not in uva.patient_names():
            raise spec.error("patient.virtual", f"no UVA/Padova virtual patient {who!r}; "
                             f"the 30 are {', '.join(uva.patient_names()[:3])} ...")
        return uva.patient_twin(who), None, f"UVA/Padova virtual patient {who}"
    if "twin" in patient:
        from physiology_models import twins

        name = patient["twin"]
        builder = getattr(twins, str(name), None)
        if not callable(builder) or str(name).startswith("_"):
            raise spec.error("patient.twin", f"no twin builder {name!r} in "
                             "physiology_models.twins")
        arguments = patient.get("arguments", {})
        if not isinstance(arguments, dict):
            raise spec.error("patient.arguments", "must be a table of builder arguments")
        try:
            twin = builder(**arguments)
        except (TypeError, ValueError) as error:
            raise spec.error("patient.arguments", str(error)) from None
        if not isinstance(twin, Twin):
            raise spec.error("patient.twin", f"{name!r} does not build a vht.Twin")
        return twin, None, f"twin {name}({arguments or ''})"
    path = Path(patient["twin_file"])
    path = path if path.is_absolute() else spec.folder / path
    if not path.is_file():
        raise spec.error("patient.twin_file", f"no twin file at {path}")
    try:
        twin = load_twin(path)
    except (OSError, ValueError) as error:
        raise spec.error("patient.twin_file", str(error)) from None
    return twin, load_posterior(path), f"calibrated twin file {path.name}"


def _members(spec: WhatIfFile, twin: Twin, posterior: dict | None,
             warnings: list[str]) -> dict[str, np.ndarray]:
    """Parameter values per member ({name: (members,)}); empty for a single member."""
    u = spec.uncertainty
    if u["source"] == "none":
        return {}
    if u["source"] == "posterior":
        if not posterior:
            raise spec.error("uncertainty.source", "the twin file holds no posterior samples "
                             "(calibrate with samples, or use source = \"population\")")
        n = len(next(iter(posterior.values())))
        rng = np.random.default_rng(u["seed"])
        if n < u["members"]:
            warnings.append(f"the twin file holds {n} posterior samples, fewer than the "
                            f"{u['members']} members asked for: using all {n}")
            pick = np.arange(n)
        else:
            pick = np.sort(rng.choice(n, size=u["members"], replace=False))
        known = twin.parameters()
        return {name: np.asarray(values, dtype=float)[pick]
                for name, values in posterior.items() if name in known}
    base = twin.parameters()
    rng = np.random.default_rng(u["seed"])
    out = {}
    for name, cv in u["cv"].items():
        if name not in base:
            raise spec.error(f"uncertainty.cv.{name}", f"the twin has no parameter {name!r}")
        sigma = math.sqrt(math.log1p(cv**2))
        out[name] = float(base[name]) * np.exp(sigma * rng.standard_normal(u["members"]))
    return out


def _cohort_envelope(spec: WhatIfFile, twin: Twin, members: dict, warnings: list[str]):
    """Warn of members outside the covariates of the cohort the model was validated on: for
    a UVA/Padova virtual patient, each varied parameter against its range over the 30
    virtual patients (simglucose's table, which tests/test_uva_padova.py checks)."""
    if "virtual" not in spec.patient or not members:
        return
    from physiology_models.glucose_insulin import uva_padova as uva

    table = [uva.patient_parameters(n) for n in uva.patient_names()]
    for name, values in members.items():
        key = name.split(".", 1)[1]
        if key not in table[0]:
            continue
        low, high = min(p[key] for p in table), max(p[key] for p in table)
        outside = int(np.sum((values < low) | (values > high)))
        if outside:
            warnings.append(f"{outside} of {len(values)} members have {name} outside the range "
                            f"of the 30 virtual patients ({low:.4g}-{high:.4g}): the model's "
                            "validation did not cover them")


# -- the clinical vocabulary, resolved through port names ---------------------------------------

def _traced(value) -> bool:
    """A value the optimiser is differentiating: its checks ran at the variable's bounds."""
    return isinstance(value, jax.core.Tracer)


def _port(spec: WhatIfFile, item: Item, key: str, names, suffix: str, what: str) -> str:
    """The twin's port named explicitly by ``item[key]``, or the one ending ``.suffix``."""
    if key in item.values:
        name = item.values[key]
        if name not in names:
            raise spec.error(f"{item.path}.{key}", f"the twin has no {what} {name!r}")
        return name
    found = [n for n in names if n.endswith("." + suffix)]
    if len(found) != 1:
        raise spec.error(f"{item.path}.kind", f"{item.kind!r} needs the twin's {what} "
                         f"'<organ>.{suffix}'" + (f" (found {found}: name one with "
                                                    f"{key} = ...)" if found else
                                                    ", which this twin does not have"))
    return found[0]


def _require(spec: WhatIfFile, item: Item, keys: tuple[str, ...], optional: tuple[str, ...]):
    for key in keys:
        if key not in item.values:
            raise spec.error(f"{item.path}.{key}", f"{item.kind!r} needs {key!r}")
    extra = sorted(set(item.values) - set(keys) - set(optional))
    if extra:
        raise spec.error(f"{item.path}.{extra[0]}", f"{item.kind!r} takes {list(keys)}"
                         + (f" and optionally {list(optional)}" if optional else ""))


class _Builder:
    """Turns events and treatments into interventions for one twin, checking each key."""

    def __init__(self, spec: WhatIfFile, twin: Twin, warnings: list[str], decisions=None):
        self.spec, self.twin, self.warnings = spec, twin, warnings
        self.decisions = decisions  # the optimiser's decision variables (vht._optimize)
        self.parameters = list(twin.parameters())
        self.states = list(twin.state_names)
        self.signals = list(twin.signal_names)
        self.meals: list[tuple[float, float]] = []  # (minute, grams), for meal boluses

    def q(self, item: Item, key: str, unit: str, default: str | None = None) -> float:
        raw = item.values.get(key, default)
        path = f"{item.path}.{key}"
        if isinstance(raw, dict) and "between" in raw and self.decisions is not None:
            return self.decisions.value(path, raw, unit)
        return quantity_value(raw, unit, path, lambda p, m: self.spec.error(p, m))

    def check_range(self, item: Item, key: str, value: float, what: str):
        low, high, unit = VALIDATED[what]
        if not _traced(value) and not low <= value <= high:
            self.warnings.append(f"{item.path}.{key} = {value:g} {unit} lies outside the range "
                                 f"vht's validation covered ({low:g}-{high:g} {unit})")

    def whole_minute(self, item: Item, key: str, value: float) -> float:
        if not float(value).is_integer():
            raise self.spec.error(f"{item.path}.{key}", "the insulin pump and meals act at "
                                  "whole minutes (simglucose's clock): give a whole minute")
        return value

    def parameter(self, item: Item, suffix: str) -> str:
        return _port(self.spec, item, "parameter", self.parameters, suffix, "parameter")

    # events
    def meal(self, item: Item) -> list:
        _require(self.spec, item, ("time", "carbs"), ())
        carb_rate = self.parameter(item, "carb_rate")
        minute = self.whole_minute(item, "time", self.q(item, "time", "min"))
        grams = self.q(item, "carbs", "g")
        self.check_range(item, "carbs", grams, "carbs")
        self.meals.append((minute, grams))
        full = math.floor(grams / EAT_RATE)
        return [ParameterStep(carb_rate, EAT_RATE, time=minute, duration=float(full)),
                ParameterStep(carb_rate, grams - EAT_RATE * full, time=minute + full,
                              duration=1.0)]

    def hemorrhage(self, item: Item) -> list:
        _require(self.spec, item, ("start", "duration", "rate"), ("parameter",))
        name = self.parameter(item, "hemorrhage_rate")
        rate = self.q(item, "rate", "mL/min")
        self.check_range(item, "rate", rate, "hemorrhage_rate")
        return [ParameterStep(name, rate, time=self.q(item, "start", "min"),
                              duration=self.q(item, "duration", "min"), unit="mL/min")]

    def generic_parameter(self, item: Item) -> list:
        _require(self.spec, item, ("parameter", "value"), ("start", "duration"))
        name = item.values["parameter"]
        info = self.twin.parameter_info().get(name)
        if info is None:
            raise self.spec.error(f"{item.path}.parameter", f"the twin has no parameter "
                                  f"{name!r}")
        value = self.q(item, "value", info.unit)
        if not _traced(value) and not info.lower <= value <= info.upper:
            raise self.spec.error(f"{item.path}.value", f"{value:g} {info.unit} lies outside "
                                  f"the parameter's bounds [{info.lower}, {info.upper}]")
        duration = self.q(item, "duration", "min") if "duration" in item.values else math.inf
        return [ParameterStep(name, value, time=self.q(item, "start", "min", "0 min"),
                              duration=duration)]

    # treatments
    def basal_insulin(self, item: Item) -> list:
        _require(self.spec, item, ("rate",), ("start", "duration", "parameter"))
        name = self.parameter(item, "basal_rate")
        rate = self.q(item, "rate", "U/min")
        self.check_range(item, "rate", rate * 60.0, "basal_rate")
        start = self.whole_minute(item, "start", self.q(item, "start", "min", "0 min"))
        duration = (self.whole_minute(item, "duration", self.q(item, "duration", "min"))
                    if "duration" in item.values else math.inf)
        return [ParameterStep(name, rate, time=start, duration=duration, unit="U/min")]

    def insulin_bolus(self, item: Item) -> list:
        _require(self.spec, item, ("dose", "time"), ("parameter",))
        name = self.parameter(item, "bolus_rate")
        dose = self.q(item, "dose", "U")
        self.check_range(item, "dose", dose, "insulin_dose")
        minute = self.whole_minute(item, "time", self.q(item, "time", "min"))
        return [ParameterStep(name, dose, time=minute, duration=1.0, unit="U/min")]

    def meal_bolus(self, item: Item) -> list:
        _require(self.spec, item, ("carb_ratio",), ("parameter",))
        name = self.parameter(item, "bolus_rate")
        ratio = self.q(item, "carb_ratio", "g/U")
        if not _traced(ratio) and ratio <= 0:
            raise self.spec.error(f"{item.path}.carb_ratio", "must be positive")
        if not self.meals:
            raise self.spec.error(f"{item.path}.kind", "a meal bolus needs meals: add "
                                  "[[events]] of kind \"meal\"")
        out = []
        low, high, _ = VALIDATED["insulin_dose"]
        for minute, grams in self.meals:
            if not _traced(ratio) and not low <= grams / ratio <= high:
                self.warnings.append(
                    f"{item.path}: the bolus of {grams / ratio:.3g} U for the {grams:g} g meal "
                    f"at {minute / 60:g} h lies outside the range vht's validation covered "
                    f"({low:g}-{high:g} U)")
            out.append(ParameterStep(name, grams / ratio, time=minute, duration=1.0,
                                     unit="U/min"))
        return out

    def correction_insulin(self, item: Item) -> list:
        _require(self.spec, item, ("above", "rate"), ("until", "signal", "target"))
        signal = _port(self.spec, item, "signal", self.signals, "glucose", "signal")
        target = _port(self.spec, item, "target", self.states, "Isc1", "state")
        organ = target.split(".", 1)[0]
        weight = self.twin.parameters().get(f"{organ}.BW")
        if weight is None:
            raise self.spec.error(f"{item.path}.target", "correction insulin needs the "
                                  "organ's body weight BW to dose in pmol/kg")
        rate = self.q(item, "rate", "U/min") * PMOL_PER_U / float(weight)  # pmol/kg/min
        above = self.q(item, "above", "mg/dL")
        until = self.q(item, "until", "mg/dL", item.values.get("above"))
        if until > above:
            raise self.spec.error(f"{item.path}.until", "the controller stops below 'until', "
                                  "which must not exceed 'above'")
        return [Trigger(signal, above, target, rate, release=until, below=False,
                        signal_unit="mg/dL", max_switches=16)]

    def drug_regimen(self, item: Item) -> list:
        _require(self.spec, item, ("dose",), ("interval", "count", "start", "route",
                                              "duration", "target"))
        route = item.values.get("route", "iv")
        if route not in ("iv", "oral", "infusion"):
            raise self.spec.error(f"{item.path}.route", "must be \"iv\", \"oral\" or "
                                  "\"infusion\"")
        target = _port(self.spec, item, "target", self.states,
                       "depot" if route == "oral" else "central", "state")
        unit = self.twin.state_units[self.twin.state_index(target)]
        dose = self.q(item, "dose", unit)
        count = item.values.get("count", 1)
        if not isinstance(count, int) or isinstance(count, bool) or count < 1:
            raise self.spec.error(f"{item.path}.count", "must be a whole number of at least 1")
        if count > 1 and "interval" not in item.values:
            raise self.spec.error(f"{item.path}.interval", "repeated doses need an interval")
        interval = self.q(item, "interval", "min") if count > 1 else 0.0
        start = self.q(item, "start", "min", "0 min")
        times = [start + k * interval for k in range(count)]
        if times[-1] > self.spec.horizon:
            self.warnings.append(f"{item.path}: doses after the horizon "
                                 f"({self.spec.horizon / 60:g} h) have no effect on the run")
        if route == "infusion":
            duration = self.q(item, "duration", "min")
            return [Infusion(target, dose / duration, start=t, duration=duration)
                    for t in times]
        kind = OralDose if route == "oral" else Bolus
        return [kind(target, dose, t) for t in times]

    def iv_fluid(self, item: Item) -> list:
        _require(self.spec, item, ("rate",), ("start", "duration", "target"))
        target = _port(self.spec, item, "target", self.states, "systemic_veins", "state")
        rate = self.q(item, "rate", "mL/min")
        self.check_range(item, "rate", rate, "fluid_rate")
        duration = self.q(item, "duration", "min") if "duration" in item.values else math.inf
        return [Infusion(target, rate, start=self.q(item, "start", "min", "0 min"),
                         duration=duration, unit="mL/min")]

    def _rule(self, item: Item, default_target: str) -> tuple[str, float, float, str]:
        """(signal, switch-on level, release level, target) of a rule acting while a signal
        (default mean arterial pressure) is below a level."""
        _require(self.spec, item, ("below", "rate"), ("until", "signal", "target"))
        signal = _port(self.spec, item, "signal", self.signals, "mean_arterial_pressure",
                       "signal")
        target = _port(self.spec, item, "target", self.states, default_target, "state")
        unit = self.twin.signal_units[self.twin.signal_index(signal)]
        below = self.q(item, "below", unit)
        until = self.q(item, "until", unit, item.values.get("below"))
        if until < below:
            raise self.spec.error(f"{item.path}.until", "the rule stops above 'until', which "
                                  "must not be below 'below'")
        return signal, below, until, target

    def fluid_rule(self, item: Item) -> list:
        signal, below, until, target = self._rule(item, "systemic_veins")
        rate = self.q(item, "rate", "mL/min")
        self.check_range(item, "rate", rate, "fluid_rate")
        return [Trigger(signal, below, target, rate, release=until, unit="mL/min",
                        max_switches=16)]

    def drug_rule(self, item: Item) -> list:
        signal, below, until, target = self._rule(item, "central")
        per_minute = f"{self.twin.state_units[self.twin.state_index(target)]}/min"
        rate = self.q(item, "rate", per_minute)
        return [Trigger(signal, below, target, rate, release=until, max_switches=16)]

    def build(self, item: Item) -> list:
        method = {"parameter": self.generic_parameter}.get(item.kind) or getattr(self, item.kind)
        return method(item)


# -- outcomes -------------------------------------------------------------------------------------

OUTCOME_UNITS = {"time_in_range": "%", "time_below": "%", "time_above": "%",
                 "time_at_least": "%"}
_DEFAULT_SIGNAL = {"time_in_range": "glucose", "time_below": "glucose", "time_above": "glucose",
                   "time_at_least": "mean_arterial_pressure"}


@dataclasses.dataclass(frozen=True)
class Outcome:
    name: str
    kind: str
    signal: str
    unit: str  # of the value reported
    start: float
    end: float
    low: float | None = None  # thresholds, in the signal's unit
    high: float | None = None
    definition: str = ""

    def per_member(self, ts: np.ndarray, values, xp=np):
        """The outcome for each member (values: members x times); NaN for failed members.
        ``xp`` is numpy or ``jax.numpy`` (the optimiser computes the true metric in JAX)."""
        window = (ts >= self.start) & (ts <= self.end)
        t, v = ts[window], values[:, window]
        failed = ~xp.all(xp.isfinite(v), axis=1)

        def percent(readings):  # in the signal's precision (JAX would average bools in float32)
            return 100.0 * xp.mean(readings.astype(v.dtype), axis=1)

        if self.kind == "time_in_range":
            value = percent((v >= self.low) & (v <= self.high))
        elif self.kind == "time_below":
            value = percent(v < self.low)
        elif self.kind == "time_above":
            value = percent(v > self.high)
        elif self.kind == "time_at_least":
            value = percent(v >= self.low)
        else:
            value = self._continuous(t, v, xp)
        # a comparison with NaN is False, so a failed member would count as a time fraction
        return xp.where(failed, xp.nan, value)

    def _continuous(self, t, v, xp):
        if self.kind == "peak":
            return xp.max(v, axis=1)
        if self.kind == "trough":
            return xp.min(v, axis=1)
        if self.kind == "mean":
            return xp.trapezoid(v, t, axis=1) / (t[-1] - t[0])
        if self.kind == "final":
            return v[:, -1]
        return xp.trapezoid(v, t / 60.0, axis=1)  # auc, in signal unit x h

    @property
    def thresholds(self) -> tuple[float, ...]:
        return tuple(x for x in {self.low, self.high} if x is not None)

    def smooth(self, ts: np.ndarray, values, sharpness: dict[float, float]):
        """A differentiable surrogate of ``per_member`` (JAX), for the optimiser.

        A reading's indicator ``v < c`` becomes the logistic sigmoid ``s((c - v) / w)`` with
        width ``w = sharpness[c]`` in the signal's unit: a reading ``w`` inside the threshold
        counts 0.73, ``3 w`` inside 0.95, as ``w`` -> 0 the surrogate becomes the metric. Peak,
        trough, mean, final value and AUC are already differentiable (peak and trough almost
        everywhere) and are their own surrogates. NaN for failed members.
        """
        window = (ts >= self.start) & (ts <= self.end)
        t, v = ts[window], values[:, window]
        failed = ~jnp.all(jnp.isfinite(v), axis=1)
        sig = jax.nn.sigmoid
        if self.kind == "time_in_range":
            inside = sig((v - self.low) / sharpness[self.low]) * sig(
                (self.high - v) / sharpness[self.high])
        elif self.kind == "time_below":
            inside = sig((self.low - v) / sharpness[self.low])
        elif self.kind == "time_above":
            inside = sig((v - self.high) / sharpness[self.high])
        elif self.kind == "time_at_least":
            inside = sig((v - self.low) / sharpness[self.low])
        else:
            return jnp.where(failed, jnp.nan, self._continuous(t, v, jnp))
        return jnp.where(failed, jnp.nan, 100.0 * jnp.mean(inside, axis=1))


def _outcomes(spec: WhatIfFile, twin: Twin) -> list[Outcome]:
    out, names = [], set()
    for item in spec.outcomes:
        kind, values = item.kind, item.values
        allowed = {"time_in_range": ("low", "high"), "time_below": ("threshold",),
                   "time_above": ("threshold",), "time_at_least": ("threshold",)}.get(kind, ())
        _require(spec, item, allowed, ("name", "signal", "start", "end"))
        default = _DEFAULT_SIGNAL.get(kind, "concentration")
        signal = _port(spec, item, "signal", twin.signal_names, default, "signal")
        unit = twin.signal_units[twin.signal_index(signal)]

        def q(key, to, fallback=None, item=item):
            return quantity_value(item.values.get(key, fallback), to, f"{item.path}.{key}",
                                  lambda p, m: spec.error(p, m))

        start = q("start", "min", "0 min")
        end = q("end", "min", f"{spec.horizon} min")
        if not 0 <= start < end <= spec.horizon + 1e-9:
            raise spec.error(f"{item.path}.end", "the window must lie within the horizon, "
                             "start before end")
        short = signal.split(".", 1)[1].replace("_", " ")
        low = high = None
        if kind == "time_in_range":
            low, high = q("low", unit), q("high", unit)
            if low >= high:
                raise spec.error(f"{item.path}.high", "must be above 'low'")
            definition = f"% of readings with {low:g} <= {short} <= {high:g} {unit}"
            default_name = f"time in range {low:g}-{high:g} {unit}"
        elif kind in ("time_below", "time_above", "time_at_least"):
            threshold = q("threshold", unit)
            low = high = threshold
            sign = {"time_below": "<", "time_above": ">", "time_at_least": ">="}[kind]
            definition = f"% of readings with {short} {sign} {threshold:g} {unit}"
            default_name = f"time {short} {sign} {threshold:g} {unit}"
        else:
            definition = {"peak": "largest", "trough": "smallest", "mean": "time-averaged",
                          "final": "last", "auc": "area under the curve (trapezoid) of"}[kind]
            definition = f"{definition} {short}"
            default_name = f"{kind} {short}" if kind != "auc" else f"AUC {short}"
        if start > 0 or end < spec.horizon:
            definition += f", from {start / 60:g} h to {end / 60:g} h"
        name = values.get("name", default_name)
        if name in names:
            raise spec.error(f"{item.path}.name", f"two outcomes are named {name!r}")
        names.add(name)
        report_unit = OUTCOME_UNITS.get(kind, f"{unit}*h" if kind == "auc" else unit)
        out.append(Outcome(name, kind, signal, report_unit, start, end, low, high, definition))
    return out


# -- running --------------------------------------------------------------------------------------

def build(spec: WhatIfFile, *, decisions=None, patient=None
          ) -> tuple[Twin, dict, list[tuple[str, Scenario]], list[Outcome], list[str], str]:
    """The twin, member parameters, one scenario per arm, the outcomes and warnings.

    With ``decisions`` (``vht._optimize``) the ``[optimize]`` arm comes last, its decision
    variables at the decisions' current values; ``patient`` is ``_patient(spec)`` if known.
    """
    warnings: list[str] = []
    twin, posterior, who = _patient(spec) if patient is None else patient
    members = _members(spec, twin, posterior, warnings)
    _cohort_envelope(spec, twin, members, warnings)
    builder = _Builder(spec, twin, warnings, decisions)
    events = [x for item in spec.events for x in builder.build(item)]
    arm_list = list(spec.arms)
    if decisions is not None:
        arm_list.append(Arm(spec.optimize.arm, spec.optimize.treatments, "optimize"))
    treatments = [[x for item in arm.treatments for x in builder.build(item)]
                  for arm in arm_list]
    # Every arm carries every arm's treatments, the others' switched off, so that all arms
    # have one structure and share one compiled program (compilation dominates a what-if run).
    arms = []
    for a, arm in enumerate(arm_list):
        items = [x if j == a else _switched_off(x)
                 for j, own in enumerate(treatments) for x in own]
        arms.append((arm.name, Scenario(events + items, name=arm.name)))
    outcomes = _outcomes(spec, twin)
    if any(type(o).__name__ == "ClosedLoopCirculation" for o in twin.organs) and \
            spec.horizon > PULSATILE_HORIZON:
        warnings.append(f"the pulsatile circulation is meant for horizons up to "
                        f"{PULSATILE_HORIZON:g} min; this run lasts {spec.horizon:g} min "
                        "(use the beat-averaged circulation for longer ones)")
    return twin, members, arms, outcomes, warnings, who


def _switched_off(item):
    """The same intervention with no effect: zero amount or rate, an empty window."""
    zero = jnp.zeros(())
    if isinstance(item, (Bolus, OralDose)):
        return eqx.tree_at(lambda x: x.amount, item, zero)
    if isinstance(item, (Infusion, Trigger)):
        return eqx.tree_at(lambda x: x.rate, item, zero)
    if isinstance(item, ParameterStep):
        return eqx.tree_at(lambda x: x.duration, item, zero)
    raise TypeError(f"cannot switch off {type(item).__name__}")


def _cohort(twin: Twin, members: dict) -> Twin:
    if not members:  # one member: the patient as given
        first = next(iter(twin.parameters()))
        members = {first: np.asarray(twin.parameters()[first])[None]}
    return jax.vmap(lambda p: twin.replace(p))({k: jnp.asarray(v) for k, v in members.items()})


def _start(spec: WhatIfFile, cohort: Twin, warnings: list[str]) -> jax.Array:
    """Each member's initial state: its own (periodic) steady state, or the twin's initial
    state (``[patient] start``)."""
    initial = jax.vmap(lambda tw: tw.initial_state())(cohort)
    if spec.patient.get("start", "initial") == "initial":
        return initial
    from ._steady_state import steady_state

    found = jax.vmap(lambda tw: steady_state(tw))(cohort)
    converged = np.asarray(found.converged)
    if not converged.all():
        warnings.append(f"{int((~converged).sum())} member(s) found no steady state; they "
                        "start from the twin's initial state")
    return jnp.where(jnp.asarray(converged)[:, None], found.y, initial)


def _simulate_arm(twin: Twin, cohort: Twin, y0, scenario: Scenario, ts: np.ndarray):
    # without its name (a static field) every arm's scenario has the same structure, so the
    # arms share one compiled program
    scenario = Scenario(scenario.interventions)
    if closed_form_refusal(twin, scenario) is None:  # linear organs, doses only: exact
        return (_vmapped_closed_form(tuple(float(t) for t in ts))(cohort, y0, scenario),
                "vht.simulate_closed_form (exact, no solver)")
    if twin.stiffness == "nonstiff":
        return simulate_ensemble(cohort, scenario, ts=ts, y0=y0, max_steps=MAX_STEPS,
                                 **ENSEMBLE_TOLERANCES), "vht.simulate_ensemble (Dopri5)"
    solve = _vmapped_simulate(tuple(float(t) for t in ts))
    return solve(cohort, y0, scenario), "vmapped vht.simulate (diffrax Kvaerno3)"


@functools.lru_cache(maxsize=8)
def _vmapped_closed_form(save_times: tuple[float, ...]):
    """As ``_vmapped_simulate``, for twins solved in closed form."""
    ts = jnp.asarray(save_times)

    @eqx.filter_jit
    def solve(cohort, y0, scenario):
        return jax.vmap(lambda tw, y: simulate_closed_form(tw, scenario, ts=ts, y0=y))(cohort, y0)

    return solve


# The step budget is per segment between stops: a pulsatile circulation takes about 40 steps
# a beat, 100,000 in half an hour without a stop.
MAX_STEPS = 1_000_000
ENSEMBLE_TOLERANCES = {"rtol": 1e-6, "atol": 1e-8}  # what-if runs and the optimiser alike


@functools.lru_cache(maxsize=8)
def _vmapped_simulate(save_times: tuple[float, ...]):
    """One compiled vmapped solve per set of save times; the scenario's numbers are its
    arguments, so every arm of a file runs through the same program."""
    ts = np.asarray(save_times)

    @eqx.filter_jit
    def solve(cohort, y0, scenario):
        return jax.vmap(lambda tw, y: simulate(tw, scenario, ts=ts, y0=y, throw=False,
                                               max_steps=MAX_STEPS))(cohort, y0)

    return solve


def run_whatif(source, *, progress: bool = True) -> WhatIfResult:
    """Run every arm of a what-if scenario file (a path, TOML text or a ``WhatIfFile``)."""
    import xarray as xr

    from . import __version__
    from ._hashing import model_hash, parameter_hash

    started = _time.perf_counter()
    spec = source if isinstance(source, WhatIfFile) else read_whatif(source)
    twin, members, arms, outcomes, warnings, who = build(spec)
    ts = np.arange(0.0, spec.horizon + 1e-9, spec.save_every)
    signals = sorted({o.signal for o in outcomes} | {
        n for n in twin.signal_names if n.split(".", 1)[1] in (
            "glucose", "mean_arterial_pressure", "concentration", "heart_rate")})
    bar = None
    if progress:
        from tqdm.auto import tqdm

        bar = tqdm(total=len(arms), unit="arm", desc="what-if arms", leave=False)
    data = {s: [] for s in signals}
    status = []
    integrator = ""
    cohort = _cohort(twin, members)
    y0 = _start(spec, cohort, warnings)
    for name, scenario in arms:
        solution, integrator = _simulate_arm(twin, cohort, y0, scenario, ts)
        for s in signals:
            data[s].append(np.asarray(solution[s]))
        status.append(np.asarray(solution.status))
        if bar is not None:
            bar.update()
            bar.set_postfix_str(name[:30])
    if bar is not None:
        bar.close()
    status = np.stack(status)
    n_members = status.shape[1]
    failed = status != Status.OK
    # failed members: the report counts and warns of them (NaN outputs); the statuses say why
    failures = {name: sorted({Status(int(x)).name for x in status[a][failed[a]]})
                for a, (name, _) in enumerate(arms) if failed[a].any()}
    arm_names = [name for name, _ in arms]
    variables = {}
    for s in signals:
        values = np.stack(data[s])  # arm x member x time
        unit = twin.signal_units[twin.signal_index(s)]
        variables[s] = (("arm", "member", "time"), values, {"units": unit})
    variables["status"] = (("arm", "member"), status.astype(np.int16), {})
    for name, values in members.items():
        info = twin.parameter_info()[name]
        variables[f"parameter.{name}"] = (("member",), np.asarray(values), {"units": info.unit})
    rows = []
    for a, name in enumerate(arm_names):
        for outcome in outcomes:
            v = outcome.per_member(ts, variables[outcome.signal][1][a])
            v = v[np.isfinite(v)]
            lo, med, hi = (np.quantile(v, [0.05, 0.5, 0.95]) if v.size else
                           (math.nan,) * 3)
            rows.append({"arm": name, "outcome": outcome.name, "unit": outcome.unit,
                         "median": float(med), "low": float(lo), "high": float(hi),
                         "members": int(v.size), "definition": outcome.definition})
    provenance = {
        "vht": __version__, "scenario file": spec.source, "scenario sha256": spec.sha256,
        "patient": who, "model hash": model_hash(twin), "parameter hash": parameter_hash(twin),
        "integrator": integrator, "uncertainty": f"{spec.uncertainty['source']}, "
        f"{n_members} member(s), seed {spec.uncertainty['seed']}",
        "save times": f"every {spec.save_every:g} min to {spec.horizon:g} min",
        "created": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
    }
    dataset = xr.Dataset(
        {k: xr.Variable(*v) for k, v in variables.items()},
        coords={"arm": arm_names, "member": np.arange(n_members), "time": ts},
        attrs={**{k.replace(" ", "_"): str(v) for k, v in provenance.items()},
               "title": spec.title, "time_units": "min"})
    dataset["time"].attrs["units"] = "min"
    return WhatIfResult(spec, dataset, rows, warnings, provenance,
                        _time.perf_counter() - started, failures)


def write_whatif(result: WhatIfResult, out: str | Path, *, sections=()) -> dict[str, Path]:
    """Write ``whatif.h5`` (the trajectories), ``report.html`` and the report's figures as
    ``figures/<signal>.png`` into folder ``out`` (``sections``: extra report sections,
    ``vht._report.Section``)."""
    from ._report import write_report
    from ._results import save_dataset

    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    h5 = out / "whatif.h5"
    save_dataset(result.dataset, h5)
    signals = [s for s in result.dataset.data_vars
               if result.dataset[s].dims == ("arm", "member", "time")]
    html = write_report(out / "report.html", title=result.spec.title, dataset=result.dataset,
                        outcomes=result.outcomes, warnings=result.warnings,
                        provenance={**result.provenance,
                                    "run time": f"{result.seconds:.1f} s"},
                        signals=signals, sections=sections, figures=out / "figures")
    return {"results": h5, "report": Path(html), "figures": out / "figures"}
