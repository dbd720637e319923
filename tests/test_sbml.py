"""SBML import: semantics against closed forms, composition with native organs, array-leaf
parameters (no retrace, vmap, gradients), and a clear error for every unsupported construct."""

from pathlib import Path

import diffrax
import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from common_twins import one_compartment_oral_concentration

import vht
from physiology_models.pharmacology import EffectCompartment

ORAL_PK = Path(__file__).parents[1] / "experiments" / "sbml" / "models" / "oral_pk.xml"


def _document(body: str, extra_namespaces: str = "", model_attributes: str = "") -> str:
    """A small SBML Level 3 Version 2 document around ``body`` (a compartment ``c``, species
    ``S`` and parameter ``k`` exist)."""
    return f"""<?xml version="1.0" encoding="UTF-8"?>
<sbml xmlns="http://www.sbml.org/sbml/level3/version2/core" level="3" version="2"
      {extra_namespaces}>
  <model id="m" {model_attributes}>
    <listOfCompartments>
      <compartment id="c" spatialDimensions="3" size="1" constant="true"/>
    </listOfCompartments>
    <listOfSpecies>
      <species id="S" compartment="c" initialAmount="1" hasOnlySubstanceUnits="false"
               boundaryCondition="false" constant="false"/>
    </listOfSpecies>
    <listOfParameters>
      <parameter id="k" value="0.5" constant="false"/>
    </listOfParameters>
    {body}
  </model>
</sbml>"""


MATH = 'xmlns="http://www.w3.org/1998/Math/MathML"'


def test_oral_pk_matches_the_closed_form_and_carries_its_units(record_property):
    organ = vht.import_sbml(ORAL_PK)
    assert set(organ.parameter_info()) == {"gut", "plasma", "ka", "CL"}
    assert [s.name for s in organ.states] == ["depot", "drug"]
    assert vht.conversion_factor(organ.time_unit, "h") == pytest.approx(1.0, rel=1e-15)
    assert vht.conversion_factor(organ.states[0].unit, "mg") == pytest.approx(1.0, rel=1e-15)
    port = {o.name: o.unit for o in organ.outputs}["drug_concentration"]
    assert vht.conversion_factor(port, "mg/L") == pytest.approx(1.0, rel=1e-15)
    twin = vht.Twin({"pk": organ})
    scenario = vht.Scenario([vht.OralDose("pk.depot", 400.0, time=0.0, unit="mg")])
    ts = np.linspace(0.0, 24 * 60.0, 97)
    solution = vht.simulate(twin, scenario, ts=ts, rtol=1e-11, atol=1e-11)
    exact = one_compartment_oral_concentration(ts / 60.0, 400.0, 1.2, 3.0, 30.0)
    got = np.asarray(solution["pk.drug_concentration"])
    error = float(np.max(np.abs(got - exact) / (np.abs(exact) + 1e-9)))
    record_property("sbml_oral_pk_closed_form_max_relative_error", error)
    assert error < 1e-8


def test_an_imported_model_drives_a_native_organ():
    """The SBML PK model's plasma concentration drives vht's effect compartment, as the same
    twin built from native organs does."""
    from physiology_models.pharmacology import OneCompartmentPK

    scenario = vht.Scenario([vht.OralDose("pk.depot", 400.0, time=0.0, unit="mg")])
    imported = vht.Twin({"pk": vht.import_sbml(ORAL_PK), "effect": EffectCompartment()},
                        connections=[("pk.drug_concentration", "effect.plasma_concentration")])
    native = vht.Twin({"pk": OneCompartmentPK(ka=1.2, clearance=3.0, volume=30.0),
                       "effect": EffectCompartment()},
                      connections=[("pk.concentration", "effect.plasma_concentration")])
    ts = np.linspace(0.0, 24 * 60.0, 49)
    a = vht.simulate(imported, scenario, ts=ts, rtol=1e-10, atol=1e-10)
    b = vht.simulate(native, scenario, ts=ts, rtol=1e-10, atol=1e-10)
    np.testing.assert_allclose(a["effect.effect"], b["effect.effect"], rtol=1e-7, atol=1e-10)


def test_parameters_are_array_leaves_vmap_and_gradients():
    twin = vht.Twin({"pk": vht.import_sbml(ORAL_PK)})
    scenario = vht.Scenario([vht.OralDose("pk.depot", 400.0, time=0.0, unit="mg")])

    @eqx.debug.assert_max_traces(max_traces=1)
    def last_concentration(tw, dt=None):
        return vht.simulate(tw, scenario, t1=12 * 60.0, n_save=2, dt=dt)[
            "pk.drug_concentration"][-1]

    run = jax.jit(last_concentration)
    first, second = run(twin), run(twin.replace({"pk.CL": 4.0}))  # no retrace
    assert float(second) < float(first)
    clearances = jnp.linspace(1.5, 4.5, 100)
    cohort = jax.vmap(lambda cl: twin.replace({"pk.CL": cl}))(clearances)
    batch = jax.vmap(lambda tw: vht.simulate(tw, scenario, t1=12 * 60.0, n_save=2)[
        "pk.drug_concentration"][-1])(cohort)
    assert batch.shape == (100,) and bool(jnp.all(jnp.diff(batch) < 0))

    def fixed(cl):
        return vht.simulate(twin.replace({"pk.CL": cl}), scenario, t1=12 * 60.0, n_save=2,
                            dt=1.0, solver=diffrax.Tsit5())["pk.drug_concentration"][-1]

    gradient = float(jax.grad(fixed)(3.0))
    step = 1e-5
    central = (float(fixed(3.0 + step)) - float(fixed(3.0 - step))) / (2 * step)
    assert gradient == pytest.approx(central, rel=1e-6)


def test_undeclared_units_connect_only_once_declared():
    text = _document("")
    organ = vht.import_sbml(text)
    assert {o.name: o.unit for o in organ.outputs}["S_concentration"] == "unknown"
    with pytest.raises(ValueError, match="has no declared unit .* units=\\{'<id>': '<unit>'\\}"):
        vht.Twin({"m": organ, "effect": EffectCompartment()},
                 connections=[("m.S_concentration", "effect.plasma_concentration")])
    declared = vht.import_sbml(text, units={"S": "mg/L"})
    vht.Twin({"m": declared, "effect": EffectCompartment()},
             connections=[("m.S_concentration", "effect.plasma_concentration")])


class ConstantRate(vht.AbstractOrgan):
    """A native organ that outputs a rate constant (for the input-port test)."""

    value: jnp.ndarray = vht.parameter(0.25, unit="1/s")
    outputs = (vht.Output("rate", "1/s"),)

    def rates(self, t, state, inputs):
        return {}

    def observe(self, t, state):
        return {"rate": self.value}


def test_inputs_turn_parameters_into_ports():
    """An SBML parameter named as an input is driven by a native organ's output: S' = -k S
    in seconds, with k from the native organ."""
    body = f"""<listOfRules><rateRule variable="S"><math {MATH}><apply><times/><cn>-1</cn>
      <ci>k</ci><ci>S</ci></apply></math></rateRule></listOfRules>"""
    organ = vht.import_sbml(_document(body), inputs=["k"], units={"k": "1/s", "S": "mg/L"})
    assert [i.name for i in organ.inputs] == ["k"] and "k" not in organ.parameter_info()
    with pytest.raises(ValueError, match="input m.k .* is not connected"):
        vht.Twin({"m": organ})
    twin = vht.Twin({"m": organ, "source": ConstantRate()},
                    connections=[("source.rate", "m.k")])
    solution = vht.simulate(twin, t1=0.2, n_save=5, rtol=1e-10, atol=1e-12)  # 0.2 min = 12 s
    np.testing.assert_allclose(solution["m.S"], np.exp(-0.25 * 60.0 * solution.ts), rtol=1e-7)


def test_a_fast_reaction_is_refused():
    text = """<?xml version="1.0" encoding="UTF-8"?>
<sbml xmlns="http://www.sbml.org/sbml/level3/version1/core" level="3" version="1">
  <model id="m">
    <listOfCompartments><compartment id="c" size="1" constant="true"/></listOfCompartments>
    <listOfSpecies><species id="S" compartment="c" initialAmount="1"
      hasOnlySubstanceUnits="false" boundaryCondition="false" constant="false"/></listOfSpecies>
    <listOfReactions><reaction id="R" reversible="false" fast="true"><listOfReactants>
      <speciesReference species="S" stoichiometry="1" constant="true"/></listOfReactants>
      <kineticLaw><math xmlns="http://www.w3.org/1998/Math/MathML"><ci>S</ci></math>
      </kineticLaw></reaction></listOfReactions>
  </model>
</sbml>"""
    with pytest.raises(vht.UnsupportedSBML, match="fast reaction 'R' is not supported"):
        vht.import_sbml(text)


@pytest.mark.parametrize("body, namespaces, match", [
    (f"""<listOfEvents><event id="E1" useValuesFromTriggerTime="true"><trigger
        initialValue="false" persistent="true"><math {MATH}><apply><gt/><csymbol
        encoding="text" definitionURL="http://www.sbml.org/sbml/symbols/time">t</csymbol>
        <cn>1</cn></apply></math></trigger><listOfEventAssignments><eventAssignment
        variable="k"><math {MATH}><cn>2</cn></math></eventAssignment></listOfEventAssignments>
        </event></listOfEvents>""", "", "event 'E1' is not supported"),
    (f"""<listOfRules><algebraicRule><math {MATH}><apply><minus/><ci>k</ci><cn>1</cn></apply>
        </math></algebraicRule></listOfRules>""", "", "algebraic rule .* is not supported"),
    (f"""<listOfRules><assignmentRule variable="k"><math {MATH}><apply><csymbol encoding="text"
        definitionURL="http://www.sbml.org/sbml/symbols/delay">delay</csymbol><ci>S</ci>
        <cn>1</cn></apply></math></assignmentRule></listOfRules>""", "",
     "delay function .* is not supported"),
    (f"""<listOfRules><assignmentRule variable="k"><math {MATH}><apply><csymbol
        encoding="text" definitionURL="http://www.sbml.org/sbml/symbols/rateOf">rateOf
        </csymbol><ci>k</ci></apply></math></assignmentRule></listOfRules>""", "",
     "rateOf"),
    (f"""<listOfRules><assignmentRule variable="k"><math {MATH}><apply><times/><ci>k</ci>
        <cn>2</cn></apply></math></assignmentRule></listOfRules>""", "",
     "the rules form a cycle"),
])
def test_every_unsupported_construct_is_an_error_naming_it(body, namespaces, match):
    with pytest.raises(vht.UnsupportedSBML, match=match):
        vht.import_sbml(_document(body, namespaces))


def test_a_required_package_and_invalid_files_are_refused(tmp_path):
    comp = ('xmlns:comp="http://www.sbml.org/sbml/level3/version1/comp/version1" '
            'comp:required="true"')
    with pytest.raises(vht.UnsupportedSBML, match="package 'comp' is not supported"):
        vht.import_sbml(_document("", comp))
    with pytest.raises(ValueError, match="is not valid SBML"):
        vht.import_sbml("<sbml><model></sbml>")
    with pytest.raises(ValueError, match="no SBML file at"):
        vht.import_sbml(tmp_path / "missing.xml")
