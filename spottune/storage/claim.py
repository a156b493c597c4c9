"""Claims: one process works in a folder at a time, on local disk and on shared storage.

Before training a run, :func:`spottune.engine.run` claims its folder, whoever calls it (a local
or inline launcher, a SLURM job, a packed task's child); a suite pretraining claims its folder
of partial checkpoints (:mod:`spottune.pretraining.cache`). ``<folder>/claim.json``
holds ``{pid, host, process_start, since, token, job}`` of the process that works there (``job``:
its SLURM job, ``$SLURM_JOB_ID``, or None). The file is created
complete and exclusively (written to a temporary name, then hard-linked to ``claim.json``: the
link fails if the name exists, atomically also on NFS, where ``O_EXCL`` historically was not).
While the run trains, a daemon thread refreshes the file's mtime every ``heartbeat_s`` seconds
(the heartbeat); the claim is removed when the run ends, whatever the outcome.

A claim is *stale*, and the next launcher takes it over, when

* its heartbeat is older than ``stale_after_s`` (the holder crashed, or its machine is gone;
  on shared storage mtimes are the file server's, so clocks must agree to well within it), or
* it was made on this host and its process is gone (``kill -9``: taken over at once): no
  process with that pid, or one started at another time (a reused pid), or
* it was made on another node by this process's own SLURM job (a job requeued onto another
  node takes over what it held before: at once; on the same node the rule above applies), or
* the file is damaged (not the JSON object above: the suite creates it complete, so it was
  edited or torn by something else): taken over at once, with a warning naming it.

Taking over is race-free between any number of launchers: each tries to create the
marker ``claim.json.stale-<token>`` of the stale claim exclusively; only one succeeds, checks
that ``claim.json`` still holds the stale token, removes it and makes its own.

A launcher that finds a live claim skips the run and says who holds it; a SLURM job that finds
one fails without touching the run (its log says who holds it).
"""
from __future__ import annotations

import logging
import os
import socket
import threading
import time
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from spottune.storage import records

log = logging.getLogger(__name__)

HEARTBEAT_S = 30.0
STALE_AFTER_S = 300.0


def _proc_stat(pid: int) -> list[str] | None:
    """The fields of ``/proc/<pid>/stat`` after the command name (Linux), or None."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()
    except (OSError, IndexError):
        return None


def slurm_job() -> str | None:
    """This process's SLURM job (``$SLURM_JOB_ID``: an array task has its own, kept when it is
    requeued), or None outside SLURM."""
    return os.environ.get("SLURM_JOB_ID") or None


def process_start(pid: int) -> str | None:
    """When process ``pid`` started (clock ticks since boot), or None where unknown."""
    stat = _proc_stat(pid)
    return stat[19] if stat and len(stat) > 19 else None


def process_alive(pid: int, started: str | None) -> bool:
    """Whether process ``pid`` runs on this host (not a zombie) and is the one that started at
    ``started`` (not a later process given the same pid)."""
    if pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # someone else's process
        pass
    stat = _proc_stat(pid)
    if stat is None:  # no /proc: the pid exists
        return True
    return stat[0] != "Z" and (started is None or process_start(pid) == started)


@dataclass(frozen=True)
class Holder:
    """Who holds a claim, read from ``claim.json``, and how old its heartbeat is."""

    pid: int
    host: str
    since: str
    token: str
    process_start: str | None
    heartbeat_age_s: float
    job: str | None = None
    damaged: str | None = None  # why claim.json could not be read as a claim

    def stale(self, stale_after_s: float = STALE_AFTER_S) -> bool:
        if self.damaged is not None or self.heartbeat_age_s > stale_after_s:
            return True
        if self.job is not None and self.job == slurm_job() and self.host != socket.gethostname():
            return True  # held by this job on another node, before it was requeued
        return self.host == socket.gethostname() and not process_alive(self.pid, self.process_start)

    def __str__(self) -> str:
        if self.damaged is not None:
            return f"a damaged claim ({self.damaged})"
        return f"pid {self.pid} on {self.host} since {self.since}"


class RunClaimed(RuntimeError):
    """The run is claimed by another live process (``holder``)."""

    def __init__(self, run_dir: Path, holder: Holder) -> None:
        super().__init__(f"{run_dir} is claimed by {holder}")
        self.holder = holder


def read_holder(run_dir: Path) -> Holder | None:
    """The holder of the claim on ``run_dir``, or None if there is none (or it vanished meanwhile)."""
    path = Path(run_dir) / records.CLAIM
    try:
        age = time.time() - path.stat().st_mtime
        data = records.read_json(path)
        return Holder(int(data["pid"]), str(data["host"]), str(data["since"]), str(data["token"]),
                      data.get("process_start"), age, data.get("job"))
    except FileNotFoundError:
        return None
    except (KeyError, TypeError, ValueError) as err:  # damaged (RecordError is a ValueError): stale at once
        reason = str(err) if isinstance(err, records.RecordError) else f"{path}: not a claim ({type(err).__name__}: {err})"
        return Holder(-1, "?", "?", "", None, age, damaged=reason)


def live_holder(run_dir: Path, stale_after_s: float = STALE_AFTER_S) -> Holder | None:
    """The holder of ``run_dir``'s claim if it is live, else None (no claim or a stale one)."""
    holder = read_holder(run_dir)
    return holder if holder is not None and not holder.stale(stale_after_s) else None


class Claim:
    """This process's claim on a run: a context manager that holds it and keeps it fresh.

    ``Claim(run_dir)`` takes the claim (taking over a stale one) or raises :class:`RunClaimed`.
    """

    def __init__(self, run_dir: Path, heartbeat_s: float = HEARTBEAT_S,
                 stale_after_s: float = STALE_AFTER_S) -> None:
        self.run_dir = Path(run_dir)
        self.path = self.run_dir / records.CLAIM
        self.token = uuid.uuid4().hex
        self.run_dir.mkdir(parents=True, exist_ok=True)
        record = {"pid": os.getpid(), "host": socket.gethostname(), "process_start": process_start(os.getpid()),
                  "since": time.strftime("%Y-%m-%dT%H:%M:%S%z"), "token": self.token, "job": slurm_job()}
        holder = self._acquire(record, stale_after_s)
        if holder is not None:
            raise RunClaimed(self.run_dir, holder)
        self._stop = threading.Event()
        self._heartbeat = threading.Thread(target=self._beat, args=(heartbeat_s,), daemon=True,
                                           name=f"claim-heartbeat-{self.run_dir.name}")
        self._heartbeat.start()

    def _acquire(self, record: dict[str, Any], stale_after_s: float) -> Holder | None:
        """None once the claim is ours, else the live holder that keeps it."""
        holder = None
        for _ in range(3):  # a claim may vanish or change hands while we look
            if self._create(record):
                return None
            holder = read_holder(self.run_dir) or holder
            if holder is not None and not holder.stale(stale_after_s):
                return holder
            if holder is not None and self._take_over(holder, record, stale_after_s):
                if holder.damaged is not None:
                    log.warning("%s; taken over by pid %d on %s", holder.damaged, os.getpid(), socket.gethostname())
                return None
        return holder or Holder(-1, "?", "?", "", None, 0.0)

    def _create(self, record: dict[str, Any]) -> bool:
        """Make ``claim.json`` holding ``record`` if no claim exists; whether it was made."""
        tmp = self.run_dir / f".{records.CLAIM}.{self.token}"
        records.atomic_write_json(tmp, record)
        try:
            os.link(tmp, self.path)
            return True
        except FileExistsError:
            return False
        finally:
            tmp.unlink()

    def _take_over(self, stale: Holder, record: dict[str, Any], stale_after_s: float) -> bool:
        """Replace the stale claim of ``stale`` by ours; False if another launcher is doing it.

        The exclusive marker ``claim.json.stale-<token>`` elects one taker per stale claim; a
        marker older than ``stale_after_s`` was left by a taker that died and is removed.
        """
        marker = self.run_dir / f"{records.CLAIM}.stale-{stale.token}"
        try:
            os.close(os.open(marker, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o666))
        except FileExistsError:
            try:
                if time.time() - marker.stat().st_mtime > stale_after_s:
                    marker.unlink()
            except FileNotFoundError:
                pass
            return False
        try:
            current = read_holder(self.run_dir)
            if current is not None and current.token != stale.token:
                return False  # it changed hands meanwhile
            self.path.unlink(missing_ok=True)
            return self._create(record)
        finally:
            marker.unlink(missing_ok=True)

    def _beat(self, every_s: float) -> None:
        while not self._stop.wait(every_s):
            try:
                os.utime(self.path)
            except FileNotFoundError:
                return

    def release(self) -> None:
        """Stop the heartbeat and remove the claim if it is still ours."""
        self._stop.set()
        self._heartbeat.join()
        holder = read_holder(self.run_dir)
        if holder is not None and holder.token == self.token:
            self.path.unlink(missing_ok=True)

    def __enter__(self) -> "Claim":
        return self

    def __exit__(self, *exc: object) -> None:
        self.release()
