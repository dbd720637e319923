"""Bergman minimal model of glucose kinetics, with Denti et al. (2010) population values, and a
one-compartment plasma insulin organ to drive it.

Horizon: minutes to hours (an intravenous glucose tolerance test, IVGTT, 0 to 240 min). Time
unit of both organs: minutes. Both are smooth (no clamps, no switches).

**Glucose minimal model** (``BergmanMinimalModel``; Bergman, Ider, Bowden and Cobelli, Am J
Physiol 1979;236:E667-E677; in the form of Denti et al. 2010, Methods, p. E951)::

    dG/dt = -(S_G + X) G + S_G Gb            G plasma glucose (mg/dL)
    dX/dt = -p2 X + p2 S_I (I - Ib)          X insulin action (1/min), I plasma insulin (pmol/L)

vht carries glucose as its mass per body weight, Q = V G (mg/kg), so that a dose in g/kg is a
``vht.Bolus`` into ``Q`` (0.3 g/kg raises G by 300 / V mg/dL) and the unit registry converts
it::

    dQ/dt = S_G (V Gb - Q) - X Q             (mg/kg/min),   G = Q / V

Plasma insulin is an input (pmol/L): in Denti et al. it is the measured insulin, "a known,
error-free input (forcing) function". At the basal state (Q = V Gb, X = 0, I = Ib) every rate
is exactly zero. At steady state X = S_I (I - Ib), so S_G = -d(dG/dt)/dG at basal insulin
(glucose effectiveness) and S_I = -d2(dG/dt)/(dG dI) (insulin sensitivity); the tests recover
both by automatic differentiation.

**Plasma insulin** (``PlasmaInsulin``), for simulating an insulin-modified IVGTT without
measured insulin: one compartment with first-order clearance n and a basal secretion that holds
Ib (Hovorka et al., Physiol Meas 2004;25:905-920, insulin elimination k_e = 0.138 /min and
distribution volume V_I = 0.12 L/kg)::

    dA/dt = -n (A - A_b),   A_b = Ib V_I / 6     A plasma insulin (mU/kg)
    I     = 6 A / V_I                            (pmol/L; 1 mU = 6 pmol, Volund, Am J Clin
                                                  Nutr 1993;58:714, the factor simglucose
                                                  also uses: 1 U = 6000 pmol)

An insulin dose is a ``vht.Bolus`` (or ``vht.Infusion``) into ``A`` in U/kg (or mU/kg/min).
This organ has no glucose-stimulated secretion: the simulated IVGTT carries only the
exogenous insulin above basal, whereas Denti's healthy subjects also secreted their own (it
was in their measured insulin). The return to basal glucose is therefore slower than in a
healthy subject; it is still within 180 min (tests/test_bergman.py).

Parameters:

| organ | parameter | default | unit | source |
|---|---|---|---|---|
| minimal model | S_G | 0.0192 | 1/min | Denti 2010 Table 5 (covariate model), typical value |
| minimal model | S_I | 5.83e-5 | L/min/pmol | Denti 2010 Table 5 |
| minimal model | p2 | 0.0254 | 1/min | Denti 2010 Table 5 |
| minimal model | V | 1.70 | dL/kg | Denti 2010 Table 5, male (female 1.65) |
| minimal model | Gb | 91.34 | mg/dL | Denti 2010 Table 1, mean fasting glucose (204 adults) |
| minimal model | Ib | 26.98 | pmol/L | Denti 2010 Table 1, mean fasting insulin (see below) |
| plasma insulin | Ib | 26.98 | pmol/L | as above (keep equal to the minimal model's Ib) |
| plasma insulin | n | 0.138 | 1/min | Hovorka 2004, k_e |
| plasma insulin | V_I | 0.12 | L/kg | Hovorka 2004, V_I |

Denti et al., Am J Physiol Endocrinol Metab 2010;298:E950-E960, fitted the model to
insulin-modified IVGTTs (0.3 g/kg glucose at 0 min, insulin from 20 min) in 204 healthy adults
by nonlinear mixed effects; the values above are those of REFERENCES.md and of nlmixr2lib's
transcription (``Denti_2010_glucoseMinimal``), which also gives Table 1's basal means (Table 1
prints the insulin's unit as pmol/ml; the value is plausible only in pmol/L, as nlmixr2lib
notes). The
between-subject variability is log-normal: log(theta_i) = log(theta) + eta_i, with the standard
deviations omega of eta that Denti reports as approximately %CV: S_G 21.0 %, V 10.4 %,
S_I 47.5 %, p2 37.9 %, and correlations rho(S_G, V) = -0.779 and rho(S_I, p2) = 0.876 (Denti
2010, Methods and Table 5, as transcribed by nlmixr2lib). ``sample_population`` draws from this
distribution; covariate effects (age, sex, body fat, basal glucose and insulin) are not
modelled. On the arithmetic scale the CV of a log-normal parameter is
sqrt(exp(omega^2) - 1), for example 50.3 % for S_I.
"""

from __future__ import annotations

import math
from typing import ClassVar

import jax
import jax.numpy as jnp
from jaxtyping import Array

import vht
from vht import Input, Output, State, parameter

PMOL_PER_MU = 6.0
"""Insulin: 1 mU = 6 pmol (1 uU/mL = 6 pmol/L; 1 U = 6000 pmol as in simglucose)."""

BASAL_GLUCOSE = 91.34  # mg/dL, Denti 2010 Table 1 (mean fasting plasma glucose)
BASAL_INSULIN = 26.98  # pmol/L, Denti 2010 Table 1 (mean fasting plasma insulin)

TYPICAL = {"S_G": 0.0192, "S_I": 5.83e-5, "p2": 0.0254, "V": 1.70}
"""Denti 2010 Table 5 typical values (V for men)."""

OMEGA = {"S_G": 0.210, "V": 0.104, "S_I": 0.475, "p2": 0.379}
"""Denti 2010 Table 5: standard deviations of the log-normal between-subject variability
(reported as approximate %CV)."""

CORRELATION = {("S_G", "V"): -0.779, ("S_I", "p2"): 0.876}
"""Denti 2010: correlations of the random effects (as transcribed by nlmixr2lib)."""

_POSITIVE = (1e-12, math.inf)


class BergmanMinimalModel(vht.AbstractOrgan):
    """Bergman glucose minimal model with insulin as an input (see the module docstring)."""

    S_G: Array = parameter(TYPICAL["S_G"], unit="1/min", bounds=_POSITIVE,
                           description="glucose effectiveness")
    S_I: Array = parameter(TYPICAL["S_I"], unit="L/min/pmol", bounds=(0.0, math.inf),
                           description="insulin sensitivity")
    p2: Array = parameter(TYPICAL["p2"], unit="1/min", bounds=_POSITIVE,
                          description="rate constant of insulin action")
    V: Array = parameter(TYPICAL["V"], unit="dL/kg", bounds=_POSITIVE,
                         description="glucose distribution volume per body weight")
    Gb: Array = parameter(BASAL_GLUCOSE, unit="mg/dL", bounds=(1.0, 1000.0),
                          description="basal plasma glucose")
    Ib: Array = parameter(BASAL_INSULIN, unit="pmol/L", bounds=(0.0, 10_000.0),
                          description="basal plasma insulin")

    states: ClassVar = (
        State("Q", "mg/kg", lower=0.0, description="plasma glucose mass per body weight, V G",
              advice="Glucose fell below zero: is S_I or the insulin dose implausibly large?"),
        State("X", "1/min", description="insulin action on glucose disappearance"),
    )
    inputs: ClassVar = (Input("insulin", "pmol/L", description="plasma insulin concentration"),)
    outputs: ClassVar = (Output("glucose", "mg/dL", "plasma glucose Q / V"),)
    time_unit: ClassVar = "min"

    def initial_state(self):
        return {"Q": self.V * self.Gb, "X": jnp.zeros_like(self.V)}

    def rates(self, t, state, inputs):
        q, x = state["Q"], state["X"]
        return {
            "Q": self.S_G * (self.V * self.Gb - q) - x * q,
            "X": -self.p2 * x + self.p2 * self.S_I * (inputs["insulin"] - self.Ib),
        }

    def observe(self, t, state):
        return {"glucose": state["Q"] / self.V}


class PlasmaInsulin(vht.AbstractOrgan):
    """One-compartment plasma insulin with basal secretion (see the module docstring)."""

    Ib: Array = parameter(BASAL_INSULIN, unit="pmol/L", bounds=(0.0, 10_000.0),
                          description="basal plasma insulin")
    n: Array = parameter(0.138, unit="1/min", bounds=_POSITIVE,
                         description="first-order insulin clearance rate")
    V_I: Array = parameter(0.12, unit="L/kg", bounds=_POSITIVE,
                           description="insulin distribution volume per body weight")

    states: ClassVar = (
        State("A", "mU/kg", lower=0.0, description="plasma insulin per body weight"),
    )
    outputs: ClassVar = (Output("concentration", "pmol/L", "plasma insulin 6 A / V_I"),)
    time_unit: ClassVar = "min"

    def basal_amount(self) -> Array:
        return self.Ib * self.V_I / PMOL_PER_MU

    def initial_state(self):
        return {"A": self.basal_amount()}

    def rates(self, t, state, inputs):
        return {"A": -self.n * (state["A"] - self.basal_amount())}

    def observe(self, t, state):
        return {"concentration": PMOL_PER_MU * state["A"] / self.V_I}


@vht.builder
def minimal_model_twin(S_G: float = TYPICAL["S_G"], S_I: float = TYPICAL["S_I"],
                       p2: float = TYPICAL["p2"], V: float = TYPICAL["V"],
                       Gb: float = BASAL_GLUCOSE, Ib: float = BASAL_INSULIN) -> vht.Twin:
    """The minimal model (organ ``glucose``) driven by plasma insulin (organ ``insulin``), both
    at the same basal insulin Ib."""
    return vht.Twin(
        {"glucose": BergmanMinimalModel(S_G=S_G, S_I=S_I, p2=p2, V=V, Gb=Gb, Ib=Ib),
         "insulin": PlasmaInsulin(Ib=Ib)},
        connections=[("insulin.concentration", "glucose.insulin")],
    )


def ivgtt(glucose_dose: float = 0.3, insulin_dose: float = 0.03, insulin_time: float = 20.0,
          insulin_duration: float | None = None) -> vht.Scenario:
    """An insulin-modified IVGTT on ``minimal_model_twin``: ``glucose_dose`` g/kg of glucose at
    0 min and ``insulin_dose`` U/kg of insulin at ``insulin_time`` min, as a bolus or, with
    ``insulin_duration`` (min), as a constant infusion (Denti's protocol infused it over 5 min).
    """
    items = [vht.Bolus("glucose.Q", glucose_dose, time=0.0, unit="g/kg")]
    if insulin_duration is None:
        items.append(vht.Bolus("insulin.A", insulin_dose, time=insulin_time, unit="U/kg"))
    else:
        items.append(vht.Infusion("insulin.A", insulin_dose / insulin_duration,
                                  start=insulin_time, duration=insulin_duration,
                                  unit="U/kg/min"))
    return vht.Scenario(items, name="insulin-modified IVGTT")


def sample_population(key: Array, n: int, *, correlated: bool = True) -> dict[str, Array]:
    """``n`` virtual subjects' (S_G, S_I, p2, V), log-normal around Denti's typical values with
    Denti's omegas (and correlations unless ``correlated=False``): a dict of arrays of shape
    ``(n,)`` keyed by parameter name."""
    names = ("S_G", "V", "S_I", "p2")
    omega = jnp.array([OMEGA[k] for k in names])
    corr = jnp.eye(4)
    if correlated:
        for (a, b), rho in CORRELATION.items():
            i, j = names.index(a), names.index(b)
            corr = corr.at[i, j].set(rho).at[j, i].set(rho)
    covariance = corr * omega[:, None] * omega[None, :]
    eta = jax.random.multivariate_normal(key, jnp.zeros(4), covariance, shape=(n,),
                                         method="cholesky")
    return {k: TYPICAL[k] * jnp.exp(eta[:, i]) for i, k in enumerate(names)}
