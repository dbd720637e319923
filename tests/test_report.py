"""The HTML what-if report (vht._report.write_report), checked as Chromium renders it.

The data are real: the one-compartment oral PK twin, three dosing arms, twenty members whose
clearance is log-normal, all in one vmapped compiled solve. One member is then marked failed
(NaN, as simulate returns for a failed run) to check that it is left out and counted.
"""

from __future__ import annotations

import hashlib
import json
import math
import re
from html.parser import HTMLParser

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from report_browser import open_in_chromium

import vht
from physiology_models import twins
from vht._report import write_report

# Every test here shares the module's one compiled, vmapped solve: keep them on one xdist worker.
pytestmark = pytest.mark.xdist_group("report_oral_pk")

ARMS = ("200 mg once", "100 mg × 2, 12 h apart", "400 mg once")
DOSES = ((200.0, 0.0), (100.0, 100.0), (400.0, 0.0))  # mg at 0 h and at 12 h
N_MEMBERS = 20
FAILED = (1, 7)  # (arm, member) marked as a failed run
TITLE = 'Oral dosing what-if: 200 mg vs 2 × 100 mg vs 400 mg <demo> & "test"'


@pytest.fixture(scope="module")
def study():
    """(dataset, outcomes, provenance) of the three arms x twenty members, one member failed."""
    twin = twins.oral_pk()
    # Two dose slots in every arm so the arms stack into one structure; a zero dose is "off".
    scenarios = [vht.Scenario([vht.OralDose("drug.depot", first, 0.0, unit="mg"),
                               vht.OralDose("drug.depot", second, 12 * vht.HOUR, unit="mg")],
                              name=arm) for arm, (first, second) in zip(ARMS, DOSES)]
    arms = vht.stack(scenarios)
    # Between-subject variability of clearance: log-normal, 30 % CV around the typical value.
    typical = float(twin.parameters()["drug.clearance"])
    z = np.random.default_rng(20240611).standard_normal(N_MEMBERS)
    clearance = jnp.asarray(typical * np.exp(0.3 * z))
    ts = jnp.linspace(0.0, 24 * vht.HOUR, 97)  # every 15 min for 24 h

    def member(scenario, cl):
        return vht.simulate(twin.replace({"drug.clearance": cl}), scenario, ts=ts, throw=False)

    run = jax.jit(jax.vmap(jax.vmap(member, in_axes=(None, 0)), in_axes=(0, None)))
    solution = run(arms, clearance)
    assert bool(np.all(np.asarray(solution.ok)))
    dataset = vht.to_dataset(solution, batch_dims=("arm", "member"), coords={"arm": list(ARMS)})
    dataset["clearance"] = (("member",), np.asarray(clearance), {"units": "L/h"})
    # A failed run: simulate gives NaN outputs and states for it.
    for name in ("drug.concentration", "drug.depot", "drug.central"):
        values = dataset[name].values.copy()  # JAX's arrays arrive read-only
        values[FAILED] = np.nan
        dataset[name] = dataset[name].copy(data=values)

    conc = dataset["drug.concentration"].transpose("arm", "member", "time").values
    hours = dataset["time"].values / vht.HOUR
    per_member = {
        ("Cmax", "mg/L", "peak plasma concentration over 0-24 h"): conc.max(axis=2),
        ("AUC0-24", "mg*h/L", "area under the plasma concentration curve over 0-24 h, "
                              "trapezoidal rule on the 15-min grid"):
            np.trapezoid(conc, hours, axis=2),
    }
    outcomes = []
    for (name, unit, definition), values in per_member.items():
        # NaN for the failed member; nanquantile leaves it out as the report's bands do.
        low, median, high = np.nanquantile(values, [0.05, 0.5, 0.95], axis=1)
        outcomes += [{"arm": arm, "outcome": name, "unit": unit, "median": float(median[k]),
                      "low": float(low[k]), "high": float(high[k]), "definition": definition}
                     for k, arm in enumerate(ARMS)]
    scenario_json = json.dumps([s.describe() for s in scenarios], sort_keys=True)
    provenance = {
        "vht version": vht.__version__,
        "model hash": vht.model_hash(twin),
        "scenario hash": hashlib.sha256(scenario_json.encode()).hexdigest(),
        "solver": dict(solution.config),
        "tolerances": "rtol {rtol}, atol {atol}".format(**dict(solution.config)),
        "seed": 20240611,
        "created": dataset.attrs["created_utc"],
    }
    return dataset, outcomes, provenance, per_member


def test_report_renders_in_chromium(study, tmp_path):
    dataset, outcomes, provenance, per_member = study
    signals = ["drug.concentration", "drug.depot"]
    path = write_report(tmp_path / "report.html", title=TITLE, dataset=dataset,
                        outcomes=outcomes, warnings=["400 mg is above the validated dose range"],
                        provenance=provenance, signals=signals)
    assert path == tmp_path / "report.html"
    page = open_in_chromium(path)

    assert page["requests"] == []
    assert page["console_errors"] == [] and page["page_errors"] == []
    assert page["h1"] == TITLE and page["title"] == TITLE
    assert page["rows"] == len(ARMS) and page["arms"] == list(ARMS)

    cells = page["cells"]
    assert len(cells) == len(ARMS) * 2
    for cell in cells:
        values = (cell["low"], cell["median"], cell["high"])
        assert all(v is not None and math.isfinite(v) for v in values), cell
        assert cell["low"] <= cell["median"] <= cell["high"], cell
    # The numbers travel through the HTML unchanged, and are the outcomes of real runs.
    given = {(o["arm"], o["outcome"]): (o["low"], o["median"], o["high"]) for o in outcomes}
    assert {(c["arm"], c["outcome"]): (c["low"], c["median"], c["high"]) for c in cells} == given
    cmax = {c["arm"]: c["median"] for c in cells if c["outcome"] == "Cmax"}
    auc = {c["arm"]: c["median"] for c in cells if c["outcome"] == "AUC0-24"}
    assert cmax["400 mg once"] > cmax["200 mg once"] > cmax[ARMS[1]]
    # Linear PK: doubling the dose doubles every member's AUC, so its median too (arm 0 and 2
    # have all members; the failed one is in arm 1).
    assert auc["400 mg once"] == pytest.approx(2 * auc["200 mg once"], rel=1e-9)
    assert auc["200 mg once"] > auc[ARMS[1]]  # the second 100 mg has only 12 h to count

    # The failed member is left out and counted.
    used = {m["arm"]: (m["used"], m["total"]) for m in page["members_used"]}
    assert used == {ARMS[0]: (20, 20), ARMS[1]: (19, 20), ARMS[2]: (20, 20)}
    assert np.isnan(per_member[next(iter(per_member))][FAILED])
    assert page["warnings"][0] == "400 mg is above the validated dose range"
    assert any(ARMS[1] in w and "1 of 20 members failed" in w for w in page["warnings"])

    assert len(page["images"]) == len(signals)
    for image in page["images"]:
        assert image["complete"] and image["src_scheme"] == "data"
        assert image["width"] > 0 and image["height"] > 0 and image["naturalWidth"] > 0
        assert image["alt"]
    assert page["ink_fraction"] > 0.01
    assert page["screenshot"].exists()
    for key in ("vht version", "model hash", "scenario hash", "solver", "seed"):
        assert key in page["footer"]
    assert provenance["model hash"] in page["footer"]


def test_browser_helper_sees_requests_errors_and_blank_pages(tmp_path):
    """The helper's findings are not vacuous: an external image, a script error and a console
    error on an otherwise blank page are all reported."""
    page = tmp_path / "bad.html"
    page.write_text('<!DOCTYPE html><html><body><img src="http://example.invalid/x.png">'
                    '<script>console.error("boom"); undefined_function();</script>'
                    "</body></html>", encoding="utf-8")
    seen = open_in_chromium(page)
    assert seen["requests"] == ["http://example.invalid/x.png"]
    assert any("boom" in m for m in seen["console_errors"])
    assert any("undefined_function" in e for e in seen["page_errors"])
    assert seen["rows"] == 0 and seen["h1"] is None
    assert seen["images"][0]["naturalWidth"] == 0
    assert seen["ink_fraction"] < 0.01


def test_browser_helper_fails_without_chromium_where_required(tmp_path, monkeypatch):
    import report_browser

    monkeypatch.setattr(report_browser, "CHROMIUM", str(tmp_path / "no-chromium"))
    monkeypatch.setenv("VHT_REQUIRE_BROWSER", "1")
    with pytest.raises(RuntimeError, match="the report tests need Chromium at .*no-chromium"):
        open_in_chromium(tmp_path / "any.html")
    monkeypatch.setenv("VHT_REQUIRE_BROWSER", "0")
    with pytest.raises(pytest.skip.Exception, match="need Chromium"):
        open_in_chromium(tmp_path / "any.html")


class _Tags(HTMLParser):
    """Every start tag with its attributes, as a browser's parser would see them."""

    def __init__(self, text: str):
        super().__init__()
        self.tags: list[tuple[str, dict]] = []
        self.feed(text)

    def handle_starttag(self, tag, attrs):
        self.tags.append((tag, dict(attrs)))


def test_report_escapes_user_text_and_has_one_figure_per_signal(study, tmp_path):
    dataset, outcomes, _, _ = study
    evil_arm = '<script>alert("arm")</script> & \'q\''
    arms = [evil_arm, ARMS[1], ARMS[2]]
    dataset = dataset.assign_coords(arm=arms)
    outcomes = [{**o, "arm": evil_arm} if o["arm"] == ARMS[0] else o for o in outcomes]
    outcomes = [{**o, "definition": "peak <b>bold</b>"} for o in outcomes]
    title = "<i>What</i>-if & \"more\""
    provenance = {"<k>": "</footer><img src=x onerror=alert(1)>", "date": "2024-06-11"}
    path = write_report(tmp_path / "escaped.html", title=title, dataset=dataset,
                        outcomes=[o for o in outcomes if o["outcome"] == "Cmax"],
                        warnings=["<u>check</u>"], provenance=provenance)
    text = path.read_text(encoding="utf-8")

    for raw in (evil_arm, "<script", title, "<b>bold", "<k>", "onerror=alert(1)>", "<u>"):
        assert raw not in text, raw
    for escaped in ("&lt;script&gt;alert(&quot;arm&quot;)&lt;/script&gt; &amp; &#x27;q&#x27;",
                    "&lt;i&gt;What&lt;/i&gt;-if &amp; &quot;more&quot;", "&lt;k&gt;",
                    "&lt;/footer&gt;&lt;img src=x onerror=alert(1)&gt;", "&lt;u&gt;check"):
        assert escaped in text, escaped

    tags = _Tags(text).tags
    names = [t for t, _ in tags]
    assert "script" not in names and "link" not in names and names.count("footer") == 1
    # Default signals: every variable over (arm, member, time): the two states and the signal.
    signals = [n for n, v in dataset.data_vars.items() if v.dims == ("arm", "member", "time")]
    assert sorted(signals) == ["drug.central", "drug.concentration", "drug.depot"]
    images = [a for t, a in tags if t == "img"]
    assert len(images) == len(signals)
    for image in images:
        assert image["src"].startswith("data:image/png;base64,")
        assert int(image["width"]) > 0 and int(image["height"]) > 0 and image["alt"]
    # Nothing that a browser would fetch: only data: URIs in src/href attributes.
    for _, attrs in tags:
        for key in ("src", "href"):
            assert key not in attrs or attrs[key].startswith("data:"), attrs
    assert [a["data-arm"] for t, a in tags if t == "tr" and "data-arm" in a] == arms

    one = write_report(tmp_path / "one.html", title="t", dataset=dataset, outcomes=[],
                       warnings=[], provenance={}, signals=["drug.concentration"])
    assert len(re.findall(r"<img ", one.read_text(encoding="utf-8"))) == 1


def test_report_without_warnings_says_none(study, tmp_path):
    dataset, _, _, _ = study
    clean = dataset.fillna(0.0)  # no failed member, so no generated warning either
    text = write_report(tmp_path / "clean.html", title="t", dataset=clean, outcomes=[],
                        warnings=[], provenance={}, signals=["drug.concentration"]).read_text()
    section = re.search(r'<section class="warnings empty">(.*?)</section>', text, re.S)
    assert section and "<p>none</p>" in section.group(1)


def _row(**changes):
    return {"arm": ARMS[0], "outcome": "Cmax", "unit": "mg/L", "median": 1.0, "low": 0.5,
            "high": 2.0, "definition": "peak", **changes}


@pytest.mark.parametrize("change, error, match", [
    (dict(dataset=lambda d: d.isel(member=0)), ValueError, "has no 'member' dim"),
    (dict(dataset=lambda d: d.drop_vars("arm")), ValueError, "no 'arm' coordinate"),
    (dict(dataset=lambda d: d[["status"]].assign_coords(time=d["time"])), ValueError,
     "no data variable with dims"),
    (dict(dataset=lambda d: 1.0), TypeError, "must be an xarray.Dataset"),
    (dict(signals=["drug.nothing"]), KeyError, "signal 'drug.nothing' is not in the dataset"),
    (dict(signals=["clearance"]), ValueError, "signal 'clearance' has dims"),
    (dict(outcomes=[{"arm": ARMS[0]}]), ValueError, "outcome row 0 lacks outcome, unit"),
    (dict(outcomes=[_row(arm="placebo")]), ValueError, "names arm 'placebo', which is not"),
    (dict(outcomes=[_row(), _row()]), ValueError, "outcome 'Cmax' of arm '200 mg once' is given"),
    (dict(outcomes=[_row(), _row(arm=ARMS[2], unit="ug/L")]), ValueError,
     "has unit 'mg/L' in one arm and 'ug/L' in arm '400 mg once'"),
    (dict(outcomes=[_row(), _row(arm=ARMS[2], definition="max")]), ValueError,
     "outcome 'Cmax' has two different definitions"),
])
def test_report_errors(study, tmp_path, change, error, match):
    dataset = study[0]
    kwargs = dict(title="t", dataset=dataset, outcomes=[], warnings=[], provenance={})
    kwargs.update(change)
    if callable(kwargs["dataset"]):
        kwargs["dataset"] = kwargs["dataset"](dataset)
    with pytest.raises(error, match=re.escape(match)):
        write_report(tmp_path / "r.html", **kwargs)
