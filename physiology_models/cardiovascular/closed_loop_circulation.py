"""Pulsatile closed-loop circulation: two time-varying-elastance ventricles, four valves,
systemic and pulmonary arteries and veins.

Horizon: a heartbeat up to about 30 minutes (every beat is resolved; ``MeanFlowCirculation``
serves hours to days with the same parameters).

Structure (a six-compartment lumped model in the tradition of Suga and Sagawa's time-varying
elastance and the Windkessel; cf. Smith et al. 2004, Med Eng Phys 26:131, for a model of the
same structure)::

    pulmonary veins --mitral--> LV --aortic--> systemic arteries --R_sys--> systemic veins
          ^                                                                      |
          |                                                                  tricuspid
       R_pul                                                                     v
    pulmonary arteries <--------------- pulmonary valve ---------------------- RV

Equations (time t in s, volumes V in mL, pressures p in mmHg, flows q in mL/s):

    heart period T = 60 / HR + dT          (dT: the input heart_period_change, from a reflex)
    phase        d(c, s)/dt = 2 pi / T (-s, c)   (a unit oscillator: c = cos 2 pi phi,
                                                   s = sin 2 pi phi, phi the beat phase)
    activation   e = (exp(-k sin^2(pi (phi - t_peak / T))) - exp(-k)) / (1 - exp(-k)),
                 k = T^2 / (2 pi^2 sigma^2)
    ventricles   p = E(t) (V - V0),  E = E_min + (E_max f_E - E_min) e  (f_E: reflex factor)
    vessels      p = (V - V0) / C;  systemic veins: V0 + dV0 (dV0: reflex venous tone)
    resistances  q = (p_up - p_down) / R;  systemic R_sys x resistance_factor x
                 reflex_resistance_factor
    valves       ideal: q = max(dp, 0) / R;  smooth: q = softplus(s dp) / (s R)
    volumes      dV/dt = inflow - outflow (a conserved-flow network: total volume is exact)
    hemorrhage   a volume flow out of the systemic arteries (a parameter, stepped by scenarios)
    monitor      two first-order lags (tau each) average arterial pressure and aortic flow
                 into the beat-averaged mean arterial pressure and cardiac output

The activation is a periodic Gaussian pulse of width sigma centred at t_peak in every beat:
infinitely differentiable and exactly periodic (its minimum is 0, its peak 1). The beat phase
is carried by a unit oscillator rather than by t / T, so that a heart period that changes
(a baroreflex) changes the beat rate smoothly instead of jumping the phase. The only non-smooth
terms are the ideal valves; with ``valves="smooth"`` the whole vector field is smooth and
fixed-step solvers keep their theoretical order (the convergence tests show both).

The reflex inputs (heart period change, reflex resistance factor, elastance changes, venous
unstressed volume change) default to "no reflex"; ``Baroreflex`` drives them.

Parameters (defaults for a resting adult; units as declared on each field):

| parameter | default | unit | basis |
|---|---|---|---|
| heart_rate | 72 | 1/min | resting adult (60-100/min) |
| lv_elastance_max | 2.5 | mmHg/mL | end-systolic elastance ~2-3 mmHg/mL (Suga 1973) |
| lv_elastance_min | 0.06 | mmHg/mL | LVEDP ~7 mmHg at EDV ~130 mL |
| lv_unstressed_volume | 10 | mL |  |
| rv_elastance_max | 0.55 | mmHg/mL | RV systolic ~25 mmHg at ESV ~55 mL |
| rv_elastance_min | 0.04 | mmHg/mL | RVEDP ~5 mmHg at EDV ~130 mL |
| rv_unstressed_volume | 10 | mL |  |
| activation_peak_time | 0.28 | s | peak systolic elastance ~0.3 s after onset |
| activation_width | 0.085 | s | systole ~0.3 s |
| systemic_arterial_compliance | 1.56 | mL/mmHg | stroke volume / pulse pressure ~78/40 |
| systemic_arterial_unstressed_volume | 650 | mL | arteries hold ~15 % of blood volume |
| systemic_venous_compliance | 175 | mL/mmHg | 2.5 mL/mmHg/kg (Magder 1998; Rothe 1983: 1-3) |
| systemic_venous_unstressed_volume | 2994 | mL | set for MAP 93.5 mmHg at 5.5 L blood volume |
| pulmonary_arterial_compliance | 4.0 | mL/mmHg |  |
| pulmonary_arterial_unstressed_volume | 90 | mL |  |
| pulmonary_venous_compliance | 20 | mL/mmHg | includes the left atrium |
| pulmonary_venous_unstressed_volume | 270 | mL |  |
| systemic_resistance | 0.94 | mmHg s/mL | (MAP - CVP) / CO = (93 - 5.6) / 93 |
| pulmonary_resistance | 0.07 | mmHg s/mL | (mPAP - PCWP) / CO ~ (15 - 8.5) / 93 |
| valve_resistance | 0.005 | mmHg s/mL | all four valves |
| valve_sharpness | 5 | 1/mmHg | smooth valves only: transition width 0.2 mmHg |
| monitor_time_constant | 2.0 | s | each of two averaging stages |
| blood_volume | 5500 | mL | Pulse reference 5510 mL (Guyton and Hall) |
| hemorrhage_rate | 0 | mL/s | scenario-driven |

The values are chosen within textbook ranges (Guyton and Hall, Textbook of Medical Physiology;
Klabunde, Cardiovascular Physiology Concepts) to give a resting adult; they are not fitted to
one data set. ``experiments.cardiovascular.validation_table`` scores the resting state against
the Pulse Physiology Engine's literature targets (docs: Circulation validation).
"""

from __future__ import annotations

from typing import ClassVar

import equinox as eqx
import jax.numpy as jnp
from jaxtyping import Array

import vht
from vht import Input, Output, State, parameter
from vht.network import Compliance, IdealValve, Network, Resistance, SmoothValve

_POSITIVE = (1e-9, float("inf"))
_VOLUME_ADVICE = ("A compartment's volume fell below zero: the hemorrhage removed more blood than "
                  "the circulation holds; lower the hemorrhage rate or shorten it, or replace "
                  "volume with an infusion.")
COMPARTMENTS = ("left_ventricle", "systemic_arteries", "systemic_veins", "right_ventricle",
                "pulmonary_arteries", "pulmonary_veins")

# The reflex inputs shared by both circulations (see Baroreflex for their source).
REFLEX_INPUTS = (
    Input("heart_period_change", "s", 0.0, "added to the heart period 60 / HR (reflex)"),
    Input("reflex_resistance_factor", "dimensionless", 1.0,
          "multiplies systemic resistance (sympathetic vasoconstriction)"),
    Input("lv_elastance_factor", "dimensionless", 1.0, "multiplies LV end-systolic elastance"),
    Input("rv_elastance_factor", "dimensionless", 1.0, "multiplies RV end-systolic elastance"),
    Input("venous_unstressed_volume_change", "mL", 0.0,
          "added to the systemic venous unstressed volume (venous tone)"),
)


# Volume leaving the blood for the interstitium and the urine (from fluid and kidney organs);
# they enter the rates only, so a circulation that feeds those organs makes no algebraic loop.
FLUID_INPUTS = (
    Input("capillary_filtration", "mL/s", 0.0,
          "net flow from plasma to interstitium (filtration minus lymph)", affects_outputs=False,
          breaks_conservation=True),
    Input("urine_flow", "mL/s", 0.0, "urine production", affects_outputs=False,
          breaks_conservation=True),
)


class _Ventricle(eqx.Module):
    """Time-varying elastance chamber: p = E(t) (V - V0)."""

    elastance_max: Array
    elastance_min: Array
    unstressed_volume: Array
    activation: Array

    def potential(self, t, content):
        elastance = self.elastance_min + (self.elastance_max - self.elastance_min) * self.activation
        return elastance * (content - self.unstressed_volume)


class ClosedLoopCirculation(vht.AbstractOrgan):
    """Pulsatile closed-loop circulation with valves (see the module docstring)."""

    heart_rate: Array = parameter(72.0, unit="1/min", bounds=(20.0, 250.0),
                                  description="heart rate without reflex")
    lv_elastance_max: Array = parameter(2.5, unit="mmHg/mL", bounds=_POSITIVE)
    lv_elastance_min: Array = parameter(0.06, unit="mmHg/mL", bounds=_POSITIVE)
    lv_unstressed_volume: Array = parameter(10.0, unit="mL", bounds=(0.0, 200.0))
    rv_elastance_max: Array = parameter(0.55, unit="mmHg/mL", bounds=_POSITIVE)
    rv_elastance_min: Array = parameter(0.04, unit="mmHg/mL", bounds=_POSITIVE)
    rv_unstressed_volume: Array = parameter(10.0, unit="mL", bounds=(0.0, 200.0))
    activation_peak_time: Array = parameter(0.28, unit="s", bounds=(0.05, 1.0))
    activation_width: Array = parameter(0.085, unit="s", bounds=(0.01, 0.3))
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
    valve_resistance: Array = parameter(0.005, unit="mmHg*s/mL", bounds=_POSITIVE)
    valve_sharpness: Array = parameter(5.0, unit="1/mmHg", bounds=_POSITIVE)
    monitor_time_constant: Array = parameter(2.0, unit="s", bounds=_POSITIVE)
    blood_volume: Array = parameter(5500.0, unit="mL", bounds=(500.0, 10000.0))
    hemorrhage_rate: Array = parameter(0.0, unit="mL/s", bounds=(0.0, 100.0))
    valves: str = eqx.field(static=True, default="smooth")

    states: ClassVar = tuple(
        State(name, "mL", lower=0.0, advice=_VOLUME_ADVICE, description=f"blood volume of the "
              f"{name.replace('_', ' ')}") for name in COMPARTMENTS
    ) + (
        State("pressure_average_1", "mmHg", 93.0, description="first monitor stage"),
        State("pressure_average_2", "mmHg", 93.0, description="mean arterial pressure"),
        State("flow_average_1", "mL/s", 93.0, description="first monitor stage"),
        State("flow_average_2", "mL/s", 93.0, description="cardiac output"),
        State("phase_cos", "dimensionless", 1.0, description="cos of the beat phase"),
        State("phase_sin", "dimensionless", 0.0, description="sin of the beat phase"),
    )
    inputs: ClassVar = (
        Input("resistance_factor", "dimensionless", 1.0,
              "multiplies systemic resistance (vasoconstrictors > 1, vasodilators < 1)"),
    ) + REFLEX_INPUTS + FLUID_INPUTS
    outputs: ClassVar = (
        Output("arterial_pressure", "mmHg", "instantaneous systemic arterial pressure"),
        Output("mean_arterial_pressure", "mmHg", "beat-averaged arterial pressure (monitor)"),
        Output("cardiac_output", "L/min", "beat-averaged aortic flow (monitor)"),
        Output("left_ventricular_pressure", "mmHg"),
        Output("right_ventricular_pressure", "mmHg"),
        Output("central_venous_pressure", "mmHg", "systemic venous (right atrial) pressure"),
        Output("pulmonary_arterial_pressure", "mmHg"),
        Output("pulmonary_venous_pressure", "mmHg", "left atrial / wedge pressure"),
        Output("aortic_flow", "mL/s", "instantaneous flow through the aortic valve"),
        Output("heart_rate", "1/min", "60 / heart period, reflex included"),
        Output("blood_volume", "mL", "total volume in the six compartments"),
        Output("hemorrhage_flow", "mL/s", "blood lost (the hemorrhage rate)"),
    )
    stiffness: ClassVar = "nonstiff"
    time_unit: ClassVar = "s"
    feedthrough: ClassVar = True  # pressures depend on the reflex's elastance and venous tone

    def __check_init__(self):
        if self.valves not in ("smooth", "ideal"):
            raise ValueError(f"valves must be 'smooth' or 'ideal', not {self.valves!r}")

    def period(self) -> Array:
        """The heart period without reflex (s); ``steady_state`` shoots over it."""
        return 60.0 / self.heart_rate

    def activation(self, state, period: Array) -> Array:
        """Normalised ventricular activation in [0, 1] at the oscillator's phase."""
        radius = jnp.sqrt(state["phase_cos"] ** 2 + state["phase_sin"] ** 2)
        cos_phase, sin_phase = state["phase_cos"] / radius, state["phase_sin"] / radius
        shift = 2.0 * jnp.pi * self.activation_peak_time / period
        # sin^2(pi (phi - phi_peak)) = (1 - cos(2 pi phi - shift)) / 2
        sin_squared = 0.5 * (1.0 - (cos_phase * jnp.cos(shift) + sin_phase * jnp.sin(shift)))
        k = period**2 / (2.0 * jnp.pi**2 * self.activation_width**2)
        floor = jnp.exp(-k)
        return (jnp.exp(-k * sin_squared) - floor) / (1.0 - floor)

    def network(self, state, inputs=None) -> Network:
        inputs = {i.name: i.default for i in self.inputs} | dict(inputs or {})
        period = self.period() + inputs["heart_period_change"]
        e = self.activation(state, period)
        valve = (SmoothValve(self.valve_resistance, self.valve_sharpness)
                 if self.valves == "smooth" else IdealValve(self.valve_resistance))
        resistance = (self.systemic_resistance * inputs["resistance_factor"]
                      * inputs["reflex_resistance_factor"])
        return Network(
            compartments={
                "left_ventricle": _Ventricle(self.lv_elastance_max * inputs["lv_elastance_factor"],
                                             self.lv_elastance_min, self.lv_unstressed_volume, e),
                "systemic_arteries": Compliance(self.systemic_arterial_compliance,
                                                self.systemic_arterial_unstressed_volume),
                "systemic_veins": Compliance(
                    self.systemic_venous_compliance,
                    self.systemic_venous_unstressed_volume
                    + inputs["venous_unstressed_volume_change"]),
                "right_ventricle": _Ventricle(self.rv_elastance_max * inputs["rv_elastance_factor"],
                                              self.rv_elastance_min, self.rv_unstressed_volume, e),
                "pulmonary_arteries": Compliance(self.pulmonary_arterial_compliance,
                                                 self.pulmonary_arterial_unstressed_volume),
                "pulmonary_veins": Compliance(self.pulmonary_venous_compliance,
                                              self.pulmonary_venous_unstressed_volume),
            },
            conductances={
                "mitral": valve, "aortic": valve, "tricuspid": valve, "pulmonary_valve": valve,
                "systemic": Resistance(resistance),
                "pulmonary": Resistance(self.pulmonary_resistance),
            },
            links=(
                ("mitral", "pulmonary_veins", "left_ventricle"),
                ("aortic", "left_ventricle", "systemic_arteries"),
                ("systemic", "systemic_arteries", "systemic_veins"),
                ("tricuspid", "systemic_veins", "right_ventricle"),
                ("pulmonary_valve", "right_ventricle", "pulmonary_arteries"),
                ("pulmonary", "pulmonary_arteries", "pulmonary_veins"),
            ),
        )

    def rates(self, t, state, inputs):
        network = self.network(state, inputs)
        volumes = {name: state[name] for name in COMPARTMENTS}
        pressures = network.potentials(t, volumes)
        flows = network.flows(t, pressures)
        dvolume = network.balance(flows, {
            "systemic_arteries": -self.hemorrhage_rate,
            "systemic_veins": -(inputs["capillary_filtration"] + inputs["urine_flow"])})
        tau = self.monitor_time_constant
        arterial = pressures["systemic_arteries"]
        omega = 2.0 * jnp.pi / (self.period() + inputs["heart_period_change"])
        return {
            **dvolume,
            "pressure_average_1": (arterial - state["pressure_average_1"]) / tau,
            "pressure_average_2": (state["pressure_average_1"] - state["pressure_average_2"]) / tau,
            "flow_average_1": (flows["aortic"] - state["flow_average_1"]) / tau,
            "flow_average_2": (state["flow_average_1"] - state["flow_average_2"]) / tau,
            "phase_cos": -omega * state["phase_sin"],
            "phase_sin": omega * state["phase_cos"],
        }

    def observe(self, t, state, inputs):
        network = self.network(state, inputs)
        volumes = {name: state[name] for name in COMPARTMENTS}
        p = network.potentials(t, volumes)
        return {
            "arterial_pressure": p["systemic_arteries"],
            "mean_arterial_pressure": state["pressure_average_2"],
            "cardiac_output": state["flow_average_2"] * 0.06,  # mL/s -> L/min
            "left_ventricular_pressure": p["left_ventricle"],
            "right_ventricular_pressure": p["right_ventricle"],
            "central_venous_pressure": p["systemic_veins"],
            "pulmonary_arterial_pressure": p["pulmonary_arteries"],
            "pulmonary_venous_pressure": p["pulmonary_veins"],
            "aortic_flow": network.flows(t, p)["aortic"],
            "heart_rate": 60.0 / (self.period() + inputs["heart_period_change"]),
            "blood_volume": sum(state[name] for name in COMPARTMENTS),
            "hemorrhage_flow": self.hemorrhage_rate,
        }

    def initial_state(self):
        """Vessels at typical resting pressures, ventricles near end-diastole, and the rest of
        the blood volume in the systemic veins (``steady_state`` then finds the beating state)."""
        volumes = {
            "left_ventricle": jnp.asarray(120.0),
            "systemic_arteries": self.systemic_arterial_unstressed_volume
            + self.systemic_arterial_compliance * 90.0,
            "right_ventricle": jnp.asarray(130.0),
            "pulmonary_arteries": self.pulmonary_arterial_unstressed_volume
            + self.pulmonary_arterial_compliance * 15.0,
            "pulmonary_veins": self.pulmonary_venous_unstressed_volume
            + self.pulmonary_venous_compliance * 8.0,
        }
        volumes["systemic_veins"] = self.blood_volume - sum(volumes.values())
        return {
            **volumes,
            "pressure_average_1": jnp.asarray(93.0),
            "pressure_average_2": jnp.asarray(93.0),
            "flow_average_1": jnp.asarray(93.0),
            "flow_average_2": jnp.asarray(93.0),
            "phase_cos": jnp.asarray(1.0),
            "phase_sin": jnp.asarray(0.0),
        }

    def conserved(self):
        return (COMPARTMENTS,)

    def held_states(self):
        return ("phase_cos", "phase_sin")
