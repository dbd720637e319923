"""Pharmacology: pharmacokinetic and pharmacodynamic organ models (time unit: hours; the
physiologically based model ``PBPK`` works in minutes, the unit of its blood flows)."""

from .effect_compartment import EffectCompartment as EffectCompartment
from .one_compartment import OneCompartmentPK as OneCompartmentPK
from .pbpk import PBPK as PBPK
from .pbpk import FixedCardiacOutput as FixedCardiacOutput
from .pbpk import lidocaine_pbpk as lidocaine_pbpk
from .three_compartment import ThreeCompartmentPK as ThreeCompartmentPK
from .two_compartment import TwoCompartmentPK as TwoCompartmentPK
