"""Open an HTML report in headless Chromium and record what a reader would see.

The report tests use this to check the file as a browser renders it, not as a string: that it
loads nothing from the network, logs no error, shows its table and figures at a real size, and
that the page is not blank. It drives the system Chromium (Debian's ``chromium`` package, which
.ci/run installs) through Playwright's sync API; Playwright's own browser downloads are not
used. A missing Chromium or Playwright is an error, not a skip: CI installs both, so a report
test that silently skipped there would hide a broken report.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import numpy as np
from PIL import Image

CHROMIUM = os.environ.get("VHT_CHROMIUM", "/usr/bin/chromium")

# Read inside the page after load: table rows and cells, images with their rendered boxes.
_PAGE_FACTS = """() => {
  const rows = [...document.querySelectorAll("table.outcomes tbody tr")];
  const outcomeCells = "table.outcomes tbody td:not([data-used])";
  const cells = [...document.querySelectorAll(outcomeCells)].map(td => ({
    arm: td.closest("tr").dataset.arm, outcome: td.dataset.outcome,
    median: td.dataset.median ?? null, low: td.dataset.low ?? null,
    high: td.dataset.high ?? null, text: td.textContent}));
  const images = [...document.querySelectorAll("img")].map(img => {
    const box = img.getBoundingClientRect();
    return {width: box.width, height: box.height, naturalWidth: img.naturalWidth,
            naturalHeight: img.naturalHeight, complete: img.complete, alt: img.alt,
            src_scheme: img.src.split(":")[0]};
  });
  const used = [...document.querySelectorAll("td[data-used]")].map(td => ({
    arm: td.closest("tr").dataset.arm, used: Number(td.dataset.used),
    total: Number(td.dataset.total)}));
  const warnings = [...document.querySelectorAll("section.warnings li")].map(li => li.textContent);
  const warningsText = document.querySelector("section.warnings")?.innerText ?? null;
  const footer = document.querySelector("footer");
  const h1 = document.querySelector("h1");
  const sections = [...document.querySelectorAll("section.extra")].map(sec => ({
    heading: sec.querySelector("h2")?.textContent ?? null,
    rows: [...sec.querySelectorAll("tbody tr")].map(tr => [...tr.cells].map(c => c.textContent)),
    text: sec.innerText}));
  return {sections: sections, rows: rows.length, arms: rows.map(r => r.dataset.arm),
          cells: cells, images: images,
          members_used: used, warnings: warnings, warnings_text: warningsText,
          footer: footer ? footer.innerText : null,
          h1: h1 ? h1.textContent : null, title: document.title,
          css_background: getComputedStyle(document.body).backgroundColor};
}"""


def _missing(message: str):
    """Without a browser the report tests skip, as the MPI tests do without OpenMPI, unless
    VHT_REQUIRE_BROWSER=1 (CI sets it, having installed Chromium): then they fail."""
    if os.environ.get("VHT_REQUIRE_BROWSER") == "1":
        raise RuntimeError(message)
    import pytest

    pytest.skip(message)


def _require_browser():
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        _missing("the report tests need Playwright: pip install playwright (the dev extra has "
                 "it); its browser downloads are not needed")
    if not (os.access(CHROMIUM, os.X_OK) or shutil.which(CHROMIUM)):
        _missing(f"the report tests need Chromium at {CHROMIUM} (apt-get install chromium, as "
                 ".ci/run does; or set VHT_CHROMIUM)")
    return sync_playwright


def _ink_fraction(screenshot: Path) -> tuple[float, tuple[int, ...]]:
    """Fraction of pixels that differ from the background, taken as the most frequent colour."""
    pixels = np.asarray(Image.open(screenshot).convert("RGB")).reshape(-1, 3)
    colours, counts = np.unique(pixels, axis=0, return_counts=True)
    background = colours[np.argmax(counts)]
    ink = np.any(pixels != background, axis=1).mean()
    return float(ink), tuple(int(c) for c in background)


def open_in_chromium(path: str | os.PathLike, *, timeout_ms: float = 20_000) -> dict:
    """Load ``path`` in headless Chromium and return what it did and showed.

    Keys: ``requests`` (URLs requested other than the file itself and ``data:`` URIs),
    ``console_errors``, ``page_errors``, ``rows`` (number of outcome-table rows), ``arms`` (their
    ``data-arm``), ``cells`` (per outcome cell of the body: arm, outcome, median, low and high
    as floats, None where the cell has no number, and text), ``images`` (rendered ``width`` and
    ``height``, ``naturalWidth``, ``naturalHeight``, ``complete``, ``alt``, ``src_scheme``),
    ``members_used`` (per arm: used, total), ``warnings`` (the warning items' text),
    ``warnings_text`` (the whole section's), ``sections`` (extra sections: heading, rows of cell
    texts, rendered text), ``footer`` (its rendered text), ``h1``, ``title``,
    ``css_background``, ``screenshot`` (a full-page PNG next to the report), ``background``
    (the screenshot's most frequent colour) and ``ink_fraction`` (the fraction of its pixels of
    another colour).
    """
    sync_playwright = _require_browser()
    path = Path(path).resolve()
    url = path.as_uri()
    screenshot = path.with_name(path.stem + ".screenshot.png")
    requests: list[str] = []
    console_errors: list[str] = []
    page_errors: list[str] = []

    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"],
                                    headless=True)
        try:
            page = browser.new_page(viewport={"width": 1200, "height": 900})

            def on_request(request):
                if request.url != url and not request.url.startswith("data:"):
                    requests.append(request.url)

            page.on("request", on_request)
            page.on("console", lambda m: console_errors.append(m.text) if m.type == "error"
                    else None)
            page.on("pageerror", lambda e: page_errors.append(str(e)))
            page.goto(url, wait_until="load", timeout=timeout_ms)
            facts = page.evaluate(_PAGE_FACTS)
            # headless Chromium sometimes answers "Unable to capture screenshot" for a full
            # page while the machine is busy (seen once under the parallel suite); a page
            # that cannot be drawn fails all three tries
            for attempt in range(3):
                try:
                    page.screenshot(path=str(screenshot), full_page=True)
                    break
                except Exception as error:  # playwright's Error, imported lazily
                    if attempt == 2 or "Unable to capture screenshot" not in str(error):
                        raise
                    page.wait_for_timeout(500)
        finally:
            browser.close()

    ink, background = _ink_fraction(screenshot)
    for cell in facts["cells"]:
        for key in ("median", "low", "high"):
            cell[key] = None if cell[key] is None else float(cell[key])
    return {**facts, "requests": requests, "console_errors": console_errors,
            "page_errors": page_errors, "screenshot": screenshot, "background": background,
            "ink_fraction": ink}
