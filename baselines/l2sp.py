"""L2-SP: fine-tuning with an L2 penalty towards the starting point (Li, Grandvalet, Davoine,
ICML 2018, "Explicit inductive bias for transfer learning with convolutional networks").

Every weight trains; the loss adds (the official code's loss)::

    loss = CE + alpha / 2 * ||w_S - w_S^0||^2 + beta / 2 * ||w_new||^2

``w_S``: the weights of every convolution (and linear layer other than the classifier) of the
pretrained network, ``w_S^0`` their pretrained values; ``w_new``: the new classifier's weight.
BatchNorm parameters and biases are not regularised, and no ordinary weight decay is applied
to any parameter (the two terms replace it), as in the official code. The penalty is zero at
initialisation for ``w_S``; its gradient is ``alpha * (w - w^0)`` on ``w_S`` and ``beta * w`` on
``w_new``. The reference values ``w_S^0`` are copied at build time as non-persistent buffers (a
resumed run rebuilds them from the same pretrained backbone).

Hyperparameters: ``alpha`` 0.1, ``beta`` 0.01 (official). Official protocol: ResNet-101, SGD
momentum 0.9, lr 0.01, batch 64, 9000 iterations, lr x0.1 at iteration 5000: the presets'
``l2sp_official`` row (on their own backbone), its iterations turned into epochs per dataset
by :mod:`spottune.planning.iteration_budget`; the ``l2sp`` row runs the preset's recipe.
Task-specific parameters: all of the network (a full copy per task).
"""
from __future__ import annotations

from typing import ClassVar

import torch
from torch import nn

from spottune.backbones.base import Backbone
from spottune.hparams import NON_NEGATIVE, HParam
from spottune.method_contract import Method, ParamGroup, param_group, register_method


class L2SPNetwork(nn.Module):
    """A fine-tuned copy of the backbone (``net``) that remembers its starting point."""

    def __init__(self, backbone: Backbone, num_classes: int, alpha: float, beta: float) -> None:
        super().__init__()
        self.net = backbone.for_task(num_classes)
        self.alpha = float(alpha)
        self.beta = float(beta)
        classifier = self.net.head.fc
        self.shared_names: list[str] = []
        for module_name, module in self.net.named_modules():
            if isinstance(module, (nn.Conv2d, nn.Linear)) and module is not classifier:
                self.shared_names.append(f"{module_name}.weight")
        params = dict(self.net.named_parameters())
        for i, name in enumerate(self.shared_names):
            self.register_buffer(f"start_{i}", params[name].detach().clone(), persistent=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)

    def regularizer(self) -> torch.Tensor:
        params = dict(self.net.named_parameters())
        drift = sum(((params[name] - getattr(self, f"start_{i}")) ** 2).sum()
                    for i, name in enumerate(self.shared_names))
        new = (self.net.head.fc.weight ** 2).sum()
        return 0.5 * self.alpha * drift + 0.5 * self.beta * new


@register_method("l2sp")
class L2SP(Method):
    """Fine-tuning with ``alpha/2 ||w_S - w_S^0||^2 + beta/2 ||w_new||^2`` instead of weight decay."""

    shares_pretrained = False  # the whole network is fine-tuned per task

    hparams: ClassVar[dict[str, HParam]] = {
        "alpha": HParam(0.1, NON_NEGATIVE, "weight of the pull towards the pretrained weights"),
        "beta": HParam(0.01, NON_NEGATIVE, "weight decay of the new classifier")}
    # its own protocol (the presets' l2sp_official row) is stated in optimiser steps
    protocol_keys: ClassVar[tuple[str, ...]] = ("iterations", "lr_milestone_iterations")

    def build(self, backbone: Backbone, num_classes: int) -> nn.Module:
        return L2SPNetwork(backbone, num_classes, self.hp["alpha"], self.hp["beta"])

    def param_groups(self, model: nn.Module) -> list[ParamGroup]:
        return [param_group("all", model.parameters(), self.hp["lr"], 0.0)]
