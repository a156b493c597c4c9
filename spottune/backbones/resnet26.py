"""ResNet-26 of Rebuffi et al. (2017), the Visual Decathlon backbone (srebuffi/residual_adapters, ``models.py``).

Stem: conv3x3 3->32 (stride 1) + BN, no ReLU. Three stages of four basic blocks with widths
64/128/256; the first block of every stage has stride 2 and a parameter-free shortcut
(AvgPool2d(2) followed by concatenating as many zero channels), the others an identity
shortcut. Block: ``relu(shortcut(x) + BN(conv3x3(relu(BN(conv3x3(x))))))``. Head: BN + ReLU,
global average pool, linear. Convolutions are initialised N(0, sqrt(2 / (k*k*out))), BN to
1 / 0. A ``width`` factor scales every width (the embedded default uses 0.25).
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from spottune.backbones.base import Backbone, Head

STAGE_WIDTHS = (64, 128, 256)
STEM_WIDTH = 32
BLOCKS_PER_STAGE = 4


def conv3x3(in_ch: int, out_ch: int, stride: int = 1) -> nn.Conv2d:
    return nn.Conv2d(in_ch, out_ch, kernel_size=3, stride=stride, padding=1, bias=False)


class ZeroPadShortcut(nn.Module):
    """Parameter-free downsampling shortcut: AvgPool2d(2), then zero channels up to ``out_ch``."""

    def __init__(self, in_ch: int, out_ch: int) -> None:
        super().__init__()
        self.pool = nn.AvgPool2d(2)
        self.extra = out_ch - in_ch

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.pool(x)
        return F.pad(x, (0, 0, 0, 0, 0, self.extra))


class BasicBlock26(nn.Module):
    """``relu(shortcut(x) + bn2(conv2(relu(bn1(conv1(x))))))``.

    The shortcut has no parameters, so two copies of a block compute the same ``shortcut(x)``:
    SpotTune's two-path network computes it once and passes it to both (``forward(x, shortcut)``).
    """

    def __init__(self, in_ch: int, out_ch: int, stride: int) -> None:
        super().__init__()
        self.conv1 = conv3x3(in_ch, out_ch, stride)
        self.bn1 = nn.BatchNorm2d(out_ch)
        self.conv2 = conv3x3(out_ch, out_ch)
        self.bn2 = nn.BatchNorm2d(out_ch)
        self.shortcut: nn.Module = (ZeroPadShortcut(in_ch, out_ch)
                                    if stride != 1 or in_ch != out_ch else nn.Identity())

    def residual(self, x: torch.Tensor) -> torch.Tensor:
        return self.bn2(self.conv2(F.relu(self.bn1(self.conv1(x)))))

    def forward(self, x: torch.Tensor, shortcut: torch.Tensor | None = None) -> torch.Tensor:
        """The block's output; ``shortcut``: ``self.shortcut(x)`` if already computed."""
        return F.relu((self.shortcut(x) if shortcut is None else shortcut) + self.residual(x))


def init_conv_(conv: nn.Conv2d) -> nn.Conv2d:
    """N(0, sqrt(2 / (k_h * k_w * out_channels))): He init, fan-out mode (ResNet-26 and torchvision)."""
    fan_out = conv.kernel_size[0] * conv.kernel_size[1] * conv.out_channels
    with torch.no_grad():
        conv.weight.normal_(0.0, math.sqrt(2.0 / fan_out))
        if conv.bias is not None:
            conv.bias.zero_()
    return conv


def _init_rebuffi(module: nn.Module) -> None:
    for m in module.modules():
        if isinstance(m, nn.Conv2d):
            init_conv_(m)
        elif isinstance(m, nn.BatchNorm2d):
            nn.init.ones_(m.weight)
            nn.init.zeros_(m.bias)


def resnet26(num_classes: int, width: float = 1.0, blocks_per_stage: int = BLOCKS_PER_STAGE,
             input_size: int = 64) -> Backbone:
    """The Decathlon ResNet-26 (``blocks_per_stage=1`` gives SpotTune's policy network body)."""
    stem_w = int(STEM_WIDTH * width)
    widths = [int(w * width) for w in STAGE_WIDTHS]
    stem = nn.Sequential(conv3x3(3, stem_w), nn.BatchNorm2d(stem_w))
    blocks: list[nn.Module] = []
    in_ch = stem_w
    for w in widths:
        for b in range(blocks_per_stage):
            blocks.append(BasicBlock26(in_ch, w, stride=2 if b == 0 else 1))
            in_ch = w
    head = Head(nn.Sequential(nn.BatchNorm2d(in_ch), nn.ReLU(inplace=True)),
                nn.Linear(in_ch, num_classes))
    # depth = stem conv + two convs per block + classifier: 26 for four blocks per stage
    net = Backbone(stem, blocks, head, arch=f"resnet{2 + 6 * blocks_per_stage}", input_size=input_size)
    _init_rebuffi(net)
    return net
