from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from spottune.storage import records
from spottune.engine import run
from tests.fail_at_epoch import ENV, InjectedFailure
from tests.helpers import tiny_run


@pytest.mark.slow
def test_run_writes_the_records(tmp_path):
    config = tiny_run("spottune")
    metrics = run(config, tmp_path / "r")
    folder = tmp_path / "r"
    assert {p.name for p in folder.iterdir()} == {"config.json", "metrics.json", "policy.npz", "predictions.npz",
                                                 "checkpoint.pt", "attempts.log", "done"}
    stored = json.loads((folder / "config.json").read_text())
    assert stored["run_id"] == config.run_id == records.run_id(stored)
    assert stored["hparams"]["temperature"] == 5.0 and stored["backbone"] == "resnet26"
    assert 0.0 <= metrics["test_accuracy"] <= 100.0
    assert metrics["images"] == {"train": 1198, "test": 599}
    assert len(metrics["history"]) == 2 and metrics["history"][0]["lr"] == 0.05
    assert metrics["history"][1]["lr"] == pytest.approx(0.005)
    assert len(metrics["history"][0]["finetune_fraction"]) == 12
    assert metrics["params"]["trainable"] < metrics["params"]["total"]
    assert metrics["timing"]["train_images_per_second"] > 0 and metrics["timing"]["peak_memory_mb"] > 0
    policy = np.load(folder / "policy.npz")
    assert policy["decisions"].shape == (599, 12) and set(np.unique(policy["decisions"])) <= {0, 1}
    assert policy["train_fraction"].shape == (2, 12)
    acc = 100.0 * (policy["predictions"] == policy["labels"]).mean()
    assert acc == pytest.approx(metrics["test_accuracy"])
    predictions = np.load(folder / "predictions.npz")
    assert np.array_equal(predictions["predictions"], policy["predictions"])
    assert stored["protocol"]["test_routing"] == "argmax" and stored["protocol"]["freeze"] == "conv"


def test_done_run_is_not_rerun(tmp_path):
    config = tiny_run(epochs=1)
    first = run(config, tmp_path)
    (tmp_path / "checkpoint.pt").unlink()
    assert run(config, tmp_path) == first


@pytest.mark.slow
def test_same_seed_same_numbers_and_seed_matters(tmp_path):
    a = run(tiny_run(epochs=1), tmp_path / "a")
    b = run(tiny_run(epochs=1), tmp_path / "b")
    c = run(tiny_run(seed=1, epochs=1), tmp_path / "c")
    assert a["history"][0]["train_loss"] == b["history"][0]["train_loss"]
    assert a["test_accuracy"] == b["test_accuracy"]
    assert c["history"][0]["train_loss"] != a["history"][0]["train_loss"]


@pytest.mark.slow
def test_resume_after_interruption_gives_the_uninterrupted_numbers(tmp_path, monkeypatch):
    config = tiny_run("spottune")
    reference = run(config, tmp_path / "straight")
    monkeypatch.setenv(ENV, "2")
    with pytest.raises(InjectedFailure):
        run(config, tmp_path / "resumed")
    monkeypatch.delenv(ENV)
    folder = tmp_path / "resumed"
    assert (folder / "error.txt").exists() and not (folder / "done").exists()
    assert not (folder / "metrics.json").exists()
    assert torch.load(folder / "checkpoint.pt", weights_only=True)["epoch"] == 1
    resumed = run(config, folder)
    assert not (folder / "error.txt").exists() and (folder / "done").exists()
    attempts = [json.loads(line) for line in (folder / "attempts.log").read_text().splitlines()]
    assert [a["from_epoch"] for a in attempts] == [0, 1]
    assert resumed["history"][1].get("resumed") is True
    assert resumed["test_accuracy"] == reference["test_accuracy"]
    for h_ref, h_res in zip(reference["history"], resumed["history"]):
        assert h_ref["train_loss"] == h_res["train_loss"]
        assert h_ref["finetune_fraction"] == h_res["finetune_fraction"]
    a, b = np.load(tmp_path / "straight" / "policy.npz"), np.load(folder / "policy.npz")
    assert np.array_equal(a["decisions"], b["decisions"])


def test_adam_and_unknown_optimizer(tmp_path):
    metrics = run(tiny_run(optimizer="adam", lr=1e-3, epochs=1), tmp_path / "adam")
    assert metrics["history"][0]["lr"] == 1e-3
    with pytest.raises(ValueError, match="unknown optimizer"):
        run(tiny_run(optimizer="rmsprop", epochs=1), tmp_path / "bad")
    assert "unknown optimizer" in (tmp_path / "bad" / "error.txt").read_text()
