"""UVA/Padova T1D model (simglucose 0.2.11 port) against stored simglucose outputs.

The references in tests/data/simglucose/ were computed with simglucose 0.2.11 (see the README
there; experiments/glucose/generate_simglucose_references.py regenerates them). The test marked
``simglucose`` recomputes one of them with simglucose itself; it is skipped where simglucose is
not importable (it is a test-only dependency, never installed into vht's environment). Register
the marker in pyproject.toml's ``[tool.pytest.ini_options] markers``:
``"simglucose: recomputes a stored reference with simglucose 0.2.11 (skipped without it)"``.
Run it with simglucose on the path, for example ``pytest -m simglucose tests/test_uva_padova.py``
with ``PYTHONPATH`` holding simglucose and its imports (gym, six).

All simulations share one compiled program: the same save times (one per minute of a day) and
the same scenario structure (three meals with a bolus each; unused meals have 0 g and 0 U).
"""

from pathlib import Path

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import pytest

import vht
from physiology_models.glucose_insulin import uva_padova as uva

DATA = Path(__file__).parent / "data" / "simglucose"
TOLERANCE = 0.5  # mg/dL at every minute: the requirement
PORT_TOLERANCE = 0.01  # mg/dL: measured worst 3e-4 (child#007); more means the port drifted
DAY_PATIENTS = ("child#001", "child#007", "adolescent#001", "adolescent#003", "adult#001",
                "adult#005")
MEALS = ((420, 45.0), (720, 72.0), (1140, 83.0))  # as generate_simglucose_references.MEALS
TS = jnp.arange(1440.0)  # minutes 0 ... 1439, the rows of the reference files


def read_reference(name: str) -> np.ndarray:
    return np.genfromtxt(DATA / name, delimiter=",", names=True)


def uva_file(name: str) -> str:
    return name.replace("#", "") + "_day.csv"


def three_meals(spec) -> vht.Scenario:
    """(minute, grams, bolus units) x 3: the structure every simulation here shares."""
    items = []
    for minute, grams, units in spec:
        items += [*uva.meal(grams, minute), uva.bolus(units, minute)]
    return vht.Scenario(items)


def day(name: str) -> vht.Scenario:
    cr = uva.quest(name)["CR"]
    return three_meals([(m, g, g / cr) for m, g in MEALS])


def run(name: str, scenario: vht.Scenario) -> dict[str, np.ndarray]:
    twin = vht.Twin({"patient": uva.UVAPadovaT1D.from_patient(name)})
    solution = vht.simulate(twin, scenario, ts=TS, **uva.SIMGLUCOSE_SOLVER)
    assert int(solution.status) == vht.Status.OK
    return {key: np.asarray(solution[f"patient.{key}"]) for key in
            ("subcutaneous_glucose", "glucose", "CHO", "insulin", "is_eating")}


@pytest.fixture(scope="module")
def runs():
    """Every simulation of this module, one compiled program (a loop over members measured
    faster than vmap here: 0.6 s per patient-day against 6 s for a vmapped batch of six)."""
    out = {("day", name): run(name, day(name)) for name in DAY_PATIENTS}
    none = (720, 0.0, 0.0), (1140, 0.0, 0.0)
    out["meal file"] = run("adolescent#001", three_meals([(60, 50.0, 50.0 / 12.0), *none]))
    out["basal"] = run("adolescent#001", three_meals([(60, 0.0, 0.0), *none]))
    out["bolus"] = run("adolescent#001", three_meals([(60, 0.0, 2.0), *none]))
    return out


def errors(simulated, reference, record_property, prefix):
    error = simulated - reference
    max_error = float(np.max(np.abs(error)))
    rms_error = float(np.sqrt(np.mean(error ** 2)))
    record_property(f"{prefix}max_error_mg_dl", max_error)
    record_property(f"{prefix}rms_error_mg_dl", rms_error)
    return max_error


# -- the patient table -------------------------------------------------------------------------


def test_patient_table_is_simglucose_0_2_11():
    names = uva.patient_names()
    assert len(names) == 30
    assert names[0] == "adolescent#001" and names[10] == "adult#001" and names[-1] == "child#010"
    # the class defaults are adolescent#001
    defaults = uva.UVAPadovaT1D()
    for key, value in uva.patient_parameters("adolescent#001").items():
        assert float(getattr(defaults, key)) == value, key
    assert float(defaults.basal_rate) == uva.basal_insulin_rate("adolescent#001")
    # simglucose's initial states x0_1..x0_13 are the basal parameters, for every patient
    for name in names:
        p = uva.patient_parameters(name)
        x0 = uva.initial_state_table(name)
        expected = [0, 0, 0, p["Gpb"], p["Gtb"], p["Ipb"], 0, p["Ib"], p["Ib"], p["Ilb"],
                    p["isc1ss"], p["isc2ss"], p["Gpb"]]
        np.testing.assert_array_equal(x0, expected, err_msg=name)
        twin = vht.Twin({"patient": uva.UVAPadovaT1D.from_patient(name)})
        np.testing.assert_array_equal(np.asarray(twin.initial_state())[:13], x0, err_msg=name)
    assert uva.quest("child#007") == {"CR": 8.0, "CF": 24.9969862972, "Age": 9.0,
                                      "TDI": 36.2128538724}
    with pytest.raises(ValueError, match="unknown virtual patient 'child#011'"):
        uva.UVAPadovaT1D.from_patient("child#011")


# -- steady state ------------------------------------------------------------------------------


def test_basal_state_is_a_steady_state_for_every_patient(record_property):
    """With basal insulin u2ss BW / 6000 the initial state of every patient is at rest."""
    cohort = uva.cohort(uva.patient_names())

    def relative_rates(organ):
        twin = vht.Twin({"patient": organ})
        y0 = twin.initial_state()
        return jnp.abs(twin.rates(0.0, y0)) / jnp.maximum(jnp.abs(y0), 1.0)

    worst = float(jnp.max(jax.vmap(relative_rates)(cohort)))
    record_property("max_relative_rate_per_min", worst)
    assert worst < 1e-9


def test_basal_insulin_holds_glucose_for_a_day(runs, record_property):
    g = runs["basal"]["subcutaneous_glucose"]
    drift = float(np.max(np.abs(g - g[0])))
    record_property("max_drift_mg_dl", drift)
    assert g[0] == pytest.approx(149.02, abs=1e-8)
    assert drift < 1e-6


# -- published values: simglucose's own outputs ------------------------------------------------


def test_reproduces_simglucose_50g_meal_file(runs, record_property):
    """adolescent#001, basal insulin, 50 g at minute 60 with a 50/12 U bolus (REFERENCES.md)."""
    reference = read_reference("adolescent001_50g_meal_basal.csv")["Gsub_mg_dl"]
    g = runs["meal file"]["subcutaneous_glucose"]
    max_error = errors(g, reference, record_property, "")
    assert max_error < TOLERANCE
    assert max_error < PORT_TOLERANCE
    # the landmarks REFERENCES.md quotes
    assert g[0] == pytest.approx(149.02, abs=0.005)
    assert int(np.argmax(g)) == 130 and g.max() == pytest.approx(158.21, abs=0.005)
    assert g.min() == pytest.approx(118.72, abs=0.005)
    assert g[-1] == pytest.approx(148.94, abs=0.005)


@pytest.mark.parametrize("name", DAY_PATIENTS)
def test_reproduces_simglucose_day_with_three_meals(runs, name, record_property):
    reference = read_reference(uva_file(name))
    result = runs[("day", name)]
    max_sub = errors(result["subcutaneous_glucose"], reference["Gsub_mg_dl"], record_property,
                     "gsub_")
    max_plasma = errors(result["glucose"], reference["BG_mg_dl"], record_property, "plasma_")
    assert max_sub < TOLERANCE and max_plasma < TOLERANCE
    assert max_sub < PORT_TOLERANCE and max_plasma < PORT_TOLERANCE
    # the held inputs are simglucose's, minute by minute (the state at minute t holds what was
    # eaten and delivered during minute t, except at the last save, which has no next tick)
    np.testing.assert_array_equal(result["CHO"][:-1], reference["CHO_g_per_min"][:-1])
    np.testing.assert_allclose(result["insulin"][:-1], reference["insulin_U_per_min"][:-1],
                               rtol=1e-10)


# -- physiological direction --------------------------------------------------------------------


def test_an_insulin_bolus_lowers_glucose(runs, record_property):
    basal = runs["basal"]["subcutaneous_glucose"]
    bolus = runs["bolus"]["subcutaneous_glucose"]
    assert np.all(bolus[:61] == basal[:61])  # nothing happens before the bolus at minute 60
    assert np.all(bolus[62:] < basal[62:])
    drop = float(np.max(basal - bolus))
    record_property("max_drop_after_2U_mg_dl", drop)
    assert drop > 20.0


def test_meals_raise_glucose_and_eating_follows_the_meals(runs):
    result = runs[("day", "adult#001")]
    g = result["subcutaneous_glucose"]
    for minute, grams in MEALS:
        assert g[minute + 60] > g[minute] + 10.0
        minutes_eating = int(np.ceil(grams / uva.EAT_RATE))
        assert np.all(result["is_eating"][minute:minute + minutes_eating] == 1.0)
        assert result["is_eating"][minute + minutes_eating] == 0.0
        assert np.sum(result["CHO"][minute:minute + 30]) == grams


def test_clamps_and_switches_are_simglucose_s():
    """(x >= 0) * dxdt on seven states, max(EGP, 0), renal excretion above ke2, and
    kgut = kmax with no meal memory (t1dpatient.py lines 131-203)."""
    organ = uva.UVAPadovaT1D.from_patient("adult#001")
    base = {k: float(v) for k, v in organ.initial_state().items()}
    clamped = ("Gp", "Gt", "Ip", "Il", "Isc1", "Isc2", "Gs")
    negative = {**base, **{k: -1.0 for k in clamped}, "X": -50.0, "I1": -5.0, "Id": -5.0}
    rates = organ.rates(0.0, negative, {})
    for k in clamped:
        assert float(rates[k]) == 0.0, k
    assert float(rates["X"]) != 0.0 and float(rates["I1"]) != 0.0
    # renal excretion: ke1 (Gp - ke2) above the threshold only
    p = uva.patient_parameters("adult#001")
    above = {**base, "Gp": p["ke2"] + 100.0}
    below = {**base, "Gp": p["ke2"] - 1e-9}
    slope = float(organ.rates(0.0, above, {})["Gp"] - organ.rates(0.0, below, {})["Gp"])
    expected = (-p["kp2"] - p["k1"]) * (100.0 + 1e-9) - p["ke1"] * 100.0
    assert slope == pytest.approx(expected, rel=1e-9)
    # EGP clipped at zero: a huge delayed insulin signal removes production, nothing more
    huge = {**base, "Id": 1e6}
    egp_off = float(organ.rates(0.0, huge, {})["Gp"])
    assert egp_off == pytest.approx(-p["Fsnc"] - p["k1"] * p["Gpb"] + p["k2"] * p["Gtb"],
                                    rel=1e-12)
    # no meal memory (Dbar = 0): the stomach empties at kmax
    fed = {**base, "Qsto1": 0.0, "Qsto2": 1000.0}
    assert float(organ.rates(0.0, fed, {})["Qgut"]) == pytest.approx(p["kmax"] * 1000.0,
                                                                      rel=1e-12)


def test_sample_changes_agrees_with_the_default_rule():
    """The cheap tick test (held states only) gives the default's answer on every case it
    can meet: meal starts, meals going on, meal ends, no meal, bolus edges, and continuous
    states that differ from the held meal memory (the default compares all states)."""
    organ = uva.UVAPadovaT1D.from_patient("child#007")
    rng = np.random.default_rng(7)
    base = organ.initial_state()
    basal = float(organ.basal_rate)
    cases = 0
    for carb in (0.0, 5.0, 2.5):
        for bolus in (0.0, 1.5):
            held = eqx.tree_at(lambda o: (o.carb_rate, o.bolus_rate), organ,
                               (jnp.asarray(carb), jnp.asarray(bolus)))
            for previous_cho in (0.0, 5.0, 2.5):
                for eating in (0.0, 1.0):
                    for insulin in (basal, basal + 1.5):
                        for food in (0.0, 10.0):
                            state = {k: jnp.asarray(v * rng.uniform(0.5, 1.5))
                                     for k, v in base.items()}
                            state.update(CHO=jnp.asarray(previous_cho),
                                         is_eating=jnp.asarray(eating),
                                         insulin=jnp.asarray(insulin),
                                         last_foodtaken=jnp.asarray(food))
                            default = bool(vht.AbstractOrgan.sample_changes(held, 0.0, state))
                            assert bool(held.sample_changes(0.0, state)) == default, (
                                carb, bolus, previous_cho, eating, insulin, food)
                            cases += 1
    assert cases == 3 * 2 * 3 * 2 * 2 * 2
    # and a tick inside a meal that changes nothing is seen as such by both
    steady = eqx.tree_at(lambda o: o.carb_rate, organ, jnp.asarray(0.0))
    resting = {**base, "insulin": jnp.asarray(basal)}
    assert not bool(steady.sample_changes(0.0, resting))
    assert not bool(vht.AbstractOrgan.sample_changes(steady, 0.0, resting))


# -- scenario helpers ----------------------------------------------------------------------------


def simglucose_eating(meals: dict[int, float], minutes: int) -> list[float]:
    """simglucose's T1DPatient._announce_meal (t1dpatient.py lines 222-236), per minute."""
    planned, eaten = 0.0, []
    for minute in range(minutes):
        planned += meals.get(minute, 0.0)
        if planned > 0:
            to_eat = min(uva.EAT_RATE, planned)
            planned = max(0, planned - to_eat)
        else:
            to_eat = 0
        eaten.append(to_eat)
    return eaten


@pytest.mark.parametrize("grams", [0.0, 3.0, 5.0, 50.0, 52.0, 83.0, 47.5])
def test_meal_windows_eat_as_simglucose(grams):
    steps = uva.meal(grams, 10)
    assert len(steps) == 2  # fixed structure, whatever the amount
    eaten = []
    for minute in range(40):  # the value a sample at this tick sees (later steps win)
        value = 0.0
        for step in steps:
            if float(step.time) <= minute < float(step.time + step.duration):
                value = float(step.value)
        eaten.append(value)
    np.testing.assert_allclose(eaten, simglucose_eating({10: grams}, 40), atol=1e-12)


def test_helpers_require_whole_minutes():
    with pytest.raises(ValueError, match="a meal at minute 10.5: simglucose acts at whole "
                                         "minutes"):
        uva.meal(50.0, 10.5)
    with pytest.raises(ValueError, match="a bolus at minute 0.25"):
        uva.bolus(1.0, 0.25)


# -- the stored references against simglucose itself ---------------------------------------------


@pytest.mark.simglucose
def test_rates_equal_simglucose_model():
    """vht's rates against simglucose's own T1DPatient.model at random states, some negative
    (clamps), above the renal threshold, with and without meal memory and input."""
    pytest.importorskip("simglucose")
    import pandas as pd
    from simglucose.patient.t1dpatient import PATIENT_PARA_FILE, Action, T1DPatient

    table = pd.read_csv(PATIENT_PARA_FILE)
    rng = np.random.default_rng(0)
    for name in ("child#007", "adolescent#003", "adult#009"):
        params = table.loc[table.Name == name].squeeze()
        organ = uva.UVAPadovaT1D.from_patient(name)
        rates = jax.jit(lambda state, organ=organ: organ.rates(0.0, state, {}))
        x0 = uva.initial_state_table(name)
        for k in range(20):
            x = x0 * rng.uniform(0.0, 2.5, 13) + rng.uniform(0.0, 500.0, 13) * (k % 2)
            x[rng.integers(0, 13, 2)] *= -1.0
            cho, insulin = rng.choice([0.0, 5.0, 2.0]), rng.uniform(0.0, 3.0)
            last_qsto, food = rng.choice([0.0, 2000.0]), rng.choice([0.0, 45.0])
            expected = T1DPatient.model(0.0, x, Action(CHO=cho, insulin=insulin), params,
                                        last_qsto, food)
            names = [s.name for s in organ.states]
            state = dict(zip(names, [*x, last_qsto, food, 1.0, cho, insulin]))
            got = rates(state)
            np.testing.assert_allclose([float(got[n]) for n in names[:13]], expected,
                                       rtol=1e-12, atol=1e-12, err_msg=f"{name} {k}")


@pytest.mark.simglucose
def test_stored_reference_matches_simglucose():
    """Recompute child#007's day with simglucose 0.2.11 (the loop of
    experiments/glucose/generate_simglucose_references.py) and compare with the stored file."""
    pytest.importorskip("simglucose")
    from simglucose.patient.t1dpatient import Action, T1DPatient

    name = "child#007"
    patient = T1DPatient.withName(name)
    basal = patient._params.u2ss * patient._params.BW / 6000.0
    carb_ratio = uva.quest(name)["CR"]
    announced = dict(MEALS)
    gsub, bg = [], []
    for minute in range(1440):
        bg.append(patient.state[3] / patient._params.Vg)
        gsub.append(patient.observation.Gsub)
        grams = announced.get(minute, 0.0)
        patient.step(Action(CHO=grams, insulin=basal + (grams / carb_ratio if grams else 0.0)))
    reference = read_reference(uva_file(name))
    np.testing.assert_allclose(gsub, reference["Gsub_mg_dl"], rtol=1e-11)
    np.testing.assert_allclose(bg, reference["BG_mg_dl"], rtol=1e-11)
