"""TAPS: Task Adaptive Parameter Sharing (Wallingford, Li, Achille, Ravichandran, Fowlkes,
Bhotika, Soatto, CVPR 2022, arXiv 2203.16708), reimplemented from the method of its Sec. 3 as
REFERENCE.md section 6 and public summaries of the paper state it; its public code
(MattWallingford/TAPS, by the first author) is self-described unofficial and has no licence:
it was read for its settings, not copied.

Every layer ``i`` of a gated type (:data:`GATED_TYPES`: convolutions, and a ViT's linear maps)
in the backbone's stem and blocks keeps its pretrained weight ``W_i`` frozen and gets a
task-specific delta ``dW_i`` (zero at the start, so the network starts as the pretrained one)
and a scalar score ``s_i``; the task's layer is::

    W_i^task = W_i + I(s_i > tau) * dW_i          (the same gate on the bias delta, if any)

and the loss is::

    loss = CE + lambda * (1 / L) * sum_i |s_i|    (L gated layers)

The indicator is trained with the straight-through estimator (:class:`baselines._common.Binarize`):
``dloss/ds_i = sum(dCE/dW_i^task * dW_i) + lambda / L * sign(s_i)``, so a score keeps its
layer task-specific while the layer's delta lowers the loss more than the penalty costs; a
layer whose score ends at or below ``tau`` is shared with the pretrained network (its delta
then gets no gradient, its score still does: a layer may come back). Task-specific
normalisation layers (the paper's task-specific BatchNorm; a ViT's LayerNorms) are an option.

Gated layers: on ResNet-50 the 53 convolutions of the paper's Figure 3 (stem, 3 per
bottleneck, 4 downsampling shortcuts); on the Decathlon ResNet-26 the stem and the 24 block
convolutions (its shortcuts have no parameters); on a ViT the patch embedding and each block's
qkv, projection and two MLP maps. Any backbone built from these layer types (depthwise
convolutions included) is handled the same way; the classifier is new and trains whole.

Where each setting comes from (``[code]``: MattWallingford/TAPS, ``models/taps_net.py`` at
``f733cd9``, ``train_sequential.py`` at ``1cc9edd``, ``options.py`` at ``202e1a2``,
``README.md`` at ``0032d42``, ``scripts/Taps_pb.sh`` at ``7dc1efb``):

* the reparametrisation, the straight-through indicator, the sparsity penalty on the scores,
  task-specific BatchNorm: the paper (Sec. 3; REFERENCE.md section 6);
* ``threshold`` tau = 0.1 and ``score_init`` 0.15 (every layer starts task-specific):
  ``[code]`` ``models/taps_net.py`` (``THRESHOLD``, ``INITIALIZATION``); that code's indicator is
  ``s >= tau``, this one ``s > tau`` (Piggyback's step, shared): they differ only at ``s = tau``;
* the penalty divided by the number of gated layers: ``[code]`` ``train_sequential.py`` (sum of
  ``|s_i|`` / 52 on ResNet-50), so that ``lambda`` keeps its meaning on any backbone;
  ``lambda_sparsity`` 0.1: that code's README command for ResNet-50 on CUBS;
* the paper's own values of tau, the initial score and lambda, and its optimiser and
  schedule per benchmark, could not be confirmed from public text: TAPS runs the preset's
  optimiser and schedule, and every run records so (its ``recipe`` hyperparameter,
  :data:`RECIPE`, printed in the tables' footnotes; ``vtab1k`` and ``fgvc`` give it VPT's
  whole-network recipe and name that). The unofficial code (``options.py``, ``train_sequential.py``) trains with
  SGD momentum 0.9, lr 0.01 (its Cars / CUBS script tries 0.005, 0.001, 0.0005), a cosine
  schedule over 30 epochs, batch 32 with the gradients of 8 batches summed per step, no weight
  decay, and the penalty switched on after 2 epochs; on the ``standard`` preset
  ``--set schedule=cosine lr_milestones=[] epochs=30 weight_decay=0`` follows the first part.
  Joint multi-task TAPS (one network trained on all tasks at once) is not implemented: a run
  trains one task, the paper's incremental setting.

Optimiser groups: the scores (the preset's lr, no weight decay: the penalty is their only
regulariser) and everything else that trains (deltas, classifier, task normalisation layers;
the preset's lr and weight decay, which pulls a delta towards zero, i.e. towards the
pretrained weight).

Parameter accounting (``metrics.json`` ``params``): ``task_specific`` counts the deltas of the
layers task-specific at the end, the task's normalisation layers and the classifier (the
paper's convention: a shared layer costs nothing); ``trainable`` is what a run stores (every
delta, shared layers' too, and the scores). What a run selected, per gated layer, is recorded
as ``layer_selection`` (:meth:`TAPS.layer_selection`, docs/RECORDS.md) and drawn beside
SpotTune's per-block routing by the report (:func:`spottune.report.figures.layer_selection`).

Hyperparameters: ``lambda_sparsity`` (lambda, >= 0; 0 turns the penalty off), ``threshold``
(tau), ``score_init`` (above ``threshold``: a layer that starts shared has a zero delta, and
its score gets no gradient from the loss, so it could never become task-specific),
``task_norm`` (true / false). Bad values fail when the method is created, before a launch.
"""
from __future__ import annotations

from typing import Any, ClassVar

import torch
from torch import nn
from torch.func import functional_call

from baselines._common import Binarize, Frozen, freeze_, is_batch_norm, replace_modules
from spottune.backbones.base import Backbone, count_parameters
from spottune.hparams import FLAG, NON_NEGATIVE, HParam, is_number, number
from spottune.method_contract import Method, ParamGroup, param_group, parameters_except, register_method

GATED_TYPES = (nn.Conv2d, nn.Linear)
"""The layer types TAPS gates (subclasses included: timm's same-padding convolutions)."""
NORM_TYPES = (nn.LayerNorm, nn.GroupNorm)
"""Normalisation layers besides BatchNorm that ``task_norm`` makes task-specific."""
GATED_PARTS = ("stem.", "blocks.")
"""Where gated layers are searched: the head's classifier is new and trains whole."""
RECIPE = "the preset's optimiser and schedule (TAPS's own per benchmark could not be confirmed from public text)"
"""What TAPS trains with where a preset names no recipe for it (recorded in every run's protocol)."""


class TaskAdaptiveLayer(nn.Module):
    """A frozen pretrained ``layer`` computing with ``W + I(score > threshold) * delta``."""

    def __init__(self, layer: nn.Module, score_init: float, threshold: float) -> None:
        super().__init__()
        self.layer = freeze_(layer)
        self.threshold = float(threshold)
        self.delta_weight = nn.Parameter(torch.zeros_like(layer.weight))
        bias = getattr(layer, "bias", None)
        self.delta_bias = None if bias is None else nn.Parameter(torch.zeros_like(bias))
        self.score = nn.Parameter(torch.tensor(float(score_init), device=layer.weight.device))

    def indicator(self) -> torch.Tensor:
        """``I(score > threshold)`` as a 0-d tensor, straight-through in the backward pass."""
        return Binarize.apply(self.score, self.threshold)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        gate = self.indicator()
        weights = {"weight": self.layer.weight + gate * self.delta_weight}
        if self.delta_bias is not None:
            weights["bias"] = self.layer.bias + gate * self.delta_bias
        return functional_call(self.layer, weights, (x,))

    def is_task_specific(self) -> bool:
        return bool(self.score.detach() > self.threshold)

    def delta_parameters(self) -> int:
        """Parameters the task stores when this layer is task-specific (its deltas)."""
        return sum(p.numel() for p in (self.delta_weight, self.delta_bias) if p is not None)


def gated_layers(model: nn.Module) -> list[tuple[str, TaskAdaptiveLayer]]:
    """``(name, layer)`` of every gated layer of a TAPS model, input to output."""
    return [(name, m) for name, m in model.named_modules() if isinstance(m, TaskAdaptiveLayer)]


def block_of(name: str) -> int | None:
    """The block index of a layer named ``blocks.<i>...``; None for the stem."""
    parts = name.split(".")
    return int(parts[1]) if parts[0] == "blocks" else None


@register_method("taps")
class TAPS(Method):
    """Per-layer scores and deltas, W + I(s > tau) dW, a sparsity penalty on the scores."""

    hparams: ClassVar[dict[str, HParam]] = {
        "lambda_sparsity": HParam(0.1, NON_NEGATIVE, "the weight of the sparsity penalty; 0 turns it off"),
        "threshold": HParam(0.1, number(), "a layer is task-specific where its score exceeds this"),
        "score_init": HParam(0.15, number(), "initial score of every layer (above threshold)"),
        "task_norm": HParam(True, FLAG, "task-specific normalisation layers"),
        "recipe": HParam(RECIPE, help="the training recipe's name, stated in the footnotes"),
    }
    protocol_keys: ClassVar[tuple[str, ...]] = ("lambda_sparsity", "task_norm")

    def hparam_problems(self) -> list[str]:
        """The declared ranges, then the rule across keys: ``score_init`` above ``threshold``."""
        problems, hp = super().hparam_problems(), self.hp
        if is_number(hp["threshold"]) and is_number(hp["score_init"]) and not hp["score_init"] > hp["threshold"]:
            problems.append(f"score_init={hp['score_init']!r} with threshold={hp['threshold']!r}: score_init "
                            "must be above threshold (a layer that starts shared never trains its delta)")
        return problems

    def build(self, backbone: Backbone, num_classes: int) -> nn.Module:
        model = freeze_(backbone.for_task(num_classes))
        model.head.fc.requires_grad_(True)
        replace_modules(model, lambda name, m: name.startswith(GATED_PARTS) and isinstance(m, GATED_TYPES),
                        lambda layer: TaskAdaptiveLayer(layer, self.hp["score_init"], self.hp["threshold"]))
        if self.hp["task_norm"]:
            for m in model.modules():
                if is_batch_norm(m) or isinstance(m, NORM_TYPES):
                    m.requires_grad_(True)
        else:
            replace_modules(model, lambda _, m: is_batch_norm(m), Frozen)
        return model

    def param_groups(self, model: nn.Module) -> list[ParamGroup]:
        scores = [layer.score for _, layer in gated_layers(model)]
        return [param_group("scores", scores, self.hp["lr"], 0.0),
                param_group("network", parameters_except(model, scores), self.hp["lr"], self.hp["weight_decay"])]

    def regularizer(self, model: nn.Module, outputs: Any) -> torch.Tensor | None:
        """``lambda * mean_i |s_i|`` over the gated layers (None when lambda is 0)."""
        if self.hp["lambda_sparsity"] == 0:
            return None
        scores = torch.stack([layer.score for _, layer in gated_layers(model)])
        return self.hp["lambda_sparsity"] * scores.abs().mean()

    def task_specific_parameters(self, model: nn.Module) -> float:
        """The deltas of the layers task-specific now, plus what trains outside the gated
        layers (classifier, task normalisation layers): the paper's convention."""
        layers = [layer for _, layer in gated_layers(model)]
        gated = sum(count_parameters(layer, trainable_only=True) for layer in layers)
        active = sum(layer.delta_parameters() for layer in layers if layer.is_task_specific())
        return float(count_parameters(model, trainable_only=True) - gated + active)

    def layer_selection(self, model: nn.Module) -> dict[str, list]:
        """Per gated layer, input to output: its name, block (None: the stem), whether it is
        task-specific, its score and its delta's parameter count."""
        layers = gated_layers(model)
        return {"layers": [name for name, _ in layers],
                "block": [block_of(name) for name, _ in layers],
                "task_specific": [int(layer.is_task_specific()) for _, layer in layers],
                "scores": [float(layer.score.detach()) for _, layer in layers],
                "parameters": [layer.delta_parameters() for _, layer in layers]}
