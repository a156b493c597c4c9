"""torchvision ResNets (18 to 152) seen through the backbone contract.

``stem = conv1, bn1, relu, maxpool``; ``blocks`` = every BasicBlock / Bottleneck of
``layer1..layer4`` in order (each already holds its downsample shortcut and final ReLU);
``head = avgpool + fc``. The converted network shares the modules of the torchvision model,
so its outputs are identical to torchvision's.
"""
from __future__ import annotations

import torch
import torchvision
from torch import nn

from spottune.backbones.base import Backbone, Head

TORCHVISION_RESNETS = ("resnet18", "resnet34", "resnet50", "resnet101", "resnet152")


def from_torchvision(model: torchvision.models.ResNet, arch: str = "resnet") -> Backbone:
    """Split a torchvision ``ResNet`` into stem / blocks / head (modules are shared, not copied)."""
    if not isinstance(model, torchvision.models.ResNet):
        raise TypeError(f"from_torchvision expects a torchvision.models.ResNet, got {type(model).__name__}")
    stem = nn.Sequential(model.conv1, model.bn1, model.relu, model.maxpool)
    blocks = [block for layer in (model.layer1, model.layer2, model.layer3, model.layer4) for block in layer]
    return Backbone(stem, blocks, Head(nn.Identity(), model.fc), arch=arch, input_size=224)


def torchvision_resnet(arch: str, num_classes: int, state_dict: dict[str, torch.Tensor] | None = None) -> Backbone:
    """Build ``torchvision.models.<arch>`` (random init, no download) and convert it.

    ``state_dict``: weights of that torchvision architecture (e.g. the ImageNet weights a user
    downloaded once), classifier included: it must have ``num_classes`` outputs and is kept (LwF
    distils from it). Without weights the network gets a new ``num_classes`` classifier.
    """
    if arch not in TORCHVISION_RESNETS:
        raise ValueError(f"unknown torchvision ResNet {arch!r}; known: {', '.join(TORCHVISION_RESNETS)}")
    build = getattr(torchvision.models, arch)
    if state_dict is None:
        backbone = from_torchvision(build(weights=None), arch=arch)
        backbone.reset_classifier(num_classes)
        return backbone
    model = build(weights=None, num_classes=num_classes)
    model.load_state_dict(state_dict)
    return from_torchvision(model, arch=arch)
