"""Pharmacology: pharmacokinetic and pharmacodynamic organ models (time unit: hours)."""

from .effect_compartment import EffectCompartment as EffectCompartment
from .one_compartment import OneCompartmentPK as OneCompartmentPK
from .two_compartment import TwoCompartmentPK as TwoCompartmentPK
