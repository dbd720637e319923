"""Regenerate the stored simglucose outputs that tests/test_uva_padova.py compares with.

Run it with a Python that has simglucose 0.2.11 installed (not vht's environment; it needs
neither jax nor vht)::

    python3 -m venv /tmp/sg && /tmp/sg/bin/pip install simglucose==0.2.11
    /tmp/sg/bin/python experiments/glucose/generate_simglucose_references.py \
        --out tests/data/simglucose

It drives simglucose's plant, ``simglucose.patient.t1dpatient.T1DPatient``, one minute at a
time exactly as simglucose's environment does (``T1DSimEnv.mini_step``): each minute the
announced meal (grams, at the minute it is announced, else 0) and the insulin rate (U/min) go
into ``T1DPatient.step``; the patient eats at 5 g/min. No sensor, no pump rounding, no
controller: the insulin is the patient's basal ``u2ss * BW / 6000`` U/min throughout plus, at
each meal's first minute, a bolus of ``grams / CR`` U delivered within that minute (CR from
simglucose's Quest.csv). The scenario (``MEALS``) is a day with three meals:

| time | minute | carbohydrate |
|---|---|---|
| 07:00 | 420 | 45 g (eaten in 9 minutes) |
| 12:00 | 720 | 72 g (14 minutes at 5 g/min, then 2 g) |
| 19:00 | 1140 | 83 g (16 minutes at 5 g/min, then 3 g) |

Two of the meals are not multiples of 5 g, so the split of a meal into whole minutes is tested.
Each patient's file ``<patient>_day.csv`` (``child#007`` becomes ``child007``) has one row per
minute t = 0 ... 1439 with the state before that minute's step: ``t_min``, ``CHO_g_per_min``
(carbohydrate eaten in minute t), ``insulin_U_per_min`` (insulin delivered in minute t),
``BG_mg_dl`` (plasma glucose x[3] / Vg) and ``Gsub_mg_dl`` (subcutaneous glucose x[12] / Vg,
simglucose's ``observation.Gsub``). Values are written with 12 significant digits.

This script is not imported by the tests: the marked test ``test_stored_reference_matches_
simglucose`` (``pytest -m simglucose``) repeats the loop below for one patient.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

PATIENTS = ("child#001", "child#007", "adolescent#001", "adolescent#003", "adult#001",
            "adult#005")
MEALS = ((420, 45.0), (720, 72.0), (1140, 83.0))  # (minute, grams of carbohydrate)
MINUTES = 1440


def simulate_patient(name: str, meals=MEALS, minutes: int = MINUTES) -> dict[str, list]:
    """One simglucose patient-day: columns of the reference file."""
    from importlib import resources

    import pandas as pd
    from simglucose.patient.t1dpatient import Action, T1DPatient

    with resources.files("simglucose").joinpath("params", "Quest.csv").open() as handle:
        quest = pd.read_csv(handle)
    carb_ratio = float(quest.loc[quest.Name == name, "CR"].iloc[0])
    patient = T1DPatient.withName(name)
    basal = patient._params.u2ss * patient._params.BW / 6000.0  # U/min, as simglucose
    announced = dict(meals)
    columns = {"t_min": [], "CHO_g_per_min": [], "insulin_U_per_min": [], "BG_mg_dl": [],
               "Gsub_mg_dl": []}
    for minute in range(minutes):
        columns["t_min"].append(float(minute))
        columns["BG_mg_dl"].append(float(patient.state[3] / patient._params.Vg))
        columns["Gsub_mg_dl"].append(float(patient.observation.Gsub))
        grams = announced.get(minute, 0.0)
        insulin = basal + (grams / carb_ratio if grams > 0 else 0.0)
        patient.step(Action(CHO=grams, insulin=insulin))
        columns["CHO_g_per_min"].append(float(patient._last_action.CHO))  # eaten this minute
        columns["insulin_U_per_min"].append(float(insulin))
    return columns


def file_name(name: str) -> str:
    return name.replace("#", "") + "_day.csv"


def write_csv(path: Path, columns: dict[str, list]) -> None:
    names = list(columns)
    with open(path, "w") as handle:
        handle.write(",".join(names) + "\n")
        for row in zip(*(columns[n] for n in names)):
            handle.write(",".join(f"{float(v):.12g}" for v in row) + "\n")


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--out", type=Path, default=Path("tests/data/simglucose"))
    parser.add_argument("--patients", nargs="*", default=list(PATIENTS))
    args = parser.parse_args(argv)
    args.out.mkdir(parents=True, exist_ok=True)
    import simglucose.patient.t1dpatient  # noqa: F401 (fail early without simglucose)

    for name in args.patients:
        start = time.perf_counter()
        columns = simulate_patient(name)
        path = args.out / file_name(name)
        write_csv(path, columns)
        g = columns["Gsub_mg_dl"]
        print(f"{name}: Gsub {g[0]:.2f} -> max {max(g):.2f}, min {min(g):.2f} mg/dL "
              f"({time.perf_counter() - start:.1f} s) -> {path}")


if __name__ == "__main__":
    main()
