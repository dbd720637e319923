"""One-compartment pharmacokinetics with first-order absorption from a depot.

Horizon: hours to weeks (a drug course). Time unit of the organ: hours.

Equations (amounts A in mg, concentration C in mg/L, t in h)::

    dA_depot/dt   = -ka A_depot
    dA_central/dt =  ka A_depot - CL / V A_central
    C             =  A_central / V

An oral dose D given at t_d arrives in the depot as F D at t_d + t_lag (bioavailability and
lag time are the organ's dose routing, ``dose``); an intravenous dose goes straight into the
central compartment. For a single oral dose the solution is (ke = CL / V, tau = t - t_d - t_lag)::

    C(t) = F D ka / (V (ka - ke)) (exp(-ke tau) - exp(-ka tau))     ka != ke
    C(t) = F D ke tau exp(-ke tau) / V                                 ka == ke

(Gibaldi and Perrier, Pharmacokinetics, 2nd ed., 1982, ch. 1), which the tests check to 1e-8.

The organ declares these solutions as its impulse responses (a unit into the depot or the
central compartment) and its response to a constant rate into the central compartment
(``A_central = R (1 - exp(-ke t)) / ke``), so that ``vht.simulate_closed_form`` and calibration
evaluate it without an ODE solver, by superposition over doses and infusions (the same idea
as R's ``SSfol``). The difference of exponentials is evaluated as
``vht.network.decay_convolution``, which stays exact at ka = ke. A constant rate into the
depot has no closed form here (``simulate`` handles it).

Default parameters: the population typical values of the theophylline data (R
``datasets::Theoph``, 12 adults) from the maximum-likelihood nlme fit of Pinheiro and Bates
(2000), fm3, at the cohort's mean weight of 69.58 kg:

| parameter | default | unit | source |
|---|---|---|---|
| ka | 1.593 | 1/h | exp(0.46573) |
| clearance | 2.760 | L/h | CL/F 0.03967 L/h/kg x 69.58 kg (with F = 1, CL stands for CL/F) |
| volume | 32.13 | L | V/F 0.4618 L/kg x 69.58 kg |
| bioavailability | 1.0 | 1 | oral data alone identify CL/F and V/F, not F |
| lag_time | 0.0 | h |  |
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


class OneCompartmentPK(vht.AbstractOrgan):
    """One-compartment PK with first-order absorption (see the module docstring)."""

    ka: Array = parameter(1.593, unit="1/h", bounds=_POSITIVE,
                          description="absorption rate constant")
    clearance: Array = parameter(2.760, unit="L/h", bounds=_POSITIVE,
                                 description="elimination clearance")
    volume: Array = parameter(32.13, unit="L", bounds=_POSITIVE,
                              description="volume of distribution")
    bioavailability: Array = parameter(1.0, unit="dimensionless", bounds=(0.0, 1.0),
                                       description="fraction of an oral dose reaching the depot")
    lag_time: Array = parameter(0.0, unit="h", bounds=(0.0, 48.0),
                                description="oral absorption lag")

    states: ClassVar = (
        State("depot", "mg", lower=0.0, description="drug in the absorption depot (gut)"),
        State("central", "mg", lower=0.0, description="drug in the central compartment"),
    )
    outputs: ClassVar = (Output("concentration", "mg/L", "central (plasma) concentration"),)
    time_unit: ClassVar = "h"

    def network(self) -> Network:
        return Network(
            compartments={"depot": Depot(), "central": VolumeOfDistribution(self.volume)},
            conductances={"absorption": FirstOrderTransfer(self.ka),
                          "elimination": Clearance(self.clearance)},
            links=(("absorption", "depot", "central"), ("elimination", "central", None)),
        )

    def rates(self, t, state, inputs):
        return self.network().rates(t, state)

    def observe(self, t, state):
        return {"concentration": state["central"] / self.volume}

    def dose(self, state, amount, time):
        return oral_dose_routing(self, state, amount, time)

    def impulse_response(self, elapsed, source):
        ke = self.clearance / self.volume
        if source == "depot":
            return {"depot": jnp.exp(-self.ka * elapsed),
                    "central": self.ka * decay_convolution(self.ka, ke, elapsed)}
        return {"central": jnp.exp(-ke * elapsed)}

    def step_response(self, elapsed, source):
        if source == "depot":
            return super().step_response(elapsed, source)
        return {"central": decay_integral(self.clearance / self.volume, elapsed)}
