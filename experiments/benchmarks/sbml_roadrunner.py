"""SBML side by side: the same SBML file run by vht (a vmapped ensemble) and by libroadrunner.

    python -m experiments.benchmarks.sbml_roadrunner [--members 1000] [--sample 100] [--quick]

Three models, each exported from a vht twin by ``vht.export_sbml`` into one file that both
engines then read (so neither runs vht's own Python organs):

- UVA/Padova T1D, adolescent#001 (``hold_samples=True``: the continuous dynamics with the
  meal-memory states held): 18 states as rate rules, 6 assignment rules; a 45 g meal in the
  stomach and its bolus (45 g / CR) in the subcutaneous depot at t = 0; members vary kabs,
  kmax and Vmx;
- the lidocaine whole-body PBPK on a fixed cardiac output: 11 states, 31 assignment rules; a
  100 mg bolus in venous blood; members vary the intrinsic clearance, the liver partition
  coefficient and the unbound fraction;
- the beat-averaged circulation with its baroreflex (Erlang delay chains; stiff): 24 states,
  89 assignment rules; started with 3.3 L in the systemic veins (away from rest); members vary
  the left ventricle's maximal elastance, the systemic venous compliance and the systemic
  resistance.

Each member's three parameters are log-normal (CV 10 %, seeded), the same values in both
engines. 10 h saved every 5 min (121 times), float64, rtol = atol = 1e-8 in both.

- vht: ``vht.import_sbml(file, stiffness=...)`` (stiff for the circulation, as its native
  twin declares) in a twin, ``jax.vmap(twin.replace)`` over the members, then the integrator
  ``run_sweep`` chooses on all members at once: ``vht.simulate_ensemble`` (batch-major
  Dopri5) for the non-stiff models, vmapped ``vht.simulate`` (diffrax Kvaerno3) for the stiff
  one; the other integrator on the sample beside it. Timed warm (a first call of the same
  shape compiles; its time is reported).
- libroadrunner: ``RoadRunner(file)``, then per member ``resetAll``, the three parameters set,
  ``simulate``; CVODE as BDF (``stiff = True``, roadrunner's default) and, for the non-stiff
  models, as Adams (25-28 s per member on the stiff circulation); the faster is the peer.

Agreement: for every member of the sample, every state and save time,
``|roadrunner - vht| / (|vht| + 1e-6 scale)`` with scale the state's largest |value| in that
member's run, its largest value reported, and whether every point is inside the SBML Test
Suite's usual tolerance in the same form (absolute 1e-6 scale, relative 1e-4).

Results go to results/sbml_roadrunner.json and .md in this folder (included by
docs/content/howto/sbml.md).
"""

from __future__ import annotations

import argparse
import json
import math
import tempfile
import time
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
RESULTS = HERE / "results"
RTOL = ATOL = 1e-8
TS = np.arange(0.0, 600.0 + 1e-9, 5.0)  # 121 save times (minutes)
CV = 0.10


def _jax():
    import jax

    jax.config.update("jax_enable_x64", True)
    return jax


def _models() -> dict:
    """name: (title, twin builder, {state: initial value away from rest}, varied)."""
    import vht
    from physiology_models import twins
    from physiology_models.glucose_insulin import uva_padova as uva
    from physiology_models.pharmacology import FixedCardiacOutput, lidocaine_pbpk

    def pbpk():
        return vht.Twin({"heart": FixedCardiacOutput(), "drug": lidocaine_pbpk()},
                        [("heart.cardiac_output", "drug.cardiac_output")])

    patient = uva.patient_parameters("adolescent#001")
    bolus = 45.0 / uva.quest("adolescent#001")["CR"] * 6000.0 / patient["BW"]  # pmol/kg
    return {
        "uva_padova": ("UVA/Padova T1D adolescent#001, 45 g meal with its bolus",
                       lambda: uva.patient_twin("adolescent#001"),
                       {"patient.Qsto1": 45000.0, "patient.Isc1": patient["isc1ss"] + bolus},
                       ("patient.kabs", "patient.kmax", "patient.Vmx")),
        "pbpk": ("lidocaine whole-body PBPK, 100 mg IV bolus", pbpk,
                 {"drug.venous_blood": 100.0},
                 ("drug.intrinsic_clearance", "drug.liver_kp", "drug.fraction_unbound")),
        "mean_flow": ("beat-averaged circulation + baroreflex (stiff), volume-displaced start",
                      twins.mean_flow_circulation, {"circulation.systemic_veins": 3300.0},
                      ("circulation.lv_elastance_max", "circulation.systemic_venous_compliance",
                       "circulation.systemic_resistance")),
    }


def export(name: str, folder: Path) -> dict:
    """Write model ``name`` to ``folder/<name>.xml``; describe what the file holds."""
    import libsbml

    import vht
    from vht._sbml_export import sbml_id

    title, build, start, varied = _models()[name]
    twin = build()
    y0 = np.asarray(twin.initial_state(), dtype=float).copy()
    for state, value in start.items():
        y0[twin.state_names.index(state)] = value
    path = folder / f"{name}.xml"
    vht.export_sbml(twin, path, y0=y0, hold_samples=True)
    model = libsbml.readSBMLFromFile(str(path)).getModel()
    rules = [r.getElementName() for r in model.getListOfRules()]
    base = twin.parameters()
    return {"title": title, "path": path, "stiff": twin.stiffness == "stiff",
            "states": [sbml_id(n) for n in twin.state_names],
            "parameters": {sbml_id(p): float(base[p]) for p in varied},
            "rate_rules": rules.count("rateRule"),
            "assignment_rules": rules.count("assignmentRule"),
            "file_kib": path.stat().st_size / 1024}


def members(info: dict, n: int, seed: int = 0) -> dict:
    """Log-normal parameter sets, CV 10 %, median the model's value: {sbml id: (n,) array}."""
    rng = np.random.default_rng(seed)
    sigma = math.sqrt(math.log1p(CV**2))
    return {pid: value * np.exp(sigma * rng.standard_normal(n))
            for pid, value in info["parameters"].items()}


def _timed(program, *args) -> tuple[object, float, float]:
    """(result, seconds of the first call (compile included), seconds of a second call)."""
    import jax

    started = time.perf_counter()
    jax.block_until_ready(program(*args))
    cold = time.perf_counter() - started
    started = time.perf_counter()
    result = jax.block_until_ready(program(*args))
    return result, cold, time.perf_counter() - started


def run_vht(info: dict, values: dict, sample: int) -> dict:
    """The integrator run_sweep chooses (``auto``) on every member, the other on the sample."""
    jax = _jax()
    import jax.numpy as jnp

    import vht

    started = time.perf_counter()
    stiffness = "stiff" if info["stiff"] else "nonstiff"
    twin = vht.Twin({"m": vht.import_sbml(info["path"], stiffness=stiffness)})
    import_seconds = time.perf_counter() - started
    order = [twin.state_names.index(f"m.{s}") for s in info["states"]]

    def cohort(vals):
        return jax.vmap(lambda p: twin.replace(p))(
            {f"m.{k}": jnp.asarray(v) for k, v in vals.items()})

    def ensemble(twins):  # batch-major Dopri5
        return vht.simulate_ensemble(twins, ts=TS, rtol=RTOL, atol=ATOL, max_steps=10**6)

    # vmapped diffrax with the twin's default solver (Tsit5, or Kvaerno3 when stiff)
    diffrax_program = jax.jit(jax.vmap(lambda tw: vht.simulate(
        tw, ts=TS, rtol=RTOL, atol=ATOL, max_steps=10**6, throw=False)))
    paths = {"ensemble": ("vht.simulate_ensemble (Dopri5)", ensemble),
             "diffrax": (f"vmapped vht.simulate ({'Kvaerno3' if info['stiff'] else 'Tsit5'})",
                         diffrax_program)}
    auto = "diffrax" if info["stiff"] else "ensemble"  # what run_sweep chooses
    out = {"import_seconds": import_seconds, "auto": auto}
    for key, (label, program) in paths.items():
        n = len(next(iter(values.values()))) if key == auto else sample
        result, cold, warm = _timed(program, cohort({k: v[:n] for k, v in values.items()}))
        failed = int(np.sum(np.asarray(result.status) != 0))
        if failed:
            raise RuntimeError(f"{failed} of {n} members failed in {label}")
        out[key] = {"label": label, "members": n, "seconds": warm,
                    "members_per_second": n / warm, "compile_and_first_run_seconds": cold,
                    "mean_steps_per_member": float(np.mean(np.asarray(result.n_steps))),
                    "ys": np.asarray(result.ys)[:, :, order]}
    other = "ensemble" if auto == "diffrax" else "diffrax"
    out[other]["max_relative_deviation_from_auto"] = deviation(
        out[other]["ys"], out[auto]["ys"][:sample])[0]
    out["ys"] = out[auto].pop("ys")
    del out[other]["ys"]
    return out


def deviation(theirs: np.ndarray, ours: np.ndarray) -> tuple[float, bool]:
    """Largest |theirs - ours| / (|ours| + 1e-6 scale) and whether all points are inside
    absolute 1e-6 scale + relative 1e-4 (scale: each state's largest |value| per member)."""
    scale = np.max(np.abs(ours), axis=1, keepdims=True)
    difference = np.abs(theirs - ours)
    worst = float(np.max(difference / (np.abs(ours) + 1e-6 * scale + 1e-300)))
    inside = bool(np.all(difference <= 1e-6 * scale + 1e-4 * np.abs(ours)))
    return worst, inside


def run_roadrunner(info: dict, values: dict, sample: int, reference: np.ndarray) -> dict:
    try:
        import roadrunner
    except ImportError:
        return {"missing": "libroadrunner is not installed: pip install libroadrunner"}
    started = time.perf_counter()
    rr = roadrunner.RoadRunner(str(info["path"]))
    load = time.perf_counter() - started
    rr.timeCourseSelections = ["time"] + info["states"]
    rr.integrator.relative_tolerance = RTOL
    rr.integrator.absolute_tolerance = ATOL
    rr.integrator.maximum_num_steps = 1_000_000
    rows = {}
    # Adams on the stiff circulation: 25-28 s per member (measured), so BDF only there
    for stiff in (True,) if info["stiff"] else (True, False):
        rr.integrator.stiff = stiff
        ys = np.empty((sample, TS.size, len(info["states"])))
        started = time.perf_counter()
        for k in range(sample):
            rr.resetAll()
            for pid, v in values.items():
                rr[pid] = float(v[k])
            ys[k] = np.asarray(rr.simulate(float(TS[0]), float(TS[-1]), TS.size))[:, 1:]
        seconds = time.perf_counter() - started
        worst, inside = deviation(ys, reference[:sample])
        rows["BDF" if stiff else "Adams"] = {
            "members": sample, "seconds": seconds, "members_per_second": sample / seconds,
            "max_relative_deviation": worst, "inside_test_suite_tolerance": inside}
    best = max(rows, key=lambda m: rows[m]["members_per_second"])
    return {"load_seconds": load, "version": roadrunner.__version__, "methods": rows,
            "best": best}


def markdown(report: dict) -> str:
    lines = []
    if report["quick"]:
        lines += ["**Quick run** (`--quick`: small N): indicative only.", ""]
    lines += [
        "One SBML file per model, written by `vht.export_sbml` and read by both engines; 10 h "
        f"saved every 5 min, float64, rtol = atol = {RTOL:g}; members vary three parameters "
        "(log-normal, CV 10 %). vht: the integrator `run_sweep` chooses, on all N members at "
        "once, and the other on the sample, both warm; libroadrunner: the sample, one member "
        "after another (`resetAll`, parameters, `simulate`). "
        "Deviation: largest |roadrunner - vht| / (|vht| + 1e-6 x the state's scale) over the "
        "sample's states and times; 'inside' means every point is within the SBML Test "
        "Suite's usual tolerance (absolute 1e-6 of the scale, relative 1e-4).", "",
        "| model | states | rate / assignment rules | vht (run_sweep's choice): members/s "
        "(N) | vht, the other integrator: members/s (N) | libroadrunner CVODE: members/s | "
        "vht / roadrunner | max deviation | inside |",
        "|---|---|---|---|---|---|---|---|---|"]
    for m in report["models"].values():
        v, rr = m["vht"], m["libroadrunner"]
        auto = v[v["auto"]]
        other = v["diffrax" if v["auto"] == "ensemble" else "ensemble"]
        if "missing" in rr:
            peer, ratio, worst, inside = rr["missing"], "-", "-", "-"
        else:
            best = rr["methods"][rr["best"]]
            others = "".join(f"; {k} {r['members_per_second']:,.0f}"
                             for k, r in rr["methods"].items() if k != rr["best"])
            peer = f"{best['members_per_second']:,.1f} ({rr['best']}{others})"
            ratio = f"{auto['members_per_second'] / best['members_per_second']:.2g}x"
            worst = f"{max(r['max_relative_deviation'] for r in rr['methods'].values()):.1e}"
            inside = "yes" if all(r["inside_test_suite_tolerance"]
                                  for r in rr["methods"].values()) else "no"
        lines.append(
            f"| {m['title']} | {m['states']} | {m['rate_rules']} / {m['assignment_rules']} | "
            f"{auto['label']}: {auto['members_per_second']:,.1f} ({auto['members']:,}) | "
            f"{other['label']}: {other['members_per_second']:,.1f} ({other['members']:,}) | "
            f"{peer} | {ratio} | {worst} | {inside} |")
    lines += ["", "Compile and load times (once per model):", "",
              "| model | SBML file [KiB] | vht import [s] | vht ensemble compile + first run [s] "
              "| vht diffrax compile + first run [s] | libroadrunner load (LLVM) [s] |",
              "|---|---|---|---|---|---|"]
    for m in report["models"].values():
        v, rr = m["vht"], m["libroadrunner"]
        lines.append(f"| {m['title']} | {m['file_kib']:.0f} | {v['import_seconds']:.2f} | "
                     f"{v['ensemble']['compile_and_first_run_seconds']:.1f} | "
                     f"{v['diffrax']['compile_and_first_run_seconds']:.1f} | "
                     f"{rr.get('load_seconds', float('nan')):.2f} |")
    lines += ["", f"Measured on {report['machine']}, one process each; libroadrunner "
              f"{report.get('roadrunner_version', '-')}."]
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--members", type=int, default=1000, help="vht ensemble size")
    parser.add_argument("--sample", type=int, default=100,
                        help="members run by libroadrunner and by vmapped diffrax")
    parser.add_argument("--quick", action="store_true", help="100 members, sample 10")
    parser.add_argument("--models", nargs="*", default=None, help="a subset of the models")
    parser.add_argument("--out", type=Path, default=RESULTS)
    args = parser.parse_args()
    if args.quick:
        args.members, args.sample = 100, 10
    args.sample = min(args.sample, args.members)
    _jax()
    from .ensemble_throughput import machine

    report = {"quick": args.quick, "rtol": RTOL, "atol": ATOL, "save_times": TS.size,
              "machine": machine(), "models": {}}
    with tempfile.TemporaryDirectory() as folder:
        for name in args.models or list(_models()):
            info = export(name, Path(folder))
            print(f"{info['title']}: {len(info['states'])} states, {info['rate_rules']} rate "
                  f"and {info['assignment_rules']} assignment rules", flush=True)
            values = members(info, args.members)
            v = run_vht(info, values, args.sample)
            for key in ("ensemble", "diffrax"):
                row = v[key]
                print(f"  {row['label']}: {row['members_per_second']:,.1f} members/s "
                      f"({row['members']} members)", flush=True)
            rr = run_roadrunner(info, values, args.sample, v.pop("ys"))
            if "methods" in rr:
                report["roadrunner_version"] = rr["version"]
                for method, row in rr["methods"].items():
                    print(f"  libroadrunner {method} {row['members_per_second']:,.1f} members/s,"
                          f" deviation {row['max_relative_deviation']:.1e}", flush=True)
            report["models"][name] = {
                "title": info["title"], "states": len(info["states"]),
                "rate_rules": info["rate_rules"], "assignment_rules": info["assignment_rules"],
                "file_kib": info["file_kib"], "varied": list(info["parameters"]),
                "vht": v, "libroadrunner": rr}
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "sbml_roadrunner.json").write_text(json.dumps(report, indent=2) + "\n")
    (args.out / "sbml_roadrunner.md").write_text(markdown(report))
    print(markdown(report))


if __name__ == "__main__":
    main()
