"""The ``spottune`` console script (:mod:`spottune.cli`) and its checkout wrapper ``benchmarks/run_all.py``."""
from __future__ import annotations

import pytest

from spottune import cli
from tests.helpers import REPO, load_script

SWEEP = REPO / "tests" / "fixtures" / "sweep"


def test_pyproject_installs_the_console_script():
    tomllib = pytest.importorskip("tomllib")
    project = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
    assert project["scripts"] == {"spottune": "spottune.cli:main"}


def test_list_names_presets_methods_and_datasets(capsys):
    assert cli.main(["--list"]) == 0
    out = capsys.readouterr().out
    assert "presets:  " in out and "mini" in out and "spottune" in out and "digits" in out
    assert "efficientnet_lite0 (mbconv)" in out and "mini-effnet" in out
    assert "methods (cnn and mbconv only): bn_adapt, piggyback, progressive" in out
    assert "  residual_adapters_parallel (adapters on the full 3x3 convolutions of ResNet blocks; an MBConv" in out


def test_the_wrapper_is_the_same_command(capsys):
    run_all = load_script("benchmarks/run_all.py")
    assert run_all.main is cli.main
    helps = []
    for main in (run_all.main, cli.main):
        with pytest.raises(SystemExit) as exited:
            main(["--help"])
        assert exited.value.code == 0
        helps.append(capsys.readouterr().out)
    assert helps[0] == helps[1] and "spottune report OUTPUT" in helps[0]


def test_status_subcommand_is_the_status_flag(tmp_path, capsys):
    argv = ["--methods", "finetune", "--datasets", "digits", "--seeds", "0", "--output", str(tmp_path)]
    assert cli.main(["status", *argv]) == 0
    by_subcommand = capsys.readouterr().out
    assert cli.main([*argv, "--status"]) == 0
    assert by_subcommand == capsys.readouterr().out and "new" in by_subcommand


def test_run_subcommand_is_the_plain_command(tmp_path, capsys):
    argv = ["--methods", "finetune", "--datasets", "digits", "--seeds", "0", "--output", str(tmp_path), "--dry-run"]
    assert cli.main(["run", *argv]) == 0
    assert capsys.readouterr().out.count(" seed 0 ") == 1


def test_default_output_is_results_under_the_current_directory(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    assert cli.main(["--methods", "finetune", "--datasets", "digits", "--seeds", "0", "--dry-run"]) == 0
    assert "-> results/mini" in capsys.readouterr().out
    assert not (tmp_path / "results").exists()  # a dry run writes nothing


@pytest.mark.slow
def test_report_subcommand_writes_the_tables(tmp_path, capsys):
    assert cli.main(["report", str(SWEEP), "--into", str(tmp_path), "--tables-only"]) == 0
    assert (tmp_path / "tables" / "summary.md").exists() and (tmp_path / "report.html").exists()


def test_report_of_a_folder_without_runs_is_one_line(tmp_path, capsys):
    with pytest.raises(SystemExit) as exited:
        cli.main(["report", str(tmp_path)])
    assert exited.value.code == 2
    assert capsys.readouterr().err == f"error: {tmp_path} has no runs/ folder (give a grid's output folder)\n"
    assert list(tmp_path.iterdir()) == []
