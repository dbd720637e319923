"""vht's library of organ models: one folder per physiological system, one file per model.

Every model's docstring gives its equations, units, parameter table with defaults and the
sources of both. Composed twins that can be rebuilt from a twin file live in ``twins``.
"""

from . import cardiovascular as cardiovascular
from . import fluids as fluids
from . import glucose_insulin as glucose_insulin
from . import pharmacology as pharmacology
