"""The suite's own pretraining: cached once per spec and pretraining procedure."""
from __future__ import annotations

import pytest
import torch

from spottune.pretraining import weights as pretrain
from spottune.pretraining import cache as pretrain_cache

SPEC = {"arch": "resnet26", "width": 0.25, "input_size": 32,
        "pretrained": {"kind": "suite", "dataset": "mini_source", "epochs": 1, "batch_size": 64,
                       "lr": 0.1, "weight_decay": 5e-4, "seed": 0, "max_images": 256}}


def cached_files() -> list[str]:
    return sorted(p.name for p in (pretrain_cache.cache_dir() / "pretrained").glob("*.pt"))


@pytest.mark.slow
def test_pretraining_is_cached_per_spec_and_procedure_version(monkeypatch, tmp_path):
    monkeypatch.setenv(pretrain_cache.CACHE_ENV, str(tmp_path))
    first = pretrain.pretrained_backbone(SPEC, progress=False)
    assert len(cached_files()) == 1 and cached_files()[0].startswith("resnet26-mini_source-")
    assert first.pretraining["dataset"] == "mini_source" and 0 <= first.pretraining["test_accuracy"] <= 100
    again = pretrain.pretrained_backbone(SPEC, progress=False)  # loaded, not trained again
    assert len(cached_files()) == 1 and again.pretraining == first.pretraining
    assert all(torch.equal(a, b) for a, b in zip(first.state_dict().values(), again.state_dict().values()))

    monkeypatch.setattr(pretrain_cache, "PRETRAINING_VERSION", pretrain_cache.PRETRAINING_VERSION + 1)
    pretrain.pretrained_backbone(SPEC, progress=False)  # a changed procedure never reuses old weights
    assert len(cached_files()) == 2


@pytest.mark.slow
def test_pretraining_with_series_adapters_keeps_their_batchnorms(monkeypatch, tmp_path):
    """``series_adapters: true``: the official "network with series adapters in it". The backbone
    is the plain network; only the series adapters may start from it, with these BatchNorms."""
    from spottune.methods import create_method

    monkeypatch.setenv(pretrain_cache.CACHE_ENV, str(tmp_path))
    spec = {**SPEC, "pretrained": {**SPEC["pretrained"], "series_adapters": True}}
    backbone = pretrain.pretrained_backbone(spec, progress=False)
    plain = pretrain.pretrained_backbone(SPEC, progress=False)
    assert backbone.pretraining["series_adapters"] and backbone.pretraining["id"] != plain.pretraining["id"]
    convs = [m for m in backbone.modules() if isinstance(m, torch.nn.Conv2d)]
    assert len(backbone.series_adapter_bns) == len(convs) == 25  # one adapter per 3x3 convolution
    assert not torch.equal(backbone.series_adapter_bns[3]["running_var"], torch.ones(16))  # trained
    hp = {"lr": 0.1, "weight_decay": 5e-4, "momentum": 0.9}
    series = create_method("residual_adapters_series", hp)
    model = series.build(backbone, 5)
    adapters = [m for m in model.modules() if type(m).__name__ == "SeriesAdapter"]
    for adapter, state in zip(adapters, backbone.series_adapter_bns):
        assert torch.equal(adapter.adapter[0].running_mean, state["running_mean"])
        assert torch.equal(adapter.adapter[0].weight, state["weight"])
    again = pretrain.pretrained_backbone(spec, progress=False)  # from the cache, adapters' BNs included
    assert all(torch.equal(a["running_var"], b["running_var"])
               for a, b in zip(again.series_adapter_bns, backbone.series_adapter_bns))
    for other in ("finetune", "residual_adapters_parallel"):
        with pytest.raises(ValueError, match="only residual_adapters_series"):
            create_method(other, hp).build(backbone, 5)


def test_ensure_pretrained_trains_once_and_skips_other_kinds(monkeypatch, tmp_path):
    """What a launcher calls before its workers start: trains only when the file is not cached."""
    monkeypatch.setenv(pretrain_cache.CACHE_ENV, str(tmp_path))
    assert pretrain.ensure_pretrained(SPEC, progress=False) is True
    assert pretrain.ensure_pretrained(SPEC, progress=False) is False
    assert len(cached_files()) == 1
    assert pretrain.ensure_pretrained({**SPEC, "pretrained": {"kind": "none"}}) is False


def test_the_pretrained_weights_do_not_depend_on_the_callers_threads(monkeypatch, tmp_path):
    """A pretraining's weights depend on its torch thread count, which came from the CPUs free at
    launch: the same quickstart on the same machine pretrained another source when other work
    ran. On the CPU it now runs PRETRAINING_THREADS whatever the caller's count (given back
    after), records it, and ``$OMP_NUM_THREADS`` still chooses."""
    from spottune.training.cpus import PRETRAINING_THREADS, pretraining_threads

    monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
    before, weights = torch.get_num_threads(), []
    try:
        for threads in (1, 2):
            monkeypatch.setenv(pretrain_cache.CACHE_ENV, str(tmp_path / f"threads{threads}"))
            torch.set_num_threads(threads)
            backbone = pretrain.pretrained_backbone(SPEC, progress=False)
            assert torch.get_num_threads() == threads
            assert backbone.pretraining["torch_threads"] == PRETRAINING_THREADS == 1
            weights.append(backbone.state_dict())
    finally:
        torch.set_num_threads(before)
    assert all(torch.equal(a, b) for a, b in zip(weights[0].values(), weights[1].values()))
    monkeypatch.setenv("OMP_NUM_THREADS", "2")
    assert pretraining_threads() == 2
