"""Glucose and insulin: the UVA/Padova type 1 diabetes model (as simglucose 0.2.11 implements
it, with its 30 virtual patients) and the Bergman minimal model (Denti et al. 2010 population
values) with a one-compartment plasma insulin organ for intravenous tests (time unit:
minutes)."""

from . import bergman_minimal as bergman_minimal
from . import uva_padova as uva_padova
from .bergman_minimal import BergmanMinimalModel as BergmanMinimalModel
from .bergman_minimal import PlasmaInsulin as PlasmaInsulin
from .uva_padova import UVAPadovaT1D as UVAPadovaT1D
