"""The documentation builds without a warning (mkdocs --strict), API reference included."""

import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_mkdocs_build_is_strictly_clean(tmp_path):
    result = subprocess.run(
        [sys.executable, "-m", "mkdocs", "build", "-f", "docs/mkdocs.yml", "--strict",
         "-d", str(tmp_path / "site")],
        cwd=ROOT, capture_output=True, text=True, timeout=600,
        env={**os.environ, "NO_MKDOCS_2_WARNING": "1"})
    assert result.returncode == 0, result.stderr[-4000:]
    api = (tmp_path / "site" / "api" / "index.html").read_text()
    for name in ("simulate", "steady_state", "load_twin", "sum_over_ranks", "Trigger"):
        assert name in api
    assert (tmp_path / "site" / "img" / "flagship.png").is_file()
