"""LoRA: low-rank adaptation (Hu, Shen, Wallis, Allen-Zhu, Li, Wang, Wang, Chen, ICLR 2022;
official code microsoft/LoRA), through Hugging Face ``peft`` (``LoraConfig`` and
``inject_adapter_in_model``: the suite does not re-implement it).

The attention's query and value projections of the frozen ViT get each its own trained
low-rank update (``target_modules: [q, v]``)::

    q = W_q x + (alpha / r) B_q A_q x,     v = W_v x + (alpha / r) B_v A_v x,     k = W_k x

with ``A`` Kaiming-uniform and ``B`` zero (peft's, the paper's), so the network is exactly the
pretrained one at step 0; dropout ``lora_dropout`` on ``x`` before ``A``. This is the paper's
setting (Sec. 4.2, ``W_q`` and ``W_v``), microsoft/LoRA's ``MergedLinear(d_model, 3*d_model,
r=8, enable_lora=[True, False, True])`` (``README.md`` line 132, ``loralib/layers.py`` line 155)
and V-PETL Bench's ViT (``models/vision_transformer_lora.py`` lines 99-117: ``linear_a_q`` /
``linear_b_q`` and ``linear_a_v`` / ``linear_b_v`` of rank ``topN = 8``, no scaling, no
dropout, whence ``alpha = r`` and ``lora_dropout`` 0). timm fuses the three projections into
one ``qkv`` linear map; for targets among ``q``, ``k``, ``v`` it is split into three linear
maps holding its rows (:class:`SplitQKV`, the same function) so that peft adapts each target
on its own. ``target_modules: [qkv]`` keeps the fused map and gives one shared update of all
three (NOAH's ``model/module/qkv_super_prompt.py`` lines 28-30 and 57, whose numbers V-PETL
Bench prints, does that; same parameter count at the same rank). ``W_0`` is frozen; the
``A``, ``B`` and the new classifier train. Task-specific parameters: ``r (d + d)`` per
adapted projection and block (``24 r d`` per block for q and v: 0.295 M on ViT-B/16 at r 8,
the published row's 0.29 M) plus the classifier.

Hyperparameters: ``rank`` 8, ``alpha`` 8, ``lora_dropout`` 0.0, ``target_modules`` [q, v],
``head_init`` (timm's ``reset_classifier``: ``pytorch``).
"""
from __future__ import annotations

from typing import ClassVar

import torch
from torch import nn

from baselines._peft import FrozenViTMethod
from spottune.backbones.base import Backbone
from spottune.hparams import FRACTION, POSITIVE, STRING_LIST, HParam, integer
from spottune.method_contract import register_method

SPLIT_TARGETS = ("q", "k", "v")


def _rows(fused: nn.Linear, part: int, width: int) -> nn.Linear:
    """A linear map holding rows ``part * width .. (part + 1) * width`` of ``fused`` (copies)."""
    linear = nn.Linear(fused.in_features, width, bias=fused.bias is not None)
    with torch.no_grad():
        linear.weight.copy_(fused.weight[part * width:(part + 1) * width])
        if fused.bias is not None:
            linear.bias.copy_(fused.bias[part * width:(part + 1) * width])
    return linear.to(fused.weight.device).requires_grad_(fused.weight.requires_grad)


class SplitQKV(nn.Module):
    """timm's fused ``qkv`` projection as three linear maps ``q``, ``k``, ``v`` (its rows in
    that order); ``forward`` concatenates their outputs as the fused map lays them out."""

    def __init__(self, fused: nn.Linear) -> None:
        super().__init__()
        width = fused.out_features // 3
        self.q, self.k, self.v = (_rows(fused, part, width) for part in range(3))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.cat([self.q(x), self.k(x), self.v(x)], dim=-1)


@register_method("lora")
class LoRA(FrozenViTMethod):
    """Frozen ViT, peft's LoRA on the attention's query and value projections, new classifier."""

    hparams: ClassVar[dict[str, HParam]] = {
        **FrozenViTMethod.hparams,
        "rank": HParam(8, integer(1), "rank of each low-rank update"),
        "alpha": HParam(8, POSITIVE, "scaling numerator: the update is (alpha / rank) B A"),
        "lora_dropout": HParam(0.0, FRACTION, "dropout on the update's input"),
        "target_modules": HParam(["q", "v"], STRING_LIST, "the maps updated (q, k, v of attention, or qkv fused)"),
    }

    def build(self, backbone: Backbone, num_classes: int) -> nn.Module:
        from peft import LoraConfig, inject_adapter_in_model

        model = self.frozen(backbone, num_classes)
        targets = list(self.hp["target_modules"])
        if set(targets) & set(SPLIT_TARGETS):
            for block in model.blocks:
                block.attn.qkv = SplitQKV(block.attn.qkv)
        config = LoraConfig(r=int(self.hp["rank"]), lora_alpha=float(self.hp["alpha"]),
                            lora_dropout=float(self.hp["lora_dropout"]), target_modules=targets, bias="none")
        model = inject_adapter_in_model(config, model)
        model.head.fc.requires_grad_(True)  # peft leaves only its own parameters trainable
        return model
