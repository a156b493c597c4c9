"""AdaptFormer (Chen, Ge, Tong, Wang, Song, Wang, Luo, NeurIPS 2022, "AdaptFormer: Adapting
vision transformers for scalable visual recognition"; official code ShoufaChen/AdaptFormer).

A scaled bottleneck in parallel with every block's MLP (:mod:`baselines._bottleneck`)::

    x' = x + Attn(LN_1(x)),      y = x' + DropPath(MLP(LN_2(x'))) + s * W_up ReLU(W_down N(x'))

The adapter reads the block's residual stream ``x'`` through its own LayerNorm ``N``
(``adapter_norm: in``, trained) or directly (``none``), and its output is added outside the
block's stochastic depth. ``adaptformer`` has the capacity of the published VTAB-1k row it is
printed beside (V-PETL Bench, 0.16 M): V-PETL Bench's ``scripts/run_vit_adaptformer.sh``
(``topN=8``: bottleneck 8) and ``models/vision_transformer_adaptformer.py`` (lines 197-203:
dropout 0.1, ``init_option="lora"``, ``adapter_scalar="1.0"``, ``adapter_layernorm_option="in"``;
lines 283-288: the adapter beside ``drop_path2(ls2(mlp(norm2(x))))``): 0.175 M on ViT-B/16.
``adaptformer_official`` keeps the official code's defaults (``main_image.py`` lines 114 and
188-191: ``ffn_num`` 64, ``ffn_adapter_scalar`` 0.1, ``ffn_adapter_layernorm_option="none"``;
1.19 M). Both: the "lora" initialisation (``W_down`` Kaiming-uniform, ``W_up`` and biases zero:
the pretrained function at step 0). The pretrained ViT is frozen; the adapters (with their
LayerNorms) and the new classifier train. Task-specific parameters: the adapters and the
classifier.

Hyperparameters: ``bottleneck``, ``scale``, ``adapter_norm`` (``in`` or ``none``),
``adapter_dropout`` 0.1, ``head_init`` (timm's ``reset_classifier``: ``pytorch``).
"""
from __future__ import annotations

from collections import OrderedDict
from typing import ClassVar

import torch
from torch import nn

from baselines._bottleneck import Bottleneck
from baselines._peft import FrozenViTMethod
from spottune.backbones.base import Backbone
from spottune.hparams import FRACTION, HParam, integer, number, one_of, with_defaults
from spottune.method_contract import register_method

ADAPTER_NORMS = ("in", "none")


class AdaptFormerBlock(nn.Module):
    """A frozen timm block with a bottleneck beside its MLP (see the module docstring): timm's
    ``Block.forward`` (``x + drop_path1(ls1(attn(norm1(x))))``, then ``+ drop_path2(ls2(mlp(
    norm2(x))))``) with the adapter's output added to the second residual."""

    def __init__(self, block: nn.Module, adapter: nn.Module) -> None:
        super().__init__()
        self.block = block
        self.adapter = adapter

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b = self.block
        x = x + b.drop_path1(b.ls1(b.attn(b.norm1(x))))
        return x + b.drop_path2(b.ls2(b.mlp(b.norm2(x)))) + self.adapter(x)


@register_method("adaptformer")
class AdaptFormer(FrozenViTMethod):
    """Frozen ViT, a scaled bottleneck beside every MLP (V-PETL Bench's VTAB-1k setting), new classifier."""

    hparams: ClassVar[dict[str, HParam]] = {
        **FrozenViTMethod.hparams,
        "bottleneck": HParam(8, integer(1), "hidden width of each adapter"),
        "scale": HParam(1.0, number(), "factor on the adapter's output"),
        "adapter_norm": HParam("in", one_of(ADAPTER_NORMS), "LayerNorm before the adapter (in) or none"),
        "adapter_dropout": HParam(0.1, FRACTION, "dropout inside the adapter"),
    }

    def build(self, backbone: Backbone, num_classes: int) -> nn.Module:
        norm = self.hp["adapter_norm"]
        model = self.frozen(backbone, num_classes)
        dim = model.feature_dim
        wrapped = []
        for block in model.blocks:
            bottleneck = Bottleneck(dim, int(self.hp["bottleneck"]), nn.ReLU, init="lora",
                                    scale=float(self.hp["scale"]), dropout=float(self.hp["adapter_dropout"]))
            adapter = nn.Sequential(OrderedDict(norm=nn.LayerNorm(dim), bottleneck=bottleneck)) if norm == "in" \
                else bottleneck
            wrapped.append(AdaptFormerBlock(block, adapter))
        model.blocks = nn.ModuleList(wrapped)
        return model


@register_method("adaptformer_official")
class AdaptFormerOfficial(AdaptFormer):
    """AdaptFormer at the official code's defaults (bottleneck 64, scale 0.1, no adapter LayerNorm)."""

    hparams: ClassVar[dict[str, HParam]] = with_defaults(AdaptFormer.hparams, bottleneck=64, scale=0.1,
                                                        adapter_norm="none")
