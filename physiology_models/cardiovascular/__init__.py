"""Cardiovascular organ models."""

from .closed_loop_circulation import ClosedLoopCirculation as ClosedLoopCirculation
