"""A grid's suite pretrainings: which ones its runs need, how each is trained, where each stands.

A run whose backbone is pretrained by the suite (``backbone.pretrained.kind: suite``) needs
that pretraining's weights in the cache (:mod:`spottune.pretraining.cache`) before it starts.
Every backend submits them before the runs (:meth:`spottune.launch.backend.Backend.submit`):
``--cluster local`` and ``inline`` train them here, once, before the runs
(:func:`pretrain_here`); ``--cluster slurm`` submits each one the cache lacks as a job of its
own (:class:`PretrainingJob`, with the preset's ``pretraining_resources``), checkpointed every
epoch and requeued like a run, and the runs' array waits for it (``--dependency=afterok``). A
detached backend's record of that job, ``<output>/pretraining/<arch>-<dataset>-<key>.json``
(:func:`write_record`: the job's backend-neutral fields, :class:`~spottune.launch.submission.Job`,
and the cache folder it publishes into), lets ``--status`` and ``--wait`` follow it.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import submitit

from spottune.engine import device_of
from spottune.launch.submission import Job, WithJob
from spottune.pretraining.weights import ensure_pretrained
from spottune.pretraining.cache import SuitePretraining
from spottune.storage.records import RecordError, RunSpec, Status, atomic_write_json, canonical_json, read_json

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
    """:func:`spottune.pretraining.weights.ensure_pretrained` with a launch's ``runtime`` (device, data
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


def pretrain_here(pretrainings: list[PretrainingState], runtime: dict[str, Any]) -> None:
    """Train here, once each, the ``pretrainings`` the cache lacks (with the threads
    :func:`spottune.training.cpus.pretraining_threads` fixes), before any run starts (else the first
    run that needs one pretrains it while the others wait for it); one that another process
    trains now is waited for (its claim on the cache's partial folder)."""
    for state in pretrainings:
        if state.pretraining.complete:
            continue
        if pretrain_for(state.pretraining.spec, runtime, bool(runtime.get("progress", True))):
            print(f"pretrained {state.pretraining} (cached for every run)", flush=True)


def write_record(output: Path, pretraining: SuitePretraining, job: Job, **fields: Any) -> None:
    """Record that ``job`` publishes ``pretraining`` (with the writer's ``fields``, e.g.
    ``resources``), so that every later command follows it through its backend's queue."""
    atomic_write_json(record_path(output, pretraining), job.record(
        backbone=pretraining.spec, key=pretraining.key, cache=str(pretraining.folder), **fields))


def read_record(output: Path, pretraining: SuitePretraining) -> dict[str, Any] | None:
    """The launch's record of ``pretraining`` (None if it was never submitted); a
    :class:`~spottune.storage.records.RecordError` naming the file when it is not one."""
    path = record_path(output, pretraining)
    if not path.exists():
        return None
    record = read_json(path)
    if not (isinstance(record, dict) and isinstance(record.get("cache"), str)):
        raise RecordError(f"{path}: not a pretraining job record (no cache folder); delete it and launch again")
    return record


@dataclass
class PretrainingState(WithJob):
    """Where one of a grid's suite pretrainings stands: ``done`` (cached), ``queued`` /
    ``running`` (its job), ``failed`` (its job left the queue without publishing) or ``new``
    (needed, never submitted); with the job a detached backend submitted for it."""

    pretraining: SuitePretraining
    status: Status
    job: Job | None = None

    def describe(self) -> str:
        job = f"job {self.job_id}" if self.job_id else "no job"
        return f"pretraining {self.pretraining}: {self.status} ({job}; cache {self.pretraining.folder})"


def recorded_job(output: Path, pretraining: SuitePretraining) -> Job | None:
    """The job recorded for ``pretraining`` in ``output`` (None if it was never submitted)."""
    return Job.from_record(read_record(output, pretraining))


def pretraining_state(output: Path, pretraining: SuitePretraining,
                      in_flight: dict[tuple[str, str], Status]) -> PretrainingState:
    """The state of ``pretraining`` from its record in ``output`` (whose cache folder wins over
    the current one: the cache its job publishes into) and ``in_flight``, the jobs queued or
    running keyed by ``(backend, job id)`` (read before the cache)."""
    record = read_record(output, pretraining)
    if record is not None:
        pretraining = SuitePretraining(pretraining.spec, Path(record["cache"]))
    job = Job.from_record(record)
    if job is not None and job.key in in_flight:
        return PretrainingState(pretraining, in_flight[job.key], job)
    if pretraining.complete:
        return PretrainingState(pretraining, Status.DONE, job)
    if job is not None:
        return PretrainingState(pretraining, Status.FAILED, job)
    return PretrainingState(pretraining, Status.NEW)
