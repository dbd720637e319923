"""Transcapillary fluid exchange between plasma and interstitium (Starling), with lymph return,
red-cell volume and plasma protein.

Horizon: minutes to days. Time unit of the organ: minutes.

Equations (volumes in mL, pressures in mmHg, protein in g):

    capillary pressure   P_c = P_v + r (P_a - P_v)         (pre/post-capillary resistance split)
    interstitial press.  P_i = P_i0 + (V_i - V_i0) / C_i
    plasma volume        PV = BV - RCV,   hematocrit Hct = RCV / BV
    plasma protein       c_p = protein / PV  (g/dL after unit conversion)
    plasma oncotic       pi_p = 2.1 c + 0.16 c^2 + 0.009 c^3    (Landis and Pappenheimer 1963)
    filtration           J = K_f ((P_c - P_i) - sigma (pi_p - pi_i))
    lymph                L = L_0 softplus_1(1 + k_L (P_i - P_i0))   (rises steeply with P_i)
    dV_i/dt  = J - L + intake     (the net J - L leaves the blood: output capillary_filtration;
                                   drinking is absorbed into the extracellular fluid)
    dRCV/dt  = -Hct * hemorrhage            (blood is lost whole)
    dprot/dt = -(1 - Hct) * hemorrhage * c_p (protein leaves with the lost plasma; the
               transcapillary protein flux is returned by lymph at rest and not modelled)

At rest the lymph flow L_0 equals the filtration, so the resting state is a steady state by
construction. Crystalloid infused into the blood dilutes plasma protein and raises capillary
pressure, so most of it filters into the interstitium within tens of minutes; blood lost is
partly refilled from the interstitium. The inputs come from a circulation (pressures, blood
volume, hemorrhage flow); the output returns the net volume leaving the blood.

| parameter | default | unit | source |
|---|---|---|---|
| filtration_coefficient (K_f) | 6.67 | mL/min/mmHg | whole body [1] |
| reflection_coefficient (sigma) | 1.0 | 1 | [1]'s balance uses the full oncotic pressure |
| capillary_pressure_fraction (r) | 0.109 | 1 | see [a] |
| interstitial_pressure_rest (P_i0) | -3 | mmHg | loose subcutaneous tissue [1] |
| interstitial_oncotic_pressure (pi_i) | 8 | mmHg | [1] |
| interstitial_volume_rest (V_i0) | 12000 | mL | about 17 % of body weight, 70 kg [1] |
| interstitial_compliance (C_i) | 700 | mL/mmHg | order of [1]'s curve below 0 mmHg |
| lymph_sensitivity (k_L) | 3 | 1/mmHg | lymph rises about tenfold from -3 to 0 mmHg [1] |
| plasma_protein_rest | 7.0 | g/dL | [1] |
| hematocrit_rest | 0.42 | 1 | [1] |
| initial_blood_volume | 5500 | mL | the circulation's default |
| fluid_intake | 1.042 | mL/min | see [b] |

[1] Guyton and Hall, Textbook of Medical Physiology (ch. 16, 25).
[a] Capillary pressure 14.9 mmHg at MAP 93.5 and CVP 5.3: with the oncotic pressures it leaves
a net outward 0.3 mmHg, a resting filtration of 2 mL/min returned by lymph ([1]'s balance has
17.3 mmHg against a plasma oncotic pressure of 28 mmHg).
[b] 1.5 L/day, equal to the kidney's resting urine output, so that rest is a steady state
(insensible losses are not modelled).
"""

from __future__ import annotations

from typing import ClassVar

import jax.numpy as jnp
from jaxtyping import Array

import vht
from vht import Input, Output, State, parameter
from vht.network import softplus

_POSITIVE = (1e-9, float("inf"))


def landis_pappenheimer(protein_g_per_dl: Array) -> Array:
    """Plasma colloid osmotic pressure (mmHg) from total protein (g/dL)."""
    c = protein_g_per_dl
    return 2.1 * c + 0.16 * c**2 + 0.009 * c**3


class Interstitium(vht.AbstractOrgan):
    """Starling exchange between plasma and interstitium (see the module docstring)."""

    filtration_coefficient: Array = parameter(6.67, unit="mL/min/mmHg", bounds=_POSITIVE)
    reflection_coefficient: Array = parameter(1.0, unit="dimensionless", bounds=(0.0, 1.0))
    capillary_pressure_fraction: Array = parameter(0.109, unit="dimensionless", bounds=(0.0, 1.0))
    interstitial_pressure_rest: Array = parameter(-3.0, unit="mmHg")
    interstitial_oncotic_pressure: Array = parameter(8.0, unit="mmHg", bounds=(0.0, 40.0))
    interstitial_volume_rest: Array = parameter(12000.0, unit="mL", bounds=(1000.0, 40000.0))
    interstitial_compliance: Array = parameter(700.0, unit="mL/mmHg", bounds=_POSITIVE)
    lymph_sensitivity: Array = parameter(3.0, unit="1/mmHg", bounds=(0.0, 100.0))
    plasma_protein_rest: Array = parameter(7.0, unit="g/dL", bounds=(1.0, 15.0))
    hematocrit_rest: Array = parameter(0.42, unit="dimensionless", bounds=(0.05, 0.8))
    initial_blood_volume: Array = parameter(5500.0, unit="mL", bounds=(500.0, 10000.0))
    fluid_intake: Array = parameter(1.042, unit="mL/min", bounds=(0.0, 100.0))
    # the resting pressures at which filtration and lymph balance
    arterial_pressure_rest: Array = parameter(93.5, unit="mmHg", bounds=(20.0, 200.0))
    venous_pressure_rest: Array = parameter(5.3, unit="mmHg", bounds=(-10.0, 40.0))

    states: ClassVar = (
        State("interstitial_volume", "mL", lower=0.0),
        State("red_cell_volume", "mL", lower=0.0),
        State("plasma_protein", "g", lower=0.0),
    )
    inputs: ClassVar = (
        Input("arterial_pressure", "mmHg", description="mean systemic arterial pressure"),
        Input("venous_pressure", "mmHg", description="systemic venous pressure"),
        Input("blood_volume", "mL"),
        Input("hemorrhage_flow", "mL/min", 0.0, "blood lost"),
    )
    outputs: ClassVar = (
        Output("capillary_filtration", "mL/min", "net volume leaving the blood (J - L)"),
        Output("plasma_volume", "mL"),
        Output("hematocrit", "dimensionless"),
        Output("plasma_oncotic_pressure", "mmHg"),
        Output("interstitial_pressure", "mmHg"),
    )
    time_unit: ClassVar = "min"
    feedthrough: ClassVar = True  # filtration depends on the circulation's pressures

    def _filtration(self, capillary, interstitial, oncotic):
        return self.filtration_coefficient * (
            (capillary - interstitial)
            - self.reflection_coefficient * (oncotic - self.interstitial_oncotic_pressure))

    def _capillary_pressure(self, arterial, venous):
        return venous + self.capillary_pressure_fraction * (arterial - venous)

    def _resting_filtration(self):
        return self._filtration(
            self._capillary_pressure(self.arterial_pressure_rest, self.venous_pressure_rest),
            self.interstitial_pressure_rest, landis_pappenheimer(self.plasma_protein_rest))

    def fluxes(self, state, inputs):
        """Filtration J, lymph L (mL/min) and the plasma quantities."""
        plasma = inputs["blood_volume"] - state["red_cell_volume"]
        protein = 100.0 * state["plasma_protein"] / plasma  # g/mL -> g/dL
        oncotic = landis_pappenheimer(protein)
        interstitial = self.interstitial_pressure_rest + (
            state["interstitial_volume"] - self.interstitial_volume_rest
        ) / self.interstitial_compliance
        capillary = self._capillary_pressure(inputs["arterial_pressure"], inputs["venous_pressure"])
        filtration = self._filtration(capillary, interstitial, oncotic)
        drive = 1.0 + self.lymph_sensitivity * (interstitial - self.interstitial_pressure_rest)
        lymph = self._resting_filtration() * softplus(4.0 * drive) / 4.0 / (
            softplus(4.0) / 4.0)
        return filtration, lymph, plasma, oncotic, interstitial

    def rates(self, t, state, inputs):
        filtration, lymph, plasma, _, _ = self.fluxes(state, inputs)
        hematocrit = state["red_cell_volume"] / inputs["blood_volume"]
        loss = inputs["hemorrhage_flow"]
        return {
            "interstitial_volume": filtration - lymph + self.fluid_intake,
            "red_cell_volume": -hematocrit * loss,
            "plasma_protein": -(1.0 - hematocrit) * loss * state["plasma_protein"] / plasma,
        }

    def observe(self, t, state, inputs):
        filtration, lymph, plasma, oncotic, interstitial = self.fluxes(state, inputs)
        return {
            "capillary_filtration": filtration - lymph,
            "plasma_volume": plasma,
            "hematocrit": state["red_cell_volume"] / inputs["blood_volume"],
            "plasma_oncotic_pressure": oncotic,
            "interstitial_pressure": interstitial,
        }

    def conserved(self):
        # red cells and plasma protein change only with blood loss (a scenario)
        return (("red_cell_volume",), ("plasma_protein",))

    def initial_state(self):
        red_cells = self.hematocrit_rest * self.initial_blood_volume
        plasma = self.initial_blood_volume - red_cells
        return {"interstitial_volume": jnp.asarray(self.interstitial_volume_rest),
                "red_cell_volume": red_cells,
                "plasma_protein": self.plasma_protein_rest / 100.0 * plasma}
