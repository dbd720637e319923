"""Score a twin's resting state against the Pulse Physiology Engine's literature targets.

Scoring rules (Pulse's, made precise here):

- a target is one or more point values and/or [low, high] ranges, as its CSV cell lists them;
- against a point p, the error is |v - p| / |p|; green within 10 %, yellow within 30 %;
- against a range, the error is 0 inside it and otherwise the distance to the nearest bound
  over that bound; green inside, yellow within 30 %;
- a cell with several ranges or points scores against the best of them (green inside either);
- rows repeated for the same sheet, output and algorithm are merged into one target holding all
  their values, with a note naming the merged references;
- red otherwise.

``score_table(values)`` scores a mapping ``{(sheet, output, algorithm): value}`` and returns
rows sorted by sheet and output; ``markdown(rows)`` renders them.
"""

from __future__ import annotations

import csv
import dataclasses
import math
import re
from pathlib import Path

DATA = Path(__file__).resolve().parent / "data" / "pulse_resting_targets.csv"
GREEN, YELLOW = 0.10, 0.30


@dataclasses.dataclass(frozen=True)
class Target:
    sheet: str
    output: str
    unit: str
    algorithm: str
    points: tuple[float, ...]
    ranges: tuple[tuple[float, float], ...]
    cell: str
    references: str
    note: str = ""

    @property
    def key(self) -> tuple[str, str, str]:
        return (self.sheet, self.output, self.algorithm)


def parse_reference(cell: str) -> tuple[tuple[float, ...], tuple[tuple[float, float], ...]]:
    """Points and ranges of a reference cell: ``"5600"``, ``"[2,6]"``, ``"[4,12], [8,15]"``."""
    ranges = tuple((float(a), float(b)) for a, b in
                   re.findall(r"\[\s*([-+0-9.eE]+)\s*,\s*([-+0-9.eE]+)\s*\]", cell))
    rest = re.sub(r"\[[^\]]*\]", " ", cell)
    points = tuple(float(x) for x in re.findall(r"[-+]?\d*\.?\d+(?:[eE][-+]?\d+)?", rest))
    return points, ranges


def load_targets(path: Path = DATA) -> dict[tuple[str, str, str], Target]:
    """Every target, duplicates merged, keyed by (sheet, output, algorithm)."""
    merged: dict[tuple[str, str, str], Target] = {}
    with open(path, encoding="utf-8") as f:
        for row in csv.DictReader(f):
            output = row["output"].strip()
            points, ranges = parse_reference(row["reference_value"])
            if not points and not ranges:
                continue
            target = Target(row["sheet"].strip(), output, row["units"].strip(),
                            row["algorithm"].strip(), points, ranges,
                            row["reference_value"].strip(), row["references"].strip())
            if target.key in merged:
                old = merged[target.key]
                target = dataclasses.replace(
                    old, points=old.points + target.points, ranges=old.ranges + target.ranges,
                    cell=f"{old.cell}; {target.cell}",
                    note=f"merged duplicate rows ({old.references}; {target.references})")
            merged[target.key] = target
    return merged


def error(value: float, target: Target) -> float:
    """The smallest relative error of ``value`` against the target's points and ranges."""
    errors = [abs(value - p) / abs(p) if p else abs(value) for p in target.points]
    for low, high in target.ranges:
        if low <= value <= high:
            errors.append(0.0)
        else:
            bound = low if value < low else high
            errors.append(abs(value - bound) / abs(bound) if bound else abs(value - bound))
    return min(errors)


def grade(value: float, target: Target) -> str:
    e = error(value, target)
    if math.isnan(e):
        return "red"
    inside_range = any(low <= value <= high for low, high in target.ranges)
    near_point = any((abs(value - p) / abs(p) if p else abs(value)) <= GREEN
                     for p in target.points)
    if inside_range or near_point:
        return "green"
    return "yellow" if e <= YELLOW else "red"


@dataclasses.dataclass(frozen=True)
class Scored:
    target: Target
    value: float
    model_unit: str
    error: float
    grade: str


def score_table(values: dict[tuple[str, str, str], float],
                targets: dict[tuple[str, str, str], Target] | None = None) -> list[Scored]:
    """Score model values (already in the target's unit) against their targets."""
    targets = load_targets() if targets is None else targets
    rows = []
    for key, value in values.items():
        if key not in targets:
            raise KeyError(f"no Pulse target {key}")
        target = targets[key]
        rows.append(Scored(target, float(value), target.unit, error(value, target),
                           grade(value, target)))
    return sorted(rows, key=lambda r: (r.target.sheet, r.target.output, r.target.algorithm))


_SYMBOL = {"green": "green", "yellow": "**yellow**", "red": "**red**"}


def markdown(rows: list[Scored]) -> str:
    lines = ["| sheet | quantity | statistic | model | target | unit | error | grade | source |",
             "|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        t = r.target
        note = f" ({t.note})" if t.note else ""
        lines.append(f"| {t.sheet} | {t.output} | {t.algorithm} | {r.value:.4g} | {t.cell} | "
                     f"{t.unit or '1'} | {100 * r.error:.1f} % | {_SYMBOL[r.grade]} | "
                     f"{t.references}{note} |")
    return "\n".join(lines)
