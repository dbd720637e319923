"""UCUM codes into vht's pint registry: the round trip over the test corpus, conversions
against known factors, and the refusals of unknown, ambiguous and malformed codes."""

from __future__ import annotations

import math

import pytest

from vht import data

# every UCUM code the ingestion tests, the FHIR examples and the OMOP concept subset use,
# and the common clinical ones beside them
CORPUS = ["mg/dL", "mmol/L", "umol/L", "nmol/L", "pmol/L", "mg/L", "ug/mL", "ng/mL", "pg/mL",
          "g/L", "g/dL", "mm[Hg]", "cm[H2O]", "kPa", "/min", "/h", "/s", "10*3/uL", "10*6/uL",
          "10*9/L", "10*12/L", "%", "[ppth]", "[ppm]", "kg/m2", "kg", "g", "mg", "ug", "ng",
          "[lb_av]", "[oz_av]", "cm", "m", "mm", "[in_i]", "[ft_i]", "L", "mL", "dL", "uL",
          "mL/min", "L/h", "mL/h", "mL/kg", "mg/kg", "ug/kg/min", "[IU]", "m[IU]/L", "[IU]/h",
          "[IU]/kg", "Cel", "[degF]", "K", "s", "ms", "min", "h", "d", "wk", "mo", "a",
          "kcal", "cal", "J", "W", "mol", "mmol", "1", "mg/(kg.h)", "m2", "s-1"]

# codes that parse to the same unit as a canonical spelling (annotations are the unit one)
EQUIVALENT = {"mL/min/{1.73_m2}": "mL/min", "{beats}/min": "/min", "mg/(kg.h)": "mg/kg/h",
              "s-1": "/s", "10^3/uL": "10*3/uL", "l": "L"}


@pytest.mark.parametrize("code", CORPUS)
def test_every_code_of_the_corpus_round_trips(code):
    parsed = data.parse_ucum(code)
    written = data.ucum_code(parsed.unit, parsed.factor)
    again = data.parse_ucum(written)
    assert again.unit == parsed.unit and math.isclose(again.factor, parsed.factor)
    assert written == EQUIVALENT.get(code, code)


@pytest.mark.parametrize("code, canonical", list(EQUIVALENT.items()))
def test_equivalent_spellings(code, canonical):
    assert data.ucum_code(data.parse_ucum(code).unit, data.parse_ucum(code).factor) == canonical


@pytest.mark.parametrize("value, code, to_unit, molar_mass, expected", [
    (1.0, "mmol/L", "mg/dL", "180.16 g/mol", 18.016),         # glucose, the clinical factor
    (100.0, "mg/dL", "mmol/L", "180.16 g/mol", 100 / 18.016),
    (1.0, "ug/mL", "mg/L", None, 1.0),
    (185.0, "[lb_av]", "kg", None, 185 * 0.45359237),           # pound avoirdupois, exact
    (72.0, "[in_i]", "cm", None, 72 * 2.54),
    (37.0, "Cel", "K", None, 310.15),
    (98.6, "[degF]", "degC", None, 37.0),
    (120.0, "mm[Hg]", "kPa", None, 120 * 0.133322387415),
    (7.5, "10*3/uL", "1/L", None, 7.5e9),
    (5.0, "%", "dimensionless", None, 0.05),
    (1.0, "mo", "day", None, 30.4375),                          # UCUM's mean Julian month
    (1.0, "a", "day", None, 365.25),
    (12.0, "m[IU]/L", "U/L", None, 0.012),
    (1.0, "kcal", "J", None, 4184.0),
])
def test_conversions_against_known_factors(value, code, to_unit, molar_mass, expected):
    assert data.convert(value, code, to_unit, molar_mass) == pytest.approx(expected, rel=1e-9)


@pytest.mark.parametrize("code, fragment", [
    ("blorb", "unknown unit 'blorb'"),
    ("U", "ambiguous"), ("mU/L", "ambiguous"), ("uU/mL", "ambiguous"),
    ("meq/L", "ambiguous.*valence"), ("[pH]", "ambiguous"),
    ("mcg", "write 'ug'"), ("mmHg", "write 'mm\\[Hg\\]'"), ("IU/L", "write '\\[IU\\]'"),
    ("bpm", "write '/min'"), ("kg/m^2", "write 'kg/m2'"),
    ("mg/", "ends where a unit was expected"), ("(mg", "unbalanced parenthesis"),
    ("mg]", "unbalanced"), ("mg dL", "spaces"), ("", "empty"), ("MG/DL", "unknown unit"),
])
def test_unknown_ambiguous_and_malformed_codes_are_errors(code, fragment):
    with pytest.raises(data.UnitError, match=fragment):
        data.parse_ucum(code)


def test_dimension_mismatch_is_an_error_even_with_a_molar_mass():
    with pytest.raises(data.UnitError, match="does not convert.*molar mass"):
        data.convert(1.0, "mm[Hg]", "mg/dL", "180.16 g/mol")
    with pytest.raises(data.UnitError, match="does not convert"):
        data.convert(1.0, "mmol/L", "mg/dL")  # no molar mass: mol and g do not meet
    with pytest.raises(data.UnitError, match="a UCUM code must be a string"):
        data.parse_ucum(5)
