"""`vht whatif`: a scenario file run end to end on a UVA/Padova virtual patient (population
uncertainty, three insulin arms, the correction controller in the loop), its HDF5 results
and its HTML report as headless Chromium renders it."""

from __future__ import annotations

import os
import textwrap
from pathlib import Path

import numpy as np
import pytest
from report_browser import open_in_chromium

import vht
from vht import cli
from vht._whatif import build
from vht._whatif_file import read_whatif

ROOT = Path(__file__).resolve().parents[1]
pytestmark = pytest.mark.xdist_group("whatif_t1d")

SCENARIO = textwrap.dedent("""\
    title = "adolescent#002: do half boluses need a correction?"
    horizon = "12 h"

    [patient]
    virtual = "uva_padova/adolescent#002"

    [uncertainty]
    source = "population"
    members = 8
    seed = 3
    cv = { "patient.kabs" = 0.3, "patient.Vmx" = 0.2 }

    [[events]]
    kind = "meal"
    time = "1 h"
    carbs = "60 g"

    [[events]]
    kind = "meal"
    time = "6 h"
    carbs = "80 g"

    [[arms]]
    name = "basal only"
    treatments = [ { kind = "basal_insulin", rate = "0.8 U/h" } ]

    [[arms]]
    name = "half boluses"
    treatments = [
      { kind = "basal_insulin", rate = "0.8 U/h" },
      { kind = "meal_bolus", carb_ratio = "20 g/U" },
    ]

    [[arms]]
    name = "half boluses + correction above 170"
    treatments = [
      { kind = "basal_insulin", rate = "0.8 U/h" },
      { kind = "meal_bolus", carb_ratio = "20 g/U" },
      { kind = "correction_insulin", above = "170 mg/dL", until = "155 mg/dL", rate = "3 U/h" },
    ]

    [[outcomes]]
    kind = "time_in_range"
    low = "70 mg/dL"
    high = "180 mg/dL"

    [[outcomes]]
    kind = "time_below"
    threshold = "70 mg/dL"

    [[outcomes]]
    kind = "mean"
    name = "mean glucose after the first meal"
    signal = "patient.glucose"
    start = "1 h"
    """)


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    folder = tmp_path_factory.mktemp("whatif")
    scenario = folder / "half_boluses.toml"
    scenario.write_text(SCENARIO)
    status = cli.main(["whatif", str(scenario), "--out", str(folder / "out"), "--no-progress",
                       "--cache", os.environ["JAX_COMPILATION_CACHE_DIR"]])
    return status, folder / "out"


def test_the_command_writes_results_and_report(run, capsys):
    status, out = run
    assert status == 0
    assert (out / "whatif.h5").is_file() and (out / "report.html").is_file()
    figures = sorted(p.name for p in (out / "figures").glob("*.png"))
    assert "patient.glucose.png" in figures
    assert all((out / "figures" / f).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" for f in figures)
    dataset = vht.load_dataset(out / "whatif.h5")
    glucose = dataset["patient.glucose"]
    assert glucose.dims == ("arm", "member", "time")
    assert glucose.shape == (3, 8, 145) and glucose.attrs["units"] == "mg/dL"
    assert list(dataset["arm"].values) == ["basal only", "half boluses",
                                           "half boluses + correction above 170"]
    assert np.all(dataset["status"].values == 0)
    assert dataset["parameter.patient.kabs"].shape == (8,)
    assert dataset.attrs["scenario_sha256"]


def test_the_arms_move_glucose_in_the_physiological_direction(run):
    _, out = run
    glucose = vht.load_dataset(out / "whatif.h5")["patient.glucose"].values
    after = np.s_[:, :, 12:]  # from the first meal on
    mean = np.mean(glucose[after], axis=2)  # arm x member
    # member by member: boluses lower glucose, and the controller lowers it further
    assert np.all(mean[1] < mean[0] - 10.0)
    assert np.all(mean[2] < mean[1] - 2.0)
    # the controller acts only above its threshold: before the first meal the arms coincide
    np.testing.assert_allclose(glucose[0, :, :12], glucose[2, :, :12], rtol=1e-9)


def test_the_report_renders_in_headless_chromium(run):
    _, out = run
    page = open_in_chromium(out / "report.html")
    assert page["requests"] == [] and page["console_errors"] == [] and page["page_errors"] == []
    assert page["h1"] == "adolescent#002: do half boluses need a correction?"
    assert page["arms"] == ["basal only", "half boluses", "half boluses + correction above 170"]
    assert page["rows"] == 3
    for cell in page["cells"]:
        low, median, high = (float(cell[k]) for k in ("low", "median", "high"))
        assert np.isfinite([low, median, high]).all() and low <= median <= high
    assert page["images"] and all(i["width"] > 0 and i["height"] > 0 and i["naturalWidth"] > 0
                                  for i in page["images"])
    assert page["ink_fraction"] > 0.01


def test_a_meaning_error_stops_the_command_with_its_line(tmp_path, capsys):
    scenario = tmp_path / "bad.toml"
    scenario.write_text(SCENARIO.replace('carbs = "80 g"', 'carbs = "80"'))
    status = cli.main(["whatif", str(scenario), "--out", str(tmp_path / "out"), "--cache",
                       "off"])
    assert status == 2
    line = SCENARIO.splitlines().index('carbs = "80 g"') + 1
    assert (f"bad.toml:{line}: events[1].carbs: '80' has no unit"
            in capsys.readouterr().err)
    assert not (tmp_path / "out").exists()


def test_the_shipped_example_files_build():
    for path in sorted((ROOT / "experiments" / "whatif").glob("*.toml")):
        twin, members, arms, outcomes, warnings, _ = build(read_whatif(path))
        assert len(arms) >= 2 and outcomes, path


def test_members_outside_the_virtual_cohort_are_warned_of():
    """Population draws far from the patient leave the range of the 30 virtual patients the
    model was validated on: the what-if says how many members, for which parameter."""
    wide = SCENARIO.replace('cv = { "patient.kabs" = 0.3, "patient.Vmx" = 0.2 }',
                            'cv = { "patient.kabs" = 0.3, "patient.Vmx" = 2.5 }')
    assert wide != SCENARIO
    warnings = build(read_whatif(wide))[4]
    (warning,) = [w for w in warnings if "outside the range of the 30 virtual patients" in w]
    assert warning.startswith("members have", warning.index(" of 8 ") + len(" of 8 "))
    assert "patient.Vmx" in warning
    assert not [w for w in build(read_whatif(SCENARIO))[4] if "virtual patients" in w]


POSTERIOR = textwrap.dedent("""\
    title = "calibrated patient: 200 or 400 mg?"
    horizon = "24 h"
    save_every = "15 min"

    [patient]
    twin_file = "fitted.h5"

    [uncertainty]
    source = "posterior"
    members = 30
    seed = 5

    [[arms]]
    name = "200 mg"
    treatments = [ { kind = "drug_regimen", route = "oral", dose = "200 mg" } ]

    [[arms]]
    name = "400 mg"
    treatments = [ { kind = "drug_regimen", route = "oral", dose = "400 mg" } ]

    [[outcomes]]
    kind = "auc"
    signal = "drug.concentration"
    """)


def test_posterior_uncertainty_comes_from_the_calibrated_twin_file(tmp_path):
    import pandas as pd

    import calibration as cal
    from physiology_models import twins

    twin = twins.oral_pk()
    hours = np.array([0.5, 1, 2, 3, 4, 6, 8, 12, 16, 24])
    truth = vht.simulate(twin.replace({"drug.clearance": 4.0}),
                         vht.Scenario([vht.OralDose("drug.depot", 300.0, 0.0, unit="mg")]),
                         ts=hours * 60.0)
    observed = np.asarray(truth["drug.concentration"]) * np.exp(
        0.1 * np.random.default_rng(0).standard_normal(hours.size))
    records = cal.validate_records(pd.DataFrame(
        [{"subject": "P1", "time": 0.0, "variable": "", "value": np.nan, "unit": "mg",
          "dose_amount": 300.0, "route": "oral", "duration": 0.0}]
        + [{"subject": "P1", "time": float(t), "variable": "drug.concentration",
            "value": float(c), "unit": "mg/L", "dose_amount": np.nan, "route": "",
            "duration": 0.0} for t, c in zip(hours, observed)]))
    problem = cal.Problem(twin, free=[cal.FreeParameter("drug.clearance"),
                                      cal.FreeParameter("drug.volume")],
                          observations={"drug.concentration": cal.Proportional(cv=0.1)},
                          dose_targets={"oral": "drug.depot"}, time_unit="h")
    subject = cal.read_subject(records, "P1", problem.observed, problem.dose_units, 60.0)
    fit = cal.fit_individual(problem, subject, starts=2, steps=60)
    fit.save(tmp_path / "fitted.h5", n_samples=200, seed=1)
    samples = vht.load_posterior(tmp_path / "fitted.h5")

    (tmp_path / "dose.toml").write_text(POSTERIOR)
    result = vht.run_whatif(tmp_path / "dose.toml", progress=False)
    drawn = result.dataset["parameter.drug.clearance"].values
    assert drawn.shape == (30,) and np.all(np.isin(drawn, samples["drug.clearance"]))
    assert np.std(drawn) > 0  # the members differ: the uncertainty is the posterior's
    auc = {row["arm"]: row for row in result.outcomes}
    # linear PK, solved in closed form: the 400 mg exposure is twice the 200 mg one, interval
    # and all, to round-off
    assert result.provenance["integrator"] == "vht.simulate_closed_form (exact, no solver)"
    for key in ("median", "low", "high"):
        assert auc["400 mg"][key] == pytest.approx(2.0 * auc["200 mg"][key], rel=1e-12)
    assert auc["200 mg"]["low"] < auc["200 mg"]["median"] < auc["200 mg"]["high"]
    # AUC(0-24 h) is below dose / CL, the AUC to infinity of a fully absorbed oral dose
    assert auc["200 mg"]["median"] < 200.0 / float(fit.estimates["drug.clearance"])
    assert "calibrated twin file fitted.h5" == result.provenance["patient"]


STIFF = textwrap.dedent("""\
    title = "bleeding, beat-averaged"
    horizon = "90 min"
    save_every = "1 min"

    [patient]
    twin = "mean_flow_circulation"
    start = "steady_state"

    [uncertainty]
    source = "population"
    members = 3
    cv = { "circulation.systemic_resistance" = 0.1 }

    [[events]]
    kind = "hemorrhage"
    start = "10 min"
    duration = "40 min"
    rate = "60 mL/min"

    [[arms]]
    name = "no fluids"
    treatments = []

    [[arms]]
    name = "fluids while MAP < 70"
    treatments = [
      { kind = "fluid_rule", below = "70 mmHg", until = "75 mmHg", rate = "60 mL/min" },
    ]

    [[outcomes]]
    kind = "trough"
    signal = "circulation.mean_arterial_pressure"
    """)


def test_a_stiff_twin_runs_its_arms_through_one_vmapped_implicit_solve(tmp_path):
    from vht import _whatif

    (tmp_path / "stiff.toml").write_text(STIFF)
    result = vht.run_whatif(tmp_path / "stiff.toml", progress=False)
    assert result.provenance["integrator"] == "vmapped vht.simulate (diffrax Kvaerno3)"
    assert _whatif._vmapped_simulate.cache_info().currsize >= 1
    assert np.all(result.dataset["status"].values == 0)
    pressure = result.dataset["circulation.mean_arterial_pressure"].values  # arm x member x t
    # members start at their own rest: flat until the bleed
    assert np.max(np.abs(np.diff(pressure[:, :, :10], axis=2))) < 1e-3
    trough = {row["arm"]: row["median"] for row in result.outcomes}
    # the rule holds MAP near its threshold; without it, 2.4 L lost (44 %) is more than the
    # reflex and its chemoreceptors can compensate
    assert trough["fluids while MAP < 70"] > 68.0 > trough["no fluids"]
