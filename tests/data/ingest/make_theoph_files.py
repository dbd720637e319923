"""Writes the Theoph data (R datasets::Theoph, calibration/data/theoph.csv) in the formats
vht ingests, so that the ingestion tests can check that every format gives the same records.

    .venv/bin/python tests/data/ingest/make_theoph_files.py

Writes theoph_tidy_observations.csv, theoph_tidy_doses.csv (tidy long CSV) and
theoph_nonmem.csv (NONMEM style: ID TIME DV AMT EVID CMT MDV RATE WT). The doses are the
mg/kg doses times body weight, in mg, as calibration.theoph_records gives them.
"""

from pathlib import Path

import pandas as pd

here = Path(__file__).parent
raw = pd.read_csv(here.parents[2] / "calibration" / "data" / "theoph.csv")

observations, doses, nonmem = [], [], []
for subject, group in raw.groupby("Subject", sort=False):
    first = group.iloc[0]
    amount = round(first.Dose * first.Wt, 6)
    doses.append({"subject": subject, "time": 0.0, "drug": "theophylline", "amount": amount,
                  "unit": "mg", "route": "oral"})
    nonmem.append({"ID": subject, "TIME": 0.0, "DV": ".", "AMT": amount, "EVID": 1, "CMT": 1,
                   "MDV": 1, "RATE": 0, "WT": first.Wt})
    for row in group.itertuples(index=False):
        observations.append({"subject": subject, "time": row.Time, "variable": "conc",
                             "value": row.conc, "unit": "mg/L", "Wt": row.Wt})
        nonmem.append({"ID": subject, "TIME": row.Time, "DV": row.conc, "AMT": ".", "EVID": 0,
                       "CMT": 2, "MDV": 0, "RATE": 0, "WT": row.Wt})

pd.DataFrame(observations).to_csv(here / "theoph_tidy_observations.csv", index=False)
pd.DataFrame(doses).to_csv(here / "theoph_tidy_doses.csv", index=False)
pd.DataFrame(nonmem).to_csv(here / "theoph_nonmem.csv", index=False)
