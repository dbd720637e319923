"""SBML Test Suite conformance: all 687 ODE cases, in batches that each compile one program
(``experiments/sbml/tape.py``), every case under its own settings and tolerances.

The pass count of each batch must not drop below the one recorded in
``tests/data/sbml_test_suite/recorded.json`` (written by
``python -m experiments.sbml.conformance --write --record``). A case that newly fails names
itself in the assertion message.
"""

import json
import tempfile
from functools import cache
from pathlib import Path

import pytest

from experiments.sbml import conformance as suite

RECORDED = json.loads((Path(__file__).parent / "data" / "sbml_test_suite" /
                       "recorded.json").read_text())
BATCHES = RECORDED["batches"]


@cache
def _cases() -> Path:
    return suite.unpack(Path(tempfile.mkdtemp(prefix="vht_sbml_suite_")))


@pytest.mark.parametrize("batch", range(len(BATCHES)), ids=lambda b: f"batch{b}")
def test_sbml_test_suite_batch_passes_at_least_the_recorded_cases(batch, record_property):
    ids = BATCHES[batch]["cases"]
    outcomes = suite.solve_batch(_cases(), ids)
    passed = {c["case"] for c in outcomes if c["outcome"] == "pass"}
    record_property(f"sbml_suite_batch{batch}_passed", f"{len(passed)} of {len(ids)}")
    lost = sorted(set(BATCHES[batch]["passed"]) - passed)
    details = {c["case"]: c.get("reason") or c.get("variable") for c in outcomes
               if c["case"] in lost}
    assert not lost, f"cases that passed before and fail now: {details}"
    assert len(passed) >= len(BATCHES[batch]["passed"])
