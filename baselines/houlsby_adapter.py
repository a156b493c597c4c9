"""Adapters (Houlsby, Giurgiu, Jastrzebski, Morrone, de Laroussilhe, Gesmundo, Attariyan,
Gelly, ICML 2019, "Parameter-efficient transfer learning for NLP"; official code
google-research/adapter-bert), on the blocks of a ViT.

Two bottleneck adapters per transformer block, in series after each sub-layer's output and
before its residual addition (:mod:`baselines._bottleneck`, ``r`` hidden units)::

    x' = x  + A_1(Attn(LN_1(x))),      y = x' + A_2(MLP(LN_2(x'))),      A(h) = h + B(h)

The pretrained weights are frozen; the adapters, every LayerNorm (Houlsby et al. train them
too) and the new classifier train. Initialisation near the identity (normal, std 1e-2,
truncated at 2 std); bottleneck sizes in the paper {8, 64, 256}; GELU here (the ViT's own
non-linearity). Task-specific parameters: adapters, LayerNorms, classifier.

Hyperparameters: ``bottleneck`` 8 (the suite's default, the smallest size of the paper's search).
"""
from __future__ import annotations

from typing import Any, ClassVar

import torch
from torch import nn

from baselines._bottleneck import Bottleneck
from baselines._common import frozen_for_task
from spottune.backbones.base import Backbone
from spottune.methods import Method, register_method


class SeriesAdapter(nn.Module):
    """``h + B(h)`` after a sub-layer (placed on the block's ``ls1`` / ``ls2``, which follow
    the attention and the MLP and are the identity in a ViT without layer scale)."""

    def __init__(self, after: nn.Module, dim: int, bottleneck: int) -> None:
        super().__init__()
        self.after = after
        self.adapter = Bottleneck(dim, bottleneck, nn.GELU, init="houlsby")

    def forward(self, h: torch.Tensor) -> torch.Tensor:
        h = self.after(h)
        return h + self.adapter(h)


@register_method("adapter")
class HoulsbyAdapter(Method):
    """Frozen ViT, two series bottleneck adapters per block, LayerNorms and classifier train."""

    defaults: ClassVar[dict[str, Any]] = {"bottleneck": 8}
    families = ("vit",)  # adapters on transformer sub-layers (residual adapters are the ResNet analogue)

    def build(self, backbone: Backbone, num_classes: int) -> nn.Module:
        model = frozen_for_task(backbone, num_classes)
        dim, hidden = model.feature_dim, int(self.hp["bottleneck"])
        for block in model.blocks:
            block.ls1 = SeriesAdapter(block.ls1, dim, hidden)
            block.ls2 = SeriesAdapter(block.ls2, dim, hidden)
        for module in model.modules():
            if isinstance(module, nn.LayerNorm):
                module.requires_grad_(True)
        return model
