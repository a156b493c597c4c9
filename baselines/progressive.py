"""Progressive neural networks (Rusu et al. 2016, "Progressive neural networks", arXiv
1606.04671), built for the suite's residual backbones.

Two columns: the pretrained network, frozen (BatchNorm in eval mode), and a new column of
the same architecture with a new classifier. Layer ``i`` of the new column receives the
previous layer of the frozen column through a lateral adapter (Rusu et al., Eq. 2)::

    h_i^(2) = f(W_i^(2) h_{i-1}^(2) + U_i relu(V_i (alpha_i * h_{i-1}^(1))))

No public ResNet implementation exists; the suite's choices (documented in every run's
config through these hyperparameters):

* "layers" are the residual blocks of the backbone contract; the lateral is added to the
  output of new-column block ``t`` (after its final ReLU, since a block includes its
  activation) and takes the frozen column's *input* to block ``t``: ``h_t^(2) = B_t^(2)(h_{t-1}^(2))
  + L_t(h_{t-1}^(1))``; the head receives ``h_N^(2) + L_{N+1}(h_N^(1))`` (the classifier sees the
  frozen column's last features too, as Rusu's output layer does).
* ``V`` is a 1x1 convolution reducing the channels by ``lateral_reduction`` (Rusu et al. use
  1x1 convolutions for the dimensionality reduction of convolutional laterals), ``U`` a 1x1
  convolution with the block's stride to the block's output channels (``V`` with a bias, ``U``
  without: a BatchNorm follows in the next block or head). A 1x1 convolution with stride ``s``
  is computed as the stride-1 one on every ``s``-th position (``h[..., ::s, ::s]``): the same
  sum per output pixel, and in channels-last the strided kernel's weight gradient corrupts
  memory in PyTorch 2.14 on the CPU when it has few input channels (4 or 6: the laterals of
  EfficientNet-Lite0's early blocks; tests/test_baselines.py reproduces it in a subprocess).
* ``alpha`` is a learned scalar per lateral, initialised to ``alpha_init`` (Rusu et al.
  initialise it to a small value).
* ``column_init``: ``"pretrained"`` (default) starts the new column from the pretrained weights
  (the setting of a fine-tuning comparison from ImageNet; the SpotTune paper does not say how
  its progressive baseline was initialised); ``"random"`` is Rusu et al.'s original (a new
  column from scratch, He initialisation).

Everything of the new column, the laterals and the classifier train with the preset's
optimiser settings. Task-specific parameters: the new column, the laterals, the classifier
(slightly more than one backbone per task).

Hyperparameters: ``column_init`` "pretrained", ``alpha_init`` 0.1, ``lateral_reduction`` 4.
"""
from __future__ import annotations

import copy
from typing import ClassVar

import torch
import torch.nn.functional as F
from torch import nn

from baselines._common import Frozen, init_like_resnet_, module_device
from spottune.backbones.base import Backbone
from spottune.hparams import HParam, integer, number, one_of
from spottune.method_contract import Method, register_method

COLUMN_INITS = ("pretrained", "random")
PROBE_SIZE = 64


class Lateral(nn.Module):
    """``U relu(V (alpha h))``: 1x1 reduction, ReLU, 1x1 projection with stride ``stride``
    (every ``stride``-th position, then a stride-1 convolution; see the module docstring)."""

    def __init__(self, in_channels: int, out_channels: int, stride: int, reduction: int,
                 alpha_init: float) -> None:
        super().__init__()
        hidden = max(1, in_channels // reduction)
        self.stride = stride
        self.alpha = nn.Parameter(torch.tensor(float(alpha_init)))
        self.reduce = nn.Conv2d(in_channels, hidden, 1)
        self.project = nn.Conv2d(hidden, out_channels, 1, bias=False)

    def forward(self, h: torch.Tensor) -> torch.Tensor:
        reduced = F.relu(self.reduce(self.alpha * h))
        return self.project(reduced[..., ::self.stride, ::self.stride])


class ProgressiveNetwork(nn.Module):
    """A frozen pretrained column and a new column joined by laterals at block outputs."""

    def __init__(self, backbone: Backbone, num_classes: int, column_init: str = "pretrained",
                 alpha_init: float = 0.1, lateral_reduction: int = 4) -> None:
        super().__init__()
        if column_init not in COLUMN_INITS:
            raise ValueError(f"column_init must be one of {COLUMN_INITS}, got {column_init!r}")
        source = copy.deepcopy(backbone)
        source.head = nn.Identity()
        self.source_column = Frozen(source)
        column = backbone.for_task(num_classes)
        if column_init == "random":
            init_like_resnet_(column)
        self.stem, self.blocks, self.head = column.stem, column.blocks, column.head
        self.arch = backbone.arch
        shapes = self._probe_shapes(source, backbone.input_size)
        laterals = []
        for (c_in, s_in), (c_out, s_out) in zip(shapes[:-1], shapes[1:]):
            laterals.append(Lateral(c_in, c_out, max(1, s_in // s_out), lateral_reduction, alpha_init))
        c_last = shapes[-1][0]
        laterals.append(Lateral(c_last, c_last, 1, lateral_reduction, alpha_init))
        self.laterals = nn.ModuleList(laterals).to(module_device(backbone))

    @staticmethod
    @torch.no_grad()
    def _probe_shapes(column: Backbone, input_size: int) -> list[tuple[int, int]]:
        """(channels, spatial size) of the stem output and of every block output."""
        size = min(input_size, PROBE_SIZE)
        h = column.stem(torch.zeros(1, 3, size, size, device=module_device(column)))
        shapes = [(h.shape[1], h.shape[-1])]
        for block in column.blocks:
            h = block(h)
            shapes.append((h.shape[1], h.shape[-1]))
        return shapes

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        source = self.source_column.module
        h_source = source.stem(x)
        h = self.stem(x)
        for source_block, block, lateral in zip(source.blocks, self.blocks, self.laterals):
            h = block(h) + lateral(h_source)
            h_source = source_block(h_source)
        return self.head(h + self.laterals[-1](h_source))


@register_method("progressive")
class Progressive(Method):
    """Progressive network: frozen pretrained column + new column with lateral adapters."""

    families = ("cnn", "mbconv")  # convolutional laterals between block outputs

    hparams: ClassVar[dict[str, HParam]] = {
        "column_init": HParam("pretrained", one_of(COLUMN_INITS), "the new column's initialisation"),
        "alpha_init": HParam(0.1, number(), "initial scale of each lateral connection"),
        "lateral_reduction": HParam(4, integer(1), "a lateral's width is the block's width / this"),
    }

    def build(self, backbone: Backbone, num_classes: int) -> nn.Module:
        return ProgressiveNetwork(backbone, num_classes, column_init=self.hp["column_init"],
                                  alpha_init=self.hp["alpha_init"],
                                  lateral_reduction=int(self.hp["lateral_reduction"]))
