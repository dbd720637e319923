"""Scenarios: what is done to the patient, and when.

A ``Scenario`` is an equinox Module holding interventions. Every number in it (amount, rate,
time, threshold) is an array leaf, so a scenario can be differentiated (a dose time, a dose
amount) and vmapped over treatment arms (``stack``); which state or parameter an intervention
acts on is static structure. Times are framework minutes (``vht.HOUR``, ``vht.DAY`` help).

The interventions, and how ``simulate`` honours each:

| intervention | what it does | how the solver sees it |
|---|---|---|
| ``Bolus`` | an amount added to a state at an instant | the solve is split at the dose time |
| ``OralDose`` | a bolus into an absorption depot | the organ applies bioavailability and lag |
| ``Infusion`` | a constant rate into a state over a window | forcing; window edges are jump times |
| ``Meal`` | an amount eaten at a constant rate over a duration | an infusion into the stomach |
| ``ParameterStep`` | a parameter takes a new value over a window | forcing; edges are jump times |
| ``Trigger`` | an infusion while a signal is below (or above) a threshold | a diffrax ``Event`` |

Amounts and rates may carry a ``unit``; it is converted into the target state's unit (per
minute for rates) with the project's unit registry when the scenario meets a twin.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import ClassVar

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
from jaxtyping import Array

from ._twin import Twin
from ._units import TIME_UNIT, conversion_factor, per_time


def _array(x) -> Array:
    return jnp.asarray(x, dtype=jnp.result_type(float))


def _optional_array(x) -> Array | None:
    return None if x is None else _array(x)


def _describe_value(x):
    value = np.asarray(x)
    return value.item() if value.ndim == 0 else value.tolist()


class AbstractIntervention(eqx.Module):
    """Base class of everything a scenario can do to a twin."""

    def describe(self) -> dict:
        """A JSON-able record of the intervention (for provenance)."""
        out = {"type": type(self).__name__}
        for name in self.__dataclass_fields__:
            out[name] = _describe_value(getattr(self, name)) if isinstance(
                getattr(self, name), (jax.Array, np.ndarray)) else getattr(self, name)
        return out


class AbstractDose(AbstractIntervention):
    """An amount given at an instant into a state."""

    target: eqx.AbstractVar[str]
    amount: eqx.AbstractVar[Array]
    time: eqx.AbstractVar[Array]
    unit: eqx.AbstractVar[str | None]
    route: ClassVar[str] = ""

    def resolved(self, twin: Twin) -> tuple[int, Array, Array]:
        """(state index, amount in the state's unit, arrival time) after the organ's routing."""
        index = twin.state_index(self.target)
        state_unit = twin.state_units[index]
        factor = 1.0 if self.unit is None else conversion_factor(self.unit, state_unit)
        amount, time = twin.dose(self.target, self.amount * factor, self.time)
        return index, amount, time


class Bolus(AbstractDose):
    """An intravenous bolus: ``amount`` (in ``unit``, default the state's) added at ``time``."""

    target: str = eqx.field(static=True)
    amount: Array = eqx.field(converter=_array)
    time: Array = eqx.field(converter=_array)
    unit: str | None = eqx.field(static=True, default=None)
    route: ClassVar[str] = "iv"


class OralDose(AbstractDose):
    """An oral dose into an absorption depot state; the organ applies bioavailability and lag."""

    target: str = eqx.field(static=True)
    amount: Array = eqx.field(converter=_array)
    time: Array = eqx.field(converter=_array)
    unit: str | None = eqx.field(static=True, default=None)
    route: ClassVar[str] = "oral"


class AbstractRateInput(AbstractIntervention):
    """A constant rate into a state over a window ``[start, end)``."""

    def window(self, twin: Twin) -> tuple[int, Array, Array, Array]:
        """(state index, rate in state units per minute, start, end)."""
        raise NotImplementedError

    def _index_and_factor(self, twin: Twin, target: str, unit: str | None) -> tuple[int, float]:
        index = twin.state_index(target)
        state_rate_unit = per_time(twin.state_units[index])
        return index, 1.0 if unit is None else conversion_factor(unit, state_rate_unit)


class Infusion(AbstractRateInput):
    """Constant-rate infusion of ``rate`` (``unit``, default state unit per minute) into a state
    from ``start`` for ``duration`` minutes (``inf`` for the rest of the run)."""

    target: str = eqx.field(static=True)
    rate: Array = eqx.field(converter=_array)
    start: Array = eqx.field(converter=_array, default=0.0)
    duration: Array = eqx.field(converter=_array, default=math.inf)
    unit: str | None = eqx.field(static=True, default=None)

    def window(self, twin):
        index, factor = self._index_and_factor(twin, self.target, self.unit)
        return index, self.rate * factor, self.start, self.start + self.duration


class Meal(AbstractRateInput):
    """A meal of ``amount`` (``unit``, default the state's) eaten at a constant rate from ``time``
    over ``duration`` minutes, into a stomach state."""

    target: str = eqx.field(static=True)
    amount: Array = eqx.field(converter=_array)
    time: Array = eqx.field(converter=_array)
    duration: Array = eqx.field(converter=_array, default=15.0)
    unit: str | None = eqx.field(static=True, default=None)

    def window(self, twin):
        index = twin.state_index(self.target)
        factor = 1.0 if self.unit is None else conversion_factor(self.unit, twin.state_units[index])
        return index, self.amount * factor / self.duration, self.time, self.time + self.duration


class ParameterStep(AbstractIntervention):
    """Parameter ``"organ.parameter"`` takes ``value`` (in ``unit``, default the parameter's)
    from ``time`` for ``duration`` minutes, then returns to its own value."""

    parameter: str = eqx.field(static=True)
    value: Array = eqx.field(converter=_array)
    time: Array = eqx.field(converter=_array, default=0.0)
    duration: Array = eqx.field(converter=_array, default=math.inf)
    unit: str | None = eqx.field(static=True, default=None)

    def resolved(self, twin: Twin) -> tuple[str, Array, Array, Array]:
        info = twin.parameter_info().get(self.parameter)
        if info is None:
            raise ValueError(f"ParameterStep: unknown parameter {self.parameter!r}")
        factor = 1.0 if self.unit is None else conversion_factor(self.unit, info.unit)
        value = self.value * factor
        if not isinstance(value, jax.core.Tracer):
            concrete = np.asarray(value)
            if np.any(concrete < info.lower) or np.any(concrete > info.upper):
                raise ValueError(f"ParameterStep: {self.parameter} = {concrete} [{info.unit}] lies "
                                 f"outside its bounds [{info.lower}, {info.upper}]")
        return self.parameter, value, self.time, self.time + self.duration


class Trigger(AbstractIntervention):
    """Infuse ``rate`` into ``target`` while ``signal`` is below ``threshold`` (``below=True``) or
    above it (``below=False``).

    The treatment switches on when the signal crosses ``threshold`` and off when it crosses back
    over ``release`` (default: ``threshold``); a release level a little beyond the threshold
    (hysteresis) avoids rapid on/off switching. Crossings are located by a diffrax ``Event``
    with a bisection root finder, and each switch starts a new solver segment; ``max_switches``
    bounds them, and a run that needs more is reported as failed (``Status.SWITCH_BUDGET``)
    rather than truncated. Without hysteresis the switch back is detected once the signal is
    1e-6 of the level beyond it (a rule that holds a signal exactly at its threshold chatters
    and exhausts its budget). Several triggers crossing at the same instant all switch.
    """

    signal: str = eqx.field(static=True)
    threshold: Array = eqx.field(converter=_array)
    target: str = eqx.field(static=True)
    rate: Array = eqx.field(converter=_array)
    release: Array | None = eqx.field(default=None, converter=_optional_array)
    below: bool = eqx.field(static=True, default=True)
    unit: str | None = eqx.field(static=True, default=None)
    signal_unit: str | None = eqx.field(static=True, default=None)
    max_switches: int = eqx.field(static=True, default=8)

    def resolved(self, twin: Twin) -> tuple[int, Array, Array, int, Array]:
        """(signal index, threshold, release, state index, rate per minute in state units)."""
        signal_index = twin.signal_index(self.signal)
        signal_unit = twin.signal_units[signal_index]
        scale = (1.0 if self.signal_unit is None
                 else conversion_factor(self.signal_unit, signal_unit))
        release = self.threshold if self.release is None else self.release
        index = twin.state_index(self.target)
        factor = 1.0 if self.unit is None else conversion_factor(
            self.unit, per_time(twin.state_units[index]))
        return signal_index, self.threshold * scale, release * scale, index, self.rate * factor


class Scenario(eqx.Module):
    """Interventions applied to a twin. ``Scenario()`` is the untreated, unperturbed twin."""

    interventions: tuple[AbstractIntervention, ...]
    name: str = eqx.field(static=True)

    def __init__(self, interventions: Sequence[AbstractIntervention] = (), name: str = ""):
        interventions = tuple(interventions)
        for item in interventions:
            if not isinstance(item, AbstractIntervention):
                raise ValueError(f"scenario items must be interventions, got {type(item).__name__}")
        self.interventions = interventions
        self.name = name

    def __add__(self, other: Scenario) -> Scenario:
        return Scenario(self.interventions + other.interventions,
                        name=" + ".join(n for n in (self.name, other.name) if n))

    def of_type(self, kind: type) -> tuple:
        return tuple(i for i in self.interventions if isinstance(i, kind))

    def describe(self) -> dict:
        return {"name": self.name, "time_unit": TIME_UNIT,
                "interventions": [i.describe() for i in self.interventions]}


def stack(scenarios: Sequence[Scenario]) -> Scenario:
    """Stack scenarios of identical structure into one with a leading ``arm`` axis on every
    number, for ``jax.vmap`` over arms. Arms that differ in structure are an error: give each
    arm the same interventions and switch unused ones off (a zero amount or rate)."""
    scenarios = list(scenarios)
    if not scenarios:
        raise ValueError("stack needs at least one scenario")
    first = jax.tree.structure(scenarios[0].interventions)
    for k, scenario in enumerate(scenarios[1:], start=1):
        if jax.tree.structure(scenario.interventions) != first:
            raise ValueError(f"scenario {k} ({scenario.name!r}) differs in structure from scenario "
                             f"0 ({scenarios[0].name!r}): arms must hold the same interventions")
    names = " | ".join(s.name for s in scenarios)
    stacked = jax.tree.map(lambda *xs: jnp.stack(xs), *[s.interventions for s in scenarios])
    return Scenario(stacked, name=names)
