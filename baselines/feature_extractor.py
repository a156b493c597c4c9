"""Feature extractor: the pretrained network as a fixed feature map, a new linear classifier.

The baseline of Razavian et al. 2014 / Donahue et al. 2014 (DeCAF) as used by SpotTune
(Guo et al. 2019, Tables 1 and 3, row "Feature Extractor"; Decathlon #par 1)::

    logits = W phi(x) + b,     phi = pretrained stem, blocks and pre-pool layers, all frozen

Everything up to the pooled features is frozen, BatchNorm included: it runs in eval mode
with the pretrained running statistics (Guo et al. 2019, Sec. 4). Only the classifier ``(W, b)``
trains, with the preset's lr and weight decay. Task-specific parameters: the classifier.

Hyperparameters: none of its own (protocol values from the preset).
"""
from __future__ import annotations

from torch import nn

from baselines._common import Frozen
from spottune.backbones.base import Backbone
from spottune.method_contract import Method, register_method


@register_method("feature_extractor")
class FeatureExtractor(Method):
    """Frozen backbone and BN (eval mode), new linear classifier only."""

    def build(self, backbone: Backbone, num_classes: int) -> nn.Module:
        model = backbone.for_task(num_classes)
        model.stem = Frozen(model.stem)
        model.blocks = nn.ModuleList(Frozen(block) for block in model.blocks)
        model.head.pre = Frozen(model.head.pre)
        return model
