"""The decathlon and standard presets, and run_all's --pretrained, on a fixture devkit."""
from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from spottune.backbones import resnet26
from spottune.planning.grid import make_grid
from tests.data_fixtures import write_devkit
from tests.helpers import load_script

run_all = load_script("benchmarks/run_all.py")


def test_decathlon_preset_is_the_released_protocol() -> None:
    grid = make_grid("decathlon")
    assert len(grid.datasets) == 9 and "decathlon/imagenet12" not in grid.datasets
    runs = {(r.method, r.dataset): r.hparams for r in grid.runs()}
    spottune = runs[("spottune", "decathlon/cifar100")]
    assert [spottune[k] for k in ("lr", "epochs", "batch_size", "lr_milestones")] == [0.1, 110, 128, [40]]
    assert spottune["weight_decay"] == 0.0 and runs[("spottune", "decathlon/vgg-flowers")]["weight_decay"] == 1e-4
    assert spottune["data"] == {"split": "train+val", "eval_split": "test", "transforms": "released",
                                "cache": "packed"}
    pretrained = spottune["backbone"]["pretrained"]  # the released file, else the suite's pretraining
    assert pretrained["kind"] == "released" and pretrained["fallback"]["dataset"] == "decathlon/imagenet12"
    assert runs[("piggyback", "decathlon/dtd")]["epochs"] == 30
    adapters = runs[("residual_adapters_parallel", "decathlon/cifar100")]  # --wd 5, --wd1x1 1, as run
    assert (adapters["weight_decay"], adapters["adapter_weight_decay"]) == (5e-4, 1e-4)
    assert adapters["weight_decay_protocol"] == "as_run"


def test_standard_preset() -> None:
    grid = make_grid("standard")
    assert grid.datasets == ["cubs", "stanford_cars", "flowers", "wikiart", "sketches"]
    hp = grid.runs()[0].hparams
    assert hp["backbone"]["arch"] == "resnet50" and (hp["lr"], hp["lr_milestones"]) == (0.01, [15, 30])


@pytest.mark.slow
def test_decathlon_preset_runs_on_a_fixture_devkit(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    write_devkit(tmp_path / "data", "aircraft", {"train": 6, "val": 3, "test": 3}, num_classes=3)
    torch.save(resnet26(10, width=0.25).state_dict(), tmp_path / "state.pt")
    argv = ["--preset", "decathlon", "--datasets", "decathlon/aircraft", "--data-root", str(tmp_path / "data"),
            "--pretrained", str(tmp_path / "state.pt"), "--output", str(tmp_path / "out")]
    assert run_all.main(argv + ["--dry-run"]) == 0
    assert " methods x 1 datasets x 1 seeds" in capsys.readouterr().out  # restricted to one domain
    assert run_all.main(argv + ["--methods", "finetune", "--no-progress", "--set", "epochs=1", "lr_milestones=[]", "batch_size=4",
                                "backbone.width=0.25", "num_workers=0"]) == 0
    config = json.loads(next((tmp_path / "out" / "runs").glob("*/config.json")).read_text())
    assert config["protocol"]["split"] == "train+val" and config["data"]["test_labelled"]
    assert "packed" in config["data"]["image_source"]
    metrics = json.loads(next((tmp_path / "out" / "runs").glob("*/metrics.json")).read_text())
    results = tmp_path / "out" / "submissions" / "finetune_seed0" / "results.json"
    from spottune.data.submission import score_results

    scored = score_results(results, tmp_path / "data" / "decathlon-1.0")
    assert scored["aircraft"] == pytest.approx(metrics["test_accuracy"])


@pytest.mark.slow
def test_unlabelled_test_split_gives_no_accuracy_but_a_submission(tmp_path: Path) -> None:
    write_devkit(tmp_path / "data", "dtd", {"train": 6, "val": 3, "test": 4}, num_classes=2, test_labels=None)
    argv = ["--preset", "decathlon", "--datasets", "decathlon/dtd", "--data-root", str(tmp_path / "data"),
            "--output", str(tmp_path / "out"), "--methods", "finetune", "--no-progress", "--set", "epochs=1", "lr_milestones=[]",
            "batch_size=4", "backbone.width=0.25", "num_workers=0", "backbone.pretrained.kind=none"]
    assert run_all.main(argv) == 0
    metrics = json.loads(next((tmp_path / "out" / "runs").glob("*/metrics.json")).read_text())
    assert metrics["test_accuracy"] is None and metrics["protocol"]["test_labelled"] is False
    entries = json.loads((tmp_path / "out" / "submissions" / "finetune_seed0" / "results.json").read_text())
    assert len(entries) == 4 and all(e["category_id"] // 10**7 == 4 for e in entries)  # dtd is domain 4


def test_l2sp_official_protocol_runs_its_iterations_as_epochs() -> None:
    """9,000 iterations of batch 64, x0.1 at 5,000, per dataset: aircraft (train+val 6,667 images,
    105 steps per epoch) 86 epochs, milestone 48; cifar100 (50,000, 782 steps) 12 epochs, milestone 6."""
    grid = make_grid("decathlon", ["l2sp", "l2sp_official"], ["decathlon/aircraft", "decathlon/cifar100"])
    runs = {(r.method, r.dataset): r.hparams for r in grid.runs()}
    official = runs[("l2sp_official", "decathlon/aircraft")]
    assert official["variant_of"] == "l2sp" and (official["lr"], official["batch_size"]) == (0.01, 64)
    assert (official["epochs"], official["lr_milestones"]) == (86, [48])
    assert (runs[("l2sp_official", "decathlon/cifar100")]["epochs"],
            runs[("l2sp_official", "decathlon/cifar100")]["lr_milestones"]) == (12, [6])
    assert runs[("l2sp", "decathlon/aircraft")]["epochs"] == 110  # the suite's rows keep SpotTune's recipe
    standard = make_grid("standard", ["l2sp_official"], ["cubs"]).runs()[0].hparams  # 5,994 images
    assert (standard["epochs"], standard["lr_milestones"]) == (96, [53])


def test_an_iteration_budget_needs_a_known_dataset_size(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from spottune.data import base

    monkeypatch.setitem(base._DATASETS, "plugin_task", base._DATASETS["digits"])  # a plugin's, size unknown
    preset = tmp_path / "p.yaml"
    preset.write_text("name: p\nbackbone: {arch: resnet26, pretrained: {kind: none}}\ndatasets: [digits]\n"
                      "hparams: {lr: 0.1, batch_size: 8, epochs: 1, iterations: 450}\n")
    assert make_grid(str(preset)).runs()[0].hparams["epochs"] == 3  # 1,198 images: 150 steps per epoch
    with pytest.raises(ValueError, match="plugin_task: training-set size unknown"):
        make_grid(str(preset), datasets=["plugin_task"]).runs()
