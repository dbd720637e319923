"""The theophylline data (R ``datasets::Theoph``) as a records table."""

from __future__ import annotations

from importlib.resources import files

import numpy as np
import pandas as pd


def theoph_records(dose_per_kg: bool = False) -> pd.DataFrame:
    """Theoph as records: one oral dose per subject at time 0 and 11 concentrations (mg/L)
    of ``drug.concentration``, times in hours. Doses in mg (dose x weight), or in mg/kg with
    ``dose_per_kg=True`` (as R's SSfol fits use them)."""
    raw = pd.read_csv(files("calibration") / "data" / "theoph.csv")
    rows = []
    for subject, group in raw.groupby("Subject", sort=False):
        first = group.iloc[0]
        amount = first.Dose if dose_per_kg else first.Dose * first.Wt
        rows.append({"subject": str(subject), "time": 0.0, "variable": "", "value": np.nan,
                     "unit": "mg" if not dose_per_kg else "mg", "dose_amount": amount,
                     "route": "oral", "duration": 0.0, "weight": first.Wt})
        for _, row in group.iterrows():
            rows.append({"subject": str(subject), "time": row.Time,
                         "variable": "drug.concentration", "value": row.conc, "unit": "mg/L",
                         "dose_amount": np.nan, "route": "", "duration": 0.0,
                         "weight": first.Wt})
    return pd.DataFrame(rows)


# nlme's parameters as random effects on vht's (ka, clearance, volume): with V = Cl/Ke,
# log ka = lKa, log Cl = lCl, log V = lCl - lKe, so each column says how one effect moves them
_NLME_EFFECTS = {"lKe": (0.0, 0.0, -1.0), "lKa": (1.0, 0.0, 0.0), "lCl": (0.0, 1.0, 1.0)}


def theoph_problem(rtol: float = 1e-7, atol: float = 1e-9, solution: str = "auto"):
    """The one-compartment oral model of R's ``SSfol`` examples as a ``Problem``: ka,
    clearance and volume free (log scale; with doses in mg/kg, clearance and volume are per
    kg), additive error, starting from ka 1.5 /h, CL 0.04 L/h/kg, V 0.5 L/kg. Predictions
    are the model's closed form unless ``solution="ode"`` (then at ``rtol``, ``atol``)."""
    from physiology_models.twins import oral_pk

    from ._problem import Additive, FreeParameter, Problem

    twin = oral_pk().replace({"drug.ka": 1.5, "drug.clearance": 0.04, "drug.volume": 0.5})
    return Problem(twin, [FreeParameter(n) for n in ("drug.ka", "drug.clearance", "drug.volume")],
                   {"drug.concentration": Additive(0.5)}, {"oral": "drug.depot"},
                   time_unit="h", rtol=rtol, atol=atol, solution=solution)


def theoph_population(random_effects=("lKa", "lCl"), covariance: str = "diagonal"):
    """``theoph_problem`` with random effects named as nlme's (``lKe``, ``lKa``, ``lCl``):
    the defaults are nlme's fm3; ``("lKe", "lKa", "lCl")`` with ``covariance="full"`` is fm1."""
    from ._population import PopulationProblem

    unknown = [r for r in random_effects if r not in _NLME_EFFECTS]
    if unknown:
        raise ValueError(f"random effects {unknown} are not among {list(_NLME_EFFECTS)}")
    design = np.array([_NLME_EFFECTS[r] for r in random_effects]).T
    return PopulationProblem(theoph_problem(), list(random_effects), design=design,
                             covariance=covariance)
