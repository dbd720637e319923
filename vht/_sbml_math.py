"""SBML math as a small expression language: converted from libsbml's MathML trees, evaluated
with JAX, and written back to MathML for export.

An expression is a nested tuple, hashable (so a model's equations can be a static field whose
hash identifies the model) and free of libsbml objects:

| form | meaning |
|---|---|
| ``("num", value)`` | a number (``inf`` and ``nan`` allowed) |
| ``("sym", id)`` | the value of a symbol: species, compartment, parameter, reaction... |
| ``("time",)``, ``("avogadro",)`` | the csymbols time and Avogadro's number (6.02214179e23) |
| ``("rateOf", id)`` | the csymbol rateOf: the time derivative of a symbol |
| ``(op, arg, ...)`` | an operator or function of ``OPERATORS`` |
| ``("piecewise", v1, c1, ..., otherwise)`` | the first value whose condition holds, else NaN |

User function definitions are inlined at conversion (their lambda bodies with the arguments
substituted), so an expression never calls a user function. Booleans and numbers mix as SBML
Level 3 allows: a boolean in arithmetic is 0 or 1, a number in a condition is true when it is
not 0.

What is not supported is an ``UnsupportedSBML`` error naming the construct: ``delay`` (no
delay differential equations in vht), csymbols other than time, avogadro and rateOf, and
MathML outside SBML's subset.
"""

from __future__ import annotations

import math

import jax.numpy as jnp
import jax.scipy.special as jsp

AVOGADRO = 6.02214179e23
"""Avogadro's number as the SBML Level 3 specifications define the csymbol avogadro (CODATA
2006); the importer writes it into every expression as a number."""


class UnsupportedSBML(ValueError):
    """A construct of the SBML file that vht does not import yet (named in the message): vht
    refuses the model rather than run a silently different one."""


def _inv(f):
    return lambda x: f(1.0 / x)


# name: (jax function, arity or None for n-ary)
_UNARY = {
    "neg": jnp.negative, "abs": jnp.abs, "exp": jnp.exp, "ln": jnp.log, "log10": jnp.log10,
    "sqrt": jnp.sqrt, "floor": jnp.floor, "ceiling": jnp.ceil,
    "factorial": lambda x: jnp.exp(jsp.gammaln(x + 1.0)),
    "sin": jnp.sin, "cos": jnp.cos, "tan": jnp.tan, "sec": lambda x: 1.0 / jnp.cos(x),
    "csc": lambda x: 1.0 / jnp.sin(x), "cot": lambda x: 1.0 / jnp.tan(x),
    "sinh": jnp.sinh, "cosh": jnp.cosh, "tanh": jnp.tanh, "sech": lambda x: 1.0 / jnp.cosh(x),
    "csch": lambda x: 1.0 / jnp.sinh(x), "coth": lambda x: 1.0 / jnp.tanh(x),
    "arcsin": jnp.arcsin, "arccos": jnp.arccos, "arctan": jnp.arctan,
    "arcsec": _inv(jnp.arccos), "arccsc": _inv(jnp.arcsin), "arccot": _inv(jnp.arctan),
    "arcsinh": jnp.arcsinh, "arccosh": jnp.arccosh, "arctanh": jnp.arctanh,
    "arcsech": _inv(jnp.arccosh), "arccsch": _inv(jnp.arcsinh), "arccoth": _inv(jnp.arctanh),
}
_BINARY = {
    "minus": jnp.subtract, "divide": jnp.divide, "power": jnp.power,
    "log": lambda base, x: jnp.log(x) / jnp.log(base),
    "root": lambda degree, x: jnp.power(x, 1.0 / degree),
    # MathML quotient and rem: the integer part of the division, and what is left of it
    "quotient": lambda a, b: jnp.trunc(a / b), "rem": jnp.fmod,
}
_RELATIONAL = {"eq": jnp.equal, "neq": jnp.not_equal, "gt": jnp.greater, "lt": jnp.less,
               "geq": jnp.greater_equal, "leq": jnp.less_equal}
_NARY = {"plus", "times", "and", "or", "xor", "max", "min"}
OPERATORS = frozenset(_UNARY) | frozenset(_BINARY) | frozenset(_RELATIONAL) | _NARY | {
    "not", "implies"}


# -- from libsbml ------------------------------------------------------------------------------

def _ast_names():
    import libsbml

    unary = {
        libsbml.AST_FUNCTION_ABS: "abs", libsbml.AST_FUNCTION_EXP: "exp",
        libsbml.AST_FUNCTION_LN: "ln", libsbml.AST_FUNCTION_FLOOR: "floor",
        libsbml.AST_FUNCTION_CEILING: "ceiling", libsbml.AST_FUNCTION_FACTORIAL: "factorial",
        libsbml.AST_FUNCTION_SIN: "sin", libsbml.AST_FUNCTION_COS: "cos",
        libsbml.AST_FUNCTION_TAN: "tan", libsbml.AST_FUNCTION_SEC: "sec",
        libsbml.AST_FUNCTION_CSC: "csc", libsbml.AST_FUNCTION_COT: "cot",
        libsbml.AST_FUNCTION_SINH: "sinh", libsbml.AST_FUNCTION_COSH: "cosh",
        libsbml.AST_FUNCTION_TANH: "tanh", libsbml.AST_FUNCTION_SECH: "sech",
        libsbml.AST_FUNCTION_CSCH: "csch", libsbml.AST_FUNCTION_COTH: "coth",
        libsbml.AST_FUNCTION_ARCSIN: "arcsin", libsbml.AST_FUNCTION_ARCCOS: "arccos",
        libsbml.AST_FUNCTION_ARCTAN: "arctan", libsbml.AST_FUNCTION_ARCSEC: "arcsec",
        libsbml.AST_FUNCTION_ARCCSC: "arccsc", libsbml.AST_FUNCTION_ARCCOT: "arccot",
        libsbml.AST_FUNCTION_ARCSINH: "arcsinh", libsbml.AST_FUNCTION_ARCCOSH: "arccosh",
        libsbml.AST_FUNCTION_ARCTANH: "arctanh", libsbml.AST_FUNCTION_ARCSECH: "arcsech",
        libsbml.AST_FUNCTION_ARCCSCH: "arccsch", libsbml.AST_FUNCTION_ARCCOTH: "arccoth",
        libsbml.AST_LOGICAL_NOT: "not",
    }
    other = {
        libsbml.AST_PLUS: "plus", libsbml.AST_TIMES: "times", libsbml.AST_DIVIDE: "divide",
        libsbml.AST_POWER: "power", libsbml.AST_FUNCTION_POWER: "power",
        libsbml.AST_FUNCTION_QUOTIENT: "quotient", libsbml.AST_FUNCTION_REM: "rem",
        libsbml.AST_FUNCTION_MAX: "max", libsbml.AST_FUNCTION_MIN: "min",
        libsbml.AST_LOGICAL_AND: "and", libsbml.AST_LOGICAL_OR: "or",
        libsbml.AST_LOGICAL_XOR: "xor", libsbml.AST_LOGICAL_IMPLIES: "implies",
        libsbml.AST_RELATIONAL_EQ: "eq", libsbml.AST_RELATIONAL_NEQ: "neq",
        libsbml.AST_RELATIONAL_GT: "gt", libsbml.AST_RELATIONAL_LT: "lt",
        libsbml.AST_RELATIONAL_GEQ: "geq", libsbml.AST_RELATIONAL_LEQ: "leq",
    }
    return unary, other


def from_ast(node, functions: dict | None = None, where: str = "") -> tuple:
    """The expression of a libsbml ``ASTNode``. ``functions`` maps user function ids to
    (argument names, body expression), inlined at their calls; ``where`` names the element
    for error messages."""
    import libsbml

    unary, other = _ast_names()
    functions = functions or {}

    def convert(n, bound):
        kind = n.getType()
        children = [n.getChild(i) for i in range(n.getNumChildren())]
        if kind in (libsbml.AST_INTEGER, libsbml.AST_REAL, libsbml.AST_REAL_E,
                    libsbml.AST_RATIONAL):
            return ("num", float(n.getValue()))
        if kind == libsbml.AST_CONSTANT_PI:
            return ("num", math.pi)
        if kind == libsbml.AST_CONSTANT_E:
            return ("num", math.e)
        if kind == libsbml.AST_CONSTANT_TRUE:
            return ("num", 1.0)
        if kind == libsbml.AST_CONSTANT_FALSE:
            return ("num", 0.0)
        if kind == libsbml.AST_NAME:
            name = n.getName()
            return bound[name] if name in bound else ("sym", name)
        if kind == libsbml.AST_NAME_TIME:
            return ("time",)
        if kind == libsbml.AST_NAME_AVOGADRO:
            return ("avogadro",)
        if kind == libsbml.AST_FUNCTION_DELAY:
            raise UnsupportedSBML(f"{where}: the delay function (csymbol delay) is not "
                                  "supported: vht has no delay differential equations; "
                                  "replace the delay by a chain of compartments")
        if kind == libsbml.AST_FUNCTION_RATE_OF:
            if len(children) != 1 or children[0].getType() != libsbml.AST_NAME:
                raise UnsupportedSBML(f"{where}: rateOf is supported of a symbol only")
            return ("rateOf", children[0].getName())
        if kind == libsbml.AST_FUNCTION_PIECEWISE:
            parts = tuple(convert(c, bound) for c in children)
            return ("piecewise",) + parts
        if kind == libsbml.AST_MINUS:
            args = tuple(convert(c, bound) for c in children)
            return ("neg", args[0]) if len(args) == 1 else ("minus",) + args
        if kind == libsbml.AST_FUNCTION_LOG:
            args = tuple(convert(c, bound) for c in children)
            return ("log10", args[0]) if len(args) == 1 else ("log",) + args
        if kind == libsbml.AST_FUNCTION_ROOT:
            args = tuple(convert(c, bound) for c in children)
            return ("sqrt", args[0]) if len(args) == 1 else ("root",) + args
        if kind in unary:
            if len(children) != 1:
                raise UnsupportedSBML(f"{where}: {unary[kind]} takes one argument, got "
                                      f"{len(children)}")
            return (unary[kind], convert(children[0], bound))
        if kind in other:
            return (other[kind],) + tuple(convert(c, bound) for c in children)
        if kind == libsbml.AST_FUNCTION:
            name = n.getName()
            if name not in functions:
                raise UnsupportedSBML(f"{where}: call of an undefined function {name!r}")
            arguments, body = functions[name]
            if len(arguments) != len(children):
                raise UnsupportedSBML(f"{where}: function {name!r} takes {len(arguments)} "
                                      f"arguments, called with {len(children)}")
            values = {a: convert(c, bound) for a, c in zip(arguments, children)}
            return substitute(body, values)
        label = n.getName() or libsbml.formulaToL3String(n)
        raise UnsupportedSBML(f"{where}: MathML construct {label!r} (libsbml AST type "
                              f"{kind}) is not supported")

    return convert(node, {})


def function_definition(fd, functions: dict) -> tuple[tuple[str, ...], tuple]:
    """(argument names, body) of an SBML ``FunctionDefinition`` (earlier definitions inlined)."""
    import libsbml

    math_node = fd.getMath()
    where = f"function definition {fd.getId()!r}"
    if math_node is None or math_node.getType() != libsbml.AST_LAMBDA:
        raise UnsupportedSBML(f"{where}: has no lambda")
    n = math_node.getNumChildren()
    arguments = tuple(math_node.getChild(i).getName() for i in range(n - 1))
    body = from_ast(math_node.getChild(n - 1), functions, where)
    # a function body sees only its arguments; its bound names become placeholders
    return arguments, body


def substitute(expression: tuple, values: dict[str, tuple]) -> tuple:
    """``expression`` with symbols replaced by expressions (``values``: id -> expression)."""
    head = expression[0]
    if head == "sym":
        return values.get(expression[1], expression)
    if head in ("num", "time", "avogadro", "rateOf"):
        return expression
    return (head,) + tuple(substitute(e, values) for e in expression[1:])


def symbols(expression: tuple) -> set[str]:
    """The ids an expression reads (``rateOf`` arguments included)."""
    head = expression[0]
    if head in ("sym", "rateOf"):
        return {expression[1]}
    if head in ("num", "time", "avogadro"):
        return set()
    out = set()
    for e in expression[1:]:
        out |= symbols(e)
    return out


def rate_of_targets(expression: tuple) -> set[str]:
    """The ids whose ``rateOf`` an expression takes."""
    head = expression[0]
    if head == "rateOf":
        return {expression[1]}
    if head in ("sym", "num", "time", "avogadro"):
        return set()
    out = set()
    for e in expression[1:]:
        out |= rate_of_targets(e)
    return out


# -- evaluation with JAX ---------------------------------------------------------------------

def _number(x):
    x = jnp.asarray(x)
    return x.astype(jnp.result_type(float)) if x.dtype == bool else x


def _truth(x):
    x = jnp.asarray(x)
    return x if x.dtype == bool else x != 0


def evaluate(expression: tuple, env, t, rates=None):
    """The value of ``expression`` (a JAX scalar) with symbol values from ``env`` (a mapping
    id -> value), time ``t`` and ``rates`` (id -> time derivative, for ``rateOf``)."""
    head = expression[0]
    if head == "num":
        return jnp.asarray(expression[1], dtype=jnp.result_type(float))
    if head == "sym":
        return env[expression[1]]
    if head == "time":
        return jnp.asarray(t)
    if head == "avogadro":
        return jnp.asarray(AVOGADRO, dtype=jnp.result_type(float))
    if head == "rateOf":
        if rates is None or expression[1] not in rates:
            raise UnsupportedSBML(f"rateOf({expression[1]}): the rate of this symbol is not "
                                  "available (it is neither a state nor constant)")
        return rates[expression[1]]
    if head == "piecewise":
        parts = expression[1:]
        pairs, otherwise = (parts[:-1], parts[-1]) if len(parts) % 2 else (parts, None)
        result = (jnp.asarray(jnp.nan, dtype=jnp.result_type(float)) if otherwise is None
                  else _number(evaluate(otherwise, env, t, rates)))
        for k in range(len(pairs) - 2, -1, -2):
            value = _number(evaluate(pairs[k], env, t, rates))
            condition = _truth(evaluate(pairs[k + 1], env, t, rates))
            result = jnp.where(condition, value, result)
        return result
    args = [evaluate(e, env, t, rates) for e in expression[1:]]
    if head in _UNARY:
        return _UNARY[head](_number(args[0]))
    if head in _BINARY:
        return _BINARY[head](_number(args[0]), _number(args[1]))
    if head in _RELATIONAL:
        # n-ary relations hold pairwise along the arguments (a < b < c)
        out = jnp.asarray(True)
        for a, b in zip(args[:-1], args[1:]):
            out = out & _RELATIONAL[head](_number(a), _number(b))
        return out
    if head == "plus":
        return sum((_number(a) for a in args), jnp.asarray(0.0))
    if head == "times":
        out = jnp.asarray(1.0)
        for a in args:
            out = out * _number(a)
        return out
    if head == "and":
        out = jnp.asarray(True)
        for a in args:
            out = out & _truth(a)
        return out
    if head == "or":
        out = jnp.asarray(False)
        for a in args:
            out = out | _truth(a)
        return out
    if head == "xor":
        out = jnp.asarray(False)
        for a in args:
            out = out ^ _truth(a)
        return out
    if head == "not":
        return ~_truth(args[0])
    if head == "implies":
        return ~_truth(args[0]) | _truth(args[1])
    if head == "max":
        return jnp.max(jnp.stack([_number(a) for a in args]))
    if head == "min":
        return jnp.min(jnp.stack([_number(a) for a in args]))
    raise UnsupportedSBML(f"operator {head!r} is not supported")


# -- to libsbml, for export ------------------------------------------------------------------

_INFIX = {"plus": "+", "minus": "-", "times": "*", "divide": "/", "power": "^",
          "eq": "==", "neq": "!=", "gt": ">", "lt": "<", "geq": ">=", "leq": "<=",
          "and": "&&", "or": "||"}


def to_formula(expression: tuple) -> str:
    """The expression in libsbml's L3 infix syntax (``libsbml.parseL3Formula`` reads it)."""
    head = expression[0]
    if head == "num":
        value = expression[1]
        if math.isnan(value):
            return "NaN"
        if math.isinf(value):
            return "INF" if value > 0 else "-INF"
        return repr(float(value))
    if head == "sym":
        return expression[1]
    if head == "time":
        return "time"
    if head == "avogadro":
        return "avogadro"
    if head == "rateOf":
        return f"rateOf({expression[1]})"
    args = [to_formula(e) for e in expression[1:]]
    if head in _INFIX and len(args) >= 2:
        return "(" + f" {_INFIX[head]} ".join(args) + ")"
    if head == "plus" and not args:
        return "0"
    if head == "times" and not args:
        return "1"
    if head in ("plus", "times") and len(args) == 1:
        return args[0]
    if head == "neg":
        return f"(-{args[0]})"
    if head == "not":
        return f"!({args[0]})"
    if head == "log10":
        return f"log10({args[0]})"
    if head == "ceiling":
        return f"ceil({args[0]})"
    if head == "ln":
        return f"ln({args[0]})"
    return f"{head}({', '.join(args)})"
