"""The ``vht`` command.

    vht run EXPERIMENT [ARGS...]   run an experiment file or module (its main(argv))
    vht sweep EXPERIMENT           run (or resume) an ensemble sweep: the file's sweep()
                                   returns a vht.Sweep; the same under mpirun -n K / srun
    vht whatif SCENARIO.toml       compare treatment arms on one patient's twin: HDF5 results
                                   and a self-contained HTML report
    vht optimize SCENARIO.toml     find the [optimize] arm's doses by gradients through the
                                   simulation, then compare it with the other arms (as whatif)
    vht credibility CONTEXT.toml   a model's credibility for one context of use (ASME V&V 40):
                                   the 13 factors with their evidence, as HTML, Markdown, JSON
    vht info                       versions, devices, MPI
    vht inspect FILE               summarise a twin file or a results file

Every subcommand has ``--help``.
"""

from __future__ import annotations

import argparse
import importlib
import importlib.util
import json
import sys
import time
from pathlib import Path


def _load_experiment(target: str, entry: str = "main"):
    """An experiment is a Python file or an importable module with a ``main(argv)`` (or, for
    ``vht sweep``, a ``sweep()``)."""
    path = Path(target)
    if path.suffix == ".py":
        if not path.is_file():
            raise SystemExit(f"vht run: no such experiment file: {target}")
        sys.path.insert(0, str(Path.cwd()))  # experiments import their siblings by package
        spec = importlib.util.spec_from_file_location(f"vht_experiment_{path.stem}", path)
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
    else:
        sys.path.insert(0, str(Path.cwd()))
        try:
            module = importlib.import_module(target)
        except ImportError as error:
            raise SystemExit(f"vht run: cannot import experiment {target!r}: {error}") from None
    if not callable(getattr(module, entry, None)):
        signature = "main(argv)" if entry == "main" else f"{entry}()"
        raise SystemExit(f"vht: {target} defines no {signature} function")
    return module


def _run(args) -> int:
    module = _load_experiment(args.experiment)
    result = module.main(list(args.args))
    return int(result or 0)


def _sweep(args) -> int:
    import jax

    jax.config.update("jax_enable_x64", True)
    import vht
    from vht import distributed

    module = _load_experiment(args.experiment, entry="sweep")
    sweep = module.sweep()
    if not isinstance(sweep, vht.Sweep):
        raise SystemExit(f"vht sweep: {args.experiment}'s sweep() returned "
                         f"{type(sweep).__name__}, not a vht.Sweep")
    if args.integrator:
        sweep = sweep.with_integrator(args.integrator)
    output = args.output or str(Path("results") / "sweeps" / f"{Path(args.experiment).stem}.h5")
    result = vht.run_sweep(sweep, output, devices=args.devices, progress=not args.no_progress,
                           overwrite=args.overwrite, keep_parts=args.keep_parts,
                           use_mpi=not args.no_mpi)
    if result.already_complete and (distributed.rank() == 0 or args.no_mpi):
        print(f"vht sweep: {result.path} is already complete (sweep "
              f"{result.manifest['sweep_hash']}); nothing to do")
    elif distributed.rank() == 0 or args.no_mpi:
        manifest = result.manifest
        print(f"vht sweep: {manifest['members']} members x {len(manifest['arms'])} arms -> "
              f"{result.path}")
        print(f"  status: {json.dumps(manifest['status_counts'])}; acceptance rate "
              f"{manifest['acceptance_rate']:.3f}; chunks computed by this run: "
              f"{manifest['chunks_computed_by_this_run']} of {manifest['n_chunks']}; "
              f"integrator: {manifest['solver']}")
    return 0


def enable_compilation_cache(location: str | None = None) -> str | None:
    """Turn on JAX's persistent compilation cache, so that a second run of the same command
    skips compilation. Location: ``location``, else $JAX_COMPILATION_CACHE_DIR, else
    $VHT_CACHE_DIR/jax, else ~/.cache/vht/jax; "off" (or VHT_CACHE_DIR=off) disables it."""
    import os

    import jax

    env = os.environ
    chosen = location
    if chosen is None:
        if env.get("VHT_CACHE_DIR") == "off":
            return None
        chosen = env.get("JAX_COMPILATION_CACHE_DIR") or os.path.join(
            env.get("VHT_CACHE_DIR") or os.path.join(os.path.expanduser("~"), ".cache", "vht"),
            "jax")
    if chosen == "off":
        return None
    jax.config.update("jax_compilation_cache_dir", chosen)
    jax.config.update("jax_persistent_cache_min_compile_time_secs", 0.5)
    return chosen


def _print_whatif(result, files: dict, started: float) -> None:
    width = max(len(r["arm"]) for r in result.outcomes)
    for row in result.outcomes:
        print(f"  {row['arm']:<{width}}  {row['outcome']}: {row['median']:.4g} "
              f"[{row['low']:.4g}, {row['high']:.4g}] {row['unit']}")
    for warning in result.warnings:
        print(f"  warning: {warning}")
    for arm, statuses in result.failures.items():
        print(f"  warning: arm {arm!r} has failed members ({', '.join(statuses)})")
    for kind, path in files.items():
        print(f"  {kind + ':':<9}{path}")
    print(f"  {time.perf_counter() - started:.1f} s from command to report")


def _start(cache) -> float:
    """What every computing command does first: float64, the compilation cache; returns the
    start time for the command's "done in" line."""
    import jax

    jax.config.update("jax_enable_x64", True)
    started = time.perf_counter()
    enable_compilation_cache(cache)
    return started


def _whatif(args) -> int:
    started = _start(args.cache)
    from ._whatif import run_whatif, write_whatif
    from ._whatif_file import ScenarioFileError

    try:
        result = run_whatif(Path(args.scenario), progress=not args.no_progress)
    except ScenarioFileError as error:
        print(f"vht whatif: {error}", file=sys.stderr)
        return 2
    out = Path(args.out) if args.out else Path("results") / "whatif" / Path(args.scenario).stem
    files = write_whatif(result, out)
    print(f"vht whatif: {result.spec.title}")
    if result.spec.optimize is not None:
        print(f"  note: the file's [optimize] arm {result.spec.optimize.arm!r} runs with "
              "vht optimize")
    _print_whatif(result, files, started)
    return 0


def _optimize(args) -> int:
    started = _start(args.cache)
    from ._optimize import run_optimize, write_optimize
    from ._whatif_file import ScenarioFileError

    try:
        result = run_optimize(Path(args.scenario), progress=not args.no_progress)
    except ScenarioFileError as error:
        print(f"vht optimize: {error}", file=sys.stderr)
        return 2
    out = (Path(args.out) if args.out else
           Path("results") / "optimize" / Path(args.scenario).stem)
    files = write_optimize(result, out)
    o = result.objective
    print(f"vht optimize: {result.spec.title}")
    print(f"  arm {result.arm.name!r}: " + ("every constraint met" if result.feasible else
                                            "NO point meets every constraint"))
    for v in result.variables:
        print(f"    {v['label']} = {v['value']:.4g} {v['unit']}  (bounds {v['low']:g}-"
              f"{v['high']:g}, start {v['start']:g})")
    print(f"    {o['sense']} {o['outcome']}: {o['value']:.4g} {o['unit']} (mean over members"
          + (f"; {o['deviation']:.2f} % off the target {o['target']:g})" if o["target"]
             else ")"))
    for c in result.constraints:
        sign = "<=" if c["bound"] == "at_most" else ">="
        print(f"    {c['outcome']} {sign} {c['limit']:g} {c['unit']}: {c['value']:.4g} {c['unit']} "
              f"({'met' if c['met'] else 'VIOLATED'})")
    print(f"    {result.evaluations} gradient evaluations + {result.scans} scan simulations = "
          f"{result.simulations:g} simulation-equivalents, {result.seconds:.1f} s")
    _print_whatif(result.whatif, files, started)
    return 0 if result.feasible else 1


def _validate(args) -> int:
    started = _start(args.cache)
    from calibration._study import StudyFileError
    from calibration._validation import validate_main

    from .data import DataError

    try:
        result, files = validate_main(args.study, args.out, key_file=args.key_file,
                                      progress=not args.no_progress)
    except (StudyFileError, DataError) as error:
        print(f"vht validate: {error}", file=sys.stderr)
        return 2
    m = result.metrics
    print(f"vht validate: {result.study.title}")
    print(f"  {m['n_subjects']} patients calibrated on {m['n_calibration_observations']} "
          f"observations, {m['n_validation_observations']} held out")
    for variable, entry in m["variables"].items():
        o = entry["overall"]
        print(f"  {variable}: RMSE {o['rmse']:.4g} {entry['unit']}, bias {o['bias']:+.4g} "
              f"{entry['unit']}, {m['level']:.0%} interval coverage {o['coverage']:.1%} "
              f"(calibrated range {o['coverage_range'][0]:.1%}-{o['coverage_range'][1]:.1%})")
        for group, g in entry["groups"].items():
            if len(entry["groups"]) > 1:
                print(f"    {group}: n {g['n']}, RMSE {g['rmse']:.4g}, bias {g['bias']:+.4g}, "
                      f"coverage {g['coverage']:.1%}")
    for warning in result.warnings:
        print(f"  warning: {warning}")
    print(f"  report: {files['html']}")
    print(f"  metrics: {files['metrics']}")
    print(f"  done in {time.perf_counter() - started:.1f} s")
    return 0


def _credibility(args) -> int:
    started = _start(args.cache)
    from calibration._credibility import CredibilityError, credibility_main

    try:
        result, files = credibility_main(args.context, args.out, sweep=not args.no_sweep,
                                         progress=not args.no_progress)
    except CredibilityError as error:
        print(f"vht credibility: {error}", file=sys.stderr)
        return 2
    print(f"vht credibility: {result.context.title}")
    for factor in result.factors:
        goal = ("" if factor.goal_met is None and not factor.goal else
                {True: "; goal met", False: "; GOAL NOT MET", None: "; goal not shown"}[
                    factor.goal_met])
        print(f"  {factor.number:>2} {factor.name}: {factor.status}{goal}")
    for warning in result.warnings:
        print(f"  warning: {warning}")
    print(f"  report: {files['html']}")
    print(f"  markdown: {files['markdown']}")
    print(f"  factors: {files['json']}")
    print(f"  done in {time.perf_counter() - started:.1f} s")
    return 0


def _info(args) -> int:
    import jax

    import vht
    from vht import distributed

    from ._results import _version

    print(f"vht {vht.__version__}")
    for package in ("jax", "jaxlib", "diffrax", "equinox", "optax", "optimistix", "lineax",
                    "numpy", "xarray", "h5py", "mpi4py", "mpi4jax"):
        print(f"  {package:<11}{_version(package)}")
    print(f"devices: {', '.join(str(d) for d in jax.devices())}")
    print(f"x64: {jax.config.jax_enable_x64}")
    if distributed.mpi_enabled():
        print(f"MPI: rank {distributed.rank()} of {distributed.world_size()}")
    else:
        print("MPI: not available (install the 'mpi' extra) or disabled (VHT_DISABLE_MPI)")
    return 0


def _inspect(args) -> int:
    import h5py

    path = Path(args.file)
    if not path.is_file():
        raise SystemExit(f"vht inspect: no such file: {path}")
    with h5py.File(path, "r") as f:
        attrs = {k: (v.decode() if isinstance(v, bytes) else v) for k, v in f.attrs.items()}
        if attrs.get("format") == "vht-twin":
            print(f"twin file {path}")
            for key in ("builder", "builder_args", "vht_version", "model_hash", "parameter_hash",
                        "created_utc"):
                print(f"  {key:<15}{attrs.get(key)}")
            print("  parameters:")
            for name in f["parameters"]:
                dataset = f["parameters"][name]
                unit = dataset.attrs.get("unit", "")
                print(f"    {name:<50}{dataset[()]!s:>14} {unit}")
            if "posterior" in f:
                sizes = {n: f["posterior"][n].shape[0] for n in f["posterior"]}
                print(f"  posterior samples: {json.dumps(sizes)}")
            return 0
    import vht

    dataset = vht.load_dataset(path)
    print(dataset)
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="vht", description="vht: virtual human twins (differentiable physiology in JAX).")
    sub = parser.add_subparsers(dest="command", required=True)
    run = sub.add_parser("run", help="run an experiment file or module",
                         description="Run an experiment: a .py file or a module such as "
                         "experiments.flagship, whose main(argv) receives the remaining "
                         "arguments. Example: vht run experiments/flagship.py --minutes 5")
    run.add_argument("experiment", help="path to a .py file, or a module name")
    run.add_argument("args", nargs=argparse.REMAINDER, help="arguments for the experiment")
    run.set_defaults(handler=_run)
    sweep = sub.add_parser(
        "sweep", help="run or resume an ensemble sweep",
        description="Run an ensemble sweep defined by an experiment file whose sweep() returns "
        "a vht.Sweep. Run the same command again after an interruption to finish it; run it "
        "under mpirun -n K (or srun) to spread chunks over ranks. Example: "
        "vht sweep experiments/ensembles/virtual_trial.py --output results/trial.h5")
    sweep.add_argument("experiment", help="path to a .py file, or a module name")
    sweep.add_argument("--output", help="result file (default results/sweeps/<name>.h5)")
    sweep.add_argument("--devices", type=int, default=None,
                       help="local devices to use (default all)")
    sweep.add_argument("--overwrite", action="store_true",
                       help="discard results of a different sweep at the output")
    sweep.add_argument("--keep-parts", action="store_true",
                       help="keep the per-chunk files after assembly")
    sweep.add_argument("--no-progress", action="store_true", help="no progress bar")
    sweep.add_argument("--integrator", choices=("auto", "closed_form", "ensemble", "diffrax"),
                       default=None,
                       help="override the sweep's integrator: the closed form of linear "
                       "organs, the batch-major one of simulate_ensemble (non-stiff twins) or "
                       "vmapped diffrax")
    sweep.add_argument("--no-mpi", action="store_true",
                       help="run every chunk in this process even if MPI is available")
    sweep.set_defaults(handler=_sweep)
    whatif = sub.add_parser(
        "whatif", help="compare treatment arms on one patient's twin",
        description="Run the treatment arms of a what-if scenario file (TOML: the patient, "
        "events, arms, outcomes, uncertainty) on the patient's twin, and write the "
        "trajectories (HDF5) and a self-contained HTML report with 90 %% bands and an outcome "
        "table. Example: vht whatif experiments/whatif/t1d_insulin.toml")
    whatif.add_argument("scenario", help="the scenario file (.toml)")
    whatif.add_argument("--out", help="output folder (default results/whatif/<file name>)")
    whatif.add_argument("--cache", help="JAX compilation cache folder, or 'off' (default "
                        "~/.cache/vht/jax, or $VHT_CACHE_DIR/jax)")
    whatif.add_argument("--no-progress", action="store_true", help="no progress bar")
    whatif.set_defaults(handler=_whatif)
    optimize = sub.add_parser(
        "optimize", help="optimise a treatment by gradients through the simulation",
        description="Find the values of the decision variables of a scenario file's [optimize] "
        "arm (doses, rates: { between = [low, high] }) that best meet its objective within its "
        "constraints, by L-BFGS-B on smooth surrogates with gradients through the simulation; "
        "the true metrics decide the answer. Then run every arm with the optimised one and "
        "write the what-if results and report (with the optimisation's section), "
        "optimize.json and optimized_arm.toml. Exit status 1 when no point meets the "
        "constraints. Example: vht optimize experiments/whatif/t1d_insulin.toml")
    optimize.add_argument("scenario", help="the scenario file (.toml) with an [optimize] table")
    optimize.add_argument("--out", help="output folder (default results/optimize/<file name>)")
    optimize.add_argument("--cache", help="JAX compilation cache folder, or 'off' (default "
                          "~/.cache/vht/jax, or $VHT_CACHE_DIR/jax)")
    optimize.add_argument("--no-progress", action="store_true", help="no progress bars")
    optimize.set_defaults(handler=_optimize)
    validate = sub.add_parser(
        "validate", help="calibrate patients on part of their data and predict the rest",
        description="Run a validation study file (TOML: context of use, data and its "
        "dictionary, model, split, prediction intervals): ingest the patient data "
        "(pseudonymised), calibrate each patient on the calibration window or subset, predict "
        "the held-out data with prediction intervals, and write report.html, report.md, "
        "metrics.json, predictions.csv, estimates.csv and figures (owner-readable only). "
        "Refuses a study whose calibration and validation data overlap. Example: "
        "vht validate experiments/validation/studies/theoph.toml")
    validate.add_argument("study", help="the study file (.toml)")
    validate.add_argument("--out", help="output folder (default results/validation/<file name>)")
    validate.add_argument("--key-file", help="pseudonym key file (default the study's key_file, "
                          "else $VHT_PSEUDONYM_KEY, else a random key for this run)")
    validate.add_argument("--cache", help="JAX compilation cache folder, or 'off'")
    validate.add_argument("--no-progress", action="store_true", help="no progress lines")
    validate.set_defaults(handler=_validate)
    credibility = sub.add_parser(
        "credibility", help="report a model's credibility for a context of use (ASME V&V 40)",
        description="Read a context file (TOML: context of use, question of interest, model "
        "risk, evidence files, test measurements, reference scenario, goals) and write "
        "credibility.md, credibility.html and credibility.json: the 13 credibility factors of "
        "ASME V&V 40 (2018), each with its evidence and source or 'not assessed' and why, and "
        "whether each stated goal is met. Runs a solver-tolerance sweep on the reference "
        "scenario. Exit status 2 when the context of use or the question is missing. Example: "
        "vht credibility experiments/validation/credibility/theoph_exposure.toml")
    credibility.add_argument("context", help="the context file (.toml)")
    credibility.add_argument("--out", help="output folder (default "
                             "results/credibility/<file name>)")
    credibility.add_argument("--no-sweep", action="store_true",
                             help="skip the tolerance sweep (factor 4 is then not assessed)")
    credibility.add_argument("--cache", help="JAX compilation cache folder, or 'off'")
    credibility.add_argument("--no-progress", action="store_true", help="no progress lines")
    credibility.set_defaults(handler=_credibility)
    info = sub.add_parser("info", help="versions, devices and MPI status",
                          description="Print the versions of vht and its numerical stack, the "
                          "JAX devices, and whether MPI is available.")
    info.set_defaults(handler=_info)
    inspect = sub.add_parser("inspect", help="summarise a twin file or results file",
                             description="Print a twin file's builder, hashes and parameters, "
                             "or a results file's dataset summary.")
    inspect.add_argument("file", help="an HDF5 twin file or results file")
    inspect.set_defaults(handler=_inspect)
    return parser


def main(argv: list[str] | None = None) -> int:
    """Entry point of the ``vht`` command; returns the exit status."""
    args = build_parser().parse_args(argv)
    return args.handler(args)


if __name__ == "__main__":
    raise SystemExit(main())
