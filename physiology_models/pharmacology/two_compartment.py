"""Two-compartment pharmacokinetics with first-order absorption from a depot.

Horizon: hours to weeks. Time unit of the organ: hours.

Equations (amounts A in mg, concentrations in mg/L, t in h)::

    dA_depot/dt      = -ka A_depot
    dA_central/dt    =  ka A_depot - CL C1 - Q (C1 - C2)
    dA_peripheral/dt =  Q (C1 - C2)
    C1 = A_central / V1,  C2 = A_peripheral / V2

built as a conserved-flow network (depot, central, peripheral; absorption, distribution and
elimination links), so drug mass is conserved to round-off: depot + central + peripheral +
eliminated equals the dose. Oral doses get bioavailability F and lag time t_lag (``dose``); IV
doses and infusions go into ``central``. With Q = 0 the model is the one-compartment model.
The tri-exponential single-dose solution is in Gibaldi and Perrier (1982), ch. 2.

Closed form (``impulse_response``, ``step_response``; used by ``vht.simulate_closed_form`` and by
calibration in place of the ODE solver). With k10 = CL / V1, k12 = Q / V1, k21 = Q / V2, the
disposition rates are alpha, beta = (s +- sqrt(s^2 - 4 k10 k21)) / 2 with s = k10 + k12 + k21
(beta computed as 2 k10 k21 / (s + sqrt(...)), free of cancellation), and the matrix
exponential of the central-peripheral system is ``E I + D (M + s I / 2)`` with
E = (exp(-alpha t) + exp(-beta t)) / 2 and D the convolution of exp(-alpha t) and
exp(-beta t) (``vht.network.decay_convolution``). A unit into the central compartment leaves
E + (k21 - s/2) D there and k12 D in the periphery; a unit into the depot leaves ka times the
same expressions convolved with exp(-ka t), built from convolutions of exp(-ka t) with each
exponential, which stay exact where ka equals alpha or beta. alpha - beta is at least
k12 for Q > 0, so the divided difference by it never divides zero by zero when CL > 0. A
constant rate into the central compartment integrates the same responses
(``vht.network.decay_integral``); into the depot it has no closed form here.

Default parameters: illustrative values for a small-molecule oral drug, not one specific
drug: ka, CL and V1 are the theophylline typical values of ``OneCompartmentPK``; the
peripheral compartment (Q, V2) is added with a distribution half-life of about 1 h, a terminal
half-life of about 14 h and a steady-state volume V1 + V2 of 52 L, typical magnitudes for a
drug distributing into tissue.

| parameter | default | unit |
|---|---|---|
| ka | 1.593 | 1/h |
| clearance | 2.760 | L/h |
| central_volume | 32.13 | L |
| intercompartmental_clearance | 8.0 | L/h |
| peripheral_volume | 20.0 | L |
| bioavailability | 1.0 | 1 |
| lag_time | 0.0 | h |
"""

from __future__ import annotations

from typing import ClassVar

import jax.numpy as jnp
from jaxtyping import Array

import vht
from vht import Output, State, parameter
from vht.network import (
    Clearance,
    Depot,
    FirstOrderTransfer,
    Network,
    VolumeOfDistribution,
    decay_convolution,
    decay_integral,
)

from ._dosing import oral_dose_routing

_POSITIVE = (1e-12, float("inf"))


class TwoCompartmentPK(vht.AbstractOrgan):
    """Two-compartment PK with first-order absorption (see the module docstring)."""

    ka: Array = parameter(1.593, unit="1/h", bounds=_POSITIVE,
                          description="absorption rate constant")
    clearance: Array = parameter(2.760, unit="L/h", bounds=_POSITIVE,
                                 description="elimination clearance")
    central_volume: Array = parameter(32.13, unit="L", bounds=_POSITIVE)
    intercompartmental_clearance: Array = parameter(8.0, unit="L/h", bounds=(0.0, float("inf")))
    peripheral_volume: Array = parameter(20.0, unit="L", bounds=_POSITIVE)
    bioavailability: Array = parameter(1.0, unit="dimensionless", bounds=(0.0, 1.0))
    lag_time: Array = parameter(0.0, unit="h", bounds=(0.0, 48.0))

    states: ClassVar = (
        State("depot", "mg", lower=0.0, description="drug in the absorption depot (gut)"),
        State("central", "mg", lower=0.0, description="drug in the central compartment"),
        State("peripheral", "mg", lower=0.0, description="drug in the peripheral compartment"),
    )
    outputs: ClassVar = (
        Output("concentration", "mg/L", "central (plasma) concentration"),
        Output("peripheral_concentration", "mg/L"),
    )
    time_unit: ClassVar = "h"

    def network(self) -> Network:
        return Network(
            compartments={"depot": Depot(),
                          "central": VolumeOfDistribution(self.central_volume),
                          "peripheral": VolumeOfDistribution(self.peripheral_volume)},
            conductances={"absorption": FirstOrderTransfer(self.ka),
                          "distribution": Clearance(self.intercompartmental_clearance),
                          "elimination": Clearance(self.clearance)},
            links=(("absorption", "depot", "central"),
                   ("distribution", "central", "peripheral"),
                   ("elimination", "central", None)),
        )

    def rates(self, t, state, inputs):
        return self.network().rates(t, state)

    def observe(self, t, state):
        return {"concentration": state["central"] / self.central_volume,
                "peripheral_concentration": state["peripheral"] / self.peripheral_volume}

    def dose(self, state, amount, time):
        return oral_dose_routing(self, state, amount, time)

    def _disposition(self):
        """(k10, k12, k21, s, alpha, beta) of the central-peripheral system, per hour."""
        k10 = self.clearance / self.central_volume
        k12 = self.intercompartmental_clearance / self.central_volume
        k21 = self.intercompartmental_clearance / self.peripheral_volume
        total = k10 + k12 + k21
        root = jnp.sqrt(jnp.maximum(total * total - 4.0 * k10 * k21, 0.0))
        alpha = 0.5 * (total + root)
        return k10, k12, k21, total, alpha, 2.0 * k10 * k21 / (total + root)

    def _disposition_response(self, source, mean, difference):
        """States after a unit into ``source`` ('central' or 'peripheral'), from the
        (mean of the two exponentials, their divided difference) under whatever operator
        (identity, convolution with the depot, integration) ``mean`` and ``difference`` carry."""
        k10, k12, k21, total, _, _ = self._disposition()
        if source == "peripheral":
            return {"central": k21 * difference,
                    "peripheral": mean + (k10 + k12 - 0.5 * total) * difference}
        return {"central": mean + (k21 - 0.5 * total) * difference,
                "peripheral": k12 * difference}

    def impulse_response(self, elapsed, source):
        _, _, _, _, alpha, beta = self._disposition()
        if source == "depot":
            ka = self.ka
            with_alpha, with_beta = (decay_convolution(ka, r, elapsed) for r in (alpha, beta))
            gut = self._disposition_response("central", 0.5 * (with_alpha + with_beta),
                                             (with_beta - with_alpha) / (alpha - beta))
            return {"depot": jnp.exp(-ka * elapsed)} | {k: ka * v for k, v in gut.items()}
        mean = 0.5 * (jnp.exp(-alpha * elapsed) + jnp.exp(-beta * elapsed))
        return self._disposition_response(source, mean,
                                          decay_convolution(alpha, beta, elapsed))

    def step_response(self, elapsed, source):
        if source == "depot":
            return super().step_response(elapsed, source)
        _, _, _, _, alpha, beta = self._disposition()
        fast, slow = decay_integral(alpha, elapsed), decay_integral(beta, elapsed)
        return self._disposition_response(source, 0.5 * (fast + slow),
                                          (slow - fast) / (alpha - beta))
