"""Conformance harness: vht.import_sbml on the SBML Test Suite's 687 ODE cases.

    python -m experiments.sbml.conformance [--cases 00001 00002 ...] [--workers 2]
                                           [--write] [--record] [--per-case]

Each case is imported with ``vht.import_sbml`` (the file of the highest SBML level it ships,
Level 3 Version 2 for most), solved over the results' own time points with diffrax (Tsit5 at
rtol 1e-10, atol 1e-13; Kvaerno5 when Tsit5 cannot finish), and every listed variable is
compared with the expected results under the case's own tolerances: a point passes when
|computed - expected| <= absolute + relative * |expected| (non-finite expected values must be
matched exactly). Amount and concentration columns follow the case's settings.

A case fails as "unsupported" when the importer refuses a construct (an ``UnsupportedSBML``
naming it), as "error" when anything else raises, and as "mismatch" with the first variable
and time that differ. ``--write`` stores the per-case outcomes in
``experiments/sbml/results/conformance.json`` and a summary table in ``conformance.md``
(included in the docs); ``--record`` stores each batch's passing cases in
``tests/data/sbml_test_suite/recorded.json``, the counts ``tests/test_sbml_conformance.py``
holds CI to.

Every case is a new model: solved through its organ with ``vht.simulate`` (``--per-case``)
each compiles its own programs (2-3 s on 2 cores, 15 minutes for the suite). By default the
cases run in batches of ``--batch-size``, each batch one compiled program that interprets the
models' right-hand sides as tapes (``experiments/sbml/tape.py``; each tape checked against its
organ), spread over ``--workers`` processes.
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
RECORD = ROOT / "tests" / "data" / "sbml_test_suite" / "recorded.json"
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
    case.setdefault("seconds", round(time.perf_counter() - started, 2))
    return case


def prepare(case_dir: Path) -> dict:
    """Import a case and lower it to a tape, checked against the organ at the initial state:
    ``{"case": ...}`` with ``outcome`` set if it already failed, else the pieces to solve."""
    import jax
    import numpy as np

    jax.config.update("jax_enable_x64", True)
    import vht

    from .tape import lower

    started = time.perf_counter()
    case = {"case": case_dir.name, **tags(case_dir)}
    try:
        conf = settings(case_dir)
        organ = vht.import_sbml(model_file(case_dir), time_unit="min")
        tape = lower(organ)
        state = organ.initial_state()
        y0 = np.array([float(state[s.name]) for s in organ.states])
        ours = np.array([float(v) for v in organ.rates(0.0, state, {}).values()])
        times, _ = expected(case_dir)
        case["_prepared"] = (conf, tape, y0, np.asarray(times), organ.spec.species, ours)
    except vht.UnsupportedSBML as error:
        case.update(outcome="unsupported", reason=str(error)[:300])
    except Exception as error:  # noqa: BLE001 - every failure is reported, none stops the run
        case.update(outcome="error", reason=f"{type(error).__name__}: {str(error)[:300]}")
    case["seconds"] = round(time.perf_counter() - started, 2)
    return case


def _symbol_values(tape, registers, species) -> dict:
    values = {key: registers[:, reg] for key, reg in tape.index.items() if isinstance(key, str)}
    for sid, compartment, concentration in species:
        if sid + ":amount" not in values:
            values[sid + ":amount"] = (values[sid] * values[compartment] if concentration
                                       else values[sid])
    return values


def solve_batch(directory: Path, ids: list[str], progress: bool = False) -> list[dict]:
    """Prepare cases, solve all of them in one compiled program per solver (Tsit5, then
    Kvaerno5 for those Tsit5 could not finish) and compare."""
    import numpy as np

    from .tape import run_tapes

    cases = [prepare(directory / case) for case in ids]
    pending = [c for c in cases if "_prepared" in c]
    for solver in ("Tsit5", "Kvaerno5"):
        if not pending:
            break
        started = time.perf_counter()
        registers, ok, initial_rates = run_tapes([c["_prepared"][1] for c in pending],
                                                 [c["_prepared"][2] for c in pending],
                                                 [c["_prepared"][3] for c in pending],
                                                 solver=solver)
        share = (time.perf_counter() - started) / len(pending)
        retry = []
        for case, regs, good, theirs in zip(pending, registers, ok, initial_rates):
            case["seconds"] = round(case["seconds"] + share, 2)
            ours = case["_prepared"][5]
            same = (np.isclose(ours, theirs, rtol=1e-12, atol=0.0) |
                    (np.isnan(ours) & np.isnan(theirs)) | (ours == theirs))
            if not np.all(same):
                case.pop("_prepared")
                case.update(outcome="error", reason="the tape's right-hand side differs from "
                            f"the organ's at the initial state: {theirs} vs {ours}")
                continue
            if not good and solver == "Tsit5":
                retry.append(case)
                continue
            conf, tape, _, ts, species, _ = case.pop("_prepared")
            if not good:
                case.update(outcome="error", reason="the solver failed (Tsit5 and Kvaerno5)")
                continue
            case["solver"] = solver
            _compare(case, directory / case["case"], conf, ts,
                     _symbol_values(tape, regs, species), time.perf_counter(), species)
        if progress:
            print(f"  {len(pending)} cases with {solver}: {share * len(pending):.1f} s",
                  flush=True)
        pending = retry
    for case in cases:
        case.pop("_prepared", None)
    return cases


def _run_many(directory: Path, ids: list[str], progress: bool) -> list[dict]:
    out = []
    for k, case in enumerate(ids):
        out.append(run_case(directory / case))
        if progress:
            print(f"  {case}: {out[-1]['outcome']} ({out[-1]['seconds']} s) [{k + 1}/"
                  f"{len(ids)}]", flush=True)
    return out


def run_all(ids: list[str] | None = None, workers: int = 2, directory: Path | None = None,
            progress: bool = True, per_case: bool = False, batch_size: int = 120) -> list[dict]:
    """Run cases (default all) in ``workers`` processes; the outcomes in case order.

    Batched (default): cases in batches of ``batch_size``, each batch one compiled solve of
    its models' tapes. ``per_case``: each case imported and solved by ``vht.simulate`` on its
    own organ (a compilation per case: the reference path, slower)."""
    directory = unpack(directory)
    ids = ids or case_ids(directory)
    if per_case:
        work, groups = _run_many, [ids[k::workers] for k in range(workers)]
    else:
        work = solve_batch
        groups = [ids[k:k + batch_size] for k in range(0, len(ids), batch_size)]
    if workers <= 1 or len(groups) == 1:
        parts = [work(directory, group, progress) for group in groups]
    else:
        with concurrent.futures.ProcessPoolExecutor(workers) as pool:
            parts = list(pool.map(work, [directory] * len(groups), groups,
                                  [progress] * len(groups)))
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
    parser.add_argument("--workers", type=int, default=min(2, os.cpu_count() or 1))
    parser.add_argument("--write", action="store_true", help="store the outcomes")
    parser.add_argument("--per-case", action="store_true",
                        help="solve each case with vht.simulate on its organ (one compilation "
                        "per case) instead of batched tapes")
    parser.add_argument("--batch-size", type=int, default=120)
    parser.add_argument("--record", action="store_true",
                        help="record each batch's passing cases for tests/test_sbml_conformance"
                        ".py (the counts CI must keep)")
    args = parser.parse_args(argv)
    ids = args.cases or None
    started = time.perf_counter()
    outcomes = run_all(ids, workers=args.workers, per_case=args.per_case,
                       batch_size=args.batch_size)
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
        (RESULTS / "conformance.json").write_text(json.dumps(
            {"summary": result, "cases": outcomes}, indent=1) + "\n")
        (RESULTS / "conformance.md").write_text(markdown(result, outcomes))
    if args.record:
        if ids is not None:
            raise SystemExit("--record needs the full run (no --cases, no --subset)")
        passed = {c["case"] for c in outcomes if c["outcome"] == "pass"}
        every = [c["case"] for c in outcomes]
        batches = [every[k:k + args.batch_size] for k in range(0, len(every), args.batch_size)]
        RECORD.write_text(json.dumps({"note": "written by python -m experiments.sbml."
                                      "conformance --record", "passed": len(passed),
                                      "batches": [{"cases": b, "passed": [c for c in b
                                                                          if c in passed]}
                                                  for b in batches]}, indent=1) + "\n")
    return result


def markdown(result: dict, outcomes: list[dict]) -> str:
    """The summary table of a run, for the docs."""
    lines = [f"**{result['passed']} of {result['cases']} cases pass** "
             f"({result.get('wall_seconds', '-')} s wall on this machine).", "",
             "| outcome | cases |", "|---|---|"]
    lines += [f"| {k} | {v} |" for k, v in sorted(result["counts"].items())]
    failing = [c for c in outcomes if c["outcome"] != "pass"]
    if failing:
        lines += ["", "| case | outcome | why |", "|---|---|---|"]
        for c in failing:
            why = c.get("reason") or (f"{c.get('variable')} at t = {c.get('time')}: "
                                      f"{c.get('got')} instead of {c.get('expected')}")
            lines.append(f"| {c['case']} | {c['outcome']} | {str(why).replace('|', '/')} |")
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    main()
