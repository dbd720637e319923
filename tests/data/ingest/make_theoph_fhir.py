"""Writes the Theoph data (R datasets::Theoph, calibration/data/theoph.csv) as a FHIR R4
collection Bundle, so that the FHIR tests can check that read_fhir gives calibration's records.

    .venv/bin/python tests/data/ingest/make_theoph_fhir.py

Writes fhir/theoph_bundle.json. Per subject n (1-12):

- a Patient with fake canary identity (name "Canary Testperson-<n>", MRN "MRN-CANARY-<n>",
  phone, address, logical id "canary-pid-<n>"), a birth date and a gender: the tests check that
  none of these reaches a message, the repairs or an HDF5 file;
- a body weight Observation (LOINC 29463-7, kg) half an hour before the dose;
- a MedicationAdministration of theophylline (RxNorm 10438), the mg/kg dose times the weight in
  mg, route oral (SNOMED CT 26643006);
- 11 concentration Observations (LOINC 4049-3 Theophylline [Mass/volume] in Serum or Plasma)
  in ug/mL (numerically mg/L).

Times are absolute date-times: subject n is dosed on 1 March 2021 08:00 UTC plus (n - 1) times
9 days 37 minutes, written in UTC ("Z"), at +02:00 or at -05:00 (n mod 3), so that the times
become hours since each subject's dose only through the offsets. Theoph's times (hours to two
decimals) are whole multiples of 36 s, so the date-times carry them exactly. The entries vary
on purpose: odd subjects refer to their Patient as "Patient/<id>", even ones by its urn:uuid
fullUrl; subject 5's samples use effectivePeriod.start and subject 7's effectiveInstant; subject
3's samples come in reverse time order; each subject's Patient comes after its records.
"""

import datetime
import json
import uuid
from pathlib import Path

import pandas as pd

here = Path(__file__).parent
raw = pd.read_csv(here.parents[2] / "calibration" / "data" / "theoph.csv")

LOINC, UCUM = "http://loinc.org", "http://unitsofmeasure.org"
RXNORM, SNOMED = "http://www.nlm.nih.gov/research/umls/rxnorm", "http://snomed.info/sct"
FIRST_DOSE = datetime.datetime(2021, 3, 1, 8, 0, tzinfo=datetime.UTC)
OFFSETS = (datetime.timezone(datetime.timedelta(hours=-5)), datetime.UTC,
           datetime.timezone(datetime.timedelta(hours=2)))


def url(n: int, what: str) -> str:
    return f"urn:uuid:{uuid.uuid5(uuid.NAMESPACE_URL, f'https://vht.example/theoph/{n}/{what}')}"


def stamp(moment: datetime.datetime, n: int) -> str:
    local = moment.astimezone(OFFSETS[n % 3])
    text = local.isoformat(timespec="seconds")
    return text.replace("+00:00", "Z")


entries = []
for subject, group in raw.groupby("Subject", sort=False):
    n = int(subject)
    first = group.iloc[0]
    dosed = FIRST_DOSE + (n - 1) * datetime.timedelta(days=9, minutes=37)
    patient_id = f"canary-pid-{n:02d}"
    reference = (f"Patient/{patient_id}" if n % 2 else url(n, "patient"))
    records = [{
        "resourceType": "Observation", "status": "final",
        "category": [{"coding": [{"system": "http://terminology.hl7.org/CodeSystem/"
                                  "observation-category", "code": "vital-signs"}]}],
        "code": {"coding": [{"system": LOINC, "code": "29463-7", "display": "Body weight"}]},
        "subject": {"reference": reference},
        "effectiveDateTime": stamp(dosed - datetime.timedelta(minutes=30), n),
        "valueQuantity": {"value": float(first.Wt), "unit": "kg", "system": UCUM,
                          "code": "kg"}}, {
        "resourceType": "MedicationAdministration", "status": "completed",
        "medicationCodeableConcept": {
            "coding": [{"system": RXNORM, "code": "10438", "display": "theophylline"}],
            "text": "Theophylline"},
        "subject": {"reference": reference},
        "effectiveDateTime": stamp(dosed, n),
        "dosage": {"route": {"coding": [{"system": SNOMED, "code": "26643006",
                                         "display": "Oral route"}]},
                   "dose": {"value": round(float(first.Dose * first.Wt), 6), "unit": "mg",
                            "system": UCUM, "code": "mg"}}}]
    samples = []
    for row in group.itertuples(index=False):
        when = dosed + datetime.timedelta(seconds=round(row.Time * 3600))
        sample = {
            "resourceType": "Observation", "status": "final",
            "code": {"coding": [{"system": LOINC, "code": "4049-3",
                                 "display": "Theophylline [Mass/volume] in Serum or Plasma"}]},
            "subject": {"reference": reference},
            "valueQuantity": {"value": float(row.conc), "unit": "ug/mL", "system": UCUM,
                              "code": "ug/mL"}}
        if n == 5:
            sample["effectivePeriod"] = {"start": stamp(when, n)}
        elif n == 7:
            sample["effectiveInstant"] = stamp(when, n)
        else:
            sample["effectiveDateTime"] = stamp(when, n)
        samples.append(sample)
    if n == 3:
        samples.reverse()
    records += samples
    patient = {
        "resourceType": "Patient", "id": patient_id,
        "identifier": [{"use": "usual", "type": {"coding": [{
            "system": "http://terminology.hl7.org/CodeSystem/v2-0203", "code": "MR"}]},
            "system": "urn:oid:2.16.840.1.113883.19.5", "value": f"MRN-CANARY-{n}"}],
        "name": [{"use": "official", "family": f"Testperson-{n}", "given": ["Canary"]}],
        "telecom": [{"system": "phone", "value": f"+1-555-0100-{n:03d}", "use": "home"}],
        "address": [{"line": [f"{n} Canary Street"], "city": "Canarytown",
                     "postalCode": f"C{n:04d}"}],
        "gender": "female" if n % 4 == 0 else "male",
        "birthDate": (datetime.date(1950, 1, 15) + datetime.timedelta(days=1000 * n)).isoformat()}
    for number, resource in enumerate(records):
        entries.append({"fullUrl": url(n, f"record-{number}"), "resource": resource})
    entries.append({"fullUrl": url(n, "patient"), "resource": patient})

bundle = {"resourceType": "Bundle", "id": "theoph-fhir", "type": "collection",
          "timestamp": "2021-06-01T00:00:00Z", "entry": entries}
(here / "fhir" / "theoph_bundle.json").write_text(json.dumps(bundle, indent=1) + "\n")
