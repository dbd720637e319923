"""Peer implementations of the ensemble benchmark's two models (no vht, no JAX).

The same equations as the vht organs, written twice more:

- as plain NumPy/``math`` right-hand sides for ``scipy.integrate.solve_ivp``, integrated piece
  by piece between the scenario's breakpoints (``solve_uva``, ``solve_model_b``);
- as Antimony text (``uva_antimony``, ``model_b_antimony``) for
  libroadrunner's CVODE, the scenario written as SBML time events.

Model A, ``physiology_models.glucose_insulin.uva_padova.UVAPadovaT1D`` (simglucose 0.2.11's
UVA/Padova T1D model; time in minutes). The 13 continuous states are integrated; the five
memory states of the one-minute sample-and-hold clock (meal memory ``last_Qsto``,
``last_foodtaken``, held ``CHO`` and ``insulin``) are piecewise constant and change only at
clock ticks. vht and simglucose restart the integrator at every minute; between two minutes in
which the held action and the meal memory do not change, such a restart changes nothing but
the solver's step sequence, so the peers here restart only at the minutes where something
changes (``uva_schedule``: 45 of the 1440 ticks for the three-meal day). ``solve_uva``
with ``every_minute=True`` restarts at every tick, as simglucose does.

Model B: the beat-averaged circulation (``MeanFlowCirculation``, six volumes) with the Ursino
baroreflex with its chemoreceptors (``Baroreflex``, 22 states), organ time in seconds,
integrated in minutes (rates x 60) as the twin does, and the whole-body PBPK of lidocaine
(``pharmacology.lidocaine_pbpk()``, 11 amounts in mg, organ time in minutes) whose blood flows
follow the circulation's cardiac output: the twin ::

    vht.Twin({"circulation": MeanFlowCirculation(), "reflex": Baroreflex(),
              "drug": lidocaine_pbpk()},
             reflex_connections() + [("circulation.cardiac_output", "drug.cardiac_output")])

with 39 states (``MODEL_B_STATES``; ``model_b_rhs``, ``solve_model_b``, ``model_b_antimony``,
checked by ``check_model_b``). Its first 28 states alone are ``twins.mean_flow_circulation()``
(``circulation_rhs``): the drug does not act back on the circulation. The rest of the
whole-body twin (interstitium, kidney, Bergman) was not re-expressed: writing those organs
again for scipy and Antimony did not fit this benchmark's time budget.

``check_peers_against_vht`` (in ensemble_throughput.py) compares these right-hand sides with
``twin.rates`` at random states before anything is timed.
"""

from __future__ import annotations

import math

import numpy as np

# -- model A: UVA/Padova ------------------------------------------------------------------------

UVA_STATES = ("Qsto1", "Qsto2", "Qgut", "Gp", "Gt", "Ip", "X", "I1", "Id", "Il", "Isc1", "Isc2",
              "Gs")
UVA_PARAMETERS = ("BW", "kabs", "kmax", "kmin", "b", "d", "f", "Vg", "Vi", "k1", "k2", "Vm0",
                  "Vmx", "Km0", "Fsnc", "kp1", "kp2", "kp3", "ki", "ke1", "ke2", "m1", "m2", "m4",
                  "m30", "p2u", "Ib", "kd", "ka1", "ka2", "ksc", "u2ss", "Gpb", "Gtb", "Ipb",
                  "Ilb", "isc1ss", "isc2ss")
EAT_RATE = 5.0  # g/min
PMOL_PER_U = 6000.0
MINUTES = 1440


def uva_initial_state(p: dict) -> np.ndarray:
    return np.array([0.0, 0.0, 0.0, p["Gpb"], p["Gtb"], p["Ipb"], 0.0, p["Ib"], p["Ib"],
                     p["Ilb"], p["isc1ss"], p["isc2ss"], p["Gpb"]])


def uva_rhs(t, x, p, held):
    """dx/dt (per minute) of the 13 continuous states; ``held`` = (CHO g/min, insulin U/min,
    last_Qsto mg, last_foodtaken g), as ``UVAPadovaT1D.rates``."""
    cho, ins, last_qsto, last_food = held
    qsto1, qsto2, qgut, gp, gt, ip, xx, i1, idd, il, isc1, isc2, gs = x
    dmeal = cho * 1000.0
    insulin = ins * PMOL_PER_U / p["BW"]
    qsto = qsto1 + qsto2
    dbar = last_qsto + last_food * 1000.0
    kmax, kmin = p["kmax"], p["kmin"]
    if dbar > 0:
        aa = 5.0 / (2.0 * dbar * (1.0 - p["b"]))
        cc = 5.0 / (2.0 * dbar * p["d"])
        kgut = kmin + (kmax - kmin) / 2.0 * (math.tanh(aa * (qsto - p["b"] * dbar))
                                             - math.tanh(cc * (qsto - p["d"] * dbar)) + 2.0)
    else:
        kgut = kmax
    dqsto1 = -kmax * qsto1 + dmeal
    dqsto2 = kmax * qsto1 - qsto2 * kgut
    dqgut = kgut * qsto2 - p["kabs"] * qgut
    rat = p["f"] * p["kabs"] * qgut / p["BW"]
    egpt = p["kp1"] - p["kp2"] * gp - p["kp3"] * idd
    et = p["ke1"] * (gp - p["ke2"]) if gp > p["ke2"] else 0.0
    dgp = max(egpt, 0.0) + rat - p["Fsnc"] - et - p["k1"] * gp + p["k2"] * gt
    dgp = dgp if gp >= 0 else 0.0
    uidt = (p["Vm0"] + p["Vmx"] * xx) * gt / (p["Km0"] + gt)
    dgt = -uidt + p["k1"] * gp - p["k2"] * gt
    dgt = dgt if gt >= 0 else 0.0
    dip = -(p["m2"] + p["m4"]) * ip + p["m1"] * il + p["ka1"] * isc1 + p["ka2"] * isc2
    dip = dip if ip >= 0 else 0.0
    it = ip / p["Vi"]
    dx = -p["p2u"] * xx + p["p2u"] * (it - p["Ib"])
    di1 = -p["ki"] * (i1 - it)
    did = -p["ki"] * (idd - i1)
    dil = -(p["m1"] + p["m30"]) * il + p["m2"] * ip
    dil = dil if il >= 0 else 0.0
    disc1 = insulin - (p["ka1"] + p["kd"]) * isc1
    disc1 = disc1 if isc1 >= 0 else 0.0
    disc2 = p["kd"] * isc1 - p["ka2"] * isc2
    disc2 = disc2 if isc2 >= 0 else 0.0
    dgs = -p["ksc"] * gs + p["ksc"] * gp
    dgs = dgs if gs >= 0 else 0.0
    return np.array([dqsto1, dqsto2, dqgut, dgp, dgt, dip, dx, di1, did, dil, disc1, disc2, dgs])


def uva_outputs(x: np.ndarray, p: dict) -> dict[str, np.ndarray]:
    """The organ's outputs from states (..., 13)."""
    return {"glucose": x[..., 3] / p["Vg"], "subcutaneous_glucose": x[..., 12] / p["Vg"],
            "plasma_insulin": x[..., 5] / p["Vi"]}


def uva_actions(meals, carb_ratio: float, basal: float, minutes: int = MINUTES):
    """Per-minute carbohydrate (g/min) and insulin (U/min) of ``day_scenario(meals,
    carb_ratio)``: a meal of G g at minute m is eaten at 5 g/min for floor(G / 5) minutes and
    the remainder in the next minute; a bolus of G / CR U is delivered within minute m."""
    cho = np.zeros(minutes)
    insulin = np.full(minutes, float(basal))
    for minute, grams in meals:
        minute, full = int(minute), int(math.floor(grams / EAT_RATE))
        cho[minute:minute + full] = EAT_RATE
        cho[minute + full] = grams - EAT_RATE * full
        if carb_ratio is not None:
            insulin[minute] += grams / carb_ratio
    return cho, insulin


def uva_schedule(cho: np.ndarray, insulin: np.ndarray):
    """The clock ticks at which the sample-and-hold update changes something, with the update
    (simglucose ``T1DPatient.step`` lines 84-105): a list of (minute, CHO, insulin,
    starts_meal, last_foodtaken or None)."""
    events, previous_cho, eating, food, previous_insulin = [], 0.0, False, 0.0, None
    for minute in range(cho.size):
        c = float(cho[minute])
        starts = c > 0 and previous_cho <= 0
        if starts:
            food, eating = 0.0, True
        if eating:
            food += c
        if c <= 0 and previous_cho > 0:
            eating = False
        if c > 0 or previous_cho > 0 or insulin[minute] != previous_insulin:
            events.append((minute, c, float(insulin[minute]), starts,
                           food if (eating and c > 0) else None))
        previous_cho, previous_insulin = c, float(insulin[minute])
    return events


def solve_uva(p: dict, cho, insulin, ts, *, rtol: float, atol: float, method: str = "LSODA",
              every_minute: bool = False):
    """One member's day with scipy ``solve_ivp``: returns (outputs at ts, states at ts, nfev).

    Integrates between the ticks of ``uva_schedule`` (or every minute with ``every_minute``,
    simglucose's scheme), applying the tick's update to the held values in between."""
    from scipy.integrate import solve_ivp

    events = {e[0]: e for e in uva_schedule(cho, insulin)}
    ticks = range(cho.size) if every_minute else sorted(events)
    bounds = sorted(set(ticks) | {0}) + [float(ts[-1])]
    x = uva_initial_state(p)
    held = [0.0, float(insulin[0]), 0.0, 0.0]
    out = np.full((ts.size, 13), np.nan)
    nfev = 0
    for a, b in zip(bounds[:-1], bounds[1:]):
        if a in events:
            _, c, ins, starts, food = events[a]
            if starts:
                held[2] = x[0] + x[1]
            held[0], held[1] = c, ins
            if food is not None:
                held[3] = food
        last = b == bounds[-1]
        mask = (ts >= a) & ((ts < b) | (last & (ts <= b)))
        t_eval = np.unique(np.append(ts[mask], b))
        sol = solve_ivp(uva_rhs, (a, b), x, method=method, t_eval=t_eval, rtol=rtol,
                        atol=atol, args=(p, tuple(held)))
        if not sol.success:
            raise RuntimeError(f"solve_ivp failed on [{a}, {b}]: {sol.message}")
        out[mask] = sol.y.T[np.isin(sol.t, ts[mask])]
        x = sol.y[:, -1]
        nfev += sol.nfev
    return uva_outputs(out, p), out, nfev


def uva_antimony(p: dict, cho, insulin) -> str:
    """Model A as Antimony: 13 rate rules; the held values as parameters changed by time events
    at the ticks of ``uva_schedule``."""
    q = {k: repr(float(v)) for k, v in p.items()}
    lines = ["model uva_padova"]
    for name in UVA_PARAMETERS:
        lines.append(f"  p_{name} = {q[name]};")
    lines += [
        f"  CHO = 0.0; insulin = {float(insulin[0])!r}; last_Qsto = 0.0; last_food = 0.0;",
        "  Qsto1 = 0.0; Qsto2 = 0.0; Qgut = 0.0; Gp = p_Gpb; Gt = p_Gtb; Ip = p_Ipb; X = 0.0;",
        "  I1 = p_Ib; Id = p_Ib; Il = p_Ilb; Isc1 = p_isc1ss; Isc2 = p_isc2ss; Gs = p_Gpb;",
        "  Qsto := Qsto1 + Qsto2;",
        "  Dbar := last_Qsto + last_food * 1000;",
        "  kgut := piecewise(p_kmin + (p_kmax - p_kmin) / 2 * (tanh(5 / (2 * Dbar * (1 - p_b))"
        " * (Qsto - p_b * Dbar)) - tanh(5 / (2 * Dbar * p_d) * (Qsto - p_d * Dbar)) + 2),"
        " Dbar > 0, p_kmax);",
        "  Ra := p_f * p_kabs * Qgut / p_BW;",
        "  EGP := p_kp1 - p_kp2 * Gp - p_kp3 * Id;",
        "  Et := piecewise(p_ke1 * (Gp - p_ke2), Gp > p_ke2, 0);",
        "  Uid := (p_Vm0 + p_Vmx * X) * Gt / (p_Km0 + Gt);",
        "  It := Ip / p_Vi;",
        "  u_ins := insulin * 6000 / p_BW;",
        "  Qsto1' = -p_kmax * Qsto1 + CHO * 1000;",
        "  Qsto2' = p_kmax * Qsto1 - kgut * Qsto2;",
        "  Qgut' = kgut * Qsto2 - p_kabs * Qgut;",
        "  Gp' = piecewise(max(EGP, 0) + Ra - p_Fsnc - Et - p_k1 * Gp + p_k2 * Gt, Gp >= 0, 0);",
        "  Gt' = piecewise(-Uid + p_k1 * Gp - p_k2 * Gt, Gt >= 0, 0);",
        "  Ip' = piecewise(-(p_m2 + p_m4) * Ip + p_m1 * Il + p_ka1 * Isc1 + p_ka2 * Isc2,"
        " Ip >= 0, 0);",
        "  X' = -p_p2u * X + p_p2u * (It - p_Ib);",
        "  I1' = -p_ki * (I1 - It);",
        "  Id' = -p_ki * (Id - I1);",
        "  Il' = piecewise(-(p_m1 + p_m30) * Il + p_m2 * Ip, Il >= 0, 0);",
        "  Isc1' = piecewise(u_ins - (p_ka1 + p_kd) * Isc1, Isc1 >= 0, 0);",
        "  Isc2' = piecewise(p_kd * Isc1 - p_ka2 * Isc2, Isc2 >= 0, 0);",
        "  Gs' = piecewise(-p_ksc * Gs + p_ksc * Gp, Gs >= 0, 0);",
        "  glucose := Gp / p_Vg;",
        "  subcutaneous_glucose := Gs / p_Vg;",
        "  plasma_insulin := Ip / p_Vi;",
    ]
    for k, (minute, c, ins, starts, food) in enumerate(uva_schedule(cho, insulin)):
        if minute == 0:
            continue  # the initial values above
        assignments = [f"CHO = {c!r}", f"insulin = {ins!r}"]
        if starts:
            assignments.append("last_Qsto = Qsto1 + Qsto2")
        if food is not None:
            assignments.append(f"last_food = {food!r}")
        lines.append(f"  E{k}: at time >= {minute}: " + ", ".join(assignments) + ";")
    lines.append("end")
    return "\n".join(lines) + "\n"


# -- model B: beat-averaged circulation with baroreflex ------------------------------------------

CIRCULATION_STATES = ("left_ventricle", "systemic_arteries", "systemic_veins", "right_ventricle",
                      "pulmonary_arteries", "pulmonary_veins")
CHAINS = ("cardiac", "arteriolar", "venous", "vagal")
EFFECTORS = ("lv_elastance", "rv_elastance", "splanchnic_resistance",
             "extrasplanchnic_resistance", "splanchnic_venous_volume",
             "extrasplanchnic_venous_volume", "sympathetic_period", "vagal_period")
EFFECTOR_SOURCE = ("cardiac", "cardiac", "arteriolar", "arteriolar", "venous", "venous",
                   "cardiac", "vagal")
CHAIN_DELAY = {"cardiac": "short", "arteriolar": "short", "venous": "long", "vagal": "vagal"}
REFLEX_STATES = (("afferent", "chemoreceptor")
                 + tuple(f"{c}_delay_{k}" for c in CHAINS for k in (1, 2, 3)) + EFFECTORS)
B_STATES = tuple(f"circulation.{s}" for s in CIRCULATION_STATES) + \
    tuple(f"reflex.{s}" for s in REFLEX_STATES)
B_OUTPUTS = ("circulation.mean_arterial_pressure", "circulation.cardiac_output",
             "circulation.heart_rate")
PUMP_SMOOTHING = 0.5
SYMPATHETIC_SHARPNESS = 10.0
CEILING_WIDTH = 1.0  # spikes/s
CHEMO_WIDTH = 1.0  # mmHg
N_CIRCULATION = len(B_STATES)  # circulation and reflex states: the first of model B's
SECONDS_PER_MINUTE = 60.0


def _softplus(x: float) -> float:
    return max(x, 0.0) + math.log1p(math.exp(-abs(x)))


def chemoreceptor_target(r, pressure):
    def ramp(x):
        return CHEMO_WIDTH * _softplus(x / CHEMO_WIDTH)
    onset, saturation = r["chemoreceptor_onset"], r["chemoreceptor_saturation"]
    fraction = (ramp(onset - pressure) - ramp(saturation - pressure)) / (onset - saturation)
    return r["f_ac_n"] + (r["f_ac_max"] - r["f_ac_n"]) * fraction


def _firing(r, pressure, f_ac):
    x = math.exp((pressure - r["set_point"]) / r["slope"])
    f_cs = (r["f_min"] + r["f_max"] * x) / (1.0 + x)

    def drive(weight):
        exponent = -r["k_es"] * (f_cs - weight * (f_ac - r["f_ac_n"]))
        raw = r["f_es_inf"] + (r["f_es_0"] - r["f_es_inf"]) * math.exp(exponent)
        f_es = r["f_es_max"] - CEILING_WIDTH * _softplus((r["f_es_max"] - raw) / CEILING_WIDTH)
        return math.log(_softplus(SYMPATHETIC_SHARPNESS * (f_es - r["f_es_min"]))
                        / SYMPATHETIC_SHARPNESS + 1.0)

    y = math.exp((f_cs - r["f_cs_0"]) / r["k_ev"])
    f_ev = (r["f_ev_0"] + r["f_ev_inf"] * y) / (1.0 + y)
    peripheral = drive(r["chemoreceptor_weight_peripheral"])
    return {"cardiac": drive(r["chemoreceptor_weight_cardiac"]), "arteriolar": peripheral,
            "venous": peripheral, "vagal": f_ev}


def _gains(r):
    return [r[f"gain_{e}"] for e in EFFECTORS]


def reflex_equilibrium(r: dict, pressure: float) -> dict[str, float]:
    f_ac = chemoreceptor_target(r, pressure)
    signal = _firing(r, pressure, f_ac)
    state = {"afferent": (r["tau_p"] - r["tau_z"]) * pressure, "chemoreceptor": f_ac}
    for chain in CHAINS:
        for k in (1, 2, 3):
            state[f"{chain}_delay_{k}"] = signal[chain]
    for name, gain, source in zip(EFFECTORS, _gains(r), EFFECTOR_SOURCE):
        state[name] = gain * signal[source]
    return state


def _resistance(r, s):
    sp = r["splanchnic_resistance_0"] + s["splanchnic_resistance"]
    ep = r["extrasplanchnic_resistance_0"] + s["extrasplanchnic_resistance"]
    return sp * ep / (sp + ep)


def circulation_reference(r: dict) -> dict[str, float]:
    """The reflex's reference values (its equilibrium at P_ref): constants of a member."""
    ref = reflex_equilibrium(r, r["reference_pressure"])
    return {"period": ref["sympathetic_period"] + ref["vagal_period"],
            "resistance": _resistance(r, ref), "lv": r["lv_elastance_0"] + ref["lv_elastance"],
            "rv": r["rv_elastance_0"] + ref["rv_elastance"],
            "venous": ref["splanchnic_venous_volume"] + ref["extrasplanchnic_venous_volume"]}


def circulation_initial_state(c: dict, r: dict) -> np.ndarray:
    volumes = {"left_ventricle": 94.0, "right_ventricle": 90.0,
               "systemic_arteries": c["systemic_arterial_unstressed_volume"]
               + c["systemic_arterial_compliance"] * 93.0,
               "pulmonary_arteries": c["pulmonary_arterial_unstressed_volume"]
               + c["pulmonary_arterial_compliance"] * 15.0,
               "pulmonary_veins": c["pulmonary_venous_unstressed_volume"]
               + c["pulmonary_venous_compliance"] * 9.0}
    volumes["systemic_veins"] = c["blood_volume"] - sum(volumes.values())
    reflex = reflex_equilibrium(r, r["reference_pressure"])
    return np.array([volumes[s] for s in CIRCULATION_STATES] + [reflex[s] for s in REFLEX_STATES])


def _circulation(y, c, r, ref, hemorrhage, systemic_resistance):
    """Pressures, flows and outputs of the circulation (per second) at state y."""
    s = dict(zip(REFLEX_STATES, y[6:]))
    period_change = s["sympathetic_period"] + s["vagal_period"] - ref["period"]
    resistance_factor = _resistance(r, s) / ref["resistance"]
    lv_factor = (r["lv_elastance_0"] + s["lv_elastance"]) / ref["lv"]
    rv_factor = (r["rv_elastance_0"] + s["rv_elastance"]) / ref["rv"]
    venous_change = s["splanchnic_venous_volume"] + s["extrasplanchnic_venous_volume"] - \
        ref["venous"]
    v_lv, v_sa, v_sv, v_rv, v_pa, v_pv = y[:6]
    p_sa = (v_sa - c["systemic_arterial_unstressed_volume"]) / c["systemic_arterial_compliance"]
    p_sv = (v_sv - (c["systemic_venous_unstressed_volume"] + venous_change)) / \
        c["systemic_venous_compliance"]
    p_pa = (v_pa - c["pulmonary_arterial_unstressed_volume"]) / \
        c["pulmonary_arterial_compliance"]
    p_pv = (v_pv - c["pulmonary_venous_unstressed_volume"]) / c["pulmonary_venous_compliance"]
    q_sys = (p_sa - p_sv) / (systemic_resistance * resistance_factor)
    q_pul = (p_pa - p_pv) / c["pulmonary_resistance"]
    beats = 1.0 / (60.0 / c["heart_rate"] + period_change)
    tau = c["ventricular_relaxation_time"]
    pumps = []
    for eta, kappa, e_min, e_max, v0, p_fill, p_eject, volume in (
            (c["lv_filling_efficiency"], c["lv_ejection_ratio"], c["lv_elastance_min"],
             c["lv_elastance_max"] * lv_factor, c["lv_unstressed_volume"], p_pv, p_sa, v_lv),
            (c["rv_filling_efficiency"], c["rv_ejection_ratio"], c["rv_elastance_min"],
             c["rv_elastance_max"] * rv_factor, c["rv_unstressed_volume"], p_sv, p_pa, v_rv)):
        edv = eta * p_fill / e_min
        esv = kappa * p_eject / e_max
        stroke = PUMP_SMOOTHING * _softplus((edv - esv) / PUMP_SMOOTHING)
        eject = beats * stroke
        fill = eject + (v0 + 0.5 * (edv + esv) - volume) / tau
        pumps.append((fill, eject))
    (lv_fill, lv_eject), (rv_fill, rv_eject) = pumps
    rates = [lv_fill - lv_eject, lv_eject - q_sys - hemorrhage, q_sys - rv_fill,
             rv_fill - rv_eject, rv_eject - q_pul, q_pul - lv_fill]
    return p_sa, rates, lv_eject, beats, s


def circulation_rhs(t, y, c, r, ref, hemorrhage, systemic_resistance):
    """dy/dt per minute of the circulation and reflex states (``B_STATES`` order), as
    ``twin.rates``."""
    return _circulation_rates(y, c, r, ref, hemorrhage, systemic_resistance)[0]


def _circulation_rates(y, c, r, ref, hemorrhage, systemic_resistance):
    """dy/dt per minute of the circulation and reflex states (the first N_CIRCULATION of y),
    and the
    left ventricle's ejection (mL/s): the cardiac output that the PBPK organ reads."""
    pressure, rates, lv_eject, _, s = _circulation(y[:N_CIRCULATION], c, r, ref, hemorrhage,
                                                   systemic_resistance)
    filtered = (s["afferent"] + r["tau_z"] * pressure) / r["tau_p"]
    signal = _firing(r, filtered, s["chemoreceptor"])
    out = rates + [pressure - filtered, (chemoreceptor_target(r, pressure) - s["chemoreceptor"])
                   / r["tau_chemoreceptor"]]
    delays = {"cardiac": r["delay_short"], "arteriolar": r["delay_short"],
              "venous": r["delay_long"], "vagal": r["delay_vagal"]}
    for chain in CHAINS:
        rate, upstream = 3.0 / delays[chain], signal[chain]
        for k in (1, 2, 3):
            stage = s[f"{chain}_delay_{k}"]
            out.append(rate * (upstream - stage))
            upstream = stage
    taus = (r["tau_elastance"], r["tau_elastance"], r["tau_resistance"], r["tau_resistance"],
            r["tau_venous_volume"], r["tau_venous_volume"], r["tau_sympathetic_period"],
            r["tau_vagal_period"])
    for name, gain, tau, source in zip(EFFECTORS, _gains(r), taus, EFFECTOR_SOURCE):
        out.append((gain * s[f"{source}_delay_3"] - s[name]) / tau)
    return np.array(out) * SECONDS_PER_MINUTE, lv_eject


def circulation_outputs(ys: np.ndarray, c, r, ref, hemorrhage, systemic_resistance
                        ) -> dict[str, np.ndarray]:
    """``B_OUTPUTS`` at every row of ys (time, N_CIRCULATION); hemorrhage and resistance per row."""
    rows = [_circulation(y, c, r, ref, h, sr) for y, h, sr in
            zip(ys, hemorrhage, systemic_resistance)]
    return {"circulation.mean_arterial_pressure": np.array([x[0] for x in rows]),
            "circulation.cardiac_output": np.array([x[2] * 0.06 for x in rows]),
            "circulation.heart_rate": np.array([60.0 * x[3] for x in rows])}


def piecewise_parameter(steps, base: float, t: np.ndarray) -> np.ndarray:
    """A parameter under ParameterSteps (start, end, value), later steps winning, on [start,
    end), as ``vht`` applies them."""
    value = np.full(t.shape, float(base))
    for start, end, v in steps:
        value = np.where((t >= start) & (t < end), v, value)
    return value


def _circulation_antimony_lines(c: dict, r: dict) -> list[str]:
    """The rate rules of ``circulation_antimony`` and their parameters, without the
    scenario."""
    lines = []
    for name, value in c.items():
        lines.append(f"  c_{name} = {float(value)!r};")
    for name, value in r.items():
        lines.append(f"  r_{name} = {float(value)!r};")
    y0 = circulation_initial_state(c, r)
    for name, value in zip(CIRCULATION_STATES + REFLEX_STATES, y0):
        lines.append(f"  {name} = {float(value)!r};")
    ref = circulation_reference(r)
    for name, value in ref.items():
        lines.append(f"  ref_{name} = {float(value)!r};")
    lines += [
        "  sp := r_splanchnic_resistance_0 + splanchnic_resistance;",
        "  ep := r_extrasplanchnic_resistance_0 + extrasplanchnic_resistance;",
        "  period_change := sympathetic_period + vagal_period - ref_period;",
        "  resistance_factor := sp * ep / (sp + ep) / ref_resistance;",
        "  lv_factor := (r_lv_elastance_0 + lv_elastance) / ref_lv;",
        "  rv_factor := (r_rv_elastance_0 + rv_elastance) / ref_rv;",
        "  venous_change := splanchnic_venous_volume + extrasplanchnic_venous_volume"
        " - ref_venous;",
        "  p_sa := (systemic_arteries - c_systemic_arterial_unstressed_volume)"
        " / c_systemic_arterial_compliance;",
        "  p_sv := (systemic_veins - (c_systemic_venous_unstressed_volume + venous_change))"
        " / c_systemic_venous_compliance;",
        "  p_pa := (pulmonary_arteries - c_pulmonary_arterial_unstressed_volume)"
        " / c_pulmonary_arterial_compliance;",
        "  p_pv := (pulmonary_veins - c_pulmonary_venous_unstressed_volume)"
        " / c_pulmonary_venous_compliance;",
        "  q_sys := (p_sa - p_sv) / (c_systemic_resistance * resistance_factor);",
        "  q_pul := (p_pa - p_pv) / c_pulmonary_resistance;",
        "  beats := 1 / (60 / c_heart_rate + period_change);",
    ]
    for side, fill, eject, volume in (("lv", "p_pv", "p_sa", "left_ventricle"),
                                      ("rv", "p_sv", "p_pa", "right_ventricle")):
        lines += [
            f"  {side}_edv := c_{side}_filling_efficiency * {fill} / c_{side}_elastance_min;",
            f"  {side}_esv := c_{side}_ejection_ratio * {eject}"
            f" / (c_{side}_elastance_max * {side}_factor);",
            f"  {side}_raw := ({side}_edv - {side}_esv) / {PUMP_SMOOTHING!r};",
            f"  {side}_eject := beats * {PUMP_SMOOTHING!r} * (max({side}_raw, 0)"
            f" + ln(1 + exp(-abs({side}_raw))));",
            f"  {side}_fill := {side}_eject + (c_{side}_unstressed_volume + 0.5 * ({side}_edv"
            f" + {side}_esv) - {volume}) / c_ventricular_relaxation_time;",
        ]
    k = SYMPATHETIC_SHARPNESS
    lines += [
        "  left_ventricle' = 60 * (lv_fill - lv_eject);",
        "  systemic_arteries' = 60 * (lv_eject - q_sys - c_hemorrhage_rate);",
        "  systemic_veins' = 60 * (q_sys - rv_fill);",
        "  right_ventricle' = 60 * (rv_fill - rv_eject);",
        "  pulmonary_arteries' = 60 * (rv_eject - q_pul);",
        "  pulmonary_veins' = 60 * (q_pul - lv_fill);",
        "  filtered := (afferent + r_tau_z * p_sa) / r_tau_p;",
        "  fx := exp((filtered - r_set_point) / r_slope);",
        "  f_cs := (r_f_min + r_f_max * fx) / (1 + fx);",
        "  fy := exp((f_cs - r_f_cs_0) / r_k_ev);",
        "  f_ev := (r_f_ev_0 + r_f_ev_inf * fy) / (1 + fy);",
        "  afferent' = 60 * (p_sa - filtered);",
    ]
    w, cw = CHEMO_WIDTH, CEILING_WIDTH
    lines += [
        f"  up_on := (r_chemoreceptor_onset - p_sa) / {w!r};",
        f"  up_sat := (r_chemoreceptor_saturation - p_sa) / {w!r};",
        f"  chemo_fraction := {w!r} * (max(up_on, 0) + ln(1 + exp(-abs(up_on)))"
        f" - max(up_sat, 0) - ln(1 + exp(-abs(up_sat))))"
        " / (r_chemoreceptor_onset - r_chemoreceptor_saturation);",
        "  chemoreceptor' = 60 * (r_f_ac_n + (r_f_ac_max - r_f_ac_n) * chemo_fraction"
        " - chemoreceptor) / r_tau_chemoreceptor;",
    ]
    for side in ("cardiac", "peripheral"):
        lines += [
            f"  {side}_raw := r_f_es_inf + (r_f_es_0 - r_f_es_inf) * exp(-r_k_es * (f_cs"
            f" - r_chemoreceptor_weight_{side} * (chemoreceptor - r_f_ac_n)));",
            f"  {side}_gap := (r_f_es_max - {side}_raw) / {cw!r};",
            f"  {side}_f_es := r_f_es_max - {cw!r} * (max({side}_gap, 0)"
            f" + ln(1 + exp(-abs({side}_gap))));",
            f"  {side}_fs := {k!r} * ({side}_f_es - r_f_es_min);",
            f"  {side}_drive := ln((max({side}_fs, 0) + ln(1 + exp(-abs({side}_fs)))) / {k!r}"
            " + 1);",
        ]
    signals = {"cardiac": "cardiac_drive", "arteriolar": "peripheral_drive",
               "venous": "peripheral_drive", "vagal": "f_ev"}
    for chain in CHAINS:
        upstream = signals[chain]
        for j in (1, 2, 3):
            lines.append(f"  {chain}_delay_{j}' = 60 * 3 / r_delay_{CHAIN_DELAY[chain]}"
                         f" * ({upstream}"
                         f" - {chain}_delay_{j});")
            upstream = f"{chain}_delay_{j}"
    taus = ("elastance", "elastance", "resistance", "resistance", "venous_volume",
            "venous_volume", "sympathetic_period", "vagal_period")
    for name, tau, source in zip(EFFECTORS, taus, EFFECTOR_SOURCE):
        lines.append(f"  {name}' = 60 * (r_gain_{name} * {source}_delay_3 - {name})"
                     f" / r_tau_{tau};")
    lines += ["  mean_arterial_pressure := p_sa;", "  cardiac_output := lv_eject * 0.06;",
              "  heart_rate := 60 * beats;"]
    return lines


def _step_events(c: dict, steps: dict) -> list[str]:
    """The parameter steps (start, end, value) of the circulation as time events."""
    lines, k = [], 0
    for name, entries in steps.items():
        base = c[name]
        for start, end, value in entries:
            lines.append(f"  S{k}on: at time >= {float(start)!r}: c_{name} = {float(value)!r};")
            lines.append(f"  S{k}off: at time >= {float(end)!r}: c_{name} = {float(base)!r};")
            k += 1
    return lines


# -- model B: the circulation's cardiac output feeding a whole-body PBPK of lidocaine -----------

PBPK_TISSUES = ("lung", "liver", "gut", "kidney", "muscle", "fat", "rest")
PBPK_STATES = ("depot", "venous_blood", "arterial_blood") + PBPK_TISSUES + ("eliminated",)
VENOUS_STATE = "venous_blood"  # where IV doses and infusions go
MODEL_B_STATES = B_STATES + tuple(f"drug.{s}" for s in PBPK_STATES)
MODEL_B_OUTPUTS = B_OUTPUTS + ("drug.concentration",)
# circulation.cardiac_output [L/min] -> drug.cardiac_output [L/min]: the circulation converts
# its ejection (mL/s) to L/min itself, so the twin's connection factor is 1 (check_model_b
# compares it with twin.connections).
CARDIAC_OUTPUT_FACTOR = 1.0
_SYSTEMIC_TISSUES = ("kidney", "muscle", "fat", "rest")  # arterial blood in, venous blood out


def model_b_parameters(twin) -> tuple[dict, dict, dict]:
    """The member dicts (c, r, d) of the circulation, reflex and drug organs of a vht twin."""
    values = {k: float(v) for k, v in twin.parameters().items()}
    return tuple({k.split(".", 1)[1]: v for k, v in values.items() if k.startswith(organ + ".")}
                 for organ in ("circulation", "reflex", "drug"))


def _pbpk_flows(d: dict, cardiac_output: float) -> dict[str, float]:
    """Blood flows (L/min) of the PBPK organ's vessels, as ``PBPK.blood_flows``."""
    q = {"cardiac_output": cardiac_output,
         "hepatic_artery": d["hepatic_artery_fraction"] * cardiac_output,
         "gut": d["gut_flow_fraction"] * cardiac_output,
         "kidney": d["kidney_flow_fraction"] * cardiac_output,
         "muscle": d["muscle_flow_fraction"] * cardiac_output,
         "fat": d["fat_flow_fraction"] * cardiac_output}
    # the rest of the body takes what the named organs leave, so the flows balance
    q["rest"] = cardiac_output - (q["hepatic_artery"] + q["gut"] + q["kidney"] + q["muscle"]
                                  + q["fat"])
    q["hepatic_vein"] = q["hepatic_artery"] + q["gut"]
    return q


def pbpk_rhs(a, d: dict, cardiac_output: float, infusion: float) -> np.ndarray:
    """dA/dt (mg/min) of the 11 drug amounts (``PBPK_STATES`` order) at ``cardiac_output``
    (L/min), with ``infusion`` (mg/min) into the venous blood: ``PBPK.rates``."""
    s = dict(zip(PBPK_STATES, a))
    q = _pbpk_flows(d, cardiac_output)
    bp = d["blood_plasma_ratio"]
    venous = s["venous_blood"] / d["venous_blood_volume"]
    arterial = s["arterial_blood"] / d["arterial_blood_volume"]
    # a tissue's potential is the blood concentration leaving it: A_t / (V_t Kp_t / B:P)
    leaving = {t: s[t] / (d[f"{t}_volume"] * d[f"{t}_kp"] / bp) for t in PBPK_TISSUES}
    absorption = d["ka"] * s["depot"]
    # the potentials are blood concentrations: unbound plasma = potential fu / B:P
    metabolism = d["fraction_unbound"] * d["intrinsic_clearance"] / bp * leaving["liver"]
    excretion = d["renal_clearance"] / bp * leaving["kidney"]
    rates = {
        "depot": -absorption,
        "venous_blood": sum(q[t] * leaving[t] for t in _SYSTEMIC_TISSUES)
        + q["hepatic_vein"] * leaving["liver"] - q["cardiac_output"] * venous + infusion,
        "arterial_blood": q["cardiac_output"] * leaving["lung"]
        - (q["hepatic_artery"] + q["gut"] + sum(q[t] for t in _SYSTEMIC_TISSUES)) * arterial,
        "lung": q["cardiac_output"] * (venous - leaving["lung"]),
        "liver": q["hepatic_artery"] * arterial + q["gut"] * leaving["gut"]
        - q["hepatic_vein"] * leaving["liver"] - metabolism,
        "gut": absorption + q["gut"] * (arterial - leaving["gut"]),
        "eliminated": metabolism + excretion,
    }
    for t in _SYSTEMIC_TISSUES:
        rates[t] = q[t] * (arterial - leaving[t])
    rates["kidney"] = rates["kidney"] - excretion
    return np.array([rates[name] for name in PBPK_STATES])


def pbpk_concentration(a: np.ndarray, d: dict) -> np.ndarray:
    """The drug organ's output ``concentration`` (venous plasma, mg/L) from amounts (..., 11)."""
    return a[..., PBPK_STATES.index(VENOUS_STATE)] / d["venous_blood_volume"] / \
        d["blood_plasma_ratio"]


def model_b_initial_state(c: dict, r: dict, d: dict) -> np.ndarray:
    """The twin's initial state (``MODEL_B_STATES`` order): no drug anywhere."""
    return np.concatenate([circulation_initial_state(c, r), np.zeros(len(PBPK_STATES))])


def model_b_rhs(t, y, c, r, d, ref, hemorrhage, systemic_resistance, infusion):
    """dy/dt per minute of the 39 states (``MODEL_B_STATES`` order), as ``twin.rates`` plus
    an infusion of ``infusion`` mg/min into the venous blood (as ``vht.Infusion`` adds it)."""
    rates, lv_eject = _circulation_rates(y, c, r, ref, hemorrhage, systemic_resistance)
    cardiac_output = lv_eject * 0.06 * CARDIAC_OUTPUT_FACTOR  # mL/s -> L/min
    # the PBPK organ works in minutes, the twin's unit: its rates are not rescaled
    return np.concatenate([rates, pbpk_rhs(y[N_CIRCULATION:], d, cardiac_output, infusion)])


def infusion_rate(infusions, t: np.ndarray) -> np.ndarray:
    """The total rate (mg/min) of infusions (start, end, rate) at times t, each on [start,
    end), as ``vht.Infusion`` windows add up."""
    t = np.asarray(t, dtype=float)
    total = np.zeros(t.shape)
    for start, end, rate in infusions:
        total = total + np.where((t >= start) & (t < end), float(rate), 0.0)
    return total


def solve_model_b(c: dict, r: dict, d: dict, steps: dict, infusions, ts, *, rtol: float,
                  atol: float, method: str = "LSODA"):
    """One member's day of model B with scipy ``solve_ivp``, restarted at the breakpoints of
    the parameter steps and of the infusions.

    ``steps`` as in ``solve_circulation``; ``infusions`` a list of (start, end, rate mg/min)
    into the venous blood. Returns (outputs at ts for ``MODEL_B_OUTPUTS``, states at ts,
    nfev)."""
    from scipy.integrate import solve_ivp

    ref = circulation_reference(r)
    ends = [e for v in steps.values() for s in v for e in s[:2]] + \
        [e for s in infusions for e in s[:2]]
    edges = sorted({0.0, float(ts[-1])} | {float(e) for e in ends if 0.0 < e < ts[-1]})
    y = model_b_initial_state(c, r, d)
    out = np.full((ts.size, y.size), np.nan)
    nfev = 0
    for a, b in zip(edges[:-1], edges[1:]):
        mid = np.array([(a + b) / 2])
        hem = float(piecewise_parameter(steps.get("hemorrhage_rate", []), c["hemorrhage_rate"],
                                        mid)[0])
        res = float(piecewise_parameter(steps.get("systemic_resistance", []),
                                        c["systemic_resistance"], mid)[0])
        dose = float(infusion_rate(infusions, mid)[0])
        last = b == edges[-1]
        mask = (ts >= a) & ((ts < b) | (last & (ts <= b)))
        t_eval = np.unique(np.append(ts[mask], b))
        sol = solve_ivp(model_b_rhs, (a, b), y, method=method, t_eval=t_eval, rtol=rtol,
                        atol=atol, args=(c, r, d, ref, hem, res, dose))
        if not sol.success:
            raise RuntimeError(f"solve_ivp failed on [{a}, {b}]: {sol.message}")
        out[mask] = sol.y.T[np.isin(sol.t, ts[mask])]
        y = sol.y[:, -1]
        nfev += sol.nfev
    hem = piecewise_parameter(steps.get("hemorrhage_rate", []), c["hemorrhage_rate"], ts)
    res = piecewise_parameter(steps.get("systemic_resistance", []), c["systemic_resistance"], ts)
    outputs = circulation_outputs(out[:, :N_CIRCULATION], c, r, ref, hem, res)
    outputs["drug.concentration"] = pbpk_concentration(out[:, N_CIRCULATION:], d)
    return outputs, out, nfev


def model_b_antimony(c: dict, r: dict, d: dict, steps: dict, infusions) -> str:
    """Model B as Antimony: the 28 rate rules of ``circulation_antimony`` and 11 of the PBPK
    organ (amounts ``drug_<state>``, parameters ``d_<name>``, per minute); the parameter steps
    and the infusions (start, end, rate mg/min, into ``drug_venous_blood``) as time events.
    Selections ``mean_arterial_pressure``, ``cardiac_output``, ``heart_rate`` and
    ``drug_concentration`` (venous plasma, mg/L). The member parameters are ``c_<name>``,
    ``r_<name>`` and ``d_<name>``; the initial volumes are set by the caller
    (``circulation_initial_state``), the drug starts at zero."""
    lines = ["model mean_flow_circulation_pbpk"] + _circulation_antimony_lines(c, r)
    for name, value in d.items():
        lines.append(f"  d_{name} = {float(value)!r};")
    for name in PBPK_STATES:
        lines.append(f"  drug_{name} = 0.0;")
    lines += [
        f"  drug_infusion = {float(infusion_rate(infusions, np.array(0.0)))!r};",
        f"  drug_q_co := cardiac_output * {CARDIAC_OUTPUT_FACTOR!r};",
        "  drug_q_hepatic_artery := d_hepatic_artery_fraction * drug_q_co;",
        "  drug_q_gut := d_gut_flow_fraction * drug_q_co;",
        "  drug_q_kidney := d_kidney_flow_fraction * drug_q_co;",
        "  drug_q_muscle := d_muscle_flow_fraction * drug_q_co;",
        "  drug_q_fat := d_fat_flow_fraction * drug_q_co;",
        "  drug_q_rest := drug_q_co - (drug_q_hepatic_artery + drug_q_gut + drug_q_kidney"
        " + drug_q_muscle + drug_q_fat);",
        "  drug_q_hepatic_vein := drug_q_hepatic_artery + drug_q_gut;",
        "  drug_venous := drug_venous_blood / d_venous_blood_volume;",
        "  drug_arterial := drug_arterial_blood / d_arterial_blood_volume;",
    ]
    for t in PBPK_TISSUES:
        lines.append(f"  drug_leaving_{t} := drug_{t} / (d_{t}_volume * d_{t}_kp"
                     " / d_blood_plasma_ratio);")
    venous_in = " + ".join(f"drug_q_{t} * drug_leaving_{t}" for t in _SYSTEMIC_TISSUES)
    arterial_out = " + ".join(f"drug_q_{t}" for t in ("hepatic_artery", "gut")
                              + _SYSTEMIC_TISSUES)
    lines += [
        "  drug_absorption := d_ka * drug_depot;",
        "  drug_metabolism := d_fraction_unbound * d_intrinsic_clearance / d_blood_plasma_ratio"
        " * drug_leaving_liver;",
        "  drug_excretion := d_renal_clearance / d_blood_plasma_ratio * drug_leaving_kidney;",
        "  drug_depot' = -drug_absorption;",
        f"  drug_venous_blood' = {venous_in} + drug_q_hepatic_vein * drug_leaving_liver"
        " - drug_q_co * drug_venous + drug_infusion;",
        "  drug_arterial_blood' = drug_q_co * drug_leaving_lung"
        f" - ({arterial_out}) * drug_arterial;",
        "  drug_lung' = drug_q_co * (drug_venous - drug_leaving_lung);",
        "  drug_liver' = drug_q_hepatic_artery * drug_arterial + drug_q_gut * drug_leaving_gut"
        " - drug_q_hepatic_vein * drug_leaving_liver - drug_metabolism;",
        "  drug_gut' = drug_absorption + drug_q_gut * (drug_arterial - drug_leaving_gut);",
    ]
    for t in _SYSTEMIC_TISSUES:
        sink = " - drug_excretion" if t == "kidney" else ""
        lines.append(f"  drug_{t}' = drug_q_{t} * (drug_arterial - drug_leaving_{t}){sink};")
    lines += ["  drug_eliminated' = drug_metabolism + drug_excretion;",
              "  drug_concentration := drug_venous / d_blood_plasma_ratio;"]
    lines += _step_events(c, steps)
    # the total infusion rate after each breakpoint (overlapping windows add up); the value at
    # time 0 is the initial one above, since an event whose trigger is true at the start does
    # not fire
    edges = sorted({float(e) for s in infusions for e in s[:2] if e > 0.0 and math.isfinite(e)})
    for k, edge in enumerate(edges):
        rate = float(infusion_rate(infusions, np.array(edge)))
        lines.append(f"  I{k}: at time >= {edge!r}: drug_infusion = {rate!r};")
    lines.append("end")
    return "\n".join(lines) + "\n"


def check_model_b(twin, infusion: float = 2.0, samples: int = 20, seed: int = 0) -> float:
    """Largest relative difference of ``model_b_rhs`` from ``twin.rates`` (the infusion added
    to the venous blood's rate, as ``vht.Infusion`` does) at ``samples`` random states near
    the initial state (random drug amounts: the initial ones are zero), and of
    ``model_b_initial_state`` from ``twin.initial_state()``. ``twin`` is the model B twin of
    the module docstring; a different state layout or connection factor raises."""
    import jax.numpy as jnp

    if tuple(twin.state_names) != MODEL_B_STATES:
        raise ValueError(f"twin states {twin.state_names} are not MODEL_B_STATES")
    factors = [k.factor for k in twin.connections if k.target == "drug.cardiac_output"]
    if factors != [CARDIAC_OUTPUT_FACTOR]:
        raise ValueError(f"drug.cardiac_output is fed with factors {factors}, not "
                         f"[{CARDIAC_OUTPUT_FACTOR}]")
    c, r, d = model_b_parameters(twin)
    ref = circulation_reference(r)
    venous = MODEL_B_STATES.index(f"drug.{VENOUS_STATE}")
    y0 = model_b_initial_state(c, r, d)
    vht_y0 = np.asarray(twin.initial_state())
    worst = float(np.max(np.abs(y0 - vht_y0) / (np.abs(vht_y0) + 1e-9)))
    rng = np.random.default_rng(seed)
    arteries = MODEL_B_STATES.index("circulation.systemic_arteries")
    chemoreceptor = MODEL_B_STATES.index("reflex.chemoreceptor")
    for k in range(samples):
        y = y0 * (1.0 + 0.05 * rng.standard_normal(y0.size))
        y[N_CIRCULATION:] = rng.uniform(0.0, 50.0, len(PBPK_STATES))
        if k % 2:  # hypotension: the chemoreceptors' onset, ramp and saturation
            y[arteries] = (c["systemic_arterial_unstressed_volume"]
                           + c["systemic_arterial_compliance"] * rng.uniform(20.0, 90.0))
            y[chemoreceptor] = rng.uniform(r["f_ac_n"], r["f_ac_max"])
        a = np.array(twin.rates(0.0, jnp.asarray(y)))
        a[venous] += infusion
        b = model_b_rhs(0.0, y, c, r, d, ref, c["hemorrhage_rate"], c["systemic_resistance"],
                        infusion)
        worst = max(worst, float(np.max(np.abs(a - b) / (np.abs(a) + 1e-9))))
    return worst
