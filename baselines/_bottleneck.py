"""The bottleneck of the transformer adapters (Houlsby adapters, AdaptFormer), in one place::

    B(h) = s * W_up drop(f(W_down h + b_down)) + b_up,    W_down: dim -> r,  W_up: r -> dim

Initialisations: ``"houlsby"`` (every weight and bias from a normal of std 1e-2 truncated at
two standard deviations: near the identity once added to a residual) and ``"lora"``
(AdaptFormer's: ``W_down`` Kaiming-uniform with ``a = sqrt(5)``, ``W_up`` and both biases
zero: exactly the pretrained function at step 0).
"""
from __future__ import annotations

import math

import torch
from torch import nn

INITS = ("houlsby", "lora")


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
                for param in self.parameters():
                    nn.init.trunc_normal_(param, std=1e-2, a=-2e-2, b=2e-2)
            else:
                nn.init.kaiming_uniform_(self.down.weight, a=math.sqrt(5))
                for param in (self.down.bias, self.up.weight, self.up.bias):
                    nn.init.zeros_(param)

    def forward(self, h: torch.Tensor) -> torch.Tensor:
        return self.scale * self.up(self.dropout(self.act(self.down(h))))
