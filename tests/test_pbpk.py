"""The whole-body PBPK model: the well-stirred liver (analytic), lidocaine against published
disposition, mass balance, cardiac output and clearance, linearity in dose.

Two kinds of reference:

- the organ's own equations are linear in the drug amounts, ``dx/dt = J(Q_co) x + input``, so
  steady states, areas under the curve and first-pass fractions follow from ``J`` by linear
  algebra (``J`` from ``jax.jacfwd`` of the organ's ``rates``); these are the analytic
  references (well-stirred hepatic clearance, oral bioavailability ``fa (1 - E_H)``);
- one vmapped simulation of the twin ``{"heart": FixedCardiacOutput, "drug": lidocaine}`` over
  four arms (IV 100 mg, IV 200 mg, IV 100 mg at half the cardiac output, oral 100 mg) feeds the
  published-value, mass-balance, cardiac-output and dose-proportionality checks.
"""

from __future__ import annotations

import functools
from typing import ClassVar

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import pytest

import vht
from physiology_models.pharmacology import PBPK, FixedCardiacOutput, lidocaine_pbpk
from physiology_models.pharmacology.pbpk import (
    LIDOCAINE,
    LIDOCAINE_PUBLISHED,
    REFERENCE_BODY_MASS,
    RESTING_CARDIAC_OUTPUT,
    TISSUES,
    lumped_kp,
    rodgers_rowland_kp,
)
from vht import Input, State


class AreaUnderCurve(vht.AbstractOrgan):
    """Test instrument: integrates a concentration over time (mg min / L)."""

    states: ClassVar = (State("area", "mg*min/L"),)
    inputs: ClassVar = (Input("concentration", "mg/L"),)

    def rates(self, t, state, inputs):
        return {"area": inputs["concentration"]}


LIDOCAINE_ORGAN = lidocaine_pbpk()
TWIN = vht.Twin({"heart": FixedCardiacOutput(), "drug": LIDOCAINE_ORGAN, "auc": AreaUnderCurve()},
                connections=[("heart.cardiac_output", "drug.cardiac_output"),
                             ("drug.concentration", "auc.concentration")])
MINUTES = np.unique(np.concatenate([np.linspace(0.0, 60.0, 121),  # the fast early phase
                                    np.linspace(60.0, 48 * 60.0, 471)]))
# atol far below any amount: the step-size control is then purely relative, so a doubled dose
# takes exactly the doubled steps (scaling by 2 is exact in floating point).
SOLVER = dict(rtol=1e-10, atol=1e-30, max_steps=100_000, throw=False)
ARMS = {  # name: (cardiac output L/min, IV bolus mg, oral dose mg)
    "iv": (RESTING_CARDIAC_OUTPUT, 100.0, 0.0),
    "iv_double": (RESTING_CARDIAC_OUTPUT, 200.0, 0.0),
    "iv_half_output": (0.5 * RESTING_CARDIAC_OUTPUT, 100.0, 0.0),
    "oral": (RESTING_CARDIAC_OUTPUT, 0.0, 100.0),
}


@functools.cache
def arms() -> dict[str, vht.Solution]:
    """The four arms in one compiled, vmapped program."""
    outputs, ivs, orals = (jnp.asarray([a[k] for a in ARMS.values()]) for k in range(3))

    def run(cardiac_output, iv, oral):
        twin = TWIN.replace({"heart.cardiac_output": cardiac_output})
        scenario = vht.Scenario([vht.Bolus("drug.venous_blood", iv, 0.0),
                                 vht.OralDose("drug.depot", oral, 0.0)])
        return vht.simulate(twin, scenario, ts=jnp.asarray(MINUTES), **SOLVER)

    solutions = jax.vmap(run)(outputs, ivs, orals)
    assert np.all(np.asarray(solutions.status) == vht.Status.OK), solutions.status
    return {name: jax.tree.map(lambda x, k=k: x[k], solutions)
            for k, name in enumerate(ARMS)}


def auc(solution: vht.Solution) -> float:
    """Venous plasma AUC(0, inf) (mg min / L): integrated to 48 h by the solver, plus the
    log-linear tail C(48 h) / lambda_z (under 1e-5 of the total)."""
    c = np.asarray(solution["drug.concentration"])
    late = MINUTES >= 8 * 60.0
    slope = np.polyfit(MINUTES[late], np.log(c[late]), 1)[0]
    return float(solution["auc.area"][-1]) + c[-1] / -slope


# -- the linear system of the organ's own equations -------------------------------------------

NAMES = [s.name for s in PBPK.states]
BODY = [i for i, n in enumerate(NAMES) if n != "eliminated"]  # eliminated only accumulates


@eqx.filter_jit
def jacobian(organ: PBPK, cardiac_output) -> jnp.ndarray:
    """d(rates)/d(amounts) per minute, without the ``eliminated`` row and column."""

    def rates(y):
        r = organ.rates(0.0, dict(zip(NAMES, y)), {"cardiac_output": cardiac_output})
        return jnp.stack([r[n] for n in NAMES])

    full = jax.jacfwd(rates)(jnp.zeros(len(NAMES), dtype=jnp.result_type(float)))
    return full[np.ix_(BODY, BODY)]


def unit(name: str) -> jnp.ndarray:
    return jnp.zeros(len(BODY)).at[BODY.index(NAMES.index(name))].set(1.0)


def steady_state(organ: PBPK, cardiac_output, infusion_rate=1.0) -> dict[str, jnp.ndarray]:
    """Amounts at steady state under a constant IV infusion (mg/min) into venous blood."""
    x = jnp.linalg.solve(jacobian(organ, cardiac_output), -infusion_rate * unit("venous_blood"))
    return {NAMES[i]: x[k] for k, i in enumerate(BODY)}


def exact_auc(organ: PBPK, cardiac_output, state: str) -> jnp.ndarray:
    """Venous plasma AUC(0, inf) of a unit dose into ``state``: c^T (-J)^-1 x0."""
    x = jnp.linalg.solve(jacobian(organ, cardiac_output), -unit(state))
    venous = x[BODY.index(NAMES.index("venous_blood"))]
    return venous / organ.venous_blood_volume / organ.blood_plasma_ratio


def exact_plasma_clearance(organ: PBPK, cardiac_output) -> jnp.ndarray:
    return 1.0 / exact_auc(organ, cardiac_output, "venous_blood")


# -- (a) the well-stirred liver, analytically ---------------------------------------------


def test_steady_state_hepatic_clearance_is_the_well_stirred_model(record_property):
    """With renal clearance off, the whole-body blood clearance at steady state (infusion rate
    over the arterial blood concentration) and the liver's extraction equal the well-stirred
    model's ``Q_h fu_b CL_int / (Q_h + fu_b CL_int)`` and ``fu_b CL_int / (Q_h + fu_b CL_int)``,
    for hepatic blood flows from 0.4 to 3.2 L/min and three intrinsic clearances."""
    outputs = jnp.array([1.6, 3.25, 6.5, 9.0, 13.0])
    errors = []
    for intrinsic in (0.5, 8.28, 40.0):  # low, lidocaine, very high extraction
        organ = lidocaine_pbpk(renal_clearance=0.0, intrinsic_clearance=intrinsic)

        def measured(co, organ=organ):
            x = steady_state(organ, co, infusion_rate=1.0)
            c_art = x["arterial_blood"] / organ.arterial_blood_volume
            bp = organ.blood_plasma_ratio
            liver_out = x["liver"] / organ.liver_volume * bp / organ.liver_kp
            gut_out = x["gut"] / organ.gut_volume * bp / organ.gut_kp
            q = organ.blood_flows(co)
            liver_in = (q["hepatic_artery"] * c_art + q["gut"] * gut_out) / q["hepatic_vein"]
            return 1.0 / c_art, 1.0 - liver_out / liver_in, q["hepatic_vein"]

        clearance, extraction, q_h = jax.vmap(measured)(outputs)
        fu_b = float(organ.fraction_unbound / organ.blood_plasma_ratio)
        well_stirred = q_h * fu_b * intrinsic / (q_h + fu_b * intrinsic)
        errors.append(float(jnp.max(jnp.abs(clearance / well_stirred - 1.0))))
        errors.append(float(jnp.max(jnp.abs(extraction * (q_h + fu_b * intrinsic)
                                            / (fu_b * intrinsic) - 1.0))))
        np.testing.assert_allclose(organ.hepatic_clearance(outputs), well_stirred, rtol=1e-12)
    record_property("max_relative_error_well_stirred", max(errors))
    assert max(errors) < 1e-8, errors


def test_oral_bioavailability_is_the_hepatic_first_pass(record_property):
    """An oral dose passes the liver before the body: AUC_oral / AUC_iv = fa (1 - E_H) exactly
    (renal clearance on), and the simulated arms agree with the exact AUCs."""
    organ = lidocaine_pbpk(fraction_absorbed=0.8)
    expected = 0.8 * (1.0 - organ.hepatic_extraction(RESTING_CARDIAC_OUTPUT))
    exact = (exact_auc(organ, RESTING_CARDIAC_OUTPUT, "depot") * organ.fraction_absorbed
             / exact_auc(organ, RESTING_CARDIAC_OUTPUT, "venous_blood"))
    error = abs(float(exact / expected) - 1.0)
    record_property("relative_error_first_pass", error)
    assert error < 1e-10, error
    simulated = {name: auc(arms()[name]) for name in ("iv", "oral")}
    bioavailability = simulated["oral"] / simulated["iv"]
    record_property("oral_bioavailability", bioavailability)
    np.testing.assert_allclose(bioavailability, 1.0 - float(LIDOCAINE_ORGAN.hepatic_extraction()),
                               rtol=1e-6)
    # Boyes et al.'s 0.35 set E_H; CL_int is rounded to 3 digits
    np.testing.assert_allclose(bioavailability, LIDOCAINE["oral_bioavailability"], rtol=1e-3)


# -- (b) lidocaine against published disposition ------------------------------------------


def _within_twofold(name, model, published, record_property):
    ratio = model / published
    record_property(f"{name}_model", float(model))
    record_property(f"{name}_published", float(published))
    record_property(f"{name}_ratio", float(ratio))
    assert 0.5 <= ratio <= 2.0, (name, model, published)


def test_lidocaine_clearance_within_twofold_of_published(record_property):
    solution = arms()["iv"]
    plasma_clearance = 100.0 / auc(solution)  # L/min
    exact = float(exact_plasma_clearance(LIDOCAINE_ORGAN, RESTING_CARDIAC_OUTPUT))
    np.testing.assert_allclose(plasma_clearance, exact, rtol=1e-6)  # the AUC is right
    per_kg = plasma_clearance * 1000.0 / REFERENCE_BODY_MASS  # mL/min/kg
    low, high = LIDOCAINE_PUBLISHED["blood_clearance_ml_min_kg"]
    blood_per_kg = per_kg / float(LIDOCAINE_ORGAN.blood_plasma_ratio)
    _within_twofold("blood_clearance_ml_min_kg", blood_per_kg, (low * high) ** 0.5,
                    record_property)
    assert low / 2.0 <= blood_per_kg <= high * 2.0
    _within_twofold("plasma_clearance_ml_min_kg", per_kg,
                    LIDOCAINE_PUBLISHED["plasma_clearance_ml_min_kg"], record_property)
    record_property("hepatic_extraction", float(LIDOCAINE_ORGAN.hepatic_extraction()))


def test_lidocaine_volume_within_twofold_of_published(record_property):
    plasma = float(LIDOCAINE_ORGAN.steady_state_volume("plasma")) / REFERENCE_BODY_MASS
    blood = float(LIDOCAINE_ORGAN.steady_state_volume("blood")) / REFERENCE_BODY_MASS
    _within_twofold("vss_plasma_l_kg", plasma, LIDOCAINE_PUBLISHED["volume_plasma_l_kg"],
                    record_property)
    low, high = LIDOCAINE_PUBLISHED["vss_blood_l_kg"]
    _within_twofold("vss_blood_l_kg", blood, (low * high) ** 0.5, record_property)
    # the formula is the model's: V_blood + sum V_t Kp_t / B:P
    organ = LIDOCAINE_ORGAN
    by_hand = (3.948 + 1.652 + sum(getattr(organ, f"{t}_volume") * getattr(organ, f"{t}_kp")
                                   for t in TISSUES) / 0.84)
    np.testing.assert_allclose(blood * REFERENCE_BODY_MASS, float(by_hand), rtol=1e-12)


def test_lidocaine_terminal_half_life_within_twofold_of_published(record_property):
    """Log-linear fit of the terminal phase (12-48 h) of the simulated IV bolus; it also agrees
    with the slowest eigenvalue of the organ's linear system."""
    c = np.asarray(arms()["iv"]["drug.concentration"])
    late = MINUTES >= 12 * 60.0
    slope = np.polyfit(MINUTES[late], np.log(c[late]), 1)[0]
    half_life_h = np.log(2.0) / -slope / 60.0
    eigenvalues = np.linalg.eigvals(np.asarray(jacobian(LIDOCAINE_ORGAN, RESTING_CARDIAC_OUTPUT)))
    disposition = eigenvalues.real[np.abs(eigenvalues.real + float(LIDOCAINE_ORGAN.ka)) > 1e-9]
    np.testing.assert_allclose(half_life_h, np.log(2.0) / -disposition.max() / 60.0, rtol=1e-3)
    low, high = LIDOCAINE_PUBLISHED["terminal_half_life_h"]
    _within_twofold("terminal_half_life_h", half_life_h, 0.5 * (low + high), record_property)
    _within_twofold("terminal_half_life_vs_148_min", half_life_h * 60.0,
                    LIDOCAINE_PUBLISHED["terminal_half_life_min"], record_property)


def test_lidocaine_partition_coefficients_are_rodgers_rowland():
    """The shipped Kp trace to the Rodgers-Rowland prediction from the data table (to their
    rounding), and ``lidocaine_pbpk`` is the organ's default parameter set."""
    kp = lumped_kp(rodgers_rowland_kp(LIDOCAINE["log_p"], LIDOCAINE["pka"],
                                      LIDOCAINE["fraction_unbound"],
                                      LIDOCAINE["blood_plasma_ratio"]))
    default = PBPK()
    for t in TISSUES:
        assert abs(float(getattr(default, f"{t}_kp")) - kp[t]) <= 0.005 + 1e-12, t
    for name, value in LIDOCAINE_ORGAN.parameter_values().items():
        np.testing.assert_allclose(float(value), float(getattr(default, name)), rtol=1e-12,
                                   err_msg=name)
    with pytest.raises(ValueError, match="moderate-to-strong bases"):
        rodgers_rowland_kp(2.0, 5.0, 0.5, 1.0)


# -- (c) mass balance ---------------------------------------------------------------------


@pytest.mark.parametrize("arm, dose", [("iv", 100.0), ("oral", 100.0)])
def test_amount_in_body_plus_eliminated_equals_dose(arm, dose, record_property):
    solution = arms()[arm]
    ys = np.asarray(solution.ys)
    total = ys[:, [TWIN.state_index(f"drug.{n}") for n in NAMES]].sum(axis=1)
    error = float(np.max(np.abs(total - dose)) / dose)
    record_property("max_relative_mass_error", error)
    assert error < 1e-10, error
    np.testing.assert_allclose(solution["drug.amount_in_body"] + solution["drug.depot"]
                               + solution["drug.eliminated"], dose, rtol=1e-10)
    assert float(solution["drug.eliminated"][-1]) > 0.99 * dose  # 48 h: nearly all eliminated


# -- (d) cardiac output and clearance -----------------------------------------------------


def test_lower_cardiac_output_lowers_clearance_and_raises_exposure(record_property):
    """Halving cardiac output (and with it hepatic blood flow) lowers the clearance of this
    high-extraction drug and raises its AUC, as the exact linear system says; at the cardiac
    indices of Stenson et al. (1971) the steady-state concentration rises as they measured."""
    rest, low = (auc(arms()[a]) for a in ("iv", "iv_half_output"))
    exact = [float(exact_plasma_clearance(LIDOCAINE_ORGAN, co))
             for co in (RESTING_CARDIAC_OUTPUT, 0.5 * RESTING_CARDIAC_OUTPUT)]
    record_property("auc_ratio_half_output", low / rest)
    record_property("plasma_clearance_rest_l_min", exact[0])
    record_property("plasma_clearance_half_output_l_min", exact[1])
    assert low / rest > 1.3
    np.testing.assert_allclose(rest / low, exact[1] / exact[0], rtol=1e-5)
    assert float(LIDOCAINE_ORGAN.hepatic_clearance(3.25)) < 0.7 * float(
        LIDOCAINE_ORGAN.hepatic_clearance(6.5))
    # Stenson et al.: arterial steady state 2.4 vs 1.5 ug/mL at cardiac index 1.9 vs 3.3
    ratio = LIDOCAINE_PUBLISHED["cardiac_index_ratio_low_output"]
    c_rest, c_low = (steady_state(LIDOCAINE_ORGAN, RESTING_CARDIAC_OUTPUT * r)["arterial_blood"]
                     for r in (1.0, ratio))
    model_rise = float(c_low / c_rest)
    published_rise = LIDOCAINE_PUBLISHED["steady_state_concentration_ratio_low_output"]
    record_property("steady_state_rise_model", model_rise)
    record_property("steady_state_rise_published", published_rise)
    assert 0.5 <= (model_rise - 1.0) / (published_rise - 1.0) <= 2.0


def test_cardiac_output_port_accepts_a_circulation():
    """The input is meant for the circulation's beat-averaged cardiac output (L/min)."""
    from physiology_models.cardiovascular import ClosedLoopCirculation

    twin = vht.Twin({"circulation": ClosedLoopCirculation(), "drug": PBPK()},
                    connections=[("circulation.cardiac_output", "drug.cardiac_output")])
    assert twin.connections[0].factor == 1.0


# -- (e) linearity ------------------------------------------------------------------------


def test_exposure_is_proportional_to_dose(record_property):
    single, double = (arms()[a] for a in ("iv", "iv_double"))
    ratio = auc(double) / auc(single)
    record_property("auc_ratio_relative_error", abs(ratio / 2.0 - 1.0))
    assert abs(ratio / 2.0 - 1.0) < 1e-10, ratio
    # saved values are dense-output interpolants (accurate to about 1e-9 here), and the two
    # doses start from different initial steps: compare them at that accuracy
    np.testing.assert_allclose(double.ys, 2.0 * single.ys, rtol=1e-8, atol=1e-12)


def test_flow_fractions_must_leave_flow_for_the_rest_of_the_body():
    with pytest.raises(ValueError, match="flow fractions .* sum to 1.050"):
        PBPK(muscle_flow_fraction=0.565)
