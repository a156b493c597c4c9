"""The cache of the suite's own pretrainings, safe on storage that many nodes share.

A ``kind: suite`` backbone (:mod:`spottune.pretraining.weights`) is pretrained once per spec and kept in
``<cache>/pretrained/``, where ``<cache>`` is ``$SPOTTUNE_CACHE`` (default ``~/.cache/spottune``;
on a cluster the SLURM profile's ``cache_dir``, a folder every node sees):

``<arch>-<dataset>-<key>.pt``
    the weights, ``{spec, state_dict, source, series_adapter_bns}``; ``key`` hashes the spec and
    :data:`PRETRAINING_VERSION`.
``<arch>-<dataset>-<key>.complete.json``
    the completion record: the file's name, size and SHA-256, the source task's accuracy, who
    pretrained it (host, pid, SLURM job) and when. A pretraining is cached iff its record
    exists and its file has the recorded size; loading checks the SHA-256.
``<arch>-<dataset>-<key>.partial/``
    while it trains: the checkpoint of its last finished epoch (resumed after a requeue, a
    preemption or a crash: epochs are seeded, so the weights equal an uninterrupted
    pretraining's) and the claim of the process training it (:mod:`spottune.storage.claim`).

Publishing is first-wins and atomic, NFS included: the finished file is written under a
temporary name and fsynced, then hard-linked to its final name (the link fails when the name
exists, so weights once published never change under a run that read them), then the record is
written by atomic rename. No correctness rests on a lock: the claim only keeps a second process
from repeating the work, and waits for the first. Should two pretrainings of one spec ever run
at once (a claim taken over from a process that was only slow), the second to finish discards
its weights and every run uses the first's.
"""
from __future__ import annotations

import os
import shutil
import socket
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from spottune import __version__
from spottune.backbones import file_sha256
from spottune.storage.checkpoint import load_weights_only
from spottune.storage.claim import Claim, slurm_job
from spottune.storage.records import PRETRAINING, RunSpec, atomic_write_bytes, atomic_write_json, read_json

CACHE_ENV = "SPOTTUNE_CACHE"
# the suite's pretraining procedure (spottune.pretraining.weights): bump whenever a change to it changes the
# weights or what is stored with them, so that older cached files are not reused (its epochs are
# seeded by spottune.seeding's PRETRAINING stream, the values version 2 has always used)
PRETRAINING_VERSION = 2


class CorruptCache(ValueError):
    """A cached pretraining whose file does not match its completion record (the message says
    which file and how to recover)."""


# what a suite pretraining spec may leave out (spottune.pretraining.weights trains with these)
PRETRAINING_DEFAULTS = {"epochs": 2, "batch_size": 128, "seed": 0}


def pretraining_setting(pretrained: dict[str, Any], key: str) -> int:
    """``epochs``, ``batch_size`` or ``seed`` of a ``pretrained: {kind: suite, ...}`` spec, its
    default (:data:`PRETRAINING_DEFAULTS`) when left out."""
    return int(pretrained.get(key, PRETRAINING_DEFAULTS[key]))


def pretraining_spec(backbone: dict[str, Any]) -> RunSpec:
    """The suite pretraining of ``backbone`` (a ``kind: suite`` backbone spec) as a run of the
    grid (``kind: pretraining``): launched, claimed, recorded and followed as every run is, trained
    by the engine into this cache. Its id is the cache key: SHA-256 of the backbone spec and
    :data:`PRETRAINING_VERSION` (:func:`spottune.storage.records.identity_of`)."""
    pre = backbone["pretrained"]
    return RunSpec(method=PRETRAINING, dataset=pre["dataset"], seed=pretraining_setting(pre, "seed"), preset="",
                   hparams={"backbone": backbone, "version": PRETRAINING_VERSION}, kind=PRETRAINING)


def cache_dir() -> Path:
    """``$SPOTTUNE_CACHE``, default ``~/.cache/spottune``."""
    return Path(os.environ.get(CACHE_ENV) or Path.home() / ".cache" / "spottune")


class SuitePretraining:
    """The cache entry of one suite pretraining spec (a preset's ``backbone``, whose
    ``pretrained`` has ``kind: suite``)."""

    def __init__(self, spec: dict[str, Any], root: Path | None = None) -> None:
        self.spec = spec
        self.key = pretraining_spec(spec).run_id
        self.name = f"{spec['arch']}-{spec['pretrained']['dataset']}-{self.key}"
        self.folder = Path(root) if root is not None else cache_dir() / "pretrained"
        self.weights = self.folder / f"{self.name}.pt"
        self.record_path = self.folder / f"{self.name}.complete.json"
        self.partial = self.folder / f"{self.name}.partial"

    def __str__(self) -> str:
        return f"{self.spec['arch']} pretrained on {self.spec['pretrained']['dataset']} ({self.key})"

    def record(self) -> dict[str, Any] | None:
        """The completion record when the pretraining is cached, else None."""
        try:
            record = read_json(self.record_path)
            return record if self.weights.stat().st_size == record["bytes"] else None
        except (FileNotFoundError, KeyError, TypeError, ValueError):
            return None

    @property
    def complete(self) -> bool:
        return self.record() is not None

    def adopt(self) -> bool:
        """Record a published file that has no record (its publisher died between the link and
        the record, or an earlier suite version cached it without one); whether there was one."""
        if not self.weights.exists():
            return False
        self._write_record(self._read_weights().get("source"), {"adopted": True})
        return True

    @contextmanager
    def claim(self) -> Iterator[Claim]:
        """Hold the claim on the partial folder while pretraining (raises
        :class:`spottune.storage.claim.RunClaimed` when a live process holds it); the folder goes once
        the pretraining is published."""
        with Claim(self.partial) as claim:
            yield claim
        if self.complete:
            shutil.rmtree(self.partial, ignore_errors=True)

    def publish(self, blob: bytes, source: dict[str, Any] | None) -> bool:
        """Publish the finished weights (first wins) and their record; whether ours were the
        ones published."""
        tmp = self.folder / f".{self.name}.{os.getpid()}.{socket.gethostname()}.pt"
        atomic_write_bytes(tmp, blob)
        try:
            os.link(tmp, self.weights)
            ours = True
        except FileExistsError:
            ours = False
        finally:
            tmp.unlink()
        if ours or not self.complete:
            self._write_record(source if ours else None, {} if ours else {"adopted": True})
        return ours

    def _write_record(self, source: dict[str, Any] | None, extra: dict[str, Any]) -> None:
        atomic_write_json(self.record_path, {
            "file": self.weights.name, "bytes": self.weights.stat().st_size, "sha256": file_sha256(self.weights),
            "key": self.key, "spec": self.spec, "pretraining_version": PRETRAINING_VERSION,
            "suite_version": __version__, "source": source,
            "pretrained_by": {"host": socket.gethostname(), "pid": os.getpid(), "job": slurm_job()},
            "finished_at": time.strftime("%Y-%m-%dT%H:%M:%S%z"), **extra})

    def load(self) -> dict[str, Any]:
        """The cached weights ``{spec, state_dict, source, series_adapter_bns}``, checked against
        the record's SHA-256 (:class:`CorruptCache` if they differ)."""
        record = self.record()
        if record is None:
            raise FileNotFoundError(f"{self.weights}: not cached (no completion record {self.record_path.name})")
        if file_sha256(self.weights) != record["sha256"]:
            raise CorruptCache(f"{self.weights}: its SHA-256 differs from the one in {self.record_path}; the file was "
                               f"changed after it was published: delete both files to pretrain again")
        return self._read_weights()

    def _read_weights(self) -> dict[str, Any]:
        """The weights file as tensors and plain data (``weights_only``: nothing in it runs);
        :class:`CorruptCache` naming it when it is not a pretraining the suite wrote."""
        try:
            blob = load_weights_only(self.weights)
        except Exception as err:  # noqa: BLE001 - unreadable, truncated, or a pickle of more than tensors
            raise CorruptCache(f"{self.weights}: not a pretraining the suite wrote ({type(err).__name__}); "
                               f"delete it (and {self.record_path.name}) to pretrain again") from None
        if not isinstance(blob, dict) or "state_dict" not in blob:
            raise CorruptCache(f"{self.weights}: not a pretraining the suite wrote (no state_dict); "
                               f"delete it (and {self.record_path.name}) to pretrain again")
        return blob
