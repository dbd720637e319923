"""SBML models as vht organs: ``vht.import_sbml`` reads a file into an organ that composes,
differentiates, vmaps and calibrates like any other.

```python
pk = vht.import_sbml("one_compartment.xml", units={"k_el": "1/h"})
print(pk.parameter_info())           # SBML ids: {"k_el": ..., "V": ..., "absorption.ka": ...}
twin = vht.Twin({"pk": pk, "effect": EffectCompartment()},
                connections=[("pk.C_concentration", "effect.plasma_concentration")])
```

The organ (a subclass of ``SBMLOrgan`` made for the model, so its states and ports are
class-level declarations as for native organs):

- **parameters**: the model's constant global parameters, compartment sizes and species
  reference stoichiometries by SBML id, and local parameters as ``"<reaction>.<id>"``
  (``parameter_info()``); every value is an array leaf (``twin.replace`` sets them without
  recompiling, ``jax.vmap`` batches them);
- **states**: each species by its id, holding its *amount* (a species with a rate rule holds
  its symbol, concentration or amount, as the rule defines it); compartments, parameters and
  stoichiometries with rate rules (constants set by initial assignments are recomputed from
  the parameters, not integrated);
- **outputs**: ``<species>_concentration`` for every species whose symbol is a concentration,
  every symbol an assignment rule defines (by its id), and every reaction's rate (by its id);
- **inputs**: the global parameters named in ``import_sbml(..., inputs=[...])``, which a
  connection then drives (a heart rate from a circulation, for example);
- **units**: from the file's unit definitions (``vht._sbml_units``); undeclared ones are
  ``"unknown"`` and connect to nothing until declared with ``units={"id": "unit"}``;
- **time**: the model's own time unit (``timeUnits``, else seconds), converted by the twin.

The semantics are those of ``vht._sbml_model``; what it does not support raises
``vht.UnsupportedSBML`` naming the element.
"""

from __future__ import annotations

import math
import os
from collections.abc import Mapping, Sequence
from typing import ClassVar

import equinox as eqx
import jax.numpy as jnp
from jaxtyping import Array

from ._organ import AbstractOrgan, Input, Output, ParameterInfo, State
from ._sbml_math import UnsupportedSBML, evaluate
from ._sbml_model import AMOUNT, SBMLModelSpec, read_model


class SBMLOrgan(AbstractOrgan):
    """An organ read from SBML (made by ``vht.import_sbml``; see the module docstring)."""

    values: dict[str, Array]
    spec: SBMLModelSpec = eqx.field(static=True)
    _parameter_table: ClassVar[tuple[tuple[str, float, str], ...]] = ()

    @classmethod
    def parameter_info(cls) -> dict[str, ParameterInfo]:
        return {name: ParameterInfo(name, unit, -math.inf, math.inf, "SBML parameter")
                for name, _, unit in cls._parameter_table}

    def parameter_values(self) -> dict[str, Array]:
        return dict(self.values)

    def with_parameter(self, name: str, value: Array) -> SBMLOrgan:
        return eqx.tree_at(lambda organ: organ.values[name], self, value)

    # -- the model -----------------------------------------------------------------------------

    def _environment(self, state, inputs, derived=None) -> dict:
        env = dict(self.values)
        env.update(inputs)
        if derived is None and self.spec.derived:
            initial = self._initial_environment()
            derived = {key: initial[key] for key in self.spec.derived}
        env.update(derived or {})
        for name, key, _ in self.spec.states:
            env[key] = state[name]
        return env

    def _run(self, t, state, inputs, derived=None):
        """Every value and rate of the program at time ``t``."""
        env, rates = self._environment(state, inputs, derived), {}
        for kind, key, expression in self.spec.program:
            value = evaluate(expression, env, t, rates)
            if kind == "value":
                env[key] = value
            else:
                rates[key] = value
        return env, rates

    def _initial_environment(self) -> dict:
        """Every symbol's value at t0, from the parameters alone. Initial values may read
        rateOf(x) at t0, the derivative the model gives at its own initial state: a first pass
        with NaN rates, then the rates at that state, then the initial values again (enough
        unless the rates read those values back: a cycle)."""
        t0 = jnp.asarray(0.0)
        rates = {key: jnp.asarray(jnp.nan) for key in self.spec.initial_rates}
        for _ in range(2 if self.spec.initial_rates else 1):
            env = dict(self.values)
            env.update(self._input_defaults())
            for key, expression in self.spec.initial:
                env[key] = evaluate(expression, env, t0, rates)
            if self.spec.initial_rates:
                state = {name: env[key] for name, key, _ in self.spec.states}
                _, computed = self._run(t0, state, self._input_defaults(),
                                        {key: env[key] for key in self.spec.derived})
                rates = {key: computed.get(key, rates[key]) for key in rates}
        return env

    def rates(self, t, state, inputs):
        _, rates = self._run(t, state, inputs)
        return {name: jnp.asarray(rates[key], dtype=jnp.result_type(float))
                for name, key, _ in self.spec.states}

    def observe(self, t, state, inputs=None):
        env, _ = self._run(t, state, inputs or self._input_defaults())
        return {port: jnp.asarray(env[key], dtype=jnp.result_type(float))
                for port, key, _ in self.spec.outputs}

    def symbol_values(self, t, state, inputs=None) -> dict[str, Array]:
        """Every SBML symbol's value at time ``t`` (minutes of the organ's own time unit, as
        ``rates``), keyed by id, and every species' amount as ``"<id>:amount"``."""
        env, _ = self._run(t, state, inputs or self._input_defaults())
        for sid, compartment, concentration in self.spec.species:
            if sid + AMOUNT not in env:
                env[sid + AMOUNT] = env[sid] * env[compartment] if concentration else env[sid]
        return env

    def _input_defaults(self) -> dict:
        return {name: jnp.asarray(jnp.nan) for name, _ in self.spec.inputs}

    def initial_state(self):
        env = self._initial_environment()
        return {name: jnp.asarray(env[key], dtype=jnp.result_type(float))
                for name, key, _ in self.spec.states}


_CLASSES: dict[tuple, type] = {}


def _organ_class(spec: SBMLModelSpec, stiffness: str) -> type:
    """The organ class of a model (one per model and stiffness, so that importing the same
    file twice gives the same type and shares compiled programs)."""
    key = (spec, stiffness)
    if key not in _CLASSES:
        outputs_read_inputs = bool(spec.inputs)
        namespace = {
            "__module__": __name__,
            "__qualname__": f"SBMLOrgan_{spec.model_id}",
            "__annotations__": {},
            "states": tuple(State(name, unit) for name, _, unit in spec.states),
            "outputs": tuple(Output(port, unit) for port, _, unit in spec.outputs),
            "inputs": tuple(Input(name, unit) for name, unit in spec.inputs),
            "time_unit": spec.time_unit,
            "stiffness": stiffness,
            "feedthrough": outputs_read_inputs,
            "_parameter_table": spec.parameters,
        }
        _CLASSES[key] = type(SBMLOrgan)(f"SBMLOrgan_{spec.model_id}", (SBMLOrgan,), namespace)
    return _CLASSES[key]


def _read_document(source: str | os.PathLike):
    import libsbml

    text = os.fspath(source)
    if text.lstrip().startswith("<"):
        document = libsbml.readSBMLFromString(text)
        label = "the SBML text"
    else:
        if not os.path.exists(text):
            raise ValueError(f"no SBML file at {text!r}")
        document = libsbml.readSBMLFromFile(text)
        label = text
    errors = [document.getError(k) for k in range(document.getNumErrors())
              if document.getError(k).getSeverity() >= libsbml.LIBSBML_SEV_ERROR]
    if errors:
        shown = "; ".join(f"line {e.getLine()}: {e.getShortMessage()}" for e in errors[:3])
        raise ValueError(f"{label} is not valid SBML ({len(errors)} errors): {shown}")
    return document


def import_sbml(
    source: str | os.PathLike,
    *,
    units: Mapping[str, str] | None = None,
    time_unit: str | None = None,
    inputs: Sequence[str] = (),
    stiffness: str = "nonstiff",
) -> SBMLOrgan:
    """Read an SBML model (a file path, or the SBML text itself) into a vht organ.

    Args:
        source: path of an SBML file (Level 2 or 3, core), or a string holding the XML.
        units: unit strings that override or supply what the file declares, keyed by SBML
            id (``"<species>:amount"`` for a species' amount).
        time_unit: the model's time unit when the file does not say (default: its
            ``timeUnits``, else seconds).
        inputs: constant global parameters to turn into input ports.
        stiffness: ``"stiff"`` to make implicit solvers the default for twins with it.

    Returns:
        The organ; its parameters, states and ports carry the model's SBML ids.

    Raises:
        UnsupportedSBML: for a construct vht does not import (events, algebraic rules,
            delays, fast reactions, packages), naming the element.
        ValueError: for a file that is not valid SBML.
    """
    document = _read_document(source)
    spec = read_model(document, units=units, time_unit=time_unit, inputs=tuple(inputs))
    cls = _organ_class(spec, stiffness)
    values = {name: jnp.asarray(value, dtype=jnp.result_type(float))
              for name, value, _ in spec.parameters}
    return cls(values=values, spec=spec)


__all__ = ["SBMLOrgan", "UnsupportedSBML", "import_sbml"]
