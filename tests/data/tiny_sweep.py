"""A small sweep for the ensemble tests: 10 members of a one-compartment oral PK model in
chunks of 3 (the last one padded), two arms, 25 save times over a day."""

import vht
from physiology_models.twins import oral_pk


def sweep() -> vht.Sweep:
    population = vht.VirtualPopulation(
        {"drug.clearance": vht.LogNormal(2.76, cv=0.3), "drug.volume": vht.LogNormal(32.1, cv=0.2)},
        correlation=[[1.0, 0.5], [0.5, 1.0]],
        covariates=vht.AdultCovariates(),
        effects={"drug.clearance": [vht.Allometry("weight", 70.0, 0.75)]},
        plausible={"drug.clearance": (1.0, 6.0)},
    )
    arms = {"single dose": vht.Scenario([vht.OralDose("drug.depot", 320.0, 0.0)]),
            "split dose": vht.Scenario([vht.OralDose("drug.depot", 160.0, 0.0),
                                        vht.OralDose("drug.depot", 160.0, 720.0)])}
    return vht.Sweep(oral_pk(), population, arms, members=10, chunk_size=3, t1=1440.0,
                     n_save=25, outputs=["drug.concentration", "drug.central"], seed=7,
                     name="tiny")
