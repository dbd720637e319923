"""Whole-body physiologically based pharmacokinetics (PBPK), flow-limited, with a well-stirred
liver; organ blood flows follow the cardiac output, an input.

Horizon: minutes to days (an IV bolus, an infusion, an oral dose and its elimination). Time unit
of the organ: minutes, the unit of blood flows (the other PK organs work in hours; the twin
converts). The cardiac output it reads should be beat-averaged (a pulsatile flow would make the
organ flows pulsate with every beat).

Structure (amounts A in mg; volumes V in L; blood flows Q in L/min)::

    venous blood --Q_co--> lung --Q_co--> arterial blood
    arterial blood --Q_t--> tissue t --Q_t--> venous blood      t = kidney, muscle, fat, rest
    arterial blood --Q_gut--> gut --Q_gut (portal vein)--> liver
    arterial blood --Q_ha (hepatic artery)--> liver --Q_h = Q_ha + Q_gut--> venous blood
    liver --fu CL_int C_liver/Kp_liver--> eliminated    (well-stirred hepatic metabolism)
    kidney --CL_R C_kidney/Kp_kidney--> eliminated        (renal excretion)
    depot (gut lumen) --ka A_depot--> gut                  (oral absorption)

Every tissue is flow limited: the blood leaving it is in equilibrium with the tissue, so its
concentration is ``C_t B:P / Kp_t`` (Kp_t is the tissue:plasma partition coefficient, B:P the
blood:plasma concentration ratio, C_t = A_t / V_t). The flows are fractions f_t of the cardiac
output Q_co (``Q_t = f_t Q_co``; the rest of the body takes what the named organs leave, so the
flows balance at any cardiac output)::

    dA_t/dt     = Q_t (C_art - C_t B:P / Kp_t)                      each tissue t
    dA_liver/dt = Q_ha C_art + Q_gut C_gut B:P / Kp_gut - Q_h C_liver B:P / Kp_liver
                  - fu CL_int C_liver / Kp_liver
    dA_ven/dt   = sum_t Q_t C_t B:P / Kp_t + Q_h C_liver B:P / Kp_liver - Q_co C_ven
    dA_art/dt   = Q_co C_lung B:P / Kp_lung - Q_co C_art
    C_p         = C_ven / B:P            (venous plasma: the output ``concentration``)

Mass is conserved by construction: the organ is a closed ``vht.network.Network``. Each tissue
is a ``VolumeOfDistribution`` of effective volume ``V_t Kp_t / B:P``, so its potential is the
blood concentration leaving it; each blood vessel is a one-way ``FirstOrderTransfer`` whose rate
constant is the blood flow (flux = Q x the upstream potential); metabolism and excretion are
``FirstOrderTransfer``s into the ``eliminated`` compartment. Every flux is subtracted from one
state and added to another, so depot + body + eliminated equals the dose to round-off.

Hepatic clearance follows the well-stirred model (Pang and Rowland, J Pharmacokinet Biopharm
1977;5:625). At steady state the liver extracts::

    E_H = fu_b CL_int / (Q_h + fu_b CL_int),     fu_b = fu / B:P
    CL_H (blood) = Q_h E_H = Q_h fu_b CL_int / (Q_h + fu_b CL_int)

and the organ reproduces this exactly (the tests solve its linear steady state). For a
high-extraction drug CL_H approaches Q_h, so a fall in cardiac output (hemorrhage, heart
failure) lowers clearance: connect the circulation's ``cardiac_output`` to this organ's
``cardiac_output``. The flow fractions keep their resting values: the redistribution of flow
away from the splanchnic bed in shock is not modelled. A dose absorbed into the gut passes the
liver first, so with fa = ``fraction_absorbed`` and no gut-wall metabolism the oral
bioavailability is exactly ``fa (1 - E_H)``.

Default parameters: the reference adult male (73 kg) of ICRP 89 [1], with tissue masses taken
as volumes (1 kg = 1 L), and lidocaine (below). The ICRP values are as tabulated in the open
voriconazole PBPK models of Metrum Research Group [2], which cite ICRP 89; the split of the
blood volume into arterial and venous blood is theirs too.

| parameter | default | unit | source |
|---|---|---|---|
| venous_blood_volume | 3.948 | L | [1] blood 5.6 L, split as in [2] |
| arterial_blood_volume | 1.652 | L | as above |
| lung_volume | 0.5 | L | [1] |
| liver_volume | 1.8 | L | [1] |
| gut_volume | 0.8 | L | [1]: gut wall 0.65 + spleen 0.15 (the portal organs) |
| kidney_volume | 0.31 | L | [1] |
| muscle_volume | 29.0 | L | [1] |
| fat_volume | 18.2 | L | [1] adipose tissue |
| rest_volume | 16.79 | L | 73 kg less the above: bone 10.5, skin 3.3, brain 1.45, ... |
| hepatic_artery_fraction | 0.065 | 1 | [1], of cardiac output |
| gut_flow_fraction | 0.18 | 1 | [1]: gut 0.15 + spleen 0.03 (portal vein) |
| kidney_flow_fraction | 0.19 | 1 | [1] |
| muscle_flow_fraction | 0.17 | 1 | [1] |
| fat_flow_fraction | 0.05 | 1 | [1] |
| (rest: 1 - the above) | 0.345 | 1 | bone, brain, heart, skin 0.26 + the unassigned 0.085 |
| lung_kp | 5.33 | 1 | lidocaine by [3] (``rodgers_rowland_kp``) |
| liver_kp | 6.05 | 1 | as above |
| gut_kp | 3.92 | 1 | as above; gut and spleen weighted by mass |
| kidney_kp | 6.54 | 1 | as above |
| muscle_kp | 2.42 | 1 | as above |
| fat_kp | 1.61 | 1 | as above |
| rest_kp | 1.68 | 1 | as above; bone, skin, brain, heart weighted by mass |
| blood_plasma_ratio | 0.84 | 1 | lidocaine [6] |
| fraction_unbound | 0.30 | 1 | lidocaine [4] |
| intrinsic_clearance | 8.28 | L/min | lidocaine, unbound; from E_H = 0.65 [5] (below) |
| renal_clearance | 0.025 | L/min | lidocaine, of kidney-outflow plasma; fe 0.03 [7] |
| ka | 0.03 | 1/min | illustrative: absorption half-life 23 min |
| fraction_absorbed | 1.0 | 1 | complete absorption |
| lag_time | 0.0 | min |  |

The resting cardiac output, the default of the input ``cardiac_output``, is 6.5 L/min [1].

Lidocaine (lignocaine), ``lidocaine_pbpk()``:

| quantity | value | source |
|---|---|---|
| log P (octanol:water) | 2.41 | [4] |
| pKa (base) | 8.01 | [4] |
| fu (plasma) | 0.30 | [4] |
| B:P | 0.84 | [6] |
| Kp | see above | [3] with log P, pKa, fu, B:P and hematocrit 0.45 |
| E_H at rest | 0.65 | 1 - F, oral bioavailability F = 0.35 [5], absorption complete |
| CL_int (unbound) | 8.28 L/min | E_H / (1 - E_H) Q_h / fu_b at the resting Q_h of 1.59 L/min |
| CL_R | 0.025 L/min | fe = 0.03 unchanged in urine [7] x plasma clearance of ~0.85 L/min |

What the model predicts for lidocaine; ``tests/test_pbpk.py`` asserts each within 2-fold of
the published value (a range: its geometric mean):

| quantity | model | published | ratio |
|---|---|---|---|
| blood clearance | 14.6 mL/min/kg | 13-17 mL/min/kg [8] | 0.98 |
| plasma clearance | 12.2 mL/min/kg | 12.3 mL/min/kg [9] | 1.00 |
| Vss, plasma basis | 2.07 L/kg | 1.9 L/kg [9] | 1.09 |
| Vss, blood basis | 2.46 L/kg | 0.6-4.5 L/kg [8] | 1.50 |
| terminal half-life | 2.62 h | 1.5-2 h [7]; 148 min [9] | 1.50; 1.06 |
| rise of the steady state, cardiac index 3.3 -> 1.9 | x 1.46 | x 1.6 [10] | |

The partition coefficients of [3], computed with rat tissue composition, put the volume at the
upper end of the published values (the often quoted 1.1-1.3 L/kg are 1.6-1.9 times smaller),
and the terminal half-life is correspondingly long; clearance follows from the oral
bioavailability and the ICRP liver blood flow, not from a fit to clearance data.

References (bibliographic details of [6] and [9] are as we recall them; their numbers were not
re-checked against the printed papers):

1. ICRP Publication 89. Basic anatomical and physiological data for use in radiological
   protection: reference values. Ann ICRP 2002;32(3-4).
2. Metrum Research Group, voriconazole PBPK model (mrgsolve),
   github.com/metrumresearchgroup/Voriconazole-PBPK; its "simple PBPK" for the blood split.
3. Rodgers T, Leahy D, Rowland M. Physiologically based pharmacokinetic modeling 1: predicting
   the tissue distribution of moderate-to-strong bases. J Pharm Sci 2005;94:1259-1276
   (tissue composition: ``data/rodgers_rowland_tissue_composition.csv`` and its README).
4. Open Systems Pharmacology, lidocaine PBPK model of the hepatic impairment qualification,
   github.com/Open-Systems-Pharmacology/Qualification-HI, Lidocaine_healthy.md, Table 29.
5. Boyes RN, Scott DB, Jebson PJ, Godman MJ, Julian DG. Pharmacokinetics of lidocaine in man.
   Clin Pharmacol Ther 1971;12:105-116 ("approximately 35 per cent of the oral doses reached the
   systemic circulation").
6. Tucker GT, Mather LE. Clinical pharmacokinetics of local anaesthetics. Clin Pharmacokinet
   1979;4:241-278.
7. Swiss product information of lidocaine injection (compendium.ch / oddb.org): elimination
   half-life after an IV bolus 1.5-2.0 h; about 3 % excreted unchanged in urine.
8. Bennett PN, Aarons LJ, Bending MR, Steiner JA, Rowland M. Pharmacokinetics of lidocaine and
   its deethylated metabolite. J Pharmacokinet Biopharm 1982;10:265-281 (healthy volunteers,
   blood: clearance 13-17 mL/min/kg, Vss 0.6-4.5 L/kg, terminal half-life 50-231 min).
9. Collinsworth KA, Strong JM, Atkinson AJ, Winkle RA, Perlroth F, Harrison DC.
   Pharmacokinetics and metabolism of lidocaine in patients with renal failure. Clin Pharmacol
   Ther 1975;18:59-64 (plasma: clearance 12.3 mL/min/kg, terminal half-life 148 min, total
   volume of distribution 1.9 L/kg, "similar to those values reported for normal subjects").
10. Stenson RE, Constantino RT, Harrison DC. Interrelationships of hepatic blood flow, cardiac
    output, and blood levels of lidocaine in man. Circulation 1971;43:205-211 (arterial steady
    state 2.4 vs 1.5 ug/mL at cardiac index 1.9 vs 3.3 L/min/m2).
"""

from __future__ import annotations

import csv
import functools
import math
from importlib import resources
from typing import ClassVar

import jax
import numpy as np
from jaxtyping import Array

import vht
from vht import Input, Output, State, parameter
from vht.network import Depot, FirstOrderTransfer, Network, VolumeOfDistribution

_POSITIVE = (1e-12, math.inf)
_FRACTION = (0.0, 1.0)

RESTING_CARDIAC_OUTPUT = 6.5  # L/min, ICRP 89 reference adult male at rest
REFERENCE_BODY_MASS = 73.0  # kg, ICRP 89 reference adult male

TISSUES = ("lung", "liver", "gut", "kidney", "muscle", "fat", "rest")
"""The tissue compartments of ``PBPK``, in the order of its states."""


class PBPK(vht.AbstractOrgan):
    """Flow-limited whole-body PBPK with a well-stirred liver (see the module docstring)."""

    venous_blood_volume: Array = parameter(3.948, unit="L", bounds=_POSITIVE)
    arterial_blood_volume: Array = parameter(1.652, unit="L", bounds=_POSITIVE)
    lung_volume: Array = parameter(0.5, unit="L", bounds=_POSITIVE)
    liver_volume: Array = parameter(1.8, unit="L", bounds=_POSITIVE)
    gut_volume: Array = parameter(0.8, unit="L", bounds=_POSITIVE,
                                  description="gut wall and spleen (drained by the portal vein)")
    kidney_volume: Array = parameter(0.31, unit="L", bounds=_POSITIVE)
    muscle_volume: Array = parameter(29.0, unit="L", bounds=_POSITIVE)
    fat_volume: Array = parameter(18.2, unit="L", bounds=_POSITIVE)
    rest_volume: Array = parameter(16.79, unit="L", bounds=_POSITIVE,
                                   description="the remainder of the body")

    hepatic_artery_fraction: Array = parameter(0.065, unit="dimensionless", bounds=_FRACTION,
                                               description="of cardiac output")
    gut_flow_fraction: Array = parameter(0.18, unit="dimensionless", bounds=_FRACTION,
                                         description="of cardiac output (portal vein flow)")
    kidney_flow_fraction: Array = parameter(0.19, unit="dimensionless", bounds=_FRACTION)
    muscle_flow_fraction: Array = parameter(0.17, unit="dimensionless", bounds=_FRACTION)
    fat_flow_fraction: Array = parameter(0.05, unit="dimensionless", bounds=_FRACTION)

    lung_kp: Array = parameter(5.33, unit="dimensionless", bounds=_POSITIVE,
                               description="tissue:plasma partition coefficient")
    liver_kp: Array = parameter(6.05, unit="dimensionless", bounds=_POSITIVE)
    gut_kp: Array = parameter(3.92, unit="dimensionless", bounds=_POSITIVE)
    kidney_kp: Array = parameter(6.54, unit="dimensionless", bounds=_POSITIVE)
    muscle_kp: Array = parameter(2.42, unit="dimensionless", bounds=_POSITIVE)
    fat_kp: Array = parameter(1.61, unit="dimensionless", bounds=_POSITIVE)
    rest_kp: Array = parameter(1.68, unit="dimensionless", bounds=_POSITIVE)

    blood_plasma_ratio: Array = parameter(0.84, unit="dimensionless", bounds=(0.05, 20.0),
                                          description="blood:plasma concentration ratio B:P")
    fraction_unbound: Array = parameter(0.30, unit="dimensionless", bounds=(1e-6, 1.0),
                                        description="unbound fraction in plasma fu")
    intrinsic_clearance: Array = parameter(8.28, unit="L/min", bounds=(0.0, math.inf),
                                           description="unbound hepatic intrinsic clearance")
    renal_clearance: Array = parameter(0.025, unit="L/min", bounds=(0.0, math.inf),
                                       description="renal clearance of kidney-outflow plasma")
    ka: Array = parameter(0.03, unit="1/min", bounds=_POSITIVE,
                          description="absorption rate constant from the gut lumen")
    fraction_absorbed: Array = parameter(1.0, unit="dimensionless", bounds=_FRACTION,
                                         description="fraction of an oral dose absorbed")
    lag_time: Array = parameter(0.0, unit="min", bounds=(0.0, 2880.0),
                                description="oral absorption lag")

    states: ClassVar = (
        State("depot", "mg", lower=0.0, description="oral dose in the gut lumen"),
        State("venous_blood", "mg", lower=0.0, description="IV doses and infusions go here"),
        State("arterial_blood", "mg", lower=0.0),
        State("lung", "mg", lower=0.0),
        State("liver", "mg", lower=0.0),
        State("gut", "mg", lower=0.0, description="gut wall and spleen"),
        State("kidney", "mg", lower=0.0),
        State("muscle", "mg", lower=0.0),
        State("fat", "mg", lower=0.0),
        State("rest", "mg", lower=0.0),
        State("eliminated", "mg", lower=0.0,
              description="metabolised in the liver or excreted by the kidney"),
    )
    inputs: ClassVar = (
        Input("cardiac_output", "L/min", RESTING_CARDIAC_OUTPUT,
              "beat-averaged cardiac output; organ flows are fixed fractions of it"),
    )
    outputs: ClassVar = (
        Output("concentration", "mg/L", "venous plasma concentration"),
        Output("blood_concentration", "mg/L", "venous whole-blood concentration"),
        Output("arterial_plasma_concentration", "mg/L"),
        Output("lung_concentration", "mg/L", "tissue concentration (mg per L of tissue)"),
        Output("liver_concentration", "mg/L"),
        Output("gut_concentration", "mg/L"),
        Output("kidney_concentration", "mg/L"),
        Output("muscle_concentration", "mg/L"),
        Output("fat_concentration", "mg/L"),
        Output("rest_concentration", "mg/L"),
        Output("amount_in_body", "mg", "blood and tissues (not the gut lumen, not eliminated)"),
    )
    time_unit: ClassVar = "min"

    def __check_init__(self):
        fractions = (self.hepatic_artery_fraction, self.gut_flow_fraction,
                     self.kidney_flow_fraction, self.muscle_flow_fraction,
                     self.fat_flow_fraction)
        if any(isinstance(f, jax.core.Tracer) for f in fractions):
            return
        total = float(np.sum([np.max(np.asarray(f)) for f in fractions]))
        if total >= 1.0:
            raise ValueError(f"PBPK: the organ flow fractions (hepatic artery, gut, kidney, "
                             f"muscle, fat) sum to {total:.3f}; they must leave a positive "
                             "fraction of the cardiac output for the rest of the body")

    # -- physiology ------------------------------------------------------------------------

    def blood_flows(self, cardiac_output: Array) -> dict[str, Array]:
        """Blood flows (L/min) of every vessel at ``cardiac_output`` (L/min)."""
        q_ha = self.hepatic_artery_fraction * cardiac_output
        q_gut = self.gut_flow_fraction * cardiac_output
        q_kidney = self.kidney_flow_fraction * cardiac_output
        q_muscle = self.muscle_flow_fraction * cardiac_output
        q_fat = self.fat_flow_fraction * cardiac_output
        q_rest = cardiac_output - (q_ha + q_gut + q_kidney + q_muscle + q_fat)
        return {"cardiac_output": cardiac_output, "hepatic_artery": q_ha, "gut": q_gut,
                "hepatic_vein": q_ha + q_gut, "kidney": q_kidney, "muscle": q_muscle,
                "fat": q_fat, "rest": q_rest}

    def hepatic_blood_flow(self, cardiac_output: Array = RESTING_CARDIAC_OUTPUT) -> Array:
        """Q_h = Q_ha + Q_portal (L/min)."""
        return (self.hepatic_artery_fraction + self.gut_flow_fraction) * cardiac_output

    def hepatic_extraction(self, cardiac_output: Array = RESTING_CARDIAC_OUTPUT) -> Array:
        """Well-stirred steady-state extraction ratio E_H = fu_b CL_int / (Q_h + fu_b CL_int)."""
        metabolic = self.fraction_unbound / self.blood_plasma_ratio * self.intrinsic_clearance
        return metabolic / (self.hepatic_blood_flow(cardiac_output) + metabolic)

    def hepatic_clearance(self, cardiac_output: Array = RESTING_CARDIAC_OUTPUT) -> Array:
        """Well-stirred hepatic blood clearance Q_h E_H (L/min; times B:P for plasma)."""
        return self.hepatic_blood_flow(cardiac_output) * self.hepatic_extraction(cardiac_output)

    def steady_state_volume(self, basis: str = "plasma") -> Array:
        """Vss (L): blood + sum V_t Kp_t / B:P on the blood basis; times B:P on the plasma one."""
        tissues = sum(getattr(self, f"{t}_volume") * getattr(self, f"{t}_kp") for t in TISSUES)
        blood = (self.venous_blood_volume + self.arterial_blood_volume
                 + tissues / self.blood_plasma_ratio)
        if basis == "blood":
            return blood
        if basis == "plasma":
            return blood * self.blood_plasma_ratio
        raise ValueError(f"basis must be 'plasma' or 'blood', not {basis!r}")

    # -- the model -------------------------------------------------------------------------

    def network(self, cardiac_output: Array) -> Network:
        q = self.blood_flows(cardiac_output)
        bp = self.blood_plasma_ratio

        def tissue(volume, kp):  # potential: the blood concentration leaving the tissue
            return VolumeOfDistribution(volume * kp / bp)

        return Network(
            compartments={
                "depot": Depot(),
                "venous_blood": VolumeOfDistribution(self.venous_blood_volume),
                "arterial_blood": VolumeOfDistribution(self.arterial_blood_volume),
                "lung": tissue(self.lung_volume, self.lung_kp),
                "liver": tissue(self.liver_volume, self.liver_kp),
                "gut": tissue(self.gut_volume, self.gut_kp),
                "kidney": tissue(self.kidney_volume, self.kidney_kp),
                "muscle": tissue(self.muscle_volume, self.muscle_kp),
                "fat": tissue(self.fat_volume, self.fat_kp),
                "rest": tissue(self.rest_volume, self.rest_kp),
                "eliminated": Depot(),
            },
            conductances={
                "absorption": FirstOrderTransfer(self.ka),
                "pulmonary_artery": FirstOrderTransfer(q["cardiac_output"]),
                "pulmonary_vein": FirstOrderTransfer(q["cardiac_output"]),
                "hepatic_artery": FirstOrderTransfer(q["hepatic_artery"]),
                "gut_artery": FirstOrderTransfer(q["gut"]),
                "portal_vein": FirstOrderTransfer(q["gut"]),
                "hepatic_vein": FirstOrderTransfer(q["hepatic_vein"]),
                "kidney_artery": FirstOrderTransfer(q["kidney"]),
                "kidney_vein": FirstOrderTransfer(q["kidney"]),
                "muscle_artery": FirstOrderTransfer(q["muscle"]),
                "muscle_vein": FirstOrderTransfer(q["muscle"]),
                "fat_artery": FirstOrderTransfer(q["fat"]),
                "fat_vein": FirstOrderTransfer(q["fat"]),
                "rest_artery": FirstOrderTransfer(q["rest"]),
                "rest_vein": FirstOrderTransfer(q["rest"]),
                # the potentials are blood concentrations: unbound plasma = potential fu / B:P
                "hepatic_metabolism": FirstOrderTransfer(
                    self.fraction_unbound * self.intrinsic_clearance / bp),
                "renal_excretion": FirstOrderTransfer(self.renal_clearance / bp),
            },
            links=(
                ("absorption", "depot", "gut"),
                ("pulmonary_artery", "venous_blood", "lung"),
                ("pulmonary_vein", "lung", "arterial_blood"),
                ("hepatic_artery", "arterial_blood", "liver"),
                ("gut_artery", "arterial_blood", "gut"),
                ("portal_vein", "gut", "liver"),
                ("hepatic_vein", "liver", "venous_blood"),
                ("kidney_artery", "arterial_blood", "kidney"),
                ("kidney_vein", "kidney", "venous_blood"),
                ("muscle_artery", "arterial_blood", "muscle"),
                ("muscle_vein", "muscle", "venous_blood"),
                ("fat_artery", "arterial_blood", "fat"),
                ("fat_vein", "fat", "venous_blood"),
                ("rest_artery", "arterial_blood", "rest"),
                ("rest_vein", "rest", "venous_blood"),
                ("hepatic_metabolism", "liver", "eliminated"),
                ("renal_excretion", "kidney", "eliminated"),
            ),
        )

    def rates(self, t, state, inputs):
        return self.network(inputs["cardiac_output"]).rates(t, state)

    def observe(self, t, state):
        blood = state["venous_blood"] / self.venous_blood_volume
        out = {
            "concentration": blood / self.blood_plasma_ratio,
            "blood_concentration": blood,
            "arterial_plasma_concentration":
                state["arterial_blood"] / self.arterial_blood_volume / self.blood_plasma_ratio,
            "lung_concentration": state["lung"] / self.lung_volume,
            "liver_concentration": state["liver"] / self.liver_volume,
            "gut_concentration": state["gut"] / self.gut_volume,
            "kidney_concentration": state["kidney"] / self.kidney_volume,
            "muscle_concentration": state["muscle"] / self.muscle_volume,
            "fat_concentration": state["fat"] / self.fat_volume,
            "rest_concentration": state["rest"] / self.rest_volume,
        }
        out["amount_in_body"] = (state["venous_blood"] + state["arterial_blood"] + state["lung"]
                                 + state["liver"] + state["gut"] + state["kidney"]
                                 + state["muscle"] + state["fat"] + state["rest"])
        return out

    def conserved(self):
        return (tuple(s.name for s in self.states),)

    def dose(self, state, amount, time):
        """An oral dose into ``depot`` arrives as ``fraction_absorbed * amount`` after
        ``lag_time`` (minutes, the organ's and the framework's unit); others unchanged."""
        if state != "depot":
            return amount, time
        return self.fraction_absorbed * amount, time + self.lag_time


class FixedCardiacOutput(vht.AbstractOrgan):
    """A prescribed cardiac output, for running ``PBPK`` without a circulation model.

    Stateless: its output ``cardiac_output`` is its parameter, so a ``vht.ParameterStep`` on
    ``"<name>.cardiac_output"`` makes a low-flow what-if (a hemorrhage, heart failure), and a
    cohort can vmap over it. Connect ``("<name>.cardiac_output", "<drug>.cardiac_output")``.
    """

    cardiac_output: Array = parameter(RESTING_CARDIAC_OUTPUT, unit="L/min", bounds=(0.0, 40.0),
                                      description="ICRP 89 reference adult male at rest")

    outputs: ClassVar = (Output("cardiac_output", "L/min"),)

    def rates(self, t, state, inputs):
        return {}

    def observe(self, t, state):
        return {"cardiac_output": self.cardiac_output}


# -- tissue partition coefficients (Rodgers, Leahy and Rowland 2005) --------------------------


@functools.cache
def tissue_composition() -> dict[str, dict[str, float]]:
    """The Rodgers-Rowland tissue composition table (``data/``, with its sources)."""
    path = resources.files(__package__).joinpath("data", "rodgers_rowland_tissue_composition.csv")
    with path.open() as handle:
        rows = list(csv.DictReader(handle))
    return {row["tissue"]: {k: (float(v) if v else math.nan) for k, v in row.items()
                            if k != "tissue"} for row in rows}


def rodgers_rowland_kp(log_p: float, pka: float, fraction_unbound: float,
                       blood_plasma_ratio: float, hematocrit: float = 0.45) -> dict[str, float]:
    """Tissue:plasma partition coefficients Kp of a moderate-to-strong base (pKa >= 7).

    Rodgers T, Leahy D, Rowland M, J Pharm Sci 2005;94:1259 (their equations for bases): the
    unbound tissue:plasma ratio is

        Kpu = f_EW + X/Y f_IW + (P f_NL + (0.3 P + 0.7) f_NP)/Y + Ka_AP [AP]_T (X - 1)/Y

    with X = 1 + 10^(pKa - pH_IW), Y = 1 + 10^(pKa - pH_p) (pH_IW 7.0, pH_p 7.4), P the
    octanol:water partition coefficient (the vegetable oil:water one, log P_vo = 1.115 log P -
    1.35, in adipose), and the affinity for acidic phospholipids Ka_AP found from the red blood
    cells, whose Kpu_BC = (Hct - 1 + B:P)/(Hct fu) (pH_BC 7.22). Kp = fu Kpu. Returns Kp for
    every tissue of the composition table.
    """
    if pka < 7.0:
        raise ValueError(f"rodgers_rowland_kp implements the equations for moderate-to-strong "
                         f"bases (pKa >= 7), not pKa {pka}")
    table = tissue_composition()
    p = 10.0**log_p
    p_oil = 10.0 ** (1.115 * log_p - 1.35)
    x = 1.0 + 10.0 ** (pka - 7.0)  # intracellular water
    y = 1.0 + 10.0 ** (pka - 7.4)  # plasma
    z = 1.0 + 10.0 ** (pka - 7.22)  # red blood cells
    rbc = table["red_blood_cells"]
    kpu_bc = (hematocrit - 1.0 + blood_plasma_ratio) / (hematocrit * fraction_unbound)
    ka_ap = ((kpu_bc - z / y * rbc["intracellular_water"]
              - (p * rbc["neutral_lipid"] + (0.3 * p + 0.7) * rbc["neutral_phospholipid"]) / y)
             * y / (rbc["acidic_phospholipid_mg_per_g"] * (z - 1.0)))
    kp = {}
    for name, t in table.items():
        if name in ("red_blood_cells", "plasma"):
            continue
        pt = p_oil if name == "adipose" else p
        kpu = (t["extracellular_water"] + x / y * t["intracellular_water"]
               + (pt * t["neutral_lipid"] + (0.3 * pt + 0.7) * t["neutral_phospholipid"]) / y
               + ka_ap * t["acidic_phospholipid_mg_per_g"] * (x - 1.0) / y)
        kp[name] = fraction_unbound * kpu
    return kp


# ICRP 89 reference male tissue masses (kg) that the lumped compartments weight their Kp with.
_LUMPS = {
    "lung": {"lung": 0.5},
    "liver": {"liver": 1.8},
    "gut": {"gut": 0.65, "spleen": 0.15},
    "kidney": {"kidney": 0.31},
    "muscle": {"muscle": 29.0},
    "fat": {"adipose": 18.2},
    "rest": {"bone": 10.5, "skin": 3.3, "brain": 1.45, "heart": 0.33},
}

# Lidocaine (lignocaine). See ``lidocaine_pbpk``.
LIDOCAINE = {
    "log_p": 2.41,
    "pka": 8.01,
    "fraction_unbound": 0.30,
    "blood_plasma_ratio": 0.84,
    "oral_bioavailability": 0.35,
    "renal_clearance": 0.025,  # L/min: 3 % excreted unchanged x plasma clearance ~0.85 L/min
}

# Published disposition of lidocaine after IV dosing, for comparison (see ``lidocaine_pbpk``).
LIDOCAINE_PUBLISHED = {
    "blood_clearance_ml_min_kg": (13.0, 17.0),  # Bennett et al. 1982, healthy volunteers, blood
    "plasma_clearance_ml_min_kg": 12.3,  # Collinsworth et al. 1975, plasma
    "vss_blood_l_kg": (0.6, 4.5),  # Bennett et al. 1982
    "volume_plasma_l_kg": 1.9,  # Collinsworth et al. 1975, "total volume of distribution"
    "terminal_half_life_h": (1.5, 2.0),  # product information (IV bolus)
    "terminal_half_life_min": 148.0,  # Collinsworth et al. 1975
    "steady_state_concentration_ratio_low_output": 2.4 / 1.5,  # Stenson et al. 1971
    "cardiac_index_ratio_low_output": 1.9 / 3.3,  # Stenson et al. 1971
}


def lumped_kp(kp: dict[str, float]) -> dict[str, float]:
    """Kp of the ``PBPK`` compartments: tissue Kp weighted by ICRP 89 reference masses."""
    return {compartment: sum(kp[t] * m for t, m in parts.items()) / sum(parts.values())
            for compartment, parts in _LUMPS.items()}


def lidocaine_pbpk(**overrides) -> PBPK:
    """``PBPK`` with the parameters of lidocaine (lignocaine) in a 73 kg adult.

    Partition coefficients from ``rodgers_rowland_kp`` (rounded to two decimals), intrinsic
    clearance from the oral bioavailability by the well-stirred model; the module docstring
    tabulates the values, their sources and how the predictions compare with published
    clearance, volume and half-life. These are also ``PBPK``'s defaults. ``overrides`` replace
    any parameter: ``lidocaine_pbpk(intrinsic_clearance=4.0)``.
    """
    drug = LIDOCAINE
    kp = lumped_kp(rodgers_rowland_kp(drug["log_p"], drug["pka"], drug["fraction_unbound"],
                                      drug["blood_plasma_ratio"]))
    reference = PBPK()
    q_h = float(reference.hepatic_blood_flow(RESTING_CARDIAC_OUTPUT))
    extraction = 1.0 - drug["oral_bioavailability"]
    fu_blood = drug["fraction_unbound"] / drug["blood_plasma_ratio"]
    intrinsic = extraction / (1.0 - extraction) * q_h / fu_blood
    parameters = {f"{t}_kp": round(kp[t], 2) for t in TISSUES}
    parameters.update(blood_plasma_ratio=drug["blood_plasma_ratio"],
                      fraction_unbound=drug["fraction_unbound"],
                      intrinsic_clearance=round(intrinsic, 2),
                      renal_clearance=drug["renal_clearance"])
    parameters.update(overrides)
    return PBPK(**parameters)
