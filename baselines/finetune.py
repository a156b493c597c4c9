"""Standard fine-tuning: every pretrained weight trains, with a new classifier.

The baseline of every table of SpotTune (Guo et al. 2019, Tables 1 and 3, row "Standard
Fine-tuning"; Decathlon #par 10: a whole network per task)::

    theta_task = theta_pretrained - lr * sum_t grad L_task,    new classifier (W, b)

Hyperparameters: none of its own (protocol values from the preset). Its model replaces the
pretrained network rather than sharing it (``shares_pretrained`` False).
"""
from __future__ import annotations

from torch import nn

from spottune.backbones.base import Backbone
from spottune.method_contract import Method, register_method


@register_method("finetune")
class Finetune(Method):
    """Standard fine-tuning: every weight trains from the pretrained values, new classifier."""

    shares_pretrained = False

    def build(self, backbone: Backbone, num_classes: int) -> nn.Module:
        return backbone.for_task(num_classes)
