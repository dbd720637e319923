"""A twin: organs joined by named signal connections, as one explicit vector field.

```python
twin = vht.Twin(
    {"drug": TwoCompartmentPK(), "effect": EffectCompartment()},
    connections=[("drug.concentration", "effect.plasma_concentration")],
)
```

Everything structural is checked when the twin is built, with ``ValueError`` naming the organ
and port: duplicate organ names, unknown organs or ports, a unit mismatch between an output
and the input it feeds, an input fed twice, an input left unconnected without a default, an
organ whose ``rates`` or ``observe`` do not return exactly its declared names, and concrete
parameter values outside their declared bounds.

Organ outputs depend only on the organ's own state (or, for a feedthrough organ, also on its
inputs, evaluated after the organs that feed it), so the twin evaluates all outputs first,
routes them to inputs (converting units by a constant factor fixed at build time), then
evaluates every organ's rates. A cycle of feedthrough organs is an algebraic loop: an error.
The twin integrates in minutes; each organ's clock and rates are converted from its own
``time_unit``.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
from jaxtyping import Array, ArrayLike

from ._organ import AbstractOrgan, ParameterInfo
from ._units import conversion_factor, time_factor


@dataclasses.dataclass(frozen=True)
class Connection:
    """A signal route ``source_organ.source_port -> target_organ.target_port``.

    ``factor`` converts the source's unit into the target's, fixed at build time.
    """

    source_organ: str
    source_port: str
    target_organ: str
    target_port: str
    factor: float = 1.0

    @property
    def source(self) -> str:
        return f"{self.source_organ}.{self.source_port}"

    @property
    def target(self) -> str:
        return f"{self.target_organ}.{self.target_port}"


def _split_port(path: str, role: str) -> tuple[str, str]:
    if not isinstance(path, str) or path.count(".") != 1:
        raise ValueError(f"connection {role} {path!r} must be written 'organ.port'")
    organ, port = path.split(".")
    return organ, port


def _is_concrete(x) -> bool:
    return not isinstance(x, jax.core.Tracer)


class Twin(eqx.Module):
    """Organs composed into one explicit ODE (see the module docstring)."""

    organs: tuple[AbstractOrgan, ...]
    names: tuple[str, ...] = eqx.field(static=True)
    connections: tuple[Connection, ...] = eqx.field(static=True)
    order: tuple[str, ...] = eqx.field(static=True)
    origin: tuple[str, str] | None = eqx.field(static=True, default=None)

    def __init__(
        self,
        organs: Mapping[str, AbstractOrgan] | Sequence[tuple[str, AbstractOrgan]],
        connections: Sequence[tuple[str, str]] = (),
        *,
        origin: tuple[str, str] | None = None,
    ):
        pairs = list(organs.items()) if isinstance(organs, Mapping) else list(organs)
        names = []
        for entry in pairs:
            if not (isinstance(entry, tuple) and len(entry) == 2):
                raise ValueError("organs must be a mapping or a sequence of (name, organ) pairs")
            name, organ = entry
            if not isinstance(name, str) or not name.isidentifier():
                raise ValueError(f"organ name {name!r} must be a Python identifier (no dots)")
            if not isinstance(organ, AbstractOrgan):
                raise ValueError(f"organ {name!r} is a {type(organ).__name__}, not an "
                                 "AbstractOrgan")
            if name in names:
                raise ValueError(f"duplicate organ name {name!r}: every organ needs its own name")
            names.append(name)
        if not pairs:
            raise ValueError("a twin needs at least one organ")
        self.organs = tuple(organ for _, organ in pairs)
        self.names = tuple(names)
        self.origin = origin
        self.connections = self._check_connections(connections)
        self.order = self._evaluation_order()
        self._check_inputs()
        self._check_parameters()
        self._check_organ_functions()

    # -- build-time checks -----------------------------------------------------------------

    def _check_connections(self, connections) -> tuple[Connection, ...]:
        checked, fed = [], {}
        for pair in connections:
            if not (isinstance(pair, (tuple, list)) and len(pair) == 2):
                raise ValueError(f"connection {pair!r} must be a pair "
                                 "('organ.output', 'organ.input')")
            source, target = pair
            s_organ, s_port = _split_port(source, "source")
            t_organ, t_port = _split_port(target, "target")
            for organ_name, role in ((s_organ, source), (t_organ, target)):
                if organ_name not in self.names:
                    raise ValueError(f"connection {role!r}: unknown organ {organ_name!r} "
                                     f"(organs: {', '.join(self.names)})")
            outputs = {o.name: o for o in self[s_organ].outputs}
            inputs = {i.name: i for i in self[t_organ].inputs}
            if s_port not in outputs:
                raise ValueError(f"organ {s_organ!r} has no output port {s_port!r} "
                                 f"(outputs: {', '.join(outputs) or 'none'})")
            if t_port not in inputs:
                raise ValueError(f"organ {t_organ!r} has no input port {t_port!r} "
                                 f"(inputs: {', '.join(inputs) or 'none'})")
            if target in fed:
                raise ValueError(f"input {target!r} is connected twice (from {fed[target]!r} "
                                 f"and {source!r})")
            fed[target] = source
            for port, unit in ((source, outputs[s_port].unit), (target, inputs[t_port].unit)):
                if unit == "unknown":
                    raise ValueError(f"connection {source!r} -> {target!r}: {port!r} has no "
                                     "declared unit (its SBML file does not say); declare it "
                                     "at import: vht.import_sbml(..., units={'<id>': '<unit>'})")
            try:
                factor = conversion_factor(outputs[s_port].unit, inputs[t_port].unit)
            except ValueError as error:
                raise ValueError(f"unit mismatch from {source!r} [{outputs[s_port].unit}] to "
                                 f"{target!r} [{inputs[t_port].unit}]: {error}") from None
            checked.append(Connection(s_organ, s_port, t_organ, t_port, factor))
        return tuple(checked)

    def _evaluation_order(self) -> tuple[str, ...]:
        """Organs ordered so that every feedthrough organ comes after the organs feeding it.

        Only feedthrough organs create dependencies (their outputs read their inputs); a cycle
        through them would be an algebraic loop, which the explicit ODE cannot hold.
        """
        direct = {n: {i.name for i in self[n].inputs if i.affects_outputs} for n in self.names}
        feeds = {n: sorted({c.source_organ for c in self.connections
                            if c.target_organ == n and c.target_port in direct[n]})
                 for n in self.names if self[n].feedthrough}
        order, state = [], {}

        def visit(name, path):
            if state.get(name) == "done":
                return
            if state.get(name) == "active":
                loop = " -> ".join([*path[path.index(name):], name])
                raise ValueError(f"algebraic loop through feedthrough organs: {loop}; make one "
                                 "of them compute its outputs from its state alone")
            state[name] = "active"
            for source in feeds.get(name, ()):
                visit(source, [*path, name])
            state[name] = "done"
            order.append(name)

        for name in self.names:
            visit(name, [])
        return tuple(order)

    def _check_inputs(self):
        fed = {c.target for c in self.connections}
        for name, organ in zip(self.names, self.organs):
            for port in organ.inputs:
                if port.default is None and f"{name}.{port.name}" not in fed:
                    raise ValueError(f"input {name}.{port.name} [{port.unit}] is not connected and "
                                     f"has no default: connect an output to it")

    def _check_parameters(self):
        for name, organ in zip(self.names, self.organs):
            values = organ.parameter_values()
            for pname, info in organ.parameter_info().items():
                value = values[pname]
                if not _is_concrete(value):
                    continue
                value = np.asarray(value)
                if np.any(value < info.lower) or np.any(value > info.upper):
                    raise ValueError(f"parameter {name}.{pname} = {value} [{info.unit}] lies "
                                     f"outside its bounds [{info.lower}, {info.upper}]")

    def _check_organ_functions(self):
        """Trace each organ once (shapes only) to check the names its functions return."""
        for name, organ in zip(self.names, self.organs):
            scalar = jax.ShapeDtypeStruct((), jnp.result_type(float))
            state = {s.name: scalar for s in organ.states}
            inputs = {i.name: scalar for i in organ.inputs}
            t = scalar
            for function, declared, what in (
                (lambda o, t, s, i: o.rates(t, s, i), [s.name for s in organ.states], "rates"),
                (lambda o, t, s, i: o.observe(t, s, i) if o.feedthrough else o.observe(t, s),
                 [p.name for p in organ.outputs], "observe"),
                (lambda o, t, s, i: o.initial_state(), [s.name for s in organ.states],
                 "initial_state"),
                (lambda o, t, s, i: o.sample(t, s), [s.name for s in organ.states], "sample"),
            ):
                shapes = jax.eval_shape(function, organ, t, state, inputs)
                if what == "sample":  # returns the states it updates: a subset
                    unknown = sorted(set(shapes) - set(declared)) if isinstance(
                        shapes, Mapping) else [type(shapes).__name__]
                    if unknown:
                        raise ValueError(f"organ {name!r}: sample() returns {unknown}, which "
                                         "are not declared states")
                elif not isinstance(shapes, Mapping) or set(shapes) != set(declared):
                    got = sorted(shapes) if isinstance(shapes, Mapping) else type(shapes).__name__
                    raise ValueError(f"organ {name!r}: {what}() returns {got}, but the organ "
                                     f"declares {sorted(declared)}")
                bad = [k for k, v in shapes.items() if v.shape != ()]
                if bad:
                    raise ValueError(f"organ {name!r}: {what}() returns non-scalar values for "
                                     f"{bad}")

    # -- structure -------------------------------------------------------------------------

    def __getitem__(self, name: str) -> AbstractOrgan:
        try:
            return self.organs[self.names.index(name)]
        except ValueError:
            raise KeyError(f"no organ named {name!r} (organs: {', '.join(self.names)})") from None

    @property
    def state_names(self) -> tuple[str, ...]:
        """Qualified state names (``"organ.state"``), in the order of the state vector."""
        return tuple(f"{n}.{s.name}" for n, o in zip(self.names, self.organs) for s in o.states)

    @property
    def state_units(self) -> tuple[str, ...]:
        """The unit of every state, ordered like ``state_names``."""
        return tuple(s.unit for o in self.organs for s in o.states)

    @property
    def state_specs(self):
        return tuple(s for o in self.organs for s in o.states)

    @property
    def signal_names(self) -> tuple[str, ...]:
        """Qualified output names (``"organ.output"``), in the order of ``signals()``."""
        return tuple(f"{n}.{p.name}" for n, o in zip(self.names, self.organs) for p in o.outputs)

    @property
    def signal_units(self) -> tuple[str, ...]:
        """The unit of every output signal, ordered like ``signal_names``."""
        return tuple(p.unit for o in self.organs for p in o.outputs)

    @property
    def stiffness(self) -> str:
        """``"stiff"`` if any organ declares it, else ``"nonstiff"``."""
        return "stiff" if any(o.stiffness == "stiff" for o in self.organs) else "nonstiff"

    def state_index(self, qualified_name: str) -> int:
        try:
            return self.state_names.index(qualified_name)
        except ValueError:
            raise ValueError(f"unknown state {qualified_name!r}: states are "
                             f"{', '.join(self.state_names)}") from None

    def signal_index(self, qualified_name: str) -> int:
        try:
            return self.signal_names.index(qualified_name)
        except ValueError:
            raise ValueError(f"unknown signal {qualified_name!r}: signals are "
                             f"{', '.join(self.signal_names) or 'none'}") from None

    def conserved_groups(self) -> tuple[np.ndarray, ...]:
        """State indices of every conserved group the organs declare, except those of organs
        with a connected input that breaks conservation (an exchange with another organ)."""
        groups = []
        fed = {c.target for c in self.connections}
        for name, organ in zip(self.names, self.organs):
            if any(i.breaks_conservation and f"{name}.{i.name}" in fed for i in organ.inputs):
                continue
            for group in organ.conserved():
                groups.append(np.array([self.state_index(f"{name}.{s}") for s in group]))
        return tuple(groups)

    def held_indices(self) -> np.ndarray:
        """State indices of every organ's held states (phases, running totals)."""
        return np.array([self.state_index(f"{name}.{s}") for name, organ in
                         zip(self.names, self.organs) for s in organ.held_states()], dtype=int)

    def period(self) -> Array | None:
        """Period of the pulsatile organ in minutes, or None. Two pulsatile organs: an error."""
        periods = [(n, o.period() / time_factor(o.time_unit))
                   for n, o in zip(self.names, self.organs) if o.period() is not None]
        if len(periods) > 1:
            raise ValueError(f"more than one pulsatile organ ({', '.join(n for n, _ in periods)}): "
                             "a periodic steady state needs one common period")
        return periods[0][1] if periods else None

    def sample_period(self) -> float | None:
        """The sample-and-hold period in minutes, or None. Organs that sample must agree."""
        periods = {n: o.sample_period / time_factor(o.time_unit)
                   for n, o in zip(self.names, self.organs) if o.sample_period is not None}
        if len(set(periods.values())) > 1:
            raise ValueError(f"organs sample at different periods (minutes): {periods}; vht "
                             "supports one common sample period per twin")
        return next(iter(periods.values()), None)

    def sample(self, t: Array, y: Array) -> Array:
        """Apply every sampling organ's update at time ``t`` (minutes)."""
        parts = self.split(y)
        for name, organ in zip(self.names, self.organs):
            if organ.sample_period is not None:
                updates = organ.sample(t * time_factor(organ.time_unit), parts[name])
                parts[name] = {**parts[name], **updates}
        return self.join(parts)

    def sample_changes(self, t: Array, y: Array) -> Array:
        """Whether ``sample(t, y)`` would change any state: only the sampling organs are
        evaluated and only the states they update compared, so a solver can cheaply check
        whether a clock tick matters (most ticks of a held input change nothing)."""
        parts = self.split(y)
        changes = jnp.asarray(False)
        for name, organ in zip(self.names, self.organs):
            if organ.sample_period is not None:
                changes = changes | organ.sample_changes(t * time_factor(organ.time_unit),
                                                         parts[name])
        return changes

    # -- parameters ------------------------------------------------------------------------

    def parameter_info(self) -> dict[str, ParameterInfo]:
        return {f"{n}.{p}": info for n, o in zip(self.names, self.organs)
                for p, info in o.parameter_info().items()}

    def parameters(self) -> dict[str, Array]:
        """Every parameter value keyed ``"organ.parameter"``."""
        return {f"{n}.{p}": v for n, o in zip(self.names, self.organs)
                for p, v in o.parameter_values().items()}

    def _locate(self, qualified_name: str) -> tuple[int, str]:
        organ, _, field = qualified_name.partition(".")
        if organ not in self.names or field not in self[organ].parameter_info():
            raise ValueError(f"unknown parameter {qualified_name!r}")
        return self.names.index(organ), field

    def replace(self, values: Mapping[str, ArrayLike]) -> Twin:
        """A copy with some parameters set: ``twin.replace({"drug.clearance": 3.0})``."""
        twin = self
        for qualified_name, value in values.items():
            index, field = self._locate(qualified_name)
            organ = twin.organs[index]
            old = organ.parameter_values()[field]
            new = jnp.asarray(value, dtype=jnp.result_type(old))
            twin = eqx.tree_at(lambda tw, i=index: tw.organs[i], twin,
                               organ.with_parameter(field, new))
        return twin

    # -- the vector field ------------------------------------------------------------------

    def split(self, y: Array) -> dict[str, dict[str, Array]]:
        """Flat state vector -> ``{organ: {state: value}}``."""
        out, k = {}, 0
        for name, organ in zip(self.names, self.organs):
            out[name] = {s.name: y[k + i] for i, s in enumerate(organ.states)}
            k += len(organ.states)
        return out

    def join(self, states: Mapping[str, Mapping[str, Array]]) -> Array:
        """``{organ: {state: value}}`` -> flat state vector (the inverse of ``split``)."""
        values = [jnp.asarray(states[n][s.name], dtype=jnp.result_type(float))
                  for n, o in zip(self.names, self.organs) for s in o.states]
        return jnp.stack(values) if values else jnp.zeros((0,))

    def initial_state(self) -> Array:
        return self.join({n: o.initial_state() for n, o in zip(self.names, self.organs)})

    def _inputs_of(self, name: str, outputs: Mapping[str, Mapping[str, Array]],
                   for_outputs: bool = False) -> dict:
        """The input values of organ ``name``: routed outputs (unit-converted) or defaults.

        ``for_outputs``: the inputs a feedthrough organ's ``observe`` may read; the others
        (``affects_outputs=False``) may not be computed yet and come as NaN, so that misuse
        shows."""
        organ = self[name]
        direct = {i.name for i in organ.inputs if i.affects_outputs or not for_outputs}
        routed = {c.target_port: outputs[c.source_organ][c.source_port] * c.factor
                  for c in self.connections if c.target_organ == name and c.target_port in direct}
        values = {}
        for port in organ.inputs:
            if port.name in direct:
                values[port.name] = jnp.asarray(routed.get(port.name, port.default))
            else:
                values[port.name] = jnp.asarray(jnp.nan)
        return values

    def _organ_outputs(self, t, parts) -> dict[str, dict[str, Array]]:
        """Every organ's outputs, feedthrough organs after the organs that feed them."""
        outputs = {}
        for name in self.order:
            organ = self[name]
            organ_t = t * time_factor(organ.time_unit)
            if organ.feedthrough:
                outputs[name] = organ.observe(organ_t, parts[name],
                                              self._inputs_of(name, outputs, for_outputs=True))
            else:
                outputs[name] = organ.observe(organ_t, parts[name])
        return outputs

    def observe(self, t: Array, y: Array) -> dict[str, Array]:
        """Every output signal at time ``t`` (minutes), keyed ``"organ.output"``."""
        outputs = self._organ_outputs(t, self.split(y))
        return {f"{n}.{p}": v for n, d in outputs.items() for p, v in d.items()}

    def signals(self, t: Array, y: Array) -> Array:
        """The output signals as one vector ordered like ``signal_names``."""
        values = self.observe(t, y)
        return jnp.stack([values[n] for n in self.signal_names]) if values else jnp.zeros((0,))

    def rates(self, t: Array, y: Array) -> Array:
        """dy/dt in state units per minute."""
        parts = self.split(y)
        outputs = self._organ_outputs(t, parts)
        derivatives = []
        for name, organ in zip(self.names, self.organs):
            inputs = self._inputs_of(name, outputs)
            scale = time_factor(organ.time_unit)
            rates = organ.rates(t * scale, parts[name], inputs)
            derivatives.extend(jnp.asarray(rates[s.name]) * scale for s in organ.states)
        return jnp.stack(derivatives)

    def dose(self, state: str, amount: Array, time: Array) -> tuple[Array, Array]:
        """Route a dose into ``"organ.state"`` through the organ's ``dose`` hook."""
        organ_name, _, state_name = state.partition(".")
        self.state_index(state)
        return self[organ_name].dose(state_name, amount, time)
