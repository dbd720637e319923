"""The vht command: help on every subcommand, run, info, inspect."""

import subprocess
import sys
from pathlib import Path

import pytest

import vht
from physiology_models.twins import oral_pk
from vht import cli

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.parametrize("argv", [["--help"], ["run", "--help"], ["info", "--help"],
                                  ["inspect", "--help"]])
def test_every_subcommand_has_help(argv, capsys):
    with pytest.raises(SystemExit) as exit_info:
        cli.main(argv)
    assert exit_info.value.code == 0
    assert "usage: vht" in capsys.readouterr().out


def test_info_reports_versions_and_devices(capsys):
    assert cli.main(["info"]) == 0
    out = capsys.readouterr().out
    assert out.startswith(f"vht {vht.__version__}") and "diffrax" in out and "devices:" in out


def test_run_an_experiment_file_with_arguments(tmp_path, capsys):
    experiment = tmp_path / "tiny.py"
    experiment.write_text("def main(argv):\n    print('ran with', argv)\n    return 0\n")
    assert cli.main(["run", str(experiment), "--flag", "3"]) == 0
    assert "ran with ['--flag', '3']" in capsys.readouterr().out


def test_run_errors_are_clear(tmp_path):
    with pytest.raises(SystemExit, match="no such experiment file"):
        cli.main(["run", str(tmp_path / "missing.py")])
    (tmp_path / "nomain.py").write_text("x = 1\n")
    with pytest.raises(SystemExit, match="defines no main"):
        cli.main(["run", str(tmp_path / "nomain.py")])
    with pytest.raises(SystemExit, match="cannot import experiment"):
        cli.main(["run", "experiments.does_not_exist"])


def test_inspect_twin_file_and_results(tmp_path, capsys):
    path = vht.save_twin(tmp_path / "t.h5", oral_pk())
    assert cli.main(["inspect", str(path)]) == 0
    out = capsys.readouterr().out
    assert "physiology_models.twins:oral_pk" in out and "drug.clearance" in out and "L/h" in out
    twin = oral_pk()
    dataset = vht.to_dataset(vht.simulate(twin, t1=10.0, n_save=3), twin)
    results = vht.save_dataset(dataset, tmp_path / "r.h5")
    assert cli.main(["inspect", str(results)]) == 0
    assert "drug.concentration" in capsys.readouterr().out


def test_console_script_is_installed():
    result = subprocess.run([sys.executable, "-m", "vht.cli", "--help"], capture_output=True,
                            text=True, cwd=ROOT)
    assert result.returncode == 0 and "inspect" in result.stdout
