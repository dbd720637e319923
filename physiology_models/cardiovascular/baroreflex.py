"""Arterial baroreflex after Ursino (1998), with the carotid chemoreceptors' response to low
perfusion pressure after Ursino & Magosso (2000): heart period, contractility, peripheral
resistance and venous tone.

Sources:
- M. Ursino, "Interaction between carotid baroregulation and the pulsating heart: a
  mathematical model", Am J Physiol Heart Circ Physiol 275:H1733-H1747, 1998 (equations and
  parameter values of its Table 2; the values below agree with independent transcriptions of
  that table).
- M. Ursino, E. Magosso, "Acute cardiovascular response to isocapnic hypoxia. I. A
  mathematical model", Am J Physiol Heart Circ Physiol 279:H149-H165, 2000 (Eqs. 17-18 and
  21-22, Table 2): the chemoreceptor afferent, its weights on the sympathetic outflow to the
  periphery (W_c,sp = 5) and to the heart (W_c,sh = 1), and the ceiling f_es,max = 60 spikes/s.
- E. Magosso, M. Ursino, "A mathematical model of CO2 effect on cardiovascular regulation", Am
  J Physiol Heart Circ Physiol 281:H2036-H2052, 2001 (Table 1: f_es,max = 60 spikes/s and the
  same chemoreceptor weights; tau_cc, see tau_c below).
- A. C. Guyton, T. G. Coleman, H. J. Granger, "Circulation: overall regulation", Annu Rev
  Physiol 34:13-46, 1972 (autonomic block): the chemoreceptors are excited by arterial pressure
  falling below 80 mmHg, linearly, and fully below 40 mmHg (the carotid bodies' stagnant
  hypoxia when their blood flow falls; Guyton & Hall, Textbook of Medical Physiology, ch. 18).

Horizon: seconds to days; the reflex's own dynamics settle within about a minute.

Equations (t in s, pressure P in mmHg, firing rates f in spikes/s):

    afferent (lead-lag)  tau_p dPt/dt = P + tau_z dP/dt - Pt
                          carried as w = tau_p Pt - tau_z P:  dw/dt = P - Pt
    carotid sinus         f_cs = (f_min + f_max exp((Pt - P_n)/k_a)) / (1 + exp((Pt - P_n)/k_a))
    chemoreceptors        phi_ac = f_ac_n + (f_ac_max - f_ac_n) c,
                          c = clip((P_c1 - P) / (P_c1 - P_c2), 0, 1) (smoothed over ~1 mmHg)
                          tau_c df_ac/dt = phi_ac - f_ac
    sympathetic           f_sj = min(f_es_max, f_es_inf + (f_es_0 - f_es_inf)
                                     exp(k_es (-f_cs + W_c,sj (f_ac - f_ac_n))))
                          j = p (arterioles and veins, W_c,sp) and h (heart, W_c,sh)
    vagal                 f_ev = (f_ev_0 + f_ev_inf exp((f_cs - f_cs_0)/k_ev))
                                 / (1 + exp((f_cs - f_cs_0)/k_ev))
    sympathetic drive     s_j = ln(f_sj - f_es_min + 1)  (zero below f_es_min; here a softplus of
                          sharpness 10 per spikes/s replaces the kink, changing s by < 0.07; the
                          ceiling f_es_max is smoothed over about 1 spikes/s likewise)
    effectors             d(d_theta)/dt = (G_theta s_j(t - D_theta) - d_theta) / tau_theta
                          (elastances and sympathetic heart period: s_h; resistances and venous
                          unstressed volumes: s_p; heart period, vagal part: G_Tv f_ev(t - D_Tv))
    pure delays           s(t - D) is replaced by the output of a chain of 3 first-order stages
                          of time constant D / 3 (an Erlang distributed delay with the same
                          mean delay D; diffrax has no delay equations). The test
                          tests/test_cardiovascular.py compares its step response with the exact
                          delayed one.

The chemoreceptor terms are written as departures from the resting firing f_ac_n, which is how
Ursino & Magosso's offsets theta_sp and theta_sh make their 2000 model reduce to the 1998 one at
rest (W_c,sh f_ac,n = theta_sh = 3.6 spikes/s). Their chemoreceptors read arterial PO2; in
hemorrhage the arterial PO2 is normal and the carotid bodies are excited by their falling blood
flow instead, so here the chemoreceptor's static input is the perfusion pressure, with Guyton's
thresholds (80 mmHg onset, 40 mmHg saturation) spanning Ursino & Magosso's range of firing
(f_ac_n at rest to f_ac_max). Two terms of their model are left out together, because this
model does not breathe: the chemoreceptors' vagal (bradycardic) weight W_c,v and the lung
stretch receptors, whose inflation during the chemoreflex hyperpnoea withdraws vagal tone; with
spontaneous breathing the net heart-rate response to chemoreceptor excitation is a tachycardia
(Ursino & Magosso 2000, part II). The CNS ischemic response (Guyton: below about 40 mmHg) is
not modelled.

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
value theta_0 without sympathetic drive; chemoreceptors: Ursino & Magosso 2000, Table 2, and
Guyton et al. 1972):

| parameter | value | unit |
|---|---|---|
| tau_p, tau_z | 2.076, 6.37 | s |
| f_min, f_max | 2.52, 47.78 | spikes/s |
| P_n, k_a | 92, 11.758 | mmHg |
| f_es_inf, f_es_0, f_es_min, k_es | 2.10, 16.11, 2.66, 0.0675 | spikes/s, spikes/s, spikes/s, s |
| f_es_max | 60 | spikes/s (Ursino & Magosso 2000) |
| f_ev_0, f_ev_inf, f_cs_0, k_ev | 3.2, 6.3, 25, 7.06 | spikes/s |
| f_ac_n, f_ac_max | 3.6, 17.07 | spikes/s (Ursino & Magosso 2000) |
| tau_c | 20 | s (chosen: see below; Ursino & Magosso's 2 s is for arterial PO2) |
| W_c,sp, W_c,sh | 5, 1 | 1 (Ursino & Magosso 2000) |
| P_c1, P_c2 | 80, 40 | mmHg (Guyton et al. 1972: chemoreceptor onset, saturation) |

f_ac_n is Ursino & Magosso's static chemoreceptor characteristic at a normal arterial PO2 of
95 mmHg (3.60 spikes/s from their f_ac,min 1.16, f_ac,max 17.07, PO2_n 45, k_ac 29.27).

tau_c is not a published value for this path. Ursino & Magosso's 2 s describes the carotid
body following arterial PO2; read from pressure, with their weights, it closes a pressure loop
that is lightly damped (damping ratio 0.12 at 40 % blood loss, period 24 s, in the beat-averaged
twin), and the pulsatile twin, whose monitor pressure lags by about a beat more, oscillates with
growing amplitude after a 36 % loss. 20 s, the order of the CNS CO2 response's time constant in
Magosso & Ursino (2001, tau_cc = 20 s), damps it (ratio 0.31). It changes no steady state, so
the validation table does not depend on it.
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

Note: the baroreceptors alone, at maximal stimulation (f_cs -> f_min), shorten the heart period
by about 0.34 s (heart rate about 120/min) and release about 560 mL of venous unstressed volume;
the chemoreceptors, once pressure falls below 80 mmHg, drive the sympathetic outflow past the
baroreflex's own ceiling f_es_0 towards f_es_max, which is what carries the tachycardia and the
venous mobilisation of severe hemorrhage.
"""

from __future__ import annotations

from typing import ClassVar

import jax.numpy as jnp
from jaxtyping import Array

import vht
from vht import Input, Output, State, parameter
from vht.network import softplus

CHAIN_STAGES = 3
_SYMPATHETIC_SHARPNESS = 10.0  # 1/(spikes/s): softplus in place of Ursino's threshold kink
_CEILING_WIDTH = 1.0  # spikes/s: smoothing of the f_es_max ceiling
_CHEMO_WIDTH = 1.0  # mmHg: smoothing of the chemoreceptor's onset and saturation

_EFFECTORS = ("lv_elastance", "rv_elastance", "splanchnic_resistance",
              "extrasplanchnic_resistance", "splanchnic_venous_volume",
              "extrasplanchnic_venous_volume", "sympathetic_period", "vagal_period")
# delay chain -> (what it carries, label); each effector reads the last stage of one chain
_CHAINS = {"cardiac": "cardiac sympathetic, 2 s", "arteriolar": "peripheral sympathetic, 2 s",
           "venous": "peripheral sympathetic, 5 s", "vagal": "vagal, 0.2 s"}
_SOURCES = ("cardiac", "cardiac", "arteriolar", "arteriolar", "venous", "venous", "cardiac",
            "vagal")


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
    units = {"cardiac": "dimensionless", "arteriolar": "dimensionless",
             "venous": "dimensionless", "vagal": "1/s"}
    return tuple(State(f"{chain}_delay_{k + 1}", units[chain], description=f"stage {k + 1} of "
                       f"the {label} delay chain") for chain, label in _CHAINS.items()
                 for k in range(CHAIN_STAGES))


class Baroreflex(vht.AbstractOrgan):
    """Ursino (1998) carotid baroreflex with the chemoreceptors' low-pressure drive (see the
    module docstring)."""

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
    f_es_max: Array = parameter(60.0, unit="1/s", description="sympathetic ceiling")
    f_ev_0: Array = parameter(3.2, unit="1/s")
    f_ev_inf: Array = parameter(6.3, unit="1/s")
    f_cs_0: Array = parameter(25.0, unit="1/s")
    k_ev: Array = parameter(7.06, unit="1/s", bounds=(1e-3, 100.0))
    f_ac_n: Array = parameter(3.6, unit="1/s", description="chemoreceptor firing at rest")
    f_ac_max: Array = parameter(17.07, unit="1/s", description="chemoreceptor firing, maximal")
    tau_chemoreceptor: Array = parameter(20.0, unit="s", bounds=(1e-3, 100.0))
    chemoreceptor_onset: Array = parameter(80.0, unit="mmHg", bounds=(0.0, 200.0),
                                           description="P_c1: firing rises below it")
    chemoreceptor_saturation: Array = parameter(40.0, unit="mmHg", bounds=(0.0, 200.0),
                                                description="P_c2: firing maximal below it")
    chemoreceptor_weight_peripheral: Array = parameter(5.0, unit="dimensionless",
                                                       description="W_c,sp")
    chemoreceptor_weight_cardiac: Array = parameter(1.0, unit="dimensionless",
                                                    description="W_c,sh")
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
        (State("afferent", "mmHg", description="w = tau_p Pt - tau_z P of the lead-lag filter"),
         State("chemoreceptor", "1/s", description="carotid chemoreceptor firing f_ac"))
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
        """Carotid sinus, sympathetic and vagal firing rates at a filtered pressure, with the
        chemoreceptors at rest (the baroreflex alone)."""
        f_cs = self.sinus_firing(filtered_pressure)
        return f_cs, self.sympathetic_firing(f_cs, self.f_ac_n, 0.0), self.vagal_firing(f_cs)

    def sinus_firing(self, filtered_pressure: Array) -> Array:
        """Carotid sinus (baroreceptor) afferent firing f_cs."""
        x = jnp.exp((filtered_pressure - self.set_point) / self.slope)
        return (self.f_min + self.f_max * x) / (1.0 + x)

    def chemoreceptor_target(self, pressure: Array) -> Array:
        """Static chemoreceptor firing phi_ac at a perfusion pressure: f_ac_n above the onset,
        rising linearly to f_ac_max at the saturation pressure (smoothed over ~1 mmHg)."""
        def ramp(x):
            return _CHEMO_WIDTH * softplus(x / _CHEMO_WIDTH)

        span = self.chemoreceptor_onset - self.chemoreceptor_saturation
        fraction = (ramp(self.chemoreceptor_onset - pressure)
                    - ramp(self.chemoreceptor_saturation - pressure)) / span
        return self.f_ac_n + (self.f_ac_max - self.f_ac_n) * fraction

    def sympathetic_firing(self, f_cs: Array, f_ac: Array, weight: Array) -> Array:
        """Sympathetic efferent firing with chemoreceptor input of the given weight, below the
        ceiling f_es_max (smoothed)."""
        exponent = -self.k_es * (f_cs - weight * (f_ac - self.f_ac_n))
        raw = self.f_es_inf + (self.f_es_0 - self.f_es_inf) * jnp.exp(exponent)
        return self.f_es_max - _CEILING_WIDTH * softplus(
            (self.f_es_max - raw) / _CEILING_WIDTH)

    def vagal_firing(self, f_cs: Array) -> Array:
        y = jnp.exp((f_cs - self.f_cs_0) / self.k_ev)
        return (self.f_ev_0 + self.f_ev_inf * y) / (1.0 + y)

    def drive(self, f_es: Array) -> Array:
        """Sympathetic drive ln(f_es - f_es_min + 1), zero below threshold (smoothed)."""
        excess = softplus(_SYMPATHETIC_SHARPNESS * (f_es - self.f_es_min))
        return jnp.log(excess / _SYMPATHETIC_SHARPNESS + 1.0)

    def chain_signals(self, f_cs: Array, f_ac: Array) -> dict[str, Array]:
        """What each delay chain carries: the cardiac and peripheral sympathetic drives and the
        vagal firing."""
        cardiac = self.drive(self.sympathetic_firing(f_cs, f_ac, self.chemoreceptor_weight_cardiac))
        peripheral = self.drive(self.sympathetic_firing(f_cs, f_ac,
                                                        self.chemoreceptor_weight_peripheral))
        return {"cardiac": cardiac, "arteriolar": peripheral, "venous": peripheral,
                "vagal": self.vagal_firing(f_cs)}

    def _gains(self):
        return (self.gain_lv_elastance, self.gain_rv_elastance, self.gain_splanchnic_resistance,
                self.gain_extrasplanchnic_resistance, self.gain_splanchnic_venous_volume,
                self.gain_extrasplanchnic_venous_volume, self.gain_sympathetic_period,
                self.gain_vagal_period)

    def equilibrium(self, pressure: Array) -> dict[str, Array]:
        """The reflex's steady state at a constant arterial pressure."""
        f_ac = self.chemoreceptor_target(pressure)
        signal = self.chain_signals(self.sinus_firing(pressure), f_ac)
        state = {"afferent": (self.tau_p - self.tau_z) * pressure, "chemoreceptor": f_ac}
        for chain in _CHAINS:
            for k in range(CHAIN_STAGES):
                state[f"{chain}_delay_{k + 1}"] = signal[chain]
        for name, gain, source in zip(_EFFECTORS, self._gains(), _SOURCES):
            state[name] = gain * signal[source]
        return state

    # -- the organ -------------------------------------------------------------------------

    def rates(self, t, state, inputs):
        pressure = inputs["arterial_pressure"]
        filtered = (state["afferent"] + self.tau_z * pressure) / self.tau_p
        signal = self.chain_signals(self.sinus_firing(filtered), state["chemoreceptor"])
        delays = {"cardiac": self.delay_short, "arteriolar": self.delay_short,
                  "venous": self.delay_long, "vagal": self.delay_vagal}
        out = {"afferent": pressure - filtered,
               "chemoreceptor": (self.chemoreceptor_target(pressure) - state["chemoreceptor"])
               / self.tau_chemoreceptor}
        for chain in _CHAINS:
            names = [f"{chain}_delay_{k + 1}" for k in range(CHAIN_STAGES)]
            stage_rates = erlang_chain_rates(signal[chain], tuple(state[n] for n in names),
                                             delays[chain])
            out.update(zip(names, stage_rates))
        taus = (self.tau_elastance, self.tau_elastance, self.tau_resistance,
                self.tau_resistance, self.tau_venous_volume, self.tau_venous_volume,
                self.tau_sympathetic_period, self.tau_vagal_period)
        for name, gain, tau, source in zip(_EFFECTORS, self._gains(), taus, _SOURCES):
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
