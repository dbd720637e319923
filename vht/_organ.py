"""The organ abstraction: named states, array parameters with units, input and output signals.

An organ is an ``equinox.Module`` whose array fields are its physical parameters: the model
instance *is* the parameter set, so it can be differentiated, vmapped into a cohort and
sharded. Declarations are class-level:

- ``states``: the organ's state variables (name, unit, default initial value, plausible
  bounds);
- ``inputs``: signals the organ reads (name, unit, optional default when unconnected);
- ``outputs``: signals the organ exposes; by default they depend only on the organ's own
  state, its parameters and time, which rules out algebraic loops when organs are connected.
  An organ that declares ``feedthrough = True`` computes its outputs from its inputs too
  (``observe(t, state, inputs)``: a circulation's pressures under a reflex's venous tone); the
  twin then evaluates organs in dependency order and refuses a cycle of feedthrough organs;
- ``stiffness``: ``"nonstiff"`` or ``"stiff"``; it chooses the default solver;
- ``time_unit``: the unit of ``t`` and of the rates the organ computes (the twin converts);
- ``dose_rules``: for doses that act on a parameter rather than arrive in a state (a meal
  eaten at a fixed rate, an insulin bolus given by a pump), parameter name -> (unit of the
  amount, rule); ``rule(amount, time, organ=name)`` returns the ``ParameterStep`` window(s)
  that give it (time in the organ's ``time_unit``). Calibration reads dose records through
  them.

A concrete organ implements ``rates(t, state, inputs)`` and, if it has outputs,
``observe(t, state)`` (``observe(t, state, inputs)`` for a feedthrough organ); both take and
return dicts keyed by the declared names.
"""

from __future__ import annotations

import abc
import dataclasses
import math
from collections.abc import Mapping
from typing import Any, ClassVar

import equinox as eqx
import jax.numpy as jnp
from jaxtyping import Array, ArrayLike

from ._units import TIME_UNIT, parse_unit


@dataclasses.dataclass(frozen=True)
class State:
    """Declaration of one state variable of an organ.

    ``lower`` and ``upper`` are physiological plausibility bounds: a solution that leaves them
    is reported (see ``simulate``), with ``advice`` telling the user what to change.
    """

    name: str
    unit: str
    initial: float = 0.0
    lower: float = -math.inf
    upper: float = math.inf
    description: str = ""
    advice: str = ""


@dataclasses.dataclass(frozen=True)
class Input:
    """Declaration of an input signal. ``default=None`` means it must be connected.

    ``affects_outputs=False`` declares that a feedthrough organ's outputs do not read this
    input (a volume loss that only its rates use); the twin then orders organs without it,
    so a loop through such an input is not an algebraic loop. ``breaks_conservation=True``
    declares that, once connected, the input adds to or removes from the organ's conserved
    totals (a filtration out of the blood), so the twin no longer treats them as conserved.
    """

    name: str
    unit: str
    default: float | None = None
    description: str = ""
    affects_outputs: bool = True
    breaks_conservation: bool = False


@dataclasses.dataclass(frozen=True)
class Output:
    """Declaration of an output signal, computed by ``observe`` from the organ's own state."""

    name: str
    unit: str
    description: str = ""


@dataclasses.dataclass(frozen=True)
class ParameterInfo:
    """What a parameter field declares: unit, bounds and a description (see ``parameter``)."""

    name: str
    unit: str
    lower: float
    upper: float
    description: str


def parameter(
    default: ArrayLike | None = None,
    *,
    unit: str,
    bounds: tuple[float, float] = (-math.inf, math.inf),
    description: str = "",
) -> Any:
    """An array-valued physical parameter field of an organ.

    The value is converted to a float array so that it is a traced leaf (differentiable,
    vmappable); a Python float would be static and recompile on every new value.

    ```python
    class Windkessel(vht.AbstractOrgan):
        compliance: Array = vht.parameter(1.5, unit="mL/mmHg", bounds=(0.0, math.inf))
    ```
    """
    parse_unit(unit)  # fail at class definition on a typo, not at the first simulation
    lower, upper = bounds
    if not lower <= upper:
        raise ValueError(f"parameter bounds must satisfy lower <= upper, got {bounds}")
    metadata = {"vht_parameter": True, "unit": unit, "bounds": (float(lower), float(upper)),
                "description": description}
    if default is None:
        return eqx.field(converter=_float_array, metadata=metadata)
    return eqx.field(default=default, converter=_float_array, metadata=metadata)


def _float_array(x) -> Array:
    """A strongly typed float array: a weakly typed leaf (from a Python float) and a strongly
    typed one (from ``replace``) would be two different programs to jit."""
    return jnp.asarray(x, dtype=jnp.result_type(float))


class AbstractOrgan(eqx.Module):
    """Base class of all organ models. See the module docstring for the contract."""

    states: ClassVar[tuple[State, ...]] = ()
    inputs: ClassVar[tuple[Input, ...]] = ()
    outputs: ClassVar[tuple[Output, ...]] = ()
    stiffness: ClassVar[str] = "nonstiff"
    time_unit: ClassVar[str] = TIME_UNIT
    sample_period: ClassVar[float | None] = None
    feedthrough: ClassVar[bool] = False
    dose_rules: ClassVar[Mapping[str, tuple[str, Any]]] = {}

    def __init_subclass__(cls, **kwargs):
        super().__init_subclass__(**kwargs)
        if cls.sample_period is not None and not cls.sample_period > 0:
            raise ValueError(f"{cls.__name__}.sample_period must be positive, not "
                             f"{cls.sample_period!r}")
        if cls.stiffness not in ("nonstiff", "stiff"):
            raise ValueError(
                f"{cls.__name__}.stiffness must be 'nonstiff' or 'stiff', not {cls.stiffness!r}"
            )
        clash = {s.name for s in cls.states} & {o.name for o in cls.outputs}
        if clash:
            raise ValueError(f"{cls.__name__}: a state and an output share the name "
                             f"{sorted(clash)[0]!r}; results name both 'organ.name'")
        for group in ("states", "inputs", "outputs"):
            names = [item.name for item in getattr(cls, group)]
            duplicates = sorted({n for n in names if names.count(n) > 1})
            if duplicates:
                raise ValueError(f"{cls.__name__} declares duplicate {group}: {duplicates}")
            for item in getattr(cls, group):
                if not item.name.isidentifier():
                    raise ValueError(f"{cls.__name__}: {group} name {item.name!r} is not an "
                                     "identifier")
                parse_unit(item.unit)

    # -- the model -------------------------------------------------------------------------

    @abc.abstractmethod
    def rates(
        self, t: Array, state: Mapping[str, Array], inputs: Mapping[str, Array]
    ) -> dict[str, Array]:
        """Time derivatives of every state (per ``time_unit``), keyed by state name."""

    def observe(self, t: Array, state: Mapping[str, Array], *args) -> dict[str, Array]:
        """Values of every declared output. A feedthrough organ receives its inputs as a third
        argument; any other organ's outputs must not depend on inputs."""
        if self.outputs:
            raise NotImplementedError(f"{type(self).__name__} declares outputs but no observe()")
        return {}

    def initial_state(self) -> dict[str, Array]:
        """Default initial state; organs override it when it depends on parameters."""
        return {s.name: jnp.asarray(s.initial, dtype=float) for s in self.states}

    def conserved(self) -> tuple[tuple[str, ...], ...]:
        """Groups of states whose sum the organ conserves when no intervention acts on it.

        ``steady_state`` holds these totals fixed (a closed network's Jacobian is singular
        along them) and the conservation tests check them.
        """
        return ()

    def period(self) -> Array | None:
        """For pulsatile organs, the period of the forcing in ``time_unit``; else None."""
        return None

    def held_states(self) -> tuple[str, ...]:
        """States without a steady value of their own: a beat phase (it returns to its start
        after a period whatever that start is) or a running total (cumulative urine, never
        constant). ``steady_state`` holds them at their starting values instead of solving
        for them (the Jacobian is singular along them)."""
        return ()

    def sample(self, t: Array, state: Mapping[str, Array]) -> dict[str, Array]:
        """Sample-and-hold update, for organs that declare ``sample_period``.

        ``simulate`` calls it at ``t0 + k * sample_period`` (k = 0, 1, ...), before integrating
        the following period, with the parameter values that hold at that instant (so a
        ``ParameterStep`` that starts then is seen). It returns new values for the states it
        updates; they typically have zero rates in between (a meal memory, a controller's
        held output). This reproduces models defined on a discrete clock, such as simglucose's
        per-minute steps.
        """
        return {}

    def sample_changes(self, t: Array, state: Mapping[str, Array]) -> Array:
        """Whether ``sample(t, state)`` would change any state (a boolean scalar).

        The batch-major integrator of ``vht.simulate_ensemble`` asks this at every clock tick
        a step crosses, on the step's continuous extension, so that ticks which change nothing
        need not stop the step. The default compares ``sample``'s values with ``state``. An
        organ may override it with a cheaper test that reads fewer states (states it does not
        read are then not interpolated at the ticks); the override must give the same answer
        as the default for every state it can meet.
        """
        changes = jnp.asarray(False)
        for name, value in self.sample(t, state).items():
            changes = changes | (jnp.asarray(value, dtype=jnp.result_type(float)) != state[name])
        return changes

    def impulse_response(self, elapsed: Array, source: str) -> dict[str, Array]:
        """For a linear, time-invariant organ without inputs: its states ``elapsed`` (an array,
        >= 0, in ``time_unit``) after one unit of amount placed into state ``source`` at 0,
        every state zero before; states left out are zero.

        Declaring it says the organ's equations are linear and homogeneous (a zero state stays
        zero), so that ``vht.simulate_closed_form`` may solve it by superposition and
        calibration may fit it without an ODE solver. A test should compare it with
        ``simulate``. The default (no closed form) raises.
        """
        raise NotImplementedError(f"{type(self).__name__} has no closed-form impulse response")

    def step_response(self, elapsed: Array, source: str) -> dict[str, Array]:
        """Like ``impulse_response``, for a constant rate of one unit of amount per
        ``time_unit`` into ``source`` from 0 on (the integral of the impulse response): what
        infusions superpose. The default raises."""
        raise NotImplementedError(f"{type(self).__name__} has no closed-form response to a "
                                  f"constant rate into {source!r}")

    def dose(self, state: str, amount: Array, time: Array) -> tuple[Array, Array]:
        """Route a dose into ``state``: returns the (amount, time) that actually arrive.

        The default is identity; an oral depot applies bioavailability and lag time here, so
        that a scenario's dose stays a plain record of what was given and when (``time`` is in
        framework minutes).
        """
        return amount, time

    # -- introspection ---------------------------------------------------------------------

    @classmethod
    def parameter_info(cls) -> dict[str, ParameterInfo]:
        """Unit, bounds and description of every parameter field, in declaration order."""
        info = {}
        for field in dataclasses.fields(cls):
            meta = field.metadata
            if meta.get("vht_parameter"):
                lower, upper = meta["bounds"]
                info[field.name] = ParameterInfo(field.name, meta["unit"], lower, upper,
                                                 meta["description"])
        return info

    def parameter_values(self) -> dict[str, Array]:
        """The current parameter values, keyed by field name."""
        return {name: getattr(self, name) for name in self.parameter_info()}

    def with_parameter(self, name: str, value: Array) -> AbstractOrgan:
        """A copy with parameter ``name`` set to ``value`` (an organ that keeps its parameters
        elsewhere than in fields, such as an imported SBML model, overrides this)."""
        return eqx.tree_at(lambda organ: getattr(organ, name), self, value)
