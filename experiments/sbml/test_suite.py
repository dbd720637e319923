"""Conformance harness: vht.import_sbml on the SBML Test Suite's 687 ODE cases.

    python -m experiments.sbml.test_suite [--cases 00001 00002 ...] [--workers 2]
                                          [--subset] [--write]

Each case is imported (the file of the highest SBML level it ships, Level 3 Version 2 for
most), simulated over the case's own time course with ``vht.simulate`` (Tsit5 at rtol 1e-10,
atol 1e-13; Kvaerno5 when Tsit5 runs out of steps), and every listed variable is compared with
the expected results under the case's own tolerances: a point passes when
|computed - expected| <= absolute + relative * |expected| (non-finite expected values must be
matched exactly). Amount and concentration columns follow the case's settings.

A case fails as "unsupported" when the importer refuses a construct (an ``UnsupportedSBML``
naming it), as "error" when anything else raises, and as "mismatch" with the first variable
and time that differ. ``--write`` stores the per-case outcomes in
``experiments/sbml/results/test_suite.json`` and a summary table in ``test_suite.md``;
``--subset`` runs the stratified subset that CI runs (``SUBSET`` below).

Every case is a new model, so each compiles its own programs (1-3 s on 2 cores): the full run
spreads the cases over ``--workers`` processes.
"""

from __future__ import annotations

import argparse
import concurrent.futures
import csv
import json
import os
import re
import tarfile
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[1]
ARCHIVE = ROOT / "tests" / "data" / "sbml_test_suite" / "sbml_test_suite_ode_cases.tgz"
RESULTS = HERE / "results"
LEVELS = ("l3v2", "l3v1", "l2v5", "l2v4", "l2v3", "l2v2", "l2v1")


def unpack(directory: Path | None = None) -> Path:
    """The cases, unpacked from the project's archive (into a temporary folder by default)."""
    directory = Path(directory or tempfile.mkdtemp(prefix="vht_sbml_suite_"))
    marker = directory / ".unpacked"
    if not marker.exists():
        with tarfile.open(ARCHIVE) as archive:
            archive.extractall(directory, filter="data")
        marker.write_text("ok\n")
    return directory


def case_ids(directory: Path) -> list[str]:
    return sorted(p.name for p in directory.iterdir() if p.is_dir() and p.name.isdigit())


def settings(case_dir: Path) -> dict:
    """A case's settings file as a dict (lists split, numbers parsed)."""
    out = {}
    for line in (case_dir / f"{case_dir.name}-settings.txt").read_text().splitlines():
        if ":" not in line:
            continue
        key, value = (part.strip() for part in line.split(":", 1))
        out[key] = value
    for key in ("variables", "amount", "concentration"):
        out[key] = [v.strip() for v in out.get(key, "").split(",") if v.strip()]
    for key in ("start", "duration", "absolute", "relative"):
        out[key] = float(out[key])
    out["steps"] = int(out["steps"])
    return out


def tags(case_dir: Path) -> dict[str, list[str]]:
    """The component and test tags of a case's description."""
    text = (case_dir / f"{case_dir.name}-model.m").read_text()
    out = {}
    for key in ("componentTags", "testTags"):
        match = re.search(rf"{key}:\s*(.*)", text)
        out[key] = [t.strip() for t in match.group(1).split(",") if t.strip()] if match else []
    return out


def model_file(case_dir: Path) -> Path:
    for level in LEVELS:
        path = case_dir / f"{case_dir.name}-sbml-{level}.xml"
        if path.exists():
            return path
    raise FileNotFoundError(f"no SBML file in {case_dir}")


def expected(case_dir: Path) -> tuple[list[float], dict[str, list[float]]]:
    with open(case_dir / f"{case_dir.name}-results.csv", newline="") as handle:
        header, *rows = list(csv.reader(handle))
    # the first column is time; the others by position (a variable may be named "Time")
    times = [float(r[0]) for r in rows]
    columns = {name.strip(): [float(r[k]) for r in rows]
               for k, name in enumerate(header) if k > 0}
    return times, columns


def run_case(case_dir: Path) -> dict:
    """Import, simulate and compare one case (see the module docstring)."""
    import diffrax
    import jax
    import numpy as np

    jax.config.update("jax_enable_x64", True)
    import vht

    started = time.perf_counter()
    case = {"case": case_dir.name, **tags(case_dir)}
    try:
        conf = settings(case_dir)
        organ = vht.import_sbml(model_file(case_dir), time_unit="min")
        twin = vht.Twin({"model": organ})
        # the results' own times (the settings' time course, as the results file rounds it)
        ts = np.asarray(expected(case_dir)[0])
        names = [n.split(".", 1)[1] for n in twin.state_names]
        if not names:  # every symbol is assigned: a function of time alone
            values = jax.vmap(lambda t: organ.symbol_values(t, {}))(jax.numpy.asarray(ts))
            return _compare(case, case_dir, conf, ts, values, started, organ.spec.species)
        solution = None
        for solver in (diffrax.Tsit5(), diffrax.Kvaerno5()):
            solution = vht.simulate(twin, ts=ts, t1=float(ts[-1]), solver=solver, rtol=1e-10,
                                    atol=1e-13, max_steps=200_000, throw=False,
                                    check_bounds=False)
            if int(solution.status) == vht.Status.OK:
                break
        if int(solution.status) != vht.Status.OK:
            raise RuntimeError(f"the solver failed: status {vht.Status(int(solution.status)).name}")
        values = jax.jit(jax.vmap(lambda t, y: organ.symbol_values(
            t, dict(zip(names, y)))))(solution.ts, solution.ys)
        return _compare(case, case_dir, conf, ts, values, started, organ.spec.species)
    except vht.UnsupportedSBML as error:
        case.update(outcome="unsupported", reason=str(error)[:300])
    except Exception as error:  # noqa: BLE001 - every failure is reported, none stops the run
        case.update(outcome="error", reason=f"{type(error).__name__}: {str(error)[:300]}")
    case["seconds"] = round(time.perf_counter() - started, 2)
    return case


def _compare(case, case_dir, conf, ts, values, started, species) -> dict:
    """Every listed variable against the expected results, with the case's tolerances."""
    import numpy as np

    try:
        times, columns = expected(case_dir)
        if len(times) != conf["steps"] + 1:
            raise RuntimeError("the results' times differ from the settings' time course")
        species = {sid: (compartment, concentration) for sid, compartment, concentration
                   in species}
        worst = 0.0
        for variable in conf["variables"]:
            key = variable + ":amount" if variable in conf["amount"] else variable
            key = key if key in values else variable  # the "amount" of a parameter: itself
            if key not in values:
                raise RuntimeError(f"variable {variable!r} is not a symbol of the model")
            got = np.asarray(values[key], dtype=float)
            if variable in conf["concentration"] and variable in species and not \
                    species[variable][1]:  # a substance-only species asked as concentration
                got = got / np.asarray(values[species[variable][0]], dtype=float)
            want = np.asarray(columns[variable], dtype=float)
            finite = np.isfinite(want)
            same_nonfinite = np.all((got[~finite] == want[~finite]) |
                                    (np.isnan(got[~finite]) & np.isnan(want[~finite])))
            error = np.abs(got[finite] - want[finite])
            bound = conf["absolute"] + conf["relative"] * np.abs(want[finite])
            if not same_nonfinite or np.any(~(error <= bound)):
                bad = int(np.argmax(~(np.abs(got - want) <= conf["absolute"] + conf["relative"]
                                     * np.abs(want))))
                case.update(outcome="mismatch", variable=variable, time=float(ts[bad]),
                            got=float(got[bad]), expected=float(want[bad]))
                break
            if error.size:
                worst = max(worst, float(np.max(error / bound)))
        else:
            case.update(outcome="pass", worst_error_over_tolerance=worst)
    except Exception as error:  # noqa: BLE001 - every failure is reported, none stops the run
        case.update(outcome="error", reason=f"{type(error).__name__}: {str(error)[:300]}")
    case["seconds"] = round(time.perf_counter() - started, 2)
    return case


def _run_many(directory: Path, ids: list[str], progress: bool) -> list[dict]:
    out = []
    for k, case in enumerate(ids):
        out.append(run_case(directory / case))
        if progress:
            print(f"  {case}: {out[-1]['outcome']} ({out[-1]['seconds']} s) [{k + 1}/"
                  f"{len(ids)}]", flush=True)
    return out


def run_all(ids: list[str] | None = None, workers: int = 2, directory: Path | None = None,
            progress: bool = True) -> list[dict]:
    """Run cases (default all) in ``workers`` processes; the outcomes in case order."""
    directory = unpack(directory)
    ids = ids or case_ids(directory)
    if workers <= 1:
        return _run_many(directory, ids, progress)
    shares = [ids[k::workers] for k in range(workers)]
    with concurrent.futures.ProcessPoolExecutor(workers) as pool:
        parts = list(pool.map(_run_many, [directory] * workers, shares, [progress] * workers))
    return sorted((c for part in parts for c in part), key=lambda c: c["case"])


def summary(outcomes: list[dict]) -> dict:
    counts = {}
    for case in outcomes:
        counts[case["outcome"]] = counts.get(case["outcome"], 0) + 1
    return {"cases": len(outcomes), "passed": counts.get("pass", 0), "counts": counts,
            "seconds": round(sum(c["seconds"] for c in outcomes), 1)}


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cases", nargs="*", help="case ids (default: all 687)")
    parser.add_argument("--subset", action="store_true", help="the stratified CI subset")
    parser.add_argument("--workers", type=int, default=min(2, os.cpu_count() or 1))
    parser.add_argument("--write", action="store_true", help="store the outcomes")
    args = parser.parse_args(argv)
    ids = args.cases or (list(SUBSET) if args.subset else None)
    started = time.perf_counter()
    outcomes = run_all(ids, workers=args.workers)
    result = summary(outcomes)
    result["wall_seconds"] = round(time.perf_counter() - started, 1)
    print(json.dumps(result, indent=2))
    for case in outcomes:
        if case["outcome"] != "pass":
            detail = case.get("reason") or {k: case.get(k) for k in ("variable", "time", "got",
                                                                      "expected")}
            print(f"{case['case']} {case['outcome']}: {detail}")
    if args.write:
        RESULTS.mkdir(parents=True, exist_ok=True)
        (RESULTS / "test_suite.json").write_text(json.dumps(
            {"summary": result, "cases": outcomes}, indent=1) + "\n")
    return result


SUBSET: tuple[str, ...] = ()
"""The stratified subset CI runs (filled in from a full run; see ``--subset``)."""


if __name__ == "__main__":
    main()
