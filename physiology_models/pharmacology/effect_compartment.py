"""Effect compartment with a sigmoid Emax response (the PK/PD link model).

Horizon: minutes to weeks. Time unit of the organ: hours.

Equations (Sheiner, Stanski, Vozeh, Miller, Ham, Clin Pharmacol Ther 1979;25:358)::

    dCe/dt  = ke0 (Cp - Ce)                              Ce, Cp in mg/L
    effect  = Emax Ce^n / (EC50^n + Ce^n)                dimensionless fraction
    factor  = 1 + effect                                 multiplier for a target parameter

The plasma concentration Cp is an input (from a PK organ); the effect and the factor depend
only on the organ's own state Ce, so the organ can feed any other organ without creating an
algebraic loop (a hysteresis-free direct effect is the limit of large ke0). A negative Emax
gives an inhibitory drug (factor < 1).

Default parameters: illustrative (they are set per drug by the twin that uses the organ):

| parameter | default | unit | meaning |
|---|---|---|---|
| ke0 | 41.6 | 1/h | equilibration half-life ln 2 / ke0 = 1 min |
| emax | 1.0 | 1 | maximal fractional change |
| ec50 | 0.002 | mg/L | effect-site concentration at half-maximal effect |
| hill | 1.0 | 1 | sigmoidicity |
"""

from __future__ import annotations

from typing import ClassVar

import jax.numpy as jnp
from jaxtyping import Array

import vht
from vht import Input, Output, State, parameter

_POSITIVE = (1e-12, float("inf"))


class EffectCompartment(vht.AbstractOrgan):
    """Effect-site concentration and sigmoid Emax response (see the module docstring)."""

    ke0: Array = parameter(41.6, unit="1/h", bounds=_POSITIVE, description="equilibration rate")
    emax: Array = parameter(1.0, unit="dimensionless", bounds=(-1.0, 100.0),
                            description="maximal fractional effect")
    ec50: Array = parameter(0.002, unit="mg/L", bounds=_POSITIVE)
    hill: Array = parameter(1.0, unit="dimensionless", bounds=(0.1, 10.0))

    states: ClassVar = (State("effect_site_concentration", "mg/L", lower=0.0),)
    inputs: ClassVar = (Input("plasma_concentration", "mg/L", description="from a PK organ"),)
    outputs: ClassVar = (
        Output("effect", "dimensionless", "Emax Ce^n / (EC50^n + Ce^n)"),
        Output("factor", "dimensionless", "1 + effect"),
    )
    time_unit: ClassVar = "h"

    def rates(self, t, state, inputs):
        ce = state["effect_site_concentration"]
        return {"effect_site_concentration": self.ke0 * (inputs["plasma_concentration"] - ce)}

    def observe(self, t, state):
        # Round-off can leave Ce at -1e-18 after washout; a fractional power of it would be NaN.
        ce = jnp.maximum(state["effect_site_concentration"], 0.0)
        ratio = (ce / self.ec50) ** self.hill
        effect = self.emax * ratio / (1.0 + ratio)
        return {"effect": effect, "factor": 1.0 + effect}
