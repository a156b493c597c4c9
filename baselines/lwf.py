"""Learning without Forgetting (Li & Hoiem, ECCV 2016 / TPAMI 2017), the "LwF" row of the
Decathlon tables of Rebuffi et al. 2017 and SpotTune (Guo et al. 2019; #par 10).

The whole network is fine-tuned with a new classifier ``theta_n`` while the source task's
classifier ``theta_o`` (the pretrained backbone's own) is kept and trained so that its outputs
on the *new* task's images stay close to those the original network gave::

    loss = CE(y_n, yhat_n) + lambda_o * L_old(y_o, yhat_o)
    L_old = - sum_i softmax(y_o / T)_i * log softmax(yhat_o / T)_i      (T = 2)

``y_o``: the original (frozen, eval-mode) network's source-task logits for the same image;
``yhat_o``: the current network's source-task logits. Li & Hoiem record ``y_o`` once before
training; the suite computes them on the fly for the same augmented image, which is the
same quantity when augmentation is on (a frozen copy of the original network is kept for
that, not counted as task-specific). Li & Hoiem's optional warm-up (training ``theta_n``
alone first) is not part of this implementation. No T^2 factor, as in the paper.

The source classifier is the pretrained network's own (the released ResNet-26's 1000-way
ImageNet layer, the suite pretraining's source classes): a backbone without one (fewer than two
outputs, e.g. a random initialisation) is refused, since the distillation term would be 0.

Hyperparameters: ``lambda_old`` 1.0, ``temperature`` 2.0 (paper). Protocol: the preset's
fine-tuning one. Task-specific parameters: the fine-tuned network and the new classifier (a
full network per task, #par ~10); the updated source classifier is not needed to solve the
new task and is not counted (the source task is served by the shared original network).
"""
from __future__ import annotations

import copy
from typing import ClassVar

import torch
import torch.nn.functional as F
from torch import nn

from baselines._common import Frozen
from spottune.backbones.base import Backbone, count_parameters
from spottune.hparams import NON_NEGATIVE, POSITIVE, HParam
from spottune.method_contract import ForwardOutputs, Method, register_method


class LwFNetwork(nn.Module):
    """A fine-tuned network with the new classifier (``net``) plus the old one (``old_fc``)."""

    def __init__(self, backbone: Backbone, num_classes: int, lambda_old: float, temperature: float) -> None:
        super().__init__()
        self.net = backbone.for_task(num_classes)
        self.old_fc = copy.deepcopy(backbone.head.fc)
        self.original = Frozen(copy.deepcopy(backbone))
        self.lambda_old = float(lambda_old)
        self.temperature = float(temperature)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)

    def forward_with_source(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """``(new-task logits, source-task logits)`` of the network being trained."""
        features = self.net.head.features(self.net.forward_features(x))
        return self.net.head.fc(features), self.old_fc(features)

    def distillation(self, images: torch.Tensor, source_logits: torch.Tensor) -> torch.Tensor:
        """``lambda_old * L_old``: the source-task logits against the original network's on ``images``."""
        with torch.no_grad():
            recorded = self.original(images)
        target = F.softmax(recorded / self.temperature, dim=1)
        log_prediction = F.log_softmax(source_logits / self.temperature, dim=1)
        return self.lambda_old * -(target * log_prediction).sum(1).mean()


@register_method("lwf")
class LwF(Method):
    """Fine-tuning with distillation of the source task's outputs (Li & Hoiem)."""

    shares_pretrained = False  # the whole network is fine-tuned per task

    hparams: ClassVar[dict[str, HParam]] = {
        "lambda_old": HParam(1.0, NON_NEGATIVE, "weight of the distillation of the source head"),
        "temperature": HParam(2.0, POSITIVE, "distillation temperature")}

    def build(self, backbone: Backbone, num_classes: int) -> nn.Module:
        outputs = backbone.head.fc.out_features
        if outputs < 2:
            raise ValueError(f"LwF distils the source task's outputs, but the backbone's source classifier has "
                             f"{outputs} output (pretrained kind {(backbone.pretraining or {}).get('kind')!r}): "
                             f"use a backbone pretrained with its classifier (suite, released or state_dict)")
        return LwFNetwork(backbone, num_classes, self.hp["lambda_old"], self.hp["temperature"])

    def forward(self, model: nn.Module, images: torch.Tensor) -> ForwardOutputs:
        """In training, the source-task logits and the images come along for the regulariser."""
        if not model.training:
            return ForwardOutputs(model(images))
        logits, source_logits = model.forward_with_source(images)
        return ForwardOutputs(logits, extras={"source_logits": source_logits, "images": images})

    def regularizer(self, model: nn.Module, outputs: ForwardOutputs) -> torch.Tensor:
        if not outputs.extras:
            raise RuntimeError("LwF's regularizer needs the outputs of a forward pass in training mode")
        return model.distillation(outputs.extras["images"], outputs.extras["source_logits"])

    def task_specific_parameters(self, model: nn.Module) -> float:
        return float(count_parameters(model.net, trainable_only=True))
