"""The flip-flop ambiguity of first-order absorption models.

A one-compartment model with first-order absorption predicts the same concentrations with
ka and ke = CL/V swapped (and V scaled by ke/ka): every subject has two equally good optima.
vht does not constrain the fit; it starts every fit on the canonical branch (ka > ke, the
usual physiology of an oral immediate-release drug) and reports, for each subject, on which
branch its estimate lies, so a swapped estimate is seen rather than silently used.
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np

CANONICAL = "ka > ke"
SWAPPED = "ka < ke (flip-flop)"


def absorption_organs(names) -> list[str]:
    """Organs whose ``ka``, ``clearance`` and ``volume`` are all among ``names``."""
    organs = {n.rsplit(".", 1)[0] for n in names if n.endswith(".ka")}
    return sorted(o for o in organs if {f"{o}.clearance", f"{o}.volume"} <= set(names))


def absorption_branch(estimates: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
    """Per absorption organ, the branch of each estimate (``CANONICAL`` or ``SWAPPED``)."""
    out = {}
    for organ in absorption_organs(list(estimates)):
        ka = np.asarray(estimates[f"{organ}.ka"], dtype=float)
        ke = (np.asarray(estimates[f"{organ}.clearance"], dtype=float)
              / np.asarray(estimates[f"{organ}.volume"], dtype=float))
        out[organ] = np.where(ka > ke, CANONICAL, SWAPPED)
    return out


def branch_summary(estimates: Mapping[str, np.ndarray]) -> list[str]:
    """Report lines: how many estimates lie on each branch, per absorption organ."""
    lines = []
    for organ, branch in absorption_branch(estimates).items():
        branch = np.atleast_1d(branch)
        swapped = int(np.sum(branch == SWAPPED))
        lines.append(f"absorption branch of {organ}: {len(branch) - swapped} of {len(branch)} "
                     f"on the canonical branch ({CANONICAL}), {swapped} swapped; not "
                     "constrained, fits start on the canonical branch")
    return lines
