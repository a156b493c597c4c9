"""A complete user-defined method: fine-tuning with layer-wise learning rates.

Discriminative fine-tuning (Howard & Ruder 2018, ULMFiT): every weight trains, but the
learning rate shrinks by ``decay`` per residual block counted down from the top, so that
generic early features move less than task-specific late ones::

    lr(classifier) = lr,   lr(block t of N) = lr * decay ** (N - t),   lr(stem) = lr * decay ** (N + 1)

Run it in any preset with ``python benchmarks/run_all.py --plugins examples.my_method
--methods layerwise_lr``; its hyperparameter is set like any other (``--set decay=0.9``).
The suite's tests import this file and train it for one step, so it cannot rot.
"""
from __future__ import annotations

from typing import ClassVar

from torch import nn

from spottune.backbones.base import Backbone
from spottune.hparams import HParam, number
from spottune.method_contract import Method, ParamGroup, register_method


@register_method("layerwise_lr")
class LayerwiseLR(Method):
    """Standard fine-tuning with a learning rate decaying geometrically from top to bottom."""

    # its own hyperparameters: default, range (checked before anything launches), meaning (--list)
    hparams: ClassVar[dict[str, HParam]] = {
        "decay": HParam(0.8, number(above=0, at_most=1), "lr factor per block, from the top down")}

    def build(self, backbone: Backbone, num_classes: int) -> nn.Module:
        """A copy of the pretrained backbone (never modify ``backbone`` itself), new classifier."""
        return backbone.for_task(num_classes)

    def param_groups(self, model: nn.Module) -> list[ParamGroup]:
        """One optimiser group per depth; ``lr`` and ``weight_decay`` come from the preset."""
        lr, wd, decay, n = self.hp["lr"], self.hp["weight_decay"], self.hp["decay"], len(model.blocks)
        groups = [{"name": "stem", "params": list(model.stem.parameters()),
                   "lr": lr * decay ** (n + 1), "weight_decay": wd}]
        groups += [{"name": f"block{t}", "params": list(block.parameters()),
                    "lr": lr * decay ** (n - t), "weight_decay": wd}
                   for t, block in enumerate(model.blocks, start=1)]
        groups.append({"name": "head", "params": list(model.head.parameters()), "lr": lr, "weight_decay": wd})
        return groups

    # forward() (the model on a batch: ForwardOutputs with the logits, and the routing to record
    # for a method that routes images), regularizer(model, outputs) (an extra loss term from that
    # forward) and task_specific_parameters() (the Decathlon "#par" accounting; default: every
    # trainable parameter) keep their defaults here.
