"""The suite's own pretraining: cached once per spec and pretraining procedure."""
from __future__ import annotations

import torch

from spottune import pretrain

SPEC = {"arch": "resnet26", "width": 0.25, "input_size": 32,
        "pretrained": {"kind": "suite", "dataset": "mini_source", "epochs": 1, "batch_size": 64,
                       "lr": 0.1, "weight_decay": 5e-4, "seed": 0, "max_images": 256}}


def cached_files() -> list[str]:
    return sorted(p.name for p in (pretrain.cache_dir() / "pretrained").glob("*.pt"))


def test_pretraining_is_cached_per_spec_and_procedure_version(monkeypatch, tmp_path):
    monkeypatch.setenv(pretrain.CACHE_ENV, str(tmp_path))
    first = pretrain.pretrained_backbone(SPEC, progress=False)
    assert len(cached_files()) == 1 and cached_files()[0].startswith("resnet26-mini_source-")
    assert first.pretraining["dataset"] == "mini_source" and 0 <= first.pretraining["test_accuracy"] <= 100
    again = pretrain.pretrained_backbone(SPEC, progress=False)  # loaded, not trained again
    assert len(cached_files()) == 1 and again.pretraining == first.pretraining
    assert all(torch.equal(a, b) for a, b in zip(first.state_dict().values(), again.state_dict().values()))

    monkeypatch.setattr(pretrain, "PRETRAINING_VERSION", pretrain.PRETRAINING_VERSION + 1)
    pretrain.pretrained_backbone(SPEC, progress=False)  # a changed procedure never reuses old weights
    assert len(cached_files()) == 2
