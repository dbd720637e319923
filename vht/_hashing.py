"""Model and parameter hashes: what a result or a twin file was computed with.

- ``organ_hashes(twin)``: per organ, a SHA-256 over its class, declared states, ports,
  parameter names, units and bounds, static fields, time unit, stiffness, and the code of its
  methods (parsed and re-printed without docstrings or comments, so documentation and
  formatting may change while equations may not).
- ``model_hash(twin)``: SHA-256 over the organ hashes in order and the connections: the
  twin's structure. Parameter *values* and default values do not enter it.
- ``parameter_hash(twin)``: SHA-256 over every parameter's name, dtype, shape and bytes.

Code outside an organ's own class body (a shared helper function) is not part of its hash.
"""

from __future__ import annotations

import ast
import dataclasses
import functools
import hashlib
import inspect
import json
import textwrap

import numpy as np

from ._organ import AbstractOrgan
from ._twin import Twin


def _sha256(payload) -> str:
    text = json.dumps(payload, sort_keys=True, default=repr)
    return hashlib.sha256(text.encode()).hexdigest()


def _strip_docstrings(node: ast.AST) -> ast.AST:
    for child in ast.walk(node):
        body = getattr(child, "body", None)
        if (isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)) and body
                and isinstance(body[0], ast.Expr) and isinstance(body[0].value, ast.Constant)
                and isinstance(body[0].value.value, str)):
            child.body = body[1:] or [ast.Pass()]
    return node


@functools.cache
def _method_code(cls: type) -> str:
    """The methods of ``cls`` and its organ base classes, normalised (no docs, no comments)."""
    parts = []
    for klass in cls.__mro__:
        if klass is AbstractOrgan or not (isinstance(klass, type) and
                                          issubclass(klass, AbstractOrgan)):
            continue
        try:
            tree = ast.parse(textwrap.dedent(inspect.getsource(klass)))
        except (OSError, TypeError):  # defined interactively: fall back to the name
            parts.append(f"{klass.__module__}.{klass.__qualname__}")
            continue
        class_def = tree.body[0]
        methods = [n for n in class_def.body if isinstance(n, (ast.FunctionDef,
                                                               ast.AsyncFunctionDef))]
        parts.extend(ast.unparse(_strip_docstrings(m)) for m in methods)
    return "\n".join(parts)


def _organ_structure(organ: AbstractOrgan) -> dict:
    cls = type(organ)
    static = {f.name: repr(getattr(organ, f.name)) for f in dataclasses.fields(organ)
              if f.metadata.get("static", False)}
    return {
        "class": f"{cls.__module__}.{cls.__qualname__}",
        "states": [(s.name, s.unit, s.lower, s.upper) for s in organ.states],
        "inputs": [(i.name, i.unit, i.default) for i in organ.inputs],
        "outputs": [(o.name, o.unit) for o in organ.outputs],
        "parameters": [(p.name, p.unit, p.lower, p.upper)
                       for p in organ.parameter_info().values()],
        "static": static,
        "time_unit": organ.time_unit,
        "stiffness": organ.stiffness,
        "code": hashlib.sha256(_method_code(cls).encode()).hexdigest(),
    }


def organ_hashes(twin: Twin) -> dict[str, str]:
    """SHA-256 of each organ's structure and equations, keyed by organ name."""
    return {name: _sha256(_organ_structure(organ)) for name, organ in zip(twin.names, twin.organs)}


def model_hash(twin: Twin) -> str:
    """SHA-256 of the twin's structure (organs in order, connections)."""
    connections = [(c.source, c.target) for c in twin.connections]
    return _sha256({"organs": list(organ_hashes(twin).items()), "connections": connections})


def hash_arrays(named_arrays: dict[str, np.ndarray]) -> str:
    digest = hashlib.sha256()
    for name in named_arrays:
        value = np.ascontiguousarray(np.asarray(named_arrays[name]))
        digest.update(f"{name}|{value.dtype.str}|{value.shape}|".encode())
        digest.update(value.tobytes())
    return digest.hexdigest()


def parameter_hash(twin: Twin) -> str:
    """SHA-256 of every parameter value (name, dtype, shape, bytes), in declaration order."""
    return hash_arrays({k: np.asarray(v) for k, v in twin.parameters().items()})
