"""Sharding and MPI: the one module of vht that imports mpi4jax.

Everything else that needs to combine values across MPI ranks uses the collectives exported
here. They are jit-safe (they lower to MPI calls inside compiled programs through mpi4jax)
and are the identity when MPI is not installed or disabled, so the same code runs on a laptop,
under ``pytest``, and under ``mpirun -n K``.

- ``rank()``, ``world_size()``, ``mpi_enabled()``
- ``sum_over_ranks(x)``, ``max_over_ranks(x)``, ``min_over_ranks(x)``: allreduce, jit-safe
- ``broadcast_from_root(x)``: rank 0's value on every rank, jit-safe
- ``barrier()``: host-side synchronisation (not inside jit)
- ``local_mesh(axis)`` and ``shard_leading_axis(tree, mesh)``: spread a batch over this
  process's devices (CPU devices are multiplied with
  ``XLA_FLAGS=--xla_force_host_platform_device_count=4``)

Set ``VHT_DISABLE_MPI=1`` to ignore an installed mpi4py/mpi4jax.

mpi4py initialises MPI when first imported, so nothing here imports it until a collective or
``rank()`` is first used.
"""

from __future__ import annotations

import functools
import os

import jax
import numpy as np
from jax.sharding import Mesh, NamedSharding, PartitionSpec


@functools.cache
def _mpi():
    """(MPI, mpi4jax) when available and not disabled, else None."""
    if os.environ.get("VHT_DISABLE_MPI", "").lower() in ("1", "true", "yes"):
        return None
    try:
        import mpi4jax
        from mpi4py import MPI
    except ImportError:
        return None
    return MPI, mpi4jax


def mpi_enabled() -> bool:
    """True when mpi4py and mpi4jax are importable (even on a single rank)."""
    return _mpi() is not None


def rank() -> int:
    """This process's MPI rank (0 without MPI)."""
    mpi = _mpi()
    return 0 if mpi is None else mpi[0].COMM_WORLD.Get_rank()


def world_size() -> int:
    """The number of MPI ranks (1 without MPI)."""
    mpi = _mpi()
    return 1 if mpi is None else mpi[0].COMM_WORLD.Get_size()


def _allreduce(x, op_name: str):
    mpi = _mpi()
    if mpi is None:
        return x
    MPI, mpi4jax = mpi
    return mpi4jax.allreduce(x, op=getattr(MPI, op_name), comm=MPI.COMM_WORLD)


def sum_over_ranks(x):
    """Sum of ``x`` over all MPI ranks (elementwise); ``x`` itself without MPI. Jit-safe and
    differentiable."""
    return _allreduce(x, "SUM")


def max_over_ranks(x):
    """Elementwise maximum of ``x`` over all MPI ranks; ``x`` itself without MPI. Jit-safe."""
    return _allreduce(x, "MAX")


def min_over_ranks(x):
    """Elementwise minimum of ``x`` over all MPI ranks; ``x`` itself without MPI. Jit-safe."""
    return _allreduce(x, "MIN")


def broadcast_from_root(x, root: int = 0):
    """Rank ``root``'s value of ``x`` on every rank; ``x`` itself without MPI. Jit-safe."""
    mpi = _mpi()
    if mpi is None:
        return x
    MPI, mpi4jax = mpi
    return mpi4jax.bcast(x, root=root, comm=MPI.COMM_WORLD)


def barrier() -> None:
    """Wait for every rank (host side; not for use inside jit)."""
    mpi = _mpi()
    if mpi is not None:
        mpi[0].COMM_WORLD.Barrier()


def local_mesh(axis: str = "member") -> Mesh:
    """A one-dimensional mesh over this process's local devices."""
    return Mesh(np.array(jax.local_devices()), (axis,))


def shard_leading_axis(tree, mesh: Mesh | None = None):
    """Place every array of ``tree`` on ``mesh``, split along its leading axis (whose length
    must be a multiple of the number of devices)."""
    mesh = local_mesh() if mesh is None else mesh
    (axis,) = mesh.axis_names
    sharding = NamedSharding(mesh, PartitionSpec(axis))
    n_devices = mesh.devices.size

    def place(x):
        if not isinstance(x, (jax.Array, np.ndarray)) or np.ndim(x) == 0:
            return x
        if x.shape[0] % n_devices:
            raise ValueError(f"leading axis of length {x.shape[0]} does not split over "
                             f"{n_devices} devices: pad it to a multiple")
        return jax.device_put(x, sharding)

    return jax.tree.map(place, tree)
