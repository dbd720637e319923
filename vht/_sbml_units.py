"""SBML units in vht's unit registry.

An SBML unit definition is a product of base units, each ``(multiplier * 10**scale * kind)
** exponent``. vht turns it into a unit string of its pint registry: a product of pint's own
names for the kinds (``mole``, ``litre``, ``second``...) when the overall factor is 1, or a
unit defined in the registry for this factor (``sbml_<hash>``, equal to the factor times the
base product) otherwise, so that ``conversion_factor`` between an imported port and a native
one is exact.

What the file does not declare is ``"unknown"``: a dimension of its own, which
``vht.Twin`` refuses to connect (declare the unit at import with ``units={"id": "mg/L"}``).
"""

from __future__ import annotations

import hashlib
import math

from ._units import parse_unit, units

UNKNOWN = "unknown"
units.define("unknown = [unknown_unit]")  # undeclared SBML units: never convertible
units.define("item = [] = items")  # SBML's unit kind for counted entities

_KINDS = {  # SBML unit kind -> pint name (None: not representable)
    "ampere": "ampere", "avogadro": None, "becquerel": "becquerel", "candela": "candela",
    "celsius": None, "coulomb": "coulomb", "dimensionless": "dimensionless", "farad": "farad",
    "gram": "gram", "gray": "gray", "henry": "henry", "hertz": "hertz", "item": "item",
    "joule": "joule", "katal": "katal", "kelvin": "kelvin", "kilogram": "kilogram",
    "liter": "litre", "litre": "litre", "lumen": "lumen", "lux": "lux", "meter": "metre",
    "metre": "metre", "mole": "mole", "newton": "newton", "ohm": "ohm", "pascal": "pascal",
    "radian": "radian", "second": "second", "siemens": "siemens", "sievert": "sievert",
    "steradian": "steradian", "tesla": "tesla", "volt": "volt", "watt": "watt",
    "weber": "weber",
}


_PREFIXES = {-15: "femto", -12: "pico", -9: "nano", -6: "micro", -3: "milli", -2: "centi",
             -1: "deci", 3: "kilo", 6: "mega", 9: "giga"}
_TIMES = {60.0: "minute", 3600.0: "hour", 86400.0: "day", 604800.0: "week"}


def _readable(unit, kind: str) -> str | None:
    """One SBML base unit as a pint name with an SI prefix or a named time unit, or None."""
    multiplier, scale, exponent = unit.getMultiplier(), unit.getScale(), unit.getExponentAsDouble()
    if kind == "dimensionless":
        return None if multiplier != 1 or scale != 0 else ""
    if multiplier == 1 and scale == 0:
        name = kind
    elif multiplier == 1 and scale in _PREFIXES and kind != "kilogram":
        name = _PREFIXES[scale] + kind
    elif kind == "second" and scale == 0 and float(multiplier) in _TIMES:
        name = _TIMES[float(multiplier)]
    else:
        return None
    return name if exponent == 1 else f"{name} ** {exponent:g}"


def unit_string(definition) -> str:
    """vht's unit string of a libsbml ``UnitDefinition`` (``"unknown"`` if not representable):
    a readable pint expression where one exists (``milligram * litre ** -1``, ``hour ** -1``),
    else a unit defined in the registry for the definition's factor."""
    import libsbml

    if definition is None or definition.getNumUnits() == 0:
        return UNKNOWN
    readable = []
    for k in range(definition.getNumUnits()):
        unit = definition.getUnit(k)
        kind = _KINDS.get(libsbml.UnitKind_toString(unit.getKind()))
        part = _readable(unit, kind) if kind else None
        if part is None:
            break
        if part:
            readable.append(part)
    else:
        text = " * ".join(readable) if readable else "dimensionless"
        parse_unit(text)
        return text
    factor, parts = 1.0, []
    for k in range(definition.getNumUnits()):
        unit = definition.getUnit(k)
        kind = _KINDS.get(libsbml.UnitKind_toString(unit.getKind()))
        if kind is None:
            return UNKNOWN
        exponent = unit.getExponentAsDouble()
        factor *= (unit.getMultiplier() * 10.0 ** unit.getScale()) ** exponent
        if kind != "dimensionless" and exponent != 0:
            parts.append(kind if exponent == 1 else f"{kind} ** {exponent:g}")
    base = " * ".join(parts) if parts else "dimensionless"
    if math.isclose(factor, 1.0, rel_tol=1e-12):
        parse_unit(base)
        return base
    name = "sbml_" + hashlib.sha256(f"{factor!r} {base}".encode()).hexdigest()[:12]
    units.define(f"{name} = {factor!r} * {base}")
    parse_unit.cache_clear()
    return name


def element_unit(element, overrides=None, amount: bool = False) -> str:
    """The unit of an SBML element's symbol; ``amount=True`` for a species' amount.
    ``overrides`` maps ids to unit strings that replace what the file declares."""
    overrides = overrides or {}
    sid = element.getId() if element.isSetId() else ""
    key = sid + (":amount" if amount else "")
    for candidate in (key, sid if not amount else None):
        if candidate and candidate in overrides:
            parse_unit(overrides[candidate])
            return overrides[candidate]
    try:
        if amount:
            model = element.getModel()
            substance = (element.getSubstanceUnits() if element.isSetSubstanceUnits()
                         else model.getSubstanceUnits() if model.isSetSubstanceUnits() else "")
            return _named(model, substance)
        if element.containsUndeclaredUnits() if hasattr(
                element, "containsUndeclaredUnits") else False:
            return UNKNOWN
        return unit_string(element.getDerivedUnitDefinition())
    except Exception:  # libsbml raises for malformed unit references; treat as undeclared
        return UNKNOWN


def _named(model, name: str) -> str:
    """A unit given by name: a unit definition of the model or a base kind."""
    import libsbml

    if not name:
        return UNKNOWN
    definition = model.getUnitDefinition(name)
    if definition is not None:
        return unit_string(definition)
    kind = libsbml.UnitKind_forName(name)
    pint_name = _KINDS.get(libsbml.UnitKind_toString(kind)) if kind != libsbml.UNIT_KIND_INVALID \
        else None
    return pint_name or UNKNOWN


def model_time_unit(model) -> str:
    """The model's time unit (SBML L3 ``timeUnits``; the L2 default is the second). A
    model that declares none gets seconds, the unit of both SBML levels' examples."""
    if model.isSetTimeUnits():
        unit = _named(model, model.getTimeUnits())
        if unit != UNKNOWN:
            return unit
    return "second"
