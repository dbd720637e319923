"""Building blocks of conserved-flow networks (compartments and conductances).

See ``vht._network`` for the conservation argument; organ models import from here:
``from vht.network import Compliance, Resistance, SmoothValve, Network``. Linear organs write
their closed-form responses (``AbstractOrgan.impulse_response``) with ``decay_integral`` and
``decay_convolution``, or from their rate matrix's exponential with
``linear_impulse_response`` and ``linear_step_response``. Smooth thresholds use ``softplus``
(exportable to SBML without NaN guards).
"""

from ._closed_form import decay_convolution as decay_convolution
from ._closed_form import decay_integral as decay_integral
from ._closed_form import linear_impulse_response as linear_impulse_response
from ._closed_form import linear_rate_matrix as linear_rate_matrix
from ._closed_form import linear_step_response as linear_step_response
from ._network import AbstractCompartment as AbstractCompartment
from ._network import AbstractConductance as AbstractConductance
from ._network import Clearance as Clearance
from ._network import Compliance as Compliance
from ._network import Depot as Depot
from ._network import FirstOrderTransfer as FirstOrderTransfer
from ._network import IdealValve as IdealValve
from ._network import Network as Network
from ._network import Resistance as Resistance
from ._network import SmoothValve as SmoothValve
from ._network import VolumeOfDistribution as VolumeOfDistribution
from ._network import softplus as softplus
