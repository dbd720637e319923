"""OMOP CDM v5.4 databases: measurements, drug exposures and persons as source rows.

``read_omop`` reads a DuckDB file (opened read-only, with DuckDB's automatic extension install
and load switched off, so that nothing is downloaded at run time) or any open DB-API connection
(a duckdb connection, a psycopg connection to PostgreSQL). The SQL is the same text for every
engine (``MEASUREMENT_SQL``, ``DRUG_EXPOSURE_SQL``, ``PERSON_SQL``): plain joins to the
``concept`` table, no engine-specific function and no query parameter.

| OMOP | source row |
|---|---|
| ``measurement`` of a declared LOINC concept | an observation (a covariate if declared so) |
| ``value_as_number`` | the value (NULL: empty, dropped with a warning) |
| ``unit_concept_id`` -> UCUM concept | the unit (its ``concept_code``) |
| ``measurement_datetime``, else ``measurement_date`` | the time |
| ``drug_exposure`` of a declared RxNorm concept | a dose: ``quantity`` |
| ``dose_unit_source_value`` | the dose's unit (UCUM text) |
| ``route_concept_id`` | the route (4132161 oral, 4171047 intravenous) |
| IV start and end date-times | an infusion lasting from start to end |
| ``person.gender_concept_id`` | the ``sex`` covariate (8507, 8532, 8551) |
| ``birth_datetime``, else year/month/day of birth | the birth date behind ``age`` |

A concept is declared when the data dictionary lists its code (LOINC for measurements,
RxNorm for drugs) or its concept id; body weight (29463-7) is a covariate in the usual
dictionaries. ``sex`` and ``age`` are read only when the dictionary declares them.

The subject identifier is ``person_id`` (pseudonymised by ``ingest`` first of all); row
positions ("measurement row 12") count rows in each query's ORDER BY. ``person_source_value``
and the CDM's other identifying columns (source values, locations, providers) are never
selected.

Beyond the shared checks of ``vht.data.ingest``:

| problem | outcome |
|---|---|
| a missing table or column | ``SchemaError`` |
| a measurement or drug concept 0 or absent from ``concept`` (unmapped) | ``CodeError`` |
| a mapped concept the dictionary does not declare | rows dropped, one warning per concept |
| a unit concept absent from ``concept`` or not UCUM | ``UnitError`` |
| a record of a ``person_id`` without a person row | dropped, warning |
| a person row given twice | ``SchemaError`` |
| a drug exposure that ends before it starts | ``ValueDataError`` |
| route concept 0 (unmapped) | the dictionary's default route, warning |
| gender concept 0 | no sex (a warning from ``ingest``) |
| a birth date known to the month or year only | mid-month or mid-year assumed, warning |

Notes: DuckDB's bare ``NUMERIC`` is ``DECIMAL(18,3)``, which rounds to three decimals; the
shipped DDL (``vht/data/omop/cdm_tables.sql``) writes ``NUMERIC(38,10)`` instead. OMOP's
``quantity`` is what the source recorded as given; vht reads it as the dose amount in
``dose_unit_source_value``. Drug concepts are matched as recorded (no roll-up from clinical
drugs to ingredients): declare the RxNorm codes or concept ids that the database holds.
"""

from __future__ import annotations

import datetime
import math
from collections import Counter
from pathlib import Path

import pandas as pd

from ._dictionary import DataDictionary
from ._errors import CodeError, SchemaError, UnitError, ValueDataError
from ._ingest import BIRTH_DATE, PatientData, Repairs, ingest
from ._privacy import Pseudonymizer

TABLES = ("person", "measurement", "drug_exposure", "concept")
ORAL_ROUTE = 4132161
INTRAVENOUS_ROUTE = 4171047

TABLE_PROBE_SQL = "SELECT 1 FROM {table} WHERE 1 = 0"
"""Probes each table (``{table}`` is one of ``TABLES``, never data) before the reads."""

MEASUREMENT_SQL = """\
SELECT m.person_id,
       m.measurement_concept_id,
       mc.vocabulary_id AS measurement_vocabulary_id,
       mc.concept_code AS measurement_concept_code,
       m.unit_concept_id,
       uc.vocabulary_id AS unit_vocabulary_id,
       uc.concept_code AS unit_concept_code,
       m.value_as_number,
       m.measurement_datetime,
       m.measurement_date
FROM measurement m
LEFT JOIN concept mc ON mc.concept_id = m.measurement_concept_id
LEFT JOIN concept uc ON uc.concept_id = m.unit_concept_id
ORDER BY m.measurement_id, m.person_id, m.measurement_date,
         m.measurement_datetime NULLS LAST, m.measurement_concept_id"""

DRUG_EXPOSURE_SQL = """\
SELECT d.person_id,
       d.drug_concept_id,
       dc.vocabulary_id AS drug_vocabulary_id,
       dc.concept_code AS drug_concept_code,
       d.quantity,
       d.dose_unit_source_value,
       d.route_concept_id,
       d.drug_exposure_start_datetime,
       d.drug_exposure_start_date,
       d.drug_exposure_end_datetime,
       d.drug_exposure_end_date
FROM drug_exposure d
LEFT JOIN concept dc ON dc.concept_id = d.drug_concept_id
ORDER BY d.drug_exposure_id, d.person_id, d.drug_exposure_start_date,
         d.drug_exposure_start_datetime NULLS LAST, d.drug_concept_id"""

PERSON_SQL = """\
SELECT p.person_id,
       p.gender_concept_id,
       p.year_of_birth,
       p.month_of_birth,
       p.day_of_birth,
       p.birth_datetime
FROM person p
ORDER BY p.person_id"""

SQL = (MEASUREMENT_SQL, DRUG_EXPOSURE_SQL, PERSON_SQL)
"""Every query ``read_omop`` runs after the table probes, in the order it runs them."""


def _connect(database):
    """(connection, whether read_omop opened it)."""
    if isinstance(database, (str, Path)):
        import duckdb

        path = Path(database)
        if not path.is_file():
            raise SchemaError(f"OMOP database: no DuckDB file {path.name}")
        config = {"autoinstall_known_extensions": False, "autoload_known_extensions": False}
        try:
            return duckdb.connect(str(path), read_only=True, config=config), True
        except duckdb.Error as error:
            raise SchemaError(f"OMOP database: {path.name} is not a readable DuckDB file "
                              f"({type(error).__name__})") from None
    if not hasattr(database, "cursor"):
        raise TypeError("database must be a DuckDB file path or an open DB-API connection, "
                        f"got {type(database).__name__}")
    return database, False


def _query(connection, sql: str, what: str) -> list[dict]:
    cursor = connection.cursor()
    try:
        cursor.execute(sql)
        names = [d[0] for d in cursor.description]
        return [dict(zip(names, row)) for row in cursor.fetchall()]
    except Exception as error:  # the engine's own error class (duckdb.Error, psycopg.Error)
        # the engine's message is not quoted: it may echo values from the database
        raise SchemaError(f"OMOP database: reading {what} failed ({type(error).__name__}); is "
                          "it an OMOP CDM v5.4 database?") from None
    finally:
        cursor.close()


def _probe_tables(connection) -> None:
    for table in TABLES:
        cursor = connection.cursor()
        try:
            cursor.execute(TABLE_PROBE_SQL.format(table=table))
            cursor.fetchall()
        except Exception as error:
            raise SchemaError(f"OMOP database: table {table!r} is missing or unreadable "
                              f"({type(error).__name__}); read_omop needs {list(TABLES)}") \
                from None
        finally:
            cursor.close()


def _missing(value) -> bool:
    return value is None or (isinstance(value, float) and math.isnan(value))


def _number(value):
    """A NUMERIC cell as float (Decimal from DuckDB and psycopg), None when NULL."""
    return None if _missing(value) else float(value)


def _when(datetime_value, date_value):
    """A record's time: its date-time, else midnight of its date (None when neither)."""
    if not _missing(datetime_value):
        return pd.Timestamp(datetime_value)
    if not _missing(date_value):
        return pd.Timestamp(date_value)
    return None


def _declared(dictionary: DataDictionary, kinds, vocabulary, code, concept_id, vocabularies):
    """(kind, code) by which the dictionary declares a concept: by its code in one of
    ``vocabularies``, or by its concept id."""
    for kind in kinds:
        if vocabulary in vocabularies and dictionary.knows(kind, str(code)):
            return kind, str(code)
        if dictionary.knows(kind, str(concept_id)):
            return kind, str(concept_id)
    return None


class _Undeclared:
    """Mapped concepts the dictionary does not declare: counted, then one warning each."""

    def __init__(self, table: str):
        self.table = table
        self.counts: Counter = Counter()

    def add(self, vocabulary, code) -> None:
        self.counts[(str(vocabulary), str(code))] += 1

    def report(self, repairs: Repairs) -> None:
        for (vocabulary, code), count in sorted(self.counts.items()):
            repairs.add("undeclared-concept", self.table, "",
                        f"{count} row(s) of {vocabulary} concept {code} are not declared in "
                        "the data dictionary; not read")


def _measurement_rows(records, dictionary, persons, repairs) -> list[dict]:
    rows, undeclared = [], _Undeclared("measurement")
    orphans = 0
    for number, record in enumerate(records, start=1):
        position = f"measurement row {number}"
        concept_id = record["measurement_concept_id"]
        vocabulary, code = record["measurement_vocabulary_id"], record["measurement_concept_code"]
        if _missing(concept_id) or concept_id == 0 or code is None:
            raise CodeError(f"{position}: measurement_concept_id {concept_id} is unmapped (0, or "
                            "not in the concept table); map it to a LOINC concept")
        declared = _declared(dictionary, ("observation", "covariate"), vocabulary, code,
                             concept_id, ("LOINC",))
        if declared is None:
            undeclared.add(vocabulary, code)
            continue
        kind, declared_code = declared
        if record["person_id"] not in persons:
            orphans += 1
            continue
        value = _number(record["value_as_number"])
        unit_id = record["unit_concept_id"]
        unit = ""
        if not _missing(unit_id) and unit_id != 0:
            if record["unit_concept_code"] is None:
                if value is not None:
                    raise UnitError(f"{position}: unit_concept_id {unit_id} is not in the "
                                    "concept table")
            elif record["unit_vocabulary_id"] != "UCUM":
                if value is not None:
                    raise UnitError(f"{position}: unit concept {unit_id} is a "
                                    f"{record['unit_vocabulary_id']} concept, not UCUM")
            else:
                unit = record["unit_concept_code"]
        rows.append({"position": position, "subject": str(record["person_id"]), "kind": kind,
                     "code": declared_code, "value": value, "unit": unit,
                     "time": _when(record["measurement_datetime"], record["measurement_date"]),
                     "route": "", "duration": 0.0})
    undeclared.report(repairs)
    if orphans:
        repairs.add("no-person", "measurement", "",
                    f"{orphans} measurement row(s) belong to a person_id without a person row; "
                    "dropped")
    return rows


def _drug_rows(records, dictionary, persons, pseudonyms, repairs) -> list[dict]:
    rows, undeclared = [], _Undeclared("drug_exposure")
    orphans = 0
    for number, record in enumerate(records, start=1):
        position = f"drug exposure row {number}"
        concept_id = record["drug_concept_id"]
        vocabulary, code = record["drug_vocabulary_id"], record["drug_concept_code"]
        if _missing(concept_id) or concept_id == 0 or code is None:
            raise CodeError(f"{position}: drug_concept_id {concept_id} is unmapped (0, or not in "
                            "the concept table); map it to an RxNorm concept")
        declared = _declared(dictionary, ("dose",), vocabulary, code, concept_id,
                             ("RxNorm", "RxNorm Extension"))
        if declared is None:
            undeclared.add(vocabulary, code)
            continue
        if record["person_id"] not in persons:
            orphans += 1
            continue
        _, declared_code = declared
        start = _when(record["drug_exposure_start_datetime"], record["drug_exposure_start_date"])
        duration = _duration(record, start, position)
        route_id = record["route_concept_id"]
        route = "" if _missing(route_id) else str(int(route_id))
        if route == "0":
            default = dictionary.doses[dictionary.lookup("dose", declared_code)].route
            repairs.add("unmapped-route", position, pseudonyms(str(record["person_id"])),
                        f"route_concept_id 0 (unmapped); the dictionary's route {default!r} is "
                        "used")
            route = ""
        intravenous = route == str(INTRAVENOUS_ROUTE) or (
            route == "" and dictionary.doses[dictionary.lookup("dose", declared_code)].route
            in ("iv", "infusion"))
        rows.append({"position": position, "subject": str(record["person_id"]), "kind": "dose",
                     "code": declared_code, "value": _number(record["quantity"]),
                     "unit": record["dose_unit_source_value"] or "", "time": start,
                     "route": route,
                     # an oral exposure's end is when its supply ends, not an infusion's
                     "duration": duration if intravenous else 0.0})
    undeclared.report(repairs)
    if orphans:
        repairs.add("no-person", "drug_exposure", "",
                    f"{orphans} drug exposure row(s) belong to a person_id without a person "
                    "row; dropped")
    return rows


def _duration(record, start, position) -> float:
    """Hours from start to end: 0 when the end is known to the day only and falls on or after
    the start's day; ValueDataError when the exposure ends before it starts."""
    end_datetime, end_date = (record["drug_exposure_end_datetime"],
                              record["drug_exposure_end_date"])
    if start is None:
        return 0.0  # ingest reports the missing time
    if not _missing(end_datetime) and not _missing(record["drug_exposure_start_datetime"]):
        hours = (pd.Timestamp(end_datetime) - start).total_seconds() / 3600.0
        if hours < 0:
            raise ValueDataError(f"{position}: the drug exposure ends {-hours:g} h before it "
                                 "starts")
        return hours
    end = _when(end_datetime, end_date)
    if end is not None and end.normalize() < start.normalize():
        raise ValueDataError(f"{position}: the drug exposure ends on a day before it starts")
    return 0.0


def _person_rows(records, dictionary, pseudonyms, repairs) -> tuple[list[dict], set]:
    persons, rows = set(), []
    want_sex = "sex" in dictionary.covariates
    want_age = "age" in dictionary.covariates
    for number, record in enumerate(records, start=1):
        position = f"person row {number}"
        person = record["person_id"]
        if _missing(person):
            raise SchemaError(f"{position}: no person_id")
        if person in persons:
            raise SchemaError(f"{position}: a person_id is given twice in the person table")
        persons.add(person)
        subject = str(person)
        if want_sex:
            gender = record["gender_concept_id"]
            value = "" if _missing(gender) or gender == 0 else str(int(gender))
            rows.append({"position": position, "subject": subject, "kind": "covariate",
                         "code": "sex", "value": value, "unit": "", "time": None,
                         "route": "", "duration": 0.0})
        if want_age:
            born = _birth_date(record, position, pseudonyms(subject), repairs)
            if born is not None:
                rows.append({"position": position, "subject": subject, "kind": "covariate",
                             "code": BIRTH_DATE, "value": born, "unit": "", "time": None,
                             "route": "", "duration": 0.0})
    return rows, persons


def _birth_date(record, position, subject, repairs) -> str | None:
    """The birth date-time, else the date from year/month/day of birth (a missing day is
    taken as the 15th, a missing month as 1 July, with a warning); None without a year."""
    if not _missing(record["birth_datetime"]):
        return pd.Timestamp(record["birth_datetime"]).isoformat()
    year, month, day = (record["year_of_birth"], record["month_of_birth"],
                        record["day_of_birth"])
    if _missing(year):
        return None  # ingest: no age, a warning
    assumed = None
    if _missing(month):
        month, day, assumed = 7, 1, "year only; 1 July (mid-year) is assumed"
    elif _missing(day):
        day, assumed = 15, "month only; the 15th (mid-month) is assumed"
    try:
        born = datetime.date(int(year), int(month), int(day))
    except (TypeError, ValueError):
        raise ValueDataError(f"{position}: year/month/day of birth do not form a date") \
            from None
    if assumed:
        repairs.add("partial-birth-date", position, subject, f"the birth date is known to the "
                    f"{assumed}")
    return born.isoformat()


def read_omop(database, dictionary: DataDictionary, pseudonyms: Pseudonymizer, *,
              reference: str = "first_record") -> PatientData:
    """Ingest an OMOP CDM v5.4 database: a DuckDB file path (opened read-only, no extension
    is installed or loaded) or an open DB-API connection (duckdb, psycopg). See the module
    docstring for what is read and what is refused."""
    connection, opened = _connect(database)
    # a psycopg connection outside a transaction gets one from our first query: end it after
    info = getattr(connection, "info", None)
    idle_before = getattr(info, "transaction_status", None) == 0 and not opened
    repairs = Repairs()
    try:
        _probe_tables(connection)
        measurements = _query(connection, MEASUREMENT_SQL, "the measurement table")
        drugs = _query(connection, DRUG_EXPOSURE_SQL, "the drug_exposure table")
        people = _query(connection, PERSON_SQL, "the person table")
    finally:
        if opened:
            connection.close()
        elif idle_before and getattr(info, "transaction_status", 0) != 0:
            connection.rollback()
    person_rows, persons = _person_rows(people, dictionary, pseudonyms, repairs)
    rows = [*_measurement_rows(measurements, dictionary, persons, repairs),
            *_drug_rows(drugs, dictionary, persons, pseudonyms, repairs), *person_rows]
    if not rows:
        raise SchemaError("OMOP database: no measurement, drug exposure or person the data "
                          "dictionary declares")
    return ingest(pd.DataFrame(rows, columns=["position", "subject", "kind", "code", "time",
                                              "value", "unit", "route", "duration"]),
                  dictionary, pseudonyms, source="OMOP CDM", time_unit="h",
                  reference=reference, repairs=repairs)
