"""The bottleneck of the transformer adapters (adapters after the MLP, Houlsby adapters,
AdaptFormer), in one place::

    B(h) = s * W_up drop(f(W_down h + b_down)) + b_up,    W_down: dim -> r,  W_up: r -> dim

and the series adapter ``A(h) = h + B(h)`` placed after a sub-layer (:class:`ResidualBottleneck`).

Initialisations (:data:`INITS`), each as its source:

* ``houlsby``: google-research/adapter-bert ``modeling.py`` lines 321-350
  (``feedforward_adapter(..., init_scale=1e-3)``): both weights from a normal of std 1e-3
  truncated at two standard deviations (``tf.truncated_normal_initializer(stddev=init_scale)``),
  both biases zero: near the identity once added to a residual;
* ``noah``: ZhangYuanhan-AI/NOAH ``model/module/adapter_super.py`` lines 41-42: both weights
  Xavier-uniform, both biases from a normal of std 1e-6;
* ``lora``: AdaptFormer's (ShoufaChen/AdaptFormer ``models/adapter.py``, the same in V-PETL
  Bench's ``vision_transformer_adaptformer.py`` lines 225-230): ``W_down`` Kaiming-uniform with
  ``a = sqrt(5)``, ``W_up`` and both biases zero: exactly the pretrained function at step 0.

:class:`QuickGELU` is NOAH's non-linearity, ``x * sigmoid(1.702 x)`` (``adapter_super.py`` lines
8-10, used at line 33).
"""
from __future__ import annotations

import math

import torch
from torch import nn

INITS = ("houlsby", "noah", "lora")
HOULSBY_INIT_SCALE = 1e-3  # adapter-bert's init_scale
NOAH_BIAS_STD = 1e-6  # NOAH's adapter biases


class QuickGELU(nn.Module):
    """``x * sigmoid(1.702 x)`` (NOAH's adapter non-linearity)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * torch.sigmoid(1.702 * x)


class Bottleneck(nn.Module):
    """``s * up(dropout(act(down(h))))`` (see the module docstring)."""

    def __init__(self, dim: int, hidden: int, activation: type[nn.Module], init: str, scale: float = 1.0,
                 dropout: float = 0.0) -> None:
        super().__init__()
        if init not in INITS:
            raise ValueError(f"init must be one of {INITS}, got {init!r}")
        self.down = nn.Linear(dim, hidden)
        self.act = activation()
        self.dropout = nn.Dropout(dropout)
        self.up = nn.Linear(hidden, dim)
        self.scale = float(scale)
        with torch.no_grad():
            if init == "houlsby":
                for linear in (self.down, self.up):
                    std = HOULSBY_INIT_SCALE
                    nn.init.trunc_normal_(linear.weight, std=std, a=-2 * std, b=2 * std)
                    nn.init.zeros_(linear.bias)
            elif init == "noah":
                for linear in (self.down, self.up):
                    nn.init.xavier_uniform_(linear.weight)
                    nn.init.normal_(linear.bias, std=NOAH_BIAS_STD)
            else:
                nn.init.kaiming_uniform_(self.down.weight, a=math.sqrt(5))
                for param in (self.down.bias, self.up.weight, self.up.bias):
                    nn.init.zeros_(param)

    def forward(self, h: torch.Tensor) -> torch.Tensor:
        return self.scale * self.up(self.dropout(self.act(self.down(h))))


class ResidualBottleneck(nn.Module):
    """``h + B(h)`` on the output ``h`` of the module it follows (``after``)."""

    def __init__(self, after: nn.Module, bottleneck: Bottleneck) -> None:
        super().__init__()
        self.after = after
        self.adapter = bottleneck

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.after(x)
        return h + self.adapter(h)
