"""An ensemble sweep spread over MPI ranks gives the same bytes as one process.

Under ``mpirun -n 2`` rank 0 computes chunks 0 and 2 and rank 1 chunks 1 and 3 of the small
sweep in ``tests/data/tiny_sweep.py``; rank 0 then runs the same sweep alone (``use_mpi=False``)
and every array of the two result files must be byte-for-byte equal. On one rank there is
nothing to split, so the test is skipped there; the suite's MPI leg runs it.
"""

import runpy
import shutil
from pathlib import Path

import h5py
import jax.numpy as jnp
import numpy as np
import pytest

pytest.importorskip("mpi4jax", reason="the 'mpi' extra (mpi4py, mpi4jax) is not installed")

import vht  # noqa: E402
from vht import distributed  # noqa: E402

ROOT = Path(__file__).resolve().parents[2]
pytestmark = [pytest.mark.mpi, pytest.mark.skipif(
    distributed.world_size() < 2,
    reason="compares a sweep split over ranks with a one-process sweep: needs mpirun -n 2")]


def _arrays(path: Path) -> dict[str, bytes]:
    with h5py.File(path, "r") as f:
        return {name: item[()].tobytes() if item.dtype.kind != "O" else repr(item[()]).encode()
                for name, item in f.items() if isinstance(item, h5py.Dataset)}


def test_sweep_split_over_ranks_is_bitwise_identical_to_one_process():
    # every rank must write to the same directory: rank 0 picks its name
    token = int(distributed.broadcast_from_root(jnp.asarray(np.random.randint(1, 2**30))))
    directory = ROOT / ".cache" / "tests" / f"sweep-mpi-{token}"
    sweep = runpy.run_path(str(ROOT / "tests" / "data" / "tiny_sweep.py"))["sweep"]()
    try:
        split = vht.run_sweep(sweep, directory / "split.h5", progress=False)
        assert split.manifest["ranks"] == distributed.world_size()
        if distributed.rank() == 0:
            whole = vht.run_sweep(sweep, directory / "whole.h5", progress=False, use_mpi=False)
            assert whole.manifest["ranks"] == 1
            a, b = _arrays(split.path), _arrays(whole.path)
            assert a.keys() == b.keys()
            for name in a:
                assert a[name] == b[name], name
        distributed.barrier()
    finally:
        if distributed.rank() == 0:
            shutil.rmtree(directory, ignore_errors=True)
