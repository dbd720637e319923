"""Twin files: a calibrated twin on disk (HDF5), rebuilt exactly or refused.

A twin file holds what rebuilds the twin and what it was:

- ``attrs``: format, vht version, builder (``"module:function"``) and its keyword arguments
  (JSON), model hash, organ hashes, parameter hash, creation time, free-form metadata (JSON);
- ``parameters/<organ.name>``: every parameter value, with ``unit``, bounds and description;
- ``posterior/<organ.name>`` (optional): samples with a leading ``sample`` axis, for
  predictions with uncertainty.

Calibration writes it, what-if analyses read it. ``load_twin`` calls the builder to get the
twin's structure, refuses a file whose organ hashes differ (naming the organ), then sets the
stored values. A twin is rebuildable when it was made by a function decorated with
``@vht.builder``, which records the function and its arguments on the twin.
"""

from __future__ import annotations

import datetime
import functools
import importlib
import inspect
import json
import os
from collections.abc import Callable, Mapping
from pathlib import Path

import h5py
import jax.numpy as jnp
import numpy as np

from ._hashing import hash_arrays, model_hash, organ_hashes, parameter_hash
from ._twin import Twin

FORMAT = "vht-twin"
FORMAT_VERSION = 1


def builder(function: Callable[..., Twin]) -> Callable[..., Twin]:
    """Decorate a function that builds a ``Twin`` so that twin files can rebuild it.

    The function must be importable (module level) and take JSON-serialisable arguments.

    ```python
    @vht.builder
    def oral_pk_twin(compartments: int = 1) -> vht.Twin: ...
    ```
    """
    signature = inspect.signature(function)
    qualified = f"{function.__module__}:{function.__qualname__}"
    if "<locals>" in qualified:
        raise ValueError(f"builder {qualified} must be defined at module level to be importable")

    @functools.wraps(function)
    def wrapper(*args, **kwargs):
        bound = signature.bind(*args, **kwargs)
        bound.apply_defaults()
        try:
            arguments = json.dumps(dict(bound.arguments), sort_keys=True)
        except TypeError as error:
            raise ValueError(f"builder {qualified}: arguments must be JSON-serialisable "
                             f"({error})") from None
        twin = function(*args, **kwargs)
        if not isinstance(twin, Twin):
            raise ValueError(f"builder {qualified} returned {type(twin).__name__}, not a Twin")
        return Twin(list(zip(twin.names, twin.organs)),
                    [(c.source, c.target) for c in twin.connections],
                    origin=(qualified, arguments))

    wrapper.vht_builder = qualified
    return wrapper


def _import_builder(qualified: str) -> Callable[..., Twin]:
    module_name, _, attribute = qualified.partition(":")
    try:
        target = importlib.import_module(module_name)
        for part in attribute.split("."):
            target = getattr(target, part)
    except (ImportError, AttributeError) as error:
        raise ValueError(f"twin file names builder {qualified!r}, which cannot be imported: "
                         f"{error}") from None
    return target


def _atomic_h5(path: Path):
    path.parent.mkdir(parents=True, exist_ok=True)
    return path.with_name(f".{path.name}.partial-{os.getpid()}")


def save_twin(
    path: str | os.PathLike,
    twin: Twin,
    *,
    posterior: Mapping[str, np.ndarray] | None = None,
    metadata: Mapping | None = None,
) -> Path:
    """Write ``twin`` (built by a ``@vht.builder`` function) to an HDF5 twin file.

    ``posterior`` maps parameter names (``"organ.name"``) to samples with a leading sample
    axis; ``metadata`` is any JSON-serialisable record (the fit report, the data set).
    """
    if twin.origin is None:
        raise ValueError("this twin was not made by a @vht.builder function, so a file could not "
                         "rebuild it: build it through a decorated builder")
    path = Path(path)
    info = twin.parameter_info()
    values = {k: np.asarray(v) for k, v in twin.parameters().items()}
    for name, value in values.items():
        if value.ndim:
            raise ValueError(f"parameter {name} has shape {value.shape}: a twin file holds one "
                             "twin (unbatched parameters); put samples in posterior=")
    temporary = _atomic_h5(path)
    try:
        with h5py.File(temporary, "w") as f:
            f.attrs.update({
                "format": FORMAT, "format_version": FORMAT_VERSION,
                "vht_version": _vht_version(),
                "builder": twin.origin[0], "builder_args": twin.origin[1],
                "model_hash": model_hash(twin), "organ_hashes": json.dumps(organ_hashes(twin)),
                "parameter_hash": parameter_hash(twin),
                "created_utc": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
                "metadata": json.dumps(dict(metadata or {}), default=str),
            })
            group = f.create_group("parameters")
            for name, value in values.items():
                dataset = group.create_dataset(name, data=value)
                dataset.attrs.update({"unit": info[name].unit, "lower": info[name].lower,
                                      "upper": info[name].upper,
                                      "description": info[name].description})
            if posterior:
                samples = f.create_group("posterior")
                for name, value in posterior.items():
                    if name not in info:
                        raise ValueError(f"posterior names unknown parameter {name!r}")
                    samples.create_dataset(name, data=np.asarray(value)).attrs["unit"] = \
                        info[name].unit
        os.replace(temporary, path)
    finally:
        temporary.unlink(missing_ok=True)
    return path


def _vht_version() -> str:
    from . import __version__

    return __version__


def _read(path: Path) -> tuple[dict, dict[str, np.ndarray], dict[str, np.ndarray] | None]:
    with h5py.File(path, "r") as f:
        attrs = {k: (v.decode() if isinstance(v, bytes) else v) for k, v in f.attrs.items()}
        if attrs.get("format") != FORMAT:
            raise ValueError(f"{path} is not a vht twin file (format {attrs.get('format')!r})")
        if int(attrs.get("format_version", -1)) > FORMAT_VERSION:
            raise ValueError(f"{path} has twin-file format {attrs['format_version']}; this vht "
                             f"reads up to {FORMAT_VERSION}: upgrade vht")
        parameters = {name: f["parameters"][name][()] for name in f["parameters"]}
        posterior = ({name: f["posterior"][name][()] for name in f["posterior"]}
                     if "posterior" in f else None)
    return attrs, parameters, posterior


def load_twin(path: str | os.PathLike) -> Twin:
    """Rebuild the twin stored in a twin file; refuse one whose structure differs from what
    this code builds, naming the organ that differs."""
    path = Path(path)
    attrs, parameters, _ = _read(path)
    build = _import_builder(attrs["builder"])
    twin = build(**json.loads(attrs["builder_args"]))
    stored = json.loads(attrs["organ_hashes"])
    current = organ_hashes(twin)
    for name in stored:
        if name not in current:
            raise ValueError(f"{path}: organ {name!r} of the file is missing from the twin that "
                             f"{attrs['builder']} builds now")
        if stored[name] != current[name]:
            raise ValueError(f"{path}: organ {name!r} ({type(twin[name]).__name__}) differs "
                             "from the one that wrote the file (its equations, ports, parameters "
                             "or units changed): the file's model hash does not match")
    for name in current:
        if name not in stored:
            raise ValueError(f"{path}: organ {name!r} is new in the twin that "
                             f"{attrs['builder']} builds now; the file does not have it")
    if model_hash(twin) != attrs["model_hash"]:
        raise ValueError(f"{path}: the organs match but the connections differ from the file's "
                         "(model hash mismatch)")
    missing = set(twin.parameters()) - set(parameters)
    if missing:
        raise ValueError(f"{path}: no stored value for parameters {sorted(missing)}")
    ordered = {name: parameters[name] for name in twin.parameters()}  # declaration order
    if hash_arrays(ordered) != attrs["parameter_hash"]:
        raise ValueError(f"{path}: stored parameter values do not match their hash "
                         "(the file is corrupt or was edited)")
    return twin.replace({k: jnp.asarray(v) for k, v in parameters.items()})


def load_posterior(path: str | os.PathLike) -> dict[str, np.ndarray] | None:
    """The posterior samples stored in a twin file, or None if it has none."""
    return _read(Path(path))[2]
