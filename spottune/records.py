"""Run folders on disk: atomic writes, validated reads, markers, and the run-id hash (docs/RECORDS.md).

Every file is written atomically (a temporary file in the same folder, fsynced, renamed over
the target) with the mode the umask gives (``0o666 & ~umask``: group-readable by default, so a
team can share a results folder). Reads are validated: a record that does not parse as what
the engine writes raises :class:`RecordError` naming the file, never a bare decoding error.
A run is ``done`` only when its ``done`` marker exists *and* its ``metrics.json`` is valid; a
marker beside a missing or torn ``metrics.json`` makes the run ``torn`` (not done: launching it
again evaluates it from its checkpoint).
"""
from __future__ import annotations

import hashlib
import json
import os
import tempfile
from pathlib import Path
from typing import Any

IDENTITY_FIELDS = ("method", "dataset", "seed", "preset", "hparams")
DONE = "done"
ERROR = "error.txt"
CONFIG = "config.json"
METRICS = "metrics.json"
CHECKPOINT = "checkpoint.pt"
POLICY = "policy.npz"
PREDICTIONS = "predictions.npz"
PREVIOUS_CHECKPOINT = "checkpoint.prev.pt"
CLAIM = "claim.json"
ATTEMPTS = "attempts.log"
# what every reader of metrics.json relies on (the report's key columns and its numbers)
METRICS_KEYS = ("run_id", "method", "dataset", "seed", "preset", "test_accuracy")


class RecordError(ValueError):
    """A run record that cannot be read as what the engine writes (torn, truncated, edited);
    the message starts with the file's path."""


def canonical_json(value: Any) -> str:
    return json.dumps(value, sort_keys=True, separators=(",", ":"), default=str)


def run_id(config: dict[str, Any]) -> str:
    """First 12 hex digits of SHA-256 over the canonical JSON of the identity fields."""
    identity = {k: config[k] for k in IDENTITY_FIELDS}
    return hashlib.sha256(canonical_json(identity).encode()).hexdigest()[:12]


def umask() -> int:
    """The process's umask, read without changing it where Linux tells it (``/proc/self/status``)."""
    try:
        with open("/proc/self/status") as f:
            return next(int(line.split()[1], 8) for line in f if line.startswith("Umask:"))
    except (OSError, StopIteration, ValueError):
        mask = os.umask(0o022)  # elsewhere: set and restore
        os.umask(mask)
        return mask


def atomic_write_bytes(path: Path, data: bytes) -> None:
    """Write to a temporary file in the same folder, fsync, then rename over ``path``; the file
    gets the mode ``open()`` would give it (``0o666 & ~umask``, where mkstemp's is 0o600)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        os.fchmod(fd, 0o666 & ~umask())
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def atomic_write_json(path: Path, value: Any) -> None:
    atomic_write_bytes(path, (json.dumps(value, indent=2, sort_keys=True, default=str) + "\n").encode())


def append_json_line(path: Path, value: Any) -> None:
    """Append ``value`` as one line of JSON (a single ``O_APPEND`` write: lines never interleave)."""
    with open(path, "a") as f:
        f.write(canonical_json(value) + "\n")


def read_json(path: Path) -> Any:
    """The JSON value in ``path``; :class:`RecordError` naming the file if it does not parse
    (``FileNotFoundError`` if it is missing)."""
    try:
        with open(path, "rb") as f:
            return json.loads(f.read().decode())
    except (UnicodeDecodeError, json.JSONDecodeError) as err:
        raise RecordError(f"{path}: torn or not JSON ({err})") from err


def read_metrics(run_dir: Path) -> dict[str, Any]:
    """``metrics.json`` of ``run_dir``, checked to be an object with :data:`METRICS_KEYS`."""
    path = Path(run_dir) / METRICS
    metrics = read_json(path)
    missing = [k for k in METRICS_KEYS if k not in metrics] if isinstance(metrics, dict) else list(METRICS_KEYS)
    if missing:
        raise RecordError(f"{path}: not a run's metrics (lacks {', '.join(missing)})")
    return metrics


def done_problem(run_dir: Path) -> str | None:
    """Why a run with a ``done`` marker is not done (its metrics cannot be read), else None."""
    if not (Path(run_dir) / DONE).exists():
        return None
    try:
        read_metrics(run_dir)
    except RecordError as err:
        return str(err)
    except FileNotFoundError:
        return f"{Path(run_dir) / METRICS}: missing"
    return None


def is_done(run_dir: Path) -> bool:
    return run_status(run_dir) == "done"


def run_status(run_dir: Path) -> str:
    """``done`` | ``torn`` (``done`` marker, but :func:`done_problem`) | ``failed``
    (``error.txt``) | ``started``, from the files in ``run_dir`` (``started``: running or
    interrupted, the folder alone cannot tell)."""
    if (Path(run_dir) / DONE).exists():
        return "torn" if done_problem(run_dir) else "done"
    if (run_dir / ERROR).exists():
        return "failed"
    return "started"
