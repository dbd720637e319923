"""Composed twins that twin files can rebuild (each is a ``@vht.builder``).

A builder takes JSON-serialisable arguments and returns a ``vht.Twin``; a twin file records
the builder's name and arguments, so ``vht.load_twin`` rebuilds the same structure and then
sets the stored parameter values.

``uva_padova_patient(name)`` is ``glucose_insulin.uva_padova.patient_twin``: one of
simglucose's 30 virtual type 1 diabetes patients, alone as organ ``patient``.
"""

from __future__ import annotations

import vht

from .cardiovascular import (
    Baroreflex,
    ClosedLoopCirculation,
    MeanFlowCirculation,
    reflex_connections,
)
from .fluids import Interstitium, Kidney
from .glucose_insulin.uva_padova import patient_twin as uva_padova_patient  # noqa: F401
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
def circulation_with_vasopressor(valves: str = "smooth", reflex: bool = True) -> vht.Twin:
    """Pulsatile circulation, with the baroreflex, whose systemic resistance also responds to
    an IV vasopressor.

    Organs: ``circulation`` (ClosedLoopCirculation), ``reflex`` (Baroreflex, reading the
    monitor's mean arterial pressure), ``drug`` (OneCompartmentPK, dosed into
    ``drug.central``), ``effect`` (EffectCompartment). Connections: the drug's plasma
    concentration drives the effect site; the effect's factor multiplies systemic resistance.
    """
    organs = {
        "circulation": ClosedLoopCirculation(valves=valves),
        "drug": OneCompartmentPK(**VASOPRESSOR_PK),
        "effect": EffectCompartment(**VASOPRESSOR_PD),
    }
    connections = [
        ("drug.concentration", "effect.plasma_concentration"),
        ("effect.factor", "circulation.resistance_factor"),
    ]
    if reflex:
        organs["reflex"] = Baroreflex()
        connections += reflex_connections()
    return vht.Twin(organs, connections)


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


def fluid_connections(circulation: str = "circulation", interstitium: str = "interstitium",
                      kidney: str = "kidney") -> list[tuple[str, str]]:
    """Couple a circulation with the interstitium (Starling exchange) and the kidney."""
    return [
        (f"{circulation}.mean_arterial_pressure", f"{interstitium}.arterial_pressure"),
        (f"{circulation}.central_venous_pressure", f"{interstitium}.venous_pressure"),
        (f"{circulation}.blood_volume", f"{interstitium}.blood_volume"),
        (f"{circulation}.hemorrhage_flow", f"{interstitium}.hemorrhage_flow"),
        (f"{interstitium}.capillary_filtration", f"{circulation}.capillary_filtration"),
        (f"{circulation}.mean_arterial_pressure", f"{kidney}.arterial_pressure"),
        (f"{kidney}.urine_flow", f"{circulation}.urine_flow"),
    ]


@vht.builder
def circulation_with_fluids(reflex: bool = True) -> vht.Twin:
    """Beat-averaged circulation with baroreflex, transcapillary exchange and kidney: blood
    volume that the body refills, dilutes and excretes (hours to days)."""
    organs = {"circulation": MeanFlowCirculation(), "interstitium": Interstitium(),
              "kidney": Kidney()}
    connections = fluid_connections()
    if reflex:
        organs["reflex"] = Baroreflex()
        connections += reflex_connections()
    return vht.Twin(organs, connections)


def _whole_body_organs_and_connections(circulation: vht.AbstractOrgan):
    from .glucose_insulin.bergman_minimal import BergmanMinimalModel, PlasmaInsulin
    from .pharmacology.pbpk import lidocaine_pbpk

    organs = {"circulation": circulation, "reflex": Baroreflex(),
              "interstitium": Interstitium(), "kidney": Kidney(), "drug": lidocaine_pbpk(),
              "glucose": BergmanMinimalModel(), "insulin": PlasmaInsulin()}
    connections = reflex_connections() + fluid_connections() + [
        ("circulation.cardiac_output", "drug.cardiac_output"),
        ("insulin.concentration", "glucose.insulin"),
    ]
    return organs, connections


@vht.builder
def whole_body() -> vht.Twin:
    """The reference whole-body twin for hours to days.

    Organs: the beat-averaged ``circulation`` with its ``reflex`` (Ursino 1998 baroreflex),
    ``interstitium`` (Starling exchange, lymph, red cells and plasma protein) and ``kidney``
    (filtration and pressure diuresis), ``drug`` (whole-body PBPK of lidocaine, its organ blood
    flows taken from the circulation's cardiac output, so that a hemorrhage lowers hepatic
    clearance), and ``glucose`` with ``insulin`` (Bergman minimal model, Denti 2010 values).
    Start it from ``vht.steady_state``.
    """
    organs, connections = _whole_body_organs_and_connections(MeanFlowCirculation())
    return vht.Twin(organs, connections)


@vht.builder
def whole_body_pulsatile(valves: str = "smooth") -> vht.Twin:
    """The reference whole-body twin with the pulsatile circulation, for horizons up to about
    30 minutes (every beat resolved); otherwise as ``whole_body``."""
    organs, connections = _whole_body_organs_and_connections(ClosedLoopCirculation(valves=valves))
    return vht.Twin(organs, connections)
