"""The optimisers and lr schedules of the engine (spottune.training.loop): AdamW's bias groups, the
parameters each source exempts from weight decay, the warm-up + cosine schedule per epoch against
hand-computed values, timm's cosine against timm itself, label smoothing, the step schedule
unchanged, the recipe each method of the VTAB-1k / FGVC presets records, and the preflight rules
of the new hyperparameters and of a preset's declared search space."""
from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from spottune.backbones.vit import vit
from spottune.planning.grid import load_preset, make_grid, resolve_hparams, search_space
from spottune.methods import create_method
from spottune.planning.preflight import RULES, hparam_problems, milestone_problem, search_problems
from spottune.training.protocol import run_protocol, schedule_description
from spottune.training.loop import build_optimizer, build_scheduler, split_decay, timm_cosine, train_step, warmup_cosine
from baselines.ssf import ScaleShift
from tests.helpers import HP


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


def recorded(preset: dict, method: str, dataset: str, backbone) -> dict:
    """The protocol a run of ``method`` on ``dataset`` records under ``preset`` (``backbone`` stands in)."""
    hp = resolve_hparams(preset, method, dataset)
    instance = create_method(method, hp)
    return run_protocol(hp, instance, build_optimizer(instance, instance.build(backbone, 5)), {})


def test_vtab1k_and_fgvc_presets_record_each_methods_recipe(vit_mini):
    for name, dataset in (("vtab1k", "vtab1k/dtd"), ("fgvc", "fgvc/cub")):
        preset = load_preset(name)
        finetune, vpt_deep, linear, bitfit = (recorded(preset, m, dataset, vit_mini)
                                              for m in ("finetune", "vpt_deep", "feature_extractor", "bitfit"))
        assert finetune["recipe"] == bitfit["recipe"] == "VPT finetune (KMnP/vpt configs/base-finetune.yaml)"
        assert finetune["optimizer"] == "adamw eps 1e-06" and finetune["batch_size"] == "384"
        assert finetune["weight_decay"] == "all 0.01 / all biases 0"
        assert finetune["schedule"] == "linear warm-up from 0 over 5 epochs then cosine to 0 at epoch 100 (per epoch)"
        assert bitfit["head_init"] == vpt_deep["head_init"] == "vpt"
        assert vpt_deep["recipe"] == "VPT prompt (KMnP/vpt configs/base-prompt.yaml)"
        assert vpt_deep["optimizer"] == "sgd momentum 0.9" and vpt_deep["batch_size"] == "128"
        # VPT's SGD exempts the classifier's bias only (src/solver/optimizer.py lines 60-62)
        assert (vpt_deep["lr"], vpt_deep["weight_decay"]) == ("0.1", "all 0.01 / all classifier bias 0")
        assert vpt_deep["schedule"] == "linear warm-up from 0 over 10 epochs then cosine to 0 at epoch 100 (per epoch)"
        assert linear["recipe"] == "VPT linear (KMnP/vpt configs/base-linear.yaml)" and linear["batch_size"] == "1024"
        assert resolve_hparams(preset, "spottune", dataset)["batch_size"] == 384
    vtab = load_preset("vtab1k")
    adapter = recorded(vtab, "adapter", "vtab1k/dtd", vit_mini)
    assert adapter["recipe"].startswith("NOAH (ZhangYuanhan-AI/NOAH configs/Adapter/VTAB")
    assert (adapter["optimizer"], adapter["lr"], adapter["batch_size"], adapter["drop_path"]) == \
        ("adamw", "0.001", "64", "0.1")
    assert adapter["weight_decay"] == "all 0.0001 / all 1-D 0"
    assert adapter["schedule"] == ("timm cosine stepped one epoch late: warm-up from 1e-06 over 10 epochs then cosine "
                                   "to 1e-05 at epoch 100 of 100")
    # SSF: its scripts' per-task lr, weight decay and drop-path, 100 + 10 cooldown epochs
    cifar, eurosat = (resolve_hparams(vtab, "ssf", f"vtab1k/{task}") for task in ("cifar", "eurosat"))
    assert (cifar["lr"], cifar["weight_decay"], cifar["drop_path"]) == (0.005, 5e-5, 0.0)
    assert (eurosat["lr"], eurosat["weight_decay"], eurosat["drop_path"]) == (0.003, 0.05, 0.2)
    ssf = recorded(vtab, "ssf", "vtab1k/cifar", vit_mini)
    assert ssf["schedule"] == "timm cosine: warm-up from 1e-07 over 10 epochs then cosine to 1e-08 at epoch 100 of 110"
    assert (ssf["weight_decay"], ssf["head_init"], ssf["batch_size"]) == ("all 5e-05 / all 1-D 0", "timm", "64")


@pytest.mark.parametrize("preset, method", [("vtab1k", "ssf"), ("vtab1k", "adapter_houlsby"), ("vtab1k", "adaptformer"),
                                            ("fgvc", "ssf")])
def test_scales_shifts_and_layernorms_get_no_weight_decay_under_the_recipe(vit_mini, preset, method):
    hp = resolve_hparams(load_preset(preset), method, f"{preset}/{'cifar' if preset == 'vtab1k' else 'cub'}")
    instance = create_method(method, hp)
    model = instance.build(vit_mini, 5)
    optimizer = build_optimizer(instance, model)
    decay = {id(p): group["weight_decay"] for group in optimizer.param_groups for p in group["params"]}
    named = dict(model.named_parameters())
    one_d = [n for n, p in named.items() if p.requires_grad and p.ndim == 1]
    assert one_d and all(decay[id(named[n])] == 0.0 for n in one_d)
    if method == "ssf":  # every scale and shift
        assert sum(n.endswith((".gamma", ".beta")) for n in one_d) == 2 * sum(isinstance(m, ScaleShift)
                                                                              for m in model.modules())
    else:  # the adapters' LayerNorms train and do not decay
        norms = [m.weight for m in model.modules() if isinstance(m, nn.LayerNorm) and m.weight.requires_grad]
        assert norms and all(decay[id(w)] == 0.0 for w in norms)
    assert decay[id(model.head.fc.weight)] == hp["weight_decay"] > 0


def test_an_exempt_scale_keeps_its_value_while_the_classifier_decays(vit_mini):
    hp = resolve_hparams(load_preset("vtab1k"), "ssf", "vtab1k/clevr_dist")  # weight decay 0.05 at lr 0.05
    instance = create_method("ssf", hp)
    model = instance.build(vit_mini, 5)
    optimizer = build_optimizer(instance, model)
    gamma = next(p for n, p in model.named_parameters() if n.endswith(".gamma"))
    before_gamma, before_fc = gamma.detach().clone(), model.head.fc.weight.detach().clone()
    for param in model.parameters():
        param.grad = torch.zeros_like(param) if param.requires_grad else None
    for _ in range(10):  # zero gradients: only the decoupled decay moves a parameter
        optimizer.step()
    assert torch.equal(gamma, before_gamma)
    assert torch.allclose(model.head.fc.weight, before_fc * (1 - 0.05 * 0.05) ** 10)


@pytest.mark.parametrize("exemption, exempt", [
    ("none", set()), ("classifier_bias", {"head.fc.bias"}),
    ("biases", {"head.fc.bias", "stem.patch_embed.proj.bias"}),
    ("1d", {"head.fc.bias", "stem.patch_embed.proj.bias", "stem.cls_token", "stem.pos_embed", "head.pre.weight"})])
def test_weight_decay_exemptions_select_what_their_sources_exempt(vit_mini, exemption, exempt):
    model = create_method("finetune", HP).build(vit_mini, 5)
    groups = split_decay([{"name": "all", "params": list(model.parameters()), "lr": 0.1, "weight_decay": 0.01}],
                         model, exemption)
    free = {n for n, p in model.named_parameters() if any(g["weight_decay"] == 0 and any(p is q for q in g["params"])
                                                          for g in groups)}
    assert exempt <= free and (exemption != "none" or not free)
    assert all(not n.endswith(".weight") or n.startswith("head.pre") or "norm" in n for n in free)
    assert sum(len(g["params"]) for g in groups) == len(list(model.parameters()))
    assert len(groups) == (1 if exemption == "none" else 2)


@pytest.mark.parametrize("offset, cooldown", [(0, 0), (1, 10)])
def test_timm_cosine_is_timms_scheduler_stepped_as_the_sources_step_it(offset, cooldown):
    from timm.scheduler.cosine_lr import CosineLRScheduler

    epochs = 100 + cooldown
    hp = {"schedule": "timm_cosine", "epochs": epochs, "warmup_epochs": 10, "warmup_lr": 1e-6, "min_lr": 1e-5,
          "cooldown_epochs": cooldown, "timm_step_offset": offset}
    ours = torch.optim.AdamW([{"params": [nn.Parameter(torch.zeros(1))], "lr": 1e-3},
                              {"params": [nn.Parameter(torch.zeros(1))], "lr": 5e-3}])
    theirs = torch.optim.AdamW([{"params": [nn.Parameter(torch.zeros(1))], "lr": 1e-3},
                                {"params": [nn.Parameter(torch.zeros(1))], "lr": 5e-3}])
    scheduler = build_scheduler(ours, hp)
    reference = CosineLRScheduler(theirs, t_initial=100, warmup_t=10, lr_min=1e-5, warmup_lr_init=1e-6)
    for epoch in range(epochs):
        assert [g["lr"] for g in ours.param_groups] == pytest.approx([g["lr"] for g in theirs.param_groups], rel=1e-12)
        ours.step(), theirs.step()
        scheduler.step()
        reference.step(epoch + offset)  # NOAH / V-PETL: step(epoch); SSF's train.py: step(epoch + 1)
    assert timm_cosine(1, 1e-3, warmup=10, cycle=100, warmup_lr=1e-6, min_lr=1e-5, step_offset=0) == 1e-6


def test_label_smoothing_is_timms_label_smoothing_cross_entropy(vit_mini):
    from timm.loss import LabelSmoothingCrossEntropy

    method = create_method("bitfit", {**HP, "label_smoothing": 0.1})
    model = method.build(vit_mini, 5)
    images, labels = torch.randn(4, 3, 32, 32, generator=torch.Generator().manual_seed(0)), torch.tensor([0, 1, 2, 3])
    model.eval()
    with torch.no_grad():
        expected = LabelSmoothingCrossEntropy(smoothing=0.1)(model(images), labels)
    loss, _ = train_step(model.eval(), method, build_optimizer(method, model), images, labels)
    assert float(loss) == pytest.approx(float(expected), rel=1e-6)


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
        "adam_eps=0.0: must be a number > 0", "optimizer='lamb': must be one of sgd, adam, adamw",
        "schedule='linear': must be one of step, cosine, timm_cosine", "warmup_epochs=-1: must be an integer >= 0"]
    grid = make_grid("vtab1k", ["ssf"], ["vtab1k/dtd"], [0],
                     {"weight_decay_exempt": "norms", "label_smoothing": 1.0, "drop_path": -0.1, "head_init": "xavier",
                      "timm_step_offset": 2, "cooldown_epochs": 101})
    assert sorted(hparam_problems(grid)) == [
        "cooldown_epochs=101 with warmup_epochs=10 and epochs=110: the cosine must fit between them; with fewer epochs "
        "set both, e.g. --set warmup_epochs=0 cooldown_epochs=0",
        "drop_path=-0.1: must be a number in [0, 1)", "head_init='xavier': must be one of pytorch, vpt, timm",
        "label_smoothing=1.0: must be a number in [0, 1)", "timm_step_offset=2: must be one of 0, 1",
        "weight_decay_exempt='norms': must be one of none, classifier_bias, biases, 1d"]


def test_declared_search_space_beside_the_defaults_and_its_checks():
    preset = load_preset("vtab1k")
    assert search_space(preset, "vpt_deep") == {
        "lr": [25.0, 12.5, 5.0, 2.5, 1.25, 0.5, 0.25, 0.125, 0.05, 0.025],  # VPT's base grid x 128 / 256
        "weight_decay": [0.01, 0.001, 0.0001, 0.0], "num_prompts": [1, 5, 10, 50, 100, 200]}
    assert search_space(preset, "finetune") == search_space(preset, "bitfit") == {
        "lr": [0.0075, 0.0015, 0.00075, 0.00015], "weight_decay": [0.01]}
    assert search_space(preset, "adapter") == search_space(preset, "ssf") == {}  # NOAH's and SSF's values: no search
    assert search_space(load_preset("fgvc"), "vpt_shallow")["lr"][-1] == 0.05  # tune_fgvc's prompt grid lacks 0.05 base
    assert search_space(load_preset("mini"), "finetune") == {}
    hp = resolve_hparams(preset, "finetune", "vtab1k/dtd")
    assert search_problems(hp, {"lr": [], "drop_rate": [0.1], "weight_decay": [0.01, -1]}, RULES) == [
        "search lr=[]: must be a non-empty list of values", "search drop_rate: not a hyperparameter of the runs",
        "search weight_decay=[0.01, -1]: every value must be a number >= 0"]


@pytest.mark.slow  # two tiny runs and a resume: ~40 s on one thread
def test_engine_runs_and_resumes_adamw_with_warmup_cosine(tmp_path, monkeypatch):
    from spottune.engine import run
    from spottune.storage.records import RunSpec
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
