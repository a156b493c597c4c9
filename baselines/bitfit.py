"""BitFit: fine-tune only the bias terms (Ben Zaken, Goldberg, Ravfogel, ACL 2022, "BitFit:
Simple parameter-efficient fine-tuning for transformer-based masked language-models"), on a
ViT as in the VPT / NOAH / V-PETL comparisons on VTAB-1k.

Every affine map of the pretrained network keeps its weights and trains its bias::

    y = W x + b,     W frozen (pretrained),  b trained

for every linear layer (qkv, attention projection, MLP), every LayerNorm's shift (``beta``),
and the patch embedding's bias; the classifier is new and trains whole. Task-specific
parameters: the biases and the classifier (0.10 M on ViT-B/16 plus the classifier).

Hyperparameters: none of its own; the official code (benzakenelad/BitFit) trains with AdamW
and a per-task learning rate searched in {1e-4, 4e-4, 7e-4, 1e-3} [unverified]; the presets
give the protocol (vtab1k and fgvc: VPT's SGD protocol).
"""
from __future__ import annotations

from torch import nn

from baselines._common import frozen_for_task
from spottune.backbones.base import Backbone
from spottune.methods import Method, register_method


@register_method("bitfit")
class BitFit(Method):
    """Frozen weights, trained biases and a new classifier."""

    families = ("vit",)  # a ResNet's convolutions have no biases: bn_adapt is its analogue

    def build(self, backbone: Backbone, num_classes: int) -> nn.Module:
        model = frozen_for_task(backbone, num_classes)
        for name, param in model.named_parameters():
            if name.endswith(".bias"):
                param.requires_grad_(True)
        return model
