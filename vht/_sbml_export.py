"""``vht.export_sbml``: a twin written as an SBML Level 3 Version 2 model.

vht organs are JAX code, not equations on paper, so the exporter reads the equations off the
code: it traces the twin's right-hand side (``twin.rates``) and its signals
(``twin.signals``) with every parameter, the time and the state as inputs, and interprets the
resulting jaxpr symbolically, one JAX primitive at a time, into vht's SBML expression
language (``vht._sbml_math``). Every organ whose code uses elementwise arithmetic,
comparisons, selections and the usual functions (the PK and PBPK models, UVA/Padova, the
circulation) is exportable; a primitive without an SBML counterpart is an ``UnsupportedSBML``
error naming it.

The model written:

- every twin parameter is a constant SBML parameter, every state a non-constant parameter
  with a rate rule (its derivative) and its initial value, every signal an assignment rule,
  and every value the code computes once and reads several times an assignment rule of its
  own (``_v<k>``), so that the file keeps the code's common subexpressions;
  ids are the qualified names with ``"."`` written as ``"__"`` (``drug__central``), a
  parameter's with ``"_parameter"`` appended where a port has the same name;
- units: each vht unit becomes an SBML unit definition in SI base units with the factor in
  the multiplier (units outside SI, such as insulin units, are left undeclared); the model's
  time unit is the minute, vht's;
- what SBML cannot say without events is refused unless asked for: a sample-and-hold organ
  (UVA/Padova's one-minute clock) is exported with ``hold_samples=True`` as its continuous
  dynamics with the memory states held, and a scenario is never part of the model.

``vht.import_sbml`` reads the file back into one organ whose states and outputs carry those
ids; the tests check that it reproduces the twin's trajectories to 1e-8 and that
libroadrunner simulates the file to the SBML Test Suite's tolerances.
"""

from __future__ import annotations

import math
import os

import jax
import jax.numpy as jnp
import numpy as np

from ._sbml_math import UnsupportedSBML, to_formula
from ._twin import Twin
from ._units import units


def sbml_id(name: str) -> str:
    """The SBML id of a qualified vht name: ``"drug.central"`` -> ``"drug__central"``."""
    return name.replace(".", "__")


# -- symbolic expressions with arithmetic (so numpy object arrays can hold them) ---------------

class _E:
    """An expression of vht's SBML language with Python arithmetic, constant-folded."""

    __slots__ = ("tree",)
    __array_priority__ = 1000

    def __init__(self, tree):
        self.tree = tree

    def number(self):
        return self.tree[1] if self.tree[0] == "num" else None

    @staticmethod
    def of(x) -> _E:
        if isinstance(x, _E):
            return x
        value = np.asarray(x)
        if value.dtype == bool:
            return _E(("num", 1.0 if bool(value) else 0.0))
        return _E(("num", float(value)))

    def _binary(self, other, op, fold):
        a, b = self, _E.of(other)
        x, y = a.number(), b.number()
        if x is not None and y is not None:
            with np.errstate(all="ignore"):
                return _E(("num", float(fold(np.float64(x), np.float64(y)))))
        return _E((op, a.tree, b.tree))

    def __add__(self, other):
        b = _E.of(other)
        if b.number() == 0.0:
            return self
        if self.number() == 0.0:
            return b
        return self._binary(b, "plus", np.add)

    __radd__ = __add__

    def __sub__(self, other):
        if _E.of(other).number() == 0.0:
            return self
        return self._binary(other, "minus", np.subtract)

    def __rsub__(self, other):
        return _E.of(other) - self

    def __mul__(self, other):
        b = _E.of(other)
        if b.number() == 1.0:
            return self
        if self.number() == 1.0:
            return b
        return self._binary(b, "times", np.multiply)

    __rmul__ = __mul__

    def __truediv__(self, other):
        if _E.of(other).number() == 1.0:
            return self
        return self._binary(other, "divide", np.divide)

    def __rtruediv__(self, other):
        return _E.of(other) / self

    def __neg__(self):
        x = self.number()
        return _E(("num", -x)) if x is not None else _E(("neg", self.tree))


def _fn(name, *args):
    args = [_E.of(a) for a in args]
    numbers = [a.number() for a in args]
    if all(n is not None for n in numbers):
        from ._sbml_math import evaluate

        return _E(("num", float(evaluate((name,) + tuple(a.tree for a in args), {}, 0.0))))
    return _E((name,) + tuple(a.tree for a in args))


def _piecewise(value, condition, otherwise):
    c = _E.of(condition)
    if c.number() is not None:
        return _E.of(value) if c.number() != 0.0 else _E.of(otherwise)
    return _E(("piecewise", _E.of(value).tree, c.tree, _E.of(otherwise).tree))


def _map(f, *arrays):
    """``f`` elementwise over object arrays (broadcast like numpy)."""
    arrays = np.broadcast_arrays(*[np.asarray(a, dtype=object) for a in arrays])
    out = np.empty(arrays[0].shape, dtype=object)
    for index in np.ndindex(out.shape):
        out[index] = f(*[a[index] for a in arrays])
    return out


def _unary(name):
    return lambda x, **_: _map(lambda a: _fn(name, a), x)


def _relation(name):
    return lambda x, y, **_: _map(lambda a, b: _fn(name, a, b), x, y)


_HANDLERS = {
    "add": lambda x, y, **_: _map(lambda a, b: _E.of(a) + b, x, y),
    "sub": lambda x, y, **_: _map(lambda a, b: _E.of(a) - b, x, y),
    "mul": lambda x, y, **_: _map(lambda a, b: _E.of(a) * b, x, y),
    "div": lambda x, y, **_: _map(lambda a, b: _E.of(a) / b, x, y),
    "neg": lambda x, **_: _map(lambda a: -_E.of(a), x),
    "max": lambda x, y, **_: _map(lambda a, b: _fn("max", a, b), x, y),
    "min": lambda x, y, **_: _map(lambda a, b: _fn("min", a, b), x, y),
    "pow": lambda x, y, **_: _map(lambda a, b: _fn("power", a, b), x, y),
    "integer_pow": lambda x, y, **_: _map(lambda a: _fn("power", a, float(y)), x),
    "square": lambda x, **_: _map(lambda a: _fn("power", a, 2.0), x),
    "sqrt": _unary("sqrt"), "exp": _unary("exp"), "log": _unary("ln"), "tanh": _unary("tanh"),
    "sin": _unary("sin"), "cos": _unary("cos"), "tan": _unary("tan"), "abs": _unary("abs"),
    "sinh": _unary("sinh"), "cosh": _unary("cosh"), "asinh": _unary("arcsinh"),
    "acosh": _unary("arccosh"), "atanh": _unary("arctanh"), "asin": _unary("arcsin"),
    "acos": _unary("arccos"), "atan": _unary("arctan"), "floor": _unary("floor"),
    "ceil": _unary("ceiling"),
    "rsqrt": lambda x, **_: _map(lambda a: _fn("power", a, -0.5), x),
    "log1p": lambda x, **_: _map(lambda a: _fn("ln", _E.of(a) + 1.0), x),
    "expm1": lambda x, **_: _map(lambda a: _fn("exp", a) - 1.0, x),
    "logistic": lambda x, **_: _map(lambda a: 1.0 / (_fn("exp", -_E.of(a)) + 1.0), x),
    "sign": lambda x, **_: _map(lambda a: _piecewise(1.0, _fn("gt", a, 0.0), _piecewise(
        -1.0, _fn("lt", a, 0.0), 0.0)), x),
    "gt": _relation("gt"), "ge": _relation("geq"), "lt": _relation("lt"),
    "le": _relation("leq"), "eq": _relation("eq"), "ne": _relation("neq"),
    "and": lambda x, y, **_: _map(lambda a, b: _fn("and", a, b), x, y),
    "or": lambda x, y, **_: _map(lambda a, b: _fn("or", a, b), x, y),
    "not": lambda x, **_: _map(lambda a: _fn("not", a), x),
    "clamp": lambda lo, x, hi, **_: _map(lambda a, b, c: _fn("max", a, _fn("min", b, c)),
                                         lo, x, hi),
}


def _select_n(predicate, *cases, **_):
    if len(cases) != 2:
        raise UnsupportedSBML(f"select_n with {len(cases)} cases cannot be exported")
    return _map(lambda p, a, b: _piecewise(b, p, a), predicate, cases[0], cases[1])


def _convert(x, new_dtype=None, **_):
    if new_dtype is not None and jnp.issubdtype(new_dtype, jnp.floating):
        return _map(lambda a: a if _is_numeric(a) else _piecewise(1.0, a, 0.0), x)
    return x


_BOOLEAN_HEADS = {"gt", "geq", "lt", "leq", "eq", "neq", "and", "or", "not", "xor"}


def _is_numeric(a) -> bool:
    return _E.of(a).tree[0] not in _BOOLEAN_HEADS


def _slice(x, start_indices, limit_indices, strides=None, **_):
    strides = strides or (1,) * len(start_indices)
    return x[tuple(slice(a, b, s) for a, b, s in zip(start_indices, limit_indices, strides))]


def _broadcast(x, shape, broadcast_dimensions, **_):
    source = np.asarray(x, dtype=object)
    view = source.reshape([source.shape[broadcast_dimensions.index(k)]
                           if k in broadcast_dimensions else 1 for k in range(len(shape))])
    return np.broadcast_to(view, shape).copy()


def _dot(x, y, dimension_numbers, **_):
    (contract_x, contract_y), (batch_x, batch_y) = dimension_numbers
    if batch_x or batch_y:
        raise UnsupportedSBML("a batched dot_general cannot be exported")
    return np.tensordot(np.asarray(x, dtype=object), np.asarray(y, dtype=object),
                        axes=(list(contract_x), list(contract_y)))


_STRUCTURAL = {
    "select_n": _select_n,
    "convert_element_type": _convert,
    "slice": _slice,
    "squeeze": lambda x, dimensions, **_: np.squeeze(x, axis=tuple(dimensions)),
    "reshape": lambda x, new_sizes, **_: np.reshape(x, new_sizes),
    "expand_dims": lambda x, dimensions, **_: np.expand_dims(x, dimensions),
    "broadcast_in_dim": _broadcast,
    "concatenate": lambda *xs, dimension, **_: np.concatenate(xs, axis=dimension),
    "stack": lambda *xs, axis=0, **_: np.stack(xs, axis=axis),
    "transpose": lambda x, permutation, **_: np.transpose(x, permutation),
    "reduce_sum": lambda x, axes, **_: np.sum(x, axis=tuple(axes)) if axes else x,
    "dot_general": _dot,
    "copy": lambda x, **_: x,
    "copy_p": lambda x, **_: x,
    "stop_gradient": lambda x, **_: x,
}


def _constant(value):
    value = np.asarray(value)
    out = np.empty(value.shape, dtype=object)
    for index in np.ndindex(value.shape):
        out[index] = _E.of(value[index])
    return out


class _Intermediates:
    """Named intermediate values: a value that a jaxpr uses more than once becomes an SBML
    assignment rule (``_v<k>``) instead of being copied into every expression that reads it,
    so the written model stays the size of the code (common subexpressions kept)."""

    def __init__(self):
        self.rules: list[tuple[str, tuple]] = []

    def name(self, value):
        out = np.empty(np.shape(value), dtype=object)
        for index in np.ndindex(out.shape):
            tree = _E.of(np.asarray(value, dtype=object)[index]).tree
            if tree[0] in ("num", "sym", "time") or _size(tree) < 4:
                out[index] = _E(tree)
            else:
                rule = f"_v{len(self.rules)}"
                self.rules.append((rule, tree))
                out[index] = _E(("sym", rule))
        return out


def _size(tree) -> int:
    if tree[0] in ("num", "sym", "time", "avogadro", "rateOf"):
        return 1
    return 1 + sum(_size(t) for t in tree[1:])


def _interpret(jaxpr, consts, args, intermediates: _Intermediates):
    """Evaluate a jaxpr on object arrays of expressions."""
    env = {}
    uses: dict = {}
    for eqn in jaxpr.eqns:
        for v in eqn.invars:
            if type(v).__name__ != "Literal":
                uses[v] = uses.get(v, 0) + 1
    for v in jaxpr.outvars:
        if type(v).__name__ != "Literal":
            uses[v] = uses.get(v, 0) + 1

    def read(v):
        if type(v).__name__ == "Literal":
            return _constant(v.val)
        return env[v]

    for v, value in zip(jaxpr.constvars, consts):
        env[v] = _constant(value) if not isinstance(value, np.ndarray) or \
            value.dtype != object else value
    for v, value in zip(jaxpr.invars, args):
        env[v] = value
    for eqn in jaxpr.eqns:
        inputs = [read(v) for v in eqn.invars]
        name = eqn.primitive.name
        params = dict(eqn.params)
        if name in ("jit", "pjit", "closed_call", "core_call", "remat", "checkpoint"):
            inner = params.get("jaxpr") or params.get("call_jaxpr")
            outputs = _interpret(inner.jaxpr if hasattr(inner, "jaxpr") else inner,
                                 getattr(inner, "consts", ()), inputs, intermediates)
        elif name in ("custom_jvp_call", "custom_vjp_call", "custom_vjp_call_jaxpr"):
            inner = params.get("call_jaxpr") or params.get("fun_jaxpr")
            outputs = _interpret(inner.jaxpr, inner.consts, inputs, intermediates)
        elif name in _HANDLERS:
            extra = {"y": params["y"]} if name == "integer_pow" else {}
            outputs = [_HANDLERS[name](*inputs, **extra)]
        elif name in _STRUCTURAL:
            outputs = [_STRUCTURAL[name](*inputs, **params)]
        else:
            raise UnsupportedSBML(f"the JAX primitive {name!r} has no SBML counterpart: this "
                                  "organ cannot be exported")
        if not eqn.primitive.multiple_results and name not in (
                "jit", "pjit", "closed_call", "core_call", "remat", "checkpoint",
                "custom_jvp_call", "custom_vjp_call", "custom_vjp_call_jaxpr"):
            outputs = outputs[:1]
        for v, value in zip(eqn.outvars, outputs):
            value = np.asarray(value, dtype=object)
            # only arithmetic results are worth naming; slices and stacks merely move them
            if uses.get(v, 0) > 1 and name not in _STRUCTURAL:
                value = intermediates.name(value)
            env[v] = value
    return [read(v) for v in jaxpr.outvars]


def parameter_ids(twin: Twin) -> dict[str, str]:
    """SBML ids of the twin's parameters: ``sbml_id``, or with ``"_parameter"`` appended where
    a state or signal already has that id (vht keeps parameters and ports apart; SBML has one
    namespace)."""
    taken = {sbml_id(n) for n in twin.state_names + twin.signal_names}
    return {n: sbml_id(n) + ("_parameter" if sbml_id(n) in taken else "")
            for n in twin.parameters()}


def _symbolic(function, twin: Twin, intermediates: _Intermediates):
    """``function(twin, t, y)``'s outputs as expressions of the parameters, time and state
    (and of ``intermediates``, the named values they share)."""
    names = list(twin.parameters())
    ids = parameter_ids(twin)
    values = twin.parameters()
    for name in names:
        if np.ndim(values[name]) != 0:
            raise UnsupportedSBML(f"parameter {name} is not a scalar: it cannot be exported")
    n_states = len(twin.state_names)

    def traced(params, t, y):
        return function(twin.replace(dict(zip(names, params))), t, y)

    closed = jax.make_jaxpr(traced)([values[n] for n in names], jnp.asarray(0.0),
                                    jnp.zeros(n_states))
    symbols = [_constant_of(("sym", ids[n])) for n in names]
    time = _constant_of(("time",))
    state = np.empty(n_states, dtype=object)
    for k, name in enumerate(twin.state_names):
        state[k] = _E(("sym", sbml_id(name)))
    (out,) = _interpret(closed.jaxpr, closed.consts, [*symbols, time, state], intermediates)
    return [_E.of(e).tree for e in np.asarray(out).ravel()]


def _constant_of(tree):
    out = np.empty((), dtype=object)
    out[()] = _E(tree)
    return out


# -- units ---------------------------------------------------------------------------------------

_BASE = {"kilogram": "kilogram", "meter": "metre", "second": "second", "mole": "mole",
         "ampere": "ampere", "kelvin": "kelvin", "candela": "candela", "radian": "radian"}


def _unit_definition(model, unit: str, cache: dict) -> str | None:
    """The id of an SBML unit definition equal to vht unit ``unit`` (None if not SI)."""
    import libsbml

    if unit in cache:
        return cache[unit]
    try:
        quantity = units.Quantity(1.0, unit).to_base_units()
    except Exception:  # noqa: BLE001 - a unit pint cannot reduce is left undeclared
        cache[unit] = None
        return None
    parts = [(str(k), float(e)) for k, e in quantity.unit_items()]
    if any(k not in _BASE for k, _ in parts):
        cache[unit] = None
        return None
    uid = f"u{len(cache)}_" + "".join(c if c.isalnum() else "_" for c in unit)[:40]
    definition = model.createUnitDefinition()
    definition.setId(uid)
    factor = float(quantity.magnitude)
    if not parts:
        parts = [("dimensionless", 1.0)]
    for k, (kind, exponent) in enumerate(parts):
        u = definition.createUnit()
        u.setKind(libsbml.UnitKind_forName(_BASE.get(kind, kind)))
        u.setExponent(exponent)
        u.setScale(0)
        u.setMultiplier(factor ** (1.0 / exponent) if k == 0 else 1.0)
    cache[unit] = uid
    return uid


# -- the model -----------------------------------------------------------------------------------

def export_sbml(twin: Twin, path: str | os.PathLike | None = None, *, y0=None,
                model_id: str = "vht_twin", hold_samples: bool = False) -> str:
    """Write ``twin`` as an SBML Level 3 Version 2 model (see the module docstring).

    Args:
        twin: the twin to export (every organ's code must use exportable primitives).
        path: where to write the file (also returned as text).
        y0: the initial state written into the file (default ``twin.initial_state()``).
        model_id: the SBML model id.
        hold_samples: export a sample-and-hold organ's continuous dynamics with its memory
            states held (SBML has no clock without events); without it such a twin is refused.

    Returns:
        The SBML document as a string.
    """
    import libsbml

    if not isinstance(twin, Twin):
        raise ValueError(f"export_sbml expects a vht.Twin, got {type(twin).__name__}")
    sampling = [n for n, o in zip(twin.names, twin.organs) if o.sample_period is not None]
    if sampling and not hold_samples:
        raise UnsupportedSBML(f"organ {sampling[0]!r} updates its states on a clock "
                              "(sample-and-hold), which SBML expresses only with events: pass "
                              "hold_samples=True to export its dynamics with those states held")
    y0 = np.asarray(twin.initial_state() if y0 is None else y0, dtype=float)
    intermediates = _Intermediates()
    rates = _symbolic(lambda tw, t, y: tw.rates(t, y), twin, intermediates)
    signals = (_symbolic(lambda tw, t, y: tw.signals(t, y), twin, intermediates)
               if twin.signal_names else [])

    document = libsbml.SBMLDocument(3, 2)
    model = document.createModel()
    model.setId(model_id)
    cache: dict = {}
    minute = model.createUnitDefinition()
    minute.setId("minute")
    u = minute.createUnit()
    u.setKind(libsbml.UNIT_KIND_SECOND)
    u.setExponent(1.0)
    u.setScale(0)
    u.setMultiplier(60.0)
    model.setTimeUnits("minute")

    def parameter(sid, value, unit, constant):
        p = model.createParameter()
        p.setId(sid)
        p.setValue(float(value))
        p.setConstant(constant)
        uid = _unit_definition(model, unit, cache)
        if uid:
            p.setUnits(uid)

    ids = parameter_ids(twin)
    for name, info in twin.parameter_info().items():
        parameter(ids[name], float(twin.parameters()[name]), info.unit, True)
    for name, unit, value in zip(twin.state_names, twin.state_units, y0):
        parameter(sbml_id(name), value, unit, False)
    for name, unit in zip(twin.signal_names, twin.signal_units):
        parameter(sbml_id(name), math.nan, unit, False)

    def math_of(tree, what):
        node = libsbml.parseL3Formula(to_formula(tree))
        if node is None:
            raise UnsupportedSBML(f"{what}: the expression could not be written as MathML "
                                  f"({libsbml.getLastParseL3Error()})")
        return node

    for name, tree in intermediates.rules:
        p = model.createParameter()
        p.setId(name)
        p.setConstant(False)
        rule = model.createAssignmentRule()
        rule.setVariable(name)
        rule.setMath(math_of(tree, f"intermediate {name}"))
    for name, tree in zip(twin.state_names, rates):
        rule = model.createRateRule()
        rule.setVariable(sbml_id(name))
        rule.setMath(math_of(tree, f"rate of {name}"))
    for name, tree in zip(twin.signal_names, signals):
        rule = model.createAssignmentRule()
        rule.setVariable(sbml_id(name))
        rule.setMath(math_of(tree, f"signal {name}"))
    text = libsbml.writeSBMLToString(document)
    if path is not None:
        with open(path, "w", encoding="utf-8") as handle:
            handle.write(text)
    return text
