"""Series residual adapters (Rebuffi, Bilen, Vedaldi 2017; srebuffi/residual_adapters
``models.py``): a 1x1 convolution after a 3x3 one, ``y = conv(x); y + A(BN_a(y))``.

Part of the backbones because a source network can be pretrained with them in it (the official
"network with series adapters in it", the suite's pretraining with ``series_adapters: true``:
:mod:`spottune.pretraining.weights`); the ``residual_adapters_series`` method (``baselines/residual_adapters.py``)
trains them on a target task.
"""
from __future__ import annotations

import torch
from torch import nn

from spottune.backbones.resnet26 import init_conv_
from spottune.backbones.surgery import is_conv, replace_modules


def init_adapter_(conv: nn.Conv2d, init: str) -> nn.Conv2d:
    """An adapter's 1x1 convolution: zero (``init="zero"``) or drawn as every convolution of the
    network (``"released"``, the official code's)."""
    if init == "zero":
        nn.init.zeros_(conv.weight)
        return conv
    return init_conv_(conv)


class SeriesAdapter(nn.Module):
    """``y = conv(x); y + A(BN_a(y))`` (the BN that follows in the block stays in place)."""

    def __init__(self, conv: nn.Conv2d, init: str) -> None:
        super().__init__()
        self.conv = conv
        channels = conv.out_channels
        self.adapter = nn.Sequential(nn.BatchNorm2d(channels),
                                     init_adapter_(nn.Conv2d(channels, channels, 1, bias=False), init))
        self.adapter.to(conv.weight.device)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.conv(x)
        return y + self.adapter(y)


def add_series_adapters(network: nn.Module, init: str = "released") -> list[SeriesAdapter]:
    """Wrap every 3x3 convolution of ``network`` in a :class:`SeriesAdapter`, in place; the
    adapters in module order (the convolutions keep their ``requires_grad``)."""
    replace_modules(network, lambda _, m: is_conv(m, 3), lambda conv: SeriesAdapter(conv, init))
    return [m for m in network.modules() if isinstance(m, SeriesAdapter)]


def remove_series_adapters(network: nn.Module) -> list[dict[str, torch.Tensor]]:
    """Put every wrapped convolution back in place of its :class:`SeriesAdapter`; the adapters'
    BatchNorm states in module order (what a backbone pretrained with them keeps)."""
    adapters = [m for m in network.modules() if isinstance(m, SeriesAdapter)]
    states = [{k: v.detach().to("cpu", copy=True) for k, v in a.adapter[0].state_dict().items()
               if k != "num_batches_tracked"} for a in adapters]
    replace_modules(network, lambda _, m: isinstance(m, SeriesAdapter), lambda adapter: adapter.conv)
    return states
