"""The remaining error messages of the runtime, each with the text a user sees."""

import json
import re
from pathlib import Path

import h5py
import jax
import jax.numpy as jnp
import pytest
from common_twins import one_compartment

import physiology_models.twins
import vht
from physiology_models.cardiovascular import ClosedLoopCirculation
from physiology_models.twins import oral_pk

ROOT = Path(__file__).resolve().parents[1]


def test_units():
    assert vht.conversion_factor("L/h", "mL/min") == pytest.approx(1000 / 60)
    with pytest.raises(ValueError, match="unit mismatch: 'mmHg' has dimension"):
        vht.conversion_factor("mmHg", "mL")
    with pytest.raises(ValueError, match="has an offset; use an absolute unit"):
        vht.conversion_factor("degC", "K")
    with pytest.raises(ValueError, match="a unit must be a string"):
        vht._units.parse_unit(3)
    with pytest.raises(ValueError, match="unit mismatch"):
        vht.conversion_factor("U", "mol")  # insulin units are not moles (nor enzyme units)
    assert vht.conversion_factor("mU/L", "IU/L") == pytest.approx(1e-3)


def test_simulate_argument_errors():
    twin = one_compartment()
    with pytest.raises(ValueError, match=r"save times must lie within \[t0, t1\]"):
        vht.simulate(twin, ts=jnp.array([1.0, 2.0]), t1=1.5)
    with pytest.raises(ValueError, match="max_steps must be a positive integer"):
        vht.simulate(twin, t1=1.0, max_steps=0)
    with pytest.raises(ValueError, match="scenario must be a vht.Scenario"):
        vht.simulate(twin, [vht.Bolus("drug.central", 1.0, 0.0)], t1=1.0)

    class Unknown(vht.AbstractIntervention):
        pass

    with pytest.raises(ValueError, match="does not know how to apply Unknown"):
        vht.simulate(twin, vht.Scenario([Unknown()]), t1=1.0)


def test_stack_needs_scenarios():
    with pytest.raises(ValueError, match="stack needs at least one scenario"):
        vht.stack([])


def test_twin_needs_organs_in_a_known_form():
    with pytest.raises(ValueError, match="a twin needs at least one organ"):
        vht.Twin({})
    with pytest.raises(ValueError, match="mapping or a sequence of \\(name, organ\\) pairs"):
        vht.Twin([ClosedLoopCirculation()])


def test_two_pulsatile_organs_have_no_common_period():
    twin = vht.Twin({"a": ClosedLoopCirculation(), "b": ClosedLoopCirculation()})
    with pytest.raises(ValueError, match="more than one pulsatile organ \\(a, b\\)"):
        vht.steady_state(twin)


def test_circulation_valve_kind():
    with pytest.raises(ValueError, match="valves must be 'smooth' or 'ideal'"):
        ClosedLoopCirculation(valves="leaky")


def test_network_building_blocks_reject_bounds():
    with pytest.raises(ValueError, match="lower <= upper"):
        vht.parameter(1.0, unit="mL", bounds=(2.0, 1.0))


def test_dataset_needs_one_time_axis():
    twin = one_compartment()
    run = jax.vmap(lambda t1: vht.simulate(twin, t1=t1, n_save=3))
    solution = run(jnp.array([10.0, 20.0]))
    with pytest.raises(ValueError, match="saved at different times"):
        vht.to_dataset(solution)
    with pytest.raises(KeyError, match="neither a state nor a signal"):
        solution["drug.nothing"]


def test_plot_names_missing_variables():
    twin = one_compartment()
    dataset = vht.to_dataset(vht.simulate(twin, t1=10.0, n_save=3), twin)
    with pytest.raises(KeyError, match="'drug.nothing' is not in the dataset"):
        vht.plot_signal(dataset, "drug.nothing")


def test_builder_must_return_a_twin(tmp_path):
    from vht._twin_file import builder

    def not_a_twin():
        return 3

    not_a_twin.__qualname__ = "not_a_twin"
    wrapped = builder(not_a_twin)
    with pytest.raises(ValueError, match="returned int, not a Twin"):
        wrapped()


def _edit(path, **attrs):
    with h5py.File(path, "a") as f:
        for key, value in attrs.items():
            f.attrs[key] = value


def test_twin_file_structure_errors(tmp_path, monkeypatch):
    path = vht.save_twin(tmp_path / "t.h5", oral_pk())

    newer = vht.save_twin(tmp_path / "newer.h5", oral_pk())
    _edit(newer, format_version=99)
    with pytest.raises(ValueError, match="has twin-file format 99; this vht reads up to 1"):
        vht.load_twin(newer)

    renamed = vht.save_twin(tmp_path / "renamed.h5", oral_pk())
    hashes = json.loads(h5py.File(renamed)["/"].attrs["organ_hashes"])
    _edit(renamed, organ_hashes=json.dumps({"liver": hashes["drug"], **hashes}))
    with pytest.raises(ValueError, match="organ 'liver' of the file is missing"):
        vht.load_twin(renamed)

    fewer = vht.save_twin(tmp_path / "fewer.h5", oral_pk())
    _edit(fewer, organ_hashes=json.dumps({}))
    with pytest.raises(ValueError, match="organ 'drug' is new in the twin"):
        vht.load_twin(fewer)

    rewired = vht.save_twin(tmp_path / "rewired.h5", oral_pk())
    _edit(rewired, model_hash="0" * 64)
    with pytest.raises(ValueError, match="connections differ from the file's"):
        vht.load_twin(rewired)

    missing = vht.save_twin(tmp_path / "missing.h5", oral_pk())
    with h5py.File(missing, "a") as f:
        del f["parameters/drug.ka"]
    with pytest.raises(ValueError, match=re.escape("no stored value for parameters ['drug.ka']")):
        vht.load_twin(missing)
    assert vht.load_twin(path) is not None


def test_only_the_distributed_module_imports_mpi4jax():
    importers = [p.relative_to(ROOT).as_posix()
                 for folder in ("vht", "physiology_models", "calibration", "experiments")
                 for p in (ROOT / folder).rglob("*.py")
                 if re.search(r"^\s*(import|from)\s+mpi4jax", p.read_text(), re.M)]
    assert importers == ["vht/_distributed.py"]


def test_builders_record_their_import_path():
    assert physiology_models.twins.oral_pk.vht_builder == "physiology_models.twins:oral_pk"


def test_parameter_step_values_are_checked_against_bounds():
    twin = one_compartment()
    with pytest.raises(ValueError, match=r"ParameterStep: drug.bioavailability = 1.5 "
                                         r"\[dimensionless\] "
                                         r"lies outside its bounds \[0.0, 1.0\]"):
        vht.simulate(twin, vht.Scenario([vht.ParameterStep("drug.bioavailability", 1.5)]),
                     t1=1.0)
