"""Results as ``xarray.Dataset``: named dims, units on every variable, provenance; HDF5 I/O.

Conversion happens outside jit. A ``Solution`` from one run becomes a Dataset with dim
``time``; one from ``jax.vmap`` gains leading dims (``arm``, ``member``, named by the caller).

Variables:

- every state and output signal, named ``"organ.name"``, ``attrs["units"]`` and
  ``attrs["kind"]`` (``"state"`` or ``"signal"``);
- ``status`` (``vht.Status`` codes, with CF ``flag_values``/``flag_meanings``) and ``n_steps``;
- with a twin: every parameter, named ``"parameter:organ.name"``, with its units.

Provenance in ``Dataset.attrs``: package versions, model hash, parameter hash, organ hashes,
solver configuration, scenario (JSON), seed, creation time.

HDF5 files are written through xarray's h5netcdf engine to a temporary name and renamed into
place, so a reader never opens a half-written file; ``load_dataset`` reads them back with
values bitwise equal and dims, dtypes, units and attributes identical.
"""

from __future__ import annotations

import datetime
import json
import os
import platform
from collections.abc import Mapping, Sequence
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path

import numpy as np
import xarray as xr

from ._hashing import model_hash, organ_hashes, parameter_hash
from ._scenario import Scenario
from ._simulate import Solution, Status
from ._twin import Twin
from ._units import TIME_UNIT


def _version(package: str) -> str:
    try:
        return version(package)
    except PackageNotFoundError:
        return "not installed"


def provenance(twin: Twin | None = None, scenario: Scenario | None = None,
               solution: Solution | None = None, seed: int | None = None) -> dict[str, str]:
    """The provenance attributes vht writes on every result (all values are strings)."""
    attrs = {
        "vht_version": _version("vht"),
        "jax_version": _version("jax"),
        "diffrax_version": _version("diffrax"),
        "equinox_version": _version("equinox"),
        "python_version": platform.python_version(),
        "created_utc": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
        "time_unit": TIME_UNIT,
        "seed": "none" if seed is None else str(int(seed)),
    }
    if twin is not None:
        attrs["model_hash"] = model_hash(twin)
        attrs["parameter_hash"] = parameter_hash(twin)
        attrs["organ_hashes"] = json.dumps(organ_hashes(twin))
        attrs["organs"] = json.dumps({n: f"{type(o).__module__}.{type(o).__qualname__}"
                                      for n, o in zip(twin.names, twin.organs)})
        attrs["connections"] = json.dumps([[c.source, c.target] for c in twin.connections])
        if twin.origin is not None:
            attrs["twin_builder"], attrs["twin_builder_args"] = twin.origin
    if scenario is not None:
        attrs["scenario"] = json.dumps(scenario.describe())
    if solution is not None:
        for key, value in solution.config:
            attrs[f"solver_{key}" if not key.startswith("solver") else key] = value
    return attrs


def to_dataset(
    solution: Solution,
    twin: Twin | None = None,
    scenario: Scenario | None = None,
    *,
    batch_dims: Sequence[str] | None = None,
    coords: Mapping[str, Sequence] | None = None,
    seed: int | None = None,
    attrs: Mapping[str, str] | None = None,
) -> xr.Dataset:
    """Convert a ``Solution`` (of one run or a vmapped batch) to an ``xarray.Dataset``.

    ``batch_dims`` names the leading axes of a batched solution (default ``("member",)`` for
    one axis); ``coords`` labels them (for example ``{"arm": ["no treatment", "fluids"]}``).
    """
    ys = np.asarray(solution.ys)
    n_batch = ys.ndim - 2
    if batch_dims is None:
        batch_dims = () if n_batch == 0 else ("member",) if n_batch == 1 else tuple(
            f"batch{i}" for i in range(n_batch))
    batch_dims = tuple(batch_dims)
    if len(batch_dims) != n_batch:
        raise ValueError(f"the solution has {n_batch} batch axes but batch_dims={batch_dims}")
    ts = np.asarray(solution.ts)
    if ts.ndim > 1:  # vmapped: save times were broadcast; they must agree across the batch
        flat = ts.reshape(-1, ts.shape[-1])
        if not np.all(flat == flat[0]):
            raise ValueError("members of the batch were saved at different times; a Dataset "
                             "needs one time axis")
        ts = flat[0]
    dims = (*batch_dims, "time")
    data_vars = {}
    for i, (name, unit) in enumerate(zip(solution.state_names, solution.state_units)):
        data_vars[name] = (dims, ys[..., i], {"units": unit, "kind": "state"})
    signals = np.asarray(solution.signals)
    for j, (name, unit) in enumerate(zip(solution.signal_names, solution.signal_units)):
        data_vars[name] = (dims, signals[..., j], {"units": unit, "kind": "signal"})
    data_vars["status"] = (batch_dims, np.asarray(solution.status, dtype=np.int32), {
        "units": "1", "kind": "status",
        "flag_values": np.array([s.value for s in Status], dtype=np.int32),
        "flag_meanings": " ".join(s.name.lower() for s in Status)})
    data_vars["n_steps"] = (batch_dims, np.asarray(solution.n_steps, dtype=np.int64),
                            {"units": "1", "kind": "diagnostic"})
    if twin is not None:
        info = twin.parameter_info()
        for name, value in twin.parameters().items():
            value = np.asarray(value)
            param_dims = batch_dims[: value.ndim] if value.ndim <= n_batch else None
            if param_dims is None:
                raise ValueError(f"parameter {name} has more axes than the solution's batch")
            data_vars[f"parameter:{name}"] = (param_dims, value, {
                "units": info[name].unit, "kind": "parameter"})
    all_coords = {"time": ("time", ts, {"units": TIME_UNIT})}
    for dim, values in (coords or {}).items():
        if dim not in batch_dims:
            raise ValueError(f"coords names {dim!r}, which is not a batch dim {batch_dims}")
        all_coords[dim] = (dim, np.asarray(values))
    dataset = xr.Dataset(data_vars, coords=all_coords)
    dataset.attrs.update(provenance(twin, scenario, solution, seed))
    dataset.attrs.update(dict(attrs or {}))
    return dataset


def save_dataset(dataset: xr.Dataset, path: str | os.PathLike) -> Path:
    """Write ``dataset`` to an HDF5 (netCDF-4) file, atomically. Returns the path."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.with_name(f".{path.name}.partial-{os.getpid()}")
    try:
        dataset.to_netcdf(temporary, engine="h5netcdf")
        os.replace(temporary, path)
    finally:
        temporary.unlink(missing_ok=True)
    return path


def load_dataset(path: str | os.PathLike) -> xr.Dataset:
    """Read a Dataset written by ``save_dataset`` fully into memory (no time decoding: vht
    time is a plain number of minutes)."""
    return xr.load_dataset(path, engine="h5netcdf", decode_times=False, decode_timedelta=False)
