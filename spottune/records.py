"""Run folders on disk: atomic JSON writes, markers, and the run-id hash (docs/RECORDS.md)."""
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


def canonical_json(value: Any) -> str:
    return json.dumps(value, sort_keys=True, separators=(",", ":"), default=str)


def run_id(config: dict[str, Any]) -> str:
    """First 12 hex digits of SHA-256 over the canonical JSON of the identity fields."""
    identity = {k: config[k] for k in IDENTITY_FIELDS}
    return hashlib.sha256(canonical_json(identity).encode()).hexdigest()[:12]


def atomic_write_bytes(path: Path, data: bytes) -> None:
    """Write to a temporary file in the same folder, fsync, then rename over ``path``."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
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


def read_json(path: Path) -> Any:
    with open(path) as f:
        return json.load(f)


def is_done(run_dir: Path) -> bool:
    return (run_dir / DONE).exists()


def run_status(run_dir: Path) -> str:
    """``done`` | ``failed`` (``error.txt``) | ``started``, from the markers in ``run_dir``
    (``started``: running or interrupted, the folder alone cannot tell)."""
    if is_done(run_dir):
        return "done"
    if (run_dir / ERROR).exists():
        return "failed"
    return "started"
