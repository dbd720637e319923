"""Three-compartment (mammillary) pharmacokinetics with first-order absorption from a depot.

Horizon: minutes to weeks (an anaesthetic induction to a drug course). Time unit of the
organ: hours.

Equations (amounts A in mg, concentrations in mg/L, t in h)::

    dA_depot/dt           = -ka A_depot
    dA_central/dt         =  ka A_depot - CL C1 - Q2 (C1 - C2) - Q3 (C1 - C3)
    dA_peripheral/dt      =  Q2 (C1 - C2)
    dA_deep_peripheral/dt =  Q3 (C1 - C3)
    C1 = A_central / V1,  C2 = A_peripheral / V2,  C3 = A_deep_peripheral / V3

built, like ``TwoCompartmentPK``, as a conserved-flow network (depot, central and two
peripheral compartments; absorption, two distribution links and elimination), so drug mass is
conserved to round-off: depot + central + peripherals + eliminated equals the dose. The names
follow ``TwoCompartmentPK``: ``intercompartmental_clearance`` and ``peripheral_volume`` are the
rapidly equilibrating peripheral compartment (Q2, V2); the ``deep_`` ones are the slowly
equilibrating one (Q3, V3). With Q3 = 0 the model is the two-compartment model. Oral doses get
bioavailability F and lag time t_lag (``dose``); IV doses and infusions go into ``central``.

An IV bolus D gives the sum of three exponentials ``C1(t) = D sum_i A_i exp(-lambda_i t)``,
where the lambda_i are the roots of the characteristic polynomial of the compartment matrix
(k10 = CL/V1, k12 = Q2/V1, k21 = Q2/V2, k13 = Q3/V1, k31 = Q3/V3)::

    lambda^3 - a2 lambda^2 + a1 lambda - a0 = 0
    a2 = k10 + k12 + k13 + k21 + k31
    a1 = k10 k21 + k10 k31 + k12 k31 + k13 k21 + k21 k31
    a0 = k10 k21 k31
    A_i = (k21 - lambda_i)(k31 - lambda_i) / (V1 prod_{j != i} (lambda_j - lambda_i))

(Gibaldi and Perrier, Pharmacokinetics, 2nd ed., 1982, ch. 2 and appendix; the tests check the
simulation against it to 1e-8, for IV bolus, infusion and oral dosing).

Closed form (``impulse_response``, ``step_response``; used by ``vht.simulate_closed_form`` and by
calibration in place of the ODE solver): the matrix exponential of the 4 x 4 rate matrix of the
equations above (``vht.network.linear_impulse_response``; a constant rate integrates it through
the exponential of the matrix augmented by the source column, ``linear_step_response``, into
any compartment, the depot included). The eigenvalues are the roots of the cubic above and the
absorption rate, where the textbook sum of exponentials divides by their differences; the
exponential of the matrix needs no roots and stays exact where rates coincide.

Default parameters: the typical values of propofol in adult volunteers of Schnider et al.,
"The influence of method of administration and covariates on the pharmacokinetics of propofol
in adult volunteers", Anesthesiology 1998;88:1170-1182, at the model's reference covariates
(53 years, 77 kg, 177 cm, lean body mass 59 kg), converted from L/min to L/h. Propofol is given
intravenously; the absorption parameters are not propofol's: ka is the illustrative
theophylline value of ``OneCompartmentPK``, kept so the organ has the same oral route as the
other PK organs.

| parameter | default | unit | source |
|---|---|---|---|
| ka | 1.593 | 1/h | illustrative (not propofol; see ``OneCompartmentPK``) |
| clearance | 113.4 | L/h | Schnider 1998: CL1 = 1.89 L/min |
| central_volume | 4.27 | L | Schnider 1998: V1 |
| intercompartmental_clearance | 77.4 | L/h | Schnider 1998: CL2 = 1.29 L/min at 53 years |
| peripheral_volume | 18.9 | L | Schnider 1998: V2 at 53 years |
| deep_intercompartmental_clearance | 50.16 | L/h | Schnider 1998: CL3 = 0.836 L/min |
| deep_peripheral_volume | 238.0 | L | Schnider 1998: V3 |
| bioavailability | 1.0 | 1 |  |
| lag_time | 0.0 | h |  |
"""

from __future__ import annotations

from typing import ClassVar

from jaxtyping import Array

import vht
from vht import Output, State, parameter
from vht.network import (
    Clearance,
    Depot,
    FirstOrderTransfer,
    Network,
    VolumeOfDistribution,
    linear_impulse_response,
    linear_step_response,
)

from ._dosing import oral_dose_routing

_POSITIVE = (1e-12, float("inf"))
_NON_NEGATIVE = (0.0, float("inf"))


class ThreeCompartmentPK(vht.AbstractOrgan):
    """Three-compartment PK with first-order absorption (see the module docstring)."""

    ka: Array = parameter(1.593, unit="1/h", bounds=_POSITIVE,
                          description="absorption rate constant")
    clearance: Array = parameter(113.4, unit="L/h", bounds=_POSITIVE,
                                 description="elimination clearance")
    central_volume: Array = parameter(4.27, unit="L", bounds=_POSITIVE)
    intercompartmental_clearance: Array = parameter(
        77.4, unit="L/h", bounds=_NON_NEGATIVE,
        description="distribution clearance to the rapid peripheral compartment")
    peripheral_volume: Array = parameter(18.9, unit="L", bounds=_POSITIVE,
                                         description="rapid peripheral compartment")
    deep_intercompartmental_clearance: Array = parameter(
        50.16, unit="L/h", bounds=_NON_NEGATIVE,
        description="distribution clearance to the slow (deep) peripheral compartment")
    deep_peripheral_volume: Array = parameter(238.0, unit="L", bounds=_POSITIVE,
                                              description="slow (deep) peripheral compartment")
    bioavailability: Array = parameter(1.0, unit="dimensionless", bounds=(0.0, 1.0))
    lag_time: Array = parameter(0.0, unit="h", bounds=(0.0, 48.0))

    states: ClassVar = (
        State("depot", "mg", lower=0.0, description="drug in the absorption depot (gut)"),
        State("central", "mg", lower=0.0, description="drug in the central compartment"),
        State("peripheral", "mg", lower=0.0,
              description="drug in the rapidly equilibrating peripheral compartment"),
        State("deep_peripheral", "mg", lower=0.0,
              description="drug in the slowly equilibrating peripheral compartment"),
    )
    outputs: ClassVar = (
        Output("concentration", "mg/L", "central (plasma) concentration"),
        Output("peripheral_concentration", "mg/L"),
        Output("deep_peripheral_concentration", "mg/L"),
    )
    time_unit: ClassVar = "h"

    def network(self) -> Network:
        return Network(
            compartments={"depot": Depot(),
                          "central": VolumeOfDistribution(self.central_volume),
                          "peripheral": VolumeOfDistribution(self.peripheral_volume),
                          "deep_peripheral": VolumeOfDistribution(self.deep_peripheral_volume)},
            conductances={"absorption": FirstOrderTransfer(self.ka),
                          "distribution": Clearance(self.intercompartmental_clearance),
                          "deep_distribution": Clearance(self.deep_intercompartmental_clearance),
                          "elimination": Clearance(self.clearance)},
            links=(("absorption", "depot", "central"),
                   ("distribution", "central", "peripheral"),
                   ("deep_distribution", "central", "deep_peripheral"),
                   ("elimination", "central", None)),
        )

    def rates(self, t, state, inputs):
        return self.network().rates(t, state)

    def observe(self, t, state):
        return {"concentration": state["central"] / self.central_volume,
                "peripheral_concentration": state["peripheral"] / self.peripheral_volume,
                "deep_peripheral_concentration":
                    state["deep_peripheral"] / self.deep_peripheral_volume}

    def dose(self, state, amount, time):
        return oral_dose_routing(self, state, amount, time)

    def impulse_response(self, elapsed, source):
        return linear_impulse_response(self, elapsed, source)

    def step_response(self, elapsed, source):
        return linear_step_response(self, elapsed, source)
