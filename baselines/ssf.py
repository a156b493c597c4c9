"""SSF: scaling and shifting your features (Lian, Zhou, Feng, Wang, NeurIPS 2022, "Scaling &
shifting your features: a new baseline for efficient model tuning"; official code
dongzelian/SSF).

After every operation of the frozen ViT (the patch projection, each linear map: qkv,
attention projection, MLP fc1 / fc2, and each LayerNorm, the final one included) the output
is scaled and shifted per channel::

    y = gamma (.) op(x) + beta,      gamma, beta in R^channels

``gamma`` starts from N(1, 0.02) and ``beta`` from N(0, 0.02), as the official
``init_ssf_scale_shift``. Only ``gamma``, ``beta`` and the new classifier train; at inference
they fold into the preceding linear map (re-parameterisation), so the deployed network is the
original architecture. Task-specific parameters: every ``gamma`` and ``beta`` (0.21 M on
ViT-B/16 as placed here; the paper reports 0.24 M) plus the classifier.

Hyperparameters: none of its own (the official VTAB-1k scripts: AdamW, cosine schedule,
100 epochs with 10 warm-up epochs, a per-task learning rate [unverified]; the presets give
the protocol).
"""
from __future__ import annotations

import torch
from torch import nn

from baselines._common import frozen_for_task, replace_modules
from spottune.backbones.base import Backbone
from spottune.methods import Method, register_method

SCALED = (nn.Linear, nn.LayerNorm, nn.Conv2d)


class ScaleShift(nn.Module):
    """``gamma * op(x) + beta`` over the channel axis (last for tokens, 1 for a convolution)."""

    def __init__(self, op: nn.Module) -> None:
        super().__init__()
        self.op = op
        channels = op.out_channels if isinstance(op, nn.Conv2d) else (
            op.out_features if isinstance(op, nn.Linear) else op.normalized_shape[0])
        self.channel_axis = 1 if isinstance(op, nn.Conv2d) else -1
        self.gamma = nn.Parameter(torch.empty(channels).normal_(1.0, 0.02))
        self.beta = nn.Parameter(torch.empty(channels).normal_(0.0, 0.02))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.op(x)
        shape = [1] * y.dim()
        shape[self.channel_axis] = -1
        return y * self.gamma.view(shape) + self.beta.view(shape)


@register_method("ssf")
class SSF(Method):
    """Frozen ViT, a per-channel scale and shift after every operation, new classifier."""

    families = ("vit",)  # the operations of a ViT (the official code also has ConvNeXt / Swin variants)

    def build(self, backbone: Backbone, num_classes: int) -> nn.Module:
        model = frozen_for_task(backbone, num_classes)
        replace_modules(model, lambda name, m: isinstance(m, SCALED) and name != "head.fc", ScaleShift)
        return model
