"""Ensemble sweeps: virtual populations, failure isolation, resume after SIGKILL at every
stage, and bitwise independence of the decomposition over devices.

The sweep runs in subprocesses through ``vht sweep`` (the command users run), on the small
sweep of ``tests/data/tiny_sweep.py``: 10 members in chunks of 3, two arms.
"""

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import h5py
import jax
import jax.numpy as jnp
import numpy as np
import pytest

import vht
from physiology_models.twins import oral_pk
from vht._ensemble_store import FAULT_POINTS

ROOT = Path(__file__).resolve().parents[1]
TINY = ROOT / "tests" / "data" / "tiny_sweep.py"
pytestmark = pytest.mark.xdist_group("ensemble")


def _environment(**extra) -> dict[str, str]:
    env = {**os.environ, "VHT_DISABLE_MPI": "1"}
    env.pop("VHT_SWEEP_FAULT", None)
    env.update(extra)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), env.get("PYTHONPATH")]))
    return env


def _vht_sweep(output: Path, **env) -> subprocess.CompletedProcess:
    command = [sys.executable, "-m", "vht.cli", "sweep", str(TINY), "--output", str(output),
               "--keep-parts", "--no-progress"]
    return subprocess.run(command, cwd=ROOT, env=_environment(**env), capture_output=True,
                          text=True, timeout=600)


def _arrays(path: Path) -> dict[str, bytes]:
    """Every array of a result file except the quantiles' description, as raw bytes."""
    out = {}
    with h5py.File(path, "r") as f:
        for name, item in f.items():
            if isinstance(item, h5py.Dataset):
                value = item[()]
                out[name] = value.tobytes() if value.dtype.kind != "O" else repr(value).encode()
    return out


def _complete_or_absent(path: Path) -> None:
    """A reader sees either no file or a complete one (never a half-written one)."""
    if path.exists():
        with h5py.File(path, "r") as f:
            assert f.attrs["format"] == "vht-sweep"
            assert f["status"].shape == (10, 2)
            assert np.all(f["member"][()] == np.arange(10))


@pytest.fixture(scope="module")
def reference(tmp_path_factory) -> Path:
    output = tmp_path_factory.mktemp("reference") / "tiny.h5"
    result = _vht_sweep(output)
    assert result.returncode == 0, result.stderr[-3000:]
    return output


# -- virtual populations -----------------------------------------------------------------------


def _draws(population, n, seed=0):
    keys = jax.vmap(lambda i: jax.random.fold_in(jax.random.PRNGKey(seed), i))(jnp.arange(n))
    return jax.vmap(population.draw)(keys)


def test_lognormal_population_has_the_declared_medians_spreads_and_correlation():
    correlation = np.array([[1.0, 0.6, -0.3], [0.6, 1.0, 0.2], [-0.3, 0.2, 1.0]])
    population = vht.VirtualPopulation(
        {"drug.clearance": vht.LogNormal(2.76, cv=0.3), "drug.volume": vht.LogNormal(32.1,
                                                                                     omega=0.2),
         "drug.ka": vht.LogNormal(1.6, cv=0.5)}, correlation=correlation)
    values, _ = _draws(population, 40_000)
    logs = np.log(np.stack([values[n] for n in population.parameter_names()], axis=1))
    sample = np.corrcoef(logs, rowvar=False)
    # sampling SE of a correlation near 0.6 with n = 40,000 is about 0.003
    np.testing.assert_allclose(sample, correlation, atol=0.015)
    np.testing.assert_allclose(np.exp(np.median(logs, axis=0)), [2.76, 32.1, 1.6], rtol=0.01)
    omegas = [np.sqrt(np.log1p(0.3**2)), 0.2, np.sqrt(np.log1p(0.5**2))]
    np.testing.assert_allclose(np.std(logs, axis=0), omegas, rtol=0.02)


def test_adult_covariates_follow_their_documented_distributions():
    population = vht.VirtualPopulation({"drug.clearance": vht.LogNormal(2.76, cv=0.3)},
                                       covariates=vht.AdultCovariates(),
                                       effects={"drug.clearance": [vht.Allometry("weight", 70.0,
                                                                                 0.75)]})
    values, covariates = _draws(population, 40_000)
    female = np.asarray(covariates["sex"]) == 1.0
    assert abs(female.mean() - 0.5) < 0.01
    weight = np.asarray(covariates["weight"])
    np.testing.assert_allclose(np.median(weight[~female]), 88.0, rtol=0.01)
    np.testing.assert_allclose(np.median(weight[female]), 75.0, rtol=0.01)
    np.testing.assert_allclose(np.mean(np.asarray(covariates["height"])[female]), 162.0,
                               rtol=0.002)
    age = np.asarray(covariates["age"])
    assert 18.0 <= age.min() and age.max() <= 80.0
    # allometry: log CL regressed on log(weight / 70) has slope 0.75
    slope = np.polyfit(np.log(weight / 70.0), np.log(np.asarray(values["drug.clearance"])), 1)[0]
    assert abs(slope - 0.75) < 0.05


def test_plausibility_filter_rejects_members_outside_a_resting_state_range():
    # The beat-averaged circulation without reflex: draws of systemic resistance; members whose
    # resting mean arterial pressure leaves 80-105 mmHg are rejected.
    from physiology_models.twins import mean_flow_circulation

    twin = mean_flow_circulation(reflex=False)
    resistance = "circulation.systemic_resistance"
    assert resistance in twin.parameters(), sorted(twin.parameters())
    population = vht.VirtualPopulation(
        {resistance: vht.LogNormal(float(twin.parameters()[resistance]), cv=0.3)},
        plausible={"circulation.mean_arterial_pressure": (80.0, 105.0)})
    population.check_against(twin)
    values, covariates = _draws(population, 32)
    accept = jax.jit(jax.vmap(lambda v, c: population.accept(twin.replace(v), v, c)))
    accepted = np.asarray(accept(values, covariates))
    rest = jax.jit(jax.vmap(lambda v: vht.steady_state(twin.replace(v)).y))(values)
    pressure = np.asarray(jax.vmap(lambda y: twin.signals(0.0, y))(rest))[
        :, twin.signal_names.index("circulation.mean_arterial_pressure")]
    np.testing.assert_array_equal(accepted, (pressure >= 80.0) & (pressure <= 105.0))
    assert 0 < accepted.sum() < accepted.size  # the range cuts the population


def test_population_errors_name_what_is_wrong():
    with pytest.raises(ValueError, match="exactly one of omega"):
        vht.LogNormal(1.0)
    with pytest.raises(ValueError, match="median must be positive"):
        vht.LogNormal(-1.0, cv=0.1)
    with pytest.raises(ValueError, match=r"correlation has shape \(1, 1\); 2 parameters"):
        vht.VirtualPopulation({"a.b": vht.LogNormal(1.0, cv=0.1),
                               "a.c": vht.LogNormal(1.0, cv=0.1)}, correlation=[[1.0]])
    with pytest.raises(ValueError, match="positive definite"):
        vht.VirtualPopulation({"a.b": vht.LogNormal(1.0, cv=0.1),
                               "a.c": vht.LogNormal(1.0, cv=0.1)},
                              correlation=[[1.0, 1.0], [1.0, 1.0]])
    with pytest.raises(ValueError, match="uses covariate 'weight', which the population's "
                                         "covariates do not provide"):
        vht.VirtualPopulation({"a.b": vht.LogNormal(1.0, cv=0.1)},
                              effects={"a.b": [vht.Allometry("weight", 70.0, 0.75)]})
    population = vht.VirtualPopulation({"drug.nonsense": vht.LogNormal(1.0, cv=0.1)})
    with pytest.raises(ValueError, match="'drug.nonsense', which is not a parameter of the twin"):
        population.check_against(oral_pk())
    population = vht.VirtualPopulation({"drug.clearance": vht.LogNormal(1.0, cv=0.1)},
                                       plausible={"drug.heart_rate": (1.0, 2.0)})
    with pytest.raises(ValueError, match="plausible names 'drug.heart_rate'"):
        population.check_against(oral_pk())


def test_sweep_errors_name_what_is_wrong(tmp_path):
    population = vht.VirtualPopulation({"drug.clearance": vht.LogNormal(2.76, cv=0.3)})
    arm = vht.Scenario([vht.OralDose("drug.depot", 320.0, 0.0)])
    with pytest.raises(ValueError, match="output 'drug.nothing' is neither"):
        vht.Sweep(oral_pk(), population, arm, members=4, t1=60.0, outputs=["drug.nothing"])
    with pytest.raises(ValueError, match="override for member 9, outside 0..3"):
        vht.Sweep(oral_pk(), population, arm, members=4, t1=60.0,
                  overrides={9: {"drug.clearance": 1.0}})
    with pytest.raises(ValueError, match=r"use chunk_size <= \d+"):
        vht.Sweep(oral_pk(), population, arm, members=4, chunk_size=4096, t1=60.0,
                  n_save=10_000, memory_limit=2**20)
    with pytest.raises(ValueError, match="needs t1"):
        vht.Sweep(oral_pk(), population, arm, members=4)


def test_the_integrator_follows_the_twin_and_its_arms_and_can_be_forced():
    population = vht.VirtualPopulation({"drug.clearance": vht.LogNormal(2.76, cv=0.3)})
    doses = vht.Scenario([vht.OralDose("drug.depot", 320.0, 0.0)])
    step = vht.Scenario([vht.OralDose("drug.depot", 320.0, 0.0),
                         vht.ParameterStep("drug.clearance", 1.5, 600.0)])
    sweep = vht.Sweep(oral_pk(), population, doses, members=4, t1=60.0)
    assert sweep.integrator == "closed_form"  # linear organs, doses only: no solver
    # one arm that does not superpose puts the whole sweep on a solver
    mixed = vht.Sweep(oral_pk(), population, {"doses": doses, "step": step}, members=4,
                      t1=60.0)
    assert mixed.integrator == "ensemble"
    assert sweep.with_integrator("ensemble").sweep_hash() != sweep.sweep_hash()
    with pytest.raises(ValueError, match="closed_form' is not possible: the scenario holds"):
        mixed.with_integrator("closed_form")
    with pytest.raises(ValueError, match="integrator must be one of"):
        sweep.with_integrator("rk4")


# -- the runner ---------------------------------------------------------------------------------


def test_sweep_result_is_one_xarray_file_with_members_arms_times_and_parameters(reference):
    dataset = vht.open_sweep(reference)
    concentration = dataset["drug.concentration"]
    assert concentration.dims == ("member", "arm", "time")
    assert concentration.shape == (10, 2, 25)
    assert concentration.attrs["units"] == "mg/L"
    assert list(dataset["arm"].values) == ["single dose", "split dose"]
    assert dataset["parameter:drug.clearance"].dims == ("member",)
    assert dataset["covariate:weight"].attrs["units"] == "kg"
    np.testing.assert_array_equal(dataset["status"].values, 0)
    # plausibility: every accepted clearance lies in the declared range
    clearance = dataset["parameter:drug.clearance"].values
    assert np.all((clearance >= 1.0) & (clearance <= 6.0))
    manifest = json.loads(reference.with_name("tiny.manifest.json").read_text())
    assert manifest["acceptance_rate"] == pytest.approx(10 / dataset["attempts"].values.sum())
    # the quantiles are those of the stored members
    median = dataset["quantile:drug.concentration"].sel(quantile=0.5, arm="split dose").values
    np.testing.assert_allclose(median, np.median(concentration.sel(arm="split dose").values,
                                                 axis=0), rtol=1e-14)
    # a twin of linear organs under doses only is evaluated in closed form, and says so
    assert manifest["integrator"] == "closed_form"
    assert "closed form" in json.loads(dataset.attrs["sweep"])["solver"]
    # each member equals a single evaluation of its drawn parameters: the closed form's (to
    # round-off: the batch width changes the last bits) and diffrax's (to the tolerance)
    member = 4
    twin = oral_pk().replace({"drug.clearance": clearance[member],
                              "drug.volume": dataset["parameter:drug.volume"].values[member]})
    arm = vht.Scenario([vht.OralDose("drug.depot", 320.0, 0.0)])
    stored = concentration.sel(arm="single dose").values[member]
    alone = vht.simulate_closed_form(twin, arm, ts=dataset["time"].values)
    np.testing.assert_allclose(stored, alone["drug.concentration"], rtol=1e-12, atol=1e-15)
    solution = vht.simulate(twin, arm, ts=dataset["time"].values, t1=1440.0)
    np.testing.assert_allclose(stored, solution["drug.concentration"], rtol=1e-5, atol=1e-8)


def test_a_member_that_fails_leaves_the_others_bitwise_unchanged(tmp_path):
    base = oral_pk()
    population = vht.VirtualPopulation({"drug.clearance": vht.LogNormal(2.76, cv=0.3)})
    arm = vht.Scenario([vht.OralDose("drug.depot", 320.0, 0.0)])

    def run(overrides, name):
        sweep = vht.Sweep(base, population, arm, members=8, chunk_size=4, t1=1440.0, n_save=13,
                          max_steps=400, overrides=overrides, seed=3, integrator="ensemble")
        return vht.run_sweep(sweep, tmp_path / f"{name}.h5", progress=False, use_mpi=False)

    # The same sweep twice, member 5's absorption rate pinned: to its typical value, then to
    # 1e7 per hour, where explicit steps of ~1e-5 min exhaust the step budget.
    clean = vht.open_sweep(run({5: {"drug.ka": 1.593}}, "clean").path).load()
    failing = vht.open_sweep(run({5: {"drug.ka": 1e7}}, "failing").path).load()
    assert failing["status"].values[5, 0] == vht.Status.MAX_STEPS
    assert np.all(np.isnan(failing["drug.concentration"].values[5]))
    others = np.arange(8) != 5
    assert np.all(failing["status"].values[others] == vht.Status.OK)
    for name in ("drug.concentration", "drug.central", "drug.depot", "n_steps"):
        assert failing[name].values[others].tobytes() == clean[name].values[others].tobytes(), \
            name


@pytest.mark.parametrize("point", FAULT_POINTS)
def test_sweep_killed_with_sigkill_resumes_to_the_same_bytes(point, reference, tmp_path):
    output = tmp_path / "tiny.h5"
    count = {"compute": 2, "write": 2, "commit": 3}.get(point, 1)  # mid-sweep, not the first
    killed = _vht_sweep(output, VHT_SWEEP_FAULT=f"{point}:{count}")
    assert killed.returncode == -9, (killed.returncode, killed.stderr[-2000:])
    # after the kill: no half-written result, and only complete chunk files under final names
    _complete_or_absent(output)
    parts = output.with_name("tiny.h5.parts")
    for part in parts.glob("chunk-*.h5"):
        with h5py.File(part, "r") as f:
            assert f.attrs["format"] == "vht-sweep-chunk"
    assert not output.with_name("tiny.manifest.json").exists()

    resumed = _vht_sweep(output)
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert _arrays(output) == _arrays(reference)
    journal = (parts / "journal.jsonl").read_text().splitlines()
    starts = [json.loads(line)["chunk"] for line in journal]
    assert sorted(set(starts)) == [0, 1, 2, 3]  # every chunk computed
    assert len(starts) <= 4 + 1  # at most one chunk recomputed for the one kill
    leftovers = list(parts.glob(".*.tmp"))
    assert not leftovers, leftovers


def test_rerunning_a_finished_sweep_does_nothing_and_another_sweep_is_refused(reference,
                                                                               tmp_path):
    again = _vht_sweep(reference)
    assert again.returncode == 0 and "already complete" in again.stdout
    population = vht.VirtualPopulation({"drug.clearance": vht.LogNormal(2.76, cv=0.3)})
    other = vht.Sweep(oral_pk(), population, vht.Scenario(), members=2, t1=60.0)
    with pytest.raises(ValueError, match="holds results of a different sweep"):
        vht.run_sweep(other, reference, progress=False, use_mpi=False)


def test_results_are_bitwise_identical_on_one_and_four_devices(tmp_path):
    code = f"""
        import jax, numpy as np, h5py, runpy
        jax.config.update("jax_enable_x64", True)
        import vht
        assert len(jax.devices()) == 4, jax.devices()
        sweep = runpy.run_path({str(TINY)!r})["sweep"]()
        one = vht.run_sweep(sweep, {str(tmp_path / 'one.h5')!r}, devices=1, progress=False)
        four = vht.run_sweep(sweep, {str(tmp_path / 'four.h5')!r}, devices=4, progress=False)
        print(four.manifest["devices_per_rank"])
    """
    result = subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code)], cwd=ROOT, capture_output=True,
        text=True, timeout=600,
        env=_environment(XLA_FLAGS="--xla_force_host_platform_device_count=4"))
    assert result.returncode == 0, result.stderr[-3000:]
    assert result.stdout.split()[-1] == "4"
    one, four = _arrays(tmp_path / "one.h5"), _arrays(tmp_path / "four.h5")
    assert one.keys() == four.keys()
    for name in one:
        assert one[name] == four[name], name
