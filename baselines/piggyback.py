"""Piggyback: learned binary masks on a fixed pretrained network (Mallya, Davis, Lazebnik,
ECCV 2018, "Piggyback: Adapting a single network to multiple tasks by learning to mask
weights"; official code arunmallya/piggyback).

Every convolution ``W`` of the backbone (stem, 3x3 and 1x1 convolutions, downsampling
shortcuts; on EfficientNet also the depthwise ones) gets a real-valued mask ``m`` of its shape; the forward pass uses::

    W_task = W * 1[m > threshold]        (W never changes)

with a straight-through gradient ``dL/dm = dL/dW_task * W`` (the binariser's backward is the
identity). Masks start at ``mask_init`` = 1e-2 > ``threshold`` = 5e-3, so at initialisation the
network computes exactly the pretrained function. The classifier is new and unmasked.
BatchNorm is frozen and kept in eval mode by default (``train_bn: false``, the official
default; ``true`` trains BN affine parameters and statistics).

Optimisation (official ``run_piggyback_training.sh``): Adam, lr 1e-4 for masks and
classifier, no weight decay, x0.1 every 15 epochs, 30 epochs, batch 32. The lr given by the
preset is used for both groups (``classifier_lr_mult`` scales the classifier's).
Task-specific parameters: one bit per masked weight (``numel / 32`` in float32 units, as the
"#par 1.28" of the Decathlon table counts them), the classifier, and BN when trained.

Hyperparameters: ``mask_init`` 1e-2, ``threshold`` 5e-3, ``train_bn`` false,
``classifier_lr_mult`` 1.0; protocol defaults ``optimizer: adam``, ``lr`` 1e-4,
``weight_decay`` 0 (a preset's values take precedence: the presets set them per method).
"""
from __future__ import annotations

from typing import ClassVar

import torch
from torch import nn

from baselines._common import Binarize, Frozen, freeze_, is_batch_norm, is_conv, replace_modules
from spottune.backbones.base import Backbone, count_parameters
from spottune.hparams import FLAG, POSITIVE, HParam, number
from spottune.method_contract import Method, ParamGroup, param_group, parameters_except, register_method

BITS_PER_FLOAT = 32


class MaskedConv2d(nn.Module):
    """A frozen convolution whose weight is multiplied by a learned binary mask."""

    def __init__(self, conv: nn.Conv2d, mask_init: float, threshold: float) -> None:
        super().__init__()
        self.conv = freeze_(conv)
        self.threshold = float(threshold)
        self.mask_real = nn.Parameter(torch.full_like(conv.weight, float(mask_init)))

    def binary_mask(self) -> torch.Tensor:
        return Binarize.apply(self.mask_real, self.threshold)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        weight = self.conv.weight * self.binary_mask()
        if type(self.conv).forward is nn.Conv2d.forward:
            return self.conv._conv_forward(x, weight, self.conv.bias)
        # a convolution with a forward of its own (timm's TensorFlow "SAME" padding on EfficientNet)
        return torch.func.functional_call(self.conv, {"weight": weight}, (x,))


@register_method("piggyback")
class Piggyback(Method):
    """Binary masks on every convolution, frozen weights and BN, new classifier, Adam."""

    families = ("cnn", "mbconv")  # masks on convolutions

    hparams: ClassVar[dict[str, HParam]] = {
        "mask_init": HParam(1e-2, number(), "initial real-valued mask score"),
        "threshold": HParam(5e-3, number(), "a mask is 1 where its score exceeds this"),
        "train_bn": HParam(False, FLAG, "whether BatchNorm trains (the released code: no)"),
        "classifier_lr_mult": HParam(1.0, POSITIVE, "classifier's lr / the masks' lr"),
        "optimizer": HParam("adam", help="Piggyback's own optimiser (a protocol key)"),
        "lr": HParam(1e-4, help="Piggyback's own lr (a protocol key)"),
        "weight_decay": HParam(0.0, help="no weight decay (a protocol key)"),
    }

    def build(self, backbone: Backbone, num_classes: int) -> nn.Module:
        model = backbone.for_task(num_classes)
        replace_modules(model, lambda _, m: is_conv(m),
                        lambda conv: MaskedConv2d(conv, self.hp["mask_init"], self.hp["threshold"]))
        if not self.hp["train_bn"]:
            replace_modules(model, lambda _, m: is_batch_norm(m), Frozen)
        return model

    def param_groups(self, model: nn.Module) -> list[ParamGroup]:
        masks = [m.mask_real for m in model.modules() if isinstance(m, MaskedConv2d)]
        return [param_group("masks", masks, self.hp["lr"], 0.0),
                param_group("classifier_bn", parameters_except(model, masks),
                            self.hp["lr"] * self.hp["classifier_lr_mult"], self.hp["weight_decay"])]

    def task_specific_parameters(self, model: nn.Module) -> float:
        masks = sum(m.mask_real.numel() for m in model.modules() if isinstance(m, MaskedConv2d))
        return masks / BITS_PER_FLOAT + count_parameters(model, trainable_only=True) - masks
