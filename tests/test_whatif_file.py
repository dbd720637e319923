"""What-if scenario files: syntax errors name the line, errors of meaning name the key path and
its line; quantities carry units; arms share one structure."""

import re
import textwrap

import numpy as np
import pytest

import vht
from vht._whatif import build
from vht._whatif_file import ScenarioFileError, key_lines, line_of, read_whatif

GOOD = textwrap.dedent("""\
    title = "adolescent#001: insulin"
    horizon = "12 h"

    [patient]
    virtual = "uva_padova/adolescent#001"

    [uncertainty]
    source = "population"
    members = 4
    cv = { "patient.kabs" = 0.2 }

    [[events]]
    kind = "meal"
    time = "2 h"
    carbs = "45 g"

    [[arms]]
    name = "basal"
    treatments = [ { kind = "basal_insulin", rate = "0.83 U/h" } ]

    [[arms]]
    name = "bolus"

    [[arms.treatments]]
    kind = "basal_insulin"
    rate = "0.83 U/h"

    [[arms.treatments]]
    kind = "meal_bolus"
    carb_ratio = "12 g/U"

    [[outcomes]]
    kind = "time_in_range"
    low = "70 mg/dL"
    high = "180 mg/dL"
    """)


def _line(text: str, fragment: str) -> int:
    return next(i for i, line in enumerate(text.splitlines(), 1) if fragment in line)


def test_a_good_file_reads_with_units_converted():
    spec = read_whatif(GOOD)
    assert spec.title == "adolescent#001: insulin"
    assert spec.horizon == 720.0 and spec.save_every == 5.0
    assert [a.name for a in spec.arms] == ["basal", "bolus"]
    assert [t.kind for t in spec.arms[1].treatments] == ["basal_insulin", "meal_bolus"]
    assert spec.uncertainty == {"source": "population", "members": 4, "seed": 0,
                                "cv": {"patient.kabs": 0.2}}


def test_key_lines_follow_tables_arrays_of_tables_and_inline_tables():
    lines = key_lines(GOOD)
    assert lines["patient.virtual"] == _line(GOOD, "virtual =")
    assert lines["arms[1].name"] == _line(GOOD, 'name = "bolus"')
    assert lines["arms[1].treatments[1].carb_ratio"] == _line(GOOD, "carb_ratio")
    assert lines["outcomes[0].high"] == _line(GOOD, "high =")
    # inside an inline table: the line of the key that holds it
    assert line_of(lines, "arms[0].treatments[0].rate") == _line(GOOD, "treatments = [")
    assert line_of(lines, "uncertainty.cv.patient.kabs") == _line(GOOD, "cv =")


def test_a_syntax_error_names_its_line():
    text = GOOD.replace('carbs = "45 g"', 'carbs = "45 g')
    with pytest.raises(ScenarioFileError, match=rf"<scenario>:{_line(text, 'carbs')}: TOML "
                                                 "syntax error"):
        read_whatif(text)


# (replacement of GOOD's text, key path, message fragment, line fragment)
FORM_ERRORS = [
    ('horizon = "12 h"', 'horizon = 12', "horizon", "give a quantity with its unit",
     "horizon ="),
    ('horizon = "12 h"', 'horizon = "12 kg"', "horizon", "not convertible to min", "horizon ="),
    ('horizon = "12 h"', 'horizon = "twelve hours"', "horizon", "cannot read", "horizon ="),
    ('horizon = "12 h"', 'horizon = "-1 h"', "horizon", "must be positive", "horizon ="),
    ('title = "adolescent#001: insulin"', 'title = ""', "title", "non-empty", "title ="),
    ('virtual = "uva_padova/adolescent#001"',
     'virtual = "uva_padova/adolescent#001"\ntwin = "whole_body"', "patient", "exactly one of",
     "[patient]"),
    ('virtual = "uva_padova/adolescent#001"',
     'virtual = "uva_padova/adolescent#001"\nweight = "70 kg"', "patient.weight",
     "unknown key", "weight ="),
    ('source = "population"', 'source = "bootstrap"', "uncertainty.source", "must be one of",
     "source ="),
    ('source = "population"', 'source = "posterior"', "uncertainty.source",
     "posterior samples come from a calibrated twin file", "source ="),
    ("members = 4", "members = 0", "uncertainty.members", "at least 1", "members ="),
    ('cv = { "patient.kabs" = 0.2 }', 'cv = { "patient.kabs" = 20 }',
     "uncertainty.cv.patient.kabs", "between 0 and 3", "cv ="),
    ('kind = "meal"', 'kind = "snack"', "events[0].kind", "must be one of", 'kind = "snack"'),
    ('name = "bolus"', 'name = "basal"', "arms[1].name", "two arms are named",
     'name = "basal"\n\n'),
    ('name = "bolus"', 'label = "bolus"', "arms[1].label", "unknown key", "label ="),
    ('kind = "meal_bolus"', 'kind = "pill"', "arms[1].treatments[1].kind", "must be one of",
     'kind = "pill"'),
    ('[[outcomes]]\nkind = "time_in_range"', '[[outcomes]]\nkind = "happiness"',
     "outcomes[0].kind", "must be one of", 'kind = "happiness"'),
]


@pytest.mark.parametrize("old, new, path, message, where", FORM_ERRORS,
                         ids=[f"{e[2]}:{e[3][:20]}" for e in FORM_ERRORS])
def test_errors_of_form_name_the_key_path_and_line(old, new, path, message, where):
    assert old in GOOD
    text = GOOD.replace(old, new)
    line = _line(text, where.split("\n")[0]) if "\n\n" not in where else [
        i for i, x in enumerate(text.splitlines(), 1) if x == where.split("\n")[0]][-1]
    with pytest.raises(ScenarioFileError) as error:
        read_whatif(text)
    assert str(error.value).startswith(f"<scenario>:{line}: {path}: "), str(error.value)
    assert message in str(error.value)


def test_missing_sections_are_named():
    with pytest.raises(ScenarioFileError, match="the key 'arms' is missing"):
        read_whatif(GOOD[:GOOD.index("[[arms]]")])
    with pytest.raises(ScenarioFileError, match="no scenario file at"):
        read_whatif("no/such/file.toml")


# errors of meaning found when the arms are built against the patient's twin
MEANING_ERRORS = [
    ('rate = "0.83 U/h" }', 'rate = "0.83 mL/h" }', "arms[0].treatments[0].rate",
     "not convertible to U/min", "treatments = ["),
    ('carbs = "45 g"', 'carbs = "45 mmHg"', "events[0].carbs", "not convertible to g",
     "carbs ="),
    ('time = "2 h"', 'time = "2.5 min"', "events[0].time", "whole minute", "time ="),
    ('carb_ratio = "12 g/U"', 'carb_ratio = "-12 g/U"', "arms[1].treatments[1].carb_ratio",
     "must be positive", "carb_ratio ="),
    ('carb_ratio = "12 g/U"', 'carb_ratio = "12 g/U"\ntarget = "patient.nowhere"',
     "arms[1].treatments[1].target", "takes ['carb_ratio']", "target ="),
    ('virtual = "uva_padova/adolescent#001"', 'virtual = "uva_padova/teenager#001"',
     "patient.virtual", "no UVA/Padova virtual patient", "virtual ="),
    ('virtual = "uva_padova/adolescent#001"', 'virtual = "simglucose/adolescent#001"',
     "patient.virtual", "unknown virtual patient family", "virtual ="),
    ('cv = { "patient.kabs" = 0.2 }', 'cv = { "patient.kgut" = 0.2 }',
     "uncertainty.cv.patient.kgut", "no parameter 'patient.kgut'", "cv ="),
    ('low = "70 mg/dL"', 'low = "190 mg/dL"', "outcomes[0].high", "must be above 'low'",
     "high ="),
]


@pytest.mark.parametrize("old, new, path, message, where", MEANING_ERRORS,
                         ids=[e[2] for e in MEANING_ERRORS])
def test_errors_of_meaning_name_the_key_path_and_line(old, new, path, message, where):
    assert old in GOOD
    text = GOOD.replace(old, new)
    with pytest.raises(ScenarioFileError) as error:
        build(read_whatif(text))
    assert str(error.value).startswith(f"<scenario>:{_line(text, where)}: {path}: "), \
        str(error.value)
    assert message in str(error.value)


def test_clinical_kinds_need_the_ports_they_act_on():
    text = GOOD.replace('virtual = "uva_padova/adolescent#001"', 'twin = "oral_pk"').replace(
        'cv = { "patient.kabs" = 0.2 }', 'cv = { "drug.clearance" = 0.2 }')
    with pytest.raises(ScenarioFileError, match=re.escape(
            "events[0].kind: 'meal' needs the twin's parameter '<organ>.carb_rate', which "
            "this twin does not have")):
        build(read_whatif(text))


def test_arms_share_one_structure_with_the_others_treatments_switched_off():
    twin, members, arms, outcomes, warnings, who = build(read_whatif(GOOD))
    assert who == "UVA/Padova virtual patient adolescent#001"
    assert members["patient.kabs"].shape == (4,)
    scenarios = [scenario for _, scenario in arms]
    vht.stack(scenarios)  # raises if the structures differ
    steps = [s.interventions for s in scenarios]
    # arm 0 (basal) holds arm 1's basal and bolus steps with empty windows
    durations = [float(x.duration) for x in steps[0] if x.parameter == "patient.bolus_rate"]
    assert durations == [0.0]
    assert [float(x.duration) for x in steps[1] if x.parameter == "patient.bolus_rate"] == [1.0]
    assert float(next(x for x in steps[1] if x.parameter == "patient.bolus_rate").value) == \
        pytest.approx(45.0 / 12.0)
    assert outcomes[0].definition == "% of readings with 70 <= glucose <= 180 mg/dL"
    assert warnings == []


def test_inputs_outside_the_validated_range_are_warnings():
    text = GOOD.replace('carbs = "45 g"', 'carbs = "200 g"')
    *_, warnings, _ = build(read_whatif(text))
    assert any("events[0].carbs = 200 g lies outside the range vht's validation covered "
               "(0-100 g)" in w for w in warnings)
    assert any("arms[1].treatments[1]: the bolus of 16.7 U for the 200 g meal at 2 h" in w
               for w in warnings)


def test_outcome_windows_and_time_fractions():
    twin, members, arms, outcomes, warnings, who = build(read_whatif(GOOD))
    ts = np.arange(0.0, 721.0, 5.0)
    glucose = np.where(ts < 360.0, 100.0, 200.0)[None, :]
    tir = outcomes[0].per_member(ts, np.vstack([glucose, np.full_like(glucose, np.nan)]))
    assert tir[0] == pytest.approx(100.0 * np.mean(ts < 360.0))
    assert np.isnan(tir[1])  # a failed member stays failed


HEMORRHAGE = textwrap.dedent("""\
    title = "bleeding"
    horizon = "30 min"

    [patient]
    twin = "circulation_with_vasopressor"
    start = "steady_state"

    [[events]]
    kind = "hemorrhage"
    start = "2 min"
    duration = "10 min"
    rate = "150 mL/min"

    [[arms]]
    name = "fluids and vasopressor by rule"
    treatments = [
      { kind = "fluid_rule", below = "65 mmHg", until = "70 mmHg", rate = "100 mL/min" },
      { kind = "drug_rule", below = "65 mmHg", until = "75 mmHg", rate = "7 ug/min" },
    ]

    [[outcomes]]
    kind = "time_at_least"
    threshold = "65 mmHg"
    """)


def test_rules_become_triggers_on_the_monitor_in_the_twins_units():
    twin, members, arms, outcomes, warnings, who = build(read_whatif(HEMORRHAGE))
    bleed, fluids, drug = arms[0][1].interventions
    assert bleed.parameter == "circulation.hemorrhage_rate" and bleed.unit == "mL/min"
    assert float(bleed.value) == 150.0 and float(bleed.time) == 2.0
    assert (fluids.signal, fluids.target) == ("circulation.mean_arterial_pressure",
                                              "circulation.systemic_veins")
    assert (float(fluids.threshold), float(fluids.release)) == (65.0, 70.0)
    assert drug.target == "drug.central" and float(drug.release) == 75.0
    assert float(drug.rate) == pytest.approx(0.007)  # 7 ug/min in the state's mg per minute
    assert outcomes[0].signal == "circulation.mean_arterial_pressure"
    # the pulsatile circulation is meant for 30 minutes at most
    longer = build(read_whatif(HEMORRHAGE.replace('horizon = "30 min"', 'horizon = "2 h"')))
    assert any("meant for horizons up to 30 min" in w for w in longer[4])


def test_the_start_must_be_a_known_one():
    with pytest.raises(ScenarioFileError, match=r"<scenario>:6: patient.start: must be "
                                                r"\"initial\""):
        read_whatif(HEMORRHAGE.replace('start = "steady_state"', 'start = "warm"'))


def test_a_dimensionless_parameter_takes_a_plain_number():
    text = GOOD.replace('carbs = "45 g"', 'carbs = "45 g"\n\n[[events]]\nkind = "parameter"\n'
                        'parameter = "patient.f"\nvalue = "0.8"')
    *_, arms, _, _, _ = build(read_whatif(text))
    step = [x for x in arms[0][1].interventions if x.parameter == "patient.f"]
    assert len(step) == 1 and float(step[0].value) == 0.8
