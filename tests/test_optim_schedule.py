"""The optimisers and lr schedules of the engine (spottune.training): AdamW's bias groups,
the warm-up + cosine schedule per epoch against hand-computed values, the step schedule
unchanged, the protocol the VTAB-1k / FGVC presets record, and the preflight rules of the
new hyperparameters and of a preset's declared search space."""
from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from spottune.backbones.vit import vit
from spottune.grid import load_preset, make_grid, resolve_hparams, search_space
from spottune.methods import create_method
from spottune.preflight import hparam_problems, milestone_problem, search_problems
from spottune.protocol import run_protocol, schedule_description
from spottune.training import build_optimizer, build_scheduler, warmup_cosine


def lrs_per_epoch(hp: dict, epochs: int, lr: float = 1.0) -> list[float]:
    """The lr each epoch trains at, the scheduler stepped once per epoch as the engine does."""
    optimizer = torch.optim.SGD([nn.Parameter(torch.zeros(1))], lr=lr, momentum=0.9)
    scheduler = build_scheduler(optimizer, hp)
    seen = []
    for _ in range(epochs):
        seen.append(optimizer.param_groups[0]["lr"])
        optimizer.step()
        scheduler.step()
    return seen


def test_warmup_then_cosine_per_epoch_against_hand_computed_values():
    # W = 2, E = 6: epochs 0, 1 warm up (0, 1/2), then (1 + cos(pi k / 4)) / 2 for k = 0..3
    expected = [0.0, 0.5, 1.0, (1 + math.sqrt(0.5)) / 2, 0.5, (1 - math.sqrt(0.5)) / 2]
    hp = {"schedule": "cosine", "warmup_epochs": 2, "epochs": 6}
    assert lrs_per_epoch(hp, 6, lr=0.2) == pytest.approx([0.2 * f for f in expected], abs=1e-12)
    assert [warmup_cosine(e, 2, 6) for e in range(6)] == pytest.approx(expected, abs=1e-12)
    # VPT's base-prompt: 10 warm-up epochs of 100; epoch 55 is halfway through the cosine
    assert warmup_cosine(3, 10, 100) == pytest.approx(0.3)
    assert warmup_cosine(55, 10, 100) == pytest.approx(0.5)
    # without warm-up, from the full lr; the last epoch trains at (1 + cos(pi (E - 1) / E)) / 2, not 0
    assert lrs_per_epoch({"schedule": "cosine", "epochs": 4}, 4) == pytest.approx(
        [1.0, (1 + math.sqrt(0.5)) / 2, 0.5, (1 - math.sqrt(0.5)) / 2], abs=1e-12)


def test_step_schedule_is_the_default_and_unchanged():
    hp = {"epochs": 6, "lr_milestones": [2, 4], "lr_gamma": 0.1}
    assert lrs_per_epoch(hp, 6) == pytest.approx([1.0, 1.0, 0.1, 0.1, 0.01, 0.01])
    assert type(build_scheduler(torch.optim.SGD([nn.Parameter(torch.zeros(1))], lr=1.0), hp)) \
        is torch.optim.lr_scheduler.MultiStepLR


def test_cosine_schedule_resumes_from_its_state_dict():
    hp = {"schedule": "cosine", "warmup_epochs": 2, "epochs": 6}
    param = nn.Parameter(torch.zeros(1))
    optimizer = torch.optim.SGD([param], lr=0.2)
    scheduler = build_scheduler(optimizer, hp)
    for _ in range(3):
        optimizer.step()
        scheduler.step()
    state = {"optimizer": optimizer.state_dict(), "lr_scheduler": scheduler.state_dict()}
    resumed_optimizer = torch.optim.SGD([nn.Parameter(torch.zeros(1))], lr=0.2)
    resumed = build_scheduler(resumed_optimizer, hp)
    resumed_optimizer.load_state_dict(state["optimizer"])
    resumed.load_state_dict(state["lr_scheduler"])
    assert resumed_optimizer.param_groups[0]["lr"] == pytest.approx(0.2 * (1 + math.sqrt(0.5)) / 2)
    resumed.step()
    assert resumed_optimizer.param_groups[0]["lr"] == pytest.approx(0.1)


@pytest.fixture(scope="module")
def vit_mini():
    return vit("vit_mini", 6).eval()


def test_adamw_decays_every_parameter_but_the_biases(vit_mini):
    method = create_method("finetune", {"optimizer": "adamw", "lr": 0.003, "weight_decay": 0.01, "adam_eps": 1e-6})
    model = method.build(vit_mini, 5)
    optimizer = build_optimizer(method, model)
    assert isinstance(optimizer, torch.optim.AdamW) and optimizer.defaults["eps"] == 1e-6
    decayed, biases = optimizer.param_groups
    assert (decayed["name"], decayed["weight_decay"], biases["name"], biases["weight_decay"]) == \
        ("all", 0.01, "all biases", 0.0)
    names = {id(p): n for n, p in model.named_parameters()}
    assert all("bias" in names[id(p)] for p in biases["params"])
    assert not any("bias" in names[id(p)] for p in decayed["params"])
    assert "norm1.weight" in {names[id(p)].split("blocks.0.")[-1] for p in decayed["params"]}  # as VPT runs it
    assert len(decayed["params"]) + len(biases["params"]) == sum(1 for p in model.parameters() if p.requires_grad)


@pytest.mark.parametrize("optimizer, eps, described", [("adam", None, "adam"), ("adamw", 1e-6, "adamw eps 1e-06")])
def test_adam_family_eps_and_its_description(vit_mini, optimizer, eps, described):
    hp = {"optimizer": optimizer, "lr": 0.1, "weight_decay": 0.0, "epochs": 2, "lr_milestones": [],
          **({"adam_eps": eps} if eps else {})}
    method = create_method("bitfit", hp)
    built = build_optimizer(method, method.build(vit_mini, 5))
    assert built.defaults["eps"] == (eps or 1e-8)  # Adam without adam_eps: PyTorch's default as before
    assert run_protocol(hp, method, built, {})["optimizer"] == described


def test_vtab1k_and_fgvc_presets_record_vpts_protocol(vit_mini):
    for name, dataset in (("vtab1k", "vtab1k/dtd"), ("fgvc", "fgvc/cub")):
        preset = load_preset(name)
        recorded = {}
        for method in ("finetune", "vpt_deep", "feature_extractor"):
            hp = resolve_hparams(preset, method, dataset)
            instance = create_method(method, hp)
            recorded[method] = run_protocol(hp, instance, build_optimizer(instance, instance.build(vit_mini, 5)), {})
            assert "KMnP/vpt@4410440" in recorded[method]["reference_code"]
        assert recorded["finetune"]["optimizer"] == "adamw eps 1e-06"
        assert recorded["finetune"]["weight_decay"] == "all 0.01 / all biases 0"
        assert recorded["finetune"]["schedule"] == \
            "linear warm-up from 0 over 5 epochs then cosine to 0 at epoch 100 (per epoch)"
        assert recorded["vpt_deep"]["optimizer"] == "sgd momentum 0.9"
        assert (recorded["vpt_deep"]["lr"], recorded["vpt_deep"]["weight_decay"]) == ("0.1", "0.01")
        assert recorded["vpt_deep"]["schedule"] == \
            "linear warm-up from 0 over 10 epochs then cosine to 0 at epoch 100 (per epoch)"
        assert resolve_hparams(preset, "feature_extractor", dataset)["batch_size"] == 1024
        assert resolve_hparams(preset, "spottune", dataset)["batch_size"] == 384


def test_schedule_descriptions():
    assert schedule_description({"epochs": 3, "lr_milestones": [2]}) == "lr x0.1 at epoch 2 of 3"
    assert schedule_description({"epochs": 8, "schedule": "cosine"}) == "cosine to 0 over 8 epochs (per epoch)"


def test_preflight_rules_of_the_new_hyperparameters():
    assert "lr_milestones=[60] with schedule=cosine" in milestone_problem(
        {"schedule": "cosine", "lr_milestones": [60], "epochs": 100})
    assert "warmup_epochs=10 with epochs=3" in milestone_problem(
        {"schedule": "cosine", "lr_milestones": [], "epochs": 3, "warmup_epochs": 10})
    assert milestone_problem({"schedule": "cosine", "lr_milestones": [], "epochs": 3, "warmup_epochs": 3}) is None
    grid = make_grid("vtab1k", ["finetune"], ["vtab1k/dtd"], [0],
                     {"optimizer": "lamb", "schedule": "linear", "warmup_epochs": -1, "adam_eps": 0})
    assert sorted(hparam_problems(grid)) == [
        "adam_eps=0: must be a number > 0", "optimizer='lamb': must be one of sgd, adam, adamw",
        "schedule='linear': must be one of step, cosine", "warmup_epochs=-1: must be an integer >= 0"]


def test_declared_search_space_beside_the_defaults_and_its_checks():
    preset = load_preset("vtab1k")
    assert search_space(preset, "vpt_deep") == {
        "lr": [25.0, 12.5, 5.0, 2.5, 1.25, 0.5, 0.25, 0.125, 0.05, 0.025],  # VPT's base grid x 128 / 256
        "weight_decay": [0.01, 0.001, 0.0001, 0.0]}
    assert search_space(preset, "finetune") == {"lr": [0.0075, 0.0015, 0.00075, 0.00015], "weight_decay": [0.01]}
    assert search_space(load_preset("fgvc"), "lora")["lr"][-1] == 0.05  # tune_fgvc's prompt grid lacks 0.05 base
    assert search_space(load_preset("mini"), "finetune") == {}
    hp = resolve_hparams(preset, "finetune", "vtab1k/dtd")
    assert search_problems(hp, {"lr": [], "drop_rate": [0.1], "weight_decay": [0.01, -1]}) == [
        "search lr=[]: must be a non-empty list of values", "search drop_rate: not a hyperparameter of the runs",
        "search weight_decay=[0.01, -1]: every value must be a number >= 0"]


@pytest.mark.slow  # two tiny runs and a resume: ~40 s on one thread
def test_engine_runs_and_resumes_adamw_with_warmup_cosine(tmp_path, monkeypatch):
    from spottune.engine import run
    from spottune.records import RunSpec
    from tests.fail_at_epoch import ENV, InjectedFailure
    from tests.helpers import tiny_run

    base = tiny_run(epochs=2)
    spec = RunSpec(base.method, base.dataset, base.seed, base.preset,
                   {**base.hparams, "optimizer": "adamw", "lr": 1e-3, "lr_milestones": [], "schedule": "cosine",
                    "warmup_epochs": 1})
    straight = run(spec, tmp_path / "straight")
    assert [h["lr"] for h in straight["history"]] == [0.0, 1e-3]  # warm-up epoch at 0, then the cosine's start
    assert straight["protocol"]["schedule"] == \
        "linear warm-up from 0 over 1 epochs then cosine to 0 at epoch 2 (per epoch)"
    assert straight["protocol"]["optimizer"] == "adamw"
    monkeypatch.setenv(ENV, "2")
    with pytest.raises(InjectedFailure):
        run(spec, tmp_path / "resumed")
    monkeypatch.delenv(ENV)
    resumed = run(spec, tmp_path / "resumed")
    assert [h["train_loss"] for h in resumed["history"]] == [h["train_loss"] for h in straight["history"]]
    assert resumed["test_accuracy"] == straight["test_accuracy"]
