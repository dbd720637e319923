"""Benchmark peer: per-subject one-compartment oral PK fits with pyPESTO + AMICI.

Fits every subject of a cohort separately, the way ``calibration.fit_cohort`` does in vht, so
the two can be compared side by side (estimates, negative log-likelihood, fits per second).

Model (written as SBML inside this script, amounts in mg, time in h)::

    dA_d/dt = -ka * A_d                      A_d(0) = dose  (fixed, per subject)
    dA_c/dt =  ka * A_d - (CL / V) * A_c     A_c(0) = 0
    conc    =  A_c / V  + e,   e ~ N(0, sigma^2)

Estimated per subject: ka [1/h] in [0.01, 100], CL [L/h] in [0.001, 100], V [L] in
[0.01, 1000], sigma [mg/L] in [1e-3, 10], all on log10 scale (the optimiser works on log10).

Each subject is its own pyPESTO problem (one AMICI ``ExpData`` with the subject's dose as the
fixed parameter), minimised by pyPESTO multistart (start points uniform in the log10 box,
``numpy`` seed fixed by ``--seed``) with scipy L-BFGS-B, gradients from AMICI/CVODES adjoint
(default) or forward sensitivities. The AMICI model is generated and compiled once, before the
timer starts; ``fit_seconds`` is the wall time of building the objective and running the
multistart for all subjects, one after another on one thread (``OMP_NUM_THREADS`` and
``OPENBLAS_NUM_THREADS`` default to 1; ``fit_cpu_seconds`` is the process CPU time).

Objective reported: the full negative log-likelihood,
``sum_i 0.5*log(2*pi*sigma^2) + (y_i - f_i)^2 / (2*sigma^2)``. AMICI's normal noise model
includes the constant (``amici/importers/utils.py``: ``0.5*log(2*pi*sigma**2) +
0.5*((y - m)/sigma)**2``) and pyPESTO's ``AmiciObjective`` returns ``-rdata.llh``; the script
re-simulates every best fit and recomputes this sum with numpy, and writes the largest
disagreement as ``nllh_check_max_abs_diff``.

Install the peer (outside the vht environment; about 5 minutes, builds from source)::

    apt-get install -y swig libhdf5-serial-dev libopenblas-dev
    python3.11 -m venv /work/amici-venv
    /work/amici-venv/bin/pip install amici pypesto petab pandas numpy python-libsbml

(known to work: amici 1.0.1, pypesto 0.7.0, petab 0.8.2, python-libsbml 5.21.2). The venv's
``bin`` must come first on ``PATH`` when AMICI compiles the model, so that the pip-installed
SWIG (4.5) is used; Debian's SWIG 4.1 builds a model module that fails to import.

Run::

    PATH=/work/amici-venv/bin:$PATH /work/amici-venv/bin/python \\
        experiments/benchmarks/amici_peer.py --data subjects.csv --starts 3 --out amici.json \\
        [--sensitivities adjoint|forward] [--subjects N] [--rtol 1e-7] [--atol 1e-9]

Input CSV columns: ``subject,time,conc,dose`` (one row per observation; dose in mg, oral at
t = 0, repeated on every row of the subject; time in h; conc in mg/L). To make one from the
Theoph data in this repository (dose in mg = Dose [mg/kg] * Wt [kg])::

    python -c "import pandas as p; d = p.read_csv('calibration/data/theoph.csv'); \\
      p.DataFrame({'subject': d.Subject, 'time': d.Time, 'conc': d.conc, \\
      'dose': d.Dose * d.Wt}).to_csv('theoph_subjects.csv', index=False)"
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import tempfile
import time
from pathlib import Path

# One thread: without this an OpenMP/OpenBLAS worker thread spins beside the solver and doubles
# the CPU time (measured: 13 s CPU for 6.6 s wall) without making the fits faster on 2 cores.
for _var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_var, "1")

import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402

MODEL_NAME = "vht_amici_peer_oral_1cpt"
ESTIMATED = ("ka", "CL", "V", "sigma")
BOUNDS = {"ka": (0.01, 100.0), "CL": (0.001, 100.0), "V": (0.01, 1000.0),
          "sigma": (1e-3, 10.0)}


def sbml_model() -> str:
    """The one-compartment oral model as an SBML L3V2 string (built with libsbml)."""
    import libsbml

    doc = libsbml.SBMLDocument(3, 2)
    m = doc.createModel()
    m.setId(MODEL_NAME)
    m.setTimeUnits("dimensionless")
    c = m.createCompartment()
    c.setId("body"), c.setSize(1.0), c.setConstant(True), c.setSpatialDimensions(3)
    for sid in ("A_d", "A_c"):
        s = m.createSpecies()
        s.setId(sid), s.setCompartment("body"), s.setInitialAmount(0.0)
        s.setHasOnlySubstanceUnits(True), s.setBoundaryCondition(False), s.setConstant(False)
    for pid, value in (("ka", 1.0), ("CL", 3.0), ("V", 30.0), ("sigma", 0.5), ("dose", 300.0)):
        p = m.createParameter()
        p.setId(pid), p.setValue(value), p.setConstant(True)
    ia = m.createInitialAssignment()
    ia.setSymbol("A_d"), ia.setMath(libsbml.parseL3Formula("dose"))
    for rid, src, dst, law in (("absorption", "A_d", "A_c", "ka * A_d"),
                               ("elimination", "A_c", None, "CL / V * A_c")):
        r = m.createReaction()
        r.setId(rid), r.setReversible(False)
        sr = r.createReactant()
        sr.setSpecies(src), sr.setStoichiometry(1.0), sr.setConstant(True)
        if dst:
            sp = r.createProduct()
            sp.setSpecies(dst), sp.setStoichiometry(1.0), sp.setConstant(True)
        r.createKineticLaw().setMath(libsbml.parseL3Formula(law))
    return libsbml.writeSBMLToString(doc)


def compile_model(out_dir: Path):
    """Generate and compile the AMICI model once; return the imported model module."""
    import amici

    importer = amici.SbmlImporter(sbml_model(), from_file=False)
    importer.sbml2amici(
        MODEL_NAME, out_dir, fixed_parameters=["dose"],
        observation_model=[amici.MeasurementChannel(
            "conc", formula="A_c / V", noise_distribution="normal", sigma="sigma")],
        verbose=False)
    return amici.import_model_module(MODEL_NAME, out_dir)


def load(path: str, n_subjects: int | None) -> list[tuple[str, float, np.ndarray, np.ndarray]]:
    d = pd.read_csv(path)
    missing = {"subject", "time", "conc", "dose"} - set(d.columns)
    if missing:
        sys.exit(f"{path}: missing columns {sorted(missing)}")
    out = []
    for sid, g in d.groupby("subject", sort=False):
        g = g.sort_values("time", kind="stable")
        doses = g["dose"].unique()
        if len(doses) != 1:
            sys.exit(f"subject {sid}: dose is not the same on every row")
        out.append((str(sid), float(doses[0]), g["time"].to_numpy(float),
                    g["conc"].to_numpy(float)))
    return out[:n_subjects] if n_subjects else out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", required=True, help="CSV with subject,time,conc,dose")
    parser.add_argument("--starts", type=int, default=3)
    parser.add_argument("--out", required=True, help="JSON file to write")
    parser.add_argument("--sensitivities", choices=("adjoint", "forward"), default="adjoint")
    parser.add_argument("--subjects", type=int, default=None, help="fit only the first N")
    parser.add_argument("--rtol", type=float, default=1e-7)
    parser.add_argument("--atol", type=float, default=1e-9)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--gtol", type=float, default=1e-3,
                        help="a start counts as converged when scipy reports convergence or "
                        "its final projected gradient (log10 scale) is below this")
    parser.add_argument("--model-dir", default=None,
                        help="where the AMICI model is built (default: a temporary folder)")
    args = parser.parse_args()

    import amici
    import amici.sim.sundials as asd
    import pypesto
    import pypesto.optimize as optimize
    from pypesto.engine import SingleCoreEngine

    subjects = load(args.data, args.subjects)

    tmp = None
    if args.model_dir is None:
        tmp = tempfile.TemporaryDirectory(prefix="amici_peer_")
        model_dir = Path(tmp.name)
    else:
        model_dir = Path(args.model_dir)
    t0 = time.perf_counter()
    module = compile_model(model_dir)
    compile_seconds = time.perf_counter() - t0

    model = module.get_model()
    free_ids = list(model.get_free_parameter_ids())
    assert set(free_ids) == set(ESTIMATED), free_ids
    model.set_parameter_scale(asd.ParameterScaling.log10)  # optimiser sees log10 values
    solver = model.create_solver()
    solver.set_relative_tolerance(args.rtol)
    solver.set_absolute_tolerance(args.atol)
    solver.set_sensitivity_method(asd.SensitivityMethod.adjoint if args.sensitivities ==
                                  "adjoint" else asd.SensitivityMethod.forward)
    solver.set_sensitivity_order(asd.SensitivityOrder.first)

    lb = np.log10([BOUNDS[p][0] for p in free_ids])
    ub = np.log10([BOUNDS[p][1] for p in free_ids])
    optimizer = optimize.ScipyOptimizer(method="L-BFGS-B")
    engine = SingleCoreEngine()

    def edata_for(dose, t, y):
        ed = asd.ExpData(model)
        ed.set_timepoints(t)
        ed.set_measurements(y)
        ed.fixed_parameters = [dose]
        return ed

    np.random.seed(args.seed)
    raw = []
    c0, t0 = time.process_time(), time.perf_counter()
    for sid, dose, t, y in subjects:
        objective = pypesto.objective.AmiciObjective(model, solver, [edata_for(dose, t, y)],
                                                     max_sensi_order=1, x_ids=free_ids)
        problem = pypesto.Problem(objective, lb=lb, ub=ub, x_names=free_ids)
        result = optimize.minimize(problem, optimizer=optimizer, n_starts=args.starts,
                                   engine=engine, progress_bar=False)
        raw.append((sid, dose, t, y, result.optimize_result.list))
    fit_seconds = time.perf_counter() - t0
    fit_cpu_seconds = time.process_time() - c0

    # Check that the reported number is the full Gaussian nllh: re-simulate each best fit
    # without sensitivities and recompute the sum with numpy.
    check = model.clone()
    check_solver = check.create_solver()
    check_solver.set_relative_tolerance(args.rtol)
    check_solver.set_absolute_tolerance(args.atol)
    def projected_gradient(r) -> float:
        """Largest gradient component at the end of a start, ignoring active bounds."""
        if r.grad is None or not np.all(np.isfinite(r.grad)):
            return float("inf")
        g = np.array(r.grad, float)
        g[(r.x <= lb + 1e-9) & (g > 0)] = 0.0
        g[(r.x >= ub - 1e-9) & (g < 0)] = 0.0
        return float(np.max(np.abs(g)))

    def converged(r) -> bool:
        return bool(np.isfinite(r.fval) and (r.exitflag == 0
                                             or projected_gradient(r) < args.gtol))

    rows, worst, worst_refit = [], 0.0, 0.0
    for sid, dose, t, y, starts in raw:
        ok = [r for r in starts if np.isfinite(r.fval)]
        best = min(ok, key=lambda r: r.fval) if ok else None
        row = {"subject": sid, "dose_mg": dose, "n_obs": int(len(t)),
               "starts_run": len(starts),
               "starts_converged": int(sum(converged(r) for r in starts)),
               "starts_scipy_status_0": int(sum(r.exitflag == 0 for r in starts)),
               "starts_finite": len(ok)}
        if best is None:
            row["nllh"] = None
            rows.append(row)
            continue
        est = {p: float(10 ** v) for p, v in zip(free_ids, best.x)}
        check.set_free_parameters(list(best.x))
        check.set_parameter_scale(asd.ParameterScaling.log10)
        rdata = asd.run_simulation(check, check_solver, edata_for(dose, t, y))
        f = np.asarray(rdata.y)[:, 0]
        s = est["sigma"]
        manual = float(np.sum(0.5 * np.log(2 * np.pi * s ** 2) + (y - f) ** 2 / (2 * s ** 2)))
        worst = max(worst, abs(manual + rdata.llh))  # formula: numpy vs AMICI, same run
        worst_refit = max(worst_refit, abs(manual - best.fval))  # reported vs re-simulated
        row.update({"nllh": float(best.fval), **est, "ke": est["CL"] / est["V"],
                    "flip_flop": bool(est["ka"] < est["CL"] / est["V"]),
                    "starts_at_best": int(sum(abs(r.fval - best.fval) < 1e-3 for r in ok)),
                    "best_projected_gradient": projected_gradient(best),
                    "best_exitflag": best.exitflag, "best_message": str(best.message),
                    "best_n_fval": best.n_fval, "best_n_grad": best.n_grad,
                    "nllh_numpy_recomputed": manual})
        rows.append(row)

    report = {
        "settings": {
            "starts": args.starts, "optimizer": "pypesto ScipyOptimizer L-BFGS-B (scipy "
            "defaults), uniform start points in the log10 bounds",
            "seed": args.seed, "sensitivities": args.sensitivities,
            "rtol": args.rtol, "atol": args.atol, "parameter_scale": "log10",
            "bounds": BOUNDS, "engine": "pypesto SingleCoreEngine",
            "amici": amici.__version__, "pypesto": pypesto.__version__,
            "python": platform.python_version(), "cpu_count": os.cpu_count(),
            "threads": {v: os.environ.get(v) for v in ("OMP_NUM_THREADS",
                                                      "OPENBLAS_NUM_THREADS")},
            "objective": "sum 0.5*log(2*pi*sigma^2) + (y-f)^2/(2*sigma^2) (constants "
            "included)",
            "starts_converged": "finite nllh and either scipy L-BFGS-B status 0 or final "
            "projected gradient (d nllh / d log10 parameter) below gtol; many starts end "
            "with scipy's ABNORMAL line-search stop at the optimum because the ODE "
            "gradient is only as accurate as rtol",
            "gtol": args.gtol,
            "starts_at_best": "final nllh within 1e-3 of the subject's best",
        },
        "data": str(args.data), "n_subjects": len(rows),
        "compile_seconds": compile_seconds, "fit_seconds": fit_seconds,
        "fits_per_second": len(rows) / fit_seconds,
        "fit_cpu_seconds": fit_cpu_seconds,
        "fit_cpu_seconds_note": "CPU time of this process over the same span (all its "
        "threads); closer to the uncontended wall time on a shared machine",
        "nllh_check_max_abs_diff": worst,
        "nllh_resimulated_max_abs_diff": worst_refit,
        "nllh_check": "nllh_check_max_abs_diff: numpy sum of the full Gaussian nllh vs "
        "AMICI's -llh on one re-simulation (no sensitivities) of each best fit; "
        "nllh_resimulated_max_abs_diff: that numpy sum vs the optimiser's reported best "
        "nllh (differs only by ODE tolerance: with forward sensitivities CVODES also "
        "error-controls the sensitivities, so the states differ slightly)",
        "subjects": rows,
    }
    Path(args.out).write_text(json.dumps(report, indent=2) + "\n")
    print(f"compile {compile_seconds:.1f} s, fit {fit_seconds:.2f} s for {len(rows)} subjects "
          f"({report['fits_per_second']:.2f} fits/s, CPU {fit_cpu_seconds:.2f} s), "
          f"{args.sensitivities}; "
          f"nllh formula check {worst:.1e}, reported vs re-simulated {worst_refit:.1e}")
    print(f"{'subject':>8} {'nllh':>10} {'ka':>8} {'CL':>8} {'V':>8} {'sigma':>7} conv")
    for r in rows:
        if r.get("nllh") is None:
            print(f"{r['subject']:>8}  no finite start")
            continue
        print(f"{r['subject']:>8} {r['nllh']:10.4f} {r['ka']:8.4f} {r['CL']:8.4f} "
              f"{r['V']:8.3f} {r['sigma']:7.4f} {r['starts_converged']}/{r['starts_run']}"
              f"{'  flip-flop' if r['flip_flop'] else ''}")
    if tmp is not None:
        tmp.cleanup()


if __name__ == "__main__":
    main()
