"""Load the released ResNet-26 ImageNet checkpoint (a pickled whole module) safely.

The checkpoint distributed with residual_adapters / SpotTune is ``torch.save({'net': model})``
of a Python 2 module tree (classes ``models.ResNet``, ``models.conv_task``, ...). Unpickling it
normally would import and run those classes. Here every class the pickle names, other than
the few tensor-rebuilding functions of torch, is replaced by an inert stand-in that only stores
the state it is given; nothing from the file is executed. The 3x3 convolution weights and the
BatchNorm tensors are then read in module order and copied, in the same order, into the
suite's :func:`~spottune.backbones.resnet26.resnet26` (1x1 adapter convolutions and the
classifier are ignored: the classifier is task-specific).
"""
from __future__ import annotations

import collections
import pickle
from pathlib import Path
from typing import Any

import torch
from torch import nn

from spottune.backbones.base import Backbone

_ALLOWED_GLOBALS = {
    ("collections", "OrderedDict"): collections.OrderedDict,
    ("torch._utils", "_rebuild_tensor"): torch._utils._rebuild_tensor,
    ("torch._utils", "_rebuild_tensor_v2"): torch._utils._rebuild_tensor_v2,
    ("torch._utils", "_rebuild_parameter"): torch._utils._rebuild_parameter,
    ("torch", "Size"): torch.Size,
}
_STORAGE_NAMES = {"FloatStorage", "DoubleStorage", "HalfStorage", "LongStorage", "IntStorage",
                  "ByteStorage", "BoolStorage", "BFloat16Storage", "UntypedStorage"}


class InertObject:
    """Stand-in for any class named by the checkpoint: keeps constructor args and state only."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        self.__dict__["_inert_args"] = args

    def __setstate__(self, state: Any) -> None:
        if isinstance(state, tuple) and len(state) == 2 and isinstance(state[0], dict):
            state = {**state[0], **(state[1] or {})}
        if isinstance(state, dict):
            self.__dict__.update(state)
        else:
            self.__dict__["_inert_state"] = state


def _inert_class(module: str, name: str) -> type:
    return type(name, (InertObject,), {"__module__": f"inert.{module}"})


def _inert_reconstructor(cls: type, base: type, state: Any) -> Any:
    """Replacement for ``copyreg._reconstructor`` (Python 2 pickles of new-style classes)."""
    return cls.__new__(cls) if issubclass(cls, InertObject) else _inert_class("?", "?")()


class _SafeUnpickler(pickle.Unpickler):
    def find_class(self, module: str, name: str) -> Any:
        if (module, name) in _ALLOWED_GLOBALS:
            return _ALLOWED_GLOBALS[(module, name)]
        if module == "torch" and name in _STORAGE_NAMES:
            return getattr(torch, name)
        if module == "copyreg" and name == "_reconstructor" or module == "copy_reg":
            return _inert_reconstructor
        return _inert_class(module, name)


class _SafePickleModule:
    """The ``pickle_module`` handed to ``torch.load``."""

    Unpickler = _SafeUnpickler
    load = pickle.load
    __name__ = "spottune_safe_pickle"


def _children(obj: Any) -> list[Any]:
    modules = obj.__dict__.get("_modules") or {}
    return list(modules.values())


def _walk(obj: Any) -> list[Any]:
    out = [obj]
    for child in _children(obj):
        if child is not None:
            out.extend(_walk(child))
    return out


def _tensor(obj: Any, name: str) -> torch.Tensor | None:
    for store in ("_parameters", "_buffers"):
        value = (obj.__dict__.get(store) or {}).get(name)
        if value is not None:
            return value.detach() if isinstance(value, torch.Tensor) else value
    return None


def read_released_tensors(path: str | Path) -> tuple[list[torch.Tensor], list[dict[str, torch.Tensor]]]:
    """3x3 conv weights and BatchNorm tensors of the pickled module, in module order."""
    blob = torch.load(str(path), map_location="cpu", pickle_module=_SafePickleModule,
                      weights_only=False, encoding="latin1")
    root = blob["net"] if isinstance(blob, dict) and "net" in blob else blob
    convs, bns = [], []
    for obj in _walk(root):
        kind = type(obj).__name__
        if kind == "Conv2d":
            weight = _tensor(obj, "weight")
            if weight is not None and weight.dim() == 4 and weight.shape[-1] == 3:
                convs.append(weight)
        elif kind == "BatchNorm2d":
            bns.append({k: _tensor(obj, k) for k in ("weight", "bias", "running_mean", "running_var")})
    return convs, bns


def load_released_resnet26(path: str | Path, backbone: Backbone) -> Backbone:
    """Copy the released checkpoint's conv and BN tensors into ``backbone`` (a ResNet-26) in place."""
    convs, bns = read_released_tensors(path)
    own_convs = [m for m in backbone.modules() if isinstance(m, nn.Conv2d) and m.kernel_size == (3, 3)]
    own_bns = [m for m in backbone.modules() if isinstance(m, nn.BatchNorm2d)]
    if len(convs) != len(own_convs) or len(bns) != len(own_bns):
        raise ValueError(
            f"{path}: found {len(convs)} 3x3 convolutions and {len(bns)} BatchNorm layers, the suite's "
            f"{backbone.arch} has {len(own_convs)} and {len(own_bns)}. Is this the ResNet-26 checkpoint "
            f"(e.g. imnet.t7 / resnet26_pretrained.t7) and the right --set width=...?")
    with torch.no_grad():
        for mine, theirs in zip(own_convs, convs):
            if mine.weight.shape != theirs.shape:
                raise ValueError(f"{path}: conv weight of shape {tuple(theirs.shape)} where "
                                 f"{tuple(mine.weight.shape)} was expected: check backbone.width")
            mine.weight.copy_(theirs)
        for mine, theirs in zip(own_bns, bns):
            for key, value in theirs.items():
                if value is not None:
                    getattr(mine, key).copy_(value)
    return backbone
