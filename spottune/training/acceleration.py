"""How fast a run computes: bf16 autocast, channels-last memory format, ``torch.compile``.

``precision`` is a hyperparameter (``hparams["precision"]``, part of the run id, because it
changes the numbers): ``"fp32"`` (default) or ``"bf16"``, where the forward pass and the loss
run under ``torch.autocast(device, dtype=torch.bfloat16)``; weights, gradients and optimiser
state stay float32. Meant for GPUs with bfloat16 units (Ampere and later); a CPU runs it too,
usually slower than float32.

``channels_last`` and ``compile`` are runtime settings (the launcher's ``runtime``): they change
how the same computation is laid out, not what is computed, so they do not enter the run id
(float rounding may differ in the last bits, as it does between devices). They are written
to the run's ``config.json`` under ``acceleration``.

``channels_last: true``
    Parameters and buffers of 4-d shape are stored NHWC; convolutions then produce NHWC
    activations (faster on tensor-core GPUs). The input batch is left NCHW: the stem's
    convolution follows its weight's layout.
``compile: true`` or the name of a ``torch.compile`` backend
    The model is compiled in place (``nn.Module.compile``, default backend ``inductor``),
    so its ``state_dict`` and checkpoints are those of the uncompiled model. Random
    operations (Gumbel noise, dropout) use PyTorch's own generator
    (``torch._inductor.config.fallback_random``), so a seeded run draws the same numbers
    compiled or not. Data-dependent routing (hard-routed evaluation) runs outside the graph.
"""
from __future__ import annotations

import contextlib
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

PRECISIONS = ("fp32", "bf16")
DEFAULT_COMPILE_BACKEND = "inductor"


@dataclass(frozen=True)
class Acceleration:
    """The speed options of one run (see the module docstring); the default changes nothing."""

    precision: str = "fp32"
    channels_last: bool = False
    compile_backend: str | None = None

    def __post_init__(self) -> None:
        if self.precision not in PRECISIONS:
            raise ValueError(f"precision must be one of {PRECISIONS}, got {self.precision!r}")

    @classmethod
    def from_config(cls, hparams: dict[str, Any], runtime: dict[str, Any]) -> "Acceleration":
        """Read ``hparams["precision"]``, ``runtime["channels_last"]`` and ``runtime["compile"]``."""
        compile_option = runtime.get("compile", False)
        if compile_option is True:
            backend: str | None = DEFAULT_COMPILE_BACKEND
        elif compile_option in (False, None):
            backend = None
        elif isinstance(compile_option, str):
            backend = compile_option
        else:
            raise ValueError(f"runtime compile must be true, false or a torch.compile backend name, "
                             f"got {compile_option!r}")
        return cls(precision=str(hparams.get("precision", "fp32")),
                   channels_last=bool(runtime.get("channels_last", False)), compile_backend=backend)

    def prepare(self, model: nn.Module) -> nn.Module:
        """Convert ``model`` (already on its device) to the memory format and compile it, in place."""
        if self.channels_last:
            model.to(memory_format=torch.channels_last)
        if self.compile_backend is not None:
            import torch._inductor.config as inductor_config

            inductor_config.fallback_random = True
            model.compile(backend=self.compile_backend)
        return model

    def autocast(self, device_type: str) -> contextlib.AbstractContextManager:
        """The context a forward pass (and its loss) runs in on a device of ``device_type``."""
        if self.precision == "bf16":
            return torch.autocast(device_type, dtype=torch.bfloat16)
        return contextlib.nullcontext()

    def describe(self) -> dict[str, Any]:
        """The options as recorded in ``config.json`` (``acceleration``)."""
        return {"precision": self.precision, "channels_last": self.channels_last,
                "compile": self.compile_backend}
