"""Adapter, as the published VTAB-1k "Adapter" row ran it (V-PETL Bench prints NOAH's row,
Zhang, Zhou, Liu, "Neural prompt search", 2022; ZhangYuanhan-AI/NOAH, 0.16 M parameters):
one bottleneck adapter per transformer block, in series after the MLP, LayerNorms frozen::

    x' = x + Attn(LN_1(x)),      h = DropPath(MLP(LN_2(x'))),      y = x' + h + B(h)

(NOAH ``model/supernet_transformer_prompt.py`` lines 393-395: ``x = self.drop_path(x)`` then
``x = residual + self.adapter(x)``; the adapter returns ``identity + out``,
``model/module/adapter_super.py`` line 74), with
``B`` a bottleneck of ``r = 8`` hidden units (``experiments/Adapter/ViT-B_prompt_adapter_8.yaml``:
``ADAPTER_DIM: 8``), QuickGELU, no dropout, Xavier-uniform weights and biases of std 1e-6
(:mod:`baselines._bottleneck`, init ``noah``). Only the adapters and the new classifier train
(NOAH freezes every parameter not named ``adapter``, ``prompt`` or ``LoRA``,
``supernet_transformer_prompt.py`` line 117, then resets the head).
Task-specific parameters: ``depth (2 d r + r + d)`` (0.157 M on ViT-B/16) plus the classifier.

Houlsby's two adapters per block with trained LayerNorms are ``adapter_houlsby``
(:mod:`baselines.houlsby_adapter`).

Hyperparameters: ``bottleneck`` 8, ``head_init`` (timm's ``reset_classifier``: ``pytorch``).
"""
from __future__ import annotations

from typing import ClassVar

from torch import nn

from baselines._bottleneck import Bottleneck, QuickGELU, ResidualBottleneck
from baselines._peft import FrozenViTMethod
from spottune.backbones.base import Backbone
from spottune.hparams import HParam, integer
from spottune.method_contract import register_method


@register_method("adapter")
class MLPAdapter(FrozenViTMethod):
    """Frozen ViT and LayerNorms, one series bottleneck adapter after every MLP, new classifier."""

    hparams: ClassVar[dict[str, HParam]] = {**FrozenViTMethod.hparams,
                                            "bottleneck": HParam(8, integer(1), "hidden width of each adapter")}

    def build(self, backbone: Backbone, num_classes: int) -> nn.Module:
        model = self.frozen(backbone, num_classes)
        dim, hidden = model.feature_dim, int(self.hp["bottleneck"])
        for block in model.blocks:  # drop_path2 follows the MLP (and its layer scale, an identity here)
            block.drop_path2 = ResidualBottleneck(block.drop_path2, Bottleneck(dim, hidden, QuickGELU, init="noah"))
        return model
