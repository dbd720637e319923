"""Virtual populations: a twin's parameters drawn from population distributions.

A member of a virtual population is a base twin with some parameters replaced. Member ``i``
is a pure function of the sweep's seed and ``i``: its random key is
``fold_in(PRNGKey(seed), i)``, so which members exist never depends on how a sweep is split
over chunks, devices or ranks.

The model, for the parameters ``theta_1 .. theta_P`` a population names (all positive):

    log theta_p = log median_p + omega_p * (L z)_p + sum_c exponent_pc * log(x_c / ref_c)
    z ~ N(0, I_P),   L L^T = R (the correlation matrix of the log-parameters)

``omega_p`` is the standard deviation of log theta_p (``LogNormal(median, cv=...)`` converts
a coefficient of variation with omega^2 = log(1 + cv^2)); ``x_c`` are covariates of the member
(weight, height, age, sex), entering as power (allometric) effects
``Allometry(covariate, reference, exponent)``.

Covariates of adults, ``AdultCovariates`` (defaults):

| covariate | unit  | distribution | default | source |
|---|---|---|---|---|
| sex       | 1     | Bernoulli, P(female) | 0.5 | - |
| age       | year  | uniform | 18-80 | - |
| weight    | kg    | log-normal given sex, median (CV) | male 88 (0.22), female 75 (0.26) | [1] |
| height    | cm    | normal given sex, mean (SD) | male 175 (7.5), female 162 (7.0) | [1] |

[1] NHANES adult anthropometry as summarised by the National Center for Health Statistics
(Fryar CD et al., Anthropometric reference data for children and adults: United States,
2015-2018, Vital Health Stat 3(46), 2021): mean weight about 90 kg for men and 77 kg for women,
mean height about 175 cm and 162 cm. The defaults are these values rounded, with log-normal
weights whose means match them; they are a generic adult population, not a validated one:
give your cohort's own distribution where it matters. ``sex`` is 1 for female, 0 for male.

Plausibility: ``plausible={"name": (low, high)}`` declares ranges that every member must
satisfy, on sampled parameters, covariates, or signals and states of the member's resting
state (``vht.steady_state``, which must also converge). A member outside them is redrawn with
the next key ``fold_in(member_key, attempt)``, up to ``max_attempts``; a member never accepted
keeps its last draw and is marked not accepted (its runs get ``Status.IMPLAUSIBLE``). The
acceptance rate (accepted draws over all draws) is reported by the sweep.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import ClassVar

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
from jaxtyping import Array

from ._steady_state import steady_state
from ._twin import Twin

COVARIATE_UNITS = {"sex": "1", "age": "year", "weight": "kg", "height": "cm"}


class LogNormal(eqx.Module):
    """A positive parameter's population distribution: median and SD of its logarithm.

    Give ``omega`` (the SD of log theta) or ``cv`` (the coefficient of variation of theta;
    omega^2 = log(1 + cv^2)).
    """

    median: float = eqx.field(static=True)
    omega: float = eqx.field(static=True)

    def __init__(self, median: float, *, omega: float | None = None, cv: float | None = None):
        if (omega is None) == (cv is None):
            raise ValueError("LogNormal needs exactly one of omega (SD of the log) or cv")
        if not median > 0:
            raise ValueError(f"LogNormal median must be positive, got {median}")
        if cv is not None:
            if not cv >= 0:
                raise ValueError(f"LogNormal cv must be non-negative, got {cv}")
            omega = math.sqrt(math.log1p(cv * cv))
        if not omega >= 0:
            raise ValueError(f"LogNormal omega must be non-negative, got {omega}")
        self.median = float(median)
        self.omega = float(omega)

    def describe(self) -> dict:
        return {"distribution": "lognormal", "median": self.median, "omega": self.omega}


class Allometry(eqx.Module):
    """A power covariate effect: theta scales with (covariate / reference) ** exponent."""

    covariate: str = eqx.field(static=True)
    reference: float = eqx.field(static=True)
    exponent: float = eqx.field(static=True)

    def describe(self) -> dict:
        return {"covariate": self.covariate, "reference": self.reference,
                "exponent": self.exponent}


class AdultCovariates(eqx.Module):
    """Sex, age, weight and height of adults (see the module docstring for the table and
    source). Every field can be changed to describe another population."""

    p_female: float = eqx.field(static=True, default=0.5)
    age_range: tuple[float, float] = eqx.field(static=True, default=(18.0, 80.0))
    weight_median: tuple[float, float] = eqx.field(static=True, default=(88.0, 75.0))  # M, F
    weight_cv: tuple[float, float] = eqx.field(static=True, default=(0.22, 0.26))
    height_mean: tuple[float, float] = eqx.field(static=True, default=(175.0, 162.0))
    height_sd: tuple[float, float] = eqx.field(static=True, default=(7.5, 7.0))

    names: ClassVar[tuple[str, ...]] = ("sex", "age", "weight", "height")

    def sample(self, key: Array) -> dict[str, Array]:
        k_sex, k_age, k_weight, k_height = jax.random.split(key, 4)
        female = jax.random.bernoulli(k_sex, self.p_female)
        pick = lambda pair: jnp.where(female, pair[1], pair[0])  # noqa: E731
        omega = jnp.sqrt(jnp.log1p(pick(jnp.asarray(self.weight_cv)) ** 2))
        weight = pick(jnp.asarray(self.weight_median)) * jnp.exp(
            omega * jax.random.normal(k_weight))
        height = pick(jnp.asarray(self.height_mean)) + pick(jnp.asarray(self.height_sd)) * \
            jax.random.normal(k_height)
        low, high = self.age_range
        age = jax.random.uniform(k_age, minval=low, maxval=high)
        return {"sex": female.astype(jnp.result_type(float)), "age": age, "weight": weight,
                "height": height}

    def describe(self) -> dict:
        return {"kind": "adult", "p_female": self.p_female, "age_range": list(self.age_range),
                "weight_median": list(self.weight_median), "weight_cv": list(self.weight_cv),
                "height_mean": list(self.height_mean), "height_sd": list(self.height_sd)}


class AbstractPopulation(eqx.Module):
    """What an ensemble sweep draws its members from.

    ``draw(twin, key)`` returns one member's parameter values and covariates (traced; vmapped
    by the sweep), ``accept(twin, parameters, covariates)`` whether that draw is plausible.
    """

    max_attempts: eqx.AbstractVar[int]

    def parameter_names(self) -> tuple[str, ...]:
        raise NotImplementedError

    def covariate_names(self) -> tuple[str, ...]:
        raise NotImplementedError

    def draw(self, key: Array) -> tuple[dict[str, Array], dict[str, Array]]:
        raise NotImplementedError

    def accept(self, twin: Twin, parameters: Mapping[str, Array],
               covariates: Mapping[str, Array]) -> Array:
        raise NotImplementedError

    def describe(self) -> dict:
        raise NotImplementedError


class VirtualPopulation(AbstractPopulation):
    """Log-normal parameters with correlations (through a Cholesky factor), covariates with
    allometric effects, and a plausibility filter.

    ```python
    population = vht.VirtualPopulation(
        {"drug.clearance": vht.LogNormal(2.76, cv=0.3), "drug.volume": vht.LogNormal(32.1, cv=0.2)},
        correlation=[[1.0, 0.6], [0.6, 1.0]],
        covariates=vht.AdultCovariates(),
        effects={"drug.clearance": [vht.Allometry("weight", 70.0, 0.75)]},
        plausible={"drug.clearance": (0.5, 15.0)},
    )
    ```
    """

    # Tuples, not dicts or arrays: the population is static configuration of the compiled
    # chunk program and must be hashable.
    _distributions: tuple[tuple[str, LogNormal], ...] = eqx.field(static=True)
    _correlation: tuple[tuple[float, ...], ...] = eqx.field(static=True)
    covariates: AdultCovariates | None = eqx.field(static=True)
    _effects: tuple[tuple[str, tuple[Allometry, ...]], ...] = eqx.field(static=True)
    _plausible: tuple[tuple[str, float, float], ...] = eqx.field(static=True)
    max_attempts: int = eqx.field(static=True)

    def __init__(
        self,
        parameters: Mapping[str, LogNormal],
        *,
        correlation: Sequence[Sequence[float]] | None = None,
        covariates: AdultCovariates | None = None,
        effects: Mapping[str, Sequence[Allometry]] | None = None,
        plausible: Mapping[str, tuple[float, float]] | None = None,
        max_attempts: int = 20,
    ):
        if not parameters:
            raise ValueError("a VirtualPopulation needs at least one parameter distribution")
        for name, distribution in parameters.items():
            if not isinstance(distribution, LogNormal):
                raise ValueError(f"parameter {name}: expected vht.LogNormal, got "
                                 f"{type(distribution).__name__}")
        n = len(parameters)
        correlation = np.eye(n) if correlation is None else np.asarray(correlation, float)
        if correlation.shape != (n, n):
            raise ValueError(f"correlation has shape {correlation.shape}; {n} parameters need "
                             f"({n}, {n}) in the order {list(parameters)}")
        if not np.allclose(correlation, correlation.T) or not np.allclose(np.diag(correlation),
                                                                          1.0):
            raise ValueError("correlation must be symmetric with ones on its diagonal")
        if np.any(np.abs(correlation) > 1.0) or np.min(np.linalg.eigvalsh(correlation)) <= 0.0:
            raise ValueError("correlation must be positive definite (a valid correlation matrix)")
        effects = {k: tuple(v) for k, v in (effects or {}).items()}
        for name, terms in effects.items():
            if name not in parameters:
                raise ValueError(f"effects name {name!r}, which has no distribution in this "
                                 "population")
            for term in terms:
                if not isinstance(term, Allometry):
                    raise ValueError(f"effect on {name}: expected vht.Allometry, got "
                                     f"{type(term).__name__}")
                if covariates is None or term.covariate not in covariates.names:
                    raise ValueError(f"effect on {name} uses covariate {term.covariate!r}, "
                                     "which the population's covariates do not provide")
        plausible = {k: (float(lo), float(hi)) for k, (lo, hi) in (plausible or {}).items()}
        for name, (low, high) in plausible.items():
            if not low < high:
                raise ValueError(f"plausible range of {name} is empty: ({low}, {high})")
        if max_attempts < 1:
            raise ValueError("max_attempts must be at least 1")
        self._distributions = tuple(parameters.items())
        self._correlation = tuple(tuple(float(x) for x in row) for row in correlation)
        self.covariates = covariates
        self._effects = tuple(effects.items())
        self._plausible = tuple((k, lo, hi) for k, (lo, hi) in plausible.items())
        self.max_attempts = int(max_attempts)

    @property
    def distributions(self) -> dict[str, LogNormal]:
        return dict(self._distributions)

    @property
    def correlation(self) -> np.ndarray:
        return np.array(self._correlation)

    @property
    def effects(self) -> dict[str, tuple[Allometry, ...]]:
        return dict(self._effects)

    @property
    def plausible(self) -> dict[str, tuple[float, float]]:
        return {k: (lo, hi) for k, lo, hi in self._plausible}

    def parameter_names(self) -> tuple[str, ...]:
        return tuple(name for name, _ in self._distributions)

    def covariate_names(self) -> tuple[str, ...]:
        return () if self.covariates is None else self.covariates.names

    def check_against(self, twin: Twin) -> None:
        """Raise ``ValueError`` naming what this population refers to that ``twin`` lacks."""
        known = set(twin.parameters())
        for name in self.parameter_names():
            if name not in known:
                raise ValueError(f"the population samples {name!r}, which is not a parameter of "
                                 f"the twin (parameters: {sorted(known)})")
        names = set(self.distributions) | set(self.covariate_names()) | set(twin.state_names) | \
            set(twin.signal_names)
        for name in self.plausible:
            if name not in names:
                raise ValueError(f"plausible names {name!r}: neither a sampled parameter, a "
                                 "covariate, nor a state or signal of the twin")

    def draw(self, key: Array) -> tuple[dict[str, Array], dict[str, Array]]:
        key_parameters, key_covariates = jax.random.split(key)
        names = self.parameter_names()
        cholesky = jnp.asarray(np.linalg.cholesky(self.correlation))
        z = cholesky @ jax.random.normal(key_parameters, (len(names),))
        covariates = {} if self.covariates is None else self.covariates.sample(key_covariates)
        values = {}
        for p, name in enumerate(names):
            distribution = self.distributions[name]
            log_value = math.log(distribution.median) + distribution.omega * z[p]
            for term in self.effects.get(name, ()):
                log_value = log_value + term.exponent * jnp.log(covariates[term.covariate]
                                                                / term.reference)
            values[name] = jnp.exp(log_value)
        return values, covariates

    def _needs_resting_state(self, twin: Twin) -> bool:
        return any(n in twin.state_names or n in twin.signal_names for n in self.plausible
                   if n not in self.distributions and n not in self.covariate_names())

    def accept(self, twin: Twin, parameters: Mapping[str, Array],
               covariates: Mapping[str, Array]) -> Array:
        ok = jnp.array(True)
        if self._needs_resting_state(twin):
            rest = steady_state(twin)
            values = {**dict(zip(twin.state_names, rest.y)),
                      **dict(zip(twin.signal_names, twin.signals(0.0, rest.y)))}
            ok = ok & rest.converged
        else:
            values = {}
        values = {**values, **covariates, **parameters}
        for name, (low, high) in self.plausible.items():
            ok = ok & (values[name] >= low) & (values[name] <= high)
        return ok

    def describe(self) -> dict:
        return {
            "kind": "VirtualPopulation",
            "parameters": {k: v.describe() for k, v in self.distributions.items()},
            "correlation": self.correlation.tolist(),
            "covariates": None if self.covariates is None else self.covariates.describe(),
            "effects": {k: [t.describe() for t in v] for k, v in self.effects.items()},
            "plausible": {k: list(v) for k, v in self.plausible.items()},
            "max_attempts": self.max_attempts,
        }
