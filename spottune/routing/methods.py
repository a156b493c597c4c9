"""SpotTune and SpotTune-Global as registered methods (Guo et al. 2019; the models:
:mod:`spottune.routing.network`).

Optimisation as released (gyhui14/spottune, ``main.py``): SGD, the network's lr and weight decay
from the preset; the policy network with ``lr * policy_lr_mult`` (0.1 / 0.01 -> 0.1) and weight
decay 1e-3.
"""
from __future__ import annotations

from typing import ClassVar

import torch
from torch import nn

from spottune.backbones.base import Backbone, count_parameters
from spottune.hparams import NON_NEGATIVE, POSITIVE, HParam, integer, one_of, optional
from spottune.method_contract import (ForwardOutputs, Method, ParamGroup, param_group, parameters_except,
                                      register_method)
from spottune.routing.network import FREEZE_MODES, TEST_ROUTINGS, SpotTune, SpotTuneGlobal

# freeze and routing, shared by SpotTune and the ablations that route through its two copies
FREEZE = HParam("conv", one_of(FREEZE_MODES), "what the frozen copy of a block keeps frozen: its convolutions "
                                            "(BN trains, as released) or the whole block")
TEST_ROUTING = HParam("argmax", one_of(TEST_ROUTINGS), "test-time routing: the policy's argmax or a sample")


class RoutedMethod(Method):
    """A method whose model is a :class:`spottune.routing.network.TwoPathNetwork`: its forward's
    per-image routing is recorded."""

    def forward(self, model: nn.Module, images: torch.Tensor) -> ForwardOutputs:
        logits, decisions = model.forward_routed(images)
        return ForwardOutputs(logits, routing=decisions)


@register_method("spottune")
class SpotTuneMethod(RoutedMethod):
    """SpotTune: per image, a policy network routes each block through its frozen or its
    fine-tuned copy (Gumbel-softmax in training)."""

    hparams: ClassVar[dict[str, HParam]] = {
        "temperature": HParam(5.0, POSITIVE, "Gumbel-softmax temperature"),
        "freeze": FREEZE,
        "test_routing": TEST_ROUTING,
        "policy_width": HParam(1.0, POSITIVE, "width multiplier of the ResNet policy network"),
        "policy_lr_mult": HParam(0.1, POSITIVE, "policy network's lr / the network's lr"),
        "policy_weight_decay": HParam(1e-3, NON_NEGATIVE, "policy network's weight decay"),
    }
    model_class: ClassVar[type[SpotTune]] = SpotTune
    protocol_keys: ClassVar[tuple[str, ...]] = ("freeze", "test_routing")

    def model_kwargs(self) -> dict:
        return {"freeze": self.hp["freeze"], "temperature": self.hp["temperature"],
                "test_routing": self.hp["test_routing"], "policy_width": self.hp["policy_width"]}

    def build(self, backbone: Backbone, num_classes: int) -> nn.Module:
        return self.model_class(backbone, num_classes, **self.model_kwargs())

    def param_groups(self, model: nn.Module) -> list[ParamGroup]:
        policy = list(model.policy.parameters())
        return [param_group("network", parameters_except(model, policy), self.hp["lr"], self.hp["weight_decay"]),
                param_group("policy", policy, self.hp["lr"] * self.hp["policy_lr_mult"],
                            self.hp["policy_weight_decay"])]


@register_method("spottune_global")
class SpotTuneGlobalMethod(SpotTuneMethod):
    """SpotTune-Global: the k-block and entropy regularisers (Sec. 3.3), one routing for all
    test images. ``k = None`` means half of the blocks (a k above the backbone's block count is
    refused when the model is built)."""

    hparams: ClassVar[dict[str, HParam]] = {
        **SpotTuneMethod.hparams,
        "k": HParam(None, optional(integer(0), "half of the blocks"), "blocks the k-block term asks to fine-tune"),
        "lambda_k": HParam(0.1, NON_NEGATIVE, "weight of the k-block term"),
        "lambda_entropy": HParam(0.1, NON_NEGATIVE, "weight of the entropy term"),
    }
    model_class: ClassVar[type[SpotTune]] = SpotTuneGlobal

    def regularizer(self, model: nn.Module, outputs: ForwardOutputs) -> torch.Tensor:
        """The k-block and entropy terms on the forward's decisions (:meth:`SpotTuneGlobal.regularizer`)."""
        return model.regularizer(outputs.routing)

    def model_kwargs(self) -> dict:
        return {**super().model_kwargs(), "k": self.hp["k"], "lambda_k": self.hp["lambda_k"],
                "lambda_entropy": self.hp["lambda_entropy"]}

    def task_specific_parameters(self, model: nn.Module) -> float:
        """Only the blocks the global routing fine-tunes need storing (plus everything else
        that trains outside the blocks); the policy network is not needed at test time."""
        routed = model.finetune_fraction > 0.5
        tuned = sum(count_parameters(b) for b, on in zip(model.tuned_blocks, routed) if not on)
        policy = count_parameters(model.policy)
        return float(count_parameters(model, trainable_only=True) - tuned - policy)
