"""FHIR R4 ingestion (vht.data.read_fhir): examples of the R4 specification give their values,
the Theoph Bundle gives calibration's records, the FHIR bad-input corpus (each malformed Bundle
raises its error class with a message fragment, or is repaired with a logged warning), and no
name, identifier or patient id of a Bundle reaches a message, a warning, the repairs or the
HDF5 file.

Fixtures: tests/data/ingest/fhir/ (README.md gives each file's source); theoph_bundle.json is
written by tests/data/ingest/make_theoph_fhir.py.
"""

from __future__ import annotations

import copy
import dataclasses
import datetime
import json
import logging
import math
import traceback
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest

from calibration import theoph_records, validate_records
from vht import data

HERE = Path(__file__).parent / "data" / "ingest"
FHIR = HERE / "fhir"
THEOPH = FHIR / "theoph_bundle.json"
KEY = data.Pseudonymizer("fhir-test-key-0123456789")
BASE = data.DataDictionary.from_toml(HERE / "dictionary.toml")
# the ingestion tests' dictionary, with age and sex, diastolic pressure and the drugs of the R4
# MedicationAdministration examples
DICTIONARY = dataclasses.replace(
    BASE,
    observations={**BASE.observations, "diastolic": data.Observed(
        "circulation.diastolic_pressure", "mmHg", ("8462-4",), valid_range=(20, 250))},
    doses={**BASE.doses, "alemtuzumab": data.Dose("iv", "mg", ("1594660",)),
           "busulfan": data.Dose("oral", "mg", ("76388-713-25",))},
    covariates={**BASE.covariates, "age": data.Covariate("year", valid_range=(0, 130)),
                "sex": data.Covariate()})
LB = 0.45359237  # kg per avoirdupois pound
YEAR_S = 365.25 * 86400


def _resource(name: str) -> dict:
    return json.loads((FHIR / name).read_text())


def _bundle(*resources) -> dict:
    """A collection Bundle wrapping resources (file names of fixtures, or dicts)."""
    return {"resourceType": "Bundle", "type": "collection",
            "entry": [{"resource": _resource(r) if isinstance(r, str) else r}
                      for r in resources]}


def _utc(text: str) -> datetime.datetime:
    return datetime.datetime.fromisoformat(text.replace("Z", "+00:00"))


def _years(born: str, at: str) -> float:
    birth = datetime.datetime.fromisoformat(born).replace(tzinfo=datetime.UTC)
    return (_utc(at) - birth).total_seconds() / YEAR_S


def _rows(ingested, variable, subject=None):
    records = ingested.records
    rows = records[records["variable"] == variable]
    return rows if subject is None else rows[rows["subject"] == subject]


def _doses(ingested):
    return ingested.records.dropna(subset=["dose_amount"])


def _rules(ingested) -> list[str]:
    return [r.rule for r in ingested.repairs]


# -- examples of the FHIR R4 specification ----------------------------------------------------

def test_r4_vital_signs_and_body_weight_of_the_example_patient():
    ingested = data.read_fhir(_bundle(
        "Patient-example.json", "Observation-heart-rate.json", "Observation-blood-pressure.json",
        "Observation-example.json"), DICTIONARY, KEY)
    subject = KEY("example")
    assert ingested.subjects == [subject]
    assert ingested.repairs == []
    hours = (_utc("2012-09-17T00:00:00Z") - _utc("1999-07-02T00:00:00Z")).total_seconds() / 3600
    heart_rate = _rows(ingested, "circulation.heart_rate")
    np.testing.assert_allclose(heart_rate[["time", "value"]].to_numpy(), [[0.0, 44.0]])
    assert list(heart_rate["unit"]) == ["1/min"]
    # the blood pressure panel's components, each its own row at the panel's time
    for variable, value in (("circulation.systolic_pressure", 107.0),
                            ("circulation.diastolic_pressure", 60.0)):
        rows = _rows(ingested, variable)
        np.testing.assert_allclose(rows[["time", "value"]].to_numpy(), [[hours, value]],
                                   rtol=1e-12)
        assert list(rows["unit"]) == ["mmHg"]
    covariates = ingested.covariates.loc[subject]
    assert covariates["weight"] == pytest.approx(185 * LB, rel=1e-9)  # 185 [lb_av]
    # age at the first record (the heart rate of 2 July 1999), from birthDate 1974-12-25
    assert covariates["age"] == pytest.approx(_years("1974-12-25", "1999-07-02T00:00:00Z"),
                                              rel=1e-9)
    assert covariates["sex"] == "male"


def test_r4_glucose_in_mmol_per_litre_becomes_mg_per_decilitre():
    ingested = data.read_fhir(_bundle("Patient-f001.json", "Observation-f001.json"), DICTIONARY,
                              KEY)
    glucose = _rows(ingested, "patient.glucose")
    # 6.3 mmol/L x 180.16 g/mol = 113.5008 mg/dL
    np.testing.assert_allclose(glucose["value"], [6.3 * 180.16 / 10], rtol=1e-9)
    assert list(glucose["unit"]) == ["mg/dL"] and list(glucose["time"]) == [0.0]
    covariates = ingested.covariates.loc[KEY("f001")]
    # effectivePeriod.start 2013-04-02T09:30:10+01:00; born 1944-11-17
    assert covariates["age"] == pytest.approx(
        _years("1944-11-17", "2013-04-02T08:30:10Z"), rel=1e-9)
    assert covariates["sex"] == "male"
    assert _rules(ingested) == ["missing-covariate"]  # no body weight
    assert math.isnan(covariates["weight"])


def test_r4_blood_pressure_with_data_absent_and_cancelled(caplog):
    with caplog.at_level(logging.WARNING, logger="vht.data"):
        ingested = data.read_fhir(_bundle(
            "Patient-example.json", "Observation-blood-pressure-dar.json",
            "Observation-blood-pressure-cancel.json"), DICTIONARY, KEY)
    np.testing.assert_allclose(_rows(ingested, "circulation.systolic_pressure")["value"],
                               [107.0])
    assert _rows(ingested, "circulation.diastolic_pressure").empty
    repairs = {r.rule: str(r) for r in ingested.repairs}
    assert repairs["status"] == (f"Bundle entry 3 (Observation) (subject {KEY('example')}): "
                                 "status cancelled; not read")
    # the diastolic component's dataAbsentReason: an empty value, which ingest drops
    assert repairs["missing-value"].startswith("Bundle entry 2 (Observation) component 2 ")
    assert "status cancelled; not read" in caplog.text


def test_r4_medication_administrations(caplog):
    """medadmin0304: an intravenous infusion of alemtuzumab (contained Medication, RxNorm)
    over 10 h; medadmin0310: oral busulfan (contained Medication, NDC) whose effectivePeriod
    is when it was taken; medadmin0303: entered in error. An Observation of this test gives
    the Patient a record after the doses."""
    heart_rate = _resource("Observation-heart-rate.json") | {
        "subject": {"reference": "Patient/pat1"},
        "effectiveDateTime": "2015-01-16T08:00:00+01:00"}
    with caplog.at_level(logging.WARNING, logger="vht.data"):
        ingested = data.read_fhir(_bundle(
            "Patient-pat1.json", "MedicationAdministration-medadmin0304.json",
            "MedicationAdministration-medadmin0310.json",
            "MedicationAdministration-medadmin0303.json", heart_rate), DICTIONARY, KEY)
    doses = _doses(ingested)
    np.testing.assert_allclose(doses[["time", "dose_amount", "duration"]].to_numpy(),
                               [[0.0, 3.0, 10.0], [17.55, 6.0, 0.0]], rtol=1e-12)
    assert list(doses["route"]) == ["infusion", "oral"] and set(doses["unit"]) == {"mg"}
    np.testing.assert_allclose(_rows(ingested, "circulation.heart_rate")["time"], [27.5])
    assert ingested.covariates.loc[KEY("pat1"), "sex"] == "male"
    assert sorted(_rules(ingested)) == ["missing-covariate", "missing-covariate", "status"]
    assert "Bundle entry 4 (MedicationAdministration)" in caplog.text  # entered-in-error
    assert "no age is given" in caplog.text and "no weight is given" in caplog.text


def test_r4_insulin_in_ucum_enzyme_units_is_refused_and_undeclared_drugs_are_not_read(caplog):
    """medadmin0308 gives Lantus as 20 "U" (UCUM's enzyme unit, not insulin's [IU])."""
    heart_rate = _resource("Observation-heart-rate.json") | {
        "subject": {"reference": "Patient/pat1"},
        "effectiveDateTime": "2015-01-16T08:00:00+01:00"}
    bundle = _bundle("Patient-pat1.json", "MedicationAdministration-medadmin0308.json",
                     heart_rate)
    with caplog.at_level(logging.WARNING, logger="vht.data"):
        ingested = data.read_fhir(bundle, DICTIONARY, KEY)
    assert _doses(ingested).empty
    assert ("Bundle: 1 MedicationAdministration(s) of RxNorm 285018 are not declared in the "
            "data dictionary; not read") in caplog.text
    glargine = dataclasses.replace(DICTIONARY, doses={
        **DICTIONARY.doses, "glargine": data.Dose("iv", "U", ("285018",))})
    with pytest.raises(data.UnitError, match="UCUM's U is the enzyme unit"):
        data.read_fhir(bundle, glargine, KEY)


# -- Theoph: the same records as calibration ----------------------------------------------------

def _theoph_subject(subject) -> str:
    return KEY(f"canary-pid-{int(subject):02d}")


def _theoph_reference():
    return validate_records(theoph_records().assign(
        subject=lambda t: t["subject"].map(_theoph_subject)))


def _assert_theoph(ingested) -> None:
    records = validate_records(ingested.records)
    reference = _theoph_reference()
    assert records["subject"].nunique() == 12 and len(records) == len(reference) == 144
    for column in ("time", "value", "dose_amount", "duration", "weight"):
        np.testing.assert_allclose(records[column], reference[column], rtol=1e-9, atol=1e-12)
    for column in ("variable", "route"):
        assert list(records[column]) == list(reference[column])
    assert set(records["unit"]) == {"mg/L", "mg"}


def test_theoph_bundle_gives_the_calibration_records():
    ingested = data.read_fhir(THEOPH, BASE, KEY)
    assert ingested.repairs == [] and ingested.source == "FHIR R4"
    _assert_theoph(ingested)
    # subjects in the Bundle's order, whatever their pseudonyms
    assert ingested.subjects == [_theoph_subject(n) for n in range(1, 13)]
    assert ingested.covariates.loc[_theoph_subject(1), "weight"] == 79.6


def test_theoph_in_several_bundles_and_given_as_dicts():
    bundle = json.loads(THEOPH.read_text())
    entries = bundle["entry"]
    half = len(entries) // 2  # 14 entries per subject: subjects 1-6, then 7-12
    assert half % 14 == 0
    parts = [dict(bundle, entry=entries[:half]), dict(bundle, entry=entries[half:])]
    _assert_theoph(data.read_fhir(parts, BASE, KEY))
    _assert_theoph(data.read_fhir([bundle], BASE, KEY))


def test_theoph_age_and_sex_and_the_first_dose_reference():
    ingested = data.read_fhir(THEOPH, DICTIONARY, KEY, reference="first_dose")
    assert ingested.repairs == []
    _assert_theoph(ingested)
    bundle = json.loads(THEOPH.read_text())
    patients = [e["resource"] for e in bundle["entry"]
                if e["resource"]["resourceType"] == "Patient"]
    doses = [e["resource"]["effectiveDateTime"] for e in bundle["entry"]
             if e["resource"]["resourceType"] == "MedicationAdministration"]
    for n, (patient, dosed) in enumerate(zip(patients, doses, strict=True), start=1):
        row = ingested.covariates.loc[_theoph_subject(n)]
        assert row["age"] == pytest.approx(_years(patient["birthDate"], dosed), rel=1e-9)
        assert row["sex"] == patient["gender"]
    assert set(ingested.covariates["sex"]) == {"female", "male"}


def test_theoph_bundle_is_what_its_script_writes(tmp_path):
    """The committed Bundle is the script's output (its timezones and forms included)."""
    bundle = json.loads(THEOPH.read_text())
    stamps = [e["resource"].get("effectiveDateTime") or e["resource"].get("effectiveInstant")
              or e["resource"]["effectivePeriod"]["start"] for e in bundle["entry"]
              if e["resource"]["resourceType"] == "Observation"]
    offsets = {s[19:] for s in stamps}
    assert offsets == {"Z", "+02:00", "-05:00"}
    assert len({s[:10] for s in stamps}) >= 12  # each subject starts on another day


# -- the bad-input corpus -----------------------------------------------------------------------

@dataclasses.dataclass(frozen=True)
class Raises:
    error: type
    fragment: str


@dataclasses.dataclass(frozen=True)
class Repaired:
    rule: str
    fragment: str
    check: Callable[[data.PatientData], bool]


N_SUBJECT_1 = 11  # concentrations of Theoph subject 1


def _subject_1() -> dict:
    """Theoph subject 1 alone: entry 1 its weight, 2 its dose, 3-13 its concentrations
    (3 at the dose), 14 its Patient."""
    bundle = json.loads(THEOPH.read_text())
    return dict(bundle, entry=bundle["entry"][:14])


SUBJECT_1 = _subject_1()


def _entry(bundle, number) -> dict:
    return bundle["entry"][number - 1]["resource"]


def _set(number, **changes):
    def mutate(bundle):
        _entry(bundle, number).update(changes)
        return bundle
    return mutate


def _drop(number, *keys):
    def mutate(bundle):
        for key in keys:
            del _entry(bundle, number)[key]
        return bundle
    return mutate


def _nested(number, path, value):
    """Set a nested element (a dotted path; None deletes it)."""
    def mutate(bundle):
        node = _entry(bundle, number)
        *parents, last = path.split(".")
        for part in parents:
            node = node[int(part)] if part.isdigit() else node[part]
        if value is None:
            del node[last]
        else:
            node[last] = value
        return bundle
    return mutate


def _append(resource):
    def mutate(bundle):
        bundle["entry"].append({"resource": resource})
        return bundle
    return mutate


def _chain(*mutations):
    def mutate(bundle):
        for mutation in mutations:
            bundle = mutation(bundle)
        return bundle
    return mutate


def _concentrations(ingested):
    return _rows(ingested, "drug.concentration")


S1 = _theoph_subject(1)
PRACTITIONER = {"resourceType": "Practitioner", "id": "canary-practitioner",
                "name": [{"family": "Testperson-99", "given": ["Canary"]}]}

CASES = {
    # the Bundle itself
    "a Patient at the top level, not a Bundle": (
        lambda b: _entry(b, 14), Raises(data.SchemaError, "^Bundle: the top-level resource is "
                                                          "a Patient, not a Bundle$")),
    "a top-level resource of no FHIR type": (
        lambda b: {"resourceType": "Canary Testperson-1"},
        Raises(data.SchemaError, "is a resource of a type FHIR R4 does not define")),
    "a Bundle type outside R4's value set": (
        lambda b: b | {"type": "Canary Testperson-1"},
        Raises(data.SchemaError, "^Bundle: the Bundle type is not one of FHIR R4's")),
    "a history Bundle": (lambda b: b | {"type": "history"},
                         Raises(data.SchemaError, "a history Bundle holds versions")),
    "an unknown element in the Bundle": (
        lambda b: b | {"Canary Testperson-1": 1},
        Raises(data.SchemaError, r"fails FHIR R4 \(R4B\) validation at <element> "
                                 r"\(extra_forbidden\)")),
    "two entries with one fullUrl": (
        lambda b: b | {"entry": [*b["entry"], b["entry"][5]]},
        Raises(data.SchemaError, "entry 15: its fullUrl is that of an earlier entry")),
    "an entry without resource": (
        lambda b: b | {"entry": [*b["entry"], {"fullUrl": "urn:uuid:1"}]},
        Repaired("no-resource", "Bundle entry 15: the entry has no resource",
                 lambda d: len(_concentrations(d)) == N_SUBJECT_1)),
    # resource validation (R4B)
    "a resource of no FHIR type": (
        _append({"resourceType": "CanaryTestperson"}),
        Raises(data.SchemaError, "entry 15: the resource is a resource of a type FHIR R4 does "
                                 "not define")),
    "text where a number is expected (valueQuantity.value)": (
        _nested(5, "valueQuantity.value", "Canary Testperson-1"),
        Raises(data.SchemaError, r"^Bundle entry 5 \(Observation\): fails FHIR R4 \(R4B\) "
                                 r"validation at valueQuantity.value \(value_error\)$")),
    "a Patient's name given as text, not a HumanName list": (
        _set(14, name="Canary Testperson-1"),
        Raises(data.SchemaError, r"entry 14 \(Patient\): fails FHIR R4 \(R4B\) validation at "
                                 r"name")),
    "a Patient's birth date that is not a date": (
        _set(14, birthDate="Canary Testperson-1"),
        Raises(data.SchemaError, r"entry 14 \(Patient\): .* at birthDate \(value_error\)")),
    "an element R4 does not define, named by a patient's name": (
        _set(4, **{"Canary Testperson-1": "MRN-CANARY-1"}),
        Raises(data.SchemaError, r"entry 4 \(Observation\): .* at <element> "
                                 r"\(extra_forbidden\)")),
    "an Observation without status": (
        _drop(4, "status"),
        Raises(data.SchemaError, r"entry 4 \(Observation\): .* at status ")),
    "effectiveDateTime and effectivePeriod at once": (
        _set(4, effectivePeriod={"start": "2021-03-01T09:00:00Z"}),
        Raises(data.SchemaError, r"entry 4 \(Observation\): .* at the resource \(value_error\)")),
    "a contained resource of no FHIR type": (
        _set(4, contained=[{"resourceType": "CanaryTestperson", "id": "c1"}]),
        Raises(data.SchemaError, "a nested or contained resource of a type FHIR R4 does not")),
    "an Observation status outside R4's value set": (
        _set(4, status="Canary Testperson-1"),
        Raises(data.SchemaError, r"entry 4 \(Observation\): the status is not one of FHIR "
                                 r"R4's")),
    "a MedicationAdministration status outside R4's value set": (
        _set(2, status="given"),
        Raises(data.SchemaError, r"entry 2 \(MedicationAdministration\): the status is not")),
    # subjects
    "an Observation without subject": (
        _drop(5, "subject"), Raises(data.SchemaError, r"entry 5 \(Observation\): no subject")),
    "a subject given by display only": (
        _set(5, subject={"display": "Canary Testperson-1"}),
        Raises(data.SchemaError, "the subject has no reference")),
    "a subject that is a Group": (
        _set(5, subject={"reference": "Group/canary-pid-01"}),
        Raises(data.SchemaError, "the subject is a Group, not a Patient")),
    "a subject urn that no entry has as fullUrl": (
        _set(5, subject={"reference": "urn:uuid:3f1c0a5e-0000-4000-8000-000000000001"}),
        Raises(data.SchemaError, "the subject reference \\(a urn\\) is the fullUrl of no "
                                 "entry")),
    "a subject urn of an entry that is not a Patient": (
        lambda b: _set(5, subject={"reference": b["entry"][0]["fullUrl"]})(b),
        Raises(data.SchemaError, "the subject is an Observation, not a Patient")),
    "a contained subject": (
        _set(5, subject={"reference": "#canary-pid-01"}),
        Raises(data.SchemaError, "the subject is a contained resource")),
    "a reference to a Patient in none of the Bundles": (
        _set(13, subject={"reference": "Patient/canary-pid-99"}),
        Repaired("no-patient", "the subject's Patient is in none of the Bundles",
                 lambda d: len(d.subjects) == 2 and len(_concentrations(d)) == N_SUBJECT_1
                 and math.isnan(d.covariates.loc[KEY("canary-pid-99"), "age"]))),
    # codes
    "an Observation without LOINC coding": (
        _nested(6, "code.coding.0.system", "http://snomed.info/sct"),
        Raises(data.CodeError, r"entry 6 \(Observation\) \(subject s-\w{16}\): the code has no "
                               r"LOINC coding")),
    "a LOINC code the dictionary does not declare": (
        _nested(6, "code.coding.0.code", "2339-0X"),
        Repaired("undeclared-code", "1 Observation value(s) of LOINC code of 7 characters are "
                                    "not declared", lambda d: len(_concentrations(d)) == 10)),
    "a declared LOINC code under another name": (
        _nested(6, "code.coding.0.code", "14979-9"),
        Repaired("undeclared-code", "of LOINC 14979-9 are not declared",
                 lambda d: len(_concentrations(d)) == 10)),
    "an identifier typed into a LOINC code": (
        _nested(6, "code.coding.0.code", "MRN-CANARY-1"),
        Repaired("undeclared-code", "LOINC code of 12 characters",
                 lambda d: len(_concentrations(d)) == 10)),
    "LOINC codings of two declared variables": (
        lambda b: _set(6, code={"coding": [
            {"system": "http://loinc.org", "code": "4049-3"},
            {"system": "http://loinc.org", "code": "8867-4"}]})(b),
        Raises(data.CodeError, r"codings name 2 declared variables "
                               r"\['heart_rate', 'theophylline'\]")),
    "a drug the dictionary does not declare": (
        _set(2, medicationCodeableConcept={"coding": [
            {"system": "http://www.nlm.nih.gov/research/umls/rxnorm", "code": "161"}]}),
        Repaired("undeclared-code", "1 MedicationAdministration(s) of RxNorm 161 are not "
                                    "declared", lambda d: _doses(d).empty)),
    "a drug given as text only, of a patient's name": (
        _set(2, medicationCodeableConcept={"text": "Canary Testperson-1"}),
        Repaired("undeclared-code", "a medication given as text of 19 characters",
                 lambda d: _doses(d).empty)),
    "a drug matched by its text": (
        _set(2, medicationCodeableConcept={"text": "Theophylline"}),
        Repaired("", "", lambda d: len(_doses(d)) == 1)),
    "a medicationReference that resolves to nothing": (
        _chain(_drop(2, "medicationCodeableConcept"),
               _set(2, medicationReference={"reference": "#med1"})),
        Raises(data.SchemaError, "the medicationReference resolves to no contained")),
    "a medicationReference to a Medication entry": (
        _chain(_append({"resourceType": "Medication", "id": "theophylline", "code": {
            "coding": [{"system": "http://www.nlm.nih.gov/research/umls/rxnorm",
                        "code": "10438"}]}}),
               _drop(2, "medicationCodeableConcept"),
               _set(2, medicationReference={"reference": "Medication/theophylline"})),
        Repaired("", "", lambda d: len(_doses(d)) == 1)),
    "a route that is neither oral nor intravenous (intramuscular)": (
        _nested(2, "dosage.route", {"coding": [{"system": "http://snomed.info/sct",
                                                 "code": "78421000"}]}),
        Raises(data.CodeError, r"the route \(text of 8 characters\) is not one vht knows")),
    "a route without SNOMED CT coding": (
        _nested(2, "dosage.route", {"coding": [{"system": "http://example.org/routes",
                                                 "code": "PO"}]}),
        Raises(data.CodeError, "dosage.route has no SNOMED CT coding")),
    # units
    "a unit system that is not UCUM": (
        _nested(7, "valueQuantity.system", "http://example.org/units"),
        Raises(data.UnitError, r"entry 7 \(Observation\) \(subject s-\w{16}\): valueQuantity "
                               r"has a system other than UCUM")),
    "a unit without system": (
        _nested(7, "valueQuantity.system", None),
        Raises(data.UnitError, "valueQuantity has no system; vht reads UCUM units only")),
    "a Quantity without UCUM code": (
        _nested(7, "valueQuantity.code", None),
        Raises(data.UnitError, "valueQuantity has no UCUM code")),
    "a UCUM code that is not one (mcg/mL)": (
        _nested(7, "valueQuantity.code", "mcg/mL"),
        Raises(data.UnitError, "write 'ug'")),
    "an identifier typed into a UCUM code": (
        _nested(7, "valueQuantity.code", "MRN-CANARY-1"),
        Raises(data.UnitError, "an unknown unit")),
    "a dose counted in tablets (v3-orderableDrugForm)": (
        _nested(2, "dosage.dose", {"value": 2, "unit": "TAB", "code": "TAB", "system":
                                   "http://terminology.hl7.org/CodeSystem/v3-orderableDrugForm"}),
        Raises(data.UnitError, r"entry 2 \(MedicationAdministration\) \(subject s-\w{16}\): "
                               r"dosage.dose has a system other than UCUM")),
    "a weight in grams (converted)": (
        _nested(1, "valueQuantity", {"value": 79600, "system": "http://unitsofmeasure.org",
                                     "code": "g"}),
        Repaired("", "", lambda d: d.covariates.loc[S1, "weight"] == pytest.approx(79.6))),
    # values
    "valueString where a number is expected": (
        _chain(_drop(8, "valueQuantity"), _set(8, valueString="Canary Testperson-1")),
        Raises(data.ValueDataError, r"theophylline is not a number \(text of 19 characters\)")),
    "a valueCodeableConcept where a quantity is expected": (
        _chain(_drop(8, "valueQuantity"), _set(8, valueCodeableConcept={"text": "high"})),
        Raises(data.ValueDataError, "the value is a CodeableConcept, not a Quantity")),
    "a value below the detection limit (comparator <)": (
        _nested(8, "valueQuantity.comparator", "<"),
        Raises(data.ValueDataError, "valueQuantity has '<': a bound")),
    "a value of infinite size": (
        _nested(8, "valueQuantity.value", "1e400"),
        Raises(data.ValueDataError, "theophylline is inf, not a finite number")),
    "a negative concentration": (
        _nested(8, "valueQuantity.value", -1.5),
        Raises(data.ValueDataError, r"outside its valid range \[0, 200\] mg/L")),
    "no value, with a dataAbsentReason": (
        _chain(_drop(8, "valueQuantity"), _set(8, dataAbsentReason={"coding": [{
            "system": "http://terminology.hl7.org/CodeSystem/data-absent-reason",
            "code": "error"}]})),
        Repaired("missing-value", "theophylline has no value; the row is dropped",
                 lambda d: len(_concentrations(d)) == 10)),
    "a weight without value": (
        _nested(1, "valueQuantity.value", None),
        Repaired("missing-covariate", "no weight is given",
                 lambda d: math.isnan(d.covariates.loc[S1, "weight"]))),
    # statuses
    "an Observation entered in error": (
        _set(9, status="entered-in-error"),
        Repaired("status", "Bundle entry 9 (Observation) (subject "
                           f"{S1}): status entered-in-error; not read",
                 lambda d: len(_concentrations(d)) == 10)),
    "a dose not done": (
        _set(2, status="not-done"),
        Repaired("status", "status not-done; not read", lambda d: _doses(d).empty)),
    # doses
    "a dose without dosage.dose": (
        _nested(2, "dosage.dose", None),
        Raises(data.ValueDataError, r"entry 2 \(MedicationAdministration\) \(subject "
                                    r"s-\w{16}\): no dosage.dose")),
    "a dose without dosage": (
        _drop(2, "dosage"), Raises(data.ValueDataError, "no dosage.dose")),
    "a dose without value": (
        _nested(2, "dosage.dose.value", None),
        Raises(data.ValueDataError, "dosage.dose has no value")),
    "a negative dose": (
        _nested(2, "dosage.dose.value", -320),
        Raises(data.ValueDataError, "the amount of theophylline is negative")),
    "text where a dose is expected": (
        _nested(2, "dosage.dose.value", "three hundred"),
        Raises(data.SchemaError, r"at dosage.dose.value \(value_error\)")),
    "an effectivePeriod that ends before it starts": (
        _chain(_drop(2, "effectiveDateTime"), _set(2, effectivePeriod={
            "start": "2021-03-01T08:00:00Z", "end": "2021-03-01T06:00:00Z"})),
        Raises(data.ValueDataError, "effectivePeriod ends 2 h before it starts")),
    "an effectivePeriod that ends on a day before it starts": (
        _chain(_drop(2, "effectiveDateTime"), _set(2, effectivePeriod={
            "start": "2021-03-01", "end": "2021-02-28"})),
        Raises(data.ValueDataError, "ends on a day before it starts")),
    "an oral dose over an effectivePeriod (read at its start)": (
        _chain(_drop(2, "effectiveDateTime"), _set(2, effectivePeriod={
            "start": "2021-03-01T08:00:00Z", "end": "2021-03-01T08:10:00Z"})),
        Repaired("", "", lambda d: list(_doses(d)["duration"]) == [0.0])),
    "an intravenous dose over an effectivePeriod (an infusion)": (
        _chain(_drop(2, "effectiveDateTime"), _nested(2, "dosage.route.coding.0.code", "47625008"),
               _set(2, effectivePeriod={"start": "2021-03-01T08:00:00Z",
                                        "end": "2021-03-01T08:30:00+00:00"})),
        Repaired("", "", lambda d: list(_doses(d)[["route", "duration"]].iloc[0])
                 == ["infusion", 0.5])),
    # times
    "an Observation without time": (
        _drop(10, "effectiveDateTime"), Raises(data.TimeError, r"entry 10 \(Observation\): no "
                                                               "time")),
    "an Observation timed to the month": (
        _set(10, effectiveDateTime="2021-03"),
        Raises(data.TimeError, r"entry 10 \(Observation\) \(subject s-\w{16}\): the time is "
                               "known to the month only")),
    "an Observation timed to the year (not a number of hours)": (
        _set(10, effectiveDateTime="2021"),
        Raises(data.TimeError, "the time is known to the year only; vht needs the day")),
    "a dose timed to the year": (
        _set(2, effectiveDateTime="2021"),
        Raises(data.TimeError, r"entry 2 \(MedicationAdministration\) .* known to the year")),
    "a conflicting Observation at the same time": (
        lambda b: _append(copy.deepcopy(_entry(b, 10)) | {
            "valueQuantity": {"value": 9.9, "system": "http://unitsofmeasure.org",
                              "code": "ug/mL"}})(b),
        Raises(data.TimeError, "given twice with different values")),
    "the same Observation twice": (
        lambda b: _append(copy.deepcopy(_entry(b, 10)))(b),
        Repaired("duplicate", "repeats an earlier row exactly",
                 lambda d: len(_concentrations(d)) == N_SUBJECT_1)),
    "entries in reverse order (a Bundle's order carries no meaning)": (
        lambda b: b | {"entry": b["entry"][::-1]},
        Repaired("", "", lambda d: d.records["time"].is_monotonic_increasing)),
    "a vital-signs panel of hasMember references (no value of its own)": (
        _append({"resourceType": "Observation", "status": "final",
                 "code": {"coding": [{"system": "http://loinc.org", "code": "85353-1"}]},
                 "subject": {"reference": "Patient/canary-pid-01"},
                 "effectiveDateTime": "2021-03-01T09:00:00Z",
                 "hasMember": [{"reference": "Observation/heart-rate"}]}),
        Repaired("", "", lambda d: len(_concentrations(d)) == N_SUBJECT_1)),
    # other resources
    "a Practitioner (not read)": (
        _append(PRACTITIONER),
        Repaired("unread-resource", "Bundle: 1 Practitioner resource(s) not read",
                 lambda d: len(_concentrations(d)) == N_SUBJECT_1)),
    "an R4 resource type that R4B dropped (not read)": (
        _append({"resourceType": "MedicinalProduct", "id": "x"}),
        Repaired("unread-resource", "1 MedicinalProduct resource(s) not read",
                 lambda d: len(_concentrations(d)) == N_SUBJECT_1)),
    # patients
    "a gender outside R4's value set": (
        _set(14, gender="Canary Testperson-1"), Raises(data.CodeError, "sex code is not one")),
    "a birth year only": (
        _set(14, birthDate="1953"),
        Repaired("partial-birth-date", "1 July (mid-year) is assumed",
                 lambda d: d.covariates.loc[S1, "age"] == pytest.approx(
                     _years("1953-07-01", "2021-03-01T08:00:00Z")))),
    "a birth month only": (
        _set(14, birthDate="1953-02"),
        Repaired("partial-birth-date", "the 15th (mid-month) is assumed",
                 lambda d: d.covariates.loc[S1, "age"] == pytest.approx(
                     _years("1953-02-15", "2021-03-01T08:00:00Z")))),
    "a birth after the first record": (
        _set(14, birthDate="2022-01-01"),
        Raises(data.ValueDataError, "the birth date follows the first record")),
    "a Patient given twice with another birth date": (
        lambda b: _append(_entry(b, 14) | {"birthDate": "1960-01-01"})(b),
        Repaired("varying-patient", "the Patient is given again with another birth date",
                 lambda d: d.covariates.loc[S1, "age"] > 65)),
    "no declared record at all": (
        lambda b: b | {"entry": [b["entry"][13]]},
        Raises(data.DataError, "no observations are left")),
    "an empty Bundle": (
        lambda b: b | {"entry": []},
        Raises(data.SchemaError, "no Observation, MedicationAdministration or Patient")),
}


def test_the_corpus_is_large_enough():
    assert len(CASES) >= 60
    assert sum(isinstance(outcome, Raises) for _, outcome in CASES.values()) >= 40


def _read(mutate) -> data.PatientData:
    return data.read_fhir(mutate(copy.deepcopy(SUBJECT_1)), DICTIONARY, KEY)


@pytest.mark.parametrize("name", list(CASES))
def test_bad_input(name, caplog):
    mutate, outcome = CASES[name]
    if isinstance(outcome, Raises):
        with caplog.at_level(logging.DEBUG, logger="vht.data"), \
                pytest.raises(outcome.error, match=outcome.fragment) as caught:
            _read(mutate)
        _assert_anonymous([*_error_texts(caught.value), *caplog.messages])
        return
    with caplog.at_level(logging.WARNING, logger="vht.data"):
        ingested = _read(mutate)
    _assert_anonymous([*caplog.messages, *map(str, ingested.repairs)])
    rules = [r.rule for r in ingested.repairs if r.rule != "missing-covariate"
             or outcome.rule == "missing-covariate"]
    if outcome.rule:
        assert outcome.rule in rules, rules
        assert any(outcome.fragment in message for message in caplog.messages), caplog.messages
    else:
        assert rules == [], rules
    assert outcome.check(ingested)


def test_not_json_and_not_utf8(tmp_path):
    path = tmp_path / "Canary Testperson.json"
    path.write_text('{"resourceType": "Bundle", "type": "collection", "entry": [\n  {"x": }]}')
    with pytest.raises(data.SchemaError, match=r"^Bundle: the file is not valid JSON \(line 2, "
                                               r"column 9\)$") as caught:
        data.read_fhir(path, DICTIONARY, KEY)
    _assert_anonymous(_error_texts(caught.value))
    path.write_text("[]")
    with pytest.raises(data.SchemaError, match="^Bundle: the JSON is not an object"):
        data.read_fhir(str(path), DICTIONARY, KEY)
    path.write_bytes(b'{"resourceType": "Bundle", "id": "\xff"}')
    with pytest.raises(data.SchemaError, match="^Bundle: the file is not UTF-8 text$"):
        data.read_fhir([path], DICTIONARY, KEY)
    with pytest.raises(data.SchemaError, match="Bundle 2: the file is not UTF-8 text"):
        data.read_fhir([THEOPH, path], DICTIONARY, KEY)
    with pytest.raises(data.SchemaError, match="no FHIR Bundle is given"):
        data.read_fhir([], DICTIONARY, KEY)
    with pytest.raises(TypeError, match="a path or a dict"):
        data.read_fhir(42, DICTIONARY, KEY)


# -- nothing identifying leaves -----------------------------------------------------------------

# the canaries of make_theoph_fhir.py (names, MRNs, phones, addresses, patient ids), its dates
# (2021) and birth years (1952-1982), and the names, MRNs and ids of the R4 example Patients
IDENTIFYING = ["canary", "testperson", "555-0100", "2021-",
               *(f"{year}-" for year in range(1952, 1983)),
               "chalmers", "windsor", "peter", "heuvel", "pieter", "donald", "duck", "12345",
               "654321", "pat1", "f001"]


def _assert_anonymous(texts) -> None:
    for text in texts:
        lowered = str(text).lower()
        assert not any(word in lowered for word in IDENTIFYING), text


def _error_texts(error) -> list[str]:
    """What a log could show of an error: its message, redacted message and traceback."""
    return [str(error), error.redacted, "".join(traceback.format_exception(error))]


def test_no_identifying_value_reaches_messages_repairs_or_the_hdf5_file(tmp_path, caplog):
    """The corpus checks every message and repair of its cases; here the clean reads of the
    Theoph Bundle (with age and sex, so that birth dates are read) and of the R4 examples,
    their warnings and their HDF5 files."""
    heart_rate = _resource("Observation-heart-rate.json") | {
        "subject": {"reference": "Patient/pat1"},
        "effectiveDateTime": "2015-01-16T08:00:00+01:00"}
    with caplog.at_level(logging.DEBUG, logger="vht.data"):
        theoph = data.read_fhir([THEOPH, _bundle(PRACTITIONER)], DICTIONARY, KEY)
        examples = data.read_fhir(_bundle(
            "Patient-example.json", "Observation-heart-rate.json",
            "Observation-blood-pressure-dar.json", "Observation-blood-pressure-cancel.json",
            "Observation-example.json", "Patient-f001.json", "Observation-f001.json",
            "Patient-pat1.json", "MedicationAdministration-medadmin0303.json",
            "MedicationAdministration-medadmin0304.json", heart_rate), DICTIONARY, KEY)
    assert theoph.repairs and examples.repairs  # the check below can fail
    for ingested, name in ((theoph, "theoph"), (examples, "examples")):
        _assert_anonymous([*caplog.messages, *map(str, ingested.repairs)])
        _assert_anonymous(ingested.records.to_numpy().ravel())
        _assert_anonymous(ingested.covariates.reset_index().to_numpy().ravel())
        path = ingested.to_hdf5(tmp_path / f"{name}.h5")
        content = path.read_bytes().lower()
        for word in IDENTIFYING:
            assert word.encode() not in content, word
        assert ingested.subjects[0].encode() in content  # the pseudonyms are there
    assert KEY("pat1").encode() in (tmp_path / "examples.h5").read_bytes()
