"""Released-checkpoint files written the way PyTorch 0.3, 0.4.1 and 1.x under Python 2 wrote them.

The released ResNet-26 (``resnet26_pretrained.t7``) is ``torch.save({'net': model})`` of
residual_adapters' ``models.ResNet``. These helpers build a network with the class names of
that ``models.py`` (optionally with series adapters in it, as the adapter-pretrained file) and
save it in the legacy (non-zip) container, pickle protocol 2, with the reductions of the old
versions patched in for the time of the save:

* PyTorch 0.4.x: ``Parameter`` reduces to ``Parameter, (data, requires_grad)``;
* PyTorch 0.3: ``Parameter`` to ``Parameter, (data,), (requires_grad, volatile, hooks)`` and
  every tensor to ``torch._utils._rebuild_tensor, (storage, offset, size, stride)``;
* Python 2 strings: ``str`` is written with the byte-string opcodes of Python 2
  (``SHORT_BINSTRING``), which Python 3 reads back only with ``encoding='latin1'``.
"""
from __future__ import annotations

import collections
import contextlib
import pickle
import struct
import sys
import types
import warnings
from pathlib import Path
from typing import Any, Iterator

import torch
from torch import nn

import pytest


def released_models_module(series_adapters: bool = False) -> types.ModuleType:
    """A ``models`` module whose classes carry residual_adapters' names and module tree."""
    mod = types.ModuleType("models")

    class conv1x1(nn.Module):  # noqa: N801 - the released names
        def __init__(self, planes: int) -> None:
            super().__init__()
            self.conv = nn.Sequential(nn.BatchNorm2d(planes), nn.Conv2d(planes, planes, 1, bias=False))

    class conv_task(nn.Module):  # noqa: N801
        def __init__(self, cin: int, cout: int, stride: int) -> None:
            super().__init__()
            self.conv = nn.Conv2d(cin, cout, 3, stride, 1, bias=False)
            if series_adapters:
                self.bns = nn.ModuleList([nn.Sequential(conv1x1(cout), nn.BatchNorm2d(cout))])
            else:
                self.bns = nn.ModuleList([nn.BatchNorm2d(cout)])

    class BasicBlock(nn.Module):
        def __init__(self, cin: int, cout: int, stride: int) -> None:
            super().__init__()
            self.conv1 = conv_task(cin, cout, stride)
            self.conv2 = nn.Sequential(nn.ReLU(True), conv_task(cout, cout, 1))

    class ResNet(nn.Module):
        def __init__(self, width: float, num_classes: int = 1000) -> None:
            super().__init__()
            cin = int(32 * width)
            self.pre_layers_conv = conv_task(3, cin, 1)
            for stage, w in enumerate((64, 128, 256), start=1):
                blocks = []
                for b in range(4):
                    blocks.append(BasicBlock(cin, int(w * width), 2 if b == 0 else 1))
                    cin = int(w * width)
                setattr(self, f"layer{stage}", nn.Sequential(*blocks))
            self.end_bns = nn.ModuleList([nn.Sequential(nn.BatchNorm2d(cin), nn.ReLU(True))])
            self.avgpool = nn.AdaptiveAvgPool2d(1)
            self.linears = nn.ModuleList([nn.Linear(cin, num_classes)])

    for cls in (conv1x1, conv_task, BasicBlock, ResNet):
        cls.__module__ = "models"
        cls.__qualname__ = cls.__name__
        setattr(mod, cls.__name__, cls)
    return mod


def released_network(monkeypatch: pytest.MonkeyPatch, width: float = 0.25, num_classes: int = 1000,
                     series_adapters: bool = False) -> nn.Module:
    """A released-style ResNet-26 with random (distinct) weights and BN statistics."""
    mod = released_models_module(series_adapters)
    monkeypatch.setitem(sys.modules, "models", mod)
    net = mod.ResNet(width, num_classes)
    with torch.no_grad():
        for p in net.parameters():
            p.normal_()
        for m in net.modules():
            if isinstance(m, nn.BatchNorm2d):
                m.running_mean.normal_()
                m.running_var.uniform_(0.5, 2.0)
    return net


class _Python2Pickler(pickle._Pickler):
    """Protocol-2 pickler that writes ``str`` as Python 2 wrote its byte strings."""

    dispatch = dict(pickle._Pickler.dispatch)

    def save_str(self, obj: str) -> None:
        data = obj.encode("latin1")
        if len(data) < 256:
            self.write(pickle.SHORT_BINSTRING + bytes([len(data)]) + data)
        else:
            self.write(pickle.BINSTRING + struct.pack("<i", len(data)) + data)
        self.memoize(obj)

    dispatch[str] = save_str


class python2_pickle:  # noqa: N801 - used like the pickle module
    """The ``pickle_module`` handed to ``torch.save`` to write Python 2 strings."""

    __name__ = "python2_pickle"
    Pickler = _Python2Pickler

    @staticmethod
    def dump(obj: Any, file: Any, protocol: int = 2) -> None:
        _Python2Pickler(file, protocol).dump(obj)


def _parameter_041(self: nn.Parameter, proto: int) -> tuple:
    return nn.Parameter, (self.data, self.requires_grad)


def _parameter_03(self: nn.Parameter, proto: int) -> tuple:
    return nn.Parameter, (self.data,), (self.requires_grad, False, collections.OrderedDict())


def _tensor_03(self: torch.Tensor, proto: int) -> tuple:
    return torch._utils._rebuild_tensor, (self.storage(), self.storage_offset(), tuple(self.size()), self.stride())


@contextlib.contextmanager
def legacy_reductions(version: str) -> Iterator[None]:
    """Patch Parameter's (and for 0.3 Tensor's) reduction as PyTorch ``version`` had it."""
    saved = {cls: cls.__dict__["__reduce_ex__"] for cls in (nn.Parameter, torch.Tensor)}
    try:
        if version == "0.4.1":
            nn.Parameter.__reduce_ex__ = _parameter_041
        elif version == "0.3":
            nn.Parameter.__reduce_ex__ = _parameter_03
            torch.Tensor.__reduce_ex__ = _tensor_03
        elif version != "1.x":
            raise ValueError(version)
        yield
    finally:
        for cls, method in saved.items():
            cls.__reduce_ex__ = method


def save_released(net: nn.Module, path: Path, version: str = "0.4.1", python2: bool = True,
                  container: str = "legacy") -> Path:
    """``torch.save({'net': net}, path)`` as PyTorch ``version`` (``0.3``, ``0.4.1``, ``1.x``) wrote it."""
    with legacy_reductions(version), warnings.catch_warnings():
        warnings.simplefilter("ignore")  # TypedStorage deprecation, module source not saved
        torch.save({"net": net}, path, pickle_protocol=2, pickle_module=python2_pickle if python2 else pickle,
                   _use_new_zipfile_serialization=container == "zip")
    return path
