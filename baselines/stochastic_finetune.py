"""Stochastic fine-tuning: SpotTune's two-path network routed at random, an ablation of SpotTune
(Guo et al. 2019, Sec. 4).

The network of :class:`spottune.routing.network.TwoPathNetwork` (a frozen and a fine-tuned copy of
every residual block, shared stem and head, new classifier); instead of the policy network,
every image picks, independently for every block ``t``, the fine-tuned copy with probability
``p``::

    x_t = (1 - a_t) F_t(x_{t-1}) + a_t F'_t(x_{t-1}),    a_t ~ Bernoulli(p) per image and block

It asks whether SpotTune's gains come from the learned, input-dependent routing or merely
from mixing two networks (a dropout-like regulariser between frozen and fine-tuned blocks).
Decisions are also drawn at test time (the network is stochastic; the draw follows the
global torch generator, which the engine seeds). ``freeze`` as SpotTune's (``"conv"``, as
released: only the convolution weights of the frozen copy are frozen; ``"block"``: the whole
copy, BN statistics included).

Hyperparameters: ``p`` 0.5, ``freeze`` "conv". Protocol: SpotTune's (network lr and weight decay
of the preset). Task-specific parameters: everything that trains (the fine-tuned copy plus
stem, head and, with ``freeze: conv``, the frozen copy's BN), as for SpotTune without policy.
"""
from __future__ import annotations

from typing import ClassVar

import torch
from torch import nn

from spottune.backbones.base import Backbone
from spottune.hparams import PROBABILITY, HParam
from spottune.method_contract import register_method
from spottune.routing.methods import FREEZE, RoutedMethod
from spottune.routing.network import TwoPathNetwork


class StochasticRouting(TwoPathNetwork):
    """Every image takes the fine-tuned copy of every block with probability ``p``."""

    def __init__(self, backbone: Backbone, num_classes: int, p: float = 0.5, freeze: str = "conv") -> None:
        super().__init__(backbone, num_classes, freeze)
        if not 0.0 <= p <= 1.0:
            raise ValueError(f"p must be in [0, 1], got {p}")
        self.p = float(p)

    def route(self, x: torch.Tensor) -> torch.Tensor:
        uniform = torch.rand(x.shape[0], self.num_blocks, device=x.device)
        return (uniform < self.p).to(x.dtype)


@register_method("stochastic_finetune")
class StochasticFinetune(RoutedMethod):
    """SpotTune's two-path network with random per-image, per-block routing (p = 0.5)."""

    hparams: ClassVar[dict[str, HParam]] = {
        "p": HParam(0.5, PROBABILITY, "probability that a block takes its fine-tuned copy"), "freeze": FREEZE}

    def build(self, backbone: Backbone, num_classes: int) -> nn.Module:
        return StochasticRouting(backbone, num_classes, p=self.hp["p"], freeze=self.hp["freeze"])
