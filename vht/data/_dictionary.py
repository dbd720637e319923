"""The data dictionary: which source variables a study reads, and what they become in the twin.

Ingestion keeps only what the dictionary declares. Each entry names the codes by which the
variable appears in a source (a column or variable name, a LOINC code, an OMOP concept id, a
drug name or RxNorm code), the twin variable or covariate it feeds, the model unit its values
are converted into, and the range outside which a value is impossible (an error, not a
repair). A dictionary is built in Python or read from TOML:

```toml
time_unit = "h"                      # the records' time unit

[observations.theophylline]
variable = "drug.concentration"      # the twin's "organ.name"
unit = "mg/L"                        # model unit (pint)
codes = ["conc", "4049-3"]           # source names, LOINC codes, OMOP concept ids
molar_mass = "180.17 g/mol"          # for mol/L <-> mg/L
valid_range = [0, 200]               # in the model unit

[doses.theophylline]
route = "oral"                       # default route when the source does not say
unit = "mg"
codes = ["Theophylline", "10438"]

[covariates.weight]
unit = "kg"
codes = ["Wt", "29463-7"]
valid_range = [0.3, 400]
```

Covariates with the reserved names ``age`` (unit of time) and ``sex`` (``"female"``,
``"male"``, ``"other"``, ``"unknown"``) are filled from a birth date and the administrative sex
of FHIR Patient and OMOP person records.
"""

from __future__ import annotations

import dataclasses
import math
import tomllib
from collections.abc import Mapping, Sequence
from pathlib import Path

from .._units import parse_unit
from ._errors import CodeError, SchemaError

# meal: carbohydrate eaten (g); subcutaneous: an insulin bolus under the skin. Both act on a
# parameter of the twin through its organ's dose rule (``AbstractOrgan.dose_rules``).
ROUTES = ("oral", "iv", "infusion", "meal", "subcutaneous")
SEXES = ("female", "male", "other", "unknown")


def _range(value, name) -> tuple[float, float]:
    lower, upper = (value if value is not None else (-math.inf, math.inf))
    lower, upper = float(lower), float(upper)
    if not lower < upper:
        raise SchemaError(f"{name}: valid_range needs lower < upper, got ({lower}, {upper})")
    return lower, upper


def _check_unit(unit: str, name: str) -> None:
    try:
        parse_unit(unit)
    except ValueError as error:
        raise SchemaError(f"{name}: {error}") from None


@dataclasses.dataclass(frozen=True)
class Observed:
    """An observed variable: ``variable`` is the twin's ``"organ.name"``, ``unit`` its model
    unit (pint), ``valid_range`` the impossible-beyond bounds in that unit (concentrations
    default to [0, inf): a negative one is an error)."""

    variable: str
    unit: str
    codes: tuple[str, ...] = ()
    molar_mass: str | None = None
    valid_range: tuple[float, float] = (0.0, math.inf)

    def __post_init__(self):
        _check_unit(self.unit, f"observed {self.variable!r}")
        object.__setattr__(self, "codes", tuple(str(c) for c in self.codes))
        object.__setattr__(self, "valid_range", _range(self.valid_range, self.variable))


@dataclasses.dataclass(frozen=True)
class Dose:
    """A drug given: amounts convert into ``unit`` (the unit the calibration problem's dose
    target expects), ``route`` is used when the source gives none."""

    route: str
    unit: str
    codes: tuple[str, ...] = ()
    molar_mass: str | None = None

    def __post_init__(self):
        if self.route not in ROUTES:
            raise SchemaError(f"dose route must be one of {ROUTES}, got {self.route!r}")
        _check_unit(self.unit, "dose")
        object.__setattr__(self, "codes", tuple(str(c) for c in self.codes))


@dataclasses.dataclass(frozen=True)
class Covariate:
    """A per-subject covariate (weight, age, sex...); ``unit`` is empty for a categorical one
    (``sex``)."""

    unit: str = ""
    codes: tuple[str, ...] = ()
    valid_range: tuple[float, float] = (-math.inf, math.inf)

    def __post_init__(self):
        if self.unit:
            _check_unit(self.unit, "covariate")
        object.__setattr__(self, "codes", tuple(str(c) for c in self.codes))
        object.__setattr__(self, "valid_range", _range(self.valid_range, "covariate"))


@dataclasses.dataclass(frozen=True)
class DataDictionary:
    """What a study reads: observations, doses and covariates by name, and the time unit of
    the records it writes."""

    observations: Mapping[str, Observed]
    doses: Mapping[str, Dose] = dataclasses.field(default_factory=dict)
    covariates: Mapping[str, Covariate] = dataclasses.field(default_factory=dict)
    time_unit: str = "h"

    def __post_init__(self):
        _check_unit(self.time_unit, "time_unit")
        if not self.observations:
            raise SchemaError("a data dictionary needs at least one observed variable")
        # codes are unique among observations and covariates (a tidy table mixes them) and
        # among doses; a drug may share its name with its concentration
        for tables in ((("observation", self.observations), ("covariate", self.covariates)),
                       (("dose", self.doses),)):
            self._check_unique(tables)

    @staticmethod
    def _check_unique(tables) -> None:
        seen: dict[str, str] = {}
        for kind, table in tables:
            for name, entry in table.items():
                for code in (name, *entry.codes):
                    where = f"{kind} {name!r}"
                    if code in seen and seen[code] != where:
                        raise SchemaError(f"code {code!r} is declared by both {seen[code]} and "
                                          f"{where}")
                    seen[code] = where

    def lookup(self, kind: str, code: str) -> str:
        """The dictionary name of a source code of one kind ('observation', 'dose',
        'covariate'); raises ``CodeError`` when it is not declared."""
        table = {"observation": self.observations, "dose": self.doses,
                 "covariate": self.covariates}[kind]
        code = str(code).strip()
        for name, entry in table.items():
            if code == name or code in entry.codes:
                return name
        raise CodeError(f"{kind} code {code!r} is not in the data dictionary (it declares "
                        f"{sorted(table)})")

    def knows(self, kind: str, code: str) -> bool:
        try:
            self.lookup(kind, code)
        except CodeError:
            return False
        return True

    @classmethod
    def from_toml(cls, path: str | Path) -> DataDictionary:
        with open(path, "rb") as handle:
            return cls.from_mapping(tomllib.load(handle), where=str(path))

    @classmethod
    def from_mapping(cls, spec: Mapping, where: str = "data dictionary") -> DataDictionary:
        allowed = {"time_unit", "observations", "doses", "covariates"}
        unknown = sorted(set(spec) - allowed)
        if unknown:
            raise SchemaError(f"{where}: unknown keys {unknown} (allowed: {sorted(allowed)})")

        def entries(section, kind, fields: Sequence[str]):
            out = {}
            for name, entry in spec.get(section, {}).items():
                bad = sorted(set(entry) - set(fields))
                if bad:
                    raise SchemaError(f"{where}: [{section}.{name}] has unknown keys {bad} "
                                      f"(allowed: {list(fields)})")
                try:
                    out[name] = kind(**{k: tuple(v) if isinstance(v, list) else v
                                        for k, v in entry.items()})
                except TypeError as error:
                    raise SchemaError(f"{where}: [{section}.{name}]: {error}") from None
            return out

        return cls(
            observations=entries("observations", Observed,
                                 ("variable", "unit", "codes", "molar_mass", "valid_range")),
            doses=entries("doses", Dose, ("route", "unit", "codes", "molar_mass")),
            covariates=entries("covariates", Covariate, ("unit", "codes", "valid_range")),
            time_unit=spec.get("time_unit", "h"))
