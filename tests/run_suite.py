"""Run vht's whole test suite: the README's test command calls this script.

1. If OpenMPI is on this machine (``mpirun`` on PATH) and the ``mpi`` extra is missing, it is
   installed (with the pinned versions; ``CUDA_ROOT`` is set for mpi4jax's build when ``nvcc``
   is present). Without OpenMPI the MPI tests are skipped, and the summary says so.
2. The main leg: ``pytest -n 2 --dist loadgroup`` over tests/ (xdist; tests that share an
   expensive module fixture carry one ``xdist_group`` mark), with ``--durations=25``.
3. The MPI leg: ``mpirun -n 2 python -m pytest tests/mpi``, one report per rank.
4. A summary: counts per leg, skipped MPI tests, the measurements tests recorded
   (``record_property``), and the total wall time; ``.cache/reports/summary.json``.

Every process shares one persistent JAX compilation cache (``JAX_COMPILATION_CACHE_DIR``,
default ``.cache/jax``): compilation dominates the suite's time on 2 cores.

Exit status: non-zero if any test failed; with ``--require-mpi`` (or ``VHT_REQUIRE_MPI=1``, as
CI sets) also if any MPI test was skipped or the MPI leg ran no test on some rank.
"""

from __future__ import annotations

import argparse
import glob
import importlib.util
import json
import os
import shutil
import subprocess
import sys
import time
import xml.etree.ElementTree as ET
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
REPORTS = ROOT / ".cache" / "reports"
MPI_RANKS = 2


def _environment() -> dict[str, str]:
    env = dict(os.environ)
    env.setdefault("JAX_COMPILATION_CACHE_DIR", str(ROOT / ".cache" / "jax"))
    env.setdefault("JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS", "0.5")
    env.setdefault("MPLBACKEND", "Agg")
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), env.get("PYTHONPATH")]))
    Path(env["JAX_COMPILATION_CACHE_DIR"]).mkdir(parents=True, exist_ok=True)
    return env


def _ensure_mpi_extra(env: dict[str, str]) -> bool:
    """True when the MPI leg can run (OpenMPI present and mpi4jax importable)."""
    if shutil.which("mpirun") is None:
        print("MPI: OpenMPI is not installed (apt-get install -y libopenmpi-dev openmpi-bin); "
              "the MPI tests will be skipped.", flush=True)
        return False
    if importlib.util.find_spec("mpi4jax") is None:
        print("MPI: installing the 'mpi' extra (mpi4py, mpi4jax; mpi4jax builds from source) ...",
              flush=True)
        build_env = dict(env)
        if shutil.which("nvcc") and "CUDA_ROOT" not in build_env:
            build_env["CUDA_ROOT"] = "/usr/local/cuda"
        subprocess.run([sys.executable, "-m", "pip", "install", "-q", "-c",
                        str(ROOT / ".ci" / "constraints.txt"), "-e", f"{ROOT}[mpi]"],
                       check=True, env=build_env)
    return True


def _junit(paths: list[Path]) -> list[dict]:
    cases = []
    for path in paths:
        if not path.exists():
            continue
        for case in ET.parse(path).getroot().iter("testcase"):
            outcome = "passed"
            for child in case:
                if child.tag in ("failure", "error"):
                    outcome = "failed"
                elif child.tag == "skipped":
                    outcome = "skipped"
            properties = {p.get("name"): p.get("value") for p in case.iter("property")}
            cases.append({"id": f"{case.get('classname')}::{case.get('name')}",
                          "outcome": outcome, "time": float(case.get("time") or 0.0),
                          "properties": properties, "report": path.name})
    return cases


def _counts(cases: list[dict]) -> dict[str, int]:
    counts = {"passed": 0, "failed": 0, "skipped": 0}
    for case in cases:
        counts[case["outcome"]] += 1
    return counts


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--require-mpi", action="store_true",
                        default=os.environ.get("VHT_REQUIRE_MPI") == "1",
                        help="fail if any MPI test is skipped or the MPI leg runs no test")
    parser.add_argument("--workers", default="2", help="pytest-xdist workers (default 2)")
    parser.add_argument("pytest_args", nargs="*", help="extra arguments for the main leg")
    args = parser.parse_args(argv)

    started = time.perf_counter()
    env = _environment()
    REPORTS.mkdir(parents=True, exist_ok=True)
    for old in REPORTS.glob("*.xml"):
        old.unlink()
    mpi_ready = _ensure_mpi_extra(env)

    print("\n=== main leg: pytest -n", args.workers, "===", flush=True)
    main_report = REPORTS / "main.xml"
    main_leg = subprocess.run(
        [sys.executable, "-m", "pytest", "tests", "-n", args.workers, "--dist", "loadgroup",
         "--durations=25",
         f"--junitxml={main_report}", "-o", "junit_family=xunit1", *args.pytest_args],
        cwd=ROOT, env=env)

    mpi_reports: list[Path] = []
    mpi_returncode = 0
    if mpi_ready:
        print(f"\n=== MPI leg: mpirun -n {MPI_RANKS} pytest tests/mpi ===", flush=True)
        launcher = ["mpirun", "-n", str(MPI_RANKS)]
        if os.geteuid() == 0:
            launcher.append("--allow-run-as-root")
        if (os.cpu_count() or 1) < MPI_RANKS:
            launcher.append("--oversubscribe")
        rank_report = str(REPORTS / "mpi-rank-")
        command = (f'exec "{sys.executable}" -m pytest tests/mpi -p no:cacheprovider -q '
                   f'-o junit_family=xunit1 '
                   f'--junitxml="{rank_report}${{OMPI_COMM_WORLD_RANK}}.xml"')
        mpi_returncode = subprocess.run([*launcher, "bash", "-c", command], cwd=ROOT,
                                        env=env).returncode
        mpi_reports = [Path(p) for p in sorted(glob.glob(f"{rank_report}*.xml"))]

    main_cases = _junit([main_report])
    mpi_cases = _junit(mpi_reports)
    main_counts, mpi_counts = _counts(main_cases), _counts(mpi_cases)
    # MPI tests skipped under mpirun (the main leg may skip those that need two ranks; without
    # the mpi extra the MPI leg does not run at all, which the per-rank check below catches)
    skipped_mpi = [c["id"] for c in mpi_cases
                   if c["outcome"] == "skipped" and c["id"].startswith("tests.mpi.")]
    per_rank = {p.name: _counts(_junit([p]))["passed"] for p in mpi_reports}

    problems = []
    if main_leg.returncode != 0 or main_counts["failed"]:
        problems.append(f"main leg failed (exit {main_leg.returncode})")
    if mpi_returncode != 0 or mpi_counts["failed"]:
        problems.append(f"MPI leg failed (exit {mpi_returncode})")
    if args.require_mpi:
        if skipped_mpi:
            problems.append(f"{len(skipped_mpi)} MPI test(s) skipped: {skipped_mpi}")
        if len(per_rank) != MPI_RANKS or not all(per_rank.values()):
            problems.append(f"the mpirun -n {MPI_RANKS} leg ran no test on some rank: {per_rank}")

    measurements = {c["id"]: c["properties"] for c in main_cases + mpi_cases if c["properties"]}
    wall = time.perf_counter() - started
    summary = {"main": main_counts, "mpi": mpi_counts, "mpi_passed_per_rank": per_rank,
               "skipped_mpi_tests": skipped_mpi, "measurements": measurements,
               "wall_time_s": round(wall, 1), "problems": problems}
    (REPORTS / "summary.json").write_text(json.dumps(summary, indent=2))

    print("\n=== summary ===")
    print(f"main leg: {main_counts}")
    print(f"MPI leg:  {mpi_counts} per rank passed: {per_rank or 'not run'}")
    if measurements:
        print("measurements recorded by tests:")
        for test, values in measurements.items():
            shown = ", ".join(f"{k}={v}" for k, v in values.items())
            print(f"  {test}: {shown}")
    for problem in problems:
        print(f"PROBLEM: {problem}")
    print(f"total wall time: {wall:.1f} s")
    return 1 if problems else 0


if __name__ == "__main__":
    raise SystemExit(main())
