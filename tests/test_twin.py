"""Twin composition: connections route signals with unit conversion; every build-time error
names the organ and port."""

from typing import ClassVar

import jax.numpy as jnp
import numpy as np
import pytest

import vht
from physiology_models.cardiovascular import ClosedLoopCirculation
from physiology_models.pharmacology import EffectCompartment, OneCompartmentPK
from vht import Input, Output, State, parameter


class Source(vht.AbstractOrgan):
    """A signal source in mg/L: one state decaying at rate k (per minute)."""

    k: jnp.ndarray = parameter(0.1, unit="1/min", bounds=(0.0, 10.0))
    states: ClassVar = (State("level", "mg/L", 2.0),)
    outputs: ClassVar = (Output("level_out", "mg/L"), Output("pressure", "mmHg"))

    def rates(self, t, state, inputs):
        return {"level": -self.k * state["level"]}

    def observe(self, t, state):
        return {"level_out": state["level"], "pressure": 10.0 * state["level"]}


class Sink(vht.AbstractOrgan):
    """Integrates its input (declared in ug/L) into a state."""

    states: ClassVar = (State("integral", "ug/L*min"),)
    inputs: ClassVar = (Input("signal", "ug/L"), Input("optional", "1", default=0.5))

    def rates(self, t, state, inputs):
        return {"integral": inputs["signal"] + 0.0 * inputs["optional"]}


def test_connection_converts_units_by_a_constant_factor():
    twin = vht.Twin({"source": Source(), "sink": Sink()}, [("source.level_out", "sink.signal")])
    assert twin.connections[0].factor == pytest.approx(1000.0)  # mg/L -> ug/L
    solution = vht.simulate(twin, t1=10.0, rtol=1e-10, atol=1e-10)
    expected = 1000.0 * 2.0 / 0.1 * (1.0 - np.exp(-0.1 * 10.0))
    np.testing.assert_allclose(solution["sink.integral"][-1], expected, rtol=1e-8)


def test_organ_time_units_are_converted_to_minutes():
    """A PK organ written in hours and a circulation written in seconds share one clock."""
    pk = vht.Twin({"drug": OneCompartmentPK(clearance=6.0, volume=30.0)})
    scenario = vht.Scenario([vht.Bolus("drug.central", 300.0, 0.0)])
    solution = vht.simulate(pk, scenario, ts=jnp.array([0.0, 60.0]), rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(solution["drug.concentration"][-1], 10.0 * np.exp(-0.2), rtol=1e-8)


def test_replace_and_parameters_round_trip():
    twin = vht.Twin({"source": Source(), "sink": Sink()}, [("source.level_out", "sink.signal")])
    changed = twin.replace({"source.k": 0.3})
    assert float(changed.parameters()["source.k"]) == 0.3
    assert float(twin.parameters()["source.k"]) == 0.1
    assert twin.parameter_info()["source.k"].unit == "1/min"
    with pytest.raises(ValueError, match="unknown parameter 'source.nope'"):
        twin.replace({"source.nope": 1.0})


def test_flagship_style_composition_builds():
    twin = vht.Twin(
        {"circulation": ClosedLoopCirculation(), "drug": OneCompartmentPK(),
         "effect": EffectCompartment()},
        [("drug.concentration", "effect.plasma_concentration"),
         ("effect.factor", "circulation.resistance_factor")],
    )
    assert twin.stiffness == "nonstiff"
    assert "circulation.mean_arterial_pressure" in twin.signal_names
    assert twin.state_index("drug.central") == 13


# -- every build-time error, with the organ and port it names ------------------------------

def test_duplicate_organ_names():
    with pytest.raises(ValueError, match="duplicate organ name 'a'"):
        vht.Twin([("a", Source()), ("a", Sink())])


def test_unknown_organ_in_connection():
    with pytest.raises(ValueError, match="unknown organ 'heart'"):
        vht.Twin({"source": Source(), "sink": Sink()}, [("heart.level_out", "sink.signal")])


def test_unknown_output_port():
    with pytest.raises(ValueError, match="organ 'source' has no output port 'flow'"):
        vht.Twin({"source": Source(), "sink": Sink()}, [("source.flow", "sink.signal")])


def test_unknown_input_port():
    with pytest.raises(ValueError, match="organ 'sink' has no input port 'volume'"):
        vht.Twin({"source": Source(), "sink": Sink()}, [("source.level_out", "sink.volume")])


def test_unit_mismatch():
    with pytest.raises(ValueError, match=r"unit mismatch from 'source.pressure' \[mmHg\] to "
                                         r"'sink.signal' \[ug/L\]"):
        vht.Twin({"source": Source(), "sink": Sink()}, [("source.pressure", "sink.signal")])


def test_input_connected_twice():
    with pytest.raises(ValueError, match="input 'sink.signal' is connected twice"):
        vht.Twin({"s1": Source(), "s2": Source(), "sink": Sink()},
                 [("s1.level_out", "sink.signal"), ("s2.level_out", "sink.signal")])


def test_unconnected_input_without_default():
    with pytest.raises(ValueError, match=r"input sink.signal \[ug/L\] is not connected and has "
                                         "no default"):
        vht.Twin({"source": Source(), "sink": Sink()})


def test_badly_written_connection():
    with pytest.raises(ValueError, match="must be written 'organ.port'"):
        vht.Twin({"source": Source(), "sink": Sink()}, [("source", "sink.signal")])
    with pytest.raises(ValueError, match="must be a pair"):
        vht.Twin({"source": Source(), "sink": Sink()}, ["source.level_out"])


def test_organ_name_must_be_an_identifier():
    with pytest.raises(ValueError, match="organ name 'left.heart' must be a Python identifier"):
        vht.Twin({"left.heart": Source()})


def test_not_an_organ():
    with pytest.raises(ValueError, match="organ 'x' is a int, not an AbstractOrgan"):
        vht.Twin({"x": 3})


def test_parameter_outside_bounds():
    with pytest.raises(ValueError, match=r"parameter source.k = 20.0 \[1/min\] lies outside"):
        vht.Twin({"source": Source(k=20.0)})


def test_rates_returning_wrong_names():
    class Broken(vht.AbstractOrgan):
        states: ClassVar = (State("x", "mL"),)

        def rates(self, t, state, inputs):
            return {"y": state["x"]}

    with pytest.raises(ValueError, match=r"organ 'broken': rates\(\) returns \['y'\], but the "
                                         r"organ declares \['x'\]"):
        vht.Twin({"broken": Broken()})


def test_observe_missing_for_declared_outputs():
    class NoObserve(vht.AbstractOrgan):
        states: ClassVar = (State("x", "mL"),)
        outputs: ClassVar = (Output("p", "mmHg"),)

        def rates(self, t, state, inputs):
            return {"x": 0.0 * state["x"]}

    with pytest.raises(NotImplementedError, match="declares outputs but no observe"):
        vht.Twin({"o": NoObserve()})


def test_organ_declaration_errors():
    with pytest.raises(ValueError, match="declares duplicate states: \\['x'\\]"):
        class Dup(vht.AbstractOrgan):
            states: ClassVar = (State("x", "mL"), State("x", "mL"))

    with pytest.raises(ValueError, match="stiffness must be 'nonstiff' or 'stiff'"):
        class Bad(vht.AbstractOrgan):
            stiffness: ClassVar = "very"

    with pytest.raises(ValueError, match="unknown unit 'mmHgg'"):
        class Typo(vht.AbstractOrgan):
            states: ClassVar = (State("x", "mmHgg"),)

    with pytest.raises(ValueError, match="unknown unit 'bogus'"):
        parameter(1.0, unit="bogus")

    with pytest.raises(ValueError, match="share the name 'p'"):
        class Clash(vht.AbstractOrgan):
            states: ClassVar = (State("p", "mL"),)
            outputs: ClassVar = (Output("p", "mL"),)


def test_unknown_state_or_signal_names_are_errors():
    twin = vht.Twin({"source": Source()})
    with pytest.raises(ValueError, match="unknown state 'source.nothing'"):
        twin.state_index("source.nothing")
    with pytest.raises(ValueError, match="unknown signal 'source.nothing'"):
        twin.signal_index("source.nothing")
    with pytest.raises(KeyError, match="no organ named 'liver'"):
        twin["liver"]


class Echo(vht.AbstractOrgan):
    """A feedthrough organ: its output is its input (plus its state, to have one)."""

    states: ClassVar = (State("x", "1"),)
    inputs: ClassVar = (Input("u", "1"),)
    outputs: ClassVar = (Output("y", "1"),)
    feedthrough: ClassVar = True

    def rates(self, t, state, inputs):
        return {"x": -state["x"]}

    def observe(self, t, state, inputs):
        return {"y": inputs["u"] + 0.0 * state["x"]}


class Level(vht.AbstractOrgan):
    states: ClassVar = (State("z", "1", 1.0),)
    inputs: ClassVar = (Input("u", "1", 0.0),)
    outputs: ClassVar = (Output("z_out", "1"),)

    def rates(self, t, state, inputs):
        return {"z": inputs["u"]}

    def observe(self, t, state):
        return {"z_out": state["z"]}


def test_feedthrough_organs_are_evaluated_after_their_sources():
    # declared in the "wrong" order: the echo comes first but reads the level's output
    twin = vht.Twin([("echo", Echo()), ("level", Level())],
                    [("level.z_out", "echo.u"), ("echo.y", "level.u")])
    assert twin.order.index("level") < twin.order.index("echo")
    solution = vht.simulate(twin, t1=1.0, rtol=1e-10, atol=1e-10)
    np.testing.assert_allclose(solution["level.z"][-1], np.exp(1.0), rtol=1e-8)  # z' = z
    np.testing.assert_allclose(solution["echo.y"], solution["level.z"], rtol=1e-12)


def test_a_loop_of_feedthrough_organs_is_refused():
    with pytest.raises(ValueError, match="algebraic loop through feedthrough organs: "
                                         "a -> b -> a"):
        vht.Twin({"a": Echo(), "b": Echo()}, [("a.y", "b.u"), ("b.y", "a.u")])


class Drain(Echo):
    """Feedthrough, with an input its outputs do not read (a loss feeding its rates only)."""

    inputs: ClassVar = (Input("u", "1"), Input("loss", "1", 0.0, affects_outputs=False))

    def rates(self, t, state, inputs):
        return {"x": -state["x"] - inputs["loss"]}


def test_inputs_that_do_not_affect_outputs_break_no_loop():
    twin = vht.Twin({"a": Drain(), "b": Echo(), "level": Level()},
                    [("level.z_out", "a.u"), ("a.y", "b.u"), ("b.y", "a.loss")])
    assert twin.order.index("level") < twin.order.index("a") < twin.order.index("b")
    solution = vht.simulate(twin, t1=1.0)
    assert int(solution.status) == 0
    with pytest.raises(ValueError, match="algebraic loop"):
        vht.Twin({"a": Drain(), "b": Echo()}, [("a.y", "b.u"), ("b.y", "a.u")])
