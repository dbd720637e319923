"""A calibration problem: which parameters are free, how they are transformed and a priori
distributed, how observations scatter around the twin's predictions, and where doses go.

Unknowns live in an unconstrained vector ``z`` (what optimisers move): the free twin parameters
followed by the error-model parameters, each through its transform:

| transform | constrained value | for |
|---|---|---|
| ``Log()`` | exp(z) | positive quantities (clearances, volumes, error SDs) |
| ``Bounded(lo, hi)`` | lo + (hi - lo) sigmoid(z) | fractions (bioavailability) and ranges |
| ``Identity()`` | z | unrestricted quantities |

Priors (for maximum a posteriori fits) act on the constrained value: ``Normal(mean, sd)`` or
``LogNormal(median, sd_log)``. Observation models, one per observed variable, with estimated
parameters (negative log-likelihoods include every constant, so that -2 log L is comparable
with other software):

| model | observation y given prediction f | parameters |
|---|---|---|
| ``Additive(sd)`` | y ~ N(f, sd^2) | sd |
| ``Proportional(cv)`` | y ~ N(f, (cv f)^2) | cv |
| ``Combined(sd, cv)`` | y ~ N(f, sd^2 + (cv f)^2) | sd, cv |
| ``LogNormal(sd_log)`` | log y ~ N(log f, sd_log^2) (y > 0) | sd_log |
"""

from __future__ import annotations

import abc
import dataclasses
from collections.abc import Mapping, Sequence

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
from jaxtyping import Array

import vht
from vht._closed_form import closed_form_outputs

from ._records import ROUTES, SubjectData, read_subjects

_LOG_2PI = float(np.log(2.0 * np.pi))


# -- transforms -----------------------------------------------------------------------------

class Transform(eqx.Module):
    """Maps an unconstrained real z to a constrained value and back."""

    @abc.abstractmethod
    def forward(self, z: Array) -> Array: ...

    @abc.abstractmethod
    def inverse(self, value: Array) -> Array: ...


class Identity(Transform):
    def forward(self, z):
        return z

    def inverse(self, value):
        return jnp.asarray(value, dtype=float)


class Log(Transform):
    def forward(self, z):
        return jnp.exp(z)

    def inverse(self, value):
        value = jnp.asarray(value, dtype=float)
        return jnp.log(value)


class Bounded(Transform):
    lower: float = eqx.field(static=True)
    upper: float = eqx.field(static=True)

    def __check_init__(self):
        if not self.lower < self.upper:
            raise ValueError(f"Bounded needs lower < upper, got ({self.lower}, {self.upper})")

    def forward(self, z):
        return self.lower + (self.upper - self.lower) * jax.nn.sigmoid(z)

    def inverse(self, value):
        fraction = (jnp.asarray(value, dtype=float) - self.lower) / (self.upper - self.lower)
        return jnp.log(fraction) - jnp.log1p(-fraction)


# -- priors -----------------------------------------------------------------------------------

class Prior(eqx.Module):
    @abc.abstractmethod
    def neg_log_density(self, value: Array) -> Array: ...


class Normal(Prior):
    mean: float = eqx.field(static=True)
    sd: float = eqx.field(static=True)

    def neg_log_density(self, value):
        return 0.5 * (_LOG_2PI + 2 * jnp.log(self.sd) + ((value - self.mean) / self.sd) ** 2)


class LogNormal(Prior):
    median: float = eqx.field(static=True)
    sd_log: float = eqx.field(static=True)

    def neg_log_density(self, value):
        z = (jnp.log(value) - jnp.log(self.median)) / self.sd_log
        return 0.5 * (_LOG_2PI + 2 * jnp.log(self.sd_log) + z**2) + jnp.log(value)


# -- observation models -----------------------------------------------------------------------

class ErrorModel(eqx.Module):
    """How observations scatter around predictions; its parameters are estimated."""

    parameters: tuple[str, ...] = eqx.field(static=True)
    initial: tuple[float, ...] = eqx.field(static=True)

    @abc.abstractmethod
    def neg_log_likelihood(self, observed, predicted, params: Mapping[str, Array]) -> Array:
        """Per-observation negative log-likelihood (all constants included)."""

    @abc.abstractmethod
    def linearised(self, observed, predicted, params: Mapping[str, Array]):
        """(y, f, variance) on the scale where the model is normal, for first-order (FOCE)
        approximations: the identity for normal models, logarithms for the log-normal one."""

    def sample(self, key, predicted, params: Mapping[str, Array]) -> Array:
        """Observations drawn around ``predicted`` (for synthetic data and predictive checks):
        the linearised scale's normal noise, mapped back for the log-normal model."""
        _, f, variance = self.linearised(predicted, predicted, params)
        noisy = f + jnp.sqrt(variance) * jax.random.normal(key, jnp.shape(predicted))
        return jnp.exp(noisy) if isinstance(self, LogNormalError) else noisy


def _normal_nll(observed, predicted, variance):
    return 0.5 * (_LOG_2PI + jnp.log(variance) + (observed - predicted) ** 2 / variance)


class Additive(ErrorModel):
    def __init__(self, sd: float = 1.0):
        self.parameters, self.initial = ("sd",), (float(sd),)

    def neg_log_likelihood(self, observed, predicted, params):
        return _normal_nll(observed, predicted, params["sd"] ** 2)

    def linearised(self, observed, predicted, params):
        return observed, predicted, params["sd"] ** 2 + 0.0 * predicted


class Proportional(ErrorModel):
    def __init__(self, cv: float = 0.1):
        self.parameters, self.initial = ("cv",), (float(cv),)

    def neg_log_likelihood(self, observed, predicted, params):
        return _normal_nll(observed, predicted, (params["cv"] * predicted) ** 2)

    def linearised(self, observed, predicted, params):
        return observed, predicted, (params["cv"] * predicted) ** 2


class Combined(ErrorModel):
    def __init__(self, sd: float = 0.1, cv: float = 0.1):
        self.parameters, self.initial = ("sd", "cv"), (float(sd), float(cv))

    def neg_log_likelihood(self, observed, predicted, params):
        return _normal_nll(observed, predicted, params["sd"] ** 2 + (params["cv"] * predicted) ** 2)

    def linearised(self, observed, predicted, params):
        return observed, predicted, params["sd"] ** 2 + (params["cv"] * predicted) ** 2


class LogNormalError(ErrorModel):
    def __init__(self, sd_log: float = 0.1):
        self.parameters, self.initial = ("sd_log",), (float(sd_log),)

    def neg_log_likelihood(self, observed, predicted, params):
        log_y = jnp.log(jnp.maximum(observed, 1e-300))
        log_f = jnp.log(jnp.maximum(predicted, 1e-300))
        return _normal_nll(log_y, log_f, params["sd_log"] ** 2) + log_y

    def linearised(self, observed, predicted, params):
        log_y = jnp.log(jnp.maximum(observed, 1e-300))
        log_f = jnp.log(jnp.maximum(predicted, 1e-300))
        return log_y, log_f, params["sd_log"] ** 2 + 0.0 * log_f


# -- the problem -----------------------------------------------------------------------------

def _error_parameters(params: Mapping[str, Array], variable: str, model: ErrorModel):
    return {p: params[f"error.{variable}.{p}"] for p in model.parameters}


def _by_variable(observations, subject: SubjectData, per_variable: list[Array]) -> Array:
    """Row j of ``per_variable[k]`` where row j observes variable k. With one observed
    variable that is the one array as it is: a population fit differentiates these rows
    along a dozen directions, and selecting among one array costs a select per direction."""
    if len(observations) == 1:
        return jnp.broadcast_to(per_variable[0], jnp.shape(subject.variable_index))
    index = jnp.asarray(subject.variable_index)
    out = per_variable[0]
    for k in range(1, len(observations)):
        out = jnp.where(index == k, per_variable[k], out)
    return out

# routes whose doses act on a parameter through its organ's dose rule
PARAMETER_ROUTES = ("meal", "subcutaneous")


def _dose_rule(twin: vht.Twin, route: str, target: str):
    """(unit, rule) of the organ's dose rule for parameter ``target``."""
    organ_name, _, parameter = target.partition(".")
    if target not in twin.parameter_info():
        raise ValueError(f"the {route} route doses a parameter (through its organ's dose "
                         f"rule), and {target!r} is not a parameter of the twin")
    organ = dict(zip(twin.names, twin.organs))[organ_name]
    rules = type(organ).dose_rules
    if parameter not in rules:
        raise ValueError(f"{type(organ).__name__} has no dose rule for {parameter!r} (its dose "
                         f"rules: {sorted(rules) or 'none'})")
    return rules[parameter]


def _rule_steps(twin: vht.Twin, route: str, target: str, is_route, amount, time) -> list:
    """The dose rule's windows for one padded dose slot; a slot of another route gets windows
    of zero length (never on), so that it cannot override a real dose's value."""
    _, rule = _dose_rule(twin, route, target)
    organ_name = target.partition(".")[0]
    steps = rule(jnp.where(is_route, amount, 0.0), time, organ_name)
    steps = [steps] if isinstance(steps, vht.ParameterStep) else list(steps)
    return [vht.ParameterStep(p.parameter, p.value, p.time, jnp.where(is_route, p.duration, 0.0),
                              p.unit) for p in steps]


@dataclasses.dataclass(frozen=True)
class FreeParameter:
    """A twin parameter (``"organ.name"``) to estimate, with its transform, optional prior and
    initial value (default: the twin's current value)."""

    name: str
    transform: Transform = dataclasses.field(default_factory=Log)
    prior: Prior | None = None
    initial: float | None = None


SOLUTION_METHODS = ("auto", "closed_form", "ode")


def _solution_method(twin: vht.Twin, dose_targets: Mapping[str, str], requested: str) -> str:
    """The prediction method ``Problem`` uses: ``requested``, or for ``"auto"`` the closed
    form where it applies."""
    from vht._closed_form import closed_form_refusal

    if requested not in SOLUTION_METHODS:
        raise ValueError(f"solution must be one of {SOLUTION_METHODS}, not {requested!r}")
    reason = closed_form_refusal(twin)
    rules = [route for route in dose_targets if route in PARAMETER_ROUTES]
    if rules and reason is None:
        reason = f"the {rules} routes dose through parameter steps"
    if "infusion" in dose_targets and reason is None:
        organ_name, _, state = dose_targets["infusion"].partition(".")
        try:  # a constant rate needs the organ's step response into that state
            twin[organ_name].step_response(jnp.zeros(1), state)
        except NotImplementedError as error:
            reason = str(error)
    if requested == "closed_form" and reason is not None:
        raise ValueError(f"solution='closed_form' is not possible: {reason}")
    if requested == "auto":
        return "ode" if reason is not None else "closed_form"
    return requested


class Problem(eqx.Module):
    """Free parameters, observation models and dose routing for one twin.

    ```python
    problem = Problem(
        twin, free=[FreeParameter("drug.ka"), FreeParameter("drug.clearance"),
                    FreeParameter("drug.volume")],
        observations={"drug.concentration": Additive(0.5)},
        dose_targets={"oral": "drug.depot"}, time_unit="h")
    ```

    Dose targets: a state for the ``oral``, ``iv`` and ``infusion`` routes (the amount arrives
    in it); a parameter for the ``meal`` and ``subcutaneous`` routes, given through its organ's
    dose rule (``AbstractOrgan.dose_rules``: the UVA/Padova patient eats ``meal`` records on
    ``patient.carb_rate`` at 5 g/min and takes ``subcutaneous`` insulin on
    ``patient.bolus_rate``).

    ``subject_parameters``: twin parameters that differ between subjects and are known (not
    estimated), read from the records columns of the same name (one value per subject, in the
    parameter's unit): a virtual patient's own physiology, a body weight.

    ``solution``: how predictions are computed. ``"closed_form"`` superposes the impulse
    responses of linear organs (``vht.simulate_closed_form``: exact, no ODE solver, and many
    times cheaper in population fits); ``"ode"`` integrates with ``vht.simulate`` at ``rtol``
    and ``atol``; ``"auto"`` (default) takes the closed form wherever the twin and the dose
    routes allow it (organs that declare ``impulse_response``, no connections, no dose
    rules) and the ODE otherwise. ``problem.solution`` holds the choice made.
    """

    twin: vht.Twin
    free: tuple[FreeParameter, ...] = eqx.field(static=True)
    observations: tuple[tuple[str, ErrorModel], ...] = eqx.field(static=True)
    dose_targets: tuple[tuple[str, str], ...] = eqx.field(static=True)
    time_unit: str = eqx.field(static=True)
    rtol: float = eqx.field(static=True)
    atol: float = eqx.field(static=True)
    max_steps: int = eqx.field(static=True)
    subject_parameters: tuple[str, ...] = eqx.field(static=True)
    solution: str = eqx.field(static=True)

    def __init__(self, twin: vht.Twin, free: Sequence[FreeParameter],
                 observations: Mapping[str, ErrorModel], dose_targets: Mapping[str, str],
                 time_unit: str = "h", rtol: float = 1e-8, atol: float = 1e-10,
                 max_steps: int = 20_000, subject_parameters: Sequence[str] = (),
                 solution: str = "auto"):
        info = twin.parameter_info()
        names = [f.name for f in free]
        for name in names:
            if name not in info:
                raise ValueError(f"free parameter {name!r} is not a parameter of the twin")
        if len(set(names)) != len(names):
            raise ValueError(f"free parameters repeat a name: {names}")
        for variable in observations:
            if variable not in twin.state_names and variable not in twin.signal_names:
                raise ValueError(f"observed variable {variable!r} is neither a state nor a "
                                 "signal of the twin")
        for route, target in dose_targets.items():
            if route not in ROUTES:
                raise ValueError(f"dose route {route!r} is not one of {ROUTES}")
            if route in PARAMETER_ROUTES:
                _dose_rule(twin, route, target)
            else:
                twin.state_index(target)
        for name in subject_parameters:
            if name not in info:
                raise ValueError(f"subject parameter {name!r} is not a parameter of the twin")
            if name in names:
                raise ValueError(f"{name!r} is both free and a known subject parameter")
        vht.conversion_factor(time_unit, "min")
        self.twin = twin
        self.free = tuple(free)
        self.observations = tuple(observations.items())
        self.dose_targets = tuple(dose_targets.items())
        self.time_unit = time_unit
        self.rtol, self.atol, self.max_steps = float(rtol), float(atol), int(max_steps)
        self.subject_parameters = tuple(subject_parameters)
        self.solution = _solution_method(twin, dose_targets, solution)

    # -- naming ------------------------------------------------------------------------------

    @property
    def observed(self) -> dict[str, str]:
        """Observed variable -> its model unit."""
        units = dict(zip(self.twin.state_names, self.twin.state_units)) | dict(
            zip(self.twin.signal_names, self.twin.signal_units))
        return {name: units[name] for name, _ in self.observations}

    @property
    def dose_units(self) -> dict[str, str]:
        """Route -> the unit its amounts are given in (the target state's, or the dose
        rule's)."""
        units = dict(zip(self.twin.state_names, self.twin.state_units))
        return {route: _dose_rule(self.twin, route, target)[0] if route in PARAMETER_ROUTES
                else units[target] for route, target in self.dose_targets}

    @property
    def minutes_per_time_unit(self) -> float:
        return vht.conversion_factor(self.time_unit, "min")

    @property
    def error_names(self) -> tuple[str, ...]:
        return tuple(f"error.{variable}.{p}" for variable, model in self.observations
                     for p in model.parameters)

    @property
    def names(self) -> tuple[str, ...]:
        """Every unknown, in the order of the unconstrained vector."""
        return tuple(f.name for f in self.free) + self.error_names

    @property
    def size(self) -> int:
        return len(self.names)

    def read_subjects(self, records, subjects: Sequence[str]) -> SubjectData:
        """``subjects`` of a records table as the stacked, padded arrays this problem reads
        (observed variables, dose units and subject parameters converted)."""
        batch = read_subjects(records, list(subjects), self.observed, self.dose_units,
                              self.minutes_per_time_unit, self.subject_parameters)
        period = self.twin.sample_period()
        if period is not None:
            # a clocked twin is read at its ticks (``simulate(save_at_ticks=True)``)
            ticks = (np.asarray(batch.times) - batch.span[0]) / period
            off = np.abs(ticks - np.round(ticks)) > 1e-9 * (1.0 + np.abs(ticks))
            if np.any(off):
                i, j = np.argwhere(off)[0]
                raise ValueError(
                    f"subject {list(subjects)[i]}: an observation at "
                    f"{batch.times[i, j] / self.minutes_per_time_unit:g} {self.time_unit} lies "
                    f"between the twin's clock ticks (every {period:g} min from "
                    f"{batch.span[0]:g} min); a clocked twin is observed at its ticks")
        return batch

    # -- vectors -----------------------------------------------------------------------------

    def initial(self) -> Array:
        """The unconstrained starting point: the twin's values (or ``initial``) and the error
        models' initial parameters."""
        current = self.twin.parameters()
        values = [f.transform.inverse(current[f.name] if f.initial is None else f.initial)
                  for f in self.free]
        values += [jnp.log(v) for _, model in self.observations for v in model.initial]
        return jnp.stack([jnp.asarray(v, dtype=float) for v in values])

    def constrained(self, z: Array) -> dict[str, Array]:
        """Every unknown by name, on its natural scale."""
        out = {f.name: f.transform.forward(z[i]) for i, f in enumerate(self.free)}
        for k, name in enumerate(self.error_names):
            out[name] = jnp.exp(z[len(self.free) + k])
        return out

    def twin_at(self, z: Array, subject: SubjectData | None = None) -> vht.Twin:
        """The twin at ``z``: the subject's known parameters (``subject_parameters``), then the
        free ones."""
        values = self.constrained(z)
        twin = self.twin
        if self.subject_parameters:
            if subject is None or np.shape(subject.parameters)[-1:] != (
                    len(self.subject_parameters),):
                raise ValueError("this problem has subject parameters "
                                 f"{list(self.subject_parameters)}: read the subjects with "
                                 "read_subjects(..., parameters=problem.subject_parameters)")
            known = jnp.asarray(subject.parameters)
            twin = twin.replace({name: known[k]
                                 for k, name in enumerate(self.subject_parameters)})
        return twin.replace({f.name: values[f.name] for f in self.free})

    # -- predictions and objective -------------------------------------------------------------

    def scenario(self, subject: SubjectData) -> vht.Scenario:
        """The subject's doses as interventions of fixed structure (padding slots give 0)."""
        targets = dict(self.dose_targets)
        items = []
        route = jnp.asarray(subject.route_index)
        amounts = jnp.asarray(subject.dose_amounts)
        times = jnp.asarray(subject.dose_times)
        durations = jnp.asarray(subject.dose_durations)
        for k in range(len(subject.dose_amounts)):
            for parameter_route in PARAMETER_ROUTES:
                if parameter_route in targets:
                    items += _rule_steps(self.twin, parameter_route, targets[parameter_route],
                                         route[k] == ROUTES.index(parameter_route),
                                         amounts[k], times[k])
            if "oral" in targets:
                items.append(vht.OralDose(targets["oral"], jnp.where(
                    route[k] == ROUTES.index("oral"), amounts[k], 0.0), times[k]))
            if "iv" in targets:
                items.append(vht.Bolus(targets["iv"], jnp.where(
                    route[k] == ROUTES.index("iv"), amounts[k], 0.0), times[k]))
            if "infusion" in targets:
                is_infusion = route[k] == ROUTES.index("infusion")
                duration = jnp.where(durations[k] > 0, durations[k], 1.0)
                items.append(vht.Infusion(targets["infusion"],
                                          jnp.where(is_infusion, amounts[k] / duration, 0.0),
                                          start=times[k], duration=duration))
        return vht.Scenario(items)

    def predict(self, z: Array, subject: SubjectData, adjoint=None) -> Array:
        """Model predictions at the subject's observation rows (in the variables' units).
        ``adjoint``: a diffrax adjoint (``diffrax.ForwardMode()`` for forward-mode
        derivatives such as Hessians by ``jacfwd(jacfwd)``)."""
        twin = self.twin_at(z, subject)
        times = jnp.asarray(subject.times)
        if twin.sample_period() is not None:
            # a clocked twin's number of ticks fixes the program: the records' span, concrete
            # and read at the ticks (``read_subjects`` checked that the times lie on them)
            t0, t1 = subject.span
        else:
            t0 = jnp.minimum(0.0, jnp.minimum(jnp.min(times), jnp.min(jnp.asarray(
                subject.dose_times)) if len(subject.dose_times) else 0.0))
            t1 = None
        if self.solution == "closed_form":
            # non-finite predictions make the likelihood infinite: no output is masked here
            return _by_variable(self.observations, subject, closed_form_outputs(
                twin, self.scenario(subject), [name for name, _ in self.observations],
                ts=times, t0=t0))
        else:
            solution = vht.simulate(twin, self.scenario(subject), ts=times, t0=t0, t1=t1,
                                    rtol=self.rtol, atol=self.atol,
                                    max_steps=self.max_steps, throw=False, adjoint=adjoint,
                                    save_at_ticks=twin.sample_period() is not None)
        return _by_variable(self.observations, subject,
                            [solution[name] for name, _ in self.observations])

    def neg_log_likelihood(self, z: Array, subject: SubjectData, adjoint=None) -> Array:
        """-log L of the subject's observations (constants included); inf if the solve fails."""
        return self.neg_log_likelihood_of(self.predict(z, subject, adjoint), z, subject)

    def neg_log_likelihood_of(self, predicted: Array, z: Array, subject: SubjectData) -> Array:
        """``neg_log_likelihood`` from predictions already made (``predict``)."""
        total = jnp.sum(self.neg_log_likelihood_rows(predicted, z, subject))
        return jnp.where(jnp.isfinite(total), total, jnp.inf)

    def neg_log_likelihood_rows(self, predicted: Array, z: Array, subject: SubjectData) -> Array:
        """Each observation row's -log L (0 on padding rows); row j depends on
        ``predicted[j]`` only."""
        params = self.constrained(z)
        observed = jnp.asarray(subject.values)
        per_row = _by_variable(self.observations, subject, [
            model.neg_log_likelihood(observed, predicted, _error_parameters(params, variable,
                                                                            model))
            for variable, model in self.observations])
        return jnp.where(jnp.asarray(subject.mask), per_row, 0.0)

    def linearised(self, predicted: Array, z: Array, subject: SubjectData):
        """(observations, predictions, residual variances) on the scale where each observation
        model is normal (``ErrorModel.linearised``), for first-order approximations."""
        params = self.constrained(z)
        observed = jnp.asarray(subject.values)
        parts = [model.linearised(observed, predicted, _error_parameters(params, variable, model))
                 for variable, model in self.observations]
        return tuple(_by_variable(self.observations, subject, [part[i] for part in parts])
                     for i in range(3))

    def neg_log_prior(self, z: Array) -> Array:
        values = self.constrained(z)
        terms = [f.prior.neg_log_density(values[f.name]) for f in self.free if f.prior is not None]
        return sum(terms) if terms else jnp.asarray(0.0)

    def objective(self, z: Array, subject: SubjectData, map_estimate: bool = True,
                  adjoint=None) -> Array:
        """The negative log posterior (or likelihood, ``map_estimate=False``)."""
        value = self.neg_log_likelihood(z, subject, adjoint)
        return value + self.neg_log_prior(z) if map_estimate else value
