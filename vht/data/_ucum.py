"""UCUM unit codes, parsed into vht's pint registry and written back.

pint does not read UCUM (the Unified Code for Units of Measure, https://ucum.org, the unit
system of FHIR, LOINC and OMOP): ``mm[Hg]``, ``10*3/uL`` or ``/min`` mean nothing to it. This
module parses UCUM's grammar itself and maps each atom through a table:

    code      := "/" term | term
    term      := component (("." | "/") component)*      (evaluated left to right)
    component := "(" term ")" | annotation | unit annotation? | integer
    unit      := prefix? atom exponent?                   (exponent: [+-]digits)

so that ``mL/min/{1.73_m2}`` is millilitre per minute (annotations in braces are, as UCUM
says, the unit 1 and carry no dimension), ``10*3/uL`` is a thousand per microlitre and
``kg/m2`` is kilogram per square metre. ``ucum_code`` writes a pint unit back as UCUM; the
tests check that every code of the corpus survives the round trip.

Atoms are case-sensitive as in UCUM's c/s variant. The table covers the units of clinical
data (mass, volume, substance, time, pressure, temperature, counts, percent, international
units); anything else raises ``UnitError`` naming the code. Some codes are refused as
ambiguous, with the reason:

| code | why refused | write instead |
|---|---|---|
| ``U`` (``mU``, ``uU``) | UCUM's U is the enzyme unit (umol/min), not insulin's IU | ``[IU]`` |
| ``eq`` (``meq``) | an equivalent is a mole times a valence the code does not carry | ``mmol`` |
| ``[pH]``, ``[arb'U]`` and other arbitrary units | no conversion exists | the variable's own unit |

Source of the atoms and prefixes: The Unified Code for Units of Measure, version 2.1
(Regenstrief Institute), tables 1-23. vht's registry defines ``IU`` as the international unit of
insulin (its own dimension), so ``[IU]`` converts to insulin doses and ``m[IU]/L`` to plasma
insulin.
"""

from __future__ import annotations

import dataclasses
import functools
import math
import re

import pint

from .._units import units
from ._errors import UnitError

# UCUM prefix symbol -> pint prefix name (UCUM table 1)
PREFIXES = {
    "Y": "yotta", "Z": "zetta", "E": "exa", "P": "peta", "T": "tera", "G": "giga", "M": "mega",
    "k": "kilo", "h": "hecto", "da": "deca", "d": "deci", "c": "centi", "m": "milli",
    "u": "micro", "n": "nano", "p": "pico", "f": "femto", "a": "atto", "z": "zepto",
    "y": "yocto",
}

# UCUM atom -> (pint unit name, factor, prefixable). The pint name is one unit of the registry,
# so that ucum_code can find the atom again from it.
ATOMS: dict[str, tuple[str, float, bool]] = {
    # base and SI units
    "m": ("meter", 1.0, True), "s": ("second", 1.0, True), "g": ("gram", 1.0, True),
    "K": ("kelvin", 1.0, True), "mol": ("mole", 1.0, True), "cd": ("candela", 1.0, True),
    "rad": ("radian", 1.0, True), "A": ("ampere", 1.0, True), "C": ("coulomb", 1.0, True),
    "V": ("volt", 1.0, True), "W": ("watt", 1.0, True), "N": ("newton", 1.0, True),
    "J": ("joule", 1.0, True), "Pa": ("pascal", 1.0, True), "Hz": ("hertz", 1.0, True),
    "bar": ("bar", 1.0, True), "L": ("liter", 1.0, True), "l": ("liter", 1.0, True),
    "cal": ("calorie", 1.0, True),
    # time (UCUM's month and year are the mean Julian ones, as are pint's)
    "min": ("minute", 1.0, False), "h": ("hour", 1.0, False), "d": ("day", 1.0, False),
    "wk": ("week", 1.0, False), "mo": ("month", 1.0, False), "a": ("year", 1.0, False),
    # pressure of a column of liquid (clinical units, written with their prefix)
    "mm[Hg]": ("millimeter_Hg", 1.0, False), "cm[H2O]": ("centimeter_H2O", 1.0, False),
    # temperature (offset units: values convert, factors do not)
    "Cel": ("degree_Celsius", 1.0, False), "[degF]": ("degree_Fahrenheit", 1.0, False),
    # customary lengths and masses
    "[in_i]": ("inch", 1.0, False), "[ft_i]": ("foot", 1.0, False),
    "[lb_av]": ("pound", 1.0, False), "[oz_av]": ("ounce", 1.0, False),
    # dimensionless
    "%": ("percent", 1.0, False), "[ppth]": ("permille", 1.0, False),
    "[ppm]": ("ppm", 1.0, False), "10*": ("", 10.0, False), "10^": ("", 10.0, False),
    # international units (vht's IU is insulin's)
    "[IU]": ("insulin_unit", 1.0, True), "[iU]": ("insulin_unit", 1.0, True),
}

AMBIGUOUS = {
    "U": "UCUM's U is the enzyme unit (umol/min), while clinical data use it for insulin's "
         "international unit; write [IU] (for example m[IU]/L)",
    "eq": "an equivalent is a mole times a valence that the code does not carry; write mol",
    "[pH]": "pH is a logarithm, not a unit that converts",
    "[arb'U]": "arbitrary units do not convert",
    "[CFU]": "colony-forming units do not convert",
}

_COMMON_MISTAKES = {
    "mcg": "ug", "cc": "mL", "mmHg": "mm[Hg]", "bpm": "/min", "IU": "[IU]", "lb": "[lb_av]",
    "lbs": "[lb_av]", "degC": "Cel", "F": "[degF]", "in": "[in_i]", "hr": "h",
    "sec": "s", "yr": "a", "y": "a", "kg/m^2": "kg/m2", "x10^3/uL": "10*3/uL",
}

_EXPONENT = re.compile(r"^(?P<unit>.*?[^\d+-])(?P<exponent>[+-]?\d+)$")


@dataclasses.dataclass(frozen=True)
class UcumUnit:
    """A parsed UCUM code: ``factor`` times the pint ``unit`` (a UCUM number like ``10*3`` or
    an annotation-free prefix lands in the factor)."""

    code: str
    factor: float
    unit: pint.Unit

    @property
    def pint(self) -> str:
        """The pint unit string (without the factor)."""
        return str(self.unit)

    def quantity(self, value) -> pint.Quantity:
        return units.Quantity(value * self.factor if self.factor != 1.0 else value, self.unit)


def _fail(code: str, why: str, safe: str | None = None) -> UnitError:
    """The error for a code; ``safe`` is ``why`` without text of the code (see
    ``DataError.redacted``), for reasons that quote part of it."""
    return UnitError(f"UCUM code {code!r}: {why}",
                     redacted=f"is not a UCUM code vht reads: {safe or why}")


@functools.cache
def parse_ucum(code: str) -> UcumUnit:
    """Parse a UCUM code (case-sensitive) into a factor and a pint unit.

    Raises ``UnitError`` for an unknown atom, an ambiguous one (see the module's table) or a
    malformed code, naming the code and, for common mistakes, the UCUM spelling.
    """
    if not isinstance(code, str):
        raise UnitError(f"a UCUM code must be a string, got {type(code).__name__}")
    text = code.strip()
    if text != code or not text or " " in text:
        raise _fail(code, "empty, or with spaces (UCUM codes have none; '1' is the unit one)")
    if text in _COMMON_MISTAKES:
        raise _fail(code, f"not a UCUM code; write {_COMMON_MISTAKES[text]!r}",
                    f"a common misspelling; write {_COMMON_MISTAKES[text]!r}")
    factor, dims = _Parser(text).parse()
    try:
        unit = units.Unit("dimensionless") if not dims else units.Unit(
            " * ".join(f"{name} ** {exponent}" for name, exponent in dims.items()))
    except pint.errors.PintError as error:  # a table entry pint lacks: a bug of this table
        raise _fail(code, f"maps to a unit pint cannot build ({error})") from None
    return UcumUnit(code, factor, unit)


class _Parser:
    """Recursive descent over UCUM's grammar; collects pint unit names with exponents."""

    def __init__(self, code: str):
        self.code, self.position = code, 0

    def parse(self) -> tuple[float, dict[str, int]]:
        if self.code.startswith("/"):
            self.position = 1
            factor, dims = self._term()
            factor, dims = 1.0 / factor, {k: -v for k, v in dims.items()}
        else:
            factor, dims = self._term()
        if self.position != len(self.code):
            raise _fail(self.code, f"unexpected {self.code[self.position]!r} at position "
                                   f"{self.position}", "malformed")
        return factor, {k: v for k, v in dims.items() if v}

    def _term(self) -> tuple[float, dict[str, int]]:
        factor, dims = self._component()
        while self.position < len(self.code) and self.code[self.position] in "./":
            operator = self.code[self.position]
            self.position += 1
            f2, d2 = self._component()
            sign = 1 if operator == "." else -1
            factor *= f2 ** sign
            for name, exponent in d2.items():
                dims[name] = dims.get(name, 0) + sign * exponent
        return factor, dims

    def _component(self) -> tuple[float, dict[str, int]]:
        code = self.code
        if self.position >= len(code):
            raise _fail(code, "ends where a unit was expected")
        if code[self.position] == "(":
            self.position += 1
            result = self._term()
            if self.position >= len(code) or code[self.position] != ")":
                raise _fail(code, "unbalanced parenthesis")
            self.position += 1
            return result
        # a symbol runs to the next operator outside brackets and braces
        start, depth = self.position, 0
        while self.position < len(code):
            char = code[self.position]
            if char in "[{":
                depth += 1
            elif char in "]}":
                depth -= 1
                if depth < 0:
                    raise _fail(code, f"unbalanced {char!r}")
            elif depth == 0 and char in "./()":
                break
            self.position += 1
        if depth:
            raise _fail(code, "unbalanced bracket or brace")
        symbol = code[start:self.position]
        # an annotation {...} is the unit one; after a unit it only labels it
        annotation = re.search(r"\{[^{}]*\}$", symbol)
        if annotation:
            symbol = symbol[: annotation.start()]
            if "{" in symbol or "}" in symbol:
                raise _fail(code, "misplaced annotation")
            if not symbol:
                return 1.0, {}
        if not symbol:
            raise _fail(code, "empty unit between operators")
        if symbol.isdigit():
            return float(symbol), {}
        return _simple_unit(code, symbol)


def _simple_unit(code: str, symbol: str) -> tuple[float, dict[str, int]]:
    exponent, match = 1, _EXPONENT.match(symbol)
    if match and symbol not in ATOMS:
        symbol, exponent = match["unit"], int(match["exponent"])
    for prefix, atom in _splits(symbol):
        if atom in AMBIGUOUS:
            raise _fail(code, f"{symbol!r} is ambiguous: {AMBIGUOUS[atom]}",
                        f"ambiguous: {AMBIGUOUS[atom]}")
        if atom not in ATOMS:
            continue
        name, factor, prefixable = ATOMS[atom]
        if prefix and not prefixable:
            continue
        if prefix:
            name = PREFIXES[prefix] + name
        if not name:  # a pure number: 10* and 10^
            return factor ** exponent, {}
        return factor ** exponent, {name: exponent}
    hint = f"; write {_COMMON_MISTAKES[symbol]!r}" if symbol in _COMMON_MISTAKES else ""
    raise _fail(code, f"unknown unit {symbol!r}{hint}",
                f"an unknown unit of {len(symbol)} characters{hint}")


def _splits(symbol: str):
    """The readings of a symbol: the whole atom first (so 'Pa' is pascal, not peta-year), then
    each prefix that starts it."""
    yield "", symbol
    for prefix in sorted(PREFIXES, key=len, reverse=True):
        if symbol.startswith(prefix) and len(symbol) > len(prefix):
            yield prefix, symbol[len(prefix):]


# -- pint -> UCUM ---------------------------------------------------------------------------

_ATOM_OF = {}
for _atom, (_name, _factor, _prefixable) in ATOMS.items():
    if _name and _factor == 1.0:
        _ATOM_OF.setdefault(_name, (_atom, _prefixable))
_PREFIX_OF = {name: symbol for symbol, name in PREFIXES.items()}


def ucum_code(unit: str | pint.Unit, factor: float = 1.0) -> str:
    """Write ``factor`` times a pint unit as a UCUM code (``'milligram / deciliter'`` ->
    ``'mg/dL'``; a factor 1000 -> ``'10*3'``). Raises ``UnitError`` for a unit without a UCUM
    atom in the table."""
    parsed = units.Unit(unit) if isinstance(unit, str) else unit
    numerator, denominator = [], []
    if factor != 1.0:
        power = math.log10(factor)
        if factor > 0 and abs(power - round(power)) < 1e-12:
            numerator.append(f"10*{round(power)}")
        else:
            numerator.append(repr(factor))
    for name, exponent in parsed._units.items():
        term = _atom_of(name)
        magnitude = abs(int(exponent)) if float(exponent).is_integer() else None
        if magnitude is None:
            raise UnitError(f"unit {unit!s}: fractional exponents have no UCUM code")
        (numerator if exponent > 0 else denominator).append(
            term + (str(magnitude) if magnitude != 1 else ""))
    text = ".".join(numerator)
    for term in denominator:
        text += "/" + term
    return text or "1"


def _atom_of(name: str) -> str:
    if name in _ATOM_OF:
        return _ATOM_OF[name][0]
    for prefix_name, prefix in sorted(_PREFIX_OF.items(), key=lambda item: -len(item[0])):
        rest = name[len(prefix_name):]
        if name.startswith(prefix_name) and rest in _ATOM_OF and _ATOM_OF[rest][1]:
            atom = _ATOM_OF[rest][0]
            # liters: UCUM writes the prefixed litre with a capital L (mL, dL, uL)
            return prefix + ("L" if atom in ("L", "l") else atom)
    raise UnitError(f"pint unit {name!r} has no UCUM atom in vht's table")


def convert(values, code: str, to_unit: str, molar_mass: str | None = None):
    """Values in UCUM ``code`` expressed in pint ``to_unit`` (a NumPy array or float).

    Mass and amount of substance convert through ``molar_mass`` (for example ``"180.16 g/mol"``
    for glucose, so that mg/dL becomes mmol/L by dividing by 18.016). Offset units (Cel,
    [degF]) convert as temperatures. Raises ``UnitError`` when the dimensions cannot meet.
    """
    parsed = parse_ucum(code)
    target = units.Unit(to_unit)
    quantity = parsed.quantity(values)
    try:
        return quantity.to(target).magnitude
    except pint.errors.DimensionalityError:
        pass
    if molar_mass is not None and quantity._is_multiplicative:
        mass_per_mole = units.Quantity(molar_mass)
        for candidate in (quantity / mass_per_mole, quantity * mass_per_mole):
            if candidate.dimensionality == target.dimensionality:
                return candidate.to(target).magnitude
    through = f" (even through the molar mass {molar_mass})" if molar_mass else ""
    raise UnitError(f"UCUM code {code!r} ({parsed.unit.dimensionality}) does not convert to "
                    f"{to_unit!r} ({target.dimensionality}){through}")
