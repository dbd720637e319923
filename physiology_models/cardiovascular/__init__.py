"""Cardiovascular organ models: a pulsatile and a beat-averaged circulation, and the arterial
baroreflex that drives either."""

from .baroreflex import Baroreflex as Baroreflex
from .baroreflex import reflex_connections as reflex_connections
from .closed_loop_circulation import ClosedLoopCirculation as ClosedLoopCirculation
from .mean_flow_circulation import MeanFlowCirculation as MeanFlowCirculation
