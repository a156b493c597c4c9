"""A grid's suite pretrainings as jobs of their own, and where each stands.

A run whose backbone is pretrained by the suite (``backbone.pretrained.kind: suite``) needs
that pretraining's weights in the cache (:mod:`spottune.pretrain_cache`) before it starts.
``--cluster local`` pretrains them in process, once, before its workers start;
``--cluster slurm`` submits each one the cache lacks as a job of its own (its resources: the
preset's ``pretraining_resources``), checkpointed every epoch and requeued like a run, and the
runs' array waits for it (``--dependency=afterok``). Its record,
``<output>/pretraining/<arch>-<dataset>-<key>.json``, names the job, its logs and the cache
folder it publishes into, so that ``--status`` and ``--wait`` can follow it.
"""
from __future__ import annotations

import socket
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import submitit

from spottune.engine import device_of
from spottune.pretrain import ensure_pretrained
from spottune.pretrain_cache import SuitePretraining
from spottune.records import RecordError, RunSpec, Status, atomic_write_json, canonical_json, read_json

PRETRAINING_DIR = "pretraining"


def grid_pretrainings(specs: list[RunSpec]) -> list[SuitePretraining]:
    """The distinct suite pretrainings the runs ``specs`` start from, in order, in the cache
    that ``$SPOTTUNE_CACHE`` names now."""
    backbones = {canonical_json(s.hparams["backbone"]): s.hparams["backbone"] for s in specs
                 if s.hparams["backbone"].get("pretrained", {}).get("kind") == "suite"}
    return [SuitePretraining(b) for b in backbones.values()]


def pretraining_of(spec: RunSpec) -> str | None:
    """The key of the suite pretraining run ``spec`` starts from (None when it starts from none)."""
    backbone = spec.hparams["backbone"]
    return SuitePretraining(backbone).key if backbone.get("pretrained", {}).get("kind") == "suite" else None


def pretrain_for(backbone: dict[str, Any], runtime: dict[str, Any], progress: bool) -> bool:
    """:func:`spottune.pretrain.ensure_pretrained` with a launch's ``runtime`` (device, data
    root, download); whether this call published the weights."""
    data_root = runtime.get("data_root")
    return ensure_pretrained(backbone, Path(data_root) if data_root else None, device_of(runtime), progress,
                             bool(runtime.get("download")))


class PretrainingJob:
    """One suite pretraining as a submitit job, requeue-safe like a run: it checkpoints every
    epoch in the cache's partial folder, and a requeued job resumes there."""

    def __init__(self, backbone: dict[str, Any], runtime: dict[str, Any]) -> None:
        self.backbone = backbone
        self.runtime = runtime

    def __call__(self) -> dict[str, Any]:
        pretrain_for(self.backbone, self.runtime, progress=False)
        return SuitePretraining(self.backbone).record()

    def checkpoint(self, *args: Any, **kwargs: Any) -> submitit.helpers.DelayedSubmission:
        # the last finished epoch is in the partial folder already: run the same job again
        return submitit.helpers.DelayedSubmission(PretrainingJob(self.backbone, self.runtime))


def record_path(output: Path, pretraining: SuitePretraining) -> Path:
    return Path(output) / PRETRAINING_DIR / f"{pretraining.name}.json"


def write_record(output: Path, pretraining: SuitePretraining, job: submitit.Job, resources: dict[str, Any]) -> None:
    atomic_write_json(record_path(output, pretraining), {
        "job_id": str(job.job_id), "stdout": str(job.paths.stdout), "stderr": str(job.paths.stderr),
        "backbone": pretraining.spec, "key": pretraining.key, "cache": str(pretraining.folder),
        "submitted_at": time.strftime("%Y-%m-%dT%H:%M:%S%z"), "host": socket.gethostname(),
        "resources": resources})


def read_record(output: Path, pretraining: SuitePretraining) -> dict[str, Any] | None:
    """The launch's record of ``pretraining`` (None if it was never submitted); a
    :class:`~spottune.records.RecordError` naming the file when it is not one."""
    path = record_path(output, pretraining)
    if not path.exists():
        return None
    record = read_json(path)
    if not (isinstance(record, dict) and isinstance(record.get("cache"), str)):
        raise RecordError(f"{path}: not a pretraining job record (no cache folder); delete it and launch again")
    return record


@dataclass
class PretrainingState:
    """Where one of a grid's suite pretrainings stands: ``done`` (cached), ``queued`` /
    ``running`` (its job), ``failed`` (its job left the queue without publishing) or ``new``
    (needed, never submitted); with its job and its log (where submitit writes the traceback
    of a failure)."""

    pretraining: SuitePretraining
    status: Status
    job_id: str | None = None
    log: str | None = None

    def describe(self) -> str:
        job = f"job {self.job_id}" if self.job_id else "no job"
        return f"pretraining {self.pretraining}: {self.status} ({job}; cache {self.pretraining.folder})"


def pretraining_state(output: Path, pretraining: SuitePretraining, queue: dict[str, str]) -> PretrainingState:
    """The state of ``pretraining`` from its record in ``output`` (whose cache folder wins over
    the current one: the cache its job publishes into) and ``queue`` (read before the cache)."""
    record = read_record(output, pretraining)
    if record is not None:
        pretraining = SuitePretraining(pretraining.spec, Path(record["cache"]))
    job_id, log = (record or {}).get("job_id"), (record or {}).get("stderr")
    if job_id in queue:
        running = queue[job_id] in ("RUNNING", "COMPLETING")
        return PretrainingState(pretraining, Status.RUNNING if running else Status.QUEUED, job_id, log)
    if pretraining.complete:
        return PretrainingState(pretraining, Status.DONE, job_id, log)
    if job_id:
        return PretrainingState(pretraining, Status.FAILED, job_id, log)
    return PretrainingState(pretraining, Status.NEW)
