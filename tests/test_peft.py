"""The parameter-efficient baselines on a ViT: exact parameter accounting from the
architecture's dimensions, the functions at initialisation, prompt tokens, peft's LoRA.

Tiny settings: ``vit_mini`` (dim 96, depth 6, MLP 384, 8-px patches at 32 px), 5 classes.
"""
from __future__ import annotations

import pytest
import torch

from baselines._common import frozen_for_task
from spottune.backbones import vit
from spottune.methods import create_method
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
    "adapter": DEPTH * 2 * (2 * DIM * 8 + 8 + DIM) + (DEPTH * 2 + 1) * 2 * DIM + CLASSIFIER,
    "adaptformer": DEPTH * (2 * DIM * 64 + 64 + DIM) + CLASSIFIER,
    "ssf": 2 * (DEPTH * BIASES_PER_BLOCK + DIM + DIM) + CLASSIFIER,  # a (gamma, beta) per bias-sized output
    "lora": DEPTH * 8 * (DIM + 3 * DIM) + CLASSIFIER,
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


@pytest.mark.parametrize("name", ["adaptformer", "lora"])
def test_zero_initialised_methods_compute_the_pretrained_features(name, backbone):
    torch.manual_seed(1)
    model = create_method(name, HP).build(backbone, CLASSES).eval()
    reference = frozen_for_task(backbone, CLASSES).eval()
    x = images()
    with torch.no_grad():
        ours = model.head.features(model.forward_features(x))
        theirs = reference.head.features(reference.forward_features(x))
    assert torch.equal(ours, theirs)


def test_houlsby_adapters_start_near_the_identity(backbone):
    model = create_method("adapter", HP).build(backbone, CLASSES).eval()
    x = images()
    with torch.no_grad():
        ours, theirs = model.forward_features(x), backbone.forward_features(x)
    assert 0 < (ours - theirs).abs().max() < 0.1 * theirs.abs().max()


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


def test_lora_goes_through_peft(backbone):
    from peft.tuners.lora import LoraLayer

    model = create_method("lora", HP).build(backbone, CLASSES)
    adapted = [name for name, module in model.named_modules() if isinstance(module, LoraLayer)]
    assert adapted == [f"blocks.{t}.attn.qkv" for t in range(DEPTH)]
