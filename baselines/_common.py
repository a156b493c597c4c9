"""Network surgery shared by several baselines (one place, no copies between baselines).

* :class:`Frozen` / :func:`freeze_` / :func:`freeze_convs_`: frozen parameters; :class:`Frozen`
  also keeps the wrapped module in eval mode whatever ``model.train()`` says, so frozen
  BatchNorm layers keep their pretrained running statistics (feature extractor, last-k,
  Piggyback, progressive nets, LwF).
* :func:`replace_modules`: swap every submodule that matches a predicate for a wrapper built
  from it (Piggyback's masked convolutions, both kinds of residual adapters, frozen BN).
* :func:`init_like_resnet_`: the initialisation shared by torchvision ResNets and the
  Decathlon ResNet-26 (convolutions as :func:`spottune.backbones.resnet26.init_conv_`, BN 1 / 0).
* :func:`frozen_for_task`: the starting point of the parameter-efficient methods (BitFit,
  VPT, adapters, AdaptFormer, SSF, LoRA): every pretrained weight frozen, a new classifier
  initialised as the method's source does (``head_init``).
* :class:`Binarize`: a step function trained with the straight-through estimator (Piggyback's
  binary masks, TAPS's per-layer indicators).
"""
from __future__ import annotations

from typing import Any

import torch
from torch import nn

from spottune.backbones.base import Backbone, init_classifier_
from spottune.backbones.resnet26 import init_conv_
from spottune.backbones.surgery import is_conv, replace_modules  # noqa: F401  (the baselines' surgery too)

BATCH_NORMS = (nn.BatchNorm1d, nn.BatchNorm2d, nn.BatchNorm3d)


class Binarize(torch.autograd.Function):
    """``1[x > threshold]`` forward, identity backward (the straight-through estimator: the
    gradient reaching the step's output is passed to ``x`` unchanged)."""

    @staticmethod
    def forward(ctx: Any, x: torch.Tensor, threshold: float) -> torch.Tensor:
        return (x > threshold).to(x.dtype)

    @staticmethod
    def backward(ctx: Any, grad: torch.Tensor) -> tuple[torch.Tensor, None]:
        return grad, None


def freeze_(module: nn.Module) -> nn.Module:
    """Set ``requires_grad=False`` on every parameter of ``module``; returns it."""
    for param in module.parameters():
        param.requires_grad_(False)
    return module


def freeze_convs_(module: nn.Module) -> nn.Module:
    """Freeze every ``nn.Conv2d`` inside ``module`` (BatchNorm and the rest keep training); returns it."""
    for m in module.modules():
        if isinstance(m, nn.Conv2d):
            freeze_(m)
    return module


class Frozen(nn.Module):
    """``module`` with frozen parameters, always in eval mode (BN uses its running statistics).

    ``model.train()`` reaches this wrapper like any module, but the wrapped module stays in
    eval mode, so neither its parameters nor its buffers change during training.
    """

    def __init__(self, module: nn.Module) -> None:
        super().__init__()
        self.module = freeze_(module)
        self.module.eval()

    def train(self, mode: bool = True) -> "Frozen":
        self.training = mode
        self.module.train(False)
        return self

    def forward(self, *args: Any, **kwargs: Any) -> Any:
        return self.module(*args, **kwargs)


def is_batch_norm(module: nn.Module) -> bool:
    return isinstance(module, BATCH_NORMS)


def init_like_resnet_(module: nn.Module) -> nn.Module:
    """Re-initialise ``module`` as a freshly built ResNet: convolutions as :func:`init_conv_`,
    BatchNorm weight 1 / bias 0 / running statistics reset, linear layers PyTorch's default."""
    for m in module.modules():
        if isinstance(m, nn.Conv2d):
            init_conv_(m)
        elif is_batch_norm(m):
            m.reset_running_stats()
            if m.affine:
                nn.init.ones_(m.weight)
                nn.init.zeros_(m.bias)
        elif isinstance(m, nn.Linear):
            m.reset_parameters()
    return module


def module_device(module: nn.Module) -> torch.device:
    param = next(module.parameters(), None)
    return param.device if param is not None else torch.device("cpu")


def frozen_for_task(backbone: Backbone, num_classes: int, head_init: str = "pytorch") -> Backbone:
    """``backbone.for_task(num_classes)`` with every parameter frozen but the new classifier,
    initialised as ``head_init`` says (:func:`spottune.backbones.base.init_classifier_`)."""
    model = freeze_(backbone.for_task(num_classes))
    init_classifier_(model.head.fc, head_init).requires_grad_(True)
    return model
