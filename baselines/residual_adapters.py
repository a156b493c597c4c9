"""Residual adapters, series (Rebuffi, Bilen, Vedaldi, NeurIPS 2017, "Learning multiple visual
domains with residual adapters") and parallel (Rebuffi, Bilen, Vedaldi, CVPR 2018, "Efficient
parametrization of multi-domain deep neural networks"); official code srebuffi/residual_adapters.

Each adapted convolution ``W`` (3x3, frozen: shared by all tasks) followed by its BatchNorm
becomes (``A``: a task-specific 1x1 convolution, as in the official ``models.py``)::

    series:    y = W * x;   y = y + A * BN_a(y);   out = BN(y)
    parallel:  out = BN(W * x + A_s * x)        (A_s has W's stride)

Task-specific: the adapters (with the series adapter's own BN_a), every BatchNorm of the
network (affine parameters and statistics) and the classifier; every original convolution
weight is frozen. ``adapt``: ``"3x3"`` (default) adapts every 3x3 convolution, which on
ResNet-26 is every convolution, stem included, as in the official code; on torchvision
bottlenecks it is the middle convolution of each block, while the 1x1 convolutions and the 7x7
stem stay frozen without adapter (an adapter on a 1x1 convolution has as many parameters as
the convolution itself). ``"all"`` adapts every convolution.

Initialisation (``adapter_init``): ``"released"`` (default), as the official code does it:
adapters are drawn like every convolution of the network, N(0, sqrt(2 / out_channels)), the
series BN_a is new (1 / 0), and the BN after the adapter keeps the pretrained values. The
network at initialisation is therefore *not* the pretrained one. ``"zero"``: adapters start
at zero, so both kinds are exactly the identity at initialisation (parallel: ``W*x + 0``;
series: ``y + 0``) and the network reproduces the pretrained one. Note: the official series
results use a backbone pretrained *with* series adapters in it; starting from a plain
pretrained network is its "off the shelf" setting (CIFAR-100 val 70.72 vs 80.17 in the official
README). A backbone pretrained with series adapters in it (the second released network, or the
suite's pretraining with ``series_adapters: true``) carries its adapters' BatchNorms
(``Backbone.series_adapter_bns``); the series adapters then start as the official script starts
them: 3x3 convolutions and every BatchNorm, the adapters' included, from that source, and the
1x1 adapter convolutions new (that script copies only 3x3 convolutions and BatchNorms).

Optimisation (official README commands): SGD momentum 0.9, lr 0.1, 120 epochs, x0.1 at 80
and 100, batch 128; weight decay 1e-4 on the adapters (``adapter_weight_decay``, ``--wd1x1 1``)
and, as intended, 5e-4 on BN and classifier (the preset's ``weight_decay``, ``--wd 5``).

``weight_decay_protocol``: ``"as_run"`` (default) reproduces what the official ``sgd.py``
does: the optimiser holds one group of the trainable parameters in registration order, and the
decay variable, set to ``--wd`` at the group's start, switches to the 1x1 value at the first 1x1
convolution and is never reset (the 3x3 convolutions that would switch it again are frozen and
not in the group). So every parameter from the first adapter convolution on decays at 1e-4
(parallel: all of them; series: all but the first adapter's BatchNorm, which comes before its
1x1 convolution and keeps 5e-4). ``"as_intended"``: adapters at ``adapter_weight_decay``,
BatchNorms and classifier at ``weight_decay``.

Hyperparameters: ``adapt`` "3x3", ``adapter_init`` "released", ``adapter_weight_decay`` 1e-4,
``weight_decay_protocol`` "as_run".
"""
from __future__ import annotations

from typing import ClassVar

import torch
from torch import nn

from baselines._common import freeze_convs_, is_conv, replace_modules
from spottune.backbones.base import Backbone
from spottune.backbones.series_adapters import SeriesAdapter, init_adapter_
from spottune.hparams import NON_NEGATIVE, HParam, one_of
from spottune.method_contract import Method, ParamGroup, param_group, parameters_except, register_method

ADAPT = ("3x3", "all")
ADAPTER_INITS = ("released", "zero")
WEIGHT_DECAY_PROTOCOLS = ("as_run", "as_intended")


class ParallelAdapter(nn.Module):
    """``conv(x) + A_s(x)`` with a strided 1x1 adapter ``A_s``."""

    def __init__(self, conv: nn.Conv2d, init: str) -> None:
        super().__init__()
        if conv.groups != 1 or tuple(conv.dilation) != (1, 1):
            raise ValueError("parallel adapters need an ungrouped, undilated convolution")
        self.conv = conv
        self.adapter = init_adapter_(nn.Conv2d(conv.in_channels, conv.out_channels, 1,
                                                stride=conv.stride, bias=False), init)
        self.adapter.to(conv.weight.device)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv(x) + self.adapter(x)


class _ResidualAdapters(Method):
    families = ("cnn",)  # adapters on 3x3 convolutions
    family_note: ClassVar[str] = ("adapters on the full 3x3 convolutions of ResNet blocks; an MBConv block's 3x3 or "
                                  "5x5 convolution is depthwise (one filter per channel, k*k*C weights), beside "
                                  "which a 1x1 adapter (C*C weights) would outweigh the convolution it adapts, "
                                  "and a ViT has no convolutions")
    hparams: ClassVar[dict[str, HParam]] = {
        "adapt": HParam("3x3", one_of(ADAPT), "which convolutions get an adapter"),
        "adapter_init": HParam("released", one_of(ADAPTER_INITS), "adapters' initialisation"),
        "adapter_weight_decay": HParam(1e-4, NON_NEGATIVE, "adapters' weight decay (as_intended)"),
        "weight_decay_protocol": HParam("as_run", one_of(WEIGHT_DECAY_PROTOCOLS),
                                        "the released code's weight decay as run or as intended"),
    }
    protocol_keys: ClassVar[tuple[str, ...]] = ("adapter_init", "weight_decay_protocol")
    adapter_class: ClassVar[type[nn.Module]]

    def build(self, backbone: Backbone, num_classes: int) -> nn.Module:
        adapt, init = self.hp["adapt"], self.hp["adapter_init"]
        model = freeze_convs_(backbone.for_task(num_classes, with_series_adapters=self.adapter_class is SeriesAdapter))
        kernel = 3 if adapt == "3x3" else None
        replace_modules(model, lambda _, m: is_conv(m, kernel), lambda conv: self.adapter_class(conv, init))
        if model.series_adapter_bns is not None:  # a source pretrained with series adapters in it
            adapters = [m for m in model.modules() if isinstance(m, SeriesAdapter)]
            if adapt != "3x3" or len(adapters) != len(model.series_adapter_bns):
                raise ValueError(f"the backbone's {len(model.series_adapter_bns)} pretrained series adapters need "
                                 f"adapt: 3x3 on the same network ({len(adapters)} adapters here)")
            for adapter, state in zip(adapters, model.series_adapter_bns):
                adapter.adapter[0].load_state_dict(state, strict=False)
        return model

    def param_groups(self, model: nn.Module) -> list[ParamGroup]:
        protocol, lr = self.hp["weight_decay_protocol"], self.hp["lr"]
        adapters = [p for m in model.modules() if isinstance(m, self.adapter_class)
                    for p in m.adapter.parameters()]
        if protocol == "as_intended":
            return [param_group("adapters", adapters, lr, self.hp["adapter_weight_decay"]),
                    param_group("bn_classifier", parameters_except(model, adapters), lr, self.hp["weight_decay"])]
        trainable = [p for p in model.parameters() if p.requires_grad]
        adapter_convs = {id(conv.weight) for wrapper in model.modules() if isinstance(wrapper, self.adapter_class)
                         for conv in wrapper.adapter.modules() if isinstance(conv, nn.Conv2d)}
        first = next(i for i, p in enumerate(trainable) if id(p) in adapter_convs)
        return [param_group("before_first_adapter_conv", trainable[:first], lr, self.hp["weight_decay"]),
                param_group("from_first_adapter_conv", trainable[first:], lr, self.hp["adapter_weight_decay"])]


@register_method("residual_adapters_series")
class SeriesResidualAdapters(_ResidualAdapters):
    """Series residual adapters (Rebuffi et al. 2017) on a frozen backbone."""

    adapter_class = SeriesAdapter


@register_method("residual_adapters_parallel")
class ParallelResidualAdapters(_ResidualAdapters):
    """Parallel residual adapters (Rebuffi et al. 2018) on a frozen backbone."""

    adapter_class = ParallelAdapter
