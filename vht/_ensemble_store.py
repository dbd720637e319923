"""On-disk state of an ensemble sweep: committed chunks, the assembled file, the manifest.

Crash safety rests on one rule: a file is only ever seen under its final name once it is
complete. Every file is written to a temporary name in the same directory, flushed and
fsynced, and then renamed (``os.replace``, atomic on POSIX). So after a kill at any instant:

- ``<output>.parts/chunk-NNNNNN.h5`` exists exactly for the chunks that were committed; a
  chunk in flight left at most a ``.tmp`` file, which the next run removes and recomputes;
- ``<output>`` (the single HDF5 file readers open) exists only complete, with every member;
- ``<output>.manifest.json`` is written last: its presence says the sweep is finished.

The parts directory also holds ``sweep.json`` (the sweep's description and hash: a rerun of a
different sweep into the same place is refused) and ``journal.jsonl`` (one line per chunk
computation started, for accounting of recomputed work).

Fault injection, for crash tests: ``VHT_SWEEP_FAULT="point"`` or ``"point:n"`` makes the
process kill itself with SIGKILL the n-th time (default first) it reaches ``point``, one of
``FAULT_POINTS``. It is a real SIGKILL, indistinguishable from a node failure.
"""

from __future__ import annotations

import json
import os
import signal
from collections.abc import Mapping, Sequence
from pathlib import Path

import h5py
import numpy as np

from ._simulate import Status

PART_FORMAT = "vht-sweep-chunk"
RESULT_FORMAT = "vht-sweep"

FAULT_POINTS = (
    "start",      # after set-up, before the first chunk
    "compute",    # a chunk's program dispatched, its results not yet back
    "write",      # half-way through writing a chunk's file
    "commit",     # a chunk's file written and fsynced, not yet renamed into place
    "assemble",   # half-way through writing the assembled result
    "manifest",   # the result in place, the manifest not yet written
)
_fault_counts: dict[str, int] = {}


def fault(point: str) -> None:
    """SIGKILL this process here if ``VHT_SWEEP_FAULT`` asks for it (see the module doc)."""
    request = os.environ.get("VHT_SWEEP_FAULT")
    if not request:
        return
    name, _, count = request.partition(":")
    if name not in FAULT_POINTS:
        raise ValueError(f"VHT_SWEEP_FAULT={request!r}: unknown point; one of {FAULT_POINTS}")
    if name != point:
        return
    _fault_counts[point] = _fault_counts.get(point, 0) + 1
    if _fault_counts[point] == int(count or 1):
        os.kill(os.getpid(), signal.SIGKILL)


def _fsync(path: Path) -> None:
    """Flush a file's (or a directory's entries') data to disk."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _temporary(path: Path) -> Path:
    return path.with_name(f".{path.name}.{os.getpid()}.tmp")


def _commit(temporary: Path, path: Path, point: str | None = None) -> None:
    """Make ``temporary`` durable, then rename it to ``path`` (atomic)."""
    _fsync(temporary)
    if point is not None:
        fault(point)
    os.replace(temporary, path)
    _fsync(path.parent)


class SweepStore:
    """Paths and files of one sweep writing to ``output``."""

    def __init__(self, output: str | os.PathLike):
        self.output = Path(output)
        self.parts = self.output.with_name(self.output.name + ".parts")
        self.manifest = self.output.with_name(self.output.stem + ".manifest.json")
        self.description = self.parts / "sweep.json"
        self.journal = self.parts / "journal.jsonl"

    # -- the sweep's identity --------------------------------------------------------------

    def recorded_hash(self) -> str | None:
        """The hash of the sweep that owns this place on disk, or None if none does."""
        for source in (self.manifest, self.description):
            if source.exists():
                return json.loads(source.read_text())["sweep_hash"]
        if self.output.exists():
            with h5py.File(self.output, "r") as f:
                return str(f.attrs.get("sweep_hash", ""))
        return None

    def finished(self, sweep_hash: str) -> bool:
        return (self.manifest.exists() and self.output.exists()
                and json.loads(self.manifest.read_text())["sweep_hash"] == sweep_hash)

    def claim(self, sweep_hash: str, description: Mapping) -> None:
        """Create the parts directory for this sweep (rank 0 only)."""
        self.parts.mkdir(parents=True, exist_ok=True)
        if not self.description.exists():
            temporary = _temporary(self.description)
            temporary.write_text(json.dumps({"sweep_hash": sweep_hash, **description},
                                            indent=1))
            _commit(temporary, self.description)

    def remove_all(self) -> None:
        import shutil

        shutil.rmtree(self.parts, ignore_errors=True)
        self.output.unlink(missing_ok=True)
        self.manifest.unlink(missing_ok=True)

    # -- chunks ----------------------------------------------------------------------------

    def chunk_path(self, chunk: int) -> Path:
        return self.parts / f"chunk-{chunk:06d}.h5"

    def committed(self, chunk: int, sweep_hash: str) -> bool:
        path = self.chunk_path(chunk)
        if not path.exists():
            return False
        with h5py.File(path, "r") as f:
            return f.attrs.get("sweep_hash") == sweep_hash

    def remove_stale_temporaries(self, chunks: Sequence[int]) -> None:
        """Delete temporary files of these chunks, left by a killed run."""
        for chunk in chunks:
            for stale in self.parts.glob(f".{self.chunk_path(chunk).name}.*.tmp"):
                stale.unlink(missing_ok=True)

    def log_start(self, chunk: int, rank: int) -> None:
        line = json.dumps({"event": "start", "chunk": chunk, "rank": rank, "pid": os.getpid()})
        fd = os.open(self.journal, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
        try:
            os.write(fd, (line + "\n").encode())
        finally:
            os.close(fd)

    def journal_entries(self) -> list[dict]:
        if not self.journal.exists():
            return []
        return [json.loads(line) for line in self.journal.read_text().splitlines() if line]

    def write_chunk(self, chunk: int, sweep_hash: str, arrays: Mapping[str, np.ndarray]) -> None:
        """Write one chunk's results (only its real members) and commit it."""
        path = self.chunk_path(chunk)
        temporary = _temporary(path)
        with h5py.File(temporary, "w") as f:
            f.attrs["format"] = PART_FORMAT
            f.attrs["sweep_hash"] = sweep_hash
            f.attrs["chunk"] = chunk
            for i, (name, values) in enumerate(arrays.items()):
                f.create_dataset(name, data=values)
                if i == len(arrays) // 2:
                    f.flush()
                    fault("write")
        _commit(temporary, path, point="commit")

    def read_chunk(self, chunk: int) -> dict[str, np.ndarray]:
        with h5py.File(self.chunk_path(chunk), "r") as f:
            out = {}
            f.visititems(lambda name, obj: out.__setitem__(name, obj[()])
                         if isinstance(obj, h5py.Dataset) else None)
            return out

    # -- the result and the manifest --------------------------------------------------------

    def write_manifest(self, content: Mapping) -> None:
        temporary = _temporary(self.manifest)
        temporary.write_text(json.dumps(content, indent=1))
        _commit(temporary, self.manifest)


def status_counts(status: np.ndarray) -> dict[str, int]:
    """Runs per ``vht.Status`` name (only the codes that occur)."""
    codes, counts = np.unique(np.asarray(status), return_counts=True)
    return {Status(int(c)).name.lower(): int(n) for c, n in zip(codes, counts)}


def _quantile_block(values: np.ndarray, quantiles: np.ndarray) -> np.ndarray:
    """Quantiles over axis 0 ignoring NaN (failed members); NaN where no member is left."""
    out = np.full((quantiles.size, *values.shape[1:]), np.nan)
    finite = np.isfinite(values)
    any_finite = finite.any(axis=0)
    if any_finite.any():
        # nanquantile on the columns that have data only (all-NaN columns would warn)
        out[:, any_finite] = np.nanquantile(values[:, any_finite], quantiles, axis=0)
    return out


def assemble(store: SweepStore, layout: Mapping, attrs: Mapping[str, str],
             quantiles: Sequence[float], memory_bound: int) -> dict:
    """Copy every committed chunk into the one result file, chunk by chunk, add quantiles per
    arm and time, and rename it into place. Memory: one chunk plus one block of times at a
    time (at most ``memory_bound`` bytes for the quantiles). Returns summary counts."""
    import h5netcdf

    n, chunk_size, n_chunks = layout["members"], layout["chunk_size"], layout["n_chunks"]
    arms, ts = list(layout["arms"]), np.asarray(layout["time"])
    quantiles = np.asarray(quantiles, dtype=float)
    temporary = _temporary(store.output)
    status_total: dict[str, int] = {}
    accepted_draws = draws = 0
    with h5netcdf.File(temporary, "w") as f:
        f.dimensions = {"member": n, "arm": len(arms), "time": ts.size,
                        "quantile": quantiles.size}
        f.create_variable("member", ("member",), data=np.arange(n, dtype=np.int64))
        arm = f.create_variable("arm", ("arm",), dtype=h5py.string_dtype())
        arm[:] = np.array(arms, dtype=object)
        time = f.create_variable("time", ("time",), data=ts)
        time.attrs["units"] = layout["time_unit"]
        f.create_variable("quantile", ("quantile",), data=quantiles)
        # HDF5 chunks of (members of one sweep chunk, one arm, up to 64 times): writes touch
        # whole chunks, and the quantiles' time blocks read only the times they need.
        storage = (min(chunk_size, n), 1, min(ts.size, 64))
        variables = {}
        for name, unit, kind in layout["outputs"]:
            variables[f"output/{name}"] = v = f.create_variable(
                name, ("member", "arm", "time"), dtype="f8", chunks=storage, fillvalue=np.nan)
            v.attrs.update({"units": unit, "kind": kind})
        flags = {"flag_values": np.array([s.value for s in Status], dtype=np.int32),
                 "flag_meanings": " ".join(s.name.lower() for s in Status)}
        variables["status"] = v = f.create_variable("status", ("member", "arm"), dtype="i4")
        v.attrs.update({"units": "1", "kind": "status", **flags})
        variables["n_steps"] = v = f.create_variable("n_steps", ("member", "arm"), dtype="i8")
        v.attrs.update({"units": "1", "kind": "diagnostic"})
        for name, unit in layout["parameters"]:
            variables[f"parameter/{name}"] = v = f.create_variable(
                f"parameter:{name}", ("member",), dtype="f8")
            v.attrs.update({"units": unit, "kind": "parameter"})
        for name, unit in layout["covariates"]:
            variables[f"covariate/{name}"] = v = f.create_variable(
                f"covariate:{name}", ("member",), dtype="f8")
            v.attrs.update({"units": unit, "kind": "covariate"})
        variables["accepted"] = v = f.create_variable("accepted", ("member",), dtype="i1")
        v.attrs.update({"units": "1", "kind": "diagnostic",
                        "description": "1 if the member's draw passed the plausibility filter"})
        variables["attempts"] = v = f.create_variable("attempts", ("member",), dtype="i4")
        v.attrs.update({"units": "1", "kind": "diagnostic",
                        "description": "draws made until the member was accepted"})

        for chunk in range(n_chunks):
            part = store.read_chunk(chunk)
            members = part["member"]
            start, stop = int(members[0]), int(members[-1]) + 1
            if not np.array_equal(members, np.arange(start, stop)):
                raise RuntimeError(f"chunk {chunk} holds members {members}, not a contiguous run")
            for key, variable in variables.items():
                variable[start:stop] = part[key]
            for name, count in status_counts(part["status"]).items():
                status_total[name] = status_total.get(name, 0) + count
            accepted_draws += int(np.sum(part["accepted"]))
            draws += int(np.sum(part["attempts"]))
            if chunk == n_chunks // 2:
                f.flush()
                fault("assemble")

        # Quantiles per arm and time over the members that ran (NaN outputs are failures),
        # read in blocks of times so that memory stays within the bound whatever N is.
        block = max(1, int(memory_bound // (3 * 8 * max(n, 1))))
        for name, unit, _ in layout["outputs"]:
            source = f.variables[name]
            target = f.create_variable(f"quantile:{name}", ("quantile", "arm", "time"),
                                       dtype="f8")
            target.attrs.update({"units": unit, "kind": "summary",
                                 "description": f"quantiles of {name} over members with "
                                                "status ok, per arm and time"})
            for a in range(len(arms)):
                for t0 in range(0, ts.size, block):
                    t1 = min(t0 + block, ts.size)
                    target[:, a, t0:t1] = _quantile_block(source[:, a, t0:t1], quantiles)
        summary = {"status_counts": status_total, "accepted_draws": accepted_draws,
                   "draws": draws,
                   "acceptance_rate": accepted_draws / draws if draws else float("nan")}
        f.attrs.update(dict(attrs))
        f.attrs["format"] = RESULT_FORMAT
        f.attrs["acceptance_rate"] = summary["acceptance_rate"]
        f.attrs["status_counts"] = json.dumps(status_total)
    _commit(temporary, store.output)
    return summary
