"""vht validate on the synthetic type 1 diabetes cohort, reduced to fit the test budget.

The shipped study (experiments/validation/studies/t1d_day_ahead.toml: 30 patients, day 1
calibrates, day 2 is predicted) takes minutes on two cores; this test runs the same file, the
same data files and the same command on two of its patients (a child and an adult) with
morning data calibrating and afternoon data predicted, and a few optimiser steps. It checks
the pipeline that study needs: meal and insulin records through the UVA/Padova dose rules,
each patient's own twin (``per_subject``), the clocked twin read at its ticks, groups, and the
credibility report's inputs (``covariates`` in metrics.json).
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import pandas as pd
import pytest

from calibration._study import read_study
from vht.cli import main

STUDY = Path(__file__).parents[1] / "experiments" / "validation" / "studies" / "t1d_day_ahead.toml"
PATIENTS = ("child#003", "adult#004")


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    root = tmp_path_factory.mktemp("validate_t1d")
    data = STUDY.parent / "data"
    observations = pd.read_csv(data / "t1d_observations.csv")
    doses = pd.read_csv(data / "t1d_doses.csv")
    subjects = observations.loc[observations["virtual_patient"].isin(PATIENTS), "subject"]
    observations = observations[observations["subject"].isin(set(subjects))
                                & (observations["time"] <= 1080)]
    doses = doses[doses["subject"].isin(set(subjects)) & (doses["time"] <= 1080)]
    (root / "data").mkdir()
    observations.to_csv(root / "data" / "t1d_observations.csv", index=False)
    doses.to_csv(root / "data" / "t1d_doses.csv", index=False)
    (root / "data" / "t1d_dictionary.toml").write_text(
        (data / "t1d_dictionary.toml").read_text())
    text = STUDY.read_text()
    text = re.sub(r'calibrate = \[.*\]', 'calibrate = ["0 min", "690 min"]', text)
    text = re.sub(r'validate = \[.*\]', 'validate = ["690 min", "1080 min"]', text)
    text = re.sub(r"^steps = \d+", "steps = 4", text, flags=re.M)
    text = re.sub(r"^samples = \d+", "samples = 24", text, flags=re.M)
    (root / "study.toml").write_text(text)
    key = root.parent / f"{root.name}.key"
    key.write_text("t1d-validate-test-key-0123456789\n")
    out = root / "out"
    status = main(["validate", str(root / "study.toml"), "--out", str(out), "--key-file",
                   str(key), "--no-progress"])
    return status, out


def test_the_shipped_study_reads():
    study = read_study(STUDY)
    assert study.per_subject == ("name", "virtual_patient")
    assert [f.name for f in study.problem.free] == ["patient.Vmx", "patient.kp3",
                                                    "patient.kabs"]
    assert study.problem.dose_units == {"meal": "g", "subcutaneous": "U"}
    assert study.split.calibrate == (0.0, 1440.0) and study.split.validate == (1440.0, 2880.0)
    child = study.subject_parameters("child#003")
    assert "patient.Vmx" not in child and child["patient.BW"] == pytest.approx(41.2, abs=1.0)


def test_two_patients_predicted_from_their_mornings(run):
    status, out = run
    assert status == 0
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["n_subjects"] == 2
    # readings every 5 min: 5-685 min calibrate (137 each), 690-1080 min are predicted (79)
    assert metrics["n_calibration_observations"] == 2 * 137
    assert metrics["n_validation_observations"] == 2 * 79
    entry = metrics["variables"]["patient.subcutaneous_glucose"]
    assert entry["unit"] == "mg/dL"
    assert set(entry["groups"]) == {"child", "adult"}
    overall = entry["overall"]
    # the noise alone is 10 mg/dL; a lost meal or bolus is off by 50 mg/dL or more
    assert 5.0 < overall["rmse"] < 20.0, overall  # measured 10.9 mg/dL
    assert overall["coverage"] > 0.6
    assert metrics["covariates"]["group"]["levels"] == {"adult": 1, "child": 1}
    assert metrics["covariates"]["weight"]["unit"] == "kg"
    predictions = pd.read_csv(out / "predictions.csv")
    assert predictions["time"].min() >= 690 and predictions["time"].max() == 1080
    assert (predictions["low"] <= predictions["high"]).all()
    assert (out / "figures" / "individual_predictions.png").stat().st_size > 10_000
