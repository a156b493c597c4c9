"""A job a backend submitted, as its records keep it: ``submitted.json`` of a run and a
suite pretraining's ``<output>/pretraining/<name>.json`` (docs/RECORDS.md).

Both records share the backend-neutral fields of :meth:`Job.record`: ``backend`` (the
registered name that submitted it, :mod:`spottune.launch.backend`), ``job_id`` (its id in that
backend's queue), ``stdout`` and ``stderr`` (its logs; ``stderr`` is where its traceback
lands, the log ``--status`` shows), ``submitted_at`` and ``host``, then what the writer adds
(``resources``, ``depends_on``, ...). Records written before backends were registered carry
no ``backend``: SLURM wrote every one of them (:data:`LEGACY_BACKEND`), and they are read as
SLURM's.
"""
from __future__ import annotations

import socket
import time
from dataclasses import dataclass
from typing import Any

LEGACY_BACKEND = "slurm"  # the backend of a record without "backend": the only one that wrote records then


@dataclass(frozen=True)
class Job:
    """One job of a backend: the backend's name, the job's id in its queue and its logs."""

    backend: str
    job_id: str
    stdout: str | None = None
    stderr: str | None = None  # where its traceback lands: the log --status shows

    @property
    def key(self) -> tuple[str, str]:
        """``(backend, job_id)``: job ids are unique within one backend's queue only."""
        return self.backend, self.job_id

    def record(self, **fields: Any) -> dict[str, Any]:
        """The record of this job submitted now from this host, with the writer's ``fields``."""
        return {"backend": self.backend, "job_id": self.job_id, "stdout": self.stdout, "stderr": self.stderr,
                "submitted_at": time.strftime("%Y-%m-%dT%H:%M:%S%z"), "host": socket.gethostname(), **fields}

    @classmethod
    def from_record(cls, record: Any) -> Job | None:
        """The job a record names (None without a record or a job id); a record without
        ``backend`` is :data:`LEGACY_BACKEND`'s."""
        if not isinstance(record, dict) or not record.get("job_id"):
            return None
        logs = [record.get(k) if isinstance(record.get(k), str) else None for k in ("stdout", "stderr")]
        return cls(str(record.get("backend") or LEGACY_BACKEND), str(record["job_id"]), *logs)


class WithJob:
    """What a state with an optional ``job`` (a run's, a pretraining's) says of it."""

    job: Job | None

    @property
    def job_id(self) -> str | None:
        return self.job.job_id if self.job else None

    @property
    def log(self) -> str | None:
        """Where its job's traceback lands."""
        return self.job.stderr if self.job else None
