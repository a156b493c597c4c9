"""The parameter-efficient baselines on a ViT: exact parameter accounting from the
architecture's dimensions, the capacity on ViT-B/16 against the published rows, the functions
at initialisation, where each adapter sits, the official initialisations, prompt tokens, peft's
LoRA on q and v, stochastic depth.

Tiny settings: ``vit_mini`` (dim 96, depth 6, MLP 384, 8-px patches at 32 px), 5 classes.
"""
from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from baselines._bottleneck import Bottleneck, QuickGELU
from baselines._common import frozen_for_task
from baselines.lora import SplitQKV
from spottune.backbones import resnet26, vit
from spottune.backbones.base import init_classifier_
from spottune.backbones.vit import set_drop_path_
from spottune.methods import create_method
from spottune.report.reference import load_published
from tests.helpers import HP

DIM, DEPTH, MLP, CLASSES = 96, 6, 384, 5
CLASSIFIER = CLASSES * (DIM + 1)
BIASES_PER_BLOCK = 3 * DIM + DIM + MLP + DIM + 2 * DIM  # qkv, proj, fc1, fc2, two LayerNorm shifts

EXPECTED = {
    "feature_extractor": CLASSIFIER,
    "finetune": None,  # every parameter: checked against the backbone below
    "bitfit": DEPTH * BIASES_PER_BLOCK + DIM + DIM + CLASSIFIER,  # + patch embedding, final LayerNorm
    "vpt_shallow": 10 * DIM + CLASSIFIER,
    "vpt_deep": DEPTH * 10 * DIM + CLASSIFIER,
    "adapter": DEPTH * (2 * DIM * 8 + 8 + DIM) + CLASSIFIER,  # one adapter after the MLP, LayerNorms frozen
    "adapter_houlsby": DEPTH * 2 * (2 * DIM * 8 + 8 + DIM) + (DEPTH * 2 + 1) * 2 * DIM + CLASSIFIER,
    "adaptformer": DEPTH * (2 * DIM * 8 + 8 + DIM + 2 * DIM) + CLASSIFIER,  # bottleneck 8 and its LayerNorm
    "adaptformer_official": DEPTH * (2 * DIM * 64 + 64 + DIM) + CLASSIFIER,
    "ssf": 2 * (DEPTH * BIASES_PER_BLOCK + DIM + DIM) + CLASSIFIER,  # a (gamma, beta) per bias-sized output
    "lora": DEPTH * 2 * 8 * (DIM + DIM) + CLASSIFIER,  # rank 8 on q and on v
}


@pytest.fixture(scope="module")
def backbone():
    torch.manual_seed(0)
    return vit("vit_mini", 6).eval()


def images(n: int = 3) -> torch.Tensor:
    return torch.randn(n, 3, 32, 32, generator=torch.Generator().manual_seed(0))


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_exact_parameter_accounting(name, backbone):
    method = create_method(name, HP)
    model = method.build(backbone, CLASSES)
    expected = EXPECTED[name] or sum(p.numel() for p in backbone.parameters()) - 6 * (DIM + 1) + CLASSIFIER
    assert method.task_specific_parameters(model) == expected
    assert sum(p.numel() for p in model.parameters() if p.requires_grad) == expected


@pytest.mark.parametrize("name", ["adaptformer", "adaptformer_official", "lora"])
def test_zero_initialised_methods_compute_the_pretrained_features(name, backbone):
    torch.manual_seed(1)
    model = create_method(name, HP).build(backbone, CLASSES).eval()
    reference = frozen_for_task(backbone, CLASSES).eval()
    x = images()
    with torch.no_grad():
        ours = model.head.features(model.forward_features(x))
        theirs = reference.head.features(reference.forward_features(x))
    assert torch.equal(ours, theirs)


@pytest.mark.parametrize("name", ["adapter", "adapter_houlsby"])
def test_series_adapters_start_near_the_identity(name, backbone):
    model = create_method(name, HP).build(backbone, CLASSES).eval()
    x = images()
    with torch.no_grad():
        ours, theirs = model.forward_features(x), backbone.forward_features(x)
    assert 0 < (ours - theirs).abs().max() < 0.1 * theirs.abs().max()


def test_houlsby_init_is_adapter_berts(backbone):
    """adapter-bert ``feedforward_adapter``: weights N(0, 1e-3) truncated at 2 std, biases zero."""
    torch.manual_seed(0)
    model = create_method("adapter_houlsby", HP).build(backbone, CLASSES)
    bottlenecks = [m for m in model.modules() if isinstance(m, Bottleneck)]
    assert len(bottlenecks) == 2 * DEPTH
    weights = torch.cat([torch.cat([b.down.weight.flatten(), b.up.weight.flatten()]) for b in bottlenecks]).detach()
    assert weights.abs().max() <= 2e-3 and 0.8e-3 < float(weights.std()) < 1e-3  # truncation shrinks the std a little
    assert all(not b.down.bias.any() and not b.up.bias.any() for b in bottlenecks)


def test_adapter_is_noahs_one_adapter_after_the_mlp_with_frozen_layernorms(backbone):
    torch.manual_seed(0)
    model = create_method("adapter", HP).build(backbone, CLASSES).eval()
    assert not any(p.requires_grad for m in model.modules() if isinstance(m, nn.LayerNorm) for p in m.parameters())
    block, reference = model.blocks[0], backbone.blocks[0]
    adapter = block.drop_path2.adapter
    assert isinstance(adapter.act, QuickGELU) and adapter.down.out_features == 8
    bias_std, largest = float(adapter.down.bias.detach().std()), float(adapter.up.weight.detach().abs().max())
    assert bias_std < 1e-5 and largest > 0.05  # NOAH's init: biases of std 1e-6, Xavier weights
    x = torch.randn(2, 17, DIM, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():  # y = x' + h + B(h), h = MLP(LN_2(x')): the adapter after the MLP, before the residual
        mid = x + reference.attn(reference.norm1(x))
        h = reference.mlp(reference.norm2(mid))
        assert torch.allclose(block(x), mid + h + adapter(h), atol=1e-6)


def test_adaptformers_adapter_is_added_outside_the_blocks_stochastic_depth(backbone):
    torch.manual_seed(0)
    model = create_method("adaptformer", HP).build(backbone, CLASSES).eval()  # no adapter dropout
    block = model.blocks[0]
    nn.init.normal_(block.adapter.bottleneck.up.weight)  # a non-zero adapter
    block.block.drop_path2 = DropsAll()  # the MLP branch dropped for every image
    x = torch.randn(2, 17, DIM, generator=torch.Generator().manual_seed(0))
    inner = block.block
    with torch.no_grad():
        mid = x + inner.attn(inner.norm1(x))
        assert torch.allclose(block(x), mid + block.adapter(mid), atol=1e-6)
        assert block.adapter.bottleneck.scale == 1.0 and isinstance(block.adapter.norm, nn.LayerNorm)


class DropsAll(nn.Module):
    """A drop path that drops every sample (returns zeros)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.zeros_like(x)


@pytest.mark.parametrize("name, prompts_at_every_block", [("vpt_shallow", False), ("vpt_deep", True)])
def test_prompts_follow_the_class_token(name, prompts_at_every_block, backbone):
    model = create_method(name, {**HP, "num_prompts": 4}).build(backbone, CLASSES).eval()
    seen = []
    for block in model.blocks:  # the tokens each pretrained block sees (inside VPT-deep's wrapper)
        getattr(block, "block", block).register_forward_hook(lambda module, inputs, output: seen.append(inputs[0]))
    with torch.no_grad():
        model(images(2))
    assert all(tokens.shape == (2, 1 + 4 + 16, DIM) for tokens in seen)
    stem_prompts = model.stem.prompts
    assert torch.equal(seen[0][:, 1:5], stem_prompts.expand(2, -1, -1))  # eval: no prompt dropout
    later = [torch.equal(tokens[:, 1:5], block.prompts.expand(2, -1, -1)) if hasattr(block, "prompts") else False
             for tokens, block in zip(seen[1:], model.blocks[1:])]
    assert all(later) == prompts_at_every_block and any(later) == prompts_at_every_block


def test_vpt_details_as_the_official_code(backbone):
    shallow, deep = (create_method(name, HP) for name in ("vpt_shallow", "vpt_deep"))
    assert (shallow.hp["prompt_dropout"], deep.hp["prompt_dropout"]) == (0.0, 0.1)
    torch.manual_seed(0)
    model = shallow.build(vit("vit_mini", 6), 100)
    fc = model.head.fc  # VPT's head: kaiming_normal_(fan_out), bias -log(99)
    assert fc.bias.detach().tolist() == pytest.approx([-math.log(99)] * 100)
    assert float(fc.weight.detach().std()) == pytest.approx(math.sqrt(2 / 100), rel=0.05)


def test_head_inits():
    torch.manual_seed(0)
    fc = init_classifier_(nn.Linear(768, 200), "timm")  # timm's trunc_normal_(std=.02), truncated at +-2
    assert not fc.bias.any() and float(fc.weight.detach().std()) == pytest.approx(0.02, rel=0.05)
    before = nn.Linear(768, 10)
    assert torch.equal(init_classifier_(before, "pytorch").weight, before.weight)


def test_lora_goes_through_peft_on_q_and_v_only(backbone):
    from peft.tuners.lora import LoraLayer

    model = create_method("lora", HP).build(backbone, CLASSES)
    adapted = [name for name, module in model.named_modules() if isinstance(module, LoraLayer)]
    assert adapted == [f"blocks.{t}.attn.qkv.{part}" for t in range(DEPTH) for part in ("q", "v")]
    trainable = [name for name, p in model.named_parameters() if p.requires_grad]
    assert all(name.startswith("head.fc.") or ".attn.qkv.q.lora_" in name or ".attn.qkv.v.lora_" in name
               for name in trainable)
    # a non-zero update changes the queries and values, never the keys
    qkv, fused = model.blocks[0].attn.qkv, backbone.blocks[0].attn.qkv
    for part in (qkv.q, qkv.v):
        nn.init.ones_(part.lora_B["default"].weight)
    x = torch.randn(2, 17, DIM, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        ours, theirs = qkv(x).split(DIM, dim=-1), fused(x).split(DIM, dim=-1)
    assert torch.allclose(ours[1], theirs[1], atol=1e-6)
    assert not torch.allclose(ours[0], theirs[0], atol=1e-3) and not torch.allclose(ours[2], theirs[2], atol=1e-3)


def test_split_qkv_computes_the_fused_projection(backbone):
    fused = backbone.blocks[0].attn.qkv
    x = torch.randn(2, 17, DIM, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        assert torch.allclose(SplitQKV(fused)(x), fused(x), atol=1e-6)


def test_lora_on_the_fused_qkv_stays_available(backbone):
    model = create_method("lora", {**HP, "target_modules": ["qkv"]}).build(backbone, CLASSES)
    assert isinstance(model.blocks[0].attn.qkv.base_layer, nn.Linear)  # peft wraps the fused map, unsplit


def test_drop_path_is_timms_stochastic_depth_rule(backbone):
    from timm.layers import DropPath

    model = set_drop_path_(backbone.for_task(CLASSES), 0.1)
    rates = [block.drop_path1.drop_prob if isinstance(block.drop_path1, DropPath) else 0.0 for block in model.blocks]
    assert rates == pytest.approx([0.1 * t / (DEPTH - 1) for t in range(DEPTH)])
    assert all(type(b.drop_path1) is type(b.drop_path2) for b in model.blocks)
    with pytest.raises(ValueError, match="drop_path=0.1: stochastic depth applies to ViT blocks"):
        set_drop_path_(resnet26(5, width=0.25, input_size=32), 0.1)


@pytest.fixture(scope="module")
def vit_b16():
    torch.manual_seed(0)
    return vit("vit_base_patch16_224", 2)


@pytest.mark.parametrize("name", ["adapter", "adaptformer", "lora", "ssf", "bitfit"])
def test_capacity_on_vit_b16_matches_the_published_vtab_row(name, vit_b16):
    """The trainable parameters without the head within 10 % of V-PETL Bench's Params column."""
    published = load_published("vtab1k")
    row = published[(published["method"] == name) & (published["metric"] == "params_m")]
    method = create_method(name, HP)
    model = method.build(vit_b16, 10)
    without_head = (method.task_specific_parameters(model) - 10 * (768 + 1)) / 1e6
    assert without_head == pytest.approx(float(row["value"].iloc[0]), rel=0.10)
