"""BitFit: fine-tune only the bias terms (Ben Zaken, Goldberg, Ravfogel, ACL 2022, "BitFit:
Simple parameter-efficient fine-tuning for transformer-based masked language-models"), on a
ViT as in the VPT / NOAH / V-PETL comparisons on VTAB-1k.

Every affine map of the pretrained network keeps its weights and trains its bias::

    y = W x + b,     W frozen (pretrained),  b trained

for every linear layer (qkv, attention projection, MLP), every LayerNorm's shift (``beta``),
and the patch embedding's bias; the classifier is new and trains whole. Task-specific
parameters: the biases and the classifier (0.10 M on ViT-B/16 plus the classifier).

Hyperparameters: ``head_init`` (``pytorch``; the vtab1k and fgvc presets: ``vpt``, since the
published BitFit row is VPT's "Bias" baseline, which VPT ran with its own head and its
``finetune`` AdamW recipe). The official code (benzakenelad/BitFit) trains with AdamW and a
per-task learning rate searched in {1e-4, 4e-4, 7e-4, 1e-3} [unverified].
"""
from __future__ import annotations

from torch import nn

from baselines._peft import FrozenViTMethod
from spottune.backbones.base import Backbone
from spottune.method_contract import register_method


@register_method("bitfit")
class BitFit(FrozenViTMethod):
    """Frozen weights, trained biases and a new classifier (ViT only: a ResNet's convolutions
    have no biases, bn_adapt is its analogue)."""

    def build(self, backbone: Backbone, num_classes: int) -> nn.Module:
        model = self.frozen(backbone, num_classes)
        for name, param in model.named_parameters():
            if name.endswith(".bias"):
                param.requires_grad_(True)
        return model
