"""`vht optimize`: doses and regimens found by gradients through the simulation, checked
against full grid searches of the true metric (41 points for one variable, 11 per variable for
three), the smooth surrogates against the metrics they stand for, the scenario file's
[optimize] errors, and the command end to end with its report in headless Chromium."""

from __future__ import annotations

import json
import textwrap

import jax.numpy as jnp
import numpy as np
import pytest
from report_browser import open_in_chromium

from vht import cli
from vht._optimize import SIMULATIONS_PER_GRADIENT, Problem, optimize
from vht._whatif import Outcome, run_whatif
from vht._whatif_file import ScenarioFileError, read_whatif

pytestmark = pytest.mark.xdist_group("optimize")

# Adolescent #003 on a day of three meals with its basal rate: which three meal boluses keep
# glucose in 70-180 mg/dL with at most 1 % of the time below 70? (Carb ratios alone do badly
# for this patient: 12 g/U spends a third of the day below 70, 18 g/U ~96 % in range.)
T1D = textwrap.dedent("""\
    title = "adolescent#003: three meal boluses"
    horizon = "24 h"

    [patient]
    virtual = "uva_padova/adolescent#003"

    [[events]]
    kind = "meal"
    time = "7 h"
    carbs = "45 g"

    [[events]]
    kind = "meal"
    time = "12 h"
    carbs = "70 g"

    [[events]]
    kind = "meal"
    time = "19 h"
    carbs = "80 g"

    [[arms]]
    name = "CR 18 g/U"
    treatments = [
      { kind = "basal_insulin", rate = "0.65 U/h" },
      { kind = "meal_bolus", carb_ratio = "18 g/U" },
    ]

    [[outcomes]]
    kind = "time_in_range"
    low = "70 mg/dL"
    high = "180 mg/dL"

    [[outcomes]]
    kind = "time_below"
    threshold = "70 mg/dL"

    [optimize]
    arm = "optimised boluses"
    maximize = "time in range 70-180 mg/dL"
    constraints = [ { outcome = "time glucose < 70 mg/dL", at_most = "1 %" } ]
    starts = 8
    treatments = [
      { kind = "basal_insulin", rate = "0.65 U/h" },
      { kind = "insulin_bolus", time = "7 h", dose = { between = ["0 U", "8 U"] } },
      { kind = "insulin_bolus", time = "12 h", dose = { between = ["0 U", "8 U"] } },
      { kind = "insulin_bolus", time = "19 h", dose = { between = ["0 U", "8 U"] } },
    ]
    """)

# One oral dose of a one-compartment drug: which dose gives an AUC(0-24 h) of 100 mg*h/L?
AUC = textwrap.dedent("""\
    title = "oral dose to a target exposure"
    horizon = "24 h"
    save_every = "10 min"

    [patient]
    twin = "oral_pk"

    [[arms]]
    name = "200 mg"
    treatments = [ { kind = "drug_regimen", dose = "200 mg", route = "oral" } ]

    [[outcomes]]
    kind = "auc"
    name = "AUC 0-24 h"

    [[outcomes]]
    kind = "peak"

    [optimize]
    arm = "dose for AUC 100 mg*h/L"
    target = { outcome = "AUC 0-24 h", value = "100 mg*h/L" }
    treatments = [
      { kind = "drug_regimen", route = "oral", dose = { between = ["50 mg", "1000 mg"] } },
    ]
    """)


def _grid_best(problem: Problem, points: int) -> tuple[dict, int]:
    grid = problem.grid(points)
    feasible = [r for r in grid if problem.feasible(r)]
    assert feasible, "the grid has no feasible point"
    return max(feasible, key=problem.score), len(grid)


def test_three_boluses_match_or_beat_an_11_per_variable_grid(record_property):
    problem = Problem(read_whatif(T1D))
    assert [v.path for v in problem.variables] == [
        f"optimize.treatments[{i}].dose" for i in (1, 2, 3)]
    result = optimize(problem, progress=False)
    best, n_grid = _grid_best(problem, 11)
    assert n_grid == 11**3
    record_property("optimizer_time_in_range", result.objective["value"])
    record_property("grid_time_in_range", best["objective"])
    record_property("optimizer_simulations", result.simulations)
    # the true metric at the optimum, not the surrogate, against the grid's best
    assert result.feasible
    assert result.constraints[0]["value"] <= 1.0 and result.constraints[0]["met"]
    assert result.objective["value"] >= best["objective"] - 0.5
    assert result.simulations == result.scans + SIMULATIONS_PER_GRADIENT * result.evaluations
    assert result.simulations < n_grid
    # the answer is one of the simulated points, its doses inside the bounds
    doses = [v["value"] for v in result.variables]
    assert all(0.0 <= d <= 8.0 for d in doses)
    assert any(np.allclose(r["x"], doses) and r["objective"] == result.objective["value"]
               for r in result.history)


def test_dose_reaching_a_target_auc_beats_a_41_point_grid(record_property):
    problem = Problem(read_whatif(AUC))
    result = optimize(problem, progress=False)
    best, n_grid = _grid_best(problem, 41)
    assert n_grid == 41
    grid_deviation = problem.deviation(best["objective"])
    record_property("optimizer_deviation_percent", result.objective["deviation"])
    record_property("grid_deviation_percent", grid_deviation)
    record_property("optimizer_simulations", result.simulations)
    assert result.objective["deviation"] <= grid_deviation + 0.5
    assert result.simulations < n_grid
    # linear PK: AUC(0-24 h) is proportional to the dose, so the answer is checkable by hand
    dose = result.variables[0]["value"]
    assert result.objective["value"] == pytest.approx(100.0, rel=1e-3)
    dose_grid = best["x"][0]
    assert dose == pytest.approx(dose_grid * 100.0 / best["objective"], rel=1e-3)


def test_smooth_surrogates_become_the_metrics_as_the_sigmoids_sharpen():
    ts = np.arange(0.0, 600.0 + 1e-9, 5.0)
    rng = np.random.default_rng(0)
    # glucose-like traces, none exactly on a threshold
    values = 130.0 + 70.0 * np.sin(ts[None] / 90.0 + rng.uniform(0, 6, (5, 1))) + 0.37
    for kind, low, high in [("time_in_range", 70.0, 180.0), ("time_below", 70.0, 70.0),
                            ("time_above", 180.0, 180.0), ("time_at_least", 100.0, 100.0)]:
        outcome = Outcome("x", kind, "patient.glucose", "%", 0.0, 600.0, low, high)
        true = outcome.per_member(ts, values)
        errors = []
        for width in (10.0, 1.0, 1e-3):
            smooth = np.asarray(outcome.smooth(ts, jnp.asarray(values),
                                               {low: width, high: width}))
            assert np.all((smooth >= 0) & (smooth <= 100))
            errors.append(np.max(np.abs(smooth - true)))
        assert errors[0] > errors[1] > errors[2] and errors[2] < 1e-6, (kind, errors)
    # a failed member (NaN) stays NaN; continuous outcomes are their own surrogates
    values[1, 7] = np.nan
    for kind in ("peak", "mean", "auc", "time_below"):
        outcome = Outcome("x", kind, "patient.glucose", "%", 0.0, 600.0, 70.0, 70.0)
        smooth = np.asarray(outcome.smooth(ts, jnp.asarray(values), {70.0: 1.0}))
        true = outcome.per_member(ts, values)
        assert np.isnan(smooth[1]) and np.isnan(true[1])
        if kind != "time_below":
            np.testing.assert_allclose(np.delete(smooth, 1), np.delete(true, 1), rtol=1e-12)


@pytest.mark.parametrize("edit, fragment", [
    # a decision variable outside [optimize]
    (lambda t: t.replace('dose = "200 mg", route', 'dose = { between = ["1 mg", "2 mg"] }, '
                         'route'),
     "arms[0].treatments[0].dose: a decision variable"),
    (lambda t: t.replace('"AUC 0-24 h", value', '"AUC 0-12 h", value'),
     "optimize.target: no outcome named 'AUC 0-12 h'"),
    (lambda t: t.replace('["50 mg", "1000 mg"]', '["1000 mg", "50 mg"]'),
     "lower bound must be below the upper"),
    (lambda t: t.replace('["50 mg", "1000 mg"]', '["50", "1000"]'),
     "give the bounds with their unit"),
    (lambda t: t.replace('["50 mg", "1000 mg"]', '["50 mL", "1000 mL"]'),
     "not convertible to mg"),
    (lambda t: t.replace('["50 mg", "1000 mg"] }', '["50 mg", "1000 mg"], start = "2 g" }'),
     "optimize.treatments[0].dose.start: the start 2000 mg lies outside"),
    (lambda t: t.replace('route = "oral", dose = { between = ["50 mg", "1000 mg"] }',
                         'route = "oral", dose = "100 mg", count = 2, interval = '
                         '{ between = ["1 h", "8 h"] }'),
     "'drug_regimen' cannot optimise 'interval'"),
    (lambda t: t.replace('dose = { between = ["50 mg", "1000 mg"] }', 'dose = "100 mg"'),
     "no decision variable"),
    (lambda t: t.replace('arm = "dose for AUC 100 mg*h/L"', 'arm = "200 mg"'),
     "an arm is already named '200 mg'"),
    (lambda t: t.replace('target = { outcome = "AUC 0-24 h", value = "100 mg*h/L" }',
                         'maximize = "peak concentration"\nminimize = "AUC 0-24 h"'),
     "give exactly one objective"),
    (lambda t: t.replace('value = "100 mg*h/L"', 'value = "100 mg/L"'),
     "optimize.target.value: '100 mg/L' is not convertible"),
])
def test_optimize_errors_name_the_key_and_its_line(edit, fragment):
    text = edit(AUC)
    assert text != AUC
    with pytest.raises(ScenarioFileError) as error:
        Problem(read_whatif(text))
    assert fragment in str(error.value)
    where = str(error.value).split(":")
    assert where[0] == "<scenario>" and where[1].isdigit(), str(error.value)  # the line


def test_a_stiff_twin_is_refused_with_the_reason():
    text = AUC.replace('twin = "oral_pk"', 'twin = "mean_flow_circulation"')
    with pytest.raises(ScenarioFileError, match="needs a non-stiff twin: this one is stiff"):
        Problem(read_whatif(text))


def test_an_infeasible_constraint_is_reported_not_hidden(tmp_path):
    text = AUC.replace('target = { outcome = "AUC 0-24 h", value = "100 mg*h/L" }',
                       'minimize = "AUC 0-24 h"\nconstraints = [ { outcome = '
                       '"peak concentration", at_least = "1000 mg/L" } ]')
    path = tmp_path / "impossible.toml"
    path.write_text(text)
    assert cli.main(["optimize", str(path), "--out", str(tmp_path / "out"), "--cache", "off",
                     "--no-progress"]) == 1
    summary = json.loads((tmp_path / "out" / "optimize.json").read_text())
    assert summary["feasible"] is False
    assert summary["constraints"][0]["met"] is False
    # the least violating point: the largest dose, whose peak comes nearest 1000 mg/L
    assert summary["variables"][0]["value"] == pytest.approx(1000.0, rel=1e-6)


def test_vht_optimize_end_to_end_with_the_report_in_chromium(tmp_path):
    path = tmp_path / "target_auc.toml"
    path.write_text(AUC)
    out = tmp_path / "out"
    assert cli.main(["optimize", str(path), "--out", str(out), "--cache", "off",
                     "--no-progress"]) == 0
    summary = json.loads((out / "optimize.json").read_text())
    assert summary["feasible"] is True
    assert summary["objective"]["deviation"] < 0.1
    # the optimised arm pastes back into the file as an ordinary arm and gives the same AUC
    arm = (out / "optimized_arm.toml").read_text()
    pasted = AUC.split("[optimize]")[0] + arm
    rerun = run_whatif(read_whatif(pasted), progress=False)
    row = next(r for r in rerun.outcomes if r["arm"] == summary["arm"]
               and r["outcome"] == "AUC 0-24 h")
    assert row["median"] == pytest.approx(summary["objective"]["value"], rel=1e-6)

    page = open_in_chromium(out / "report.html")
    assert page["requests"] == [] and page["console_errors"] == [] and page["page_errors"] == []
    assert page["arms"] == ["200 mg", "dose for AUC 100 mg*h/L"]  # one row per arm
    assert all(c["median"] is not None and np.isfinite(c["median"]) for c in page["cells"])
    (section,) = page["sections"]
    assert section["heading"] == "Optimised treatment"
    assert section["rows"][0][0] == "drug regimen dose (optimize.treatments[0].dose)"
    assert "simulation-equivalents" in section["text"]
    assert all(i["width"] > 0 and i["height"] > 0 and i["naturalWidth"] > 0
               for i in page["images"])
    assert page["ink_fraction"] > 0.01
