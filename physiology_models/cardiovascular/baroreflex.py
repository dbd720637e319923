"""Arterial (carotid sinus) baroreflex after Ursino (1998): heart period, contractility,
peripheral resistance and venous tone.

Source: M. Ursino, "Interaction between carotid baroregulation and the pulsating heart: a
mathematical model", Am J Physiol Heart Circ Physiol 275:H1733-H1747, 1998 (equations and
parameter values of its Table 2; the values below agree with independent transcriptions of
that table).

Horizon: seconds to days; the reflex's own dynamics settle within about a minute.

Equations (t in s, pressure P in mmHg, firing rates f in spikes/s):

    afferent (lead-lag)  tau_p dPt/dt = P + tau_z dP/dt - Pt
                          carried as w = tau_p Pt - tau_z P:  dw/dt = P - Pt
    carotid sinus         f_cs = (f_min + f_max exp((Pt - P_n)/k_a)) / (1 + exp((Pt - P_n)/k_a))
    sympathetic           f_es = f_es_inf + (f_es_0 - f_es_inf) exp(-k_es f_cs)
    vagal                 f_ev = (f_ev_0 + f_ev_inf exp((f_cs - f_cs_0)/k_ev))
                                 / (1 + exp((f_cs - f_cs_0)/k_ev))
    sympathetic drive     s = ln(f_es - f_es_min + 1)  (zero below f_es_min; here a softplus of
                          sharpness 10 per spikes/s replaces the kink, changing s by < 0.07)
    effectors             d(d_theta)/dt = (G_theta s(t - D_theta) - d_theta) / tau_theta
                          (heart period, vagal part: G_Tv f_ev(t - D_Tv) instead of s)
    pure delays           s(t - D) is replaced by the output of a chain of 3 first-order stages
                          of time constant D / 3 (an Erlang distributed delay with the same
                          mean delay D; diffrax has no delay equations). The test
                          tests/test_baroreflex.py compares its step response with the exact
                          delayed one.

Ursino's model splits the systemic circulation into splanchnic (sp) and extrasplanchnic (ep)
beds. This organ keeps his effectors and reports them to a circulation with one systemic bed as
changes from their values at a reference pressure P_ref (the resting mean arterial pressure of
the circulation it drives), so that at P = P_ref the reflex changes nothing:

| output | meaning |
|---|---|
| heart_period_change | (dT_s + dT_v) - value at P_ref, in s |
| reflex_resistance_factor | R(t) / R(P_ref), R the parallel combination of R_sp and R_ep |
| lv_elastance_factor, rv_elastance_factor | E_max(t) / E_max(P_ref) |
| venous_unstressed_volume_change | (dV_u,sv + dV_u,ev) - value at P_ref, in mL |
| heart_rate | 60 / (60 / resting_heart_rate + heart_period_change) |

Parameters (Ursino 1998, Table 2; per effector: gain G, time constant tau, pure delay D, and the
value theta_0 without sympathetic drive):

| parameter | value | unit |
|---|---|---|
| tau_p, tau_z | 2.076, 6.37 | s |
| f_min, f_max | 2.52, 47.78 | spikes/s |
| P_n, k_a | 92, 11.758 | mmHg |
| f_es_inf, f_es_0, f_es_min, k_es | 2.10, 16.11, 2.66, 0.0675 | spikes/s, spikes/s, spikes/s, s |
| f_ev_0, f_ev_inf, f_cs_0, k_ev | 3.2, 6.3, 25, 7.06 | spikes/s |
| E_max,lv: G, tau, D, theta_0 | 0.475 mmHg/mL, 8 s, 2 s, 2.392 mmHg/mL | |
| E_max,rv: G, tau, D, theta_0 | 0.282 mmHg/mL, 8 s, 2 s, 1.412 mmHg/mL | |
| R_sp: G, tau, D, theta_0 | 0.695 mmHg s/mL, 6 s, 2 s, 2.49 mmHg s/mL | |
| R_ep: G, tau, D, theta_0 | 0.53 mmHg s/mL, 6 s, 2 s, 0.78 mmHg s/mL | |
| V_u,sv: G, tau, D, theta_0 | -265.4 mL, 20 s, 5 s, 1435.4 mL | |
| V_u,ev: G, tau, D, theta_0 | -132.5 mL, 20 s, 5 s, 1537 mL | |
| T_s: G, tau, D | -0.13 s, 2 s, 2 s | |
| T_v: G, tau, D | 0.09 s/(spikes/s), 1.5 s, 0.2 s | |
| P_ref | 93.5 mmHg | resting MAP of the default ClosedLoopCirculation |
| resting_heart_rate | 72 /min | heart rate at P_ref (that circulation's) |

Note: at maximal stimulation (f_cs -> f_min) these constants shorten the heart period by at most
about 0.32 s from Ursino's resting 0.87 s, so the reflex alone raises heart rate to about
110/min; the tachycardia of severe hemorrhage needs mechanisms this reflex does not have.
"""

from __future__ import annotations

from typing import ClassVar

import jax
import jax.numpy as jnp
from jaxtyping import Array

import vht
from vht import Input, Output, State, parameter

CHAIN_STAGES = 3
_SYMPATHETIC_SHARPNESS = 10.0  # 1/(spikes/s): softplus in place of Ursino's threshold kink

# effector name -> (chain feeding it, theta_0 parameter or None)
_EFFECTORS = ("lv_elastance", "rv_elastance", "splanchnic_resistance",
              "extrasplanchnic_resistance", "splanchnic_venous_volume",
              "extrasplanchnic_venous_volume", "sympathetic_period", "vagal_period")
_CHAINS = {"short": "sympathetic, 2 s", "long": "sympathetic, 5 s", "vagal": "vagal, 0.2 s"}


def reflex_connections(circulation: str = "circulation", reflex: str = "reflex",
                       pressure: str = "mean_arterial_pressure") -> list[tuple[str, str]]:
    """The connections between a circulation and a ``Baroreflex``: the reflex reads the
    circulation's ``pressure`` output and drives its five reflex inputs."""
    outputs = ("heart_period_change", "reflex_resistance_factor", "lv_elastance_factor",
               "rv_elastance_factor", "venous_unstressed_volume_change")
    return ([(f"{reflex}.{name}", f"{circulation}.{name}") for name in outputs]
            + [(f"{circulation}.{pressure}", f"{reflex}.arterial_pressure")])


def erlang_chain_rates(signal: Array, stages: tuple[Array, ...], delay: Array) -> tuple:
    """Rates of a chain of first-order stages of time constant delay / n: its last stage is
    ``signal`` delayed by ``delay`` on average (an Erlang-distributed delay of shape n)."""
    rate = len(stages) / delay
    upstream, out = signal, []
    for stage in stages:
        out.append(rate * (upstream - stage))
        upstream = stage
    return tuple(out)


def _chain_states():
    # the sympathetic chains carry the (dimensionless) log drive, the vagal one a firing rate
    units = {"short": "dimensionless", "long": "dimensionless", "vagal": "1/s"}
    return tuple(State(f"{chain}_delay_{k + 1}", units[chain], description=f"stage {k + 1} of "
                       f"the {label} delay chain") for chain, label in _CHAINS.items()
                 for k in range(CHAIN_STAGES))


class Baroreflex(vht.AbstractOrgan):
    """Ursino (1998) carotid baroreflex (see the module docstring)."""

    tau_p: Array = parameter(2.076, unit="s", bounds=(1e-3, 100.0))
    tau_z: Array = parameter(6.37, unit="s", bounds=(0.0, 100.0))
    f_min: Array = parameter(2.52, unit="1/s")
    f_max: Array = parameter(47.78, unit="1/s")
    set_point: Array = parameter(92.0, unit="mmHg", description="P_n")
    slope: Array = parameter(11.758, unit="mmHg", bounds=(1e-3, 100.0), description="k_a")
    f_es_inf: Array = parameter(2.10, unit="1/s")
    f_es_0: Array = parameter(16.11, unit="1/s")
    f_es_min: Array = parameter(2.66, unit="1/s")
    k_es: Array = parameter(0.0675, unit="s")
    f_ev_0: Array = parameter(3.2, unit="1/s")
    f_ev_inf: Array = parameter(6.3, unit="1/s")
    f_cs_0: Array = parameter(25.0, unit="1/s")
    k_ev: Array = parameter(7.06, unit="1/s", bounds=(1e-3, 100.0))
    gain_lv_elastance: Array = parameter(0.475, unit="mmHg/mL")
    gain_rv_elastance: Array = parameter(0.282, unit="mmHg/mL")
    gain_splanchnic_resistance: Array = parameter(0.695, unit="mmHg*s/mL")
    gain_extrasplanchnic_resistance: Array = parameter(0.53, unit="mmHg*s/mL")
    gain_splanchnic_venous_volume: Array = parameter(-265.4, unit="mL")
    gain_extrasplanchnic_venous_volume: Array = parameter(-132.5, unit="mL")
    gain_sympathetic_period: Array = parameter(-0.13, unit="s")
    gain_vagal_period: Array = parameter(0.09, unit="s**2", description="s per spikes/s")
    tau_elastance: Array = parameter(8.0, unit="s", bounds=(1e-3, 1e3))
    tau_resistance: Array = parameter(6.0, unit="s", bounds=(1e-3, 1e3))
    tau_venous_volume: Array = parameter(20.0, unit="s", bounds=(1e-3, 1e3))
    tau_sympathetic_period: Array = parameter(2.0, unit="s", bounds=(1e-3, 1e3))
    tau_vagal_period: Array = parameter(1.5, unit="s", bounds=(1e-3, 1e3))
    delay_short: Array = parameter(2.0, unit="s", bounds=(1e-3, 60.0),
                                   description="elastances, resistances, sympathetic period")
    delay_long: Array = parameter(5.0, unit="s", bounds=(1e-3, 60.0),
                                  description="venous unstressed volumes")
    delay_vagal: Array = parameter(0.2, unit="s", bounds=(1e-3, 60.0))
    lv_elastance_0: Array = parameter(2.392, unit="mmHg/mL", bounds=(1e-3, 100.0))
    rv_elastance_0: Array = parameter(1.412, unit="mmHg/mL", bounds=(1e-3, 100.0))
    splanchnic_resistance_0: Array = parameter(2.49, unit="mmHg*s/mL", bounds=(1e-3, 100.0))
    extrasplanchnic_resistance_0: Array = parameter(0.78, unit="mmHg*s/mL", bounds=(1e-3, 100.0))
    reference_pressure: Array = parameter(93.5, unit="mmHg", bounds=(20.0, 200.0),
                                          description="P_ref: the reflex changes nothing here")
    resting_heart_rate: Array = parameter(72.0, unit="1/min", bounds=(20.0, 250.0))

    states: ClassVar = (
        (State("afferent", "mmHg", description="w = tau_p Pt - tau_z P of the lead-lag filter"),)
        + _chain_states()
        + tuple(State(name, _unit, description=f"reflex change of {name.replace('_', ' ')}")
                for name, _unit in zip(_EFFECTORS, ("mmHg/mL", "mmHg/mL", "mmHg*s/mL",
                                                     "mmHg*s/mL", "mL", "mL", "s", "s")))
    )
    inputs: ClassVar = (Input("arterial_pressure", "mmHg",
                              description="carotid sinus pressure (instantaneous or mean)"),)
    outputs: ClassVar = (
        Output("heart_period_change", "s"),
        Output("reflex_resistance_factor", "dimensionless"),
        Output("lv_elastance_factor", "dimensionless"),
        Output("rv_elastance_factor", "dimensionless"),
        Output("venous_unstressed_volume_change", "mL"),
        Output("heart_rate", "1/min"),
    )
    time_unit: ClassVar = "s"

    # -- the static characteristic -------------------------------------------------------

    def firing(self, filtered_pressure: Array) -> tuple[Array, Array, Array]:
        """Carotid sinus, sympathetic and vagal firing rates at a filtered pressure."""
        x = jnp.exp((filtered_pressure - self.set_point) / self.slope)
        f_cs = (self.f_min + self.f_max * x) / (1.0 + x)
        f_es = self.f_es_inf + (self.f_es_0 - self.f_es_inf) * jnp.exp(-self.k_es * f_cs)
        y = jnp.exp((f_cs - self.f_cs_0) / self.k_ev)
        f_ev = (self.f_ev_0 + self.f_ev_inf * y) / (1.0 + y)
        return f_cs, f_es, f_ev

    def drive(self, f_es: Array) -> Array:
        """Sympathetic drive ln(f_es - f_es_min + 1), zero below threshold (smoothed)."""
        excess = jax.nn.softplus(_SYMPATHETIC_SHARPNESS * (f_es - self.f_es_min))
        return jnp.log(excess / _SYMPATHETIC_SHARPNESS + 1.0)

    def _gains(self):
        return (self.gain_lv_elastance, self.gain_rv_elastance, self.gain_splanchnic_resistance,
                self.gain_extrasplanchnic_resistance, self.gain_splanchnic_venous_volume,
                self.gain_extrasplanchnic_venous_volume, self.gain_sympathetic_period,
                self.gain_vagal_period)

    def _sources(self):
        """Which delay chain feeds each effector."""
        return ("short", "short", "short", "short", "long", "long", "short", "vagal")

    def equilibrium(self, pressure: Array) -> dict[str, Array]:
        """The reflex's steady state at a constant arterial pressure."""
        _, f_es, f_ev = self.firing(pressure)
        signal = {"short": self.drive(f_es), "long": self.drive(f_es), "vagal": f_ev}
        state = {"afferent": (self.tau_p - self.tau_z) * pressure}
        for chain in _CHAINS:
            for k in range(CHAIN_STAGES):
                state[f"{chain}_delay_{k + 1}"] = signal[chain]
        for name, gain, source in zip(_EFFECTORS, self._gains(), self._sources()):
            state[name] = gain * signal[source]
        return state

    # -- the organ -------------------------------------------------------------------------

    def rates(self, t, state, inputs):
        pressure = inputs["arterial_pressure"]
        filtered = (state["afferent"] + self.tau_z * pressure) / self.tau_p
        _, f_es, f_ev = self.firing(filtered)
        signal = {"short": self.drive(f_es), "long": self.drive(f_es), "vagal": f_ev}
        delays = {"short": self.delay_short, "long": self.delay_long, "vagal": self.delay_vagal}
        out = {"afferent": pressure - filtered}
        for chain in _CHAINS:
            names = [f"{chain}_delay_{k + 1}" for k in range(CHAIN_STAGES)]
            stage_rates = erlang_chain_rates(signal[chain], tuple(state[n] for n in names),
                                             delays[chain])
            out.update(zip(names, stage_rates))
        taus = (self.tau_elastance, self.tau_elastance, self.tau_resistance,
                self.tau_resistance, self.tau_venous_volume, self.tau_venous_volume,
                self.tau_sympathetic_period, self.tau_vagal_period)
        for name, gain, tau, source in zip(_EFFECTORS, self._gains(), taus, self._sources()):
            delayed = state[f"{source}_delay_{CHAIN_STAGES}"]
            out[name] = (gain * delayed - state[name]) / tau
        return out

    def observe(self, t, state):
        ref = self.equilibrium(self.reference_pressure)

        def resistance(s):
            splanchnic = self.splanchnic_resistance_0 + s["splanchnic_resistance"]
            extra = self.extrasplanchnic_resistance_0 + s["extrasplanchnic_resistance"]
            return splanchnic * extra / (splanchnic + extra)

        period_change = (state["sympathetic_period"] + state["vagal_period"]
                         - ref["sympathetic_period"] - ref["vagal_period"])
        return {
            "heart_period_change": period_change,
            "reflex_resistance_factor": resistance(state) / resistance(ref),
            "lv_elastance_factor": (self.lv_elastance_0 + state["lv_elastance"])
            / (self.lv_elastance_0 + ref["lv_elastance"]),
            "rv_elastance_factor": (self.rv_elastance_0 + state["rv_elastance"])
            / (self.rv_elastance_0 + ref["rv_elastance"]),
            "venous_unstressed_volume_change": (
                state["splanchnic_venous_volume"] + state["extrasplanchnic_venous_volume"]
                - ref["splanchnic_venous_volume"] - ref["extrasplanchnic_venous_volume"]),
            "heart_rate": 60.0 / (60.0 / self.resting_heart_rate + period_change),
        }

    def initial_state(self):
        """At rest: the equilibrium at the reference pressure."""
        return self.equilibrium(self.reference_pressure)
