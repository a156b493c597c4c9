"""Backbones as ``stem`` / ``blocks`` / ``head`` (see :mod:`spottune.backbones.base`)."""
from spottune.backbones.base import Backbone, Head, backbone_size, count_parameters
from spottune.backbones.efficientnet_lite import ARCH as EFFICIENTNET_ARCH
from spottune.backbones.efficientnet_lite import efficientnet_lite0, is_efficientnet, load_package_weights
from spottune.backbones.released_checkpoint import (ReleasedCheckpointError, file_sha256, load_released_resnet26,
                                                    read_released_checkpoint)
from spottune.backbones.resnet26 import resnet26
from spottune.backbones.torchvision_resnet import TORCHVISION_RESNETS, from_torchvision, torchvision_resnet
from spottune.backbones.vit import VIT_ARCHS, is_vit, load_vit, read_weights, vit


def architectures() -> dict[str, list[str]]:
    """The architectures the suite builds, by family (``run_all.py --list``)."""
    return {"cnn": ["resnet26", *TORCHVISION_RESNETS], "mbconv": [EFFICIENTNET_ARCH], "vit": list(VIT_ARCHS)}


def arch_family(arch: str) -> str:
    """The :data:`spottune.backbones.base.FAMILIES` entry of an architecture of the suite:
    ``vit`` for the ViTs, ``mbconv`` for EfficientNet-Lite0, ``cnn`` for the ResNets."""
    if is_vit(arch):
        return "vit"
    return "mbconv" if is_efficientnet(arch) else "cnn"


__all__ = ["Backbone", "Head", "architectures", "arch_family", "backbone_size", "count_parameters", "load_released_resnet26",
           "ReleasedCheckpointError", "file_sha256", "read_released_checkpoint",
           "efficientnet_lite0", "is_efficientnet", "load_package_weights",
           "resnet26", "from_torchvision", "torchvision_resnet", "TORCHVISION_RESNETS",
           "VIT_ARCHS", "is_vit", "load_vit", "read_weights", "vit"]
