"""Read the released ResNet-26 ImageNet checkpoint (a pickled whole module) without executing it.

The checkpoint distributed with residual_adapters / SpotTune (``resnet26_pretrained.t7``) is
``torch.save({'net': model})`` of a Python 2 module tree (classes ``models.ResNet``,
``models.conv_task``, ...), written by PyTorch 0.3 / 0.4.x in the legacy (non-zip) container.
Such a file is a sequence of pickles: the magic number, the protocol version, the system
information, the object tree, the storage keys, then the raw storages. Newer files (PyTorch
1.6+) are a zip archive holding one pickle.

Every one of those pickles, headers included, goes through one restricted unpickler
(:class:`_RestrictedUnpickler`, handed to ``torch.load`` as its ``pickle_module`` for both
its ``load`` and its ``Unpickler``):

* allowed: the tensor rebuilders of ``torch._utils`` (``_rebuild_tensor`` of 0.3,
  ``_rebuild_tensor_v2`` of 0.4+, ``_rebuild_parameter`` of 1.x), ``torch.Size`` and
  ``collections.OrderedDict`` (storages are resolved by ``torch.load`` itself);
* ``torch.nn.parameter.Parameter`` as 0.3 (``Parameter(data)`` + a state) and 0.4.x
  (``Parameter(data, requires_grad)``) pickle it is rebuilt as its plain data tensor;
* every other name (the module classes, ``os.system``, ``builtins.eval``, ...) becomes an
  inert stand-in that only stores the arguments and state it is given.

Nothing named by the file is imported or called, so a hostile file cannot run code: it fails
with :class:`ReleasedCheckpointError` naming the file. The 3x3 convolutions, the BatchNorm
layers (in module order) and the ImageNet classifier (``linears[0]``) are then read from the
inert tree, as the official training scripts read them (``train_new_task_*.py`` walk
``named_modules()`` in order and take the 3x3 convolutions and the BatchNorms).
"""
from __future__ import annotations

import collections
import hashlib
import pickle
import tarfile
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

import torch
from torch import nn

from spottune.backbones.base import Backbone


class ReleasedCheckpointError(ValueError):
    """The file is not a readable released checkpoint (corrupt, hostile or of another network)."""


class InertObject:
    """Stand-in for any class or function named by the checkpoint: keeps arguments and state only."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        self.__dict__["_inert_args"] = args

    def __setstate__(self, state: Any) -> None:
        if isinstance(state, tuple) and len(state) == 2 and isinstance(state[0], dict):
            state = {**state[0], **(state[1] or {})}  # (dict state, slot state)
        if isinstance(state, dict):
            self.__dict__.update({k: v for k, v in state.items() if isinstance(k, str)})
        else:
            self.__dict__["_inert_state"] = state


class LegacyParameter(InertObject):
    """``torch.nn.Parameter`` as PyTorch 0.3 / 0.4.x pickled it: its first argument is the data."""

    @property
    def data(self) -> Any:
        args = self.__dict__.get("_inert_args") or (None,)
        return args[0]


def _inert_class(module: str, name: str) -> type:
    return type(str(name), (InertObject,), {"__module__": f"inert.{module}"})


def _inert_reconstructor(cls: Any, base: Any = None, state: Any = None) -> Any:
    """Replacement for ``copy_reg._reconstructor`` (protocol 0/1 pickles of new-style classes)."""
    return cls.__new__(cls) if isinstance(cls, type) and issubclass(cls, InertObject) else InertObject()


_ALLOWED: dict[tuple[str, str], Any] = {
    ("collections", "OrderedDict"): collections.OrderedDict,
    ("torch._utils", "_rebuild_tensor"): torch._utils._rebuild_tensor,
    ("torch._utils", "_rebuild_tensor_v2"): torch._utils._rebuild_tensor_v2,
    ("torch._utils", "_rebuild_parameter"): torch._utils._rebuild_parameter,
    ("torch", "Size"): torch.Size,
    ("torch.nn.parameter", "Parameter"): LegacyParameter,
    ("copy_reg", "_reconstructor"): _inert_reconstructor,
    ("copyreg", "_reconstructor"): _inert_reconstructor,
}


class _RestrictedUnpickler(pickle.Unpickler):
    """An unpickler that resolves only :data:`_ALLOWED` names; every other name is inert."""

    def find_class(self, module: str, name: str) -> Any:
        return _ALLOWED.get((module, name)) or _inert_class(module, name)


def _restricted_load(file: IO[bytes], **kwargs: Any) -> Any:
    return _RestrictedUnpickler(file, **kwargs).load()


class _RestrictedPickleModule:
    """The ``pickle_module`` handed to ``torch.load``: both entry points are restricted."""

    __name__ = "spottune_restricted_pickle"
    Unpickler = _RestrictedUnpickler
    load = staticmethod(_restricted_load)


@dataclass
class ReleasedTensors:
    """What the suite takes from a released checkpoint, each list in module order.

    ``bns`` holds every BatchNorm layer of the network (``weight``, ``bias``, ``running_mean``,
    ``running_var``); ``adapter_bns`` those inside series adapters (residual_adapters'
    ``conv1x1`` modules: the network pretrained "with series adapters in it"), empty for the
    plain network; ``classifier`` the source task's linear layer (``weight``, ``bias``) or None
    when the file has none; ``sha256`` identifies the file.
    """

    convs: list[torch.Tensor]
    bns: list[dict[str, torch.Tensor]]
    adapter_bns: list[dict[str, torch.Tensor]]
    classifier: dict[str, torch.Tensor] | None
    sha256: str


def file_sha256(path: str | Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def _as_tensor(value: Any) -> torch.Tensor | None:
    if isinstance(value, LegacyParameter):
        value = value.data
    return value.detach() if isinstance(value, torch.Tensor) else None


def _modules(obj: Any, ancestors: tuple[str, ...] = ()) -> list[tuple[Any, tuple[str, ...]]]:
    """``(module, class names of its ancestors)`` for ``obj`` and its submodules, depth first in
    registration order (``nn.Module.modules()``)."""
    out = [(obj, ancestors)]
    children = obj.__dict__.get("_modules") if isinstance(obj, InertObject) else None
    for child in (children or {}).values():
        if isinstance(child, InertObject):
            out.extend(_modules(child, (*ancestors, type(obj).__name__)))
    return out


def _tensor(module: Any, name: str) -> torch.Tensor | None:
    for store in ("_parameters", "_buffers"):
        table = module.__dict__.get(store)
        if isinstance(table, dict) and table.get(name) is not None:
            return _as_tensor(table[name])
    return None


def read_released_checkpoint(path: str | Path) -> ReleasedTensors:
    """The 3x3 convolutions, BatchNorms and classifier of a released checkpoint, read safely."""
    path = Path(path)
    if tarfile.is_tarfile(path):  # torch.load would extract its members to disk
        raise ReleasedCheckpointError(f"{path}: a tar archive (PyTorch before 0.1.10), not a released checkpoint")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # "couldn't retrieve source code" for every inert class
            blob = torch.load(str(path), map_location="cpu", pickle_module=_RestrictedPickleModule,
                              weights_only=False, encoding="latin1")
    except Exception as err:  # noqa: BLE001 - any failure to parse is the same user error
        raise ReleasedCheckpointError(
            f"{path}: not a readable PyTorch checkpoint ({type(err).__name__}: {err}); "
            f"nothing in it was executed") from None
    root = blob.get("net") if isinstance(blob, dict) else blob
    if not isinstance(root, InertObject):
        raise ReleasedCheckpointError(f"{path}: holds no pickled network ({type(blob).__name__}); the released "
                                      f"checkpoint is torch.save({{'net': model}})")
    convs, bns, adapter_bns, linears = [], [], [], []
    for module, ancestors in _modules(root):
        kind = type(module).__name__
        if kind == "Conv2d":
            weight = _tensor(module, "weight")
            if weight is not None and weight.dim() == 4 and weight.shape[-1] == 3:
                convs.append(weight)
        elif kind == "BatchNorm2d":
            state = {k: _tensor(module, k) for k in ("weight", "bias", "running_mean", "running_var")}
            (adapter_bns if "conv1x1" in ancestors else bns).append(state)
        elif kind == "Linear":
            linears.append({k: _tensor(module, k) for k in ("weight", "bias")})
    if not convs:
        raise ReleasedCheckpointError(f"{path}: the pickled network has no 3x3 convolution")
    return ReleasedTensors(convs, bns, adapter_bns, linears[-1] if linears else None, file_sha256(path))


def _copy_bn_(bn: nn.BatchNorm2d, state: dict[str, torch.Tensor | None]) -> None:
    for key, value in state.items():
        if value is not None:
            getattr(bn, key).copy_(value)


def load_released_resnet26(path: str | Path, backbone: Backbone) -> Backbone:
    """Copy a released checkpoint into ``backbone`` (a ResNet-26) in place: every 3x3 convolution
    and BatchNorm in order, and the source classifier (a new ``head.fc`` of its size). The
    network pretrained with series adapters in it also gives ``backbone.series_adapter_bns``
    (its adapters' 1x1 convolutions are not taken: the official ``train_new_task_adapters.py``
    copies only the 3x3 convolutions and the BatchNorms, adapters' included)."""
    released = read_released_checkpoint(path)
    own_convs = [m for m in backbone.modules() if isinstance(m, nn.Conv2d) and m.kernel_size == (3, 3)]
    own_bns = [m for m in backbone.modules() if isinstance(m, nn.BatchNorm2d)]
    if len(released.convs) != len(own_convs) or len(released.bns) != len(own_bns):
        raise ReleasedCheckpointError(
            f"{path}: found {len(released.convs)} 3x3 convolutions and {len(released.bns)} BatchNorm layers, "
            f"the suite's {backbone.arch} has {len(own_convs)} and {len(own_bns)}. Is this the ResNet-26 "
            f"checkpoint (resnet26_pretrained.t7) and the right backbone.width?")
    with torch.no_grad():
        for mine, theirs in zip(own_convs, released.convs):
            if mine.weight.shape != theirs.shape:
                raise ReleasedCheckpointError(f"{path}: conv weight of shape {tuple(theirs.shape)} where "
                                              f"{tuple(mine.weight.shape)} was expected: check backbone.width")
            mine.weight.copy_(theirs)
        for mine, theirs in zip(own_bns, released.bns):
            _copy_bn_(mine, theirs)
        if released.classifier is not None and released.classifier["weight"] is not None:
            weight, bias = released.classifier["weight"], released.classifier["bias"]
            if weight.shape[1] != backbone.feature_dim:
                raise ReleasedCheckpointError(f"{path}: classifier of {weight.shape[1]} inputs, the backbone has "
                                              f"{backbone.feature_dim} features: check backbone.width")
            backbone.reset_classifier(weight.shape[0])
            backbone.head.fc.weight.copy_(weight)
            if bias is not None:
                backbone.head.fc.bias.copy_(bias)
    if released.adapter_bns:
        if len(released.adapter_bns) != len(own_convs):
            raise ReleasedCheckpointError(f"{path}: {len(released.adapter_bns)} series adapters for "
                                          f"{len(own_convs)} 3x3 convolutions")
        backbone.series_adapter_bns = [{k: v.clone() for k, v in state.items() if v is not None}
                                       for state in released.adapter_bns]
    return backbone
