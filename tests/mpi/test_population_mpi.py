"""A population fit whose subjects are split over MPI ranks agrees with the one-process fit.

Under ``mpirun -n 2`` each rank evaluates half of the subjects (six of the twelve Theoph
subjects, fitted by L-BFGS-B; 20 of 40 synthetic ones, fitted by outer-product Newton steps)
and ``vht.distributed.sum_over_ranks`` adds the objectives, gradients and outer products
inside the compiled program. On one rank (plain pytest) there is nothing to split, so the
test is skipped there; the suite's MPI leg runs it.
"""

import jax.numpy as jnp
import numpy as np
import pytest

pytest.importorskip("mpi4jax", reason="the 'mpi' extra (mpi4py, mpi4jax) is not installed")

import calibration as cal  # noqa: E402
from vht import distributed  # noqa: E402

pytestmark = [pytest.mark.mpi, pytest.mark.skipif(
    distributed.world_size() < 2,
    reason="compares a split fit with a one-process fit: needs mpirun -n 2 (the MPI leg)")]


def _synthetic(population):
    truth = population.pack(jnp.asarray([0.47, -3.23, -0.77]),
                            jnp.diag(jnp.asarray([0.64, 0.17]) ** 2), jnp.log(jnp.asarray([0.7])))
    records, _ = cal.simulate_population(population, truth, [0.25, 0.5, 1, 2, 3.5, 5, 7, 9, 12,
                                                             24], 4.5, n_subjects=40, seed=5)
    return records


@pytest.mark.parametrize("data", ["theoph", "synthetic"])
def test_population_fit_split_over_ranks_matches_one_process(data, record_property):
    population = cal.theoph_population()
    records = (cal.validate_records(cal.theoph_records(dose_per_kg=True)) if data == "theoph"
               else _synthetic(population))
    split = cal.fit_population(population, records, distributed=True, tolerance=1e-8)
    whole = cal.fit_population(population, records, distributed=False, tolerance=1e-8)
    estimates = np.max(np.abs(split.outer - whole.outer) / np.maximum(np.abs(whole.outer), 1.0))
    objective = abs(split.minus_2_log_likelihood / whole.minus_2_log_likelihood - 1)
    rank = distributed.rank()
    record_property(f"population_mpi_{data}_rank{rank}_estimates_rel_diff", estimates)
    record_property(f"population_mpi_{data}_rank{rank}_objective_rel_diff", objective)
    assert split.subjects == whole.subjects
    assert split.n_observations == whole.n_observations == (132 if data == "theoph" else 400)
    assert split.message == whole.message
    if data == "theoph":
        assert split.message.startswith("L-BFGS-B")
    else:  # the moments of the expectation-maximisation step are summed over ranks too
        assert split.message.startswith("one expectation-maximisation step, then outer-product")
    np.testing.assert_allclose(split.eta, whole.eta, atol=1e-6)
    assert estimates < 1e-8
    assert objective < 1e-9
