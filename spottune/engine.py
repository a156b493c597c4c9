"""One run: build, train, evaluate, checkpoint, resume, write the records (docs/RECORDS.md).

``run(config, run_dir)`` is the whole life of a run and can be called from a test, from the
command line or from a submitit job. The engine knows nothing method-specific: it asks the
method for the model, the optimiser parameter groups and an optional loss term.

How it trains (optimiser, schedule, step, epoch, evaluation, seeding) is
:mod:`spottune.training.loop`, whose epochs read their loss, accuracy and routing back from the
device once, after the last batch (no step waits for the device); what it records as the
run's protocol is :mod:`spottune.training.protocol`.
What this module adds:

* determinism: epoch ``e`` is seeded from ``(seed, e)`` (:mod:`spottune.seeding`), so a run
  resumed from the checkpoint of epoch ``e - 1`` continues exactly as an uninterrupted one
  would (same device, same numbers).
* checkpoint: ``{model, optimizer, lr_scheduler, epoch, args, history}`` (tensors and plain
  data) written after every epoch and read back with ``weights_only=True``; the last two are
  kept until the run is done and a torn one is moved aside (:mod:`spottune.storage.checkpoint`).
* one owner: the run is claimed (:mod:`spottune.storage.claim`) before its folder is read or written,
  whoever calls it (the inline and local launchers, a SLURM job, a packed task's child, a
  test); a run another live process holds raises :class:`spottune.storage.claim.RunClaimed` and
  writes nothing, so a run trains once under any mix of launchers.
* done: a run whose ``done`` marker sits beside a record that cannot be read (``metrics.json``,
  ``config.json``, ``predictions.npz``, ``policy.npz``), or without ``metrics.json`` or
  ``config.json`` (:meth:`spottune.storage.records.RunFolder.done_problem`), is torn, not done; running it again warns
  with the file's path, removes the end-of-run records and evaluates it from its checkpoint
  (trains it again without one).
* attempts: every time a run starts or resumes, a line ``{pid, host, at, from_epoch}`` is
  appended to its ``attempts.log`` (a done run called again appends nothing), with
  ``warnings``: the suite's warnings up to then (:func:`collected_warnings`), when any.
* evaluation on the test split after the last epoch (top-1, percent), with the per-image
  routing the method records (:class:`spottune.method_contract.ForwardOutputs`) saved to ``policy.npz``
  and, for a method that selects layers per task, its selection
  (:meth:`spottune.method_contract.Method.layer_selection`) in ``metrics.json``.
"""
from __future__ import annotations

import contextlib
import logging
import os
import resource
import socket
import time
import traceback
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import torch

from spottune import __version__
from spottune.storage import checkpoint
from spottune.training.acceleration import Acceleration
from spottune.backbones import backbone_size, count_parameters
from spottune.backbones.vit import set_drop_path_
from spottune.storage.claim import Claim
from spottune.training.cpus import cpu_model
from spottune.data import load_task
from spottune.methods import create_method
from spottune.plugins import load_plugins
from spottune.pretraining.cache import SuitePretraining
from spottune.pretraining.weights import ensure_pretrained, pretrained_backbone
from spottune.training.protocol import run_protocol
from spottune.storage.records import PRETRAINING, RunFolder, RunSpec, Status
from spottune.seeding import seed_initialisation
from spottune.training.loop import evaluate, resume, run_optimisation, train_epochs

log = logging.getLogger(__name__)


def device_of(runtime: dict[str, Any]) -> torch.device:
    """The runtime's ``device``; ``auto``: the GPU when there is one, else the CPU."""
    wanted = runtime.get("device", "auto")
    if wanted == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(wanted)


def _peak_memory_mb(device: torch.device) -> float:
    if device.type == "cuda":
        return torch.cuda.max_memory_allocated(device) / 2**20
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def run(spec: RunSpec, run_dir: str | Path, runtime: dict[str, Any] | None = None) -> dict[str, Any]:
    """Train and evaluate one run, writing its folder; resumes from ``checkpoint.pt``.

    ``spec`` is what the run is (:class:`spottune.storage.records.RunSpec`, ``hparams`` with ``backbone``
    and ``data`` specs inside); ``runtime`` how it is launched, which does not change the numbers
    (``device``, ``data_root``, ``download``, ``progress``, ``plugins``, and the speed options
    ``channels_last`` and ``compile`` of :mod:`spottune.training.acceleration`). Returns the metrics.
    On failure, writes ``error.txt`` and re-raises; ``done`` is written only after everything else.
    A suite pretraining (``kind: pretraining``) is trained into the cache (:func:`_pretraining`);
    it is done only while the cache holds its weights.
    """
    folder = RunFolder(run_dir)
    folder.path.mkdir(parents=True, exist_ok=True)
    # RunClaimed (nothing written) when another live process trains it
    with collected_warnings() as warnings, Claim(folder.path):
        status = folder.status()
        unpublished = spec.kind == PRETRAINING and not SuitePretraining(spec.hparams["backbone"]).complete
        if status is Status.DONE and unpublished:
            folder.clear_done()  # published once, but not in this cache: pretrained again
            status = Status.STARTED
        if status is Status.DONE:
            return folder.read_metrics()
        if status is Status.TORN:
            log.warning("%s: the run is not done; running it again from its last checkpoint", folder.done_problem())
            folder.clear_done()
            folder.clear_results()
        folder.clear_error()
        try:
            metrics = (_pretraining if spec.kind == PRETRAINING else _run)(spec, folder, runtime or {}, warnings)
        except BaseException as err:
            if not isinstance(err, KeyboardInterrupt):
                with contextlib.suppress(OSError):  # a full disk: the error raised is the one to see
                    folder.write_error(traceback.format_exc())
            raise
        checkpoint.discard_previous(folder.path)
        folder.mark_done()
        return metrics


class _RunWarnings(logging.Handler):
    """Keeps the messages of the suite's warnings (``spottune.*`` loggers) while it is attached,
    and prints them where they printed before (Python's last-resort handler: stderr) when no
    handler of the process would."""

    def __init__(self, echo: bool) -> None:
        super().__init__(logging.WARNING)
        self.messages: list[str] = []
        self.echo = echo

    def emit(self, record: logging.LogRecord) -> None:
        self.messages.append(record.getMessage())
        if self.echo and logging.lastResort is not None:
            logging.lastResort.handle(record)


@contextlib.contextmanager
def collected_warnings() -> Iterator[list[str]]:
    """The suite's warnings issued inside the block (a torn record, a checkpoint moved aside, a
    damaged claim taken over, ...): a run records those of its start in ``attempts.log``, from
    where a launcher whose runs execute elsewhere (local workers, SLURM jobs) prints them."""
    logger = logging.getLogger("spottune")
    handler = _RunWarnings(echo=not (logging.getLogger().handlers or logger.handlers))
    logger.addHandler(handler)
    try:
        yield handler.messages
    finally:
        logger.removeHandler(handler)


def _attempt(folder: RunFolder, warnings: list[str], **fields: Any) -> None:
    """Append this start of the run to its ``attempts.log``, with the warnings issued so far."""
    folder.append_attempt({"pid": os.getpid(), "host": socket.gethostname(), "at": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
                           **fields, **({"warnings": list(warnings)} if warnings else {})})


def _pretraining(spec: RunSpec, folder: RunFolder, runtime: dict[str, Any], warnings: list[str]) -> dict[str, Any]:
    """A suite pretraining: :func:`spottune.pretraining.weights.ensure_pretrained` trains its
    backbone with :mod:`spottune.training.loop` and publishes it to the cache (its checkpoints
    and a second claim live in the cache's partial folder, so grids in other output folders that
    share the cache train it once, and a requeued job resumes it there); the run's folder records
    what was published: ``metrics.json`` holds the source task's accuracy as ``test_accuracy``
    and the cache's completion record as ``published``."""
    device, data_root = device_of(runtime), runtime.get("data_root")
    backbone = spec.hparams["backbone"]
    cache = SuitePretraining(backbone)
    folder.write_config({"run_id": spec.run_id, **spec.record(), "backbone": backbone["arch"],
                         "suite_version": __version__, "cache": str(cache.folder),
                         "compute": {"device": str(device), "cpu": cpu_model()}})
    _attempt(folder, warnings)
    ensure_pretrained(backbone, Path(data_root) if data_root else None, device, bool(runtime.get("progress", True)),
                      bool(runtime.get("download")))
    record = cache.record()
    metrics = {"run_id": spec.run_id, "method": spec.method, "dataset": spec.dataset, "seed": spec.seed,
               "preset": spec.preset, "kind": spec.kind, "backbone": backbone["arch"],
               "test_accuracy": (record.get("source") or {}).get("test_accuracy"), "cache": str(cache.folder),
               "published": record}
    folder.write_metrics(metrics)
    return metrics


def _run(spec: RunSpec, folder: RunFolder, runtime: dict[str, Any], warnings: list[str]) -> dict[str, Any]:
    load_plugins(runtime.get("plugins", []))
    hp, seed = spec.hparams, int(spec.seed)
    progress = bool(runtime.get("progress", True))
    device = device_of(runtime)
    data_root = runtime.get("data_root")
    download = {"download": True} if runtime.get("download") else {}  # only when the user asks
    task = load_task(spec.dataset, data_root, **hp.get("data", {}), **download)
    method = create_method(hp.get("variant_of", spec.method), hp)
    accel = Acceleration.from_config(hp, runtime)
    stored = {"run_id": spec.run_id, **spec.record(), "backbone": hp["backbone"]["arch"],
              "suite_version": __version__, "data": task.info, "acceleration": accel.describe(),
              # how it computed: the numbers of a CPU run depend on its thread count (spottune.training.cpus)
              "compute": {"device": str(device), "torch_threads": torch.get_num_threads(),
                          "cpu": cpu_model()}}
    folder.write_config(stored)

    seed_initialisation(seed)  # random initialisations (a "none" backbone, new layers) follow the seed
    backbone = pretrained_backbone(hp["backbone"], Path(data_root) if data_root else None, device,
                                   progress, download=bool(download))
    set_drop_path_(backbone, float(hp.get("drop_path", 0.0)))  # a ViT's stochastic depth, before the method
    seed_initialisation(seed)
    model = accel.prepare(method.build(backbone, task.num_classes).to(device))
    optimisation = run_optimisation(method, model)
    protocol = stored["protocol"] = run_protocol(hp, method, optimisation.optimizer, task.info)  # what ran
    folder.write_config(stored)
    start_epoch, history = resume(folder.path, model, optimisation, device)
    _attempt(folder, warnings, from_epoch=start_epoch)
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)

    epochs = int(hp["epochs"])
    train_epochs(model, method, optimisation, task.train, epochs=epochs, start=start_epoch, history=history,
                 folder=folder.path, args={"run_id": spec.run_id, **spec.identity()},
                 batch_size=int(hp["batch_size"]), seed=seed, device=device, accel=accel,
                 num_workers=int(hp.get("num_workers", 0)), progress=progress,
                 desc=lambda epoch: f"{spec.method}/{spec.dataset}/s{seed} {epoch + 1}/{epochs}")

    result = evaluate(model, task, int(hp.get("eval_batch_size", hp["batch_size"])), device, progress, accel,
                      method)
    train_seconds = sum(h["seconds"] for h in history)
    train_images = len(task.train) * len(history)
    metrics = {
        "run_id": spec.run_id, "method": spec.method, "dataset": spec.dataset, "seed": spec.seed,
        "preset": spec.preset, "backbone": stored["backbone"], "test_accuracy": result["accuracy"],
        "train_accuracy": history[-1]["train_accuracy"] if history else None,
        "num_classes": task.num_classes,
        "images": {"train": len(task.train), "test": len(task.test)},
        "params": {"backbone": backbone_size(backbone), "total": count_parameters(model),
                   "trainable": count_parameters(model, trainable_only=True),
                   "task_specific": method.task_specific_parameters(model),
                   # the new task's linear classifier (features x classes + bias), counted in
                   # task_specific; the published Decathlon #par leaves it out
                   "classifier": task.num_classes * (backbone.feature_dim + 1),
                   # whether the task's model still needs the shared pretrained network (VPT's
                   # "total params" counts it once then; not for full fine-tuning)
                   "shares_pretrained": type(method).shares_pretrained},
        "timing": {"train_seconds": train_seconds, "eval_seconds": result["seconds"],
                   "train_images_per_second": train_images / max(train_seconds, 1e-9),
                   "eval_images_per_second": result["images_per_second"],
                   "peak_memory_mb": _peak_memory_mb(device), "device": str(device)},
        "history": history, "protocol": protocol,
        "pretraining": backbone.pretraining,  # the source task's accuracy of the shared network
    }
    selection = method.layer_selection(model)
    if selection is not None:
        metrics["layer_selection"] = selection
    folder.write_predictions(result["predictions"], result["labels"],
                             task.test_ids if task.test_ids is not None else [])
    if result["routing"] is not None:
        folder.write_policy(result["routing"], result["labels"], result["predictions"],
                            [h.get("finetune_fraction", []) for h in history])
    folder.write_metrics(metrics)
    return metrics
