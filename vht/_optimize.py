"""``vht optimize``: the dose or regimen that best meets a target, by gradients through the
simulation.

The ``[optimize]`` table of a what-if scenario file (``vht._whatif_file``) adds one arm whose
treatment amounts and rates are decision variables within bounds (``{ between = [low, high] }``).
``run_optimize`` finds their values, then runs every arm of the file and the optimised one as
``run_whatif`` does, so the report compares the optimised treatment with the others.

**The problem.** Each variable is mapped onto the unit interval, ``x = low + u (high - low)``.
Over the members of the file's uncertainty (one member without it) the objective and the
constraints are means over the members, the expected outcome:

    maximize  F(u) = mean_m f_m(u)     (or minimize it, or reach a target T: min |F / T - 1|)
    subject to  G_j(u) = mean_m g_jm(u) <= L_j   (or >= L_j)

**Smooth surrogates.** Time in range, below, above and at least are step functions of the
trajectory (a reading is in or out), so their gradient is zero almost everywhere. The
optimiser works on ``Outcome.smooth``: each reading's indicator becomes a logistic sigmoid of
width ``w`` in the signal's unit (``sharpness`` in the file; default 5 % of each threshold:
3.5 mg/dL at 70 mg/dL, 9 mg/dL at 180 mg/dL, 3.25 mmHg at 65 mmHg). It minimises

    J(u) = -F~(u) + rho * sum_j v_j softplus((G~_j(u) - L_j + margin_j) / v_j)

(``+F~`` to minimise; ``(100 (F~ / T - 1))^2``, the squared percentage deviation, for a
target), a smoothed exact penalty: ``rho`` (``penalty``, default 10 objective units per unit of
violation) above the constraint's Lagrange multiplier puts the minimiser of J on the feasible
side within about ``v_j`` (10 % of the limit, or 0.1 for a zero limit). Peak, trough, mean,
final value and AUC are their own surrogates.

**The true metric decides.** Every evaluation also computes the true metrics at ``u`` from the
same simulation. When L-BFGS-B stops with a true constraint still violated (a surrogate is not
the metric, or ``rho`` is below its multiplier), that constraint's margin grows by the
violation plus ``v_j``, its penalty weighs ten times more, and L-BFGS-B goes on from there,
for at most four rounds. The answer is the evaluated point with the best true
objective among those that meet every true constraint (and whose members all ran), so the
reported optimum is a simulated point's true metric, not a surrogate's promise. When no point
meets them, the result says so (``feasible`` False) and gives the least violating point.

**Gradients.** An evaluation simulates the optimised arm for all members with
``simulate_ensemble`` (the batch-major Dormand-Prince integrator of the what-if run, at its
tolerances) and pushes the derivatives with
respect to ``u`` forward through it (``jax.jacfwd``, one tangent per variable: for a few
variables cheaper than reverse mode, and the integrator's while loop has no reverse-mode rule).
Switch times of rules (``correction_insulin``, ``fluid_rule``) are located by bisection, which
passes no derivative: with such a rule in the optimised arm the gradient misses how a dose
moves the switch times, and the true-metric check above is what keeps the answer honest.
Stiff twins (the beat-averaged circulation, the whole-body twin) are refused for now: a
gradient of the vmapped diffrax Kvaerno3 solve at one point works (value and gradient agree
between vmap and a sequential map), but an optimisation run on the beat-averaged circulation
stopped in a derivative solve with a singular Newton system, which is not understood yet.

**The search.** L-BFGS-B (scipy, as the population fits use: optax's L-BFGS would inline the
simulation at every call site of its line search) on the unit box, from the variables'
``start`` values (default the middle of their bounds) or, with ``starts = n``, from the best of
the start and ``n - 1`` scrambled Halton points (one forward simulation each, batched).
Cost is counted in simulation-equivalents: a forward simulation of the arm for all members is
one, a gradient evaluation counts three.
"""

from __future__ import annotations

import dataclasses
import io
import math
import re
import time as _time
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np

from ._scenario import Scenario
from ._simulate_ensemble import simulate_ensemble
from ._units import units as ureg
from ._whatif import (
    ENSEMBLE_TOLERANCES,
    MAX_STEPS,
    WhatIfResult,
    _cohort,
    _patient,
    _start,
    build,
    run_whatif,
    write_whatif,
)
from ._whatif_file import Arm, Item, ScenarioFileError, WhatIfFile, quantity_value, read_whatif

SIMULATIONS_PER_GRADIENT = 3  # the accounting convention: a gradient costs three simulations
MAX_ROUNDS = 4  # L-BFGS-B runs, each after tightening the margins of violated constraints
DEFAULT_SHARPNESS = 0.05  # sigmoid width as a fraction of its threshold
# L-BFGS-B stops when the loss changes by less than FTOL relative to it (the simulations are
# accurate to about 1e-6, so finer changes are the solver's noise) or every projected gradient
# component (loss units per unit box) is below GTOL
FTOL, GTOL = 1e-9, 1e-6
_NUMBER = re.compile(r"^\s*[-+]?(?:\d+\.?\d*|\.\d+)(?:[eE][-+]?\d+)?\s*(.*?)\s*$")


@dataclasses.dataclass(frozen=True)
class Variable:
    """One decision variable: where it is in the file, its unit (as the bounds write it), its
    bounds and start in that unit, and the factor to the unit the treatment takes."""

    path: str  # "optimize.treatments[0].rate"
    unit: str
    low: float
    high: float
    start: float
    factor: float

    def at(self, u):
        """The value in ``unit`` at ``u`` in [0, 1]."""
        return self.low + u * (self.high - self.low)


def _variable(spec: WhatIfFile, path: str, raw: dict, unit: str) -> Variable:
    def fail(p, m):
        return spec.error(p, m)

    low_text, high_text = raw["between"]
    match = _NUMBER.match(low_text)
    display = match.group(1) if match else ""
    dimensionless = ureg.Quantity(1.0, unit or "dimensionless").dimensionless
    if not display and not dimensionless:
        raise fail(f"{path}.between", f"give the bounds with their unit, for example "
                   f"[\"{low_text} {unit}\", \"{high_text} {unit}\"]")
    to = display or "dimensionless"
    low = quantity_value(low_text, to, f"{path}.between", fail)
    high = quantity_value(high_text, to, f"{path}.between", fail)
    if not low < high:
        raise fail(f"{path}.between", "the lower bound must be below the upper bound")
    factor = quantity_value(f"1 {display}".strip(), unit, f"{path}.between", fail)
    start = (quantity_value(raw["start"], to, f"{path}.start", fail) if "start" in raw
             else 0.5 * (low + high))
    if not low <= start <= high:
        raise fail(f"{path}.start", f"the start {start:g} {display} lies outside the bounds")
    return Variable(path, display, low, high, start, factor)


class Decisions:
    """The decision variables, registered in file order as the scenario builder meets them,
    at values ``u`` on the unit box (``None`` while registering: the start values)."""

    def __init__(self, spec: WhatIfFile, u=None, variables: list[Variable] | None = None):
        self.spec, self.u = spec, u
        self.variables = [] if variables is None else list(variables)
        self._index = {v.path: i for i, v in enumerate(self.variables)}

    def value(self, path: str, raw: dict, unit: str):
        if path not in self._index:
            if self.u is not None:
                raise RuntimeError(f"decision variable {path} was not registered")
            self._index[path] = len(self.variables)
            self.variables.append(_variable(self.spec, path, raw, unit))
        i = self._index[path]
        variable = self.variables[i]
        value = variable.start if self.u is None else variable.at(self.u[i])
        return value * variable.factor


@dataclasses.dataclass
class OptimizeResult:
    """What ``run_optimize`` found, and the what-if run of every arm with the optimised one."""

    spec: WhatIfFile
    variables: list[dict]  # path, unit, low, high, start, value
    objective: dict  # outcome, sense, unit, value (true, at the optimum), smooth, target
    constraints: list[dict]  # outcome, bound, limit, unit, value, smooth, met
    feasible: bool
    evaluations: int  # gradient evaluations
    scans: int  # forward simulations of the pre-scan
    simulations: float  # simulation-equivalents: scans + 3 x evaluations
    history: list[dict]  # every evaluated point: kind, u, x, loss, objective, constraints
    arm: Arm  # the optimised arm, its variables at their values
    arm_toml: str
    message: str
    seconds: float  # the optimisation alone (the what-if run is in whatif.seconds)
    whatif: WhatIfResult | None = None


class Problem:
    """An ``[optimize]`` table made into functions of ``u``: compiled once per file."""

    def __init__(self, spec: WhatIfFile):
        opt = spec.optimize
        if opt is None:
            raise ScenarioFileError(f"{spec.source}: no [optimize] table: add one with the arm "
                                    "to optimise, its objective and its decision variables")
        self.spec, self.opt = spec, opt
        self.patient = _patient(spec)
        if self.patient[0].stiffness != "nonstiff":
            # An optimisation run on the beat-averaged circulation stopped in a derivative
            # solve of diffrax's Kvaerno3 (a singular Newton system), though a gradient at
            # one point works: refused until understood rather than answered wrongly.
            raise spec.error("patient", "vht optimize needs a non-stiff twin: this one is "
                             f"{self.patient[0].stiffness}, and gradients through its "
                             "implicit solves are not supported yet (compare fixed "
                             "strategies with vht whatif)")
        registering = Decisions(spec)
        twin, members, _, outcomes, warnings, _ = build(spec, decisions=registering,
                                                         patient=self.patient)
        self.variables = registering.variables
        self.twin = twin
        # the validated-range checks ran at the start values; run them at both bounds too
        for edge in (0.0, 1.0):
            u = np.full(len(self.variables), edge)
            extra = build(spec, decisions=Decisions(spec, u, self.variables),
                          patient=self.patient)[4]
            warnings += [w for w in extra if w not in warnings]
        self.warnings = warnings
        by_name = {o.name: o for o in outcomes}

        def outcome(name, path):
            if name not in by_name:
                raise spec.error(path, f"no outcome named {name!r}; the file's outcomes are "
                                 f"{sorted(by_name)}")
            return by_name[name]

        self.objective = outcome(opt.outcome, f"optimize.{opt.sense}")
        self.target = None
        if opt.sense == "target":
            self.target = quantity_value(opt.target, self.objective.unit,
                                         "optimize.target.value",
                                         lambda p, m: spec.error(p, m))
            if self.target == 0:
                raise spec.error("optimize.target.value", "a target of zero has no relative "
                                 "deviation: minimize the outcome instead")
        self.constraints = []
        for c in opt.constraints:
            o = outcome(c["outcome"], f"{c['path']}.outcome")
            bound = "at_most" if "at_most" in c else "at_least"
            limit = quantity_value(c[bound], o.unit, f"{c['path']}.{bound}",
                                   lambda p, m: spec.error(p, m))
            width = 0.1 * abs(limit) if limit else 0.1
            self.constraints.append((o, 1.0 if bound == "at_most" else -1.0, limit, width,
                                     bound))
        self.sharpness = {}
        for o in [self.objective] + [c[0] for c in self.constraints]:
            unit = twin.signal_units[twin.signal_index(o.signal)]
            widths = {}
            for threshold in o.thresholds:
                if opt.sharpness is not None:
                    widths[threshold] = quantity_value(opt.sharpness, unit, "optimize.sharpness",
                                                       lambda p, m: spec.error(p, m))
                    if widths[threshold] <= 0:
                        raise spec.error("optimize.sharpness", "must be positive")
                elif threshold == 0:
                    raise spec.error("optimize", f"outcome {o.name!r} has a threshold of 0: "
                                     "give the sigmoids' width as sharpness = \"...\"")
                else:
                    widths[threshold] = DEFAULT_SHARPNESS * abs(threshold)
            self.sharpness[o.name] = widths
        self.cohort = _cohort(twin, members)
        self.y0 = _start(spec, self.cohort, self.warnings)
        self.ts = np.arange(0.0, spec.horizon + 1e-9, spec.save_every)
        self.signals = sorted({self.objective.signal} | {c[0].signal for c in self.constraints})
        self.n_members = int(self.y0.shape[0])

    # -- the functions of u ----------------------------------------------------------------------

    def scenario(self, u) -> Scenario:
        arms = build(self.spec, decisions=Decisions(self.spec, u, self.variables),
                     patient=self.patient)[2]
        return Scenario(arms[-1][1].interventions)  # the optimised arm comes last

    def simulate(self, u):
        solution = simulate_ensemble(self.cohort, self.scenario(u), ts=self.ts, y0=self.y0,
                                     max_steps=MAX_STEPS, **ENSEMBLE_TOLERANCES)
        return {s: solution[s] for s in self.signals}

    def metrics(self, u, margins, weights):
        """(loss J, {loss, objective, objective_smooth, constraints, constraints_smooth,
        failed}) at ``u``; ``margins`` tighten the constraints and ``weights`` multiply
        their penalties (one each per constraint)."""
        signals = self.simulate(u)
        ts = self.ts

        def mean(x):  # over the members that ran
            ok = jnp.isfinite(x)
            return jnp.sum(jnp.where(ok, x, 0.0)) / jnp.maximum(jnp.sum(ok), 1)

        o = self.objective
        values = signals[o.signal]
        smooth = mean(o.smooth(ts, values, self.sharpness[o.name]))
        true = mean(o.per_member(ts, values, xp=jnp))
        failed = jnp.sum(~jnp.all(jnp.isfinite(values), axis=1))
        if self.opt.sense == "maximize":
            loss = -smooth
        elif self.opt.sense == "minimize":
            loss = smooth
        else:
            loss = (100.0 * (smooth / self.target - 1.0)) ** 2
        g_true, g_smooth = [], []
        for j, (c, sign, limit, width, _) in enumerate(self.constraints):
            v = signals[c.signal]
            g = mean(c.smooth(ts, v, self.sharpness[c.name]))
            excess = sign * (g - limit) + margins[j]
            loss = loss + weights[j] * self.opt.penalty * width * jax.nn.softplus(
                excess / width)
            g_smooth.append(g)
            g_true.append(mean(c.per_member(ts, v, xp=jnp)))
            failed = failed + jnp.sum(~jnp.all(jnp.isfinite(v), axis=1))
        # every member failed: a large finite loss sends the line search back
        loss = jnp.where(jnp.isfinite(loss), loss, 1e10)
        def stack(xs):
            return jnp.stack(xs) if xs else jnp.zeros((0,))

        return loss, {"loss": loss, "objective": true, "objective_smooth": smooth,
                      "constraints": stack(g_true), "constraints_smooth": stack(g_smooth),
                      "failed": failed}

    @property
    def gradient(self):
        """Jitted ``u, margins, weights -> (dJ/du, metrics)``: one simulation pushing len(u)
        tangents."""
        if not hasattr(self, "_gradient"):
            self._gradient = jax.jit(jax.jacfwd(self.metrics, has_aux=True))
        return self._gradient

    @property
    def forward(self):
        """Jitted ``U (points x variables), margins, weights -> metrics per point``."""
        if not hasattr(self, "_forward"):
            self._forward = jax.jit(jax.vmap(lambda u, m, w: self.metrics(u, m, w)[1],
                                             in_axes=(0, None, None)))
        return self._forward

    # -- the true metric ------------------------------------------------------------------------

    def score(self, record: dict) -> float:
        """The true objective, larger is better (NaN if it did not run)."""
        value = record["objective"]
        if self.opt.sense == "maximize":
            return value
        if self.opt.sense == "minimize":
            return -value
        return -self.deviation(value)

    def deviation(self, value: float) -> float:
        """Percent deviation from the target."""
        return 100.0 * abs(value / self.target - 1.0)

    def violations(self, record: dict) -> np.ndarray:
        """Each true constraint's violation (positive when violated) at a record."""
        return np.array([sign * (g - limit) for (_, sign, limit, _, _), g in
                         zip(self.constraints, record["constraints"])])

    def feasible(self, record: dict) -> bool:
        return (record["failed"] == 0 and math.isfinite(record["objective"])
                and bool(np.all(self.violations(record) <= 1e-12)))

    def grid(self, points_per_variable: int, batch: int = 512) -> list[dict]:
        """The true metrics on a full grid over the bounds (for comparison with the optimiser:
        each point is one simulation)."""
        axes = [np.linspace(0.0, 1.0, points_per_variable)] * len(self.variables)
        U = np.stack([a.ravel() for a in np.meshgrid(*axes, indexing="ij")], axis=1)
        margins = weights = jnp.zeros(len(self.constraints))
        out = []
        for i in range(0, len(U), batch):
            chunk = U[i:i + batch]
            # pad to a whole batch: one compiled program for every chunk
            padded = np.concatenate([chunk, np.repeat(chunk[-1:], batch - len(chunk), 0)])
            metrics = jax.device_get(self.forward(jnp.asarray(padded), margins, weights))
            out += [self._record("grid", u, {k: v[j] for k, v in metrics.items()})
                    for j, u in enumerate(chunk)]
        return out

    def _record(self, kind: str, u, metrics: dict) -> dict:
        u = np.asarray(u, dtype=float)
        return {"kind": kind, "u": u.tolist(),
                "x": [v.at(float(ui)) for v, ui in zip(self.variables, u)],
                "loss": float(metrics["loss"]), "objective": float(metrics["objective"]),
                "objective_smooth": float(metrics["objective_smooth"]),
                "constraints": np.asarray(metrics["constraints"], dtype=float).tolist(),
                "constraints_smooth": np.asarray(metrics["constraints_smooth"],
                                                 dtype=float).tolist(),
                "failed": int(metrics["failed"])}


def optimize(problem: Problem, *, progress: bool = True) -> OptimizeResult:
    """Run the search of ``problem`` (see the module docstring); no what-if run."""
    from scipy.optimize import minimize

    opt = problem.opt
    started = _time.perf_counter()
    k = len(problem.variables)
    budget = opt.max_evaluations
    history: list[dict] = []
    margins = np.zeros(len(problem.constraints))
    weights = np.ones(len(problem.constraints))
    cache: dict[tuple, tuple[float, np.ndarray]] = {}
    bar = None
    if progress:
        from tqdm.auto import tqdm

        bar = tqdm(total=budget, unit="gradient", desc="vht optimize", leave=False)

    def evaluate(u):
        # points closer than 1e-12 of the box are one point: the line search probing below
        # the solver's tolerance gets the same answer rather than costing another simulation
        key = (tuple(np.round(u, 12)), tuple(margins), tuple(weights))
        if key not in cache:
            if sum(r["kind"] == "gradient" for r in history) >= budget:
                raise _BudgetSpent
            grad, metrics = problem.gradient(jnp.asarray(u), jnp.asarray(margins),
                                             jnp.asarray(weights))
            record = problem._record("gradient", u, jax.device_get(metrics))
            history.append(record)
            cache[key] = (record["loss"], np.asarray(grad, dtype=float))
            if bar is not None:
                bar.update()
                best = _best(problem, history)
                bar.set_postfix_str(f"{problem.objective.name}: {best['objective']:.4g}"
                                    if best else "no feasible point yet")
        return cache[key]

    u0 = np.array([(v.start - v.low) / (v.high - v.low) for v in problem.variables])
    scans = 0
    if opt.starts > 1:
        from scipy.stats import qmc

        points = np.concatenate([u0[None], qmc.Halton(k, scramble=True, seed=0).random(
            opt.starts - 1)])
        metrics = jax.device_get(problem.forward(jnp.asarray(points), jnp.asarray(margins),
                                                 jnp.asarray(weights)))
        scanned = [problem._record("scan", u, {key: v[j] for key, v in metrics.items()})
                   for j, u in enumerate(points)]
        history += scanned
        scans = len(points)
        u0 = np.asarray(min(scanned, key=lambda r: r["loss"])["u"])
    message = ""
    u = u0
    for _ in range(MAX_ROUNDS):
        try:
            found = minimize(evaluate, u, jac=True, method="L-BFGS-B", bounds=[(0.0, 1.0)] * k,
                             options={"maxfun": budget, "maxiter": budget, "ftol": FTOL,
                                      "gtol": GTOL})
            message, u = str(found.message), np.clip(found.x, 0.0, 1.0)
        except _BudgetSpent:
            message = f"stopped after the budget of {budget} gradient evaluations"
            break
        at = [r for r in history if r["kind"] == "gradient" and np.allclose(r["u"], u,
                                                                           atol=1e-14)]
        if not problem.constraints or not at:
            break
        violation = problem.violations(at[-1])
        if np.all(violation <= 0):
            break
        # the true constraint does not hold: tighten it, weigh it ten times more (the
        # penalty may be below its multiplier) and go on from here
        violated = violation > 0
        margins = margins + np.where(violated, violation + np.array(
            [c[3] for c in problem.constraints]), 0.0)
        weights = np.where(violated, 10.0 * weights, weights)
    if bar is not None:
        bar.close()
    best = _best(problem, history)
    feasible = best is not None
    if best is None:  # no point meets the constraints: the least violating one
        ran = [r for r in history if math.isfinite(r["objective"])] or history
        best = min(ran, key=lambda r: float(np.sum(np.maximum(problem.violations(r), 0))))
    return _result(problem, best, feasible, history, scans, message,
                   _time.perf_counter() - started)


class _BudgetSpent(Exception):
    pass


def _best(problem: Problem, history: list[dict]) -> dict | None:
    feasible = [r for r in history if problem.feasible(r)]
    return max(feasible, key=lambda r: (problem.score(r), -r["loss"])) if feasible else None


def _result(problem: Problem, best: dict, feasible: bool, history: list[dict], scans: int,
            message: str, seconds: float) -> OptimizeResult:
    opt = problem.opt
    variables = [{"path": v.path, "label": _label(opt, v.path), "unit": v.unit, "low": v.low,
                  "high": v.high, "start": v.start, "value": x}
                 for v, x in zip(problem.variables, best["x"])]
    o = problem.objective
    objective = {"outcome": o.name, "sense": opt.sense, "unit": o.unit,
                 "value": best["objective"], "smooth": best["objective_smooth"],
                 "target": problem.target,
                 "deviation": (problem.deviation(best["objective"]) if problem.target
                               else None)}
    constraints = [{"outcome": c.name, "bound": bound, "limit": limit, "unit": c.unit,
                    "value": g, "smooth": gs,
                    "met": bool(sign * (g - limit) <= 1e-12)}
                   for (c, sign, limit, _, bound), g, gs in
                   zip(problem.constraints, best["constraints"], best["constraints_smooth"])]
    values = {v.path: x for v, x in zip(problem.variables, best["x"])}
    units = {v.path: v.unit for v in problem.variables}
    treatments = []
    for item in opt.treatments:
        fixed = {key: (f"{values[f'{item.path}.{key}']:.10g} {units[f'{item.path}.{key}']}"
                       .strip() if f"{item.path}.{key}" in values else value)
                 for key, value in item.values.items()}
        treatments.append(Item(item.kind, fixed, item.path))
    arm = Arm(opt.arm, tuple(treatments), "optimize")
    evaluations = sum(r["kind"] == "gradient" for r in history)
    return OptimizeResult(
        spec=problem.spec, variables=variables, objective=objective, constraints=constraints,
        feasible=feasible, evaluations=evaluations, scans=scans,
        simulations=scans + SIMULATIONS_PER_GRADIENT * evaluations, history=history, arm=arm,
        arm_toml=_arm_toml(arm), message=message, seconds=seconds)


def _label(opt, path: str) -> str:
    """A decision variable as a reader names it: "insulin bolus dose at 7 h"."""
    item_path, key = path.rsplit(".", 1)
    item = next(i for i in opt.treatments if i.path == item_path)
    when = item.values.get("time")
    return f"{item.kind.replace('_', ' ')} {key.replace('_', ' ')}" + (
        f" at {when}" if isinstance(when, str) else "")


def _arm_toml(arm: Arm) -> str:
    """The optimised arm as a ``[[arms]]`` table to paste into a scenario file."""
    def value(v):
        if isinstance(v, str):
            return '"' + v.replace("\\", "\\\\").replace('"', '\\"') + '"'
        if isinstance(v, bool):
            return "true" if v else "false"
        return repr(v)

    lines = ["[[arms]]", f"name = {value(arm.name)}", "treatments = ["]
    for item in arm.treatments:
        fields = ", ".join([f"kind = {value(item.kind)}"] +
                           [f"{k} = {value(v)}" for k, v in item.values.items()])
        lines.append(f"  {{ {fields} }},")
    lines.append("]")
    return "\n".join(lines) + "\n"


def run_optimize(source, *, progress: bool = True, whatif: bool = True) -> OptimizeResult:
    """Optimise the ``[optimize]`` arm of a what-if scenario file (a path, TOML text or a
    ``WhatIfFile``), then (``whatif=True``) run every arm of the file with the optimised one."""
    spec = source if isinstance(source, WhatIfFile) else read_whatif(source)
    problem = Problem(spec)
    result = optimize(problem, progress=progress)
    if whatif:
        with_arm = dataclasses.replace(spec, arms=spec.arms + (result.arm,), optimize=None)
        result.whatif = run_whatif(with_arm, progress=progress)
        result.whatif.warnings[:0] = [w for w in problem.warnings
                                      if w not in result.whatif.warnings]
        result.whatif.provenance["optimizer"] = (
            f"L-BFGS-B on smooth surrogates, {result.evaluations} gradient evaluations "
            f"(forward-mode through the ensemble integrator) + {result.scans} scan "
            f"simulations = {result.simulations:g} simulation-equivalents, "
            f"{result.seconds:.1f} s")
    return result


# -- writing ------------------------------------------------------------------------------------

def _fmt(x: float | None) -> str:
    return "" if x is None else f"{x:.4g}"


def _convergence_png(result: OptimizeResult) -> bytes:
    from matplotlib.figure import Figure

    runs = [r for r in result.history if r["kind"] in ("scan", "gradient")]
    figure = Figure(figsize=(7.5, 3.4), dpi=100)
    axes = figure.add_subplot(1, 1, 1)
    n = np.arange(1, len(runs) + 1)
    axes.plot(n, [r["objective"] for r in runs], "o-", ms=3, label="true metric")
    axes.plot(n, [r["objective_smooth"] for r in runs], "s--", ms=3, alpha=0.7,
              label="smooth surrogate")
    axes.set_xlabel("evaluation (scan points first)")
    axes.set_ylabel(f"{result.objective['outcome']} [{result.objective['unit']}]")
    axes.grid(alpha=0.3)
    axes.legend(loc="best", fontsize=8)
    figure.tight_layout()
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png")
    return buffer.getvalue()


def report_section(result: OptimizeResult):
    """The optimisation's section of the what-if report."""
    from ._report import Section

    o = result.objective
    goal = (f"reach {o['target']:g} {o['unit']}" if o["sense"] == "target"
            else f"{o['sense']} the mean")
    text = (f"Arm {result.arm.name!r}: {goal} of {o['outcome']!r} over the members"
            + (", subject to " + "; ".join(
                f"mean {c['outcome']} {'<=' if c['bound'] == 'at_most' else '>='} "
                f"{c['limit']:g} {c['unit']}" for c in result.constraints)
               if result.constraints else "")
            + f". L-BFGS-B on smooth surrogates: {result.evaluations} gradient evaluations"
            f" and {result.scans} scan simulations, {result.simulations:g} "
            f"simulation-equivalents (a gradient counts 3), {result.seconds:.1f} s. "
            + ("Every constraint is met by the true metric at the optimum."
               if result.feasible else "NO evaluated point meets every constraint: the "
               "least violating one is shown."))
    rows = [(f"{v['label']} ({v['path']})", f"{_fmt(v['low'])} - {_fmt(v['high'])} {v['unit']}",
             f"{_fmt(v['start'])} {v['unit']}", f"{v['value']:.4g} {v['unit']}")
            for v in result.variables]
    rows += [(f"objective: {o['outcome']}" + (f" (target {o['target']:g})" if o["target"]
                                               else ""), "", f"smooth {_fmt(o['smooth'])}",
              f"{_fmt(o['value'])} {o['unit']}" + (f" ({o['deviation']:.2f} % off target)"
                                                   if o["target"] else ""))]
    rows += [(f"constraint: {c['outcome']} {'<=' if c['bound'] == 'at_most' else '>='} "
              f"{c['limit']:g} {c['unit']}", "met" if c["met"] else "VIOLATED",
              f"smooth {_fmt(c['smooth'])}", f"{_fmt(c['value'])} {c['unit']}")
             for c in result.constraints]
    png = _convergence_png(result)
    return Section(
        heading="Optimised treatment", text=text,
        columns=("decision variable or metric", "bounds", "start", "optimum (mean over members)"),
        rows=tuple(rows),
        figures=((png, "the optimiser's true metric and surrogate at each evaluation",
                  "The objective at each evaluated point: the true metric (what the table "
                  "reports) and the smooth surrogate the gradient follows."),))


def write_optimize(result: OptimizeResult, out: str | Path) -> dict[str, Path]:
    """Write ``whatif.h5``, ``report.html`` (with the optimisation's section),
    ``optimize.json`` and ``optimized_arm.toml`` into folder ``out``."""
    import json

    if result.whatif is None:
        raise ValueError("write_optimize needs the what-if run: run_optimize(..., whatif=True)")
    out = Path(out)
    files = write_whatif(result.whatif, out, sections=[report_section(result)])
    summary = {key: getattr(result, key) for key in (
        "variables", "objective", "constraints", "feasible", "evaluations", "scans",
        "simulations", "message", "seconds", "history")}
    summary["arm"] = result.arm.name
    (out / "optimize.json").write_text(json.dumps(summary, indent=1, default=float))
    (out / "optimized_arm.toml").write_text(result.arm_toml)
    return {**files, "summary": out / "optimize.json", "arm": out / "optimized_arm.toml"}
