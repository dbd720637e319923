"""Dose routing shared by the PK organs: bioavailability and lag time apply to the depot."""

from __future__ import annotations

from vht import TIME_UNIT, conversion_factor


def oral_dose_routing(organ, state, amount, time):
    """A dose into ``depot`` arrives as ``F * amount`` after ``lag_time``; others unchanged."""
    if state != "depot":
        return amount, time
    lag_minutes = organ.lag_time * conversion_factor(organ.time_unit, TIME_UNIT)
    return organ.bioavailability * amount, time + lag_minutes
