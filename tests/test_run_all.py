from __future__ import annotations

import json
import re

import pandas as pd
import pytest

from spottune.planning.grid import make_grid
from tests.helpers import load_script

run_all = load_script("benchmarks/run_all.py")

QUICK = ["epochs=1", "lr_milestones=[]", "backbone.pretrained.epochs=1", "backbone.pretrained.max_images=512"]


def test_dry_run_lists_the_whole_default_grid(tmp_path, capsys):
    assert run_all.main(["--dry-run", "--output", str(tmp_path)]) == 0
    lines = capsys.readouterr().out.strip().splitlines()
    grid = make_grid("mini")
    n = len(grid.methods) * len(grid.datasets) * len(grid.seeds)
    assert (len(grid.datasets), len(grid.seeds)) == (3, 3)
    assert lines[0].startswith("pretraining ") and "resnet26 pretrained on mini_source" in lines[0]
    runs = [line for line in lines if " seed " in line]  # then the count and the GPU-hour estimates
    assert len(runs) == n and f"{n} runs (mini)" in lines[n + 1]
    assert any(line.startswith("estimated GPU time of the pretraining: ") for line in lines[n + 2:])
    assert all(" new " in line for line in runs)  # nothing written yet (spottune.storage.records.Status)


@pytest.mark.parametrize("argv, message", [
    (["--methods", "nope"], "unknown method 'nope'; known methods: "),
    (["--datasets", "cifar"], "unknown dataset 'cifar'; known datasets: "),
    (["--set", "lr_typo=1"], "unknown hyperparameter 'lr_typo'"),
    (["--set", "epochs"], "KEY=VALUE"),
    (["--preset", "nosuch"], "unknown preset 'nosuch'; known presets: "),
])
def test_bad_input_fails_at_once_with_the_known_names(argv, message, capsys):
    assert run_all.main(argv + ["--dry-run"]) == 2
    assert message in capsys.readouterr().err


@pytest.mark.slow
def test_end_to_end_then_idempotent_rerun(tmp_path, capsys):
    argv = ["--methods", "finetune,spottune", "--datasets", "digits", "--seeds", "0", "--output", str(tmp_path),
            "--no-progress", "--cluster", "inline", "--set", *QUICK]
    assert run_all.main(argv) == 0
    out = capsys.readouterr().out
    # the suite pretraining is a run of the grid, launched first (issue 24)
    assert "[1/3] pretraining resnet26 pretrained on mini_source" in out and "[3/3]" in out
    assert (tmp_path / "tables" / "summary.md").exists()
    table = pd.read_csv(tmp_path / "tables" / "summary.csv")
    assert len(table) >= 2
    runs = sorted((tmp_path / "runs").iterdir())
    assert len(runs) == 2 and all((r / "done").exists() for r in runs)
    pretraining = json.loads((runs[0] / "metrics.json").read_text())["pretraining"]
    assert pretraining["dataset"] == "mini_source" and pretraining["split"] == "test"
    assert 0 <= pretraining["test_accuracy"] <= 100  # 512 images, one epoch: no better than chance
    [published] = (tmp_path / "pretraining").iterdir()  # its folder: named by its id, the cache key
    record = json.loads((published / "metrics.json").read_text())
    assert published.name == pretraining["id"] == record["run_id"] == record["published"]["key"]
    assert (published / "done").exists() and record["test_accuracy"] == pretraining["test_accuracy"]
    mtimes = [(r / "metrics.json").stat().st_mtime_ns for r in runs]
    assert run_all.main(argv) == 0
    assert "[1/" not in capsys.readouterr().out  # nothing left to run
    assert [(r / "metrics.json").stat().st_mtime_ns for r in runs] == mtimes
    assert run_all.main(argv[:-len(QUICK) - 1] + ["--dry-run", "--set", *QUICK]) == 0  # same grid
    lines = capsys.readouterr().out.splitlines()
    assert sum(line.split()[1:2] == ["done"] for line in lines if " seed " in line) == 2


def test_help_teaches(capsys):
    with pytest.raises(SystemExit):
        run_all.main(["--help"])
    out = capsys.readouterr().out
    assert "--set" in out and "resumes interrupted" in out and "Examples" in out


@pytest.mark.slow
def test_local_workers_give_the_inline_numbers(tmp_path, capsys):
    argv = ["--methods", "finetune", "--datasets", "digits", "--seeds", "0,1", "--no-progress",
            "--set", *QUICK]
    assert run_all.main(argv + ["--output", str(tmp_path / "inline"), "--cluster", "inline"]) == 0
    assert run_all.main(argv + ["--output", str(tmp_path / "local"), "--max-parallel", "2"]) == 0
    assert "in 2 local worker(s)" in capsys.readouterr().out
    inline = pd.read_csv(tmp_path / "inline" / "tables" / "summary.csv")
    local = pd.read_csv(tmp_path / "local" / "tables" / "summary.csv")
    assert list(inline["method"]) == list(local["method"])
    assert local["mean"].tolist() == pytest.approx(inline["mean"].tolist(), abs=0.5)
    assert sorted(p.name for p in (tmp_path / "inline" / "runs").iterdir()) == \
        sorted(p.name for p in (tmp_path / "local" / "runs").iterdir())


def test_decathlon_dry_run_prints_the_pretraining_and_the_runs_gpu_hours_apart(tmp_path, capsys, monkeypatch):
    """Without the released checkpoint the decathlon preset falls back to the suite's ImageNet
    pretraining: --dry-run lists it with its GPU-hours, apart from the runs', and in the total."""
    monkeypatch.setenv("SPOTTUNE_CACHE", str(tmp_path / "cache"))
    assert run_all.main(["--preset", "decathlon", "--methods", "finetune", "--datasets", "decathlon/aircraft",
                         "--data-root", str(tmp_path / "data"), "--output", str(tmp_path / "out"), "--dry-run"]) == 0
    out = capsys.readouterr().out
    assert re.search(r"^pretraining +new +resnet26 pretrained on decathlon/imagenet12 .* epochs 60 +train +1232167 ",
                     out, re.M), out
    runs = re.search(r"estimated GPU time of the runs: ~([\d.]+) GPU-(\w+) for 1 runs", out)
    pretraining = re.search(r"estimated GPU time of the pretraining: ~([\d.]+) GPU-h for 1 backbone\(s\) to "
                            r"pretrain \(0 cached\)", out)
    total = re.search(r"estimated GPU time still to spend: ~([\d.]+) GPU-h \(pretraining \+ runs", out)
    assert runs and pretraining and total, out
    hours = float(runs.group(1)) / {"h": 1, "min": 60, "s": 3600}[runs.group(2)]
    assert float(total.group(1)) == pytest.approx(float(pretraining.group(1)) + hours, rel=0.01)
