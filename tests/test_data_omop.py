"""OMOP CDM ingestion (vht.data.read_omop): the Theoph database gives calibration's records, the
same SQL text gives the same records on PostgreSQL, no DuckDB extension is installed or loaded,
the OMOP bad-input corpus (each malformed database raises its error class with a message
fragment, or is repaired with a logged warning), and no identifying value of the database
reaches a message, a warning, the repairs or the HDF5 file.

The PostgreSQL test runs on the server named by the libpq connection string
``VHT_TEST_POSTGRES_DSN`` (.ci/run starts one); without it the test is skipped, unless
``VHT_REQUIRE_POSTGRES=1``, when it fails.
"""

from __future__ import annotations

import dataclasses
import datetime
import logging
import math
import os
import shutil
import uuid
from collections.abc import Callable
from pathlib import Path

import duckdb
import numpy as np
import pandas as pd
import pytest

from calibration import theoph_records, validate_records
from vht import data
from vht.data import _omop

HERE = Path(__file__).parent / "data" / "ingest"
DATABASE = HERE / "omop" / "theoph_omop.duckdb"
DDL = Path(data.__file__).parent / "omop" / "cdm_tables.sql"
KEY = data.Pseudonymizer("omop-test-key-0123456789")
DICTIONARY = data.DataDictionary.from_toml(HERE / "dictionary.toml")
WITH_AGE_AND_SEX = dataclasses.replace(DICTIONARY, covariates={
    **DICTIONARY.covariates, "age": data.Covariate("year", valid_range=(0, 130)),
    "sex": data.Covariate()})
PERSON_ID_BASE = 731000  # person_id = 731000 + Theoph subject (make_theoph_omop.py)
N_CONCENTRATIONS = 132


def _subject(theoph_subject) -> str:
    return KEY(str(PERSON_ID_BASE + int(theoph_subject)))


def _executed() -> list[str]:
    return [_omop.TABLE_PROBE_SQL.format(table=t) for t in _omop.TABLES] + list(_omop.SQL)


def _dosed(subject: int) -> datetime.datetime:
    """The dose, each subject's first record: 9 days and 37 min later per subject."""
    return datetime.datetime(2021, 3, 1, 8) + (subject - 1) * datetime.timedelta(days=9,
                                                                              minutes=37)


def _years(born: datetime.datetime, at: datetime.datetime) -> float:
    return (at - born).total_seconds() / (365.25 * 86400)


class Recording:
    """A DB-API connection that records the SQL run on its cursors."""

    def __init__(self, connection):
        self.connection = connection
        self.sql: list[str] = []

    def cursor(self):
        return _RecordingCursor(self.connection.cursor(), self.sql)

    def __getattr__(self, name):
        return getattr(self.connection, name)


class _RecordingCursor:
    def __init__(self, cursor, sql):
        self._cursor, self._sql = cursor, sql

    def execute(self, sql, *args):
        self._sql.append(sql)
        return self._cursor.execute(sql, *args)

    def __getattr__(self, name):
        return getattr(self._cursor, name)


# -- the Theoph database ----------------------------------------------------------------------

def test_theoph_omop_matches_the_calibration_records():
    ingested = data.read_omop(DATABASE, DICTIONARY, KEY)
    assert ingested.repairs == [] and ingested.source == "OMOP CDM"
    records = validate_records(ingested.records)
    reference = validate_records(theoph_records().assign(
        subject=lambda t: t["subject"].map(_subject)))
    assert records["subject"].nunique() == 12
    assert list(records["subject"]) == list(reference["subject"])
    for column in ("time", "value", "dose_amount", "duration", "weight"):
        np.testing.assert_allclose(records[column], reference[column], rtol=0, atol=1e-9)
    for column in ("variable", "route"):
        assert list(records[column]) == list(reference[column])
    assert set(records["unit"]) == {"mg/L", "mg"}
    assert ingested.covariates.loc[_subject(1), "weight"] == 79.6


def test_read_omop_runs_the_module_sql_text():
    connection = Recording(duckdb.connect(str(DATABASE), read_only=True))
    try:
        data.read_omop(connection, DICTIONARY, KEY)
    finally:
        connection.close()
    assert connection.sql == _executed()


def test_age_and_sex_from_the_person_table():
    ingested = data.read_omop(DATABASE, WITH_AGE_AND_SEX, KEY)
    assert ingested.repairs == []
    covariates = ingested.covariates
    for subject in range(1, 13):
        born = datetime.date(1955, 1, 1) + datetime.timedelta(days=611 * subject)
        born = datetime.datetime.combine(born, datetime.time(6, 0) if subject % 2 else
                                         datetime.time(0, 0))
        assert covariates.loc[_subject(subject), "age"] == pytest.approx(
            _years(born, _dosed(subject)), abs=1e-9)
        assert covariates.loc[_subject(subject), "sex"] == ("male" if subject % 2 else "female")
    assert not any(pd.api.types.is_datetime64_any_dtype(t) for t in covariates.dtypes)


def test_an_intravenous_exposure_that_lasts_is_an_infusion(tmp_path):
    dictionary = dataclasses.replace(DICTIONARY, doses={
        "theophylline": data.Dose("iv", "mg", ("10438",))})
    ingested = _read(tmp_path, [
        "UPDATE drug_exposure SET route_concept_id = 4171047, drug_exposure_end_datetime = "
        "drug_exposure_start_datetime + INTERVAL 30 MINUTE WHERE drug_exposure_id = 1",
        "UPDATE drug_exposure SET route_concept_id = 4171047 WHERE drug_exposure_id = 2"],
        dictionary)
    doses = ingested.records.dropna(subset=["dose_amount"]).set_index("subject")
    assert doses.loc[_subject(1), "route"] == "infusion"
    assert doses.loc[_subject(1), "duration"] == pytest.approx(0.5)
    assert doses.loc[_subject(2), "route"] == "iv" and doses.loc[_subject(2), "duration"] == 0
    assert doses.loc[_subject(3), "route"] == "oral"


# -- PostgreSQL: the same SQL text, the same records ------------------------------------------

def _postgres_dsn() -> str:
    dsn = os.environ.get("VHT_TEST_POSTGRES_DSN", "").strip()
    required = os.environ.get("VHT_REQUIRE_POSTGRES") == "1"
    if not dsn:
        message = ("VHT_TEST_POSTGRES_DSN is not set: give a libpq connection string to a "
                   "PostgreSQL server (user may CREATE SCHEMA) to run read_omop's SQL there")
        if required:
            pytest.fail(f"VHT_REQUIRE_POSTGRES=1 but {message}")
        pytest.skip(message)
    return dsn


def _copy_to_postgres(connection, schema: str) -> None:
    """The DuckDB Theoph tables into a fresh schema, through the shipped DDL and COPY."""
    connection.execute(f'CREATE SCHEMA "{schema}"')
    connection.execute(f'SET search_path TO "{schema}"')
    connection.execute(DDL.read_text())
    with duckdb.connect(str(DATABASE), read_only=True) as source:
        for table in _omop.TABLES:
            result = source.execute(f"SELECT * FROM {table}")
            columns = ", ".join(d[0] for d in result.description)
            with connection.cursor() as cursor, cursor.copy(
                    f"COPY {table} ({columns}) FROM STDIN") as copy:
                for row in result.fetchall():
                    copy.write_row(row)
    connection.commit()


def test_postgres_gives_the_duckdb_records_with_the_same_sql():
    psycopg = pytest.importorskip("psycopg")
    dsn = _postgres_dsn()
    try:
        connection = psycopg.connect(dsn, connect_timeout=10)
    except psycopg.OperationalError as error:
        message = f"the PostgreSQL server of VHT_TEST_POSTGRES_DSN is unreachable ({error})"
        if os.environ.get("VHT_REQUIRE_POSTGRES") == "1":
            pytest.fail(message)
        pytest.skip(message)
    schema = f"vht_omop_{uuid.uuid4().hex[:12]}"
    try:
        _copy_to_postgres(connection, schema)
        recording = Recording(connection)
        from_postgres = data.read_omop(recording, WITH_AGE_AND_SEX, KEY)
        assert recording.sql == _executed()
        assert connection.info.transaction_status == psycopg.pq.TransactionStatus.IDLE
        duck = Recording(duckdb.connect(str(DATABASE), read_only=True))
        from_duckdb = data.read_omop(duck, WITH_AGE_AND_SEX, KEY)
        duck.close()
        assert duck.sql == recording.sql  # the identical text on both engines
        pd.testing.assert_frame_equal(from_postgres.records, from_duckdb.records)
        pd.testing.assert_frame_equal(from_postgres.covariates, from_duckdb.covariates)
        assert from_postgres.repairs == from_duckdb.repairs == []
    finally:
        connection.rollback()
        connection.execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')
        connection.commit()
        connection.close()


# -- no DuckDB extension ----------------------------------------------------------------------

class _Watched:
    """A DuckDB connection whose settings and extensions are read when opened and closed."""

    def __init__(self, connection, seen):
        self.connection, self.seen = connection, seen
        seen.append(self._state())

    def _state(self):
        settings = dict(self.connection.execute(
            "SELECT name, value FROM duckdb_settings() WHERE name IN "
            "('autoinstall_known_extensions', 'autoload_known_extensions', 'access_mode')"
        ).fetchall())
        extensions = self.connection.execute(
            "SELECT extension_name, install_mode FROM duckdb_extensions() "
            "WHERE installed OR loaded").fetchall()
        return settings, extensions

    def cursor(self):
        return self.connection.cursor()

    def close(self):
        self.seen.append(self._state())
        self.connection.close()


def test_no_duckdb_extension_is_installed_or_loaded(monkeypatch, tmp_path):
    # an empty extension directory: anything installed during the read would land here
    monkeypatch.setenv("HOME", str(tmp_path))
    real_connect, seen, configs = duckdb.connect, [], []

    def connect(*args, **kwargs):
        configs.append(kwargs.get("config"))
        return _Watched(real_connect(*args, **kwargs), seen)

    monkeypatch.setattr(duckdb, "connect", connect)
    data.read_omop(DATABASE, WITH_AGE_AND_SEX, KEY)
    assert configs == [{"autoinstall_known_extensions": False,
                        "autoload_known_extensions": False}]
    assert len(seen) == 2  # opened once, read, closed
    for settings, extensions in seen:
        assert settings == {"autoinstall_known_extensions": "false",
                            "autoload_known_extensions": "false", "access_mode": "read_only"}
        # only what is compiled into the duckdb wheel: nothing from the network or disk
        assert {mode for _, mode in extensions} <= {"STATICALLY_LINKED"}, extensions
    assert seen[0] == seen[1]
    assert not list(tmp_path.rglob("*.duckdb_extension"))


# -- the bad-input corpus ---------------------------------------------------------------------

@dataclasses.dataclass(frozen=True)
class Raises:
    error: type
    fragment: str


@dataclasses.dataclass(frozen=True)
class Repaired:
    rule: str
    check: Callable[[data.PatientData], bool]


def _read(tmp_path, statements, dictionary=DICTIONARY) -> data.PatientData:
    path = tmp_path / "omop.duckdb"
    shutil.copy(DATABASE, path)
    with duckdb.connect(str(path)) as connection:
        for statement in statements:
            connection.execute(statement)
    return data.read_omop(path, dictionary, KEY)


def _concentrations(ingested, subject=None):
    records = ingested.records
    rows = records[records["variable"] == "drug.concentration"]
    return rows if subject is None else rows[rows["subject"] == _subject(subject)]


def _doses(ingested):
    return ingested.records.dropna(subset=["dose_amount"])


# the Theoph rows: measurement 1 is subject 1's weight, 2..12 its concentrations (2 at the
# dose), 13 subject 2's weight, ...; drug exposure 1 is subject 1's dose
CASES = {
    # concepts
    "unmapped measurement concept 0": (
        ["UPDATE measurement SET measurement_concept_id = 0 WHERE measurement_id = 5"],
        Raises(data.CodeError, "measurement row 5: measurement_concept_id 0 is unmapped")),
    "measurement concept absent from the concept table": (
        ["UPDATE measurement SET measurement_concept_id = 999999999 WHERE measurement_id = 5"],
        Raises(data.CodeError, "999999999 is unmapped \\(0, or not in the concept table\\)")),
    "unmapped drug concept 0": (
        ["UPDATE drug_exposure SET drug_concept_id = 0 WHERE drug_exposure_id = 3"],
        Raises(data.CodeError, "drug exposure row 3: drug_concept_id 0 is unmapped")),
    "a LOINC measurement the dictionary does not declare": (
        ["UPDATE measurement SET measurement_concept_id = 3004501 WHERE measurement_id = 5"],
        Repaired("undeclared-concept",
                 lambda d: len(_concentrations(d)) == N_CONCENTRATIONS - 1)),
    # units
    "unit concept absent from the concept table": (
        ["UPDATE measurement SET unit_concept_id = 123456 WHERE measurement_id = 6"],
        Raises(data.UnitError, "measurement row 6: unit_concept_id 123456 is not in the "
                               "concept table")),
    "unit concept not UCUM": (
        ["UPDATE measurement SET unit_concept_id = 4132161 WHERE measurement_id = 6"],
        Raises(data.UnitError, "unit concept 4132161 is a SNOMED concept, not UCUM")),
    "unit concept missing (NULL)": (
        ["UPDATE measurement SET unit_concept_id = NULL WHERE measurement_id = 6"],
        Raises(data.UnitError, "theophylline has no unit")),
    "unit concept 0": (
        ["UPDATE measurement SET unit_concept_id = 0 WHERE measurement_id = 6"],
        Raises(data.UnitError, "has no unit")),
    "unit of the wrong dimension": (
        ["UPDATE measurement SET unit_concept_id = 8876 WHERE measurement_id = 6"],
        Raises(data.UnitError, "does not convert")),
    "concentration in mmol/L (converted through the molar mass)": (
        ["UPDATE measurement SET unit_concept_id = 8753, value_as_number = 0.01 "
         "WHERE measurement_id = 6"],
        Repaired("", lambda d: abs(_concentrations(d, 1)["value"].iloc[4] - 1.8017) < 1e-9)),
    "dose unit text that is not UCUM": (
        ["UPDATE drug_exposure SET dose_unit_source_value = 'tablets' "
         "WHERE drug_exposure_id = 2"],
        Raises(data.UnitError, "unknown unit of 7 characters")),
    "dose unit written mcg": (
        ["UPDATE drug_exposure SET dose_unit_source_value = 'mcg' WHERE drug_exposure_id = 2"],
        Raises(data.UnitError, "write 'ug'")),
    "identifying text in the dose unit": (
        ["UPDATE drug_exposure SET dose_unit_source_value = 'MRN-CANARY-2' "
         "WHERE drug_exposure_id = 2"],
        Raises(data.UnitError, "not a UCUM code vht reads: an unknown unit")),
    "no dose unit": (
        ["UPDATE drug_exposure SET dose_unit_source_value = NULL WHERE drug_exposure_id = 2"],
        Raises(data.UnitError, "has no unit")),
    # values
    "NULL value_as_number": (
        ["UPDATE measurement SET value_as_number = NULL WHERE measurement_id = 7"],
        Repaired("missing-value", lambda d: len(_concentrations(d, 1)) == 10)),
    "negative concentration": (
        ["UPDATE measurement SET value_as_number = -0.4 WHERE measurement_id = 7"],
        Raises(data.ValueDataError, "outside its valid range \\[0, 200\\] mg/L")),
    "impossible weight": (
        ["UPDATE measurement SET value_as_number = 790 WHERE measurement_id = 1"],
        Raises(data.ValueDataError, "weight = 790 kg lies outside")),
    "NULL weight": (
        ["UPDATE measurement SET value_as_number = NULL WHERE measurement_id = 1"],
        Repaired("missing-covariate",
                 lambda d: math.isnan(d.covariates.loc[_subject(1), "weight"]))),
    "no dose quantity": (
        ["UPDATE drug_exposure SET quantity = NULL WHERE drug_exposure_id = 4"],
        Raises(data.ValueDataError, "needs a finite amount")),
    "negative dose quantity": (
        ["UPDATE drug_exposure SET quantity = -320 WHERE drug_exposure_id = 4"],
        Raises(data.ValueDataError, "negative")),
    # persons
    "a measurement of a person_id without a person row": (
        ["UPDATE measurement SET person_id = 999 WHERE measurement_id = 7"],
        Repaired("no-person", lambda d: len(_concentrations(d)) == N_CONCENTRATIONS - 1)),
    "a drug exposure of a person_id without a person row": (
        ["UPDATE drug_exposure SET person_id = 999 WHERE drug_exposure_id = 1"],
        Repaired("no-person", lambda d: len(_doses(d)) == 11)),
    "a person given twice": (
        ["INSERT INTO person SELECT * FROM person WHERE person_id = 731003"],
        Raises(data.SchemaError, "a person_id is given twice")),
    # times and drug exposures
    "drug exposure ending before it starts": (
        ["UPDATE drug_exposure SET drug_exposure_end_datetime = "
         "drug_exposure_start_datetime - INTERVAL 2 HOUR WHERE drug_exposure_id = 1"],
        Raises(data.ValueDataError, "drug exposure row 1: the drug exposure ends 2 h before")),
    "drug exposure ending on a day before it starts": (
        ["UPDATE drug_exposure SET drug_exposure_end_datetime = NULL, "
         "drug_exposure_end_date = drug_exposure_start_date - INTERVAL 1 DAY "
         "WHERE drug_exposure_id = 1"],
        Raises(data.ValueDataError, "ends on a day before it starts")),
    "an oral exposure whose supply lasts a month": (
        ["UPDATE drug_exposure SET drug_exposure_end_datetime = NULL, "
         "drug_exposure_end_date = drug_exposure_start_date + INTERVAL 30 DAY"],
        Repaired("", lambda d: set(_doses(d)["duration"]) == {0.0})),
    "measurement with its date only (midnight: it becomes the first record)": (
        ["UPDATE measurement SET measurement_datetime = NULL WHERE measurement_id = 6"],
        Repaired("unsorted", lambda d: _concentrations(d, 1)["time"].min() == 0.0
                 and _doses(d).set_index("subject").loc[_subject(1), "time"] == 8.0)),
    "conflicting measurements at one time": (
        ["UPDATE measurement SET measurement_datetime = measurement_datetime - INTERVAL 15 MINUTE"
         " WHERE measurement_id = 3"],
        Raises(data.TimeError, "given twice with different values")),
    "duplicated measurement row": (
        ["INSERT INTO measurement SELECT * FROM measurement WHERE measurement_id = 9"],
        Repaired("duplicate", lambda d: len(_concentrations(d)) == N_CONCENTRATIONS)),
    # routes
    "unknown route concept (intramuscular)": (
        ["UPDATE drug_exposure SET route_concept_id = 4302612 WHERE drug_exposure_id = 5"],
        Raises(data.CodeError, "route \\(text of 7 characters\\) is not one vht knows")),
    "route concept 0": (
        ["UPDATE drug_exposure SET route_concept_id = 0 WHERE drug_exposure_id = 5"],
        Repaired("unmapped-route", lambda d: set(_doses(d)["route"]) == {"oral"})),
    # structure
    "missing table": (["DROP TABLE drug_exposure"],
                      Raises(data.SchemaError, "table 'drug_exposure' is missing")),
    "missing concept table": (["DROP TABLE concept"],
                              Raises(data.SchemaError, "table 'concept' is missing")),
    "missing column": (["ALTER TABLE measurement DROP COLUMN value_as_number"],
                       Raises(data.SchemaError, "reading the measurement table failed")),
    "no declared records": (["DELETE FROM measurement", "DELETE FROM drug_exposure"],
                            Raises(data.SchemaError, "no measurement, drug exposure or person")),
}

AGE_SEX_CASES = {
    "gender concept 0": (
        ["UPDATE person SET gender_concept_id = 0 WHERE person_id = 731004"],
        Repaired("missing-covariate", lambda d: d.covariates.loc[_subject(4), "sex"] == "")),
    "unknown gender concept": (
        ["UPDATE person SET gender_concept_id = 4215271 WHERE person_id = 731004"],
        Raises(data.CodeError, "sex code is not one of")),
    "birth year only": (
        ["UPDATE person SET birth_datetime = NULL, month_of_birth = NULL, day_of_birth = NULL "
         "WHERE person_id = 731004"],
        Repaired("partial-birth-date", lambda d: d.covariates.loc[_subject(4), "age"]
                 == pytest.approx(_years(datetime.datetime(1961, 7, 1), _dosed(4))))),
    "impossible birth date": (
        ["UPDATE person SET birth_datetime = NULL, month_of_birth = 14 WHERE person_id = 731004"],
        Raises(data.ValueDataError, "do not form a date")),
    "birth after the first record": (
        ["UPDATE person SET birth_datetime = TIMESTAMP '2030-01-01 00:00:00' "
         "WHERE person_id = 731003"],
        Raises(data.ValueDataError, "birth date follows the first record")),
}

ALL_CASES = {**{k: (s, o, DICTIONARY) for k, (s, o) in CASES.items()},
             **{k: (s, o, WITH_AGE_AND_SEX) for k, (s, o) in AGE_SEX_CASES.items()}}


def test_the_corpus_is_large_enough():
    assert len(ALL_CASES) >= 30


@pytest.mark.parametrize("name", list(ALL_CASES))
def test_bad_input(name, tmp_path, caplog):
    statements, outcome, dictionary = ALL_CASES[name]
    if isinstance(outcome, Raises):
        with pytest.raises(outcome.error, match=outcome.fragment) as caught:
            _read(tmp_path, statements, dictionary)
        _assert_anonymous([str(caught.value), caught.value.redacted])
        return
    with caplog.at_level(logging.WARNING, logger="vht.data"):
        ingested = _read(tmp_path, statements, dictionary)
    _assert_anonymous([*caplog.messages, *map(str, ingested.repairs)])
    rules = [r.rule for r in ingested.repairs]
    if outcome.rule:
        assert outcome.rule in rules, rules
        assert any(outcome.rule in message for message in caplog.messages)
    else:
        assert rules == []
    assert outcome.check(ingested)


# -- nothing identifying leaves ---------------------------------------------------------------

# the canaries of make_theoph_omop.py, the raw person_ids (7310xx), the dosing dates and the
# birth years (1956..1975)
IDENTIFYING = ["CANARY", str(PERSON_ID_BASE // 100), "2021-",
               *(f"{year}-" for year in range(1955, 1976))]


def _assert_anonymous(texts) -> None:
    for text in texts:
        assert not any(word in text for word in IDENTIFYING), text


def test_no_identifying_value_reaches_messages_repairs_or_the_hdf5_file(tmp_path, caplog):
    """The corpus checks every message and repair of its cases; here the clean read (with
    age and sex, so that birth dates are read), its warnings and its HDF5 file."""
    with caplog.at_level(logging.DEBUG, logger="vht.data"):
        ingested = data.read_omop(DATABASE, WITH_AGE_AND_SEX, KEY)
        with pytest.raises(data.UnitError) as caught:
            _read(tmp_path, ["UPDATE drug_exposure SET dose_unit_source_value = "
                             "'MRN-CANARY-7 1960-01-02' WHERE drug_exposure_id = 7"])
    _assert_anonymous([*caplog.messages, *map(str, ingested.repairs), str(caught.value),
                       caught.value.redacted])
    _assert_anonymous(map(str, ingested.records.to_numpy().ravel()))
    _assert_anonymous(map(str, ingested.covariates.reset_index().to_numpy().ravel()))
    path = ingested.to_hdf5(tmp_path / "theoph.h5")
    content = path.read_bytes()
    for word in IDENTIFYING:
        assert word.encode() not in content, word
    assert _subject(1).encode() in content  # the pseudonyms are there (the check can fail)


def test_a_measurement_declared_by_its_omop_concept_id(tmp_path):
    dictionary = dataclasses.replace(DICTIONARY, observations={
        "theophylline": dataclasses.replace(DICTIONARY.observations["theophylline"],
                                            codes=("2000000001",))})
    ingested = _read(tmp_path, ["UPDATE concept SET concept_code = 'none' "
                                "WHERE concept_id = 2000000001"], dictionary)
    assert ingested.repairs == [] and len(_concentrations(ingested)) == N_CONCENTRATIONS
