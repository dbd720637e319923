"""Kidney: glomerular filtration with autoregulation and pressure diuresis.

Horizon: hours to days. Time unit of the organ: minutes.

Equations (pressure P = mean arterial pressure in mmHg; flows in mL/min):

    GFR   = GFR_0 s(P) / s(P_0),   s(P) = 1 / (1 + exp(-(P - P_half) / w))
            (flat over the autoregulated range, falling steeply below about 70 mmHg)
    urine = U_0 (g(P) / g(P_0))^n,  g(P) = w_u softplus((P - P_u) / w_u)
            (the acute renal output curve: no urine below about P_u, a steep rise above)
    d(urine volume)/dt = urine

The urine flow leaves the blood (connect it to a circulation's ``urine_flow`` input). At the
reference pressure P_0 the kidney produces GFR_0 and U_0, the Pulse targets 180 L/day and
1.5 L/day (Guyton and Hall), so those two resting values are calibrated, not predicted; what the
model adds is their response to pressure.

| parameter | default | unit | source |
|---|---|---|---|
| filtration_rate_rest (GFR_0) | 125 | mL/min | 180 L/day (Guyton and Hall, ch. 26) |
| urine_flow_rest (U_0) | 1.042 | mL/min | 1.5 L/day (Guyton and Hall, ch. 26) |
| reference_pressure (P_0) | 93.5 | mmHg | resting MAP of the default circulation |
| autoregulation_half_pressure (P_half) | 60 | mmHg | GFR held down to about 75 mmHg |
| autoregulation_width (w) | 5 | mmHg | steep loss of filtration below the range |
| diuresis_threshold (P_u) | 50 | mmHg | no urine near 50 mmHg (Guyton and Hall, Fig. 19-2) |
| diuresis_exponent (n) | 2.5 | 1 | about 7-fold more urine at 150 mmHg than at 100 (same figure) |
| diuresis_width (w_u) | 5 | mmHg | smooth threshold |
"""

from __future__ import annotations

from typing import ClassVar

import jax
import jax.numpy as jnp
from jaxtyping import Array

import vht
from vht import Input, Output, State, parameter
from vht.network import softplus

_POSITIVE = (1e-9, float("inf"))


class Kidney(vht.AbstractOrgan):
    """Glomerular filtration and pressure diuresis (see the module docstring)."""

    filtration_rate_rest: Array = parameter(125.0, unit="mL/min", bounds=_POSITIVE)
    urine_flow_rest: Array = parameter(1.042, unit="mL/min", bounds=_POSITIVE)
    reference_pressure: Array = parameter(93.5, unit="mmHg", bounds=(20.0, 200.0))
    autoregulation_half_pressure: Array = parameter(60.0, unit="mmHg", bounds=(0.0, 200.0))
    autoregulation_width: Array = parameter(5.0, unit="mmHg", bounds=_POSITIVE)
    diuresis_threshold: Array = parameter(50.0, unit="mmHg", bounds=(0.0, 200.0))
    diuresis_exponent: Array = parameter(2.5, unit="dimensionless", bounds=(0.1, 10.0))
    diuresis_width: Array = parameter(5.0, unit="mmHg", bounds=_POSITIVE)

    states: ClassVar = (State("urine_volume", "mL", lower=0.0, description="urine produced"),)
    inputs: ClassVar = (Input("arterial_pressure", "mmHg", description="mean arterial pressure"),)
    outputs: ClassVar = (
        Output("urine_flow", "mL/min"),
        Output("glomerular_filtration_rate", "mL/min"),
    )
    time_unit: ClassVar = "min"
    feedthrough: ClassVar = True

    def filtration_rate(self, pressure: Array) -> Array:
        def s(p):
            return jax.nn.sigmoid((p - self.autoregulation_half_pressure)
                                  / self.autoregulation_width)
        return self.filtration_rate_rest * s(pressure) / s(self.reference_pressure)

    def urine_flow(self, pressure: Array) -> Array:
        def g(p):
            w = self.diuresis_width
            return w * softplus((p - self.diuresis_threshold) / w)
        return self.urine_flow_rest * (g(pressure) / g(self.reference_pressure)) ** (
            self.diuresis_exponent)

    def rates(self, t, state, inputs):
        return {"urine_volume": self.urine_flow(inputs["arterial_pressure"])}

    def observe(self, t, state, inputs):
        pressure = inputs["arterial_pressure"]
        return {"urine_flow": self.urine_flow(pressure),
                "glomerular_filtration_rate": self.filtration_rate(pressure)}

    def initial_state(self):
        return {"urine_volume": jnp.asarray(0.0)}

    def held_states(self):
        return ("urine_volume",)  # a running total: no steady value
