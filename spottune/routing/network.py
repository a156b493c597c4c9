"""SpotTune and SpotTune-Global (Guo et al., CVPR 2019), on any backbone of the suite.

The pretrained backbone's residual blocks are duplicated: ``frozen_blocks`` keep the
pretrained weights, ``tuned_blocks`` are fine-tuned. Stem and head are shared (the head gets
a new classifier). For every image a policy network decides, per block ``t``, which copy to
use (Eq. 2 of the paper, with the released code's activation placement)::

    x_t = (1 - a_t) * F_t(x_{t-1}) + a_t * F'_t(x_{t-1}),   a_t in {0, 1},  1 = fine-tuned copy F'

where a block ``F_t`` includes its shortcut and final ReLU. The decisions are sampled from the
policy logits with the straight-through Gumbel-Softmax (Eq. 4-5): hard one-hot forward,
``softmax((logits + g) / tau)`` backward, ``tau = 5`` as released.

Freezing (``freeze``): ``"conv"`` (default, as released) freezes only the convolution weights
of the original blocks; their BatchNorm layers, the stem and the classifier train. ``"block"``
(the paper's wording) freezes the original blocks whole, BatchNorm statistics included.
On a ViT a block is a transformer block (tokens in, tokens out, both residual branches
inside); ``"conv"`` freezes its weight layers, the linear maps (qkv, attention projection,
MLP), as the convolutions of a ResNet, and its LayerNorms train as the BatchNorms do. On
EfficientNet a block is an MBConv block (:mod:`spottune.backbones.efficientnet_lite`): the
routing needs no shortcut, only that both copies map the same input to the same shape, so the
blocks that change width or stride (no shortcut) are routed like the others; ``"conv"``
freezes its expansion, depthwise and projection convolutions, its BatchNorms train.

The policy network's input is the image itself (normalised as the backbone's input), for a
ResNet and a ViT alike: a small ResNet (:class:`PolicyNetwork`) on it, downsampled to 64 px
for backbones at 224 px; it sees neither the tokens nor the stem's output.

Test-time routing (``test_routing``): ``"argmax"`` (default; one path per block, as the
paper's figure shows) or ``"sampled"`` (Gumbel noise at test time too, as the released code).

Computation: in training both copies of every block run on the whole batch (the released
code's computation, and the one the straight-through gradient of ``a_t`` needs:
``d x_t / d a_t = F'_t - F_t``); the frozen convolutions have ``requires_grad=False``, so
their backward computes input gradients only, and a parameter-free shortcut (ResNet-26's
identity and zero-padding average pool) is computed once for both copies. In evaluation mode
with hard decisions that need no gradient, every block runs each copy only on the images
routed through it (:class:`RoutingPlan`): the same logits up to float rounding, at the cost
of about one network instead of two.
"""
from __future__ import annotations

import copy
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from spottune.backbones.base import Backbone
from spottune.backbones.resnet26 import BasicBlock26, resnet26

FREEZE_MODES = ("conv", "block")
TEST_ROUTINGS = ("argmax", "sampled")


def gumbel_softmax_decisions(logits: torch.Tensor, temperature: float, sample: bool = True) -> torch.Tensor:
    """Straight-through hard Gumbel-Softmax over the last axis (size 2); returns P(index 1) one-hot.

    Forward values are exactly 0.0 or 1.0 (``hard + (soft - soft.detach())`` adds an exact
    zero); the gradient is that of the soft sample. ``sample=False`` takes the argmax of the
    logits without noise (the gradient then flows through ``softmax(logits / tau)``).
    """
    if sample:
        uniform = torch.rand_like(logits).clamp_(1e-10, 1.0 - 1e-10)
        logits = logits - torch.log(-torch.log(uniform))
    soft = F.softmax(logits / temperature, dim=-1)
    hard = F.one_hot(soft.argmax(dim=-1), num_classes=logits.shape[-1]).to(soft.dtype)
    return (hard + (soft - soft.detach()))[..., 1]


class PolicyNetwork(nn.Module):
    """The released policy network: a ResNet with one basic block per stage (stem 3->32,
    widths 64/128/256, stride 2, parameter-free shortcuts), randomly initialised, whose
    classifier outputs ``2 * num_blocks`` logits reshaped to (batch, num_blocks, 2).

    For backbones trained at 224 px the image is first resized to ``input_size`` (64 by
    default: the policy network of ResNet-26, applied to a downsampled image), a choice of
    the suite since the code for the standard datasets was never released.
    """

    def __init__(self, num_blocks: int, width: float = 1.0, input_size: int | None = None) -> None:
        super().__init__()
        self.num_blocks = num_blocks
        self.input_size = input_size
        self.net = resnet26(2 * num_blocks, width=width, blocks_per_stage=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.input_size is not None and x.shape[-1] != self.input_size:
            x = F.interpolate(x, size=(self.input_size, self.input_size), mode="bilinear",
                              align_corners=False, antialias=True)
        return self.net(x).view(x.shape[0], self.num_blocks, 2)


def _is_channels_last(x: torch.Tensor) -> bool:
    return x.dim() == 4 and not x.is_contiguous() and x.is_contiguous(memory_format=torch.channels_last)


def _select_rows(x: torch.Tensor, rows: torch.Tensor) -> torch.Tensor:
    """``x[rows]`` in ``x``'s memory format (``index_select`` alone returns a channels-last
    tensor as NCHW, slowly, and every convolution after it would convert it back)."""
    if _is_channels_last(x):
        return x.permute(0, 2, 3, 1).index_select(0, rows).permute(0, 3, 1, 2)
    return x.index_select(0, rows)


@dataclass
class RoutingPlan:
    """Hard routing of a batch through two copies of every block, each image through one.

    The batch travels in a permuted order: block ``t`` sees the images routed to the frozen
    copy first (``counts[t]`` of them), then those routed to the fine-tuned copy, so each
    copy runs on a contiguous slice. ``first`` permutes the stem output into block 0's order;
    the outputs of block ``t`` are written straight into the order block ``t + 1`` needs (rows
    ``dest[t]``; after the last block, the batch's own order): one copy of the activations per
    block, none where the order does not change (``None``). The index arithmetic runs on the
    CPU, from one transfer of the decisions.
    """

    first: torch.Tensor | None
    dest: list[torch.Tensor | None]
    counts: list[int]
    batch_size: int

    @classmethod
    @torch.compiler.disable  # data-dependent: runs eagerly inside a compiled model
    def from_decisions(cls, decisions: torch.Tensor) -> "RoutingPlan | None":
        """The plan for ``decisions`` (batch, num_blocks), or ``None`` unless all are 0 or 1."""
        cpu = decisions.detach().cpu()
        if not bool(((cpu == 0) | (cpu == 1)).all()):
            return None
        batch, num_blocks = cpu.shape
        tuned = cpu.to(torch.uint8)
        orders = [torch.sort(tuned[:, t], stable=True).indices for t in range(num_blocks)]
        orders.append(torch.arange(batch))
        counts = [batch - int(tuned[:, t].sum()) for t in range(num_blocks)]
        identity = orders[-1]
        moves: list[torch.Tensor | None] = [None if torch.equal(orders[0], identity) else orders[0]]
        for t in range(num_blocks):
            position = torch.empty(batch, dtype=torch.long)
            position[orders[t + 1]] = identity
            moved = position[orders[t]]
            moves.append(None if torch.equal(moved, identity) else moved)
        if decisions.device.type != "cpu" and any(m is not None for m in moves):
            rows = iter(torch.stack([m for m in moves if m is not None]).to(decisions.device))
            moves = [None if m is None else next(rows) for m in moves]
        return cls(moves[0], moves[1:], counts, batch)

    @torch.compiler.disable  # shapes vary with the decisions: eager, not one graph per routing
    def run(self, frozen_blocks: nn.ModuleList, tuned_blocks: nn.ModuleList, h: torch.Tensor) -> torch.Tensor:
        """The blocks' output for the stem output ``h``, rows in the batch's own order."""
        if self.first is not None:
            h = _select_rows(h, self.first)
        for t, (frozen, tuned) in enumerate(zip(frozen_blocks, tuned_blocks)):
            n_frozen = self.counts[t]
            pieces = [(0, frozen, h[:n_frozen]), (n_frozen, tuned, h[n_frozen:])]
            outputs = [(start, block(rows)) for start, block, rows in pieces if len(rows)]
            h = self._gather(outputs, self.dest[t])
        return h

    def _gather(self, outputs: list[tuple[int, torch.Tensor]], dest: torch.Tensor | None) -> torch.Tensor:
        """The block outputs (``(first row, tensor)``) as one tensor in the next block's order."""
        if dest is None:
            return outputs[0][1] if len(outputs) == 1 else torch.cat([out for _, out in outputs])
        first = outputs[0][1]
        merged = torch.empty((self.batch_size, *first.shape[1:]), dtype=first.dtype, device=first.device,
                             memory_format=torch.channels_last if _is_channels_last(first)
                             else torch.contiguous_format)
        for start, out in outputs:
            merged.index_copy_(0, dest[start:start + len(out)], out)
        return merged


class TwoPathNetwork(nn.Module):
    """Stem, a frozen and a fine-tuned copy of every block, and the head; routed per image.

    Subclasses implement :meth:`route` (decisions of shape (batch, num_blocks), 1 = fine-tuned
    copy); :meth:`forward_routed` returns them with the logits.
    """

    def __init__(self, backbone: Backbone, num_classes: int, freeze: str = "conv") -> None:
        super().__init__()
        if freeze not in FREEZE_MODES:
            raise ValueError(f"freeze must be one of {FREEZE_MODES}, got {freeze!r}")
        backbone = backbone.for_task(num_classes)
        self.freeze = freeze
        self.arch = backbone.arch
        self.stem = backbone.stem
        self.frozen_blocks = backbone.blocks
        self.tuned_blocks = copy.deepcopy(backbone.blocks)
        self.head = backbone.head
        for module in self.frozen_blocks.modules():
            if freeze == "block" or isinstance(module, (nn.Conv2d, nn.Linear)):
                for param in module.parameters(recurse=False):
                    param.requires_grad_(False)

    @property
    def num_blocks(self) -> int:
        return len(self.frozen_blocks)

    def train(self, mode: bool = True) -> "TwoPathNetwork":
        super().train(mode)
        if self.freeze == "block":
            self.frozen_blocks.eval()
        return self

    def route(self, x: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def forward(self, x: torch.Tensor, policy: torch.Tensor | None = None) -> torch.Tensor:
        """Logits; ``policy`` (batch, num_blocks), 1 = fine-tuned block, overrides :meth:`route`."""
        return self.forward_routed(x, policy)[0]

    def forward_routed(self, x: torch.Tensor, policy: torch.Tensor | None = None
                       ) -> tuple[torch.Tensor, torch.Tensor]:
        """``(logits, decisions)``: the decisions (batch, num_blocks) are ``policy`` if given, else
        :meth:`route`'s (differentiable in training).

        Evaluation mode with hard decisions that need no gradient runs each copy of a block only
        on the images routed through it (:class:`RoutingPlan`); otherwise both copies run on the
        whole batch and are mixed by the decisions.
        """
        decisions = self.route(x) if policy is None else policy.to(x.dtype)
        if decisions.shape != (x.shape[0], self.num_blocks):
            raise ValueError(f"policy must have shape (batch, {self.num_blocks}), got {tuple(decisions.shape)}")
        h = self.stem(x)
        plan = None if self.training or decisions.requires_grad else RoutingPlan.from_decisions(decisions)
        if plan is not None:
            return self.head(plan.run(self.frozen_blocks, self.tuned_blocks, h)), decisions
        return self.head(self.mix_blocks(h, decisions)), decisions

    def mix_blocks(self, h: torch.Tensor, decisions: torch.Tensor) -> torch.Tensor:
        """Eq. 2 for every block: both copies on the whole batch, mixed by the decisions."""
        for t, (frozen, tuned) in enumerate(zip(self.frozen_blocks, self.tuned_blocks)):
            a = decisions[:, t].view(-1, *[1] * (h.dim() - 1))
            # a ResNet-26 block's shortcut has no parameters: one output serves both copies
            shared = {"shortcut": frozen.shortcut(h)} if isinstance(frozen, BasicBlock26) else {}
            h = (1 - a) * frozen(h, **shared) + a * tuned(h, **shared)
        return h


class SpotTune(TwoPathNetwork):
    """Per-image adaptive fine-tuning: a policy network routes every image (see module doc)."""

    def __init__(self, backbone: Backbone, num_classes: int, freeze: str = "conv",
                 temperature: float = 5.0, test_routing: str = "argmax", policy_width: float = 1.0,
                 policy_input_size: int | None = None) -> None:
        super().__init__(backbone, num_classes, freeze)
        if test_routing not in TEST_ROUTINGS:
            raise ValueError(f"test_routing must be one of {TEST_ROUTINGS}, got {test_routing!r}")
        if policy_input_size is None and backbone.input_size > 64:
            policy_input_size = 64
        self.temperature = temperature
        self.test_routing = test_routing
        self.policy = PolicyNetwork(self.num_blocks, width=policy_width, input_size=policy_input_size)

    def route(self, x: torch.Tensor) -> torch.Tensor:
        sample = self.training or self.test_routing == "sampled"
        return gumbel_softmax_decisions(self.policy(x), self.temperature, sample=sample)


class SpotTuneGlobal(SpotTune):
    """SpotTune-Global (Sec. 3.3): every image should fine-tune the same ``k`` blocks.

    Training adds to the cross-entropy, with ``v_l`` the fraction of the batch that fine-tunes
    block ``l`` (differentiable through the straight-through decisions)::

        lambda_k * (sum_l v_l - k)^2  +  lambda_entropy * sum_l -v_l log v_l

    The first term asks for ``k`` fine-tuned blocks, the second drives each ``v_l`` to 0 or 1,
    i.e. one decision per block shared by all images. The released code omits both terms
    (author, gyhui14/spottune issue #2); their exact weights are not published, so
    ``lambda_k`` and ``lambda_entropy`` are hyperparameters. An exponential moving average
    of ``v_l`` over training batches gives the global routing used at evaluation:
    block ``l`` is fine-tuned for every test image iff its average exceeds 0.5.
    """

    def __init__(self, backbone: Backbone, num_classes: int, k: int | None = None,
                 lambda_k: float = 0.1, lambda_entropy: float = 0.1, ema_momentum: float = 0.9,
                 **kwargs) -> None:
        super().__init__(backbone, num_classes, **kwargs)
        self.k = self.num_blocks // 2 if k is None else int(k)
        if not 0 <= self.k <= self.num_blocks:
            raise ValueError(f"k must be between 0 and {self.num_blocks}, got {self.k}")
        self.lambda_k = lambda_k
        self.lambda_entropy = lambda_entropy
        self.ema_momentum = ema_momentum
        self.register_buffer("finetune_fraction", torch.full((self.num_blocks,), 0.5))

    def route(self, x: torch.Tensor) -> torch.Tensor:
        if self.training:
            decisions = super().route(x)
            with torch.no_grad():
                self.finetune_fraction.mul_(self.ema_momentum).add_(
                    (1 - self.ema_momentum) * decisions.mean(0))
            return decisions
        return (self.finetune_fraction > 0.5).to(x.dtype).expand(x.shape[0], -1)

    def regularizer(self, decisions: torch.Tensor) -> torch.Tensor:
        """The k-block and entropy terms on a forward pass's ``decisions`` (batch, num_blocks)."""
        v = decisions.mean(0)
        k_term = (v.sum() - self.k) ** 2
        entropy = -(v * torch.log(v.clamp_min(1e-8))).sum()
        return self.lambda_k * k_term + self.lambda_entropy * entropy
