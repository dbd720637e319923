"""Results as xarray Datasets, HDF5 round trips, provenance and hashes."""

import json

import jax
import numpy as np
import pytest

import vht
from physiology_models.twins import oral_pk


@pytest.fixture(scope="module")
def run():
    twin = oral_pk(compartments=2)
    scenario = vht.Scenario([vht.OralDose("drug.depot", 400.0, 0.0)], name="single dose")
    solution = vht.simulate(twin, scenario, t1=24 * vht.HOUR, n_save=25)
    return twin, scenario, solution


def test_dataset_has_named_dims_units_and_provenance(run):
    twin, scenario, solution = run
    ds = vht.to_dataset(solution, twin, scenario, seed=7)
    assert ds["drug.concentration"].dims == ("time",)
    assert ds["drug.concentration"].attrs == {"units": "mg/L", "kind": "signal"}
    assert ds["drug.central"].attrs["units"] == "mg"
    assert ds["time"].attrs["units"] == "min"
    assert ds["parameter:drug.clearance"].attrs["units"] == "L/h"
    assert int(ds["status"]) == 0
    attrs = ds.attrs
    assert attrs["model_hash"] == vht.model_hash(twin)
    assert attrs["parameter_hash"] == vht.parameter_hash(twin)
    assert attrs["solver"] == "Tsit5" and attrs["solver_rtol"] == "1e-06"
    assert attrs["seed"] == "7"
    assert json.loads(attrs["scenario"])["name"] == "single dose"
    assert attrs["twin_builder"] == "physiology_models.twins:oral_pk"
    for key in ("vht_version", "jax_version", "diffrax_version", "created_utc"):
        assert attrs[key]


def test_hdf5_round_trip_is_exact(run, tmp_path):
    twin, scenario, solution = run
    ds = vht.to_dataset(solution, twin, scenario)
    path = vht.save_dataset(ds, tmp_path / "out" / "run.h5")
    back = vht.load_dataset(path)
    assert list(back.data_vars) == list(ds.data_vars)
    assert back.attrs == ds.attrs
    for name, variable in ds.variables.items():
        other = back[name]
        assert other.dims == variable.dims, name
        assert other.dtype == variable.dtype, name
        assert other.attrs.get("units") == variable.attrs.get("units"), name
        assert np.asarray(other.values).tobytes() == np.asarray(variable.values).tobytes(), name
    assert not list(tmp_path.glob("out/.*partial*"))  # the temporary file was renamed


def test_batched_solutions_get_batch_dims_and_labels(run):
    twin, _, _ = run
    arms = vht.stack([vht.Scenario([vht.OralDose("drug.depot", d, 0.0)]) for d in (100.0, 200.0)])
    solution = jax.vmap(lambda s: vht.simulate(twin, s, t1=600.0, n_save=5))(arms)
    ds = vht.to_dataset(solution, twin, batch_dims=("arm",), coords={"arm": ["low", "high"]})
    assert ds["drug.concentration"].dims == ("arm", "time")
    assert list(ds["arm"].values) == ["low", "high"]
    assert ds["status"].dims == ("arm",)
    np.testing.assert_allclose(ds["drug.concentration"].sel(arm="high"),
                               2 * ds["drug.concentration"].sel(arm="low"), rtol=1e-6)
    with pytest.raises(ValueError, match="has 1 batch axes but batch_dims"):
        vht.to_dataset(solution, batch_dims=("arm", "member"))
    with pytest.raises(ValueError, match="not a batch dim"):
        vht.to_dataset(solution, coords={"member": [0, 1]}, batch_dims=("arm",))


def test_model_hash_tracks_structure_and_parameter_hash_tracks_values():
    base = oral_pk(compartments=1)
    assert vht.model_hash(base) == vht.model_hash(oral_pk(compartments=1))
    assert vht.model_hash(base) != vht.model_hash(oral_pk(compartments=2))
    changed = base.replace({"drug.clearance": 3.0})
    assert vht.model_hash(changed) == vht.model_hash(base)
    assert vht.parameter_hash(changed) != vht.parameter_hash(base)
    assert len(vht.model_hash(base)) == 64
