"""A population fit whose subjects are split over MPI ranks agrees with the one-process fit.

Under ``mpirun -n 2`` each rank evaluates six of the twelve Theoph subjects and
``vht.distributed.sum_over_ranks`` adds the objectives and gradients inside the compiled
program. On one rank (plain pytest) there is nothing to split, so the test is skipped there;
the suite's MPI leg runs it.
"""

import numpy as np
import pytest

pytest.importorskip("mpi4jax", reason="the 'mpi' extra (mpi4py, mpi4jax) is not installed")

import calibration as cal  # noqa: E402
from vht import distributed  # noqa: E402

pytestmark = [pytest.mark.mpi, pytest.mark.skipif(
    distributed.world_size() < 2,
    reason="compares a split fit with a one-process fit: needs mpirun -n 2 (the MPI leg)")]


def test_population_fit_split_over_ranks_matches_one_process(record_property):
    records = cal.validate_records(cal.theoph_records(dose_per_kg=True))
    population = cal.theoph_population()
    split = cal.fit_population(population, records, distributed=True, tolerance=1e-8)
    whole = cal.fit_population(population, records, distributed=False, tolerance=1e-8)
    estimates = np.max(np.abs(split.outer - whole.outer) / np.maximum(np.abs(whole.outer), 1.0))
    objective = abs(split.minus_2_log_likelihood / whole.minus_2_log_likelihood - 1)
    record_property(f"population_mpi_rank{distributed.rank()}_estimates_rel_diff", estimates)
    record_property(f"population_mpi_rank{distributed.rank()}_objective_rel_diff", objective)
    assert split.subjects == whole.subjects
    assert split.n_observations == whole.n_observations == 132
    np.testing.assert_allclose(split.eta, whole.eta, atol=1e-6)
    assert estimates < 1e-8
    assert objective < 1e-9
