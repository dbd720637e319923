"""vht credibility: the V&V 40 credibility report of a model for a context of use.

Each test lays out a temporary repository root with copies of the shipped context and study
files and the fixtures of tests/data/credibility/ (a real Theoph validation run and a real test
summary; see the README there) where the context files expect them, then changes copies. One
run with the tolerance sweep (the cheap one-compartment oral model) serves the tests that need
it; the others skip the sweep and do no JAX work beyond building the twin."""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path

import pandas as pd
import pytest

from calibration._credibility import (
    FACTOR_IDS,
    FACTORS,
    CredibilityError,
    credibility_main,
    read_context,
)
from vht.cli import main

ROOT = Path(__file__).resolve().parents[1]
FIXTURES = Path(__file__).parent / "data" / "credibility"
CONTEXTS = ROOT / "experiments" / "validation" / "credibility"
THEOPH = "experiments/validation/credibility/theoph_exposure.toml"
T1D = "experiments/validation/credibility/t1d_day_ahead.toml"


def make_root(base: Path, *, validation: bool = True, summary: bool = True,
              metrics=None, summary_data=None) -> Path:
    """A repository root as the context files expect it; ``metrics`` / ``summary_data``:
    functions that change a copy of the fixture's data."""
    root = base / "repo"
    (root / "experiments" / "validation").mkdir(parents=True)
    shutil.copytree(CONTEXTS, root / "experiments" / "validation" / "credibility")
    shutil.copytree(ROOT / "experiments" / "validation" / "studies",
                    root / "experiments" / "validation" / "studies",
                    ignore=shutil.ignore_patterns("data"))
    if validation:
        target = root / "results" / "validation" / "theoph"
        shutil.copytree(FIXTURES / "theoph", target)
        if metrics is not None:
            data = json.loads((target / "metrics.json").read_text())
            metrics(data)
            (target / "metrics.json").write_text(json.dumps(data))
    if summary:
        target = root / ".cache" / "reports"
        target.mkdir(parents=True)
        data = json.loads((FIXTURES / "summary.json").read_text())
        if summary_data is not None:
            summary_data(data)
        (target / "summary.json").write_text(json.dumps(data))
    return root


def run(root: Path, context: str = THEOPH, *, sweep: bool = False, out: str = "out"):
    result, files = credibility_main(root / context, root / out, sweep=sweep, progress=False)
    return result, files, json.loads(files["json"].read_text())


def factor(report: dict, factor_id: str) -> dict:
    return report["factors"][FACTOR_IDS.index(factor_id)]


@pytest.fixture(scope="module")
def swept(tmp_path_factory):
    return run(make_root(tmp_path_factory.mktemp("swept")), sweep=True)


def test_every_factor_is_assessed_with_numbers_or_says_why_not(swept):
    _, _, report = swept
    assert [f["number"] for f in report["factors"]] == list(range(1, 14))
    assert [f["id"] for f in report["factors"]] == list(FACTOR_IDS)
    for f in report["factors"]:
        assert f["status"] in ("assessed", "not assessed"), f
        if f["status"] == "not assessed":
            assert f["evidence"].startswith("not assessed: "), f
        elif "stated" not in f["basis"]:
            assert re.search(r"\d", f["evidence"]) and f["source"], f
    assert factor(report, "use_error")["status"] == "not assessed"
    assert factor(report, "test_conditions")["basis"] == "stated, not measured"
    assert factor(report, "test_conditions")["evidence"].startswith("stated, not measured: ")
    sqa = factor(report, "software_quality_assurance")
    assert "636 passed, 0 failed, 4 skipped" in sqa["evidence"]
    assert sqa["goal_met"] is True
    code = factor(report, "numerical_code_verification")
    assert "max_relative_error = 1.45e-13" in code["evidence"] and code["goal_met"] is True
    output = factor(report, "output_comparison")
    assert "RMSE 0.663 mg/L" in output["evidence"] and "97.2 %" in output["evidence"]
    assert output["numbers"]["n"] == 36
    form = factor(report, "model_form")
    assert "-0.536 mg/L" in form["evidence"] and "under-predicts" in form["evidence"]
    assert "no parameter flagged for any of the 12 patients" in form["evidence"]
    # the fixture's run predates metrics.json's covariates: the population cannot be judged
    assert "covariates: not recorded in metrics.json" in factor(report, "test_samples")[
        "evidence"]
    relevance = factor(report, "relevance_of_validation_activities")
    assert "the cohort's weight is not recorded" in relevance["evidence"]
    assert relevance["goal_met"] is None
    inputs = factor(report, "model_inputs")
    assert "drug.clearance 2.07-4.84 L/h" in inputs["evidence"]
    assert "lognormal(1.5 1/h, 1.0)" in inputs["evidence"]


def test_tolerance_sweep_errors_fall_with_tighter_tolerances(swept):
    _, _, report = swept
    rows = report["sweep"]["rows"]
    swept_rows = [r for r in rows if "sweep" in r["role"]]
    assert [r["rtol"] for r in swept_rows] == [1e-4, 1e-6, 1e-8]
    errors = [r["max_abs_error"] for r in swept_rows]
    assert all(r["ok"] for r in rows)
    assert errors[0] > 10 * errors[1] > 100 * errors[2] > 0.0, errors
    # the validation ran at the tolerance its metrics.json records: rtol 1e-7, atol 1e-9
    validation = next(r for r in rows if "validation" in r["role"])
    assert (validation["rtol"], validation["atol"]) == (1e-7, 1e-9)
    assert errors[2] < validation["max_abs_error"] < errors[1]
    solver = factor(report, "numerical_solver_error")
    assert solver["status"] == "assessed" and solver["basis"] == "computed"
    assert solver["numbers"]["fraction_of_rmse"] < 1e-4
    assert solver["goal_met"] is True and "well below it" in solver["evidence"]


def test_html_is_self_contained_and_markdown_has_one_row_per_factor(swept):
    _, files, _ = swept
    page = files["html"].read_text()
    assert page.startswith("<!DOCTYPE html>") and "Content-Security-Policy" in page
    assert not re.search(r"(src|href)\s*=\s*[\"']?\s*(https?:)?//", page, re.I)
    assert "<script" not in page and "<link" not in page and "@import" not in page
    markdown = files["markdown"].read_text()
    table = markdown.split("## Credibility factors", 1)[1].split("\n## ", 1)[0]
    rows = [line for line in table.splitlines() if re.match(r"\| \d+ \|", line)]
    assert [int(r.split("|")[1]) for r in rows] == list(range(1, 14))
    for (_, _, name), row in zip(FACTORS, rows):
        assert f"| {name} |" in row
    assert files["json"].name == "credibility.json"


@pytest.mark.parametrize("key", ["context_of_use", "question"])
@pytest.mark.parametrize("how", ["removed", "empty"])
def test_missing_context_of_use_or_question_is_refused(tmp_path, capsys, key, how):
    root = make_root(tmp_path)
    path = root / THEOPH
    text = path.read_text()
    line = next(li for li in text.splitlines() if li.startswith(f"{key} = "))
    path.write_text(text.replace(line, "" if how == "removed" else f'{key} = "  "'))
    expected = rf"theoph_exposure\.toml:\d+: context\.{key}: missing or empty"
    with pytest.raises(CredibilityError, match=expected):
        read_context(path)
    assert main(["credibility", str(path), "--out", str(tmp_path / "out"), "--no-sweep"]) == 2
    assert re.search(rf"vht credibility: {expected}", capsys.readouterr().err)
    assert not (tmp_path / "out").exists()


def test_changing_the_validation_result_changes_output_comparison(tmp_path):
    _, _, before = run(make_root(tmp_path / "a"))

    def worse(metrics):
        overall = metrics["variables"]["drug.concentration"]["overall"]
        overall["coverage"] = 0.5
        overall["rmse"] *= 3.0
        overall["relative_rmse"] *= 3.0

    _, _, after = run(make_root(tmp_path / "b", metrics=worse))
    old, new = factor(before, "output_comparison"), factor(after, "output_comparison")
    assert "RMSE 0.663 mg/L (relative 0.192)" in old["evidence"]
    assert "RMSE 1.99 mg/L (relative 0.576)" in new["evidence"]
    assert "coverage 97.2 % (calibrated range 80.6 %-97.2 %: inside)" in old["evidence"]
    assert "coverage 50.0 % (calibrated range 80.6 %-97.2 %: OUTSIDE)" in new["evidence"]
    assert old["goal_met"] is True and new["goal_met"] is False
    assert "relative RMSE <= 0.3: not met (0.576)" in new["goal"]
    assert "interval coverage inside its calibrated range: not met (50.0 %)" in new["goal"]
    assert "interval coverage inside its calibrated range: met (97.2 %)" in old["goal"]
    assert any(w.startswith("goal not met for (11) output comparison") for w in
               after["warnings"])
    # a test measurement beyond its bound fails numerical code verification's goal
    test_id = "tests.test_pk_analytic::test_one_compartment_oral_matches_closed_form[ka-ne-ke]"

    def drifted(summary):
        summary["measurements"][test_id]["max_relative_error"] = "3e-6"

    _, _, drift = run(make_root(tmp_path / "c", summary_data=drifted))
    code = factor(drift, "numerical_code_verification")
    assert "max_relative_error = 3e-06 (<= 1e-08: NOT within)" in code["evidence"]
    assert code["goal_met"] is False


def test_covariates_decide_whether_the_cohort_spans_the_intended_population(tmp_path):
    data = pd.read_csv(ROOT / "experiments" / "validation" / "studies" / "data"
                       / "theoph_observations.csv")
    weights = data.groupby("subject")["Wt"].first()

    def with_weights(metrics):
        metrics["covariates"] = {"weight": {"unit": "kg", "min": float(weights.min()),
                                            "max": float(weights.max())}}

    root = make_root(tmp_path, metrics=with_weights)
    _, _, report = run(root)
    relevance = factor(report, "relevance_of_validation_activities")
    assert "covariates: weight 54.6-86.4 kg" in relevance["evidence"]
    assert "intended weight 55-85 kg: inside the cohort's range" in relevance["evidence"]
    assert relevance["goal_met"] is True
    assert "weight 54.6-86.4 kg" in factor(report, "test_samples")["evidence"]

    path = root / THEOPH
    path.write_text(path.read_text().replace('weight = ["55 kg", "85 kg"]',
                                             'weight = ["40 kg", "85 kg"]'))
    _, _, report = run(root, out="out2")
    relevance = factor(report, "relevance_of_validation_activities")
    assert "NOT inside the cohort's 54.6-86.4 kg" in relevance["evidence"]
    assert relevance["goal_met"] is False


def test_without_a_validation_run_the_validation_factors_say_how_to_get_one(tmp_path):
    root = make_root(tmp_path, validation=False)
    _, _, report = run(root, T1D)
    reason = ("not assessed: no validation run at results/validation/t1d_day_ahead/"
              "metrics.json; run `vht validate experiments/validation/studies/"
              "t1d_day_ahead.toml`")
    for factor_id in ("model_form", "model_inputs", "test_samples",
                      "equivalency_of_input_parameters", "output_comparison",
                      "relevance_of_quantities_of_interest",
                      "relevance_of_validation_activities"):
        f = factor(report, factor_id)
        assert f["status"] == "not assessed" and f["evidence"].startswith(reason), f
    output = factor(report, "output_comparison")
    assert output["goal_met"] is None and "not shown (factor not assessed)" in output["goal"]
    # code verification of the UVA/Padova port does not need the validation run
    code = factor(report, "numerical_code_verification")
    assert code["status"] == "assessed" and "gsub_max_error_mg_dl = 7.87e-06" in code["evidence"]
    assert factor(report, "numerical_solver_error")["evidence"] == (
        "not assessed: sweep skipped (--no-sweep)")
    assert any("no validation evidence" in w for w in report["warnings"])


def test_without_a_test_summary_code_verification_is_not_assessed(tmp_path):
    _, _, report = run(make_root(tmp_path, summary=False))
    for factor_id in ("software_quality_assurance", "numerical_code_verification",
                      "discretization_error"):
        f = factor(report, factor_id)
        assert f["status"] == "not assessed", f
        assert "no test summary at .cache/reports/summary.json" in f["evidence"]
    assert factor(report, "software_quality_assurance")["goal_met"] is None


@pytest.mark.parametrize("edit, message", [
    (lambda t: t + "\n[goals.model_inputs]\nbest = true\n",
     r"goals\.model_inputs\.best: unknown key"),
    (lambda t: t.replace('model_influence = "medium"', 'model_influence = "severe"'),
     r"theoph_exposure\.toml:\d+: risk\.model_influence: must be one of"),
    (lambda t: t.replace('kind = "oral_dose"', 'kind = "pbpk"'),
     r"theoph_exposure\.toml:\d+: sweep\.kind"),
    (lambda t: t.replace('factor = "discretization_error"', 'factor = "speed"'),
     r"measurements\[4\]\.factor: must be one of"),
])
def test_a_context_file_that_makes_no_sense_is_refused_with_its_line(tmp_path, edit,
                                                                     message):
    path = tmp_path / "theoph_exposure.toml"
    path.write_text(edit((CONTEXTS / "theoph_exposure.toml").read_text()))
    with pytest.raises(CredibilityError, match=message):
        read_context(path)


def test_the_command_writes_the_report_where_it_says(tmp_path, capsys):
    root = make_root(tmp_path)
    out = tmp_path / "report"
    assert main(["credibility", str(root / THEOPH), "--out", str(out), "--no-sweep",
                 "--no-progress"]) == 0
    printed = capsys.readouterr().out
    assert f"report: {out / 'credibility.html'}" in printed
    assert "11 output comparison: assessed; goal met" in printed
    assert " 4 numerical solver error: not assessed; goal not shown" in printed
    assert sorted(p.name for p in out.iterdir()) == ["credibility.html", "credibility.json",
                                                      "credibility.md"]
