"""How a model trains and is evaluated: the one loop of the engine, the suite's pretraining and
the throughput workloads. No other module builds an optimiser, steps a schedule or resumes one.

* optimiser (:func:`build_optimizer`, ``hp['optimizer']`` in :data:`OPTIMIZERS`): SGD with
  momentum ``hp['momentum']`` (default), Adam, or AdamW (decoupled weight decay, Loshchilov &
  Hutter 2019) over the method's parameter groups, each with its own lr and weight decay. Adam
  and AdamW take ``eps = hp['adam_eps']`` (default 1e-8, PyTorch's; VPT's AdamW: 1e-6). What
  ran is written into the run's protocol (:mod:`spottune.training.protocol`);
* parameters without weight decay (:func:`split_decay`, ``hp['weight_decay_exempt']`` in
  :data:`DECAY_EXEMPTIONS`): each group is split in two, the group's decay on the rest, 0 on
  the exempt parameters (a group named ``<group> <what>``, e.g. ``all 1-D``), as each source's
  optimiser does:

  - ``none``: every parameter decays (the default of SGD and Adam: the ResNet presets, the
    released SpotTune code);
  - ``classifier_bias``: VPT's SGD (KMnP/vpt ``src/solver/optimizer.py`` lines 60-62: "no
    regularization (weight decay) for last layer's bias"), the new classifier's bias only;
  - ``biases``: VPT's AdamW (same file, line 39: ``no_decay = ['bias', 'LayerNorm.bias',
    'LayerNorm.weight']`` matched as substrings of the names; its ViT's norms are named
    ``*_norm``, so only the biases match), every parameter whose name contains ``bias`` (the
    default of AdamW);
  - ``1d``: timm's ``param_groups_weight_decay`` as dongzelian/SSF ``optim_factory.py`` line 51
    (``param.ndim <= 1 or name.endswith(".bias") or name in no_weight_decay_list``) and NOAH's
    timm 0.5.4 ``create_optimizer`` run it: every 1-D parameter (norm weights and biases, SSF's
    scales and shifts), every bias and the ViT's position embedding and class token (timm's
    ``no_weight_decay()``). google-research/adapter-bert ``optimization.py`` line 66 exempts
    the names matching ``LayerNorm``, ``layer_norm`` or ``bias``: on the suite's ViTs the same
    parameters as ``1d`` among those an adapter method trains;
* schedule (:func:`build_scheduler`, ``hp['schedule']`` in :data:`SCHEDULES`), stepped once
  per epoch by the engine, so epoch ``e`` (0-based) trains at ``lr * f(e)``: ``step``
  (default): ``f(e) = lr_gamma ** #{m in lr_milestones : m <= e}``; ``cosine`` with
  ``W = warmup_epochs`` and ``E = epochs``: ``f(e) = e / W`` for ``e < W`` (a linear warm-up
  from 0, the first epoch at lr 0), then ``f(e) = (1 + cos(pi (e - W) / (E - W))) / 2``
  (:func:`warmup_cosine`): VPT's ``WarmupCosineSchedule`` (``src/solver/lr_scheduler.py``),
  which its trainer steps once per epoch; ``timm_cosine``: timm's ``CosineLRScheduler`` (one
  cycle, ``warmup_prefix=False``) as the NOAH, V-PETL Bench and SSF scripts run it
  (:func:`timm_cosine`), with ``W = warmup_epochs``, ``C = epochs - cooldown_epochs`` (its
  ``t_initial``), ``warmup_lr`` and ``min_lr``: ``g(t) = warmup_lr + t (lr - warmup_lr) / W``
  for ``t < W``, ``min_lr + (lr - min_lr) (1 + cos(pi t / C)) / 2`` for ``W <= t < C`` (the
  cosine counts from epoch 0, not from the warm-up's end), ``min_lr`` after; epoch 0 trains at
  ``warmup_lr`` (timm sets it at construction) and epoch ``e >= 1`` at ``g(e - 1 +
  timm_step_offset)``: NOAH (``supernet_train_prompt.py`` line 414) and V-PETL Bench
  (``train/train_model_*.py``: ``scheduler.step(ep)``) call ``step(epoch)`` after each epoch
  (offset 0, one epoch late), SSF's ``train.py`` (line 709) ``step(epoch + 1)`` (offset 1);
* the suite's pretraining (:func:`pretraining_optimisation`): SGD (Nesterov, momentum 0.9,
  weight decay ``weight_decay``, default 5e-4) or AdamW (``optimizer: adamw``, weight decay
  default 0.05) with torch's ``OneCycleLR`` to ``lr`` (default 0.1) over all its optimiser steps,
  stepped after every step;
* epochs (:func:`train_epochs`): from where :func:`resume` finds the checkpoint in the run's
  folder (weights, optimiser and schedule state, history: the one resume path of a run and of a
  suite pretraining), each epoch then its schedule step, then the checkpoint
  (:mod:`spottune.storage.checkpoint`) saved;
* step (:func:`train_step`): the method's forward (:meth:`spottune.method_contract.Method.forward`),
  cross-entropy (with label smoothing ``hp['label_smoothing']``, default 0: the target
  ``(1 - s) one_hot + s / K``, as timm's ``LabelSmoothingCrossEntropy`` that NOAH, V-PETL Bench
  and SSF use) plus the method's regulariser on that forward's outputs, backward, step;
* epoch (:func:`train_epoch`): seeded from ``(seed, epoch)`` by :mod:`spottune.seeding` (the
  global generators and the loader's order), then a step per batch; the mean loss, the
  accuracy on the augmented batches and, for a method that records routing, the fraction of
  images fine-tuning each block. These are summed on the device (the loss weighted by the
  batch size in float64, correct predictions and routing counts as integers) and read back to
  the host once, at the end of the epoch: no step waits for the device to catch up, and the
  numbers are those of summing per-batch host values (same operations, same order);
* evaluation (:func:`evaluate`): top-1 accuracy (percent) on the test split, the predictions
  and the routing the method records per image.

A ``method`` of ``None`` trains the model's plain forward with cross-entropy alone (the
suite's pretraining).
"""
from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.data import Dataset
from tqdm import tqdm

from spottune.storage import checkpoint
from spottune.training.acceleration import Acceleration
from spottune.data import TaskData, make_loader
from spottune.method_contract import ForwardOutputs, Method
from spottune.seeding import TRAINING, SeedStream, seed_epoch

OPTIMIZERS = ("sgd", "adam", "adamw")
SCHEDULES = ("step", "cosine", "timm_cosine")
DECAY_EXEMPTIONS = ("none", "classifier_bias", "biases", "1d")
# what a group of exempt parameters is called in the optimiser and the protocol: ``<group> <name>``
EXEMPT_GROUP_NAMES = {"classifier_bias": "classifier bias", "biases": "biases", "1d": "1-D"}
TIMM_NO_WEIGHT_DECAY = ("pos_embed", "cls_token")  # timm VisionTransformer.no_weight_decay()
PROGRESS_LOSS_EVERY = 50  # batches between two reads of the running loss for the progress bar


def default_exemption(optimizer: str) -> str:
    """The parameters a run exempts from weight decay when ``weight_decay_exempt`` is not set:
    the biases under AdamW (as VPT's), nothing under SGD and Adam."""
    return "biases" if optimizer == "adamw" else "none"


def _is_exempt(name: str, param: nn.Parameter, exemption: str) -> bool:
    """Whether the parameter ``name`` of a model gets no weight decay under ``exemption``, one
    of ``classifier_bias``, ``biases`` or ``1d`` (see the module docstring)."""
    if exemption == "classifier_bias":
        return name.endswith("head.fc.bias")
    if exemption == "biases":
        return "bias" in name
    return param.ndim <= 1 or name.endswith(".bias") or name.rsplit(".", 1)[-1] in TIMM_NO_WEIGHT_DECAY


def split_decay(groups: list[dict[str, Any]], model: nn.Module, exemption: str) -> list[dict[str, Any]]:
    """Each group split into its decaying parameters (the group's weight decay) and its exempt
    ones (``<name> <what>``, weight decay 0; see the module docstring); empty halves dropped."""
    if exemption not in DECAY_EXEMPTIONS:
        raise ValueError(f"unknown weight_decay_exempt {exemption!r}; use one of {', '.join(DECAY_EXEMPTIONS)}")
    if exemption == "none":
        return groups
    exempt = {id(p) for name, p in model.named_parameters() if _is_exempt(name, p, exemption)}
    split = []
    for group in groups:
        kept = {**group, "params": [p for p in group["params"] if id(p) not in exempt]}
        free = {**group, "name": f"{group.get('name', 'group')} {EXEMPT_GROUP_NAMES[exemption]}",
                "weight_decay": 0.0, "params": [p for p in group["params"] if id(p) in exempt]}
        split += [g for g in (kept, free) if g["params"]]
    return split


def build_optimizer(method: Method, model: nn.Module) -> torch.optim.Optimizer:
    """SGD (momentum ``hp['momentum']``), Adam or AdamW over the method's non-empty parameter
    groups, each split by :func:`split_decay` (see the module docstring)."""
    name = method.hp.get("optimizer", "sgd")
    exemption = method.hp.get("weight_decay_exempt", default_exemption(name))
    groups = split_decay([g for g in method.param_groups(model) if g["params"]], model, exemption)
    if name == "sgd":
        return torch.optim.SGD(groups, lr=method.hp["lr"], momentum=method.hp.get("momentum", 0.9))
    eps = method.hp.get("adam_eps", 1e-8)
    if name == "adam":
        return torch.optim.Adam(groups, lr=method.hp["lr"], eps=eps)
    if name == "adamw":
        return torch.optim.AdamW(groups, lr=method.hp["lr"], eps=eps)
    raise ValueError(f"unknown optimizer {name!r}; use one of {', '.join(OPTIMIZERS)}")


def warmup_cosine(epoch: int, warmup: int, total: int) -> float:
    """The lr factor of epoch ``epoch`` (0-based): ``epoch / warmup`` during the warm-up, then
    a half cosine from 1 to 0 over the ``total - warmup`` remaining epochs."""
    if epoch < warmup:
        return epoch / warmup
    progress = (epoch - warmup) / max(1, total - warmup)
    return max(0.0, 0.5 * (1.0 + math.cos(math.pi * progress)))


def timm_cosine(epoch: int, lr: float, *, warmup: int, cycle: int, warmup_lr: float, min_lr: float,
                step_offset: int) -> float:
    """The lr epoch ``epoch`` (0-based) trains at under timm's ``CosineLRScheduler`` with base lr
    ``lr``, stepped ``step(epoch - 1 + step_offset)`` after each epoch (see the module docstring)."""
    t = 0 if epoch == 0 else epoch - 1 + step_offset
    if t < warmup:
        return warmup_lr + t * (lr - warmup_lr) / warmup
    if t < cycle:
        return min_lr + 0.5 * (lr - min_lr) * (1.0 + math.cos(math.pi * t / cycle))
    return min_lr


def _timm_cosine_factor(epoch: int, *, lr: float, **shape: Any) -> float:
    """:func:`timm_cosine` of a group with initial lr ``lr`` as the factor :class:`LambdaLR`
    multiplies that lr by."""
    return timm_cosine(epoch, lr, **shape) / lr


def build_scheduler(optimizer: torch.optim.Optimizer, hp: dict[str, Any]) -> torch.optim.lr_scheduler.LRScheduler:
    """``step``: lr x ``lr_gamma`` at every epoch listed in ``lr_milestones``; ``cosine``:
    :func:`warmup_cosine` over ``epochs`` with ``warmup_epochs``; ``timm_cosine``:
    :func:`timm_cosine` per group (all stepped once per epoch)."""
    name = hp.get("schedule", "step")
    if name == "step":
        return torch.optim.lr_scheduler.MultiStepLR(optimizer, milestones=list(hp.get("lr_milestones", [])),
                                                    gamma=hp.get("lr_gamma", 0.1))
    if name == "cosine":
        factor = partial(warmup_cosine, warmup=int(hp.get("warmup_epochs", 0)), total=int(hp["epochs"]))
        return torch.optim.lr_scheduler.LambdaLR(optimizer, factor)
    if name == "timm_cosine":
        shape = {"warmup": int(hp.get("warmup_epochs", 0)),
                 "cycle": int(hp["epochs"]) - int(hp.get("cooldown_epochs", 0)),
                 "warmup_lr": float(hp.get("warmup_lr", 0.0)), "min_lr": float(hp.get("min_lr", 0.0)),
                 "step_offset": int(hp.get("timm_step_offset", 1))}
        return torch.optim.lr_scheduler.LambdaLR(
            optimizer, [partial(_timm_cosine_factor, lr=group["lr"], **shape) for group in optimizer.param_groups])
    raise ValueError(f"unknown schedule {name!r}; use one of {', '.join(SCHEDULES)}")


@dataclass
class Optimisation:
    """An optimiser and its schedule, stepped after every optimiser step (``per_step``: the
    suite's pretraining) or after every epoch (a run)."""

    optimizer: torch.optim.Optimizer
    scheduler: torch.optim.lr_scheduler.LRScheduler
    per_step: bool = False

    def state(self) -> dict[str, Any]:
        """Their states as a checkpoint keeps them."""
        return {"optimizer": self.optimizer.state_dict(), "lr_scheduler": self.scheduler.state_dict()}


def run_optimisation(method: Method, model: nn.Module) -> Optimisation:
    """A run's: :func:`build_optimizer` and :func:`build_scheduler` from the method's hyperparameters."""
    optimizer = build_optimizer(method, model)
    return Optimisation(optimizer, build_scheduler(optimizer, method.hp))


def pretraining_optimisation(model: nn.Module, pre: dict[str, Any], steps: int) -> Optimisation:
    """The suite's pretraining (``pre``: a backbone's ``pretrained`` spec) over ``steps``
    optimiser steps (see the module docstring)."""
    if pre.get("optimizer", "sgd") == "adamw":  # a ViT from scratch (the mini-vit preset)
        optimizer = torch.optim.AdamW(model.parameters(), lr=pre["lr"], weight_decay=pre.get("weight_decay", 0.05))
    else:
        optimizer = torch.optim.SGD(model.parameters(), lr=pre.get("lr", 0.1), momentum=0.9,
                                    weight_decay=pre.get("weight_decay", 5e-4), nesterov=True)
    scheduler = torch.optim.lr_scheduler.OneCycleLR(optimizer, max_lr=pre.get("lr", 0.1), total_steps=steps)
    return Optimisation(optimizer, scheduler, per_step=True)


def resume(folder: Path, model: nn.Module, optimisation: Optimisation,
           device: torch.device) -> tuple[int, list[dict[str, Any]]]:
    """``(epochs done, their history)`` from the checkpoint in ``folder``, its weights and
    optimiser and schedule states loaded into ``model`` and ``optimisation``; ``(0, [])``
    without one."""
    state = checkpoint.load(folder, map_location=device)
    if state is None:
        return 0, []
    model.load_state_dict(state["model"])
    optimisation.optimizer.load_state_dict(state["optimizer"])
    optimisation.scheduler.load_state_dict(state["lr_scheduler"])
    return state["epoch"], state["history"]


def train_epochs(model: nn.Module, method: Method | None, optimisation: Optimisation, train: Dataset, *,
                 epochs: int, start: int, history: list[dict[str, Any]], folder: Path, args: dict[str, Any],
                 batch_size: int, seed: int, device: torch.device, accel: Acceleration = Acceleration(),
                 stream: SeedStream = TRAINING, num_workers: int = 0, progress: bool = False,
                 desc: Callable[[int], str] = lambda epoch: f"epoch {epoch + 1}") -> list[dict[str, Any]]:
    """Epochs ``start .. epochs - 1`` (:func:`train_epoch`; the first after a resume marked
    ``resumed``), each followed by its schedule step and the checkpoint in ``folder``
    (``{model, optimizer, lr_scheduler, epoch, args, history}``); the whole history."""
    after_step = optimisation.scheduler.step if optimisation.per_step else None
    for epoch in range(start, epochs):
        entry = train_epoch(model, method, optimisation.optimizer, train, batch_size=batch_size, seed=seed,
                            epoch=epoch, device=device, accel=accel, stream=stream, num_workers=num_workers,
                            after_step=after_step, progress=progress, desc=desc(epoch))
        if start and epoch == start:
            entry["resumed"] = True
        history.append(entry)
        if not optimisation.per_step:
            optimisation.scheduler.step()
        checkpoint.save(folder, {"model": model.state_dict(), **optimisation.state(), "epoch": epoch + 1,
                                 "args": args, "history": history})
    return history


def forward(method: Method | None, model: nn.Module, images: torch.Tensor) -> ForwardOutputs:
    """The method's forward, or the model's plain one without a method."""
    return ForwardOutputs(model(images)) if method is None else method.forward(model, images)


def train_step(model: nn.Module, method: Method | None, optimizer: torch.optim.Optimizer,
               images: torch.Tensor, labels: torch.Tensor, accel: Acceleration = Acceleration()
               ) -> tuple[torch.Tensor, ForwardOutputs]:
    """Forward, cross-entropy (label smoothing ``hp['label_smoothing']``) plus the method's
    regulariser on that forward's outputs, backward, step; ``(loss, outputs)``, both detached
    and left on the device (nothing is read back to the host, so the step does not wait for the
    device)."""
    smoothing = 0.0 if method is None else float(method.hp.get("label_smoothing", 0.0))
    with accel.autocast(images.device.type):
        outputs = forward(method, model, images)
        loss = F.cross_entropy(outputs.logits, labels, label_smoothing=smoothing)
        extra = None if method is None else method.regularizer(model, outputs)
        if extra is not None:
            loss = loss + extra
    optimizer.zero_grad(set_to_none=True)
    loss.backward()
    optimizer.step()
    return loss.detach(), outputs.detached()


def train_epoch(model: nn.Module, method: Method | None, optimizer: torch.optim.Optimizer, train: Dataset, *,
                batch_size: int, seed: int, epoch: int, device: torch.device, accel: Acceleration = Acceleration(),
                stream: SeedStream = TRAINING, num_workers: int = 0, after_step: Callable[[], Any] | None = None,
                progress: bool = False, desc: str = "train") -> dict[str, Any]:
    """One epoch seeded from ``(seed, epoch)`` in ``stream``; ``after_step`` runs after every
    optimiser step (a per-step schedule). Returns ``{epoch, lr, train_loss, train_accuracy,
    seconds, images_per_second}`` (1-based epoch, the first group's lr) and
    ``finetune_fraction`` per block when the method records routing.

    Nothing is read back to the host per batch: the loss (float64, times the batch size), the
    correct predictions and the routing counts (int64) are summed on ``device`` and read once
    after the last batch. ``train_loss`` is thereby the float64 sum, in batch order, of each
    batch's loss times its size, over the images seen (as summing ``float(loss) * len(y)`` on
    the host gives), and ``finetune_fraction`` the float32 count over the images seen. With
    ``progress``, the bar shows the running mean loss, read every :data:`PROGRESS_LOSS_EVERY`
    batches (one wait for the device per that many steps, none without a bar).
    """
    seed_epoch(seed, epoch, stream)
    model.train()
    loader = make_loader(train, batch_size, shuffle=True, seed=seed, epoch=epoch, num_workers=num_workers)
    loss_sum = torch.zeros((), dtype=torch.float64, device=device)
    correct = torch.zeros((), dtype=torch.int64, device=device)
    routed: torch.Tensor | None = None
    seen = 0
    start = time.perf_counter()
    bar = tqdm(loader, desc=desc, disable=not progress, leave=False)
    for batch, (x, y) in enumerate(bar, start=1):
        x, y = x.to(device, non_blocking=True), y.to(device, non_blocking=True)
        loss, outputs = train_step(model, method, optimizer, x, y, accel)
        if after_step is not None:
            after_step()
        loss_sum += loss.double() * len(y)
        correct += (outputs.logits.argmax(1) == y).sum()
        seen += len(y)
        if outputs.routing is not None:  # uint8 decisions: their sum over the batch is int64
            counts = outputs.routing.sum(0)
            routed = counts if routed is None else routed + counts
        if progress and batch % PROGRESS_LOSS_EVERY == 0:
            bar.set_postfix(loss=f"{float(loss_sum) / seen:.3f}")
    train_loss, train_correct = float(loss_sum) / seen, int(correct)  # waits for the device's last step
    seconds = time.perf_counter() - start
    entry = {"epoch": epoch + 1, "lr": optimizer.param_groups[0]["lr"], "train_loss": train_loss,
             "train_accuracy": 100.0 * train_correct / seen, "seconds": seconds,
             "images_per_second": seen / max(seconds, 1e-9)}
    if routed is not None:
        entry["finetune_fraction"] = (routed.cpu().float() / seen).tolist()
    return entry


@torch.no_grad()
def evaluate(model: nn.Module, task: TaskData, batch_size: int, device: torch.device, progress: bool = False,
             accel: Acceleration = Acceleration(), method: Method | None = None) -> dict[str, Any]:
    """Top-1 accuracy (percent) on the test split, the predictions and the per-image routing
    the method records (``None`` when it records none).

    A test split without labels (the Decathlon's, lacking the public test labels) gives
    accuracy ``None``: only a submission built from the predictions can score it.
    """
    model.eval()
    predictions, labels, routing = [], [], []
    start = time.perf_counter()
    loader = make_loader(task.test, batch_size, shuffle=False)
    for x, y in tqdm(loader, desc="test", disable=not progress, leave=False):
        with accel.autocast(device.type):
            outputs = forward(method, model, x.to(device, non_blocking=True))
        predictions.append(outputs.logits.argmax(1).cpu())
        labels.append(y)
        if outputs.routing is not None:
            routing.append(outputs.routing.detach().to(torch.uint8).cpu())
    seconds = time.perf_counter() - start
    pred, lab = torch.cat(predictions), torch.cat(labels)
    labelled = task.info.get("test_labelled", True)
    accuracy = 100.0 * float((pred == lab).float().mean()) if labelled else None
    return {"accuracy": accuracy, "predictions": pred.numpy(),
            "labels": lab.numpy(), "routing": torch.cat(routing).numpy() if routing else None,
            "seconds": seconds, "images_per_second": len(lab) / max(seconds, 1e-9)}
