"""Body fluids: transcapillary exchange with the interstitium, and the kidney."""

from .interstitium import Interstitium as Interstitium
from .interstitium import landis_pappenheimer as landis_pappenheimer
from .kidney import Kidney as Kidney
