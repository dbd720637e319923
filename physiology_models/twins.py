"""Composed twins that twin files can rebuild (each is a ``@vht.builder``).

A builder takes JSON-serialisable arguments and returns a ``vht.Twin``; a twin file records
the builder's name and arguments, so ``vht.load_twin`` rebuilds the same structure and then
sets the stored parameter values.
"""

from __future__ import annotations

import vht

from .cardiovascular import (
    Baroreflex,
    ClosedLoopCirculation,
    MeanFlowCirculation,
    reflex_connections,
)
from .pharmacology import EffectCompartment, OneCompartmentPK, TwoCompartmentPK


@vht.builder
def oral_pk(compartments: int = 1) -> vht.Twin:
    """A drug organ alone: one- or two-compartment PK with first-order absorption."""
    if compartments not in (1, 2):
        raise ValueError(f"compartments must be 1 or 2, not {compartments}")
    organ = OneCompartmentPK() if compartments == 1 else TwoCompartmentPK()
    return vht.Twin({"drug": organ})


# An illustrative vasopressor, labelled as such: a plasma half-life of about 2 minutes (the
# product information of noradrenaline: the effect ends 1-2 minutes after the infusion stops),
# a one-compartment volume of 10 L (clearance = ln 2 * V / t_half = 208 L/h), and an effect
# compartment whose Emax response raises systemic vascular resistance up to twofold with a
# half-maximal effect at 2 ug/L. These values make a plausible demonstration, not a dosing aid.
VASOPRESSOR_PK = dict(volume=10.0, clearance=208.0, ka=1.0)
VASOPRESSOR_PD = dict(ke0=41.6, emax=1.0, ec50=0.002, hill=1.0)


@vht.builder
def circulation_with_vasopressor(valves: str = "smooth") -> vht.Twin:
    """Pulsatile circulation whose systemic resistance responds to an IV vasopressor.

    Organs: ``circulation`` (ClosedLoopCirculation), ``drug`` (OneCompartmentPK, dosed into
    ``drug.central``), ``effect`` (EffectCompartment). Connections: the drug's plasma
    concentration drives the effect site; the effect's factor multiplies systemic resistance.
    """
    return vht.Twin(
        {
            "circulation": ClosedLoopCirculation(valves=valves),
            "drug": OneCompartmentPK(**VASOPRESSOR_PK),
            "effect": EffectCompartment(**VASOPRESSOR_PD),
        },
        connections=[
            ("drug.concentration", "effect.plasma_concentration"),
            ("effect.factor", "circulation.resistance_factor"),
        ],
    )


@vht.builder
def pulsatile_circulation(reflex: bool = True, valves: str = "smooth") -> vht.Twin:
    """The pulsatile circulation (every beat; up to about 30 min), with the baroreflex reading
    its beat-averaged (monitor) mean arterial pressure, as the beat-averaged twin does."""
    organs = {"circulation": ClosedLoopCirculation(valves=valves)}
    if not reflex:
        return vht.Twin(organs)
    return vht.Twin({**organs, "reflex": Baroreflex()}, reflex_connections())


@vht.builder
def mean_flow_circulation(reflex: bool = True) -> vht.Twin:
    """The beat-averaged circulation (hours to days) with the baroreflex."""
    organs = {"circulation": MeanFlowCirculation()}
    if not reflex:
        return vht.Twin(organs)
    return vht.Twin({**organs, "reflex": Baroreflex()}, reflex_connections())
