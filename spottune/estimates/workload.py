"""Throughput workloads: one method's model on a synthetic batch, stepped as the engine steps it.

A :class:`Workload` holds a method's model for a randomly initialised backbone (throughput
does not depend on the weights), its optimiser, and one batch of random images and labels on
a device. :meth:`Workload.train_step` is :func:`spottune.training.loop.train_step` (forward, loss,
backward, optimiser step; the loss stays on the device, as in the engine's epochs, which read
it back once per epoch); :meth:`Workload.eval_step` is what
:func:`spottune.training.loop.evaluate` does per batch (forward without gradients, predictions
copied back). Both end with the device synchronised, so wall-clock timings are honest.

Used by the pytest-benchmark suites (``benchmarks/test_bench_throughput.py``) and by the GPU
check (``benchmarks/gpu_check.py``).

A SpotTune policy network at initialisation tends to route a whole batch the same way.
:func:`split_routing` (the workload :data:`SPLIT`, ``spottune-split``) gives the worst case of
hard-routed evaluation instead: the model's
own routing still runs (its cost is paid), then every block is split half and half, with a
different grouping in consecutive blocks (the most data movement hard routing can need).
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn

from spottune.training.acceleration import Acceleration
from spottune.method_contract import Method
from spottune.methods import create_method, get_method
from spottune.pretraining.weights import build_backbone
from spottune.routing.network import SpotTune, SpotTuneGlobal
from spottune.seeding import seed_initialisation
from spottune.training.loop import build_optimizer, forward, train_step

# the training-protocol keys every method receives from a preset (their defaults win)
PROTOCOL_HPARAMS: dict[str, Any] = {"optimizer": "sgd", "lr": 0.01, "momentum": 0.9, "weight_decay": 5e-4,
                                    "lr_milestones": [], "lr_gamma": 0.1, "epochs": 1}
NUM_CLASSES = 100
SPLIT = "spottune-split"  # SpotTune with split_routing: every block splits every batch


def _synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


@dataclass
class Workload:
    """A method's model, optimiser and one batch on ``device`` (see the module docstring)."""

    method: Method
    model: nn.Module
    optimizer: torch.optim.Optimizer
    images: torch.Tensor
    labels: torch.Tensor
    accel: Acceleration = field(default_factory=Acceleration)

    @property
    def batch_size(self) -> int:
        return int(self.images.shape[0])

    @property
    def device(self) -> torch.device:
        return self.images.device

    def train_step(self) -> None:
        """One training step of the engine on the batch."""
        self.model.train()
        train_step(self.model, self.method, self.optimizer, self.images, self.labels, self.accel)
        _synchronize(self.device)

    @torch.no_grad()
    def eval_step(self) -> None:
        """One evaluation batch of the engine: logits without gradients, predictions to the host."""
        self.model.eval()
        with self.accel.autocast(self.device.type):
            outputs = forward(self.method, self.model, self.images)
        outputs.logits.argmax(1).cpu()
        _synchronize(self.device)


def build_workload(method: str, arch: str, image_size: int, batch_size: int, *, width: float = 1.0,
                   device: str | torch.device = "cpu", accel: Acceleration | None = None,
                   hparams: dict[str, Any] | None = None, seed: int = 0) -> Workload:
    """The workload of ``method`` on ``arch`` (``resnet26`` of ``width``, or a torchvision
    ResNet) at ``image_size`` px, one batch of ``batch_size``; ``hparams`` override the
    method's and :data:`PROTOCOL_HPARAMS`. ``method`` may also be :data:`SPLIT`."""
    if method == SPLIT:
        workload = build_workload("spottune", arch, image_size, batch_size, width=width, device=device,
                                  accel=accel, hparams=hparams, seed=seed)
        split_routing(workload.model)
        return workload
    device = torch.device(device)
    accel = accel or Acceleration()
    defaults = get_method(method).defaults
    hp = {**{k: v for k, v in PROTOCOL_HPARAMS.items() if k not in defaults}, "batch_size": batch_size,
          "precision": accel.precision, **(hparams or {})}
    seed_initialisation(seed)
    backbone = build_backbone({"arch": arch, "width": width, "input_size": image_size}, NUM_CLASSES)
    instance = create_method(method, hp)
    model = accel.prepare(instance.build(backbone, NUM_CLASSES).to(device))
    generator = torch.Generator().manual_seed(seed)
    images = torch.randn(batch_size, 3, image_size, image_size, generator=generator).to(device)
    labels = torch.randint(0, NUM_CLASSES, (batch_size,), generator=generator).to(device)
    return Workload(instance, model, build_optimizer(instance, model), images, labels, accel)


def split_routing(model: nn.Module) -> bool:
    """Make a per-image router split every block of every batch (worst case of hard routing).

    Applies to models whose ``route`` decides per image from a learned policy (SpotTune); the
    model's own ``route`` still runs first. Returns whether the model was changed.
    """
    if not isinstance(model, SpotTune) or isinstance(model, SpotTuneGlobal):
        return False
    own_route = model.route

    def route(x: torch.Tensor) -> torch.Tensor:
        decisions = own_route(x)
        rows = torch.arange(x.shape[0], device=x.device).view(-1, 1)
        blocks = torch.arange(decisions.shape[1], device=x.device).view(1, -1)
        split = ((rows + blocks) % 2).to(decisions.dtype)  # image i fine-tunes block t iff i + t is odd
        return decisions + (split - decisions).detach()  # the values of split, the policy's gradient

    model.route = route  # type: ignore[method-assign]
    return True
