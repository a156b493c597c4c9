"""AdaptFormer (Chen, Ge, Tong, Wang, Song, Wang, Luo, NeurIPS 2022, "AdaptFormer: Adapting
vision transformers for scalable visual recognition"; official code ShoufaChen/AdaptFormer).

A scaled bottleneck in parallel with every block's MLP (:mod:`baselines._bottleneck`)::

    x' = x + Attn(LN_1(x)),      y = x' + MLP(LN_2(x')) + s * W_up ReLU(W_down x')

The adapter reads the block's residual stream ``x'`` itself (the official
``ffn_adapter_layernorm_option='none'``, ``ffn_option='parallel'``); the pretrained ViT is
frozen, the adapters and the new classifier train. As the official code: bottleneck 64
(``ffn_num``), scale ``s = 0.1`` (``ffn_adapter_scalar``), dropout 0.1 on the bottleneck, the
"lora" initialisation (``W_down`` Kaiming-uniform, ``W_up`` and biases zero: the pretrained
function at step 0). Task-specific parameters: the adapters and the classifier.

Hyperparameters: ``bottleneck`` 64, ``scale`` 0.1, ``adapter_dropout`` 0.1.
"""
from __future__ import annotations

from typing import Any, ClassVar

import torch
from torch import nn

from baselines._bottleneck import Bottleneck
from baselines._common import frozen_for_task
from spottune.backbones.base import Backbone
from spottune.methods import Method, register_method


class ParallelMLPAdapter(nn.Module):
    """``MLP(LN_2(x)) + s * B(x)``: takes the place of the block's ``norm2`` -> ``mlp``."""

    def __init__(self, norm: nn.Module, mlp: nn.Module, adapter: Bottleneck) -> None:
        super().__init__()
        self.norm = norm
        self.mlp = mlp
        self.adapter = adapter

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.mlp(self.norm(x)) + self.adapter(x)


@register_method("adaptformer")
class AdaptFormer(Method):
    """Frozen ViT, a scaled bottleneck beside every MLP, new classifier."""

    defaults: ClassVar[dict[str, Any]] = {"bottleneck": 64, "scale": 0.1, "adapter_dropout": 0.1}
    families = ("vit",)  # adapters beside the transformer MLPs

    def build(self, backbone: Backbone, num_classes: int) -> nn.Module:
        model = frozen_for_task(backbone, num_classes)
        for block in model.blocks:
            adapter = Bottleneck(model.feature_dim, int(self.hp["bottleneck"]), nn.ReLU, init="lora",
                                 scale=float(self.hp["scale"]), dropout=float(self.hp["adapter_dropout"]))
            block.mlp = ParallelMLPAdapter(block.norm2, block.mlp, adapter)
            block.norm2 = nn.Identity()
        return model
