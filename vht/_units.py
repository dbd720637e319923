"""The one unit registry of vht, and the framework time unit.

Every port, state and parameter declares its unit as a string that this registry parses.
Connections between organs are checked (and, where the units differ only by a factor,
converted) at build time, so no unit arithmetic happens inside the vector field.

Time: vht integrates every twin in **minutes**. An organ may be written in its natural time
unit (seconds for a heartbeat, hours for a drug) by declaring ``time_unit``; the twin converts
its clock and its rates at the boundary.
"""

from __future__ import annotations

import functools

import pint

TIME_UNIT = "min"
"""The framework time unit: every solve, scenario time and result coordinate is in minutes."""

MINUTE = 1.0
HOUR = 60.0
DAY = 1440.0

units = pint.UnitRegistry(autoconvert_offset_to_baseunit=False, on_redefinition="ignore")
# In physiology "U" (and "IU") is the international unit of insulin, a unit of biological
# activity; pint defines "U" as the enzyme unit (umol/min). vht redefines it with a dimension
# of its own, so that insulin never converts into moles and "mU/L" means milli-units of insulin.
units.define("insulin_unit = [insulin] = IU = U")
units.define("beat = [] = beats")


@functools.cache
def parse_unit(unit: str) -> pint.Unit:
    """Parse a unit string, raising ``ValueError`` (not pint's own error) if it is unknown."""
    if not isinstance(unit, str):
        raise ValueError(f"a unit must be a string, got {unit!r}")
    try:
        return units.Unit(unit if unit.strip() else "dimensionless")
    except Exception as error:  # pint raises several error types for bad strings
        raise ValueError(f"unknown unit {unit!r}: {error}") from None


@functools.cache
def conversion_factor(from_unit: str, to_unit: str) -> float:
    """The factor ``f`` with ``value_in_to_unit = f * value_in_from_unit``.

    Raises ``ValueError`` when the dimensions differ or a unit has an offset (degC), because
    an offset cannot be applied as a factor.
    """
    source, target = parse_unit(from_unit), parse_unit(to_unit)
    if source.dimensionality != target.dimensionality:
        raise ValueError(
            f"unit mismatch: {from_unit!r} has dimension {source.dimensionality}, "
            f"{to_unit!r} has {target.dimensionality}"
        )
    for unit, text in ((source, from_unit), (target, to_unit)):
        if not units.Quantity(1.0, unit)._is_multiplicative:
            raise ValueError(f"unit {text!r} has an offset; use an absolute unit (K, not degC)")
    return float(units.Quantity(1.0, source).to(target).magnitude)


def time_factor(organ_time_unit: str) -> float:
    """How many organ time units fit in one framework minute (60 for seconds, 1/60 for hours)."""
    return conversion_factor(TIME_UNIT, organ_time_unit)


def per_time(unit: str, time_unit: str = TIME_UNIT) -> str:
    """The unit of a rate of change of a quantity in ``unit``: ``"mL"`` -> ``"(mL)/min"``."""
    return f"({unit})/{time_unit}" if unit.strip() else f"1/{time_unit}"
