"""One run: build, train, evaluate, checkpoint, resume, write the records (docs/RECORDS.md).

``run(config, run_dir)`` is the whole life of a run and can be called from a test, from the
command line or from a submitit job. The engine knows nothing method-specific: it asks the
method for the model, the optimiser parameter groups and an optional loss term.

Protocol details implemented here:

* optimiser: SGD with momentum (``hp['momentum']``) or Adam (``hp['optimizer'] == 'adam'``),
  per-group lr and weight decay from the method; a step schedule (``lr_milestones`` in
  epochs, multiplied by ``lr_gamma`` at each).
* determinism: the randomness of epoch ``e`` (data order, augmentation, Gumbel noise,
  dropout) is drawn from generators seeded with ``(seed, e)`` at the start of the epoch, so
  a run resumed from the checkpoint of epoch ``e - 1`` continues exactly as an
  uninterrupted one would (same device, same numbers).
* checkpoint: ``{model, optimizer, lr_scheduler, epoch, args, history}`` (tensors and plain
  data) written after every epoch and read back with ``weights_only=True``; the last two are
  kept until the run is done and a torn one is moved aside (:mod:`spottune.checkpoint`).
* done: a run whose ``done`` marker sits beside a torn or missing ``metrics.json`` is not done;
  running it again warns with the file's path and evaluates it from its checkpoint.
* attempts: every time a run starts or resumes, a line ``{pid, host, at, from_epoch}`` is
  appended to its ``attempts.log`` (a done run called again appends nothing).
* evaluation on the test split after the last epoch (top-1, percent), with per-image
  routing saved to ``policy.npz`` for methods whose model sets ``last_routing``.
"""
from __future__ import annotations

import io
import logging
import os
import resource
import socket
import time
import traceback
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn
from tqdm import tqdm

from spottune import __version__, checkpoint, records
from spottune.acceleration import Acceleration
from spottune.backbones import backbone_size, count_parameters
from spottune.data import TaskData, load_task, make_loader
from spottune.methods import Method, create_method, load_plugins
from spottune.pretrain import pretrained_backbone

OPTIMIZERS = ("sgd", "adam")

log = logging.getLogger(__name__)


class InjectedFailure(RuntimeError):
    """Raised by ``runtime.fail_at_epoch`` (tests of failure handling and resume)."""


def build_optimizer(method: Method, model: nn.Module) -> torch.optim.Optimizer:
    """SGD (momentum ``hp['momentum']``) or Adam over the method's parameter groups."""
    groups = [g for g in method.param_groups(model) if g["params"]]
    name = method.hp.get("optimizer", "sgd")
    if name == "sgd":
        return torch.optim.SGD(groups, lr=method.hp["lr"], momentum=method.hp.get("momentum", 0.9))
    if name == "adam":
        return torch.optim.Adam(groups, lr=method.hp["lr"])
    raise ValueError(f"unknown optimizer {name!r}; use {' or '.join(OPTIMIZERS)}")


def build_scheduler(optimizer: torch.optim.Optimizer, hp: dict[str, Any]) -> torch.optim.lr_scheduler.LRScheduler:
    """Step schedule: lr x ``lr_gamma`` at every epoch listed in ``lr_milestones``."""
    return torch.optim.lr_scheduler.MultiStepLR(optimizer, milestones=list(hp.get("lr_milestones", [])),
                                                gamma=hp.get("lr_gamma", 0.1))


def train_step(model: nn.Module, method: Method, optimizer: torch.optim.Optimizer,
               images: torch.Tensor, labels: torch.Tensor, accel: Acceleration = Acceleration()
               ) -> tuple[float, torch.Tensor]:
    """Forward, cross-entropy plus the method's regulariser, backward, step; (loss, logits)."""
    with accel.autocast(images.device.type):
        logits = model(images)
        loss = F.cross_entropy(logits, labels)
        extra = method.regularizer(model)
        if extra is not None:
            loss = loss + extra
    optimizer.zero_grad(set_to_none=True)
    loss.backward()
    optimizer.step()
    return float(loss.detach()), logits.detach()


def seed_epoch(seed: int, epoch: int) -> None:
    """Seed every generator a training epoch draws from, as a function of (seed, epoch)."""
    value = 7919 * (seed + 1) + epoch
    torch.manual_seed(value)
    np.random.seed(value % 2**32)


def _device(runtime: dict[str, Any]) -> torch.device:
    wanted = runtime.get("device", "auto")
    if wanted == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(wanted)


def _peak_memory_mb(device: torch.device) -> float:
    if device.type == "cuda":
        return torch.cuda.max_memory_allocated(device) / 2**20
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


@torch.no_grad()
def evaluate(model: nn.Module, task: TaskData, batch_size: int, device: torch.device,
             progress: bool = False, accel: Acceleration = Acceleration()) -> dict[str, Any]:
    """Top-1 accuracy (percent) on the test split; predictions and per-image routing.

    A test split without labels (the Decathlon's, lacking the public test labels) gives
    accuracy ``None``: only a submission built from the predictions can score it.
    """
    model.eval()
    predictions, labels, routing = [], [], []
    start = time.perf_counter()
    loader = make_loader(task.test, batch_size, shuffle=False)
    for x, y in tqdm(loader, desc="test", disable=not progress, leave=False):
        with accel.autocast(device.type):
            logits = model(x.to(device, non_blocking=True))
        predictions.append(logits.argmax(1).cpu())
        labels.append(y)
        if getattr(model, "last_routing", None) is not None:
            routing.append(model.last_routing.cpu())
    seconds = time.perf_counter() - start
    pred, lab = torch.cat(predictions), torch.cat(labels)
    labelled = task.info.get("test_labelled", True)
    accuracy = 100.0 * float((pred == lab).float().mean()) if labelled else None
    return {"accuracy": accuracy, "predictions": pred.numpy(),
            "labels": lab.numpy(), "routing": torch.cat(routing).numpy() if routing else None,
            "seconds": seconds, "images_per_second": len(lab) / max(seconds, 1e-9)}


def _write_npz(path: Path, **arrays: np.ndarray) -> None:
    buffer = io.BytesIO()
    np.savez_compressed(buffer, **arrays)
    records.atomic_write_bytes(path, buffer.getvalue())


def _train_epoch(model: nn.Module, method: Method, optimizer: torch.optim.Optimizer, task: TaskData,
                 hp: dict, seed: int, epoch: int, device: torch.device, progress: bool, desc: str,
                 accel: Acceleration) -> dict[str, Any]:
    seed_epoch(seed, epoch)
    model.train()
    loader = make_loader(task.train, int(hp["batch_size"]), shuffle=True, seed=seed, epoch=epoch,
                         num_workers=int(hp.get("num_workers", 0)))
    total_loss, correct, seen, routed = 0.0, 0, 0, []
    start = time.perf_counter()
    bar = tqdm(loader, desc=desc, disable=not progress, leave=False)
    for x, y in bar:
        x, y = x.to(device, non_blocking=True), y.to(device, non_blocking=True)
        loss, logits = train_step(model, method, optimizer, x, y, accel)
        total_loss += loss * len(y)
        correct += int((logits.argmax(1) == y).sum())
        seen += len(y)
        if getattr(model, "last_routing", None) is not None:
            routed.append(model.last_routing.float().sum(0).cpu())
        bar.set_postfix(loss=f"{loss:.3f}")
    seconds = time.perf_counter() - start
    entry = {"epoch": epoch + 1, "lr": optimizer.param_groups[0]["lr"], "train_loss": total_loss / seen,
             "train_accuracy": 100.0 * correct / seen, "seconds": seconds,
             "images_per_second": seen / max(seconds, 1e-9)}
    if routed:
        entry["finetune_fraction"] = (torch.stack(routed).sum(0) / seen).tolist()
    return entry


def run(config: dict[str, Any], run_dir: str | Path) -> dict[str, Any]:
    """Train and evaluate one run, writing its folder; resumes from ``checkpoint.pt``.

    ``config`` holds the identity fields (``method``, ``dataset``, ``seed``, ``preset``,
    ``hparams`` with ``backbone`` and ``data`` specs inside) and an optional ``runtime``
    dict that does not change the numbers (``device``, ``data_root``, ``download``, ``progress``,
    ``plugins``, ``fail_at_epoch``, and the speed options ``channels_last`` and ``compile`` of
    :mod:`spottune.acceleration`). Returns the metrics. On failure, writes ``error.txt``
    and re-raises; ``done`` is written only after everything else.
    """
    run_dir = Path(run_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    if (run_dir / records.DONE).exists():
        problem = records.done_problem(run_dir)
        if problem is None:
            return records.read_metrics(run_dir)
        log.warning("%s: the run is not done; running it again from its last checkpoint", problem)
        (run_dir / records.DONE).unlink()
    (run_dir / records.ERROR).unlink(missing_ok=True)
    try:
        metrics = _run(config, run_dir)
    except BaseException as err:
        if not isinstance(err, KeyboardInterrupt):
            records.atomic_write_bytes(run_dir / records.ERROR, traceback.format_exc().encode())
        raise
    checkpoint.discard_previous(run_dir)
    (run_dir / records.DONE).touch()
    return metrics


def _run(config: dict[str, Any], run_dir: Path) -> dict[str, Any]:
    runtime = config.get("runtime", {})
    load_plugins(runtime.get("plugins", []))
    hp = config["hparams"]
    seed = int(config["seed"])
    progress = bool(runtime.get("progress", True))
    device = _device(runtime)
    data_root = runtime.get("data_root")
    identity = {k: config[k] for k in records.IDENTITY_FIELDS}
    download = {"download": True} if runtime.get("download") else {}  # only when the user asks
    task = load_task(config["dataset"], data_root, **hp.get("data", {}), **download)
    method = create_method(hp.get("variant_of", config["method"]), hp)
    protocol = {**hp.get("protocol", {}), **{k: hp[k] for k in method.protocol_keys if k in hp},
                **{k: v for k, v in task.info.items()
                   if k in ("split", "eval_split", "test_labelled", "transforms", "train_transform",
                            "test_transform")}}
    accel = Acceleration.from_config(hp, runtime)
    stored = {"run_id": records.run_id(config), **identity, "backbone": hp["backbone"]["arch"],
              "protocol": protocol, "suite_version": __version__, "data": task.info,
              "acceleration": accel.describe(),
              # how it computed: the numbers of a CPU run depend on its thread count (spottune.cpus)
              "compute": {"device": str(device), "torch_threads": torch.get_num_threads()}}
    records.atomic_write_json(run_dir / records.CONFIG, stored)

    torch.manual_seed(seed)  # random initialisations (a "none" backbone, new layers) follow the seed
    backbone = pretrained_backbone(hp["backbone"], Path(data_root) if data_root else None, device,
                                   progress, download=bool(download))
    torch.manual_seed(seed)
    model = accel.prepare(method.build(backbone, task.num_classes).to(device))
    optimizer = build_optimizer(method, model)
    scheduler = build_scheduler(optimizer, hp)
    start_epoch, history = 0, []
    state = checkpoint.load(run_dir, map_location=device)
    if state is not None:
        model.load_state_dict(state["model"])
        optimizer.load_state_dict(state["optimizer"])
        scheduler.load_state_dict(state["lr_scheduler"])
        start_epoch, history = state["epoch"], state["history"]
    records.append_json_line(run_dir / records.ATTEMPTS, {"pid": os.getpid(), "host": socket.gethostname(),
                                                          "at": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
                                                          "from_epoch": start_epoch})
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)

    epochs = int(hp["epochs"])
    for epoch in range(start_epoch, epochs):
        if runtime.get("fail_at_epoch") == epoch + 1:
            raise InjectedFailure(f"injected failure at epoch {epoch + 1} (runtime.fail_at_epoch)")
        entry = _train_epoch(model, method, optimizer, task, hp, seed, epoch, device, progress,
                             desc=f"{config['method']}/{config['dataset']}/s{seed} {epoch + 1}/{epochs}",
                             accel=accel)
        if start_epoch and epoch == start_epoch:
            entry["resumed"] = True
        history.append(entry)
        scheduler.step()
        checkpoint.save(run_dir, {"model": model.state_dict(), "optimizer": optimizer.state_dict(),
                                  "lr_scheduler": scheduler.state_dict(), "epoch": epoch + 1, "args": config,
                                  "history": history})

    result = evaluate(model, task, int(hp.get("eval_batch_size", hp["batch_size"])), device, progress, accel)
    train_seconds = sum(h["seconds"] for h in history)
    train_images = len(task.train) * len(history)
    metrics = {
        "run_id": stored["run_id"], **{k: config[k] for k in ("method", "dataset", "seed", "preset")},
        "backbone": stored["backbone"], "test_accuracy": result["accuracy"],
        "train_accuracy": history[-1]["train_accuracy"] if history else None,
        "num_classes": task.num_classes,
        "images": {"train": len(task.train), "test": len(task.test)},
        "params": {"backbone": backbone_size(backbone), "total": count_parameters(model),
                   "trainable": count_parameters(model, trainable_only=True),
                   "task_specific": method.task_specific_parameters(model),
                   # the new task's linear classifier (features x classes + bias), counted in
                   # task_specific; the published Decathlon #par leaves it out
                   "classifier": task.num_classes * (backbone.feature_dim + 1)},
        "timing": {"train_seconds": train_seconds, "eval_seconds": result["seconds"],
                   "train_images_per_second": train_images / max(train_seconds, 1e-9),
                   "eval_images_per_second": result["images_per_second"],
                   "peak_memory_mb": _peak_memory_mb(device), "device": str(device)},
        "history": history, "protocol": protocol,
        "pretraining": backbone.pretraining,  # the source task's accuracy of the shared network
    }
    _write_npz(run_dir / records.PREDICTIONS, predictions=result["predictions"].astype(np.int64),
               labels=result["labels"].astype(np.int64),
               test_ids=np.asarray(task.test_ids if task.test_ids is not None else [], dtype=np.int64))
    if result["routing"] is not None:
        fractions = np.array([h.get("finetune_fraction", []) for h in history], dtype=np.float32)
        _write_npz(run_dir / records.POLICY, decisions=result["routing"].astype(np.uint8),
                   labels=result["labels"].astype(np.int64), predictions=result["predictions"].astype(np.int64),
                   indices=np.arange(len(result["labels"]), dtype=np.int64), train_fraction=fractions)
    records.atomic_write_json(run_dir / records.METRICS, metrics)
    return metrics
