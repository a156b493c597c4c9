"""--dry-run's wall time on this machine (issue 23): the arithmetic and the calibration's cache,
with the calibration stubbed (tests/conftest.py: 1000 training and 4000 evaluation images/s)."""
from __future__ import annotations

import json
import re

import pytest
import torch

from spottune.estimates import walltime
from spottune.planning.grid import make_grid
from spottune.pretraining.cache import pretraining_spec
from spottune.estimates.throughput import ThroughputTable
from spottune.estimates.walltime import Calibration, Rates, Setting, WallTime
from tests.helpers import load_script

CPU = torch.device("cpu")
DIGITS = (1198, 599)  # training, scored images (spottune.estimates.dataset_sizes)
MINI_SOURCE = (36000, 6000)
PRETRAINING_EPOCHS = make_grid("mini").runs()[0].hparams["backbone"]["pretrained"]["epochs"]


@pytest.fixture
def measured(monkeypatch) -> list[tuple[Setting, int]]:
    """Every (setting, threads) the calibration measures, at 1000 / 4000 images/s."""
    calls = []

    def measure(setting, threads, device):
        calls.append((setting, threads))
        return Rates(1000.0, 4000.0)

    monkeypatch.setattr(walltime, "measure_rates", measure)
    return calls


def runs(methods: list[str], seeds: list[int]) -> list:
    return make_grid("mini", methods, ["digits"], seeds, {"epochs": 3, "lr_milestones": []}).runs()


def test_the_calibration_batch_is_the_runs_capped_in_pixels():
    assert Setting.of({"arch": "resnet26", "input_size": 32, "width": 0.25}, 128) == Setting("resnet26", 32, 0.25, 128)
    assert Setting.of({"arch": "resnet26", "input_size": 64}, 128).batch_size == 32
    assert Setting.of({"arch": "resnet50", "input_size": 224}, 32).batch_size == 2


def test_a_run_takes_its_epochs_over_the_rates_scaled_by_the_methods_table_cost(tmp_path, measured):
    estimate = WallTime(Calibration(CPU, tmp_path))
    finetune, spottune = runs(["finetune", "spottune"], [0])
    assert estimate.run_seconds(finetune, threads=1) == pytest.approx(3 * DIGITS[0] / 1000 + DIGITS[1] / 4000)
    table = ThroughputTable.load()
    rate, reference = (table.rate(m, "resnet26", 32, 0.25) for m in ("spottune", "finetune"))
    expected = 3 * DIGITS[0] / (1000 * rate.train / reference.train) + DIGITS[1] / (4000 * rate.eval / reference.eval)
    assert estimate.run_seconds(spottune, threads=1) == pytest.approx(expected)
    assert rate.train < reference.train  # SpotTune trains slower than fine-tuning
    pretraining = pretraining_spec(finetune.hparams["backbone"])
    assert estimate.run_seconds(pretraining, threads=2) == pytest.approx(PRETRAINING_EPOCHS * MINI_SOURCE[0] / 1000
                                                                                 + MINI_SOURCE[1] / 4000)


def test_runs_are_dealt_round_robin_to_the_workers(tmp_path, measured):
    estimate = WallTime(Calibration(CPU, tmp_path))
    specs = runs(["finetune"], [0, 1, 2])
    one = 3 * DIGITS[0] / 1000 + DIGITS[1] / 4000
    assert estimate.grid_seconds(specs, workers=2, threads=1) == (pytest.approx(2 * one), 0)
    assert estimate.grid_seconds(specs, workers=1, threads=1) == (pytest.approx(3 * one), 0)
    assert estimate.grid_seconds([], workers=2, threads=1) == (0.0, 0)


def test_a_calibration_is_measured_once_per_machine_setting_and_threads_and_cached(tmp_path, measured):
    spec = runs(["finetune"], [0])[0]
    WallTime(Calibration(CPU, tmp_path)).run_seconds(spec, threads=1)
    WallTime(Calibration(CPU, tmp_path)).run_seconds(spec, threads=1)  # another process: read from the cache
    assert measured == [(Setting("resnet26", 32, 0.25, spec.hparams["batch_size"]), 1)]
    [record] = [json.loads(p.read_text()) for p in tmp_path.iterdir()]
    assert record["threads"] == 1 and record["setting"] == f"resnet26@32 width 0.25 batch {spec.hparams['batch_size']}"
    assert record["train_images_per_second"] == 1000.0 and record["host"] and record["torch"] == torch.__version__
    WallTime(Calibration(CPU, tmp_path)).run_seconds(spec, threads=2)
    assert len(measured) == 2 and len(list(tmp_path.iterdir())) == 2
    next(tmp_path.iterdir()).write_text("{")  # a damaged cache file: measured again
    busy = Calibration(CPU, tmp_path / "busy", keep=False)  # measured beside other work: not kept
    WallTime(busy).run_seconds(spec, threads=1)
    assert not (tmp_path / "busy").exists() and len(measured) == 3


def test_dry_run_prints_the_wall_time_here_with_the_pretraining_first(tmp_path, capsys, measured, monkeypatch):
    monkeypatch.setenv("SPOTTUNE_CACHE", str(tmp_path / "cache"))  # the mini pretraining is not cached there
    run_all = load_script("benchmarks/run_all.py")
    grid = ["--methods", "finetune", "--datasets", "digits", "--seeds", "0,1,2", "--output", str(tmp_path / "out"),
            "--set", "epochs=3", "lr_milestones=[]", "--dry-run"]
    assert run_all.main(grid + ["--cluster", "inline"]) == 0
    out = capsys.readouterr().out
    one, pretraining = 3 * DIGITS[0] / 1000 + DIGITS[1] / 4000, PRETRAINING_EPOCHS * MINI_SOURCE[0] / 1000 + MINI_SOURCE[1] / 4000
    total = walltime.format_duration(3 * one + pretraining)
    assert f"estimated wall time on this machine (--cluster inline: 1 worker(s) x 1 thread(s)): {total}" in out
    assert re.search(r"^  pretraining first \(not cached\): resnet26 pretrained on mini_source \(\w+\), 1 thread\(s\): "
                     + re.escape(walltime.format_duration(pretraining)), out, re.M), out
    assert f"  3 run(s) not done: {walltime.format_duration(3 * one)}" in out
    assert run_all.main(grid + ["--cluster", "local", "--max-parallel", "1"]) == 0
    assert "(--cluster local: 1 worker(s) x 1 thread(s))" in capsys.readouterr().out
    assert run_all.main(grid + ["--cluster", "slurm", "--profile", "local"]) == 0
    assert "wall time" not in capsys.readouterr().out  # the jobs run elsewhere: GPU-hours only
