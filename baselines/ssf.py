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

Hyperparameters: ``head_init`` (``timm``: SSF builds its head with timm's initialisation,
``models/vision_transformer.py`` lines 477-483 and 550-555). The official VTAB-1k and FGVC
scripts (``train_scripts/vit/{vtab,fgvc}/<task>/train_ssf.sh``) train with AdamW, batch 32, a
per-task lr, weight decay and drop-path, timm's cosine schedule with 10 warm-up epochs and no
weight decay on the 1-D parameters (``optim_factory.py`` line 51): the vtab1k and fgvc presets'
``ssf`` recipe.
"""
from __future__ import annotations

from typing import ClassVar

import torch
from torch import nn

from baselines._common import replace_modules
from baselines._peft import FrozenViTMethod
from spottune.backbones.base import Backbone
from spottune.hparams import HParam, with_defaults
from spottune.method_contract import register_method

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
class SSF(FrozenViTMethod):
    """Frozen ViT, a per-channel scale and shift after every operation, new classifier (the
    official code also has ConvNeXt / Swin variants)."""

    hparams: ClassVar[dict[str, HParam]] = with_defaults(FrozenViTMethod.hparams, head_init="timm")

    def build(self, backbone: Backbone, num_classes: int) -> nn.Module:
        model = self.frozen(backbone, num_classes)
        replace_modules(model, lambda name, m: isinstance(m, SCALED) and name != "head.fc", ScaleShift)
        return model
