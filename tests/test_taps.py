"""TAPS (baselines/taps.py): the straight-through indicator on a toy layer, lambda = 0 as
fine-tuning of every gated layer, a large lambda switching every layer off, the gated layers of
each backbone family (and of any backbone built from the gated types), parameter accounting,
the recorded selection, hyperparameter checks before a launch, and kill / resume.

``tests/test_baselines.py`` runs the checks every registered method passes (a training step on
each family, the checkpoint round trip, #par)."""
from __future__ import annotations

import copy
import json

import pytest
import torch
import torch.nn.functional as F
import torchvision
from timm.layers import BatchNormAct2d, Conv2dSame
from torch import nn

from baselines.taps import TaskAdaptiveLayer, gated_layers
from spottune.backbones import Backbone, Head, count_parameters, from_torchvision, resnet26, vit
from spottune.engine import run
from spottune.planning.grid import make_grid
from spottune.methods import create_method
from spottune.training.loop import build_optimizer, train_step
from tests.fail_at_epoch import ENV, InjectedFailure
from tests.helpers import load_script, tiny_run
from tests.test_baselines import batch, fake_pretrained, tiny_bottleneck

NO_DECAY = {"lr": 0.05, "momentum": 0.9, "weight_decay": 0.0, "optimizer": "sgd"}
TARGET_CLASSES = 5


def taps(**hparams) -> object:
    return create_method("taps", {**NO_DECAY, **hparams})


@pytest.fixture(scope="module")
def backbones() -> dict[str, Backbone]:
    torch.manual_seed(0)
    return {"resnet26": fake_pretrained(resnet26(6, width=0.25, input_size=32)),
            "bottleneck": fake_pretrained(tiny_bottleneck(6)), "vit": vit("vit_mini", 6).eval()}


# ----------------------------------------------------------------------------- the indicator

@pytest.mark.parametrize("score, gate", [(0.15, 1.0), (0.05, 0.0)])
def test_indicator_forward_and_straight_through_backward_on_a_toy_layer(score, gate):
    """W_task = W + I(s > 0.1) dW forward; backward: dL/ds = sum(dL/dW_task * dW) whether the
    layer is on or off (straight-through), dL/ddW = I * dL/dW_task, W gets nothing."""
    torch.manual_seed(0)
    linear = nn.Linear(4, 3)
    layer = TaskAdaptiveLayer(copy.deepcopy(linear), score_init=0.15, threshold=0.1)
    with torch.no_grad():
        layer.score.fill_(score)
        layer.delta_weight.normal_()
        layer.delta_bias.normal_()
    x = torch.randn(5, 4)
    out = layer(x)
    weight = (linear.weight + gate * layer.delta_weight).detach().requires_grad_(True)
    bias = (linear.bias + gate * layer.delta_bias).detach().requires_grad_(True)
    expected = F.linear(x, weight, bias)
    torch.testing.assert_close(out, expected, rtol=0, atol=0)
    out.square().sum().backward()
    expected.square().sum().backward()
    through = (weight.grad * layer.delta_weight).sum() + (bias.grad * layer.delta_bias).sum()
    torch.testing.assert_close(layer.score.grad, through.detach())
    torch.testing.assert_close(layer.delta_weight.grad, gate * weight.grad)
    torch.testing.assert_close(layer.delta_bias.grad, gate * bias.grad)
    assert layer.layer.weight.grad is None and layer.is_task_specific() == bool(gate)


def test_indicator_gates_a_grouped_same_padding_convolution():
    """Any convolution subclass computes with its own forward (timm's same padding here)."""
    torch.manual_seed(0)
    conv = Conv2dSame(4, 4, 3, stride=2, groups=4, bias=False)
    layer = TaskAdaptiveLayer(copy.deepcopy(conv), score_init=0.15, threshold=0.1)
    with torch.no_grad():
        layer.delta_weight.normal_()
    x = torch.randn(2, 4, 7, 7)
    shifted = copy.deepcopy(conv)
    with torch.no_grad():
        shifted.weight.add_(layer.delta_weight)
    torch.testing.assert_close(layer(x), shifted(x))


# ----------------------------------------------------------------------------- lambda = 0, large lambda

@pytest.mark.parametrize("arch", ["resnet26", "bottleneck"])
def test_lambda_zero_is_finetuning_of_every_gated_layer(arch, backbones):
    """Deltas at zero: the same logits and, on every gated layer, the delta's gradient is
    fine-tuning's weight gradient; after an SGD step W + dW is fine-tuning's new weight."""
    backbone = backbones[arch]
    method, finetune = taps(lambda_sparsity=0.0), create_method("finetune", NO_DECAY)
    torch.manual_seed(0)
    model = method.build(backbone, TARGET_CLASSES).train()
    torch.manual_seed(0)
    reference = finetune.build(backbone, TARGET_CLASSES).train()
    assert method.regularizer(model, None) is None
    images, labels = batch(classes=TARGET_CLASSES)
    logits, expected = model(images), reference(images)
    torch.testing.assert_close(logits, expected, rtol=0, atol=0)
    F.cross_entropy(logits, labels).backward()
    F.cross_entropy(expected, labels).backward()
    tuned = dict(reference.named_modules())
    layers = gated_layers(model)
    assert len(layers) == sum(isinstance(m, nn.Conv2d) for m in reference.modules())
    for name, layer in layers:
        torch.testing.assert_close(layer.delta_weight.grad, tuned[name].weight.grad)

    model.zero_grad(), reference.zero_grad()
    optimizers = build_optimizer(method, model), build_optimizer(finetune, reference)
    for optimizer, net, m in zip(optimizers, (model, reference), (method, finetune)):
        train_step(net, m, optimizer, images, labels)
    for name, layer in layers:
        assert layer.is_task_specific()
        torch.testing.assert_close(layer.layer.weight + layer.delta_weight, tuned[name].weight)
    with torch.no_grad():
        torch.testing.assert_close(model.eval()(images), reference.eval()(images))


def test_a_large_lambda_switches_every_layer_off(backbones):
    backbone = backbones["resnet26"]
    method = taps(lambda_sparsity=100.0)
    model = method.build(backbone, TARGET_CLASSES).train()
    optimizer = build_optimizer(method, model)
    for seed in (1, 2):
        train_step(model, method, optimizer, *batch(seed=seed, classes=TARGET_CLASSES))
    selection = method.layer_selection(model)
    assert selection["task_specific"] == [0] * 25 and max(selection["scores"]) < 0.1
    # every convolution computes with its pretrained weight again, and costs nothing
    x = torch.randn(2, 8, 16, 16)
    layer = model.blocks[0].conv1
    assert not torch.equal(layer.delta_weight, torch.zeros_like(layer.delta_weight))
    torch.testing.assert_close(layer(x), layer.layer(x), rtol=0, atol=0)
    outside = count_parameters(model, trainable_only=True) - sum(
        count_parameters(layer, trainable_only=True) for _, layer in gated_layers(model))
    assert method.task_specific_parameters(model) == outside


# ----------------------------------------------------------------------------- gated layers, accounting

def test_gated_layers_of_each_family(backbones):
    """ResNet-50: the 53 convolutions of the paper's Figure 3; ResNet-26: stem + 24; a
    bottleneck ResNet with one block per stage: 1 + 4 x 3 + 4 shortcuts; vit_mini: the patch
    embedding and 4 linear maps per block. The classifier is never gated."""
    resnet50 = from_torchvision(torchvision.models.resnet50(), arch="resnet50")
    expected = {"resnet26": 25, "bottleneck": 17, "vit": 1 + 6 * 4}
    for arch, backbone in [*backbones.items(), ("resnet50", resnet50)]:
        model = taps().build(backbone, TARGET_CLASSES)
        names = [name for name, _ in gated_layers(model)]
        assert len(names) == expected.get(arch, 53), arch
        assert names[0].startswith("stem.") and all(not n.startswith("head.") for n in names)
        assert model.head.fc.weight.requires_grad
    vit_names = [name for name, _ in gated_layers(taps().build(backbones["vit"], TARGET_CLASSES))]
    assert vit_names[:5] == ["stem.patch_embed.proj", "blocks.0.attn.qkv", "blocks.0.attn.proj",
                             "blocks.0.mlp.fc1", "blocks.0.mlp.fc2"]


def test_any_backbone_built_from_the_gated_types():
    """Depthwise and same-padding convolutions, timm's BatchNormAct2d: gated and trained as
    on the suite's own backbones (what an EfficientNet is made of)."""
    torch.manual_seed(0)
    stem = nn.Sequential(nn.Conv2d(3, 8, 3, padding=1, bias=False), BatchNormAct2d(8))
    block = nn.Sequential(Conv2dSame(8, 8, 3, groups=8, bias=False), BatchNormAct2d(8),
                          nn.Conv2d(8, 8, 1, bias=False), nn.BatchNorm2d(8))
    backbone = Backbone(stem, [block], Head(nn.Identity(), nn.Linear(8, 6)), arch="tiny_depthwise", input_size=32)
    backbone = fake_pretrained(backbone)
    method = taps()
    model = method.build(backbone, TARGET_CLASSES)
    assert len(gated_layers(model)) == 3
    images, labels = batch(4, classes=TARGET_CLASSES)
    model.head.fc.load_state_dict({"weight": backbone.head.fc.weight[:TARGET_CLASSES],
                                   "bias": backbone.head.fc.bias[:TARGET_CLASSES]})
    with torch.no_grad():
        torch.testing.assert_close(model.eval()(images), backbone.eval()(images)[:, :TARGET_CLASSES])
    optimizer = build_optimizer(method, model.train())
    train_step(model, method, optimizer, images, labels)
    assert all(layer.delta_weight.abs().sum() > 0 for _, layer in gated_layers(model))


@pytest.mark.parametrize("task_norm", [True, False])
def test_accounting_counts_the_active_layers_and_trainable_counts_what_a_run_stores(task_norm, backbones):
    backbone = backbones["resnet26"]
    method = taps(task_norm=task_norm)
    model = method.build(backbone, TARGET_CLASSES)
    layers = [layer for _, layer in gated_layers(model)]
    with torch.no_grad():
        for layer in layers[::2]:
            layer.score.fill_(0.0)  # switched off: shared with the pretrained network
    norms = sum(count_parameters(m) for m in backbone.modules() if isinstance(m, nn.BatchNorm2d))
    classifier = count_parameters(model.head.fc)
    active = sum(layer.delta_weight.numel() for layer in layers[1::2])
    everything = sum(layer.delta_weight.numel() + 1 for layer in layers)  # deltas and scores
    assert method.task_specific_parameters(model) == active + classifier + (norms if task_norm else 0)
    assert count_parameters(model, trainable_only=True) == everything + classifier + (norms if task_norm else 0)
    bns = [m for m in model.modules() if isinstance(m, nn.BatchNorm2d)]
    assert all(m.weight.requires_grad == task_norm for m in bns)
    model.train()
    assert all(m.training == task_norm for m in bns)  # shared BatchNorm keeps its statistics
    selection = method.layer_selection(model)
    assert selection["task_specific"] == [i % 2 for i in range(25)]
    assert selection["block"][:3] == [None, 0, 0] and selection["layers"][:2] == ["stem.0", "blocks.0.conv1"]
    assert selection["parameters"] == [layer.delta_weight.numel() for layer in layers]


def test_scores_train_without_weight_decay(backbones):
    method = create_method("taps", {**NO_DECAY, "weight_decay": 5e-4})
    groups = {g["name"]: g for g in method.param_groups(method.build(backbones["resnet26"], TARGET_CLASSES))}
    assert groups["scores"]["weight_decay"] == 0.0 and len(groups["scores"]["params"]) == 25
    assert groups["network"]["weight_decay"] == 5e-4


# ----------------------------------------------------------------------------- hyperparameters, presets

@pytest.mark.parametrize("settings, message", [
    ({"lambda_sparsity": -1}, "lambda_sparsity=-1: must be a number >= 0"),
    ({"lambda_sparsity": float("inf")}, "lambda_sparsity=inf: must be a number >= 0"),
    ({"threshold": "high"}, "threshold='high': must be a finite number"),
    ({"score_init": 0.05}, "score_init=0.05 with threshold=0.1: score_init must be above threshold"),
    ({"task_norm": "yes"}, "task_norm='yes': must be true or false"),
])
def test_bad_hyperparameters_are_refused_when_created(settings, message):
    with pytest.raises(ValueError, match=message.replace("(", r"\(")):
        taps(**settings)


def test_bad_hyperparameters_stop_run_all_with_one_line(tmp_path, capsys):
    run_all = load_script("benchmarks/run_all.py")
    output = tmp_path / "out"
    assert run_all.main(["--methods", "finetune,taps", "--datasets", "digits,glyph_fonts", "--output",
                         str(output), "--set", "lambda_sparsity=-1"]) == 2
    lines = capsys.readouterr().err.strip().splitlines()
    assert lines == ["error: method taps: lambda_sparsity=-1.0: must be a number >= 0 (the weight of the sparsity "
                     "penalty; 0 turns it off)"]
    assert not output.exists()


def test_presets_run_taps_on_every_family():
    for preset, datasets in (("decathlon", ["decathlon/dtd"]), ("standard", ["cubs"]), ("mini-long", ["digits"]),
                             ("vtab1k", ["vtab1k/dtd"]), ("fgvc", ["fgvc/cub"]), ("mini-vit", ["digits"])):
        assert "taps" in make_grid(preset, None, datasets).methods, preset
    assert "taps" not in make_grid("mini").methods  # the default's 10-minute budget is full
    vtab = make_grid("vtab1k", ["finetune", "taps"], ["vtab1k/dtd"]).runs()
    full, own = (spec.hparams for spec in vtab)
    recipe = ("optimizer", "lr", "batch_size", "warmup_epochs")
    assert {k: own[k] for k in recipe} == {k: full[k] for k in recipe}  # VPT's full-network recipe


# ----------------------------------------------------------------------------- engine records, kill / resume

@pytest.mark.slow
def test_kill_and_resume_give_the_uninterrupted_run_and_its_selection(tmp_path, monkeypatch):
    config = tiny_run("taps")
    reference = run(config, tmp_path / "straight")
    monkeypatch.setenv(ENV, "2")
    with pytest.raises(InjectedFailure):
        run(config, tmp_path / "resumed")
    monkeypatch.delenv(ENV)
    resumed = run(config, tmp_path / "resumed")
    assert resumed["history"][1].get("resumed") is True
    assert [h["train_loss"] for h in resumed["history"]] == [h["train_loss"] for h in reference["history"]]
    assert resumed["test_accuracy"] == reference["test_accuracy"]
    assert resumed["layer_selection"] == reference["layer_selection"]
    stored = json.loads((tmp_path / "straight" / "metrics.json").read_text())
    selection = stored["layer_selection"]
    assert len(selection["layers"]) == 25 and set(selection["task_specific"]) <= {0, 1}
    norms = sum(count_parameters(m) for m in resnet26(10, width=0.25).modules() if isinstance(m, nn.BatchNorm2d))
    active = sum(p for p, on in zip(selection["parameters"], selection["task_specific"]) if on)
    assert stored["params"]["task_specific"] == stored["params"]["classifier"] + norms + active
    assert stored["protocol"]["lambda_sparsity"] == 0.1 and stored["protocol"]["task_norm"] is True
    assert stored["protocol"]["recipe"].startswith("the preset's optimiser and schedule")
