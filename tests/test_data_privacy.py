"""Privacy of ingested data: keyed pseudonyms, keys kept apart from the data, owner-only
files, and a canary test that injects fake names and record numbers (into identifier
columns, identifying columns and records that fail validation) and finds none of them in any
error message, log line, repair, HDF5 file or its attributes."""

from __future__ import annotations

import logging
import re

import pytest
from test_data_ingest import DICTIONARY, DOSE_HEADER, NONMEM_MAPPING

from vht import data

KEY = data.Pseudonymizer("privacy-test-key-0123456789")
CANARIES = ["Canary McTestface", "Zelda Quux", "MRN-778812", "PAT-00913", "1974-12-25"]


def test_pseudonyms_are_keyed_stable_and_unguessable():
    other = data.Pseudonymizer("another-key-of-enough-length")
    assert KEY("Zelda Quux") == KEY(" Zelda Quux ") == data.Pseudonymizer(
        "privacy-test-key-0123456789")("Zelda Quux")
    assert KEY("Zelda Quux") != other("Zelda Quux")
    assert re.fullmatch(r"s-[0-9a-f]{16}", KEY("Zelda Quux"))
    assert "privacy-test-key" not in repr(KEY)


def test_key_sources_and_refusals(tmp_path, monkeypatch):
    with pytest.raises(data.PrivacyError, match="at least 16 bytes"):
        data.Pseudonymizer("short")
    monkeypatch.delenv("VHT_PSEUDONYM_KEY", raising=False)
    with pytest.raises(data.PrivacyError, match="set the environment variable"):
        data.Pseudonymizer.from_environment()
    monkeypatch.setenv("VHT_PSEUDONYM_KEY", "privacy-test-key-0123456789")
    assert data.Pseudonymizer.from_environment()("x") == KEY("x")
    key_file = tmp_path / "keys" / "study.key"
    key_file.parent.mkdir()
    key_file.write_text("privacy-test-key-0123456789\n")
    from_file = data.Pseudonymizer.resolve(key_file)
    assert from_file("x") == KEY("x")
    from_file.check_not_inside(tmp_path / "elsewhere")
    with pytest.raises(data.PrivacyError, match="inside .* with the data"):
        from_file.check_not_inside(tmp_path / "keys")
    with pytest.raises(data.PrivacyError, match="does not exist"):
        data.Pseudonymizer.from_file(tmp_path / "missing.key")
    with pytest.raises(data.PrivacyError, match="empty subject identifier"):
        KEY("  ")


def test_private_files_are_owner_only(tmp_path):
    with data.private_open(tmp_path / "a.txt") as handle:
        handle.write("x")
    assert (tmp_path / "a.txt").stat().st_mode & 0o777 == 0o600
    (tmp_path / "b.txt").write_text("y")
    (tmp_path / "b.txt").chmod(0o644)
    with data.private_open(tmp_path / "b.txt") as handle:  # replacing keeps no wider mode
        handle.write("z")
    assert (tmp_path / "b.txt").stat().st_mode & 0o777 == 0o600
    with data.private_umask():
        (tmp_path / "c.txt").write_text("w")
    assert (tmp_path / "c.txt").stat().st_mode & 0o077 == 0


def _leaks(text: str) -> list[str]:
    return [c for c in CANARIES if c.lower() in text.lower()]


def _canary_inputs(tmp_path):
    observations = tmp_path / "obs.csv"
    observations.write_text("\n".join([
        "subject,time,variable,value,unit,Wt,patient_name,MRN,date_of_birth,notes",
        "Canary McTestface,0,glucose,120,mg/dL,70,Canary McTestface,MRN-778812,1974-12-25,"
        "called Zelda Quux",
        "Canary McTestface,1,glucose,140,mg/dL,70,Canary McTestface,MRN-778812,1974-12-25,",
        "PAT-00913,0,conc,1.5,mg/L,80,Zelda Quux,MRN-778812,1974-12-25,",
        "PAT-00913,2,conc,3.0,mg/L,80,Zelda Quux,MRN-778812,1974-12-25,"]) + "\n")
    doses = tmp_path / "doses.csv"
    doses.write_text("\n".join([DOSE_HEADER, "PAT-00913,0,Theophylline,320,mg,oral,0"]) + "\n")
    return observations, doses


# records that fail validation, with identifiers in every place a message might quote
FAILING = {
    "name in the value column": "Canary McTestface,1,glucose,Zelda Quux,mg/dL,70",
    "record number in the time column": "PAT-00913,MRN-778812,conc,1.5,mg/L,80",
    "name as the unit": "PAT-00913,3,conc,1.5,Zelda Quux,80",
    "record number as the weight": "PAT-00913,3,conc,1.5,mg/L,MRN-778812",
    "impossible value of a named subject": "Canary McTestface,2,glucose,5000,mg/dL,70",
    "conflicting duplicate of a named subject": "Canary McTestface,1,glucose,150,mg/dL,70",
}


@pytest.mark.parametrize("case", list(FAILING))
def test_canary_in_failing_records(case, tmp_path, caplog):
    observations = tmp_path / "obs.csv"
    observations.write_text("\n".join([
        "subject,time,variable,value,unit,Wt",
        "Canary McTestface,0,glucose,120,mg/dL,70", "Canary McTestface,1,glucose,140,mg/dL,70",
        "PAT-00913,0,conc,1.5,mg/L,80", FAILING[case]]) + "\n")
    with caplog.at_level(logging.DEBUG, logger="vht.data"), \
            pytest.raises(data.DataError) as error:
        data.read_tidy_csv(observations, DICTIONARY, KEY)
    assert _leaks(str(error.value)) == [] and _leaks(caplog.text) == []


def test_canary_in_nonmem_failing_records(tmp_path, caplog):
    path = tmp_path / "nm.csv"
    path.write_text("ID,TIME,DV,AMT,EVID,CMT,MDV,RATE,WT,NAME\n"
                    "PAT-00913,0,.,320,1,1,1,0,70,Zelda Quux\n"
                    "PAT-00913,1,Zelda Quux,.,0,2,0,0,70,Zelda Quux\n")
    with caplog.at_level(logging.DEBUG, logger="vht.data"), \
            pytest.raises(data.DataError) as error:
        data.read_nonmem(path, DICTIONARY, KEY, **NONMEM_MAPPING)
    assert _leaks(str(error.value)) == [] and _leaks(caplog.text) == []


def test_canary_in_accepted_records_reaches_no_output(tmp_path, caplog):
    observations, doses = _canary_inputs(tmp_path)
    with caplog.at_level(logging.DEBUG, logger="vht.data"):
        ingested = data.read_tidy_csv(observations, DICTIONARY, KEY, doses=doses)
    rules = {r.rule for r in ingested.repairs}
    assert rules == {"identifying-column", "undeclared-column"}
    assert set(ingested.records.columns) == {*data.RECORD_COLUMNS, "weight"}
    path = ingested.to_hdf5(tmp_path / "out.h5")
    assert path.stat().st_mode & 0o777 == 0o600
    blob = path.read_bytes().decode("latin-1")
    assert _leaks(blob) == []
    assert _leaks(caplog.text) == []
    assert _leaks(" ".join(str(r) for r in ingested.repairs)) == []
    assert _leaks(ingested.records.to_csv()) == [] and _leaks(ingested.covariates.to_csv()) == []
    # the pseudonyms are there instead, and the HDF5 attributes hold no identifier
    import h5py
    with h5py.File(path) as handle:
        assert KEY("PAT-00913") in set(handle["records/subject"].asstr()[()])
        attributes = " ".join(f"{k}={v}" for k, v in handle.attrs.items())
    assert _leaks(attributes) == []
