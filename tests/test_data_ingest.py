"""Ingestion of tidy CSV and NONMEM datasets: the same records from every format, and the
bad-input corpus (each malformed input raises its error class with a message fragment, or is
repaired with a logged warning under the policy of vht/data/_ingest.py; none is accepted
silently)."""

from __future__ import annotations

import dataclasses
import logging
import math
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from calibration import theoph_records, validate_records
from vht import data

HERE = Path(__file__).parent / "data" / "ingest"
KEY = data.Pseudonymizer("ingest-test-key-0123456789")
DICTIONARY = data.DataDictionary.from_toml(HERE / "dictionary.toml")
NONMEM_MAPPING = dict(compartments={1: "theophylline", 2: "theophylline"}, dv_units="mg/L",
                      amount_unit="mg")


# -- every format gives the same records ---------------------------------------------------

def _theoph_tidy():
    return data.read_tidy_csv(HERE / "theoph_tidy_observations.csv", DICTIONARY, KEY,
                              doses=HERE / "theoph_tidy_doses.csv")


def test_theoph_tidy_csv_matches_the_calibration_records():
    ingested = _theoph_tidy()
    assert ingested.repairs == []
    records = validate_records(ingested.records)
    reference = validate_records(theoph_records().assign(
        subject=lambda t: t["subject"].map(KEY)))
    assert records["subject"].nunique() == 12
    for column in ("time", "value", "dose_amount", "duration", "weight"):
        np.testing.assert_allclose(records[column], reference[column], rtol=1e-12)
    assert list(records["variable"]) == list(reference["variable"])
    assert set(records["unit"]) == {"mg/L", "mg"}
    assert ingested.covariates.loc[KEY("1"), "weight"] == 79.6


def test_nonmem_gives_the_same_records_as_the_tidy_csv():
    nonmem = data.read_nonmem(HERE / "theoph_nonmem.csv", DICTIONARY, KEY, **NONMEM_MAPPING)
    tidy = _theoph_tidy()
    pd.testing.assert_frame_equal(nonmem.records, tidy.records)
    pd.testing.assert_frame_equal(nonmem.covariates, tidy.covariates)
    assert nonmem.source == "NONMEM" and tidy.source == "tidy CSV"


def test_patient_data_round_trips_through_hdf5_readable_by_its_owner_only(tmp_path):
    ingested = _theoph_tidy()
    path = ingested.to_hdf5(tmp_path / "theoph.h5")
    assert path.stat().st_mode & 0o777 == 0o600
    again = data.PatientData.from_hdf5(path)
    pd.testing.assert_frame_equal(again.records, ingested.records, check_dtype=False)
    pd.testing.assert_frame_equal(again.covariates, ingested.covariates, check_dtype=False)
    assert again.time_unit == "h" and again.source == "tidy CSV"


def test_calendar_times_become_hours_since_each_subjects_first_record(tmp_path):
    observations = _write(tmp_path, "obs.csv", OBS_HEADER, [
        "A,2024-03-01T08:00:00+01:00,glucose,120,mg/dL,70",
        "A,2024-03-01T10:30:00+01:00,glucose,6.0,mmol/L,70",
        "B,2024-05-02T23:00:00Z,conc,1.5,ug/mL,80",
        "B,2024-05-03T01:00:00Z,conc,3.0,ug/mL,80"])
    doses = _write(tmp_path, "doses.csv", DOSE_HEADER, [
        "B,2024-05-02T22:00:00Z,Theophylline,320,mg,oral,"])
    ingested = data.read_tidy_csv(observations, DICTIONARY, KEY, doses=doses)
    records = ingested.records
    a = records[records["subject"] == KEY("A")]
    np.testing.assert_allclose(a["time"], [0.0, 2.5])
    # 6.0 mmol/L of glucose is 6.0 x 18.016 mg/dL
    np.testing.assert_allclose(a["value"], [120.0, 6.0 * 18.016], rtol=1e-12)
    b = records[records["subject"] == KEY("B")]
    np.testing.assert_allclose(b["time"], [0.0, 1.0, 3.0])  # the dose is the first record
    assert not any("2024" in str(v) for v in records.to_numpy().ravel())


def test_first_dose_reference_and_minutes(tmp_path):
    observations = _write(tmp_path, "obs.csv", OBS_HEADER, [
        "B,2024-05-02T21:00:00Z,conc,0.1,mg/L,80", "B,2024-05-03T01:00:00Z,conc,3.0,mg/L,80"])
    doses = _write(tmp_path, "doses.csv", DOSE_HEADER, [
        "B,2024-05-02T22:00:00Z,Theophylline,320,mg,oral,"])
    ingested = data.read_tidy_csv(observations, DICTIONARY, KEY, doses=doses,
                                  reference="first_dose")
    np.testing.assert_allclose(ingested.records["time"], [-1.0, 0.0, 3.0])


def test_infusion_duration_and_addl_doses_from_nonmem(tmp_path):
    path = _write(tmp_path, "nm.csv", "ID,TIME,DV,AMT,EVID,CMT,MDV,RATE,ADDL,II", [
        "7,0,.,100,1,1,1,50,2,12", "7,1,2.5,.,0,2,0,0,0,0", "7,30,1.1,.,0,2,0,0,0,0"])
    dictionary = dataclasses.replace(DICTIONARY, doses={
        "theophylline": data.Dose("iv", "mg", ("Theophylline",))})
    ingested = data.read_nonmem(path, dictionary, KEY, **NONMEM_MAPPING)
    doses = ingested.records.dropna(subset=["dose_amount"])
    np.testing.assert_allclose(doses["time"], [0.0, 12.0, 24.0])
    np.testing.assert_allclose(doses["duration"], 2.0)
    assert set(doses["route"]) == {"infusion"}


def test_dictionary_errors():
    with pytest.raises(data.SchemaError, match="declared by both"):
        data.DataDictionary({"a": data.Observed("x.a", "mg/L", ("k",))},
                            covariates={"b": data.Covariate("kg", ("k",))})
    with pytest.raises(data.SchemaError, match="unknown keys"):
        data.DataDictionary.from_mapping({"observations": {"a": {"variable": "x.a",
                                                                 "unit": "mg/L", "colour": 1}}})
    with pytest.raises(data.SchemaError, match="lower < upper"):
        data.Observed("x.a", "mg/L", valid_range=(5, 1))
    with pytest.raises(data.SchemaError, match="route must be one of"):
        data.Dose("rectal", "mg")
    with pytest.raises(data.SchemaError, match="unknown unit"):
        data.Observed("x.a", "blorbs")
    with pytest.raises(data.SchemaError, match="at least one observed"):
        data.DataDictionary({})


# -- the bad-input corpus -------------------------------------------------------------------

OBS_HEADER = "subject,time,variable,value,unit,Wt"
DOSE_HEADER = "subject,time,drug,amount,unit,route,duration"
BASE_OBS = ["A,0,glucose,120,mg/dL,70", "A,1,glucose,140,mg/dL,70", "A,2,hr,72,/min,70",
            "B,0,conc,1.5,mg/L,80", "B,2,conc,3.0,mg/L,80"]
BASE_DOSES = ["A,0.5,regular insulin,2,[IU],iv,0", "B,0,Theophylline,320,mg,oral,0"]
NONMEM_HEADER = "ID,TIME,DV,AMT,EVID,CMT,MDV,RATE,WT"
BASE_NONMEM = ["1,0,.,320,1,1,1,0,70", "1,1,2.5,.,0,2,0,0,70", "1,4,4.1,.,0,2,0,0,70"]


@dataclasses.dataclass(frozen=True)
class Raises:
    error: type
    fragment: str


@dataclasses.dataclass(frozen=True)
class Repaired:
    rule: str
    check: Callable[[data.PatientData], bool]


def _write(tmp_path, name, header, lines) -> Path:
    path = tmp_path / name
    path.write_text("\n".join([header, *lines]) + "\n")
    return path


def _replace(lines, index, line):
    out = list(lines)
    out[index] = line
    return out


def _values(ingested, subject, variable):
    records = ingested.records
    rows = records[(records["subject"] == KEY(subject)) & (records["variable"] == variable)]
    return list(rows["value"])


def _n_doses(ingested):
    return int(ingested.records["dose_amount"].notna().sum())


GLUCOSE = "patient.glucose"
CASES = {
    # structure
    "missing unit column": (["subject,time,variable,value", "A,0,glucose,120"], None,
                            Raises(data.SchemaError, "missing columns \\['unit'\\]")),
    "empty file": ([""], None, Raises(data.SchemaError, "empty")),
    "header only": ([OBS_HEADER], None, Raises(data.SchemaError, "no rows")),
    "duplicate column": (["subject,time,variable,value,unit,unit", "A,0,glucose,1,mg/dL,mg/dL"],
                         None, Raises(data.SchemaError, "appears twice")),
    "dose table without amount": (None, ["subject,time,drug,unit", "A,0,Theophylline,mg"],
                                  Raises(data.SchemaError, "missing columns \\['amount'\\]")),
    "no subject id": (_replace(BASE_OBS, 1, ",1,glucose,140,mg/dL,70"), None,
                      Raises(data.SchemaError, "no subject identifier")),
    "all values missing": ([OBS_HEADER, "A,0,glucose,,mg/dL,70"], [DOSE_HEADER],
                           Raises(data.DataError, "no observations are left")),
    # units
    "unit swap mmol/L written as mg/dL": (
        _replace(BASE_OBS, 1, "A,1,glucose,5.5,mg/dL,70"), None,
        Raises(data.ValueDataError, "if its unit were mmol/L .*unit swap")),
    "unit of the wrong dimension": (_replace(BASE_OBS, 1, "A,1,glucose,140,mm[Hg],70"), None,
                                    Raises(data.UnitError, "does not convert")),
    "unknown unit": (_replace(BASE_OBS, 1, "A,1,glucose,140,mgs/dL,70"), None,
                     Raises(data.UnitError, "unknown unit of 3 characters")),
    "ambiguous insulin unit U": (
        [*BASE_OBS, "A,3,insulin,12,uU/mL,70"], None, Raises(data.UnitError, "ambiguous")),
    "not UCUM: mcg": (_replace(BASE_OBS, 3, "B,0,conc,1500,mcg/L,80"), None,
                      Raises(data.UnitError, "write 'ug'")),
    "not UCUM: mmHg": ([*BASE_OBS, "A,3,sbp,120,mmHg,70"], None,
                       Raises(data.UnitError, "write 'mm\\[Hg\\]'")),
    "empty unit": (_replace(BASE_OBS, 1, "A,1,glucose,140,,70"), None,
                   Raises(data.UnitError, "has no unit")),
    "offset unit for a concentration": (_replace(BASE_OBS, 3, "B,0,conc,1.5,Cel,80"), None,
                                        Raises(data.UnitError, "does not convert")),
    "dose in a unit of the wrong dimension": (
        None, _replace(BASE_DOSES, 1, "B,0,Theophylline,320,mL,oral,0"),
        Raises(data.UnitError, "does not convert")),
    # values
    "NaN value": (_replace(BASE_OBS, 1, "A,1,glucose,NaN,mg/dL,70"), None,
                  Repaired("missing-value", lambda d: _values(d, "A", GLUCOSE) == [120.0])),
    "empty value cell": (_replace(BASE_OBS, 1, "A,1,glucose,,mg/dL,70"), None,
                         Repaired("missing-value", lambda d: _values(d, "A", GLUCOSE) == [120.0])),
    "inf value": (_replace(BASE_OBS, 1, "A,1,glucose,inf,mg/dL,70"), None,
                  Raises(data.ValueDataError, "not a finite number")),
    "minus inf value": (_replace(BASE_OBS, 1, "A,1,glucose,-inf,mg/dL,70"), None,
                        Raises(data.ValueDataError, "not a finite number")),
    "negative concentration": (_replace(BASE_OBS, 4, "B,2,conc,-0.3,mg/L,80"), None,
                               Raises(data.ValueDataError, "outside its valid range \\[0, 200\\]")),
    "impossible heart rate": (_replace(BASE_OBS, 2, "A,2,hr,400,/min,70"), None,
                              Raises(data.ValueDataError, "heart_rate = 400 /min lies outside")),
    "heart rate per second as per minute": (
        _replace(BASE_OBS, 2, "A,2,hr,1.2,/min,70"), None,
        Raises(data.ValueDataError, "if its unit were /s")),
    "impossible systolic pressure": ([*BASE_OBS, "A,3,sbp,520,mm[Hg],70"], None,
                                     Raises(data.ValueDataError, "systolic = 520")),
    "systolic pressure of zero": ([*BASE_OBS, "A,3,sbp,0,mm[Hg],70"], None,
                                  Raises(data.ValueDataError, "outside its valid range")),
    "text in the value column": (_replace(BASE_OBS, 1, "A,1,glucose,high,mg/dL,70"), None,
                                 Raises(data.ValueDataError, "not a number \\(text of 4")),
    "below-LLOQ marker": (_replace(BASE_OBS, 4, "B,2,conc,<0.1,mg/L,80"), None,
                          Raises(data.ValueDataError, "not a number")),
    "decimal comma": (_replace(BASE_OBS, 1, 'A,1,glucose,"5,5",mmol/L,70'), None,
                      Raises(data.ValueDataError, "not a number")),
    # times
    "text in the time column": (_replace(BASE_OBS, 1, "A,noon,glucose,140,mg/dL,70"), None,
                                Raises(data.TimeError, "neither a number nor an ISO 8601")),
    "missing time": (_replace(BASE_OBS, 1, "A,,glucose,140,mg/dL,70"), None,
                     Raises(data.TimeError, "no time")),
    "infinite time": (_replace(BASE_OBS, 1, "A,inf,glucose,140,mg/dL,70"), None,
                      Raises(data.TimeError, "not finite")),
    "numbers and dates mixed": (
        _replace(BASE_OBS, 1, "A,2024-01-01T08:00,glucose,140,mg/dL,70"), None,
        Raises(data.TimeError, "mix numbers and calendar dates")),
    "day-month ambiguous date": (
        [OBS_HEADER, "A,01/02/2024 08:00,glucose,140,mg/dL,70"], None,
        Raises(data.TimeError, "ISO 8601")),
    "unsorted times": (
        ["A,1,glucose,140,mg/dL,70", "A,0,glucose,120,mg/dL,70", *BASE_OBS[2:]], None,
        Repaired("unsorted", lambda d: _values(d, "A", GLUCOSE) == [120.0, 140.0])),
    "exact duplicate row": (
        [*BASE_OBS, BASE_OBS[1]], None,
        Repaired("duplicate", lambda d: _values(d, "A", GLUCOSE) == [120.0, 140.0])),
    "conflicting duplicate timestamps": ([*BASE_OBS, "A,1,glucose,180,mg/dL,70"], None,
                                         Raises(data.TimeError, "given twice with different")),
    "duplicate dose": (None, [*BASE_DOSES, BASE_DOSES[1]],
                       Repaired("duplicate", lambda d: _n_doses(d) == 2)),
    "conflicting doses at one time": (
        None, [*BASE_DOSES, "B,0,Theophylline,640,mg,oral,0"],
        Raises(data.TimeError, "given twice with different values")),
    "dose after the end of the record": (
        None, [*BASE_DOSES, "B,48,Theophylline,320,mg,oral,0"],
        Repaired("dose-after-record", lambda d: _n_doses(d) == 2)),
    # codes
    "unknown variable code": (_replace(BASE_OBS, 1, "A,1,lactate,2,mmol/L,70"), None,
                              Raises(data.CodeError, "observation code \\(text of 7 char")),
    "unknown LOINC code": (_replace(BASE_OBS, 1, "A,1,9999-9,2,mmol/L,70"), None,
                           Raises(data.CodeError, "code \\(text of 6 characters\\)")),
    "unknown drug": (None, _replace(BASE_DOSES, 1, "B,0,aminophylline,320,mg,oral,0"),
                     Raises(data.CodeError, "dose code .* declares \\['insulin', 'theoph")),
    "unknown route": (None, _replace(BASE_DOSES, 1, "B,0,Theophylline,320,mg,rectal,0"),
                      Raises(data.CodeError, "route \\(text of 6 characters\\)")),
    # doses
    "negative dose": (None, _replace(BASE_DOSES, 1, "B,0,Theophylline,-320,mg,oral,0"),
                      Raises(data.ValueDataError, "negative")),
    "text dose amount": (None, _replace(BASE_DOSES, 1, "B,0,Theophylline,two tablets,mg,oral,0"),
                         Raises(data.ValueDataError, "amount of theophylline is not a number")),
    "missing dose amount": (None, _replace(BASE_DOSES, 1, "B,0,Theophylline,,mg,oral,0"),
                            Raises(data.ValueDataError, "needs a finite amount")),
    "infusion without duration": (None, _replace(BASE_DOSES, 0,
                                                 "A,0.5,regular insulin,2,[IU],infusion,0"),
                                  Raises(data.ValueDataError, "positive duration")),
    "oral dose with a duration": (None, _replace(BASE_DOSES, 1,
                                                 "B,0,Theophylline,320,mg,oral,2"),
                                  Raises(data.ValueDataError, "only infusions last")),
    "negative duration": (None, _replace(BASE_DOSES, 0, "A,0.5,regular insulin,2,[IU],iv,-1"),
                          Raises(data.ValueDataError, "duration of insulin is -1")),
    "doses of a subject without observations": (
        None, [*BASE_DOSES, "C,0,Theophylline,320,mg,oral,0"],
        Repaired("no-observations", lambda d: d.records["subject"].nunique() == 2)),
    # columns and covariates
    "undeclared column": ([f"{OBS_HEADER},comment", *(f"{r},ok" for r in BASE_OBS)], None,
                          Repaired("undeclared-column",
                                   lambda d: "comment" not in d.records.columns)),
    "identifying column: patient name": (
        [f"{OBS_HEADER},patient_name", *(f"{r},Jane Roe" for r in BASE_OBS)], None,
        Repaired("identifying-column", lambda d: "patient_name" not in d.records.columns)),
    "identifying column: record number": (
        [f"{OBS_HEADER},MRN", *(f"{r},MRN-4471" for r in BASE_OBS)], None,
        Repaired("identifying-column", lambda d: "MRN" not in d.records.columns)),
    "covariate changes within a subject": (
        _replace(BASE_OBS, 1, "A,1,glucose,140,mg/dL,72"), None,
        Repaired("varying-covariate", lambda d: d.covariates.loc[KEY("A"), "weight"] == 70)),
    "covariate missing for a subject": (
        [r.rsplit(",", 1)[0] + ("," if r.startswith("A") else ",80") for r in BASE_OBS], None,
        Repaired("missing-covariate",
                 lambda d: math.isnan(d.covariates.loc[KEY("A"), "weight"]))),
    "impossible weight": (_replace(BASE_OBS, 3, "B,0,conc,1.5,mg/L,800"), None,
                          Raises(data.ValueDataError, "weight = 800")),
    "text weight": (_replace(BASE_OBS, 3, "B,0,conc,1.5,mg/L,heavy"), None,
                    Raises(data.ValueDataError, "weight is not a number")),
    "weight as a long-table row in pounds": (
        [*BASE_OBS, "A,0,29463-7,154.3236,[lb_av],"], None,
        Repaired("varying-covariate",
                 lambda d: abs(d.covariates.loc[KEY("A"), "weight"] - 70.0) < 1e-6)),
}

NONMEM_CASES = {
    "NONMEM: missing DV column": (["ID,TIME,AMT", "1,0,320"],
                                  Raises(data.SchemaError, "missing columns \\['DV'\\]")),
    "NONMEM: reset event": ([*BASE_NONMEM, "1,6,.,.,3,2,1,0,70"],
                            Raises(data.SchemaError, "EVID 3 \\(a reset\\)")),
    "NONMEM: unknown EVID": ([*BASE_NONMEM, "1,6,.,.,7,2,1,0,70"],
                             Raises(data.CodeError, "EVID must be")),
    "NONMEM: other event": ([*BASE_NONMEM, "1,6,.,.,2,2,1,0,70"],
                            Repaired("other-event", lambda d: len(d.records) == 3)),
    "NONMEM: modelled rate": (_replace(BASE_NONMEM, 0, "1,0,.,320,1,1,1,-2,70"),
                              Raises(data.SchemaError, "modelled rate")),
    "NONMEM: steady state": ([f"{NONMEM_HEADER},SS", *(f"{r},{int(i == 0)}"
                                                       for i, r in enumerate(BASE_NONMEM))],
                             Raises(data.SchemaError, "steady-state")),
    "NONMEM: subject rows not contiguous": (
        [*BASE_NONMEM, "2,0,.,320,1,1,1,0,70", "2,1,2.0,.,0,2,0,0,70", "1,8,3.0,.,0,2,0,0,70"],
        Raises(data.SchemaError, "not contiguous")),
    "NONMEM: unknown compartment": ([*BASE_NONMEM, "1,6,2.0,.,0,5,0,0,70"],
                                    Raises(data.CodeError, "CMT 5")),
    "NONMEM: fractional compartment": ([*BASE_NONMEM, "1,6,2.0,.,0,1.5,0,0,70"],
                                       Raises(data.ValueDataError, "whole number")),
    "NONMEM: AMT on an observation record": ([*BASE_NONMEM, "1,6,2.0,50,0,2,0,0,70"],
                                             Raises(data.SchemaError, "has AMT")),
    "NONMEM: missing DV on an observation": (
        [*BASE_NONMEM, "1,6,.,.,0,2,0,0,70"],
        Repaired("missing-value", lambda d: d.records["value"].notna().sum() == 2)),
    "NONMEM: MDV marks an excluded observation": (
        [*BASE_NONMEM, "1,6,0.05,.,0,2,1,0,70"],
        Repaired("mdv", lambda d: d.records["value"].notna().sum() == 2)),
    "NONMEM: clock time": ([*BASE_NONMEM, "1,08:30,2.0,.,0,2,0,0,70"],
                           Raises(data.TimeError, "neither a number nor an ISO 8601")),
    "NONMEM: comment row": (["#1,0,.,320,1,1,1,0,70", *BASE_NONMEM],
                            Repaired("comment-row", lambda d: len(d.records) == 3)),
    "NONMEM: ADDL without II": ([f"{NONMEM_HEADER},ADDL",
                                 *(f"{r},{2 if i == 0 else 0}" for i, r in enumerate(BASE_NONMEM))],
                                Raises(data.ValueDataError, "needs a positive II")),
    "NONMEM: text in AMT": (_replace(BASE_NONMEM, 0, "1,0,.,lots,1,1,1,0,70"),
                            Raises(data.ValueDataError, "AMT is not a number")),
    "NONMEM: identifying column": ([f"{NONMEM_HEADER},NAME",
                                    *(f"{r},Jane Roe" for r in BASE_NONMEM)],
                                   Repaired("identifying-column",
                                            lambda d: "NAME" not in d.records.columns)),
}


def _run_tidy(tmp_path, observations, doses):
    observations = BASE_OBS if observations is None else observations
    doses = BASE_DOSES if doses is None else doses
    header_given = observations and (observations[0].startswith("subject") or
                                     observations == [""])
    obs_path = tmp_path / "obs.csv"
    obs_path.write_text("\n".join(observations if header_given else [OBS_HEADER, *observations])
                        + "\n")
    dose_given = doses and doses[0].startswith("subject")
    dose_path = tmp_path / "doses.csv"
    dose_path.write_text("\n".join(doses if dose_given else [DOSE_HEADER, *doses]) + "\n")
    return data.read_tidy_csv(obs_path, DICTIONARY, KEY, doses=dose_path)


def _run_nonmem(tmp_path, lines):
    header_given = lines[0].startswith("ID")
    path = _write(tmp_path, "nm.csv", lines[0] if header_given else NONMEM_HEADER,
                  lines[1:] if header_given else lines)
    return data.read_nonmem(path, DICTIONARY, KEY, **NONMEM_MAPPING)


def _check(outcome, run, caplog):
    if isinstance(outcome, Raises):
        with pytest.raises(outcome.error, match=outcome.fragment):
            run()
        return
    with caplog.at_level(logging.WARNING, logger="vht.data"):
        ingested = run()
    rules = [r.rule for r in ingested.repairs]
    assert outcome.rule in rules, rules
    assert any(outcome.rule in message for message in caplog.messages)
    assert outcome.check(ingested)


def test_the_corpus_is_large_enough():
    assert len(CASES) + len(NONMEM_CASES) >= 60


def test_the_base_inputs_ingest_cleanly(tmp_path):
    tidy = _run_tidy(tmp_path, None, None)
    assert tidy.repairs == [] and len(tidy.records) == 7
    assert _run_nonmem(tmp_path, BASE_NONMEM).repairs == []


@pytest.mark.parametrize("case", list(CASES))
def test_bad_tidy_input(case, tmp_path, caplog):
    observations, doses, outcome = CASES[case]
    _check(outcome, lambda: _run_tidy(tmp_path, observations, doses), caplog)


@pytest.mark.parametrize("case", list(NONMEM_CASES))
def test_bad_nonmem_input(case, tmp_path, caplog):
    lines, outcome = NONMEM_CASES[case]
    _check(outcome, lambda: _run_nonmem(tmp_path, lines), caplog)
