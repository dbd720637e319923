"""UVA/Padova type 1 diabetes model, exactly as simglucose 0.2.11 implements it.

Horizon: a meal (hours) to several days, one-minute clock. Time unit of the organ: minutes.

This is a port of ``simglucose/patient/t1dpatient.py`` from the PyPI package simglucose 0.2.11
(Jinyu Xie, MIT licence; https://github.com/jxx123/simglucose), which implements the UVA/Padova
simulator's glucose-insulin model (Dalla Man, Rizza and Cobelli, IEEE Trans Biomed Eng
2007;54:1740-1749, "Meal simulation model of the glucose-insulin system"; Dalla Man, Micheletto,
Lv, Breton, Kovatchev and Cobelli, J Diabetes Sci Technol 2014;8:26-34, "The UVA/PADOVA type 1
diabetes simulator: new features") with subcutaneous insulin and the nonlinear gastric
emptying of Dalla Man et al. (2006). Where simglucose differs from the papers (no glucagon, no
hypoglycaemia-dependent insulin action, the clamps below), vht follows simglucose, because the
tests compare with it minute by minute.

States (13 as in simglucose, ``x[0]`` to ``x[12]``, then 5 memories):

| state | simglucose | unit | meaning |
|---|---|---|---|
| Qsto1 | x[0] | mg | glucose in the stomach, solid phase |
| Qsto2 | x[1] | mg | glucose in the stomach, liquid phase |
| Qgut | x[2] | mg | glucose in the intestine |
| Gp | x[3] | mg/kg | glucose mass in plasma and rapidly equilibrating tissues |
| Gt | x[4] | mg/kg | glucose mass in slowly equilibrating tissues |
| Ip | x[5] | pmol/kg | insulin mass in plasma |
| X | x[6] | pmol/L | insulin action on glucose utilisation (remote insulin) |
| I1 | x[7] | pmol/L | delayed insulin signal, first stage |
| Id | x[8] | pmol/L | delayed insulin signal acting on production |
| Il | x[9] | pmol/kg | insulin mass in the liver |
| Isc1 | x[10] | pmol/kg | subcutaneous insulin, non-monomeric |
| Isc2 | x[11] | pmol/kg | subcutaneous insulin, monomeric |
| Gs | x[12] | mg/kg | subcutaneous glucose |
| last_Qsto | ``_last_Qsto`` | mg | stomach content when the current meal started |
| last_foodtaken | ``_last_foodtaken`` | g | carbohydrate eaten since the current meal started |
| is_eating | ``is_eating`` | 1 | 1 while eating, else 0 |
| CHO | ``_last_action.CHO`` | g/min | carbohydrate eaten in the current minute (held) |
| insulin | ``action.insulin`` | U/min | insulin delivered in the current minute (held) |

Equations (t in min; d = 1000 CHO in mg/min; u = 6000 insulin / BW in pmol/kg/min,
simglucose lines 117-118)::

    Dbar     = last_Qsto + 1000 last_foodtaken                                       (126)
    kgut     = kmin + (kmax - kmin)/2 (tanh(aa (Qsto - b Dbar)) - tanh(cc (Qsto - d Dbar)) + 2)
               with aa = 5 / (2 Dbar (1 - b)), cc = 5 / (2 Dbar d), Qsto = Qsto1 + Qsto2;
               kgut = kmax when Dbar = 0                                           (131-140)
    dQsto1   = -kmax Qsto1 + d
    dQsto2   =  kmax Qsto1 - kgut Qsto2
    dQgut    =  kgut Qsto2 - kabs Qgut
    Ra       =  f kabs Qgut / BW                                    (mg/kg/min)
    EGP      =  kp1 - kp2 Gp - kp3 Id
    E        =  ke1 (Gp - ke2) if Gp > ke2 else 0                   (renal excretion)
    dGp      =  [max(EGP, 0) + Ra - Fsnc - E - k1 Gp + k2 Gt]  (Gp >= 0)           (163-164)
    dGt      =  [-(Vm0 + Vmx X) Gt / (Km0 + Gt) + k1 Gp - k2 Gt]  (Gt >= 0)         (166-170)
    dIp      =  [-(m2 + m4) Ip + m1 Il + ka1 Isc1 + ka2 Isc2]  (Ip >= 0)            (173-180)
    dX       =  -p2u X + p2u (Ip / Vi - Ib)
    dI1      =  -ki (I1 - Ip / Vi)
    dId      =  -ki (Id - I1)
    dIl      =  [-(m1 + m30) Il + m2 Ip]  (Il >= 0)                                (191-192)
    dIsc1    =  [u - (ka1 + kd) Isc1]  (Isc1 >= 0)                                 (195-196)
    dIsc2    =  [kd Isc1 - ka2 Isc2]  (Isc2 >= 0)                                  (198-199)
    dGs      =  [-ksc Gs + ksc Gp]  (Gs >= 0)                                      (202-203)

Outputs: ``glucose`` = Gp / Vg (plasma glucose, mg/dL), ``subcutaneous_glucose`` = Gs / Vg
(mg/dL: simglucose's ``observation.Gsub``, lines 217-218, which its environment reports as
"BG" and its sensors read), ``plasma_insulin`` = Ip / Vi (pmol/L).

**Exact, non-smooth forms.** simglucose multiplies seven derivatives by ``(x >= 0)`` (lines
164, 170, 180, 192, 196, 199, 203), takes ``max(EGP, 0)`` (line 163) and switches renal
excretion on above ke2 (lines 156-159). They are kept exactly (``jnp.where``), not smoothed,
because this model must reproduce simglucose; they make it non-differentiable at those
switches (see DESIGN.md: smooth forms are preferred elsewhere).

**The one-minute clock** (``sample_period = 1`` minute). simglucose advances the patient one
minute at a time (``T1DPatient.step``, lines 78-112): it sets the action for the minute, updates
the meal memory, then integrates the ODE over the minute with the action held constant. vht
reproduces this with ``sample`` at every clock tick, which sees the parameter values holding at
the tick and updates the memory states (whose rates are zero in between):

1. the carbohydrate eaten this minute is the parameter ``carb_rate`` (g/min) and the insulin
   delivered is ``basal_rate + bolus_rate`` (U/min); both are held in the states ``CHO`` and
   ``insulin`` for the minute (simglucose: ``set_f_params``, line 105);
2. a meal starts when ``carb_rate > 0`` and the previous minute's ``CHO <= 0`` (line 84): then
   ``last_Qsto = Qsto1 + Qsto2`` (line 86), ``last_foodtaken = 0`` (line 87),
   ``is_eating = 1`` (line 88);
3. while eating, ``last_foodtaken += carb_rate`` (lines 93-94), the current minute included;
4. eating ends when ``carb_rate <= 0`` and the previous ``CHO > 0`` (lines 97-99);
   ``last_Qsto`` and ``last_foodtaken`` keep their values until the next meal starts.

simglucose eats an announced meal at ``EAT_RATE`` = 5 g/min (line 21, ``_announce_meal``
lines 222-236): a meal of N g is eaten as floor(N / 5) minutes at 5 g/min and one minute at the
remainder. ``meal`` builds exactly these ``ParameterStep`` windows; ``bolus`` delivers U units
within one minute (``bolus_rate`` = U U/min for that minute), as simglucose's pump and
basal-bolus controller do at a one-minute sample time. simglucose integrates each minute with
scipy's ``ode('dopri5')`` at its default tolerances, rtol 1e-6 and atol 1e-12
(``reset``, line 280); ``SIMGLUCOSE_SOLVER`` gives the matching diffrax settings
(``diffrax.Dopri5``, rtol 1e-6, atol 1e-12, each minute a new solve as in simglucose).

Parameters: the 30 virtual patients of simglucose (``data/vpatient_params.csv``, with
``data/Quest.csv`` giving each patient's carbohydrate ratio CR in g/U, correction factor CF in
mg/dL/U, age and total daily insulin; both copied from simglucose 0.2.11, MIT licence, see
``data/README.md``). ``UVAPadovaT1D.from_patient(name)`` builds a patient; the class defaults
are adolescent#001. Parameters used by the model, defaults of adolescent#001:

| parameter | default | unit | meaning |
|---|---|---|---|
| BW | 68.706 | kg | body weight |
| kabs | 0.091043 | 1/min | intestinal absorption rate |
| kmax | 0.015865 | 1/min | maximum gastric emptying rate |
| kmin | 0.0083338 | 1/min | minimum gastric emptying rate |
| b | 0.83072 | 1 | fraction of the meal where emptying falls to (kmax + kmin) / 2 |
| d | 0.32294 | 1 | fraction of the meal where emptying recovers to (kmax + kmin) / 2 |
| f | 0.9 | 1 | fraction of intestinal glucose that appears in plasma |
| Vg | 1.6818 | dL/kg | glucose distribution volume |
| Vi | 0.048153 | L/kg | insulin distribution volume |
| k1 | 0.057252 | 1/min | glucose transfer plasma to tissue |
| k2 | 0.067738 | 1/min | glucose transfer tissue to plasma |
| Vm0 | 5.92854753098 | mg/kg/min | insulin-independent utilisation, Vmax |
| Vmx | 0.074667 | mg/kg/min/(pmol/L) | insulin-dependent utilisation, Vmax slope |
| Km0 | 260.89 | mg/kg | utilisation Michaelis constant |
| Fsnc | 1 | mg/kg/min | insulin-independent utilisation (brain, erythrocytes) |
| kp1 | 11.5048231338 | mg/kg/min | glucose production extrapolated to zero glucose, insulin |
| kp2 | 0.023318 | 1/min | liver glucose effectiveness |
| kp3 | 0.023253 | mg/kg/min/(pmol/L) | insulin action on the liver |
| ki | 0.0088838 | 1/min | delay of insulin action on the liver |
| ke1 | 0.0005 | 1/min | renal glomerular filtration rate |
| ke2 | 339 | mg/kg | renal threshold |
| m1 | 0.15221 | 1/min | insulin transfer liver to plasma |
| m2 | 0.259067825939 | 1/min | insulin transfer plasma to liver |
| m4 | 0.103627130376 | 1/min | peripheral insulin degradation |
| m30 | 0.228315 | 1/min | hepatic insulin extraction |
| p2u | 0.021344 | 1/min | rate of insulin action on utilisation |
| Ib | 97.554 | pmol/L | basal plasma insulin |
| kd | 0.0185 | 1/min | subcutaneous insulin dissociation |
| ka1 | 0.0025 | 1/min | absorption of non-monomeric insulin |
| ka2 | 0.0115 | 1/min | absorption of monomeric insulin |
| ksc | 0.056 | 1/min | plasma to subcutaneous glucose transfer |
| u2ss | 1.21697571391 | pmol/kg/min | steady-state (basal) insulin delivery |
| Gpb | 250.621836 | mg/kg | basal Gp (initial Gp and Gs) |
| Gtb | 176.506559902 | mg/kg | basal Gt |
| Ipb | 4.697517762 | pmol/kg | basal Ip |
| Ilb | 3.19814917262 | pmol/kg | basal Il |
| isc1ss | 57.951224472 | pmol/kg | basal Isc1 |
| isc2ss | 93.2258828462 | pmol/kg | basal Isc2 |
| carb_rate | 0 | g/min | carbohydrate eaten per minute (scenario-driven, see ``meal``) |
| basal_rate | u2ss BW / 6000 | U/min | basal insulin (0.0139 for adolescent#001; NaN means this) |
| bolus_rate | 0 | U/min | insulin on top of basal (scenario-driven, see ``bolus``) |

Source of every value: simglucose 0.2.11 ``params/vpatient_params.csv`` (the simulator's
virtual patients; the table's columns EGPb, Gb, m5, CL, HEb, Rdb, PCRb, dosekempt are not used
by simglucose's model and are not parameters here). The initial state is simglucose's
``x0_1`` to ``x0_13``, which equal (0, 0, 0, Gpb, Gtb, Ipb, 0, Ib, Ib, Ilb, isc1ss, isc2ss, Gpb)
for every patient (checked by the tests); with basal insulin it is the patient's steady state.

Measured agreement with simglucose 0.2.11 (subcutaneous glucose, every minute of a day, with
``SIMGLUCOSE_SOLVER``): adolescent#001's 50 g meal file within 6.4e-7 mg/dL; a day with three
meals and boluses (tests/data/simglucose/README.md) within 3.0e-4 mg/dL for the six stored
patients (child#007 the worst) and within 7.3e-4 mg/dL for all 30 patients (child#005 the
worst; ``experiments/glucose/uva_padova_day.py`` with references regenerated for all 30).
tests/test_uva_padova.py records the max and RMS errors per patient. A patient-day takes about
0.6 s after a 3 to 4 s compilation (2 CPU cores), against about 6 s in simglucose.
"""

from __future__ import annotations

import csv
import functools
import math
from collections.abc import Sequence
from importlib import resources
from typing import ClassVar

import diffrax
import jax
import jax.numpy as jnp
import numpy as np
from jaxtyping import Array, ArrayLike

import vht
from vht import Output, State, parameter

EAT_RATE = 5.0
"""simglucose eats an announced meal at 5 g/min (``T1DPatient.EAT_RATE``)."""

PMOL_PER_U = 6000.0
"""simglucose's insulin conversion: ``action.insulin * 6000 / BW`` takes U/min to pmol/kg/min."""

SIMGLUCOSE_SOLVER = {"solver": diffrax.Dopri5(), "rtol": 1e-6, "atol": 1e-12}
"""Keyword arguments of ``vht.simulate`` matching simglucose's integrator: scipy
``ode('dopri5')`` at its defaults (rtol 1e-6, atol 1e-12), restarted every minute."""

_POSITIVE = (0.0, math.inf)
_UNIT = (0.0, 1.0)
_NONNEG_ADVICE = ("simglucose clamps this state's derivative at zero ((x >= 0) * dxdt); a "
                  "negative value means an input outside the model's range.")

# (unit, bounds, description) of every patient parameter, in the order of the docstring table.
_PATIENT_PARAMETERS = {
    "BW": ("kg", (1.0, 300.0), "body weight"),
    "kabs": ("1/min", _POSITIVE, "intestinal absorption rate"),
    "kmax": ("1/min", _POSITIVE, "maximum gastric emptying rate"),
    "kmin": ("1/min", _POSITIVE, "minimum gastric emptying rate"),
    "b": ("dimensionless", _UNIT, "meal fraction where emptying falls to (kmax + kmin) / 2"),
    "d": ("dimensionless", _UNIT, "meal fraction where emptying recovers to (kmax + kmin) / 2"),
    "f": ("dimensionless", _UNIT, "fraction of intestinal glucose appearing in plasma"),
    "Vg": ("dL/kg", _POSITIVE, "glucose distribution volume"),
    "Vi": ("L/kg", _POSITIVE, "insulin distribution volume"),
    "k1": ("1/min", _POSITIVE, "glucose transfer plasma to tissue"),
    "k2": ("1/min", _POSITIVE, "glucose transfer tissue to plasma"),
    "Vm0": ("mg/kg/min", _POSITIVE, "insulin-independent utilisation, Vmax"),
    "Vmx": ("mg/kg/min/(pmol/L)", _POSITIVE, "insulin-dependent utilisation, Vmax slope"),
    "Km0": ("mg/kg", _POSITIVE, "utilisation Michaelis constant"),
    "Fsnc": ("mg/kg/min", _POSITIVE, "insulin-independent utilisation (brain, erythrocytes)"),
    "kp1": ("mg/kg/min", _POSITIVE, "endogenous glucose production at zero glucose and insulin"),
    "kp2": ("1/min", _POSITIVE, "liver glucose effectiveness"),
    "kp3": ("mg/kg/min/(pmol/L)", _POSITIVE, "insulin action on the liver"),
    "ki": ("1/min", _POSITIVE, "delay of insulin action on the liver"),
    "ke1": ("1/min", _POSITIVE, "renal glomerular filtration rate"),
    "ke2": ("mg/kg", _POSITIVE, "renal threshold"),
    "m1": ("1/min", _POSITIVE, "insulin transfer liver to plasma"),
    "m2": ("1/min", _POSITIVE, "insulin transfer plasma to liver"),
    "m4": ("1/min", _POSITIVE, "peripheral insulin degradation"),
    "m30": ("1/min", _POSITIVE, "hepatic insulin extraction"),
    "p2u": ("1/min", _POSITIVE, "rate of insulin action on utilisation"),
    "Ib": ("pmol/L", _POSITIVE, "basal plasma insulin"),
    "kd": ("1/min", _POSITIVE, "subcutaneous insulin dissociation"),
    "ka1": ("1/min", _POSITIVE, "absorption of non-monomeric subcutaneous insulin"),
    "ka2": ("1/min", _POSITIVE, "absorption of monomeric subcutaneous insulin"),
    "ksc": ("1/min", _POSITIVE, "plasma to subcutaneous glucose transfer"),
    "u2ss": ("pmol/kg/min", _POSITIVE, "steady-state (basal) insulin delivery"),
    "Gpb": ("mg/kg", _POSITIVE, "basal plasma glucose mass (initial Gp and Gs)"),
    "Gtb": ("mg/kg", _POSITIVE, "basal tissue glucose mass (initial Gt)"),
    "Ipb": ("pmol/kg", _POSITIVE, "basal plasma insulin mass (initial Ip)"),
    "Ilb": ("pmol/kg", _POSITIVE, "basal liver insulin mass (initial Il)"),
    "isc1ss": ("pmol/kg", _POSITIVE, "basal non-monomeric subcutaneous insulin (initial Isc1)"),
    "isc2ss": ("pmol/kg", _POSITIVE, "basal monomeric subcutaneous insulin (initial Isc2)"),
}


# -- the patient tables ----------------------------------------------------------------------


def _data_file(name: str):
    return resources.files(__package__).joinpath("data", name)


@functools.cache
def _table(name: str) -> dict[str, dict[str, str]]:
    with _data_file(name).open("r", newline="") as handle:
        return {row["Name"]: row for row in csv.DictReader(handle)}


def patient_names() -> tuple[str, ...]:
    """The 30 virtual patients: adolescent#001-010, adult#001-010, child#001-010."""
    return tuple(_table("vpatient_params.csv"))


def _row(table: str, name: str) -> dict[str, str]:
    rows = _table(table)
    if name not in rows:
        raise ValueError(f"unknown virtual patient {name!r}: the patients are "
                         f"{', '.join(rows)}")
    return rows[name]


def patient_parameters(name: str) -> dict[str, float]:
    """The model parameters of virtual patient ``name`` (simglucose's vpatient_params.csv)."""
    row = _row("vpatient_params.csv", name)
    return {key: float(row[key]) for key in _PATIENT_PARAMETERS}


def initial_state_table(name: str) -> np.ndarray:
    """simglucose's initial state ``x0_1`` ... ``x0_13`` of patient ``name`` (its CSV columns)."""
    row = _row("vpatient_params.csv", name)
    return np.array([float(row[f"x0_{k:2d}"]) for k in range(1, 14)])


def quest(name: str) -> dict[str, float]:
    """Therapy of patient ``name`` (simglucose's Quest.csv): carbohydrate ratio ``CR`` (g/U),
    correction factor ``CF`` (mg/dL/U), ``Age`` (years), total daily insulin ``TDI`` (U)."""
    row = _row("Quest.csv", name)
    return {key: float(row[key]) for key in ("CR", "CF", "Age", "TDI")}


def basal_insulin_rate(name: str) -> float:
    """The patient's basal insulin rate u2ss BW / 6000 in U/min, as simglucose computes it."""
    p = patient_parameters(name)
    return p["u2ss"] * p["BW"] / PMOL_PER_U


# -- the organ ---------------------------------------------------------------------------------

_DEFAULTS = {  # adolescent#001, the values of data/vpatient_params.csv (checked by the tests)
    "BW": 68.706, "kabs": 0.091043, "kmax": 0.015865, "kmin": 0.0083338, "b": 0.83072,
    "d": 0.32294, "f": 0.9, "Vg": 1.6818, "Vi": 0.048153, "k1": 0.057252, "k2": 0.067738,
    "Vm0": 5.92854753098, "Vmx": 0.074667, "Km0": 260.89, "Fsnc": 1.0, "kp1": 11.5048231338,
    "kp2": 0.023318, "kp3": 0.023253, "ki": 0.0088838, "ke1": 0.0005, "ke2": 339.0,
    "m1": 0.15221, "m2": 0.259067825939, "m4": 0.103627130376, "m30": 0.228315,
    "p2u": 0.021344, "Ib": 97.554, "kd": 0.0185, "ka1": 0.0025, "ka2": 0.0115, "ksc": 0.056,
    "u2ss": 1.21697571391, "Gpb": 250.621836, "Gtb": 176.506559902, "Ipb": 4.697517762,
    "Ilb": 3.19814917262, "isc1ss": 57.951224472, "isc2ss": 93.2258828462,
}


def _patient_parameter(name: str):
    unit, bounds, description = _PATIENT_PARAMETERS[name]
    return parameter(_DEFAULTS[name], unit=unit, bounds=bounds, description=description)


def _where_nonnegative(x: Array, dxdt: Array) -> Array:
    """simglucose's ``(x >= 0) * dxdt``, kept exact."""
    return jnp.where(x >= 0, dxdt, 0.0)


class UVAPadovaT1D(vht.AbstractOrgan):
    """UVA/Padova T1D model as in simglucose 0.2.11 (see the module docstring)."""

    BW: Array = _patient_parameter("BW")
    kabs: Array = _patient_parameter("kabs")
    kmax: Array = _patient_parameter("kmax")
    kmin: Array = _patient_parameter("kmin")
    b: Array = _patient_parameter("b")
    d: Array = _patient_parameter("d")
    f: Array = _patient_parameter("f")
    Vg: Array = _patient_parameter("Vg")
    Vi: Array = _patient_parameter("Vi")
    k1: Array = _patient_parameter("k1")
    k2: Array = _patient_parameter("k2")
    Vm0: Array = _patient_parameter("Vm0")
    Vmx: Array = _patient_parameter("Vmx")
    Km0: Array = _patient_parameter("Km0")
    Fsnc: Array = _patient_parameter("Fsnc")
    kp1: Array = _patient_parameter("kp1")
    kp2: Array = _patient_parameter("kp2")
    kp3: Array = _patient_parameter("kp3")
    ki: Array = _patient_parameter("ki")
    ke1: Array = _patient_parameter("ke1")
    ke2: Array = _patient_parameter("ke2")
    m1: Array = _patient_parameter("m1")
    m2: Array = _patient_parameter("m2")
    m4: Array = _patient_parameter("m4")
    m30: Array = _patient_parameter("m30")
    p2u: Array = _patient_parameter("p2u")
    Ib: Array = _patient_parameter("Ib")
    kd: Array = _patient_parameter("kd")
    ka1: Array = _patient_parameter("ka1")
    ka2: Array = _patient_parameter("ka2")
    ksc: Array = _patient_parameter("ksc")
    u2ss: Array = _patient_parameter("u2ss")
    Gpb: Array = _patient_parameter("Gpb")
    Gtb: Array = _patient_parameter("Gtb")
    Ipb: Array = _patient_parameter("Ipb")
    Ilb: Array = _patient_parameter("Ilb")
    isc1ss: Array = _patient_parameter("isc1ss")
    isc2ss: Array = _patient_parameter("isc2ss")
    carb_rate: Array = parameter(0.0, unit="g/min", bounds=(0.0, 1000.0),
                                 description="carbohydrate eaten per minute (see meal())")
    basal_rate: Array = parameter(math.nan, unit="U/min", bounds=(0.0, 10.0),
                                  description="basal insulin; NaN (default): u2ss BW / 6000")
    bolus_rate: Array = parameter(0.0, unit="U/min", bounds=(0.0, 1000.0),
                                  description="insulin on top of basal (see bolus())")

    states: ClassVar = (
        State("Qsto1", "mg", 0.0, lower=0.0, description="stomach, solid phase",
              advice=_NONNEG_ADVICE),
        State("Qsto2", "mg", 0.0, lower=0.0, description="stomach, liquid phase",
              advice=_NONNEG_ADVICE),
        State("Qgut", "mg", 0.0, lower=0.0, description="intestine", advice=_NONNEG_ADVICE),
        State("Gp", "mg/kg", lower=0.0, description="plasma glucose mass", advice=_NONNEG_ADVICE),
        State("Gt", "mg/kg", lower=0.0, description="tissue glucose mass", advice=_NONNEG_ADVICE),
        State("Ip", "pmol/kg", lower=0.0, description="plasma insulin mass",
              advice=_NONNEG_ADVICE),
        State("X", "pmol/L", description="insulin action on glucose utilisation"),
        State("I1", "pmol/L", description="delayed insulin signal, first stage"),
        State("Id", "pmol/L", description="delayed insulin signal acting on production"),
        State("Il", "pmol/kg", lower=0.0, description="liver insulin mass", advice=_NONNEG_ADVICE),
        State("Isc1", "pmol/kg", lower=0.0, description="subcutaneous insulin, non-monomeric",
              advice=_NONNEG_ADVICE),
        State("Isc2", "pmol/kg", lower=0.0, description="subcutaneous insulin, monomeric",
              advice=_NONNEG_ADVICE),
        State("Gs", "mg/kg", lower=0.0, description="subcutaneous glucose", advice=_NONNEG_ADVICE),
        State("last_Qsto", "mg", 0.0, lower=0.0,
              description="meal memory: Qsto1 + Qsto2 when the current meal started"),
        State("last_foodtaken", "g", 0.0, lower=0.0,
              description="meal memory: carbohydrate eaten since the current meal started"),
        State("is_eating", "dimensionless", 0.0, lower=0.0, upper=1.0,
              description="1 while eating, else 0"),
        State("CHO", "g/min", 0.0, lower=0.0,
              description="carbohydrate eaten in the current minute (held)"),
        State("insulin", "U/min", lower=0.0,
              description="insulin delivered in the current minute (held)"),
    )
    outputs: ClassVar = (
        Output("glucose", "mg/dL", "plasma glucose Gp / Vg"),
        Output("subcutaneous_glucose", "mg/dL", "subcutaneous glucose Gs / Vg (simglucose Gsub)"),
        Output("plasma_insulin", "pmol/L", "plasma insulin Ip / Vi"),
    )
    time_unit: ClassVar = "min"
    sample_period: ClassVar = 1.0  # minutes: simglucose's T1DPatient.SAMPLE_TIME
    # dose records (calibration): a meal of g carbohydrate is eaten as simglucose eats it, an
    # insulin bolus of U is delivered within its minute (``meal`` and ``bolus`` below)
    dose_rules: ClassVar = {
        "carb_rate": ("g", lambda grams, minute, organ: meal(grams, minute, organ=organ)),
        "bolus_rate": ("U", lambda units, minute, organ: bolus(units, minute, organ=organ)),
    }

    def __post_init__(self):
        # basal_rate NaN (the default) stands for the patient's own basal, u2ss BW / 6000
        # U/min; a traced value (under vmap or jit) is taken as given.
        if not isinstance(self.basal_rate, jax.core.Tracer) and bool(
                np.all(np.isnan(np.asarray(self.basal_rate)))):
            self.basal_rate = self.u2ss * self.BW / PMOL_PER_U

    @classmethod
    def from_patient(cls, name: str, **overrides) -> UVAPadovaT1D:
        """Virtual patient ``name`` (e.g. ``"child#007"``) with optional parameter overrides."""
        values = patient_parameters(name)
        values["basal_rate"] = values["u2ss"] * values["BW"] / PMOL_PER_U
        values.update(overrides)
        return cls(**values)

    # -- the model ---------------------------------------------------------------------------

    def initial_state(self):
        zero = jnp.zeros_like(self.Gpb)
        return {
            "Qsto1": zero, "Qsto2": zero, "Qgut": zero, "Gp": self.Gpb, "Gt": self.Gtb,
            "Ip": self.Ipb, "X": zero, "I1": self.Ib, "Id": self.Ib, "Il": self.Ilb,
            "Isc1": self.isc1ss, "Isc2": self.isc2ss, "Gs": self.Gpb, "last_Qsto": zero,
            "last_foodtaken": zero, "is_eating": zero, "CHO": zero,
            "insulin": self.basal_rate + self.bolus_rate,
        }

    def rates(self, t, state, inputs):
        s = state
        d = s["CHO"] * 1000.0  # g/min -> mg/min
        insulin = s["insulin"] * PMOL_PER_U / self.BW  # U/min -> pmol/kg/min

        qsto = s["Qsto1"] + s["Qsto2"]
        dbar = s["last_Qsto"] + s["last_foodtaken"] * 1000.0  # mg
        positive = dbar > 0
        safe_dbar = jnp.where(positive, dbar, 1.0)
        aa = 5.0 / (2.0 * safe_dbar * (1.0 - self.b))
        cc = 5.0 / (2.0 * safe_dbar * self.d)
        kgut = jnp.where(
            positive,
            self.kmin + (self.kmax - self.kmin) / 2.0 * (
                jnp.tanh(aa * (qsto - self.b * safe_dbar))
                - jnp.tanh(cc * (qsto - self.d * safe_dbar)) + 2.0),
            self.kmax)

        dqsto1 = -self.kmax * s["Qsto1"] + d
        dqsto2 = self.kmax * s["Qsto1"] - s["Qsto2"] * kgut
        dqgut = kgut * s["Qsto2"] - self.kabs * s["Qgut"]

        rat = self.f * self.kabs * s["Qgut"] / self.BW
        egpt = self.kp1 - self.kp2 * s["Gp"] - self.kp3 * s["Id"]
        uiit = self.Fsnc
        et = jnp.where(s["Gp"] > self.ke2, self.ke1 * (s["Gp"] - self.ke2), 0.0)
        dgp = (jnp.maximum(egpt, 0.0) + rat - uiit - et - self.k1 * s["Gp"]
               + self.k2 * s["Gt"])
        dgp = _where_nonnegative(s["Gp"], dgp)

        vmt = self.Vm0 + self.Vmx * s["X"]
        uidt = vmt * s["Gt"] / (self.Km0 + s["Gt"])
        dgt = _where_nonnegative(s["Gt"], -uidt + self.k1 * s["Gp"] - self.k2 * s["Gt"])

        dip = (-(self.m2 + self.m4) * s["Ip"] + self.m1 * s["Il"] + self.ka1 * s["Isc1"]
               + self.ka2 * s["Isc2"])
        it = s["Ip"] / self.Vi
        dip = _where_nonnegative(s["Ip"], dip)

        dx = -self.p2u * s["X"] + self.p2u * (it - self.Ib)
        di1 = -self.ki * (s["I1"] - it)
        did = -self.ki * (s["Id"] - s["I1"])
        dil = _where_nonnegative(s["Il"], -(self.m1 + self.m30) * s["Il"] + self.m2 * s["Ip"])
        disc1 = _where_nonnegative(s["Isc1"], insulin - (self.ka1 + self.kd) * s["Isc1"])
        disc2 = _where_nonnegative(s["Isc2"], self.kd * s["Isc1"] - self.ka2 * s["Isc2"])
        dgs = _where_nonnegative(s["Gs"], -self.ksc * s["Gs"] + self.ksc * s["Gp"])

        held = {k: jnp.zeros_like(s[k]) for k in
                ("last_Qsto", "last_foodtaken", "is_eating", "CHO", "insulin")}
        return {"Qsto1": dqsto1, "Qsto2": dqsto2, "Qgut": dqgut, "Gp": dgp, "Gt": dgt,
                "Ip": dip, "X": dx, "I1": di1, "Id": did, "Il": dil, "Isc1": disc1,
                "Isc2": disc2, "Gs": dgs, **held}

    def observe(self, t, state):
        return {"glucose": state["Gp"] / self.Vg,
                "subcutaneous_glucose": state["Gs"] / self.Vg,
                "plasma_insulin": state["Ip"] / self.Vi}

    def held_states(self):
        # the meal memory and the held action change only at clock ticks (zero rates): a
        # resting state keeps them at their values
        return ("last_Qsto", "last_foodtaken", "is_eating", "CHO", "insulin")

    def sample(self, t, state):
        """simglucose's ``T1DPatient.step`` bookkeeping at a minute boundary (lines 84-105)."""
        cho = jnp.asarray(self.carb_rate, dtype=state["CHO"].dtype)
        previous = state["CHO"]
        starts = (cho > 0) & (previous <= 0)  # line 84
        last_qsto = jnp.where(starts, state["Qsto1"] + state["Qsto2"], state["last_Qsto"])
        food = jnp.where(starts, 0.0, state["last_foodtaken"])  # line 87
        eating = jnp.where(starts, 1.0, state["is_eating"])  # line 88
        food = jnp.where(eating > 0, food + cho, food)  # lines 93-94
        eating = jnp.where((cho <= 0) & (previous > 0), 0.0, eating)  # lines 97-99
        return {"last_Qsto": last_qsto, "last_foodtaken": food, "is_eating": eating,
                "CHO": cho, "insulin": self.basal_rate + self.bolus_rate}

    def sample_changes(self, t, state):
        """``sample`` changes a state exactly when its held states change: the one update that
        reads a continuous state (``last_Qsto`` at a meal's start) comes with ``CHO`` going from
        zero to positive, so the held states decide alone and the integrator need not
        interpolate the other fourteen states at every tick (the default compares all)."""
        new = self.sample(t, state)
        held = ("last_foodtaken", "is_eating", "CHO", "insulin")
        return functools.reduce(jnp.logical_or, [
            jnp.asarray(new[k], dtype=state[k].dtype) != state[k] for k in held])


@vht.builder
def patient_twin(name: str = "adolescent#001") -> vht.Twin:
    """Virtual patient ``name`` alone, as organ ``patient`` (the organ name the scenario
    helpers assume)."""
    return vht.Twin({"patient": UVAPadovaT1D.from_patient(name)})


def cohort(names: Sequence[str]) -> UVAPadovaT1D:
    """The patients ``names`` as one organ with a leading member axis on every parameter (for
    ``jax.vmap`` over patients)."""
    organs = [UVAPadovaT1D.from_patient(name) for name in names]
    return jax.tree.map(lambda *xs: jnp.stack(xs), *organs)


# -- scenario helpers --------------------------------------------------------------------------


def _check_minute(minute, what: str):
    if isinstance(minute, jax.core.Tracer):
        return
    value = np.asarray(minute, dtype=float)
    if value.ndim == 0 and not float(value).is_integer():
        raise ValueError(f"{what} at minute {float(value)}: simglucose acts at whole minutes; "
                         "give a whole number of minutes")


def meal(grams: ArrayLike, minute: ArrayLike, *, organ: str = "patient"
         ) -> list[vht.ParameterStep]:
    """A meal of ``grams`` g of carbohydrate announced at ``minute``, eaten as simglucose eats
    it: 5 g/min for floor(grams / 5) minutes, then the remainder (possibly 0 g) in one minute.

    Always two ``ParameterStep`` windows on ``<organ>.carb_rate``, so that scenarios with
    different meal sizes have the same structure and stack (``vht.stack``) or vmap. A meal must
    not overlap another (simglucose would add it to what is still to be eaten).
    """
    _check_minute(minute, "a meal")
    grams = jnp.asarray(grams, dtype=float)
    minute = jnp.asarray(minute, dtype=float)
    full = jnp.floor(grams / EAT_RATE)
    remainder = grams - EAT_RATE * full
    parameter_name = f"{organ}.carb_rate"
    return [
        vht.ParameterStep(parameter_name, EAT_RATE, time=minute, duration=full, unit="g/min"),
        vht.ParameterStep(parameter_name, remainder, time=minute + full, duration=1.0,
                          unit="g/min"),
    ]


def bolus(units: ArrayLike, minute: ArrayLike, *, organ: str = "patient") -> vht.ParameterStep:
    """An insulin bolus of ``units`` U delivered within one minute from ``minute`` (the rate
    ``units`` U/min on top of basal for that minute, as simglucose's pump delivers it)."""
    _check_minute(minute, "a bolus")
    return vht.ParameterStep(f"{organ}.bolus_rate", units, time=minute, duration=1.0,
                             unit="U/min")


def temporary_basal(rate: ArrayLike, minute: ArrayLike, duration: ArrayLike, *,
                    organ: str = "patient") -> vht.ParameterStep:
    """Basal insulin at ``rate`` U/min from ``minute`` for ``duration`` minutes."""
    _check_minute(minute, "a basal change")
    _check_minute(duration, "a basal change lasting")
    return vht.ParameterStep(f"{organ}.basal_rate", rate, time=minute, duration=duration,
                             unit="U/min")


def meal_with_bolus(grams: ArrayLike, minute: ArrayLike, carb_ratio: ArrayLike, *,
                    organ: str = "patient") -> list[vht.ParameterStep]:
    """A meal with a bolus of grams / carb_ratio U (carb_ratio in g/U, Quest.csv's CR) at the
    meal's start: three ``ParameterStep`` windows."""
    return [*meal(grams, minute, organ=organ),
            bolus(jnp.asarray(grams, dtype=float) / carb_ratio, minute, organ=organ)]


def day_scenario(meals: Sequence[tuple[float, float]], carb_ratio: ArrayLike | None = None,
                 *, organ: str = "patient", name: str = "") -> vht.Scenario:
    """Meals ``(minute, grams)`` on top of the patient's basal insulin, each with a bolus of
    grams / carb_ratio U at its start (no boluses when ``carb_ratio`` is None)."""
    items = []
    for minute, grams in meals:
        if carb_ratio is None:
            items += meal(grams, minute, organ=organ)
        else:
            items += meal_with_bolus(grams, minute, carb_ratio, organ=organ)
    return vht.Scenario(items, name=name)
