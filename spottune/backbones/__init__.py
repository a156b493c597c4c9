"""Backbones as ``stem`` / ``blocks`` / ``head`` (see :mod:`spottune.backbones.base`)."""
from spottune.backbones.base import Backbone, Head, backbone_size, count_parameters
from spottune.backbones.released_checkpoint import (ReleasedCheckpointError, file_sha256, load_released_resnet26,
                                                    read_released_checkpoint)
from spottune.backbones.resnet26 import resnet26
from spottune.backbones.torchvision_resnet import TORCHVISION_RESNETS, from_torchvision, torchvision_resnet
from spottune.backbones.vit import VIT_ARCHS, is_vit, load_vit, read_weights, vit

__all__ = ["Backbone", "Head", "backbone_size", "count_parameters", "load_released_resnet26",
           "ReleasedCheckpointError", "file_sha256", "read_released_checkpoint",
           "resnet26", "from_torchvision", "torchvision_resnet", "TORCHVISION_RESNETS",
           "VIT_ARCHS", "is_vit", "load_vit", "read_weights", "vit"]
