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
