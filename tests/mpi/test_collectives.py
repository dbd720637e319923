"""vht's MPI collectives. These assert what holds for any number of ranks: they run under plain
pytest (one rank) and under ``mpirun -n 2`` (see tests/run_suite.py and .ci/run)."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

pytest.importorskip("mpi4jax", reason="the 'mpi' extra (mpi4py, mpi4jax) is not installed")

import vht  # noqa: E402
from vht import distributed  # noqa: E402

pytestmark = pytest.mark.mpi


def test_mpi_is_enabled_and_ranks_are_consistent():
    assert distributed.mpi_enabled()
    assert 0 <= distributed.rank() < distributed.world_size()


def test_sum_over_ranks_under_jit():
    size, rank = distributed.world_size(), distributed.rank()
    total = jax.jit(distributed.sum_over_ranks)(jnp.array([float(rank), 1.0]))
    np.testing.assert_array_equal(total, [size * (size - 1) / 2, size])


def test_max_min_and_broadcast():
    size, rank = distributed.world_size(), distributed.rank()
    x = jnp.array(float(rank + 1))
    assert float(jax.jit(distributed.max_over_ranks)(x)) == size
    assert float(jax.jit(distributed.min_over_ranks)(x)) == 1.0
    assert float(jax.jit(distributed.broadcast_from_root)(x)) == 1.0


def test_sum_over_ranks_is_differentiable():
    """L = sum over ranks of sum(x_r ** 2) is the same on every rank; its derivative with
    respect to this rank's own x is 2 x, whatever the number of ranks."""
    grad = jax.grad(lambda x: jnp.sum(distributed.sum_over_ranks(x**2)))(jnp.array([1.0, 2.0]))
    np.testing.assert_allclose(grad, 2 * np.array([1.0, 2.0]))


def test_members_spread_over_ranks_add_up_to_the_whole_cohort():
    """Member i runs on rank i % size; the summed exposure (AUC) equals a one-process sum."""
    from physiology_models.twins import oral_pk

    clearances = np.linspace(1.5, 4.5, 8)
    size, rank = distributed.world_size(), distributed.rank()
    mine = clearances[rank::size]
    base = oral_pk()
    scenario = vht.Scenario([vht.OralDose("drug.depot", 320.0, 0.0)])
    ts = jnp.linspace(0.0, 24 * vht.HOUR, 97)

    def auc(clearance):
        solution = vht.simulate(base.replace({"drug.clearance": clearance}), scenario, ts=ts)
        c = solution["drug.concentration"]
        return jnp.sum((c[1:] + c[:-1]) / 2 * jnp.diff(ts))

    local = jnp.sum(jax.vmap(auc)(jnp.asarray(mine))) if mine.size else jnp.array(0.0)
    total = jax.jit(distributed.sum_over_ranks)(local)
    expected = float(jnp.sum(jax.vmap(auc)(jnp.asarray(clearances))))
    np.testing.assert_allclose(float(total), expected, rtol=1e-12)
