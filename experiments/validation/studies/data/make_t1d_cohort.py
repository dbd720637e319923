"""Write the synthetic type 1 diabetes cohort of the day-ahead validation study.

    python experiments/validation/studies/data/make_t1d_cohort.py

Each of simglucose's 30 virtual patients (10 children, 10 adolescents, 10 adults; parameters
from simglucose 0.2.11, see physiology_models/glucose_insulin/data/README.md) lives two days
from its basal steady state at midnight, on vht's UVA/Padova model (which reproduces
simglucose within 0.5 mg/dL, tests/test_uva_padova.py):

- day 1: breakfast 07:00, lunch 12:00, dinner 18:30; day 2: breakfast 08:00, lunch 13:00,
  an unbolused snack at 16:00, dinner 19:30 (grams below; children eat 60 %, adolescents 80 %
  of the adult amounts, rounded to 5 g);
- every meal but the snack comes with a bolus of grams / CR units at its start (CR: the
  patient's carbohydrate ratio from simglucose's Quest.csv), on top of the basal insulin;
- a CGM-like reading of subcutaneous glucose every 5 minutes: the model value plus Gaussian
  noise of 10 mg/dL SD (seed 20261202), rounded to 1 mg/dL as sensors report. No sensor drift,
  lag beyond the model's own subcutaneous compartment, or range clipping is simulated.

Outputs (this folder): ``t1d_observations.csv`` (tidy long: subject, time in min, variable,
value, unit, and the covariates ``group``, ``virtual_patient`` and ``weight`` on every row),
``t1d_doses.csv`` (meals in g with route ``meal``, boluses in [IU] with route
``subcutaneous``) and ``t1d_truth.csv`` (each patient's true values of the parameters the study
calibrates, for the recovery check of the docs).
"""

from __future__ import annotations

import csv
from pathlib import Path

import jax
import numpy as np

jax.config.update("jax_enable_x64", True)

import vht  # noqa: E402
from physiology_models.glucose_insulin import uva_padova  # noqa: E402

HERE = Path(__file__).resolve().parent
SEED = 20261202
NOISE_SD = 10.0          # mg/dL
PERIOD = 5.0             # min between CGM readings
DAYS = 2
# (minute, adult grams, bolused)
MEALS = [(420, 45, True), (720, 70, True), (1110, 80, True),
         (1440 + 480, 60, True), (1440 + 780, 50, True), (1440 + 960, 20, False),
         (1440 + 1170, 90, True)]
PORTION = {"child": 0.6, "adolescent": 0.8, "adult": 1.0}
CALIBRATED = ("Vmx", "kp3", "kabs")


def _grams(group: str, adult_grams: float) -> float:
    return float(5 * round(PORTION[group] * adult_grams / 5))


def scenario(name: str) -> vht.Scenario:
    group = name.split("#")[0]
    ratio = uva_padova.quest(name)["CR"]
    items = []
    for minute, grams, bolused in MEALS:
        eaten = _grams(group, grams)
        items += uva_padova.meal(eaten, minute)
        if bolused:
            items.append(uva_padova.bolus(eaten / ratio, minute))
    return vht.Scenario(items, name=f"two days of {name}")


def main() -> None:
    rng = np.random.default_rng(SEED)
    times = np.arange(PERIOD, DAYS * 1440.0 + 0.5, PERIOD)
    observations, doses, truth = [], [], []
    for k, name in enumerate(uva_padova.patient_names()):
        group = name.split("#")[0]
        subject = f"T1D-{k + 1:03d}"
        twin = uva_padova.patient_twin(name)
        solution = vht.simulate(twin, scenario(name), ts=times, t0=0.0, t1=DAYS * 1440.0,
                                **uva_padova.SIMGLUCOSE_SOLVER)
        glucose = np.asarray(solution["patient.subcutaneous_glucose"])
        readings = np.round(glucose + NOISE_SD * rng.standard_normal(glucose.shape))
        weight = float(uva_padova.patient_parameters(name)["BW"])
        for t, value in zip(times, readings):
            observations.append([subject, f"{t:g}", "cgm", f"{value:.0f}", "mg/dL", group, name,
                                 f"{weight:.3f}"])
        ratio = uva_padova.quest(name)["CR"]
        for minute, grams, bolused in MEALS:
            eaten = _grams(group, grams)
            doses.append([subject, f"{minute:g}", "carbohydrate", f"{eaten:g}", "g", "meal"])
            if bolused:
                doses.append([subject, f"{minute:g}", "insulin", f"{eaten / ratio:.6f}",
                              "[IU]", "subcutaneous"])
        parameters = uva_padova.patient_parameters(name)
        truth.append([subject, name, *(f"{parameters[p]:.10g}" for p in CALIBRATED)])
        print(f"{subject} {name:14s} glucose {glucose.min():6.1f}-{glucose.max():6.1f} mg/dL")
    _write(HERE / "t1d_observations.csv", ["subject", "time", "variable", "value", "unit",
                                           "group", "virtual_patient", "weight"], observations)
    _write(HERE / "t1d_doses.csv", ["subject", "time", "drug", "amount", "unit", "route"], doses)
    _write(HERE / "t1d_truth.csv", ["subject", "virtual_patient",
                                    *(f"patient.{p}" for p in CALIBRATED)], truth)


def _write(path: Path, header: list[str], rows: list[list[str]]) -> None:
    with open(path, "w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle, lineterminator="\n")
        writer.writerow(header)
        writer.writerows(rows)
    print(f"wrote {path} ({len(rows)} rows)")


if __name__ == "__main__":
    main()
