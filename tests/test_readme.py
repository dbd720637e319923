"""The README's promises: its quickstart is what CI runs, and its API example works."""

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
README = (ROOT / "README.md").read_text(encoding="utf-8")


def _quickstart_commands():
    heading = re.search(r"^#+\s*Quick\s*-?start.*$", README, re.I | re.M)
    block = re.search(r"```[a-z]*\n(.*?)```", README[heading.end():], re.S).group(1)
    return [line for line in block.splitlines() if line.strip() and not line.startswith("#")]


def test_quickstart_has_two_commands_using_the_pins():
    commands = _quickstart_commands()
    assert len(commands) == 2
    assert all("-c .ci/constraints.txt" in c for c in commands)
    assert "vht optimize experiments/whatif/t1d_insulin.toml" in commands[0]
    assert "tests/run_suite.py" in commands[1]


def test_ci_runs_the_readme_test_command():
    """.ci/run holds the README's test command (the Quickstart block's second command) as a
    line of its own and runs it verbatim."""
    test_command = _quickstart_commands()[1]
    ci_lines = (ROOT / ".ci" / "run").read_text().splitlines()
    assert f"TEST_COMMAND='{test_command}'" in ci_lines
    assert test_command in ci_lines  # run as a line of its own, exactly as the README gives it


def test_api_example_runs(tmp_path, monkeypatch):
    example = re.search(r"## The API in fifteen lines\n\n```python\n(.*?)```", README, re.S)
    code = example.group(1)
    assert len(code.strip().splitlines()) <= 15
    monkeypatch.chdir(tmp_path)
    namespace = {}
    exec(compile(code, "README.md", "exec"), namespace)
    assert int(namespace["solution"].status) == 0
    assert (tmp_path / "results" / "two_doses.h5").is_file()
    assert float(namespace["grad"]) < 0  # faster clearance, lower late concentration
