"""Writes the Theoph data (R datasets::Theoph, calibration/data/theoph.csv) as an OMOP CDM v5.4
DuckDB database, so that the OMOP tests can check that read_omop gives the records
calibration.theoph_records gives.

    .venv/bin/python tests/data/ingest/omop/make_theoph_omop.py

Writes theoph_omop.duckdb with the shipped DDL (vht/data/omop/cdm_tables.sql) and concept
subset (vht/data/omop/concept.csv). Per subject: a person (person_id 731000 + subject number,
a fake birth date and gender, person_source_value a canary "MRN-CANARY-<n>"), a body weight
measurement (LOINC 29463-7, kg) an hour before the dose, an oral theophylline drug exposure
(mg/kg dose x weight, in mg) and the concentrations (LOINC 4049-3 in ug/mL, numerically
mg/L) at absolute date-times, each subject starting on a different day.
"""

import csv
import datetime
from pathlib import Path

import duckdb
import pandas as pd

HERE = Path(__file__).parent
ROOT = HERE.parents[3]
OMOP = ROOT / "vht" / "data" / "omop"
TARGET = HERE / "theoph_omop.duckdb"
PERSON_ID_BASE = 731000
EHR = 32817  # type concept "EHR"
THEOPHYLLINE_LAB, WEIGHT, UG_PER_ML, KG = 2000000001, 3025315, 8859, 9529
THEOPHYLLINE_DRUG, ORAL, MALE, FEMALE = 2000000004, 4132161, 8507, 8532
FIRST_DOSE = datetime.datetime(2021, 3, 1, 8, 0)


def build(target: Path = TARGET) -> Path:
    raw = pd.read_csv(ROOT / "calibration" / "data" / "theoph.csv")
    persons, measurements, drugs = [], [], []
    for index, (subject, group) in enumerate(raw.groupby("Subject", sort=False)):
        number = int(subject)
        person_id = PERSON_ID_BASE + number
        first = group.iloc[0]
        dosed = FIRST_DOSE + datetime.timedelta(days=9 * index, minutes=37 * index)
        born = datetime.date(1955, 1, 1) + datetime.timedelta(days=611 * number)
        persons.append({
            "person_id": person_id, "gender_concept_id": MALE if number % 2 else FEMALE,
            "year_of_birth": born.year, "month_of_birth": born.month, "day_of_birth": born.day,
            # half the persons carry a birth date-time, half the year/month/day only
            "birth_datetime": datetime.datetime.combine(born, datetime.time(6, 0))
            if number % 2 else None,
            "race_concept_id": 0, "ethnicity_concept_id": 0,
            "person_source_value": f"MRN-CANARY-{number}", "gender_source_value": "CANARY-G"})
        weighed = dosed - datetime.timedelta(hours=1)
        measurements.append(_measurement(person_id, WEIGHT, weighed, float(first.Wt), KG,
                                         "WT-CANARY"))
        drugs.append({
            "drug_exposure_id": len(drugs) + 1, "person_id": person_id,
            "drug_concept_id": THEOPHYLLINE_DRUG, "drug_exposure_start_date": dosed.date(),
            "drug_exposure_start_datetime": dosed, "drug_exposure_end_date": dosed.date(),
            "drug_exposure_end_datetime": dosed, "drug_type_concept_id": EHR,
            "quantity": round(first.Dose * first.Wt, 6), "route_concept_id": ORAL,
            "drug_source_value": f"RX-CANARY-{number}", "route_source_value": "PO",
            "dose_unit_source_value": "mg"})
        for row in group.itertuples(index=False):
            when = dosed + datetime.timedelta(seconds=round(row.Time * 3600))
            measurements.append(_measurement(person_id, THEOPHYLLINE_LAB, when,
                                             float(row.conc), UG_PER_ML, "THEO-CANARY"))
    for number, row in enumerate(measurements, start=1):
        row["measurement_id"] = number

    target.unlink(missing_ok=True)
    with duckdb.connect() as connection:
        # 16 KiB blocks instead of DuckDB's 256 KiB: the file is tens of KiB, not megabytes
        connection.execute(f"ATTACH '{target}' AS theoph (BLOCK_SIZE 16384)")
        connection.execute("USE theoph")
        connection.execute((OMOP / "cdm_tables.sql").read_text())
        with open(OMOP / "concept.csv", newline="", encoding="utf-8") as handle:
            concepts = [{**row, "standard_concept": row["standard_concept"] or None,
                         "valid_start_date": datetime.date(1970, 1, 1),
                         "valid_end_date": datetime.date(2099, 12, 31)}
                        for row in csv.DictReader(handle)]
        for table, rows in (("concept", concepts), ("person", persons),
                            ("measurement", measurements), ("drug_exposure", drugs)):
            frame = pd.DataFrame(rows)  # noqa: F841 (read by DuckDB's replacement scan)
            columns = ", ".join(frame.columns)
            connection.execute(f"INSERT INTO {table} ({columns}) SELECT {columns} FROM frame")
        connection.execute("CHECKPOINT")
        connection.execute("USE memory")
        connection.execute("DETACH theoph")
    return target


def _measurement(person_id, concept_id, when, value, unit_concept_id, source):
    return {"person_id": person_id, "measurement_concept_id": concept_id,
            "measurement_date": when.date(), "measurement_datetime": when,
            "measurement_type_concept_id": EHR, "value_as_number": value,
            "unit_concept_id": unit_concept_id, "measurement_source_value": source,
            "value_source_value": f"{value} {source}"}


if __name__ == "__main__":
    path = build()
    print(f"wrote {path.relative_to(ROOT)} ({path.stat().st_size} bytes)")
