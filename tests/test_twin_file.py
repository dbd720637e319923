"""Twin files: exact round trip, posterior samples, refusal of a changed model."""

import h5py
import numpy as np
import pytest

import physiology_models.twins
import vht
from physiology_models.cardiovascular import ClosedLoopCirculation
from physiology_models.twins import circulation_with_vasopressor, oral_pk


def test_round_trip_rebuilds_the_same_twin(tmp_path):
    twin = circulation_with_vasopressor().replace({"circulation.heart_rate": 88.0,
                                                   "drug.clearance": 150.0})
    path = vht.save_twin(tmp_path / "patient.h5", twin, metadata={"fit": "test"})
    loaded = vht.load_twin(path)
    assert type(loaded) is type(twin) and loaded.names == twin.names
    assert loaded.connections == twin.connections
    assert vht.model_hash(loaded) == vht.model_hash(twin)
    assert vht.parameter_hash(loaded) == vht.parameter_hash(twin)
    for name, value in twin.parameters().items():
        assert np.asarray(loaded.parameters()[name]).tobytes() == np.asarray(value).tobytes()
    with h5py.File(path) as f:
        assert f["parameters/circulation.heart_rate"].attrs["unit"] == "1/min"
        assert f.attrs["builder"] == "physiology_models.twins:circulation_with_vasopressor"


def test_posterior_samples_travel_with_the_twin(tmp_path):
    twin = oral_pk()
    samples = {"drug.clearance": np.linspace(2.0, 3.0, 50), "drug.volume": np.full(50, 31.0)}
    path = vht.save_twin(tmp_path / "t.h5", twin, posterior=samples)
    back = vht.load_posterior(path)
    np.testing.assert_array_equal(back["drug.clearance"], samples["drug.clearance"])
    assert vht.load_posterior(vht.save_twin(tmp_path / "u.h5", twin)) is None
    with pytest.raises(ValueError, match="posterior names unknown parameter 'drug.nope'"):
        vht.save_twin(tmp_path / "v.h5", twin, posterior={"drug.nope": np.ones(3)})


def test_a_changed_organ_is_refused_by_name(tmp_path, monkeypatch):
    path = vht.save_twin(tmp_path / "patient.h5", circulation_with_vasopressor())

    class EditedCirculation(ClosedLoopCirculation):
        """The same ports, but the equations changed since the file was written."""

        def rates(self, t, state, inputs):
            rates = super().rates(t, state, inputs)
            return {**rates, "systemic_veins": rates["systemic_veins"] * 1.01}

    monkeypatch.setattr(physiology_models.twins, "ClosedLoopCirculation", EditedCirculation)
    with pytest.raises(ValueError, match="organ 'circulation' \\(EditedCirculation\\) differs "
                                         "from the one that wrote the file"):
        vht.load_twin(path)


def test_static_structure_changes_the_organ_hash(tmp_path):
    smooth = circulation_with_vasopressor(valves="smooth")
    ideal = circulation_with_vasopressor(valves="ideal")
    assert vht.organ_hashes(smooth)["circulation"] != vht.organ_hashes(ideal)["circulation"]
    assert vht.organ_hashes(smooth)["drug"] == vht.organ_hashes(ideal)["drug"]


def test_documentation_changes_do_not_change_the_hash():
    class Documented(ClosedLoopCirculation):
        """Docstring A."""

    class Redocumented(ClosedLoopCirculation):
        """Docstring B, much longer, with a different comment below."""

        # a comment

    a = vht.Twin({"circulation": Documented()})
    b = vht.Twin({"circulation": Redocumented()})
    code_a = vht._hashing._organ_structure(a["circulation"])["code"]
    code_b = vht._hashing._organ_structure(b["circulation"])["code"]
    assert code_a == code_b


def test_twin_file_errors(tmp_path):
    hand_made = vht.Twin({"circulation": ClosedLoopCirculation()})
    with pytest.raises(ValueError, match="not made by a @vht.builder function"):
        vht.save_twin(tmp_path / "x.h5", hand_made)

    path = vht.save_twin(tmp_path / "t.h5", oral_pk())
    with h5py.File(path, "a") as f:
        f["parameters/drug.ka"][()] = 99.0
    with pytest.raises(ValueError, match="do not match their hash"):
        vht.load_twin(path)

    with h5py.File(tmp_path / "other.h5", "w") as f:
        f.attrs["format"] = "something-else"
    with pytest.raises(ValueError, match="is not a vht twin file"):
        vht.load_twin(tmp_path / "other.h5")

    path = vht.save_twin(tmp_path / "b.h5", oral_pk())
    with h5py.File(path, "a") as f:
        f.attrs["builder"] = "physiology_models.twins:no_such_builder"
    with pytest.raises(ValueError, match="cannot be imported"):
        vht.load_twin(path)

    with pytest.raises(ValueError, match="must be defined at module level"):
        @vht.builder
        def local_builder():
            return hand_made


def test_builder_arguments_must_be_json(tmp_path):
    with pytest.raises(ValueError, match="arguments must be JSON-serialisable"):
        oral_pk(compartments=object())


def test_a_batched_twin_is_not_one_twin(tmp_path):
    import jax
    import jax.numpy as jnp

    cohort = jax.vmap(lambda cl: oral_pk().replace({"drug.clearance": cl}))(jnp.ones(3))
    with pytest.raises(ValueError, match="a twin file holds one twin"):
        vht.save_twin(tmp_path / "c.h5", cohort)

