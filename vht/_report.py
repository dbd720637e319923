"""A self-contained HTML report comparing the treatment arms of a what-if study.

``write_report`` writes one HTML file that a clinician can open in any browser, mail, or
archive beside the case notes, and that still shows everything years later: nothing in it is
fetched from anywhere (no external CSS, JavaScript, fonts or images; a Content-Security-Policy
forbids the browser to load any), the figures are PNGs embedded as ``data:`` URIs, and all text
written by a user (title, arm names, outcome names, warnings, provenance) is HTML-escaped.

The report holds, in order:

1. the title (``<title>`` and ``<h1>``);
2. **warnings**: the caller's (for example "dose above the validated range") plus one per arm
   with failed members, styled to be seen; "none" when there are none;
3. **outcomes**: a table with one row per arm (``<tr data-arm="...">``) and one column per
   outcome; each cell reads ``median [low, high] unit`` over the 90 % interval and carries
   the numbers in ``data-median``, ``data-low`` and ``data-high`` (full precision, for tools
   that read the report back); the number of members used per arm; the outcome definitions;
   then any extra ``Section`` the caller gives (``vht optimize`` adds the optimised
   treatment, its objective and constraints, and the optimiser's convergence);
4. **figures**: one per signal, with per arm the median over members and a shaded 90 % band
   (5th to 95th percentile) against time in hours, the y axis labelled with the unit;
5. **provenance** (``<footer>``): every key and value the caller passes (package version,
   model hash, scenario hash, solver, tolerances, seed, date...).

Members are uncertainty samples (posterior or virtual-population draws). A member whose run
failed is NaN (``simulate`` returns NaN outputs when its status is not OK); it is left out of
the medians and bands and counted in the table and the warnings, because a band computed from
the members that happened to succeed can look narrower than the truth.
"""

from __future__ import annotations

import base64
import dataclasses
import html
import io
import json
import math
import os
import struct
import warnings as _warnings
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import xarray as xr
from matplotlib.figure import Figure

from ._units import conversion_factor

_DIMS = ("arm", "member", "time")
_BAND = (0.05, 0.95)  # the 90 % band of the figures; outcome intervals are the caller's (90 %)
_FIGSIZE = (7.5, 3.4)  # inches
_DPI = 100  # so a figure is 750 x 340 px, the size given to its <img>
_OUTCOME_KEYS = ("arm", "outcome", "unit", "median", "low", "high", "definition")

# Small, inline and on purpose plain: the file must render the same offline in any browser.
_STYLE = """
body { font-family: "DejaVu Sans", Arial, Helvetica, sans-serif; margin: 2em auto;
       max-width: 62em; padding: 0 1em; color: #1a1a1a; background: #ffffff; }
h1 { font-size: 1.6em; border-bottom: 2px solid #1a1a1a; padding-bottom: 0.2em; }
h2 { font-size: 1.2em; margin-top: 1.6em; }
table { border-collapse: collapse; margin: 0.5em 0; }
th, td { border: 1px solid #999999; padding: 0.3em 0.6em; text-align: left; }
thead th { background: #eeeeee; }
td.num { font-variant-numeric: tabular-nums; white-space: nowrap; }
section.warnings { border: 2px solid #b00020; background: #fff0f0; padding: 0.4em 1em; }
section.warnings.empty { border-color: #2e7d32; background: #f0fff0; }
section.warnings h2 { margin-top: 0.4em; color: #b00020; }
section.warnings.empty h2 { color: #2e7d32; }
figure { margin: 1em 0; }
figcaption { font-size: 0.9em; color: #444444; }
footer { margin-top: 2em; border-top: 1px solid #999999; font-size: 0.85em; color: #333333; }
footer dt { font-weight: bold; float: left; clear: left; width: 14em; }
footer dd { margin-left: 15em; word-break: break-all; }
"""

# The browser itself refuses every load that is not the page's own inline style or a data:
# image, so a report that gained an external reference by mistake shows it broken, not leaking.
_CSP = "default-src 'none'; img-src data:; style-src 'unsafe-inline'"

_COLOURS = ("#1f77b4", "#d62728", "#2ca02c", "#ff7f0e", "#9467bd", "#8c564b", "#e377c2",
            "#7f7f7f", "#bcbd22", "#17becf")


def _e(value: Any) -> str:
    """HTML-escape any value as text (quotes too: the same helper fills attributes)."""
    return html.escape(str(value), quote=True)


def _fmt(x: float) -> str:
    """A number for people: three significant digits, no exponent for everyday magnitudes."""
    if not math.isfinite(x):
        return "n/a"
    return f"{x:.3g}" if x == 0 or 1e-3 <= abs(x) < 1e5 else f"{x:.2e}"


def _unit_suffix(unit: str) -> str:
    return "" if not unit or unit in ("1", "dimensionless") else f" {unit}"


def _png_size(png: bytes) -> tuple[int, int]:
    """Width and height from the PNG's IHDR chunk: the <img> gets the size actually drawn."""
    return struct.unpack(">II", png[16:24])


def _check_dataset(dataset: xr.Dataset, signals: Sequence[str] | None) -> list[str]:
    if not isinstance(dataset, xr.Dataset):
        raise TypeError(f"dataset must be an xarray.Dataset, got {type(dataset).__name__}")
    for dim in _DIMS:
        if dim not in dataset.dims:
            raise ValueError(f"the dataset has no {dim!r} dim; a report needs dims {_DIMS}")
    if "arm" not in dataset.coords:
        raise ValueError("the dataset has no 'arm' coordinate naming the arms")
    if signals is None:
        # Every variable over (arm, member, time); status flags and parameters are not signals.
        signals = [str(n) for n, v in dataset.data_vars.items() if set(_DIMS) <= set(v.dims)]
        if not signals:
            raise ValueError(f"the dataset has no data variable with dims {_DIMS}")
    signals = list(signals)
    for name in signals:
        if name not in dataset.data_vars:
            raise KeyError(f"signal {name!r} is not in the dataset; it has "
                           f"{', '.join(map(str, dataset.data_vars))}")
        if set(dataset[name].dims) != set(_DIMS):
            raise ValueError(f"signal {name!r} has dims {dataset[name].dims}, not {_DIMS}")
    return signals


def _failed_members(dataset: xr.Dataset, signals: list[str]) -> np.ndarray:
    """Per arm, how many members are NaN anywhere in any reported signal (a failed run)."""
    failed = np.zeros((dataset.sizes["arm"], dataset.sizes["member"]), dtype=bool)
    for name in signals:
        values = dataset[name].transpose(*_DIMS).values
        failed |= np.isnan(values).any(axis=2)
    return failed.sum(axis=1)


def _figure(dataset: xr.Dataset, name: str, arms: list[str]) -> tuple[bytes, str]:
    """One signal's PNG (median and 90 % band per arm, time in hours) and its alt text."""
    variable = dataset[name].transpose(*_DIMS)
    time_unit = dataset["time"].attrs.get("units", "min")
    hours = np.asarray(dataset["time"].values, dtype=float) * conversion_factor(time_unit, "h")
    unit = variable.attrs.get("units", "")
    label = variable.attrs.get("long_name", name.rpartition(".")[2].replace("_", " "))

    # Figure, not pyplot: no global backend switch, no figure left open in the caller's session;
    # savefig to PNG renders with Agg.
    fig = Figure(figsize=_FIGSIZE, dpi=_DPI, layout="constrained")
    ax = fig.add_subplot()
    for k, arm in enumerate(arms):
        values = np.asarray(variable.values[k], dtype=float)
        colour = _COLOURS[k % len(_COLOURS)]
        if np.isnan(values).all():  # every member failed: say so in the legend, draw nothing
            ax.plot([], [], color=colour, label=f"{arm} (all members failed)")
            continue
        with _warnings.catch_warnings():  # an all-NaN time point is expected after a failure
            _warnings.simplefilter("ignore", RuntimeWarning)
            low, mid, high = np.nanquantile(values, [_BAND[0], 0.5, _BAND[1]], axis=0)
        ax.fill_between(hours, low, high, color=colour, alpha=0.2, linewidth=0)
        ax.plot(hours, mid, color=colour, linewidth=1.8, label=arm)
    ax.set_xlabel("time [h]")
    ax.set_ylabel(f"{label} [{unit}]" if _unit_suffix(unit) else label)
    ax.set_title(name, fontsize=10)
    ax.grid(True, alpha=0.3)
    ax.legend(fontsize=8, title="median, 90 % band", title_fontsize=8)
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=_DPI, metadata={"Software": None})
    alt = (f"{name}{' [' + unit + ']' if _unit_suffix(unit) else ''} against time in hours: "
           f"median and 5th-95th percentile band over members for arms {', '.join(arms)}")
    return buffer.getvalue(), alt


def _outcome_table(outcomes: Sequence[Mapping[str, Any]], arms: list[str],
                   counts: list[tuple[int, int]]) -> list[str]:
    columns: dict[str, dict[str, str]] = {}  # outcome -> unit, definition (in given order)
    cells: dict[tuple[str, str], Mapping[str, Any]] = {}
    for i, row in enumerate(outcomes):
        missing = [k for k in _OUTCOME_KEYS if k not in row]
        if missing:
            raise ValueError(f"outcome row {i} lacks {', '.join(missing)}; rows need "
                             f"{', '.join(_OUTCOME_KEYS)}")
        arm, outcome = str(row["arm"]), str(row["outcome"])
        if arm not in arms:
            raise ValueError(f"outcome row {i} names arm {arm!r}, which is not in the dataset "
                             f"(arms: {', '.join(arms)})")
        if (arm, outcome) in cells:
            raise ValueError(f"outcome {outcome!r} of arm {arm!r} is given twice")
        column = columns.setdefault(outcome, {"unit": str(row["unit"]),
                                              "definition": str(row["definition"])})
        # A column compares arms: the same quantity, in the same unit, defined the same way.
        if column["unit"] != str(row["unit"]):
            raise ValueError(f"outcome {outcome!r} has unit {column['unit']!r} in one arm and "
                             f"{row['unit']!r} in arm {arm!r}")
        if column["definition"] != str(row["definition"]):
            raise ValueError(f"outcome {outcome!r} has two different definitions")
        cells[arm, outcome] = row

    out = ['<table class="outcomes">', "<thead><tr><th scope=\"col\">arm</th>"]
    out += [f'<th scope="col">{_e(name)}</th>' for name in columns]
    out.append('<th scope="col">members used</th></tr></thead>')
    out.append("<tbody>")
    for arm, (used, total) in zip(arms, counts):
        out.append(f'<tr data-arm="{_e(arm)}"><th scope="row">{_e(arm)}</th>')
        for name, column in columns.items():
            row = cells.get((arm, name))
            if row is None:
                out.append('<td class="missing">not computed</td>')
                continue
            median, low, high = (float(row[k]) for k in ("median", "low", "high"))
            text = f"{_fmt(median)} [{_fmt(low)}, {_fmt(high)}]{_unit_suffix(column['unit'])}"
            # repr keeps every digit, so the attributes round-trip the caller's floats exactly.
            out.append(f'<td class="num" data-outcome="{_e(name)}" data-median="{median!r}" '
                       f'data-low="{low!r}" data-high="{high!r}">{_e(text)}</td>')
        out.append(f'<td class="num" data-used="{used}" data-total="{total}">'
                   f"{used} of {total}</td></tr>")
    out.append("</tbody></table>")
    out.append("<p>Each cell: median [5th, 95th percentile] over members, a 90 % interval. "
               "Failed members are left out.</p>")
    if columns:
        out.append('<dl class="definitions">')
        for name, column in columns.items():
            out.append(f"<dt>{_e(name)}</dt><dd>{_e(column['definition'])}</dd>")
        out.append("</dl>")
    return out


def _provenance_value(value: Any) -> str:
    # Nested records (a scenario description, tolerances) read best as JSON; the rest as text.
    if isinstance(value, (Mapping, list, tuple)):
        return json.dumps(value, default=str, sort_keys=True)
    return str(value)


@dataclasses.dataclass(frozen=True)
class Section:
    """An extra report section after the outcomes (an optimisation's result, for example):
    a heading, a paragraph, a table of text cells and PNG figures ``(png, alt, caption)``.
    Everything is escaped, as the rest of the report."""

    heading: str
    text: str = ""
    columns: tuple[str, ...] = ()
    rows: tuple[tuple[str, ...], ...] = ()
    figures: tuple[tuple[bytes, str, str], ...] = ()
    kind: str = "extra"  # the <section>'s class, for readers and tests of the HTML


def _png_figure(png: bytes, alt: str, caption: str) -> str:
    width, height = _png_size(png)
    uri = "data:image/png;base64," + base64.b64encode(png).decode("ascii")
    return (f'<figure><img src="{uri}" width="{width}" height="{height}" alt="{_e(alt)}">'
            f"<figcaption>{_e(caption)}</figcaption></figure>")


def _section(section: Section) -> list[str]:
    parts = [f'<section class="{_e(section.kind)}"><h2>{_e(section.heading)}</h2>']
    if section.text:
        parts.append(f"<p>{_e(section.text)}</p>")
    if section.columns:
        parts.append("<table><thead><tr>" + "".join(f"<th>{_e(c)}</th>" for c in
                                                    section.columns) + "</tr></thead><tbody>")
        for row in section.rows:
            if len(row) != len(section.columns):
                raise ValueError(f"section {section.heading!r}: a row has {len(row)} cells "
                                 f"for {len(section.columns)} columns")
            parts.append("<tr>" + "".join(f"<td>{_e(c)}</td>" for c in row) + "</tr>")
        parts.append("</tbody></table>")
    parts += [_png_figure(*figure) for figure in section.figures]
    parts.append("</section>")
    return parts


def write_report(
    path: str | os.PathLike,
    *,
    title: str,
    dataset: xr.Dataset,
    outcomes: list[dict],
    warnings: list[str],
    provenance: dict,
    signals: list[str] | None = None,
    sections: Sequence[Section] = (),
    figures: str | os.PathLike | None = None,
) -> Path:
    """Write a self-contained HTML report comparing the arms of ``dataset``; return its path.

    Args:
        path: the HTML file to write (overwritten if it exists).
        title: the report's title (``<title>`` and ``<h1>``).
        dataset: dims ``("arm", "member", "time")``; coordinate ``arm`` names the arms,
            ``time`` is in minutes (or its ``attrs["units"]``); each signal variable carries
            ``attrs["units"]``. NaN members (failed runs) are left out and counted.
        outcomes: rows ``{"arm", "outcome", "unit", "median", "low", "high", "definition"}``
            with a 90 % interval ``[low, high]``; one table column per distinct outcome.
        warnings: text shown in the warnings section (for example "dose above the validated
            range"); a warning per arm with failed members is added.
        provenance: key/value pairs listed in the footer (package version, model hash, ...).
        signals: the variables to plot, one figure each; default every data variable with dims
            ``("arm", "member", "time")``.
        sections: extra sections shown after the outcome table (``Section``).
        figures: a folder to write each signal's figure into as ``<signal>.png`` as well.

    Raises:
        ValueError: a dim or the ``arm`` coordinate is missing, a signal has other dims, or an
            outcome row is incomplete, names an unknown arm, is repeated, or disagrees in unit
            or definition with the other arms' rows of the same outcome.
        KeyError: a signal is not in the dataset.
    """
    signals = _check_dataset(dataset, signals)
    arms = [str(a) for a in dataset["arm"].values]
    n_members = int(dataset.sizes["member"])
    failed = _failed_members(dataset, signals)
    counts = [(n_members - int(f), n_members) for f in failed]

    all_warnings = [str(w) for w in warnings]
    all_warnings += [f"arm {arm}: {int(f)} of {n_members} members failed and are left out of "
                     f"the medians, bands and intervals" for arm, f in zip(arms, failed) if f]

    parts = _opening(title, all_warnings)
    parts.append('<section class="outcomes"><h2>Outcomes</h2>')
    parts += _outcome_table(outcomes, arms, counts)
    parts.append("</section>")
    for section in sections:
        parts += _section(section)

    parts.append('<section class="figures"><h2>Signals</h2>')
    for name in signals:
        png, alt = _figure(dataset, name, arms)
        if figures is not None:  # the same PNGs as files, for slides and case notes
            Path(figures).mkdir(parents=True, exist_ok=True)
            (Path(figures) / f"{name}.png").write_bytes(png)
        parts.append(_png_figure(png, alt, f"{name}: median and 90 % band over {n_members} "
                                 "members per arm (failed members left out)"))
    parts.append("</section>")
    parts += _closing(provenance)
    path = Path(path)
    path.write_text("\n".join(parts), encoding="utf-8")
    return path


def _opening(title: str, warnings: Sequence[str]) -> list[str]:
    """The document's head, title and warnings section."""
    parts = ["<!DOCTYPE html>", '<html lang="en">', "<head>", '<meta charset="utf-8">',
             f'<meta http-equiv="Content-Security-Policy" content="{_CSP}">',
             '<meta name="viewport" content="width=device-width, initial-scale=1">',
             f"<title>{_e(title)}</title>", f"<style>{_STYLE}</style>", "</head>", "<body>",
             "<main>", f"<h1>{_e(title)}</h1>"]
    if warnings:
        parts.append('<section class="warnings" role="alert"><h2>Warnings</h2><ul>')
        parts += [f"<li>{_e(w)}</li>" for w in warnings]
        parts.append("</ul></section>")
    else:
        parts.append('<section class="warnings empty"><h2>Warnings</h2><p>none</p></section>')
    return parts


def _closing(provenance: Mapping[str, Any]) -> list[str]:
    """The end of <main>, the provenance footer and the end of the document."""
    parts = ["</main>", "<footer><h2>Provenance</h2><dl>"]
    parts += [f"<dt>{_e(k)}</dt><dd>{_e(_provenance_value(v))}</dd>"
              for k, v in provenance.items()]
    parts += ["</dl></footer>", "</body>", "</html>", ""]
    return parts


def write_document(path: str | os.PathLike, *, title: str, sections: Sequence[Section],
                   warnings: Sequence[str] = (), provenance: Mapping[str, Any] | None = None,
                   ) -> Path:
    """Write a self-contained HTML document of ``Section``s (the validation and credibility
    reports): the same guarantees as ``write_report`` (no external loads, a
    Content-Security-Policy, every text escaped, figures embedded), its warnings section first
    and provenance last."""
    parts = _opening(title, [str(w) for w in warnings])
    for section in sections:
        parts += _section(section)
    parts += _closing(provenance or {})
    path = Path(path)
    path.write_text("\n".join(parts), encoding="utf-8")
    return path


def markdown_document(*, title: str, sections: Sequence[Section],
                      warnings: Sequence[str] = (),
                      provenance: Mapping[str, Any] | None = None,
                      figure_files: Mapping[str, str] | None = None) -> str:
    """The same document as Markdown text (tables as pipe tables; a figure as a link to its
    PNG file where ``figure_files`` maps its alt text to a path, else its caption)."""
    def cell(text) -> str:
        return str(text).replace("|", "\\|").replace("\n", " ")

    lines = [f"# {title}", "", "## Warnings", ""]
    lines += [f"- {w}" for w in warnings] or ["none"]
    for section in sections:
        lines += ["", f"## {section.heading}", ""]
        if section.text:
            lines += [section.text, ""]
        if section.columns:
            lines.append("| " + " | ".join(cell(c) for c in section.columns) + " |")
            lines.append("|" + "---|" * len(section.columns))
            lines += ["| " + " | ".join(cell(c) for c in row) + " |" for row in section.rows]
            lines.append("")
        for _, alt, caption in section.figures:
            target = (figure_files or {}).get(alt)
            lines += [f"![{alt}]({target})" if target else f"*Figure: {alt}*", "",
                      f"*{caption}*", ""]
    lines += ["", "## Provenance", ""]
    lines += [f"- **{k}**: {_provenance_value(v)}" for k, v in (provenance or {}).items()]
    return "\n".join(lines) + "\n"
