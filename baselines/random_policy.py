"""Random policy: one fixed random choice of fine-tuned blocks for all images, an ablation of
SpotTune (Guo et al. 2019, Table 1, row "Random Policy").

SpotTune's two-path network (:class:`spottune.routing.network.TwoPathNetwork`) with a policy drawn
once, at build time, from the global torch generator (seeded with the run's seed by the
engine): block ``t`` is fine-tuned (``a_t = 1``) with probability ``p``, for every image of
every batch, at training and test time::

    x_t = (1 - a_t) F_t(x_{t-1}) + a_t F'_t(x_{t-1}),    a ~ Bernoulli(p)^N drawn once

It separates the value of *learning* which blocks to fine-tune from that of fine-tuning only
some. The copy a block never uses is frozen and kept in eval mode (it receives no gradient
and needs no storage), and is not computed at all; the drawn policy is the model's buffer ``fixed_policy`` (saved in
checkpoints). Task-specific parameters: what trains, i.e. the fine-tuned copies of the chosen blocks, the
used frozen blocks' BN (with ``freeze: conv``), stem and head.

Hyperparameters: ``p`` 0.5, ``freeze`` "conv" (as SpotTune's).
"""
from __future__ import annotations

from typing import Any, ClassVar

import torch
from torch import nn

from baselines._common import freeze_, module_device
from spottune.backbones.base import Backbone
from spottune.hparams import PROBABILITY, HParam
from spottune.method_contract import register_method
from spottune.routing.methods import FREEZE, RoutedMethod
from spottune.routing.network import TwoPathNetwork


class FixedRandomRouting(TwoPathNetwork):
    """A two-path network with one routing, drawn at construction, for every image.

    ``host_policy`` is that routing as Python booleans (1 = fine-tuned copy), the buffer
    ``fixed_policy`` read back at construction and at every state-dict load: training picks
    the copies from it without reading the device.
    """

    def __init__(self, backbone: Backbone, num_classes: int, p: float = 0.5, freeze: str = "conv") -> None:
        super().__init__(backbone, num_classes, freeze)
        if not 0.0 <= p <= 1.0:
            raise ValueError(f"p must be in [0, 1], got {p}")
        policy = (torch.rand(self.num_blocks) < p).float()
        self.register_buffer("fixed_policy", policy.to(module_device(self)))
        self.host_policy = self._read_policy()
        for block in self.unused_blocks():
            freeze_(block)
        self.train(self.training)

    def _read_policy(self) -> tuple[bool, ...]:
        return tuple(bool(a) for a in self.fixed_policy.tolist())

    def _load_from_state_dict(self, state_dict: dict[str, Any], prefix: str, *args: Any, **kwargs: Any) -> None:
        """Load as any module, then refresh :attr:`host_policy` from the loaded ``fixed_policy``."""
        super()._load_from_state_dict(state_dict, prefix, *args, **kwargs)
        self.host_policy = self._read_policy()

    def unused_blocks(self) -> list[nn.Module]:
        """For every block, the copy that the policy never routes an image through."""
        return [frozen if a else tuned
                for frozen, tuned, a in zip(self.frozen_blocks, self.tuned_blocks, self.host_policy)]

    def train(self, mode: bool = True) -> "FixedRandomRouting":
        super().train(mode)
        if hasattr(self, "fixed_policy"):
            for block in self.unused_blocks():
                block.eval()
        return self

    def route(self, x: torch.Tensor) -> torch.Tensor:
        return self.fixed_policy.to(x.dtype).expand(x.shape[0], -1)

    def forward_routed(self, x: torch.Tensor, policy: torch.Tensor | None = None
                       ) -> tuple[torch.Tensor, torch.Tensor]:
        """In training with its own routing, only the used copy of every block runs: the other
        one is frozen and in eval mode, and its term of Eq. 2 is multiplied by exactly 0 (same
        numbers, half the blocks). The copies are chosen from :attr:`host_policy`, so no batch
        waits for the device. An explicit ``policy``, and evaluation (hard-routed, with only the
        used copies run as well), take :meth:`TwoPathNetwork.forward_routed`."""
        if policy is not None or not self.training:
            return super().forward_routed(x, policy)
        decisions = self.route(x)
        h = self.stem(x)
        for frozen, tuned, a in zip(self.frozen_blocks, self.tuned_blocks, self.host_policy):
            h = tuned(h) if a else frozen(h)
        return self.head(h), decisions


@register_method("random_policy")
class RandomPolicy(RoutedMethod):
    """SpotTune's two-path network with one fixed random global block choice."""

    hparams: ClassVar[dict[str, HParam]] = {
        "p": HParam(0.5, PROBABILITY, "probability that a block is fine-tuned"), "freeze": FREEZE}

    def build(self, backbone: Backbone, num_classes: int) -> nn.Module:
        return FixedRandomRouting(backbone, num_classes, p=self.hp["p"], freeze=self.hp["freeze"])
