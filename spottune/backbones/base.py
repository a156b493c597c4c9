"""The backbone contract: ``stem`` -> ordered residual ``blocks`` -> ``head``.

Every method in the suite sees a network through this shape. A block maps a feature map
(a ResNet's (batch, C, H, W), a ViT's tokens (batch, N, D)) to the next one and includes its
shortcut and its final activation, so that SpotTune can route an image through one of two
copies of a block, progressive networks can tap block outputs, and "fine-tune the last k
blocks" is a slice of a list. ``Backbone.family`` (:data:`FAMILIES`) says which kind of
network it is, for methods that only apply to some: ``cnn`` (ResNets: basic or bottleneck
residual blocks of full 3x3 convolutions), ``mbconv`` (EfficientNet: inverted-residual blocks
around a depthwise convolution) or ``vit`` (transformer blocks).
"""
from __future__ import annotations

import copy
import math

import torch
from torch import nn


FAMILIES = ("cnn", "mbconv", "vit")


class Head(nn.Module):
    """``fc(flatten(pool(pre(x))))``: optional pre-pool layers, pooling (global average by
    default; a ViT takes its class token), classifier."""

    def __init__(self, pre: nn.Module, fc: nn.Linear, pool: nn.Module | None = None) -> None:
        super().__init__()
        self.pre = pre
        self.pool = nn.AdaptiveAvgPool2d(1) if pool is None else pool
        self.fc = fc

    def features(self, x: torch.Tensor) -> torch.Tensor:
        """Pooled features, shape (batch, fc.in_features)."""
        return torch.flatten(self.pool(self.pre(x)), 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(self.features(x))


class Backbone(nn.Module):
    """A residual network split as ``stem``, ``blocks`` (``nn.ModuleList``) and ``head``.

    ``arch`` names the architecture (``resnet26``, ``resnet50``, ...) and ``input_size`` the
    image side the network was built for; both are recorded in run configs. ``family`` is
    one of :data:`FAMILIES`.
    """

    def __init__(self, stem: nn.Module, blocks: list[nn.Module], head: Head, arch: str,
                 input_size: int, family: str = "cnn") -> None:
        super().__init__()
        if family not in FAMILIES:
            raise ValueError(f"family must be one of {FAMILIES}, got {family!r}")
        self.family = family
        self.stem = stem
        self.blocks = nn.ModuleList(blocks)
        self.head = head
        self.arch = arch
        self.input_size = input_size
        # where the weights come from (spottune.pretraining.weights): {kind, id, dataset, split, test_accuracy}
        self.pretraining: dict | None = None
        # a source pretrained with series adapters in it (residual_adapters' second released
        # network): each adapter's BatchNorm, one per 3x3 convolution in module order; its
        # convolutions were trained with the adapters, so only the series adapters may use it
        self.series_adapter_bns: list[dict[str, torch.Tensor]] | None = None

    @property
    def num_blocks(self) -> int:
        return len(self.blocks)

    @property
    def feature_dim(self) -> int:
        return self.head.fc.in_features

    def for_task(self, num_classes: int, with_series_adapters: bool = False) -> "Backbone":
        """A deep copy (``self`` is left untouched) with a new ``num_classes`` classifier: the
        starting point of every method's model for a target task. A backbone pretrained with
        series adapters in it is refused unless the caller puts them back
        (``with_series_adapters``): without them it is not the network that was pretrained."""
        if self.series_adapter_bns is not None and not with_series_adapters:
            raise ValueError("this backbone was pretrained with series adapters in it (backbone.pretrained: "
                             f"{(self.pretraining or {}).get('kind')} with series adapters); only "
                             "residual_adapters_series can start from it")
        model = copy.deepcopy(self)
        model.reset_classifier(num_classes)
        return model

    def reset_classifier(self, num_classes: int) -> None:
        """Replace the classifier by a new one for ``num_classes`` (default PyTorch init)."""
        old = self.head.fc
        self.head.fc = nn.Linear(old.in_features, num_classes).to(old.weight.device)

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        x = self.stem(x)
        for block in self.blocks:
            x = block(x)
        return x

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.forward_features(x))


HEAD_INITS = ("pytorch", "vpt", "timm")


def init_classifier_(fc: nn.Linear, scheme: str) -> nn.Linear:
    """Initialise a new classifier as its source does; returns it.

    * ``pytorch``: ``nn.Linear``'s own (weight and bias uniform in +-1/sqrt(fan_in)), kept as built;
    * ``vpt``: KMnP/vpt ``src/models/mlp.py`` lines 53-57 with ``special_bias=True``
      (``src/models/vit_models.py`` lines 160-165): weight ``kaiming_normal_(a=0,
      mode='fan_out')`` (std sqrt(2 / classes)), bias ``-log((1 - 0.01) / 0.01)`` (a prior of 1 %);
    * ``timm``: timm's ``init_weights_vit_timm`` as dongzelian/SSF ``models/vision_transformer.py``
      lines 550-555 run it on the new head: weight truncated normal, std 0.02, bias 0.
    """
    if scheme not in HEAD_INITS:
        raise ValueError(f"unknown head_init {scheme!r}; use one of {', '.join(HEAD_INITS)}")
    with torch.no_grad():
        if scheme == "vpt":
            nn.init.kaiming_normal_(fc.weight, a=0, mode="fan_out")
            nn.init.constant_(fc.bias, -math.log((1 - 0.01) / 0.01))
        elif scheme == "timm":
            nn.init.trunc_normal_(fc.weight, std=0.02)
            nn.init.zeros_(fc.bias)
    return fc


def count_parameters(module: nn.Module, trainable_only: bool = False) -> int:
    """Number of scalar parameters (optionally only those with ``requires_grad``)."""
    return sum(p.numel() for p in module.parameters() if p.requires_grad or not trainable_only)


def backbone_size(backbone: Backbone) -> int:
    """Parameters of a backbone without its classifier: the unit of the Decathlon "#par"."""
    return count_parameters(backbone) - count_parameters(backbone.head.fc)
