"""Beat-averaged (mean-flow) closed-loop circulation, consistent with ``ClosedLoopCirculation``.

Horizon: minutes to days. Every quantity is a mean over a heartbeat, so the solver takes steps
of seconds to minutes instead of resolving each beat; the twin is declared stiff (arterial and
pulmonary time constants of a fraction of a second next to venous ones of a minute).

The vessels, resistances, elastances and reflex inputs are those of ``ClosedLoopCirculation``
(same names, same default values). Each ventricle becomes a pump whose stroke volume follows
from the time-varying elastance model beat by beat: end-diastolic volume from the filling
pressure and the diastolic elastance, end-systolic volume from the ejection pressure and the
end-systolic elastance:

    SV   = eta P_fill / E_min - kappa P_eject / (E_max f_E)       (V0 cancels)
    Q    = HR / 60 * SV   (mL/s),  HR = 60 / (60 / HR_0 + dT)
    LV:  P_fill = pulmonary venous pressure,  P_eject = systemic arterial (mean) pressure
    RV:  P_fill = systemic venous pressure,   P_eject = pulmonary arterial (mean) pressure

The beat-averaging coefficients eta (diastolic filling: the fraction of the filling pressure
reached in the ventricle at end-diastole, below 1 because of the valve and finite diastole)
and kappa (end-systolic pressure over mean ejection pressure, above 1) come from the pulsatile
model's resting beat (``experiments.cardiovascular.derive_mean_flow_coefficients`` prints
them); they are part of the one default parameter set and are not tuned to any check. The
pump flow is made non-negative smoothly (a softplus of width 0.5 mL). Systolic and diastolic
pressures are estimated from the Windkessel pulse pressure PP = c_pp SV / C_sa with
SBP = MAP + a PP, DBP = MAP - (1 - a) PP (a and c_pp from the same pulsatile beat).

Each ventricle keeps its beat-averaged volume as a state, so that blood the heart gives up when
it fills less (after a hemorrhage) returns to the vessels and the six volumes conserve the
blood volume exactly. The ejection flow is the pump flow Q; the filling flow is Q plus a
relaxation of the ventricle's volume towards its beat-mean value within about a beat:

    q_fill  = Q + (V_mean - V) / tau_v,   q_eject = Q
    V_mean  = V0 + (EDV + ESV) / 2 = V0 + (eta P_fill / E_min + kappa P_eject / (E_max f_E)) / 2

(the pulsatile resting beat's mean volumes lie 0.500 and 0.498 of the way from ESV to EDV).

Equations otherwise as in ``ClosedLoopCirculation`` (vessels p = (V - V0) / C, flows
q = dp / R, dV/dt = inflow - outflow, hemorrhage out of the systemic arteries).

| parameter | default | unit | basis |
|---|---|---|---|
| (vessels, resistances, elastances, heart rate, blood volume) | | | as ClosedLoopCirculation |
| lv_filling_efficiency (eta_l) | 0.820 | 1 | pulsatile resting beat |
| lv_ejection_ratio (kappa_l) | 1.206 | 1 | pulsatile resting beat |
| rv_filling_efficiency (eta_r) | 0.901 | 1 | pulsatile resting beat |
| rv_ejection_ratio (kappa_r) | 1.433 | 1 | pulsatile resting beat |
| pulse_pressure_factor (c_pp) | 0.803 | 1 | pulsatile resting beat |
| systolic_fraction (a) | 0.497 | 1 | (SBP - MAP) / PP of the pulsatile resting beat |
| lv_unstressed_volume, rv_unstressed_volume | 10, 10 | mL | as ClosedLoopCirculation |
| ventricular_relaxation_time | 1.0 | s | about one beat |
"""

from __future__ import annotations

from typing import ClassVar

import jax.numpy as jnp
from jaxtyping import Array

import vht
from vht import Input, Output, State, parameter
from vht.network import AbstractConductance, Compliance, Network, Resistance, softplus

from .closed_loop_circulation import _POSITIVE, _VOLUME_ADVICE, FLUID_INPUTS, REFLEX_INPUTS

VESSELS = ("systemic_arteries", "systemic_veins", "pulmonary_arteries", "pulmonary_veins")
COMPARTMENTS = ("left_ventricle", *VESSELS[:2], "right_ventricle", *VESSELS[2:])
_PUMP_SMOOTHING = 0.5  # mL: width of the softplus that keeps a stroke volume non-negative


class _Pump(AbstractConductance):
    """Beat-averaged ventricle: flow from its filling reservoir to its outflow artery."""

    beats_per_second: Array
    filling_efficiency: Array
    ejection_ratio: Array
    elastance_min: Array
    elastance_max: Array

    def stroke_volume(self, filling_pressure, ejection_pressure):
        raw = (self.filling_efficiency * filling_pressure / self.elastance_min
               - self.ejection_ratio * ejection_pressure / self.elastance_max)
        return _PUMP_SMOOTHING * softplus(raw / _PUMP_SMOOTHING)

    def flow(self, t, upstream, downstream):
        return self.beats_per_second * self.stroke_volume(upstream, downstream)

    def mean_volume(self, unstressed_volume, filling_pressure, ejection_pressure):
        """V0 + (EDV + ESV) / 2 of the beat."""
        end_diastolic = self.filling_efficiency * filling_pressure / self.elastance_min
        end_systolic = self.ejection_ratio * ejection_pressure / self.elastance_max
        return unstressed_volume + 0.5 * (end_diastolic + end_systolic)


class MeanFlowCirculation(vht.AbstractOrgan):
    """Beat-averaged circulation (see the module docstring)."""

    heart_rate: Array = parameter(72.0, unit="1/min", bounds=(20.0, 250.0))
    lv_elastance_max: Array = parameter(2.5, unit="mmHg/mL", bounds=_POSITIVE)
    lv_elastance_min: Array = parameter(0.06, unit="mmHg/mL", bounds=_POSITIVE)
    rv_elastance_max: Array = parameter(0.55, unit="mmHg/mL", bounds=_POSITIVE)
    rv_elastance_min: Array = parameter(0.04, unit="mmHg/mL", bounds=_POSITIVE)
    systemic_arterial_compliance: Array = parameter(1.56, unit="mL/mmHg", bounds=_POSITIVE)
    systemic_arterial_unstressed_volume: Array = parameter(650.0, unit="mL", bounds=(0.0, 5000.0))
    systemic_venous_compliance: Array = parameter(175.0, unit="mL/mmHg", bounds=_POSITIVE)
    systemic_venous_unstressed_volume: Array = parameter(2994.0, unit="mL", bounds=(0.0, 8000.0))
    pulmonary_arterial_compliance: Array = parameter(4.0, unit="mL/mmHg", bounds=_POSITIVE)
    pulmonary_arterial_unstressed_volume: Array = parameter(90.0, unit="mL", bounds=(0.0, 2000.0))
    pulmonary_venous_compliance: Array = parameter(20.0, unit="mL/mmHg", bounds=_POSITIVE)
    pulmonary_venous_unstressed_volume: Array = parameter(270.0, unit="mL", bounds=(0.0, 2000.0))
    systemic_resistance: Array = parameter(0.94, unit="mmHg*s/mL", bounds=_POSITIVE)
    pulmonary_resistance: Array = parameter(0.07, unit="mmHg*s/mL", bounds=_POSITIVE)
    lv_filling_efficiency: Array = parameter(0.820, unit="dimensionless", bounds=(0.1, 1.5))
    lv_ejection_ratio: Array = parameter(1.206, unit="dimensionless", bounds=(0.5, 3.0))
    rv_filling_efficiency: Array = parameter(0.901, unit="dimensionless", bounds=(0.1, 1.5))
    rv_ejection_ratio: Array = parameter(1.433, unit="dimensionless", bounds=(0.5, 3.0))
    pulse_pressure_factor: Array = parameter(0.803, unit="dimensionless", bounds=(0.1, 2.0))
    systolic_fraction: Array = parameter(0.497, unit="dimensionless", bounds=(0.0, 1.0))
    lv_unstressed_volume: Array = parameter(10.0, unit="mL", bounds=(0.0, 200.0))
    rv_unstressed_volume: Array = parameter(10.0, unit="mL", bounds=(0.0, 200.0))
    ventricular_relaxation_time: Array = parameter(1.0, unit="s", bounds=(1e-3, 100.0))
    blood_volume: Array = parameter(5500.0, unit="mL", bounds=(500.0, 10000.0))
    hemorrhage_rate: Array = parameter(0.0, unit="mL/s", bounds=(0.0, 100.0))

    states: ClassVar = tuple(State(name, "mL", lower=0.0, advice=_VOLUME_ADVICE,
                                   description=f"blood volume of the {name.replace('_', ' ')}"
                                   + (" (beat mean)" if "ventricle" in name else ""))
                             for name in COMPARTMENTS)
    inputs: ClassVar = (
        Input("resistance_factor", "dimensionless", 1.0,
              "multiplies systemic resistance (vasoconstrictors > 1, vasodilators < 1)"),
    ) + REFLEX_INPUTS + FLUID_INPUTS
    outputs: ClassVar = (
        Output("mean_arterial_pressure", "mmHg"),
        Output("systolic_pressure", "mmHg", "MAP + a PP (Windkessel pulse pressure)"),
        Output("diastolic_pressure", "mmHg", "MAP - (1 - a) PP"),
        Output("cardiac_output", "L/min"),
        Output("stroke_volume", "mL", "left ventricle"),
        Output("heart_rate", "1/min"),
        Output("central_venous_pressure", "mmHg"),
        Output("pulmonary_arterial_pressure", "mmHg", "mean"),
        Output("pulmonary_venous_pressure", "mmHg", "mean (wedge pressure)"),
        Output("systemic_flow", "mL/s", "flow through the systemic resistance"),
        Output("blood_volume", "mL", "total volume in the six compartments"),
        Output("hemorrhage_flow", "mL/s", "blood lost (the hemorrhage rate)"),
    )
    stiffness: ClassVar = "stiff"
    time_unit: ClassVar = "s"
    feedthrough: ClassVar = True  # pressures and flows depend on the reflex inputs

    def _pumps(self, inputs):
        beats = 1.0 / (60.0 / self.heart_rate + inputs["heart_period_change"])
        left = _Pump(beats, self.lv_filling_efficiency, self.lv_ejection_ratio,
                     self.lv_elastance_min, self.lv_elastance_max * inputs["lv_elastance_factor"])
        right = _Pump(beats, self.rv_filling_efficiency, self.rv_ejection_ratio,
                      self.rv_elastance_min, self.rv_elastance_max * inputs["rv_elastance_factor"])
        return left, right

    def network(self, inputs) -> Network:
        """The vessels and resistances; the heart's links carry flows computed by ``flows``."""
        resistance = (self.systemic_resistance * inputs["resistance_factor"]
                      * inputs["reflex_resistance_factor"])
        return Network(
            compartments={
                "systemic_arteries": Compliance(self.systemic_arterial_compliance,
                                                self.systemic_arterial_unstressed_volume),
                "systemic_veins": Compliance(
                    self.systemic_venous_compliance,
                    self.systemic_venous_unstressed_volume
                    + inputs["venous_unstressed_volume_change"]),
                "pulmonary_arteries": Compliance(self.pulmonary_arterial_compliance,
                                                 self.pulmonary_arterial_unstressed_volume),
                "pulmonary_veins": Compliance(self.pulmonary_venous_compliance,
                                              self.pulmonary_venous_unstressed_volume),
            },
            conductances={"systemic": Resistance(resistance),
                          "pulmonary": Resistance(self.pulmonary_resistance)},
            links=(("systemic", "systemic_arteries", "systemic_veins"),
                   ("pulmonary", "pulmonary_arteries", "pulmonary_veins")),
        )

    # The heart's four links, added to the vessels' network: every flow is subtracted upstream
    # and added downstream, so the six volumes conserve blood exactly.
    HEART_LINKS: ClassVar = (("lv_fill", "pulmonary_veins", "left_ventricle"),
                             ("lv_eject", "left_ventricle", "systemic_arteries"),
                             ("rv_fill", "systemic_veins", "right_ventricle"),
                             ("rv_eject", "right_ventricle", "pulmonary_arteries"))

    def flows(self, t, state, inputs):
        """Pressures and every flow (mL/s) of the circulation."""
        network = self.network(inputs)
        p = network.potentials(t, {name: state[name] for name in VESSELS})
        flows = network.flows(t, p)
        left, right = self._pumps(inputs)
        tau = self.ventricular_relaxation_time
        for pump, fill, eject, ventricle, v0, p_fill, p_eject in (
                (left, "lv_fill", "lv_eject", "left_ventricle", self.lv_unstressed_volume,
                 p["pulmonary_veins"], p["systemic_arteries"]),
                (right, "rv_fill", "rv_eject", "right_ventricle", self.rv_unstressed_volume,
                 p["systemic_veins"], p["pulmonary_arteries"])):
            pumped = pump.flow(t, p_fill, p_eject)
            mean_volume = pump.mean_volume(v0, p_fill, p_eject)
            flows[eject] = pumped
            flows[fill] = pumped + (mean_volume - state[ventricle]) / tau
        return p, flows

    def rates(self, t, state, inputs):
        network = self.network(inputs)
        _, flows = self.flows(t, state, inputs)
        rates = {name: jnp.zeros(()) for name in COMPARTMENTS}
        for name, upstream, downstream in network.links + self.HEART_LINKS:
            rates[upstream] = rates[upstream] - flows[name]
            rates[downstream] = rates[downstream] + flows[name]
        rates["systemic_arteries"] = rates["systemic_arteries"] - self.hemorrhage_rate
        rates["systemic_veins"] = rates["systemic_veins"] - (inputs["capillary_filtration"]
                                                             + inputs["urine_flow"])
        return rates

    def observe(self, t, state, inputs):
        p, flows = self.flows(t, state, inputs)
        left, _ = self._pumps(inputs)
        stroke = left.stroke_volume(p["pulmonary_veins"], p["systemic_arteries"])
        pulse = self.pulse_pressure_factor * stroke / self.systemic_arterial_compliance
        mean = p["systemic_arteries"]
        return {
            "mean_arterial_pressure": mean,
            "systolic_pressure": mean + self.systolic_fraction * pulse,
            "diastolic_pressure": mean - (1.0 - self.systolic_fraction) * pulse,
            "cardiac_output": flows["lv_eject"] * 0.06,  # mL/s -> L/min
            "stroke_volume": stroke,
            "heart_rate": 60.0 * left.beats_per_second,
            "central_venous_pressure": p["systemic_veins"],
            "pulmonary_arterial_pressure": p["pulmonary_arteries"],
            "pulmonary_venous_pressure": p["pulmonary_veins"],
            "systemic_flow": flows["systemic"],
            "blood_volume": sum(state[name] for name in COMPARTMENTS),
            "hemorrhage_flow": self.hemorrhage_rate,
        }

    def initial_state(self):
        """Vessels at typical resting pressures; the systemic veins hold the rest."""
        volumes = {
            "left_ventricle": jnp.asarray(94.0),
            "right_ventricle": jnp.asarray(90.0),
            "systemic_arteries": self.systemic_arterial_unstressed_volume
            + self.systemic_arterial_compliance * 93.0,
            "pulmonary_arteries": self.pulmonary_arterial_unstressed_volume
            + self.pulmonary_arterial_compliance * 15.0,
            "pulmonary_veins": self.pulmonary_venous_unstressed_volume
            + self.pulmonary_venous_compliance * 9.0,
        }
        volumes["systemic_veins"] = self.blood_volume - sum(volumes.values())
        return {name: jnp.asarray(volumes[name]) for name in COMPARTMENTS}

    def conserved(self):
        return (COMPARTMENTS,)
