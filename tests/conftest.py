"""Test configuration: float64 everywhere and JAX's persistent compilation cache.

Compilation dominates the suite's time on 2 cores, so every test process (xdist workers,
subprocesses, MPI ranks) shares one on-disk cache: ``JAX_COMPILATION_CACHE_DIR`` if set (CI
sets it), else ``.cache/jax`` in the repository.
"""

import os
from pathlib import Path

import jax
import pytest

ROOT = Path(__file__).resolve().parents[1]
CACHE = os.environ.setdefault("JAX_COMPILATION_CACHE_DIR", str(ROOT / ".cache" / "jax"))
os.environ.setdefault("JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS", "0.5")

jax.config.update("jax_enable_x64", True)
jax.config.update("jax_compilation_cache_dir", CACHE)
jax.config.update("jax_persistent_cache_min_compile_time_secs",
                  float(os.environ["JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS"]))


@pytest.fixture
def record_property(record_property):
    """pytest's record_property, accepting NumPy and JAX scalars (xdist sends only plain
    Python values between processes)."""

    def record(name, value):
        if hasattr(value, "item") and getattr(value, "size", 1) == 1:
            value = value.item()
        record_property(name, value)

    return record
