"""Run folders on disk: the run's identity, its folder's typed records, and one status vocabulary
(docs/RECORDS.md).

* :class:`RunSpec`: what a run is, ``(method, dataset, seed, preset, hparams)``; its
  :attr:`RunSpec.run_id` is the first 12 hex digits of the SHA-256 of the canonical JSON of
  those five fields (:func:`run_id`), so ids never depend on how a run is launched.
* :class:`RunFolder`: ``<output>/runs/<run_id>/``, the only reader and writer of a run's
  ``config.json``, ``metrics.json``, ``predictions.npz``, ``policy.npz``, ``submitted.json``,
  ``attempts.log``, ``error.txt`` and ``done`` (checkpoints: :mod:`spottune.storage.checkpoint`, claims:
  :mod:`spottune.storage.claim`, both on a folder's path, since they need torch and threads).
* :class:`Status`: where a run stands, one vocabulary for ``--dry-run``, ``--status``, the
  launchers and the report. A folder alone tells ``new``, ``started``, ``failed``, ``torn``
  and ``done``; the launchers add ``queued`` and ``running`` from the backends' queues and claims.

Every file is written atomically (a temporary file in the same folder, fsynced, renamed over
the target) with the mode the umask gives (``0o666 & ~umask``: group-readable by default, so a
team can share a results folder); a write that fails (a full disk) raises an ``OSError`` naming
the file. Reads are validated: a record that does not parse as what the engine writes raises
:class:`RecordError` naming the file, never a bare decoding error; arrays are read with
``allow_pickle=False`` (a pickle planted in an ``.npz`` is refused, never run).
A run is ``done`` only when its ``done`` marker exists *and* every record the reports read can
be read: ``metrics.json`` (valid), ``config.json`` (a JSON object), ``predictions.npz`` and
``policy.npz`` (when present: readable arrays with their keys). A marker beside a missing
``metrics.json`` or ``config.json``, or beside any of them unreadable, makes the run ``torn``
(not done, so no report counts it: launching it again evaluates it from its checkpoint, or
trains it again without one). Imports no torch, numpy only
to read or write arrays.
"""
from __future__ import annotations

import hashlib
import io
import json
import os
import tempfile
import zipfile
import zlib
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from enum import Enum
from pathlib import Path
from typing import Any

IDENTITY_FIELDS = ("method", "dataset", "seed", "preset", "hparams")
# the kinds of run (RunSpec.kind) and the folder of <output>/ that holds each kind's folders
RUN = "run"                  # a method trained and evaluated on a task: a cell of the tables
PRETRAINING = "pretraining"  # a suite pretraining, whose weights are published to the cache
KIND_FOLDERS = {RUN: "runs", PRETRAINING: "pretraining"}
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
SUBMITTED = "submitted.json"
# what every reader of metrics.json relies on (the report's key columns and its numbers)
METRICS_KEYS = ("run_id", "method", "dataset", "seed", "preset", "test_accuracy")


class RecordError(ValueError):
    """A run record that cannot be read as what the engine writes (torn, truncated, edited);
    the message starts with the file's path."""


def canonical_json(value: Any) -> str:
    return json.dumps(value, sort_keys=True, separators=(",", ":"), default=str)


def identity_of(record: dict[str, Any]) -> dict[str, Any]:
    """What identifies the run ``record`` describes (a :meth:`RunSpec.record`, or a run's
    ``config.json``): for a run of the grid its :data:`IDENTITY_FIELDS`; for a suite pretraining
    (``kind: pretraining``) its backbone spec and the pretraining procedure's version, as the
    cache has always keyed it (:mod:`spottune.pretraining.cache`)."""
    if record.get("kind", RUN) == PRETRAINING:
        return {"spec": record["hparams"]["backbone"], "version": record["hparams"]["version"]}
    return {k: record[k] for k in IDENTITY_FIELDS}


def run_id(record: dict[str, Any]) -> str:
    """First 12 hex digits of SHA-256 over the canonical JSON of :func:`identity_of` ``record``."""
    return hashlib.sha256(canonical_json(identity_of(record)).encode()).hexdigest()[:12]


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
    with named_errors(path):
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


@contextmanager
def named_errors(path: Path) -> Iterator[None]:
    """Re-raise an ``OSError`` that names no file (a write on a full disk: ``[Errno 28] No space
    left on device``) as one naming ``path``."""
    try:
        yield
    except OSError as err:
        if err.filename is not None or err.errno is None:
            raise
        raise type(err)(err.errno, err.strerror, str(path)) from err


def atomic_write_json(path: Path, value: Any) -> None:
    atomic_write_bytes(path, (json.dumps(value, indent=2, sort_keys=True, default=str) + "\n").encode())


def append_json_line(path: Path, value: Any) -> None:
    """Append ``value`` as one line of JSON (a single ``O_APPEND`` write: lines never interleave)."""
    with named_errors(path), open(path, "a") as f:
        f.write(canonical_json(value) + "\n")


def read_json(path: Path) -> Any:
    """The JSON value in ``path``; :class:`RecordError` naming the file if it does not parse
    (``FileNotFoundError`` if it is missing)."""
    try:
        with open(path, "rb") as f:
            return json.loads(f.read().decode())
    except (UnicodeDecodeError, json.JSONDecodeError) as err:
        raise RecordError(f"{path}: torn or not JSON ({err})") from err


def flatten(record: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    """``{"a": {"b": 1}, "c": [2]}`` -> ``{"a.b": 1, "c": [2]}`` (dicts flattened, lists kept)."""
    flat: dict[str, Any] = {}
    for key, value in record.items():
        name = f"{prefix}{key}"
        if isinstance(value, dict):
            flat.update(flatten(value, prefix=f"{name}."))
        else:
            flat[name] = value
    return flat


class Status(str, Enum):
    """Where a run stands (its value is what every command prints)."""

    NEW = "new"            # nothing written yet: never started
    STARTED = "started"    # config or checkpoint written, not finished: interrupted (or training elsewhere)
    QUEUED = "queued"      # its job waits in its backend's queue (SLURM's, ...)
    RUNNING = "running"    # a live claim, or its job runs
    FAILED = "failed"      # error.txt, or its job left the queue without finishing
    TORN = "torn"          # a done marker beside a torn or missing record: evaluated again when launched
    DONE = "done"          # the done marker beside valid records

    def __str__(self) -> str:
        return self.value

    @property
    def in_flight(self) -> bool:
        """Queued or running: launching it again would train it twice."""
        return self in (Status.QUEUED, Status.RUNNING)


def row_label(method: str, settings: dict[str, Any]) -> str:
    """``method [key=value, ...]`` (keys sorted), or ``method`` without settings: how a table
    row and a run listing name one configuration of a method."""
    if not settings:
        return method

    def text(value: Any) -> str:
        return json.dumps(value) if isinstance(value, (list, dict)) else str(value)

    return f"{method} [{', '.join(f'{key}={text(settings[key])}' for key in sorted(settings))}]"


@dataclass(frozen=True)
class RunSpec:
    """One run of a grid: ``(method, dataset, seed, preset, hparams)``, every hyperparameter
    resolved (:mod:`spottune.planning.grid`). How it is launched (device, data root, progress bars,
    plugins) is not part of it: that is the launcher's ``runtime``.

    ``configuration`` (not part of the identity) names the hyperparameters, dotted, that its grid
    set apart from what the preset resolves for the method and dataset (``--set``, ``--sweep``);
    the report labels the run's row with them (:mod:`spottune.report.rows`).

    ``kind`` is :data:`RUN`, or :data:`PRETRAINING` for a suite pretraining that runs of the
    grid start from (:func:`spottune.pretraining.cache.pretraining_spec`: ``hparams`` holds its
    ``backbone`` and the procedure's ``version``, and its id is the cache's key); every launcher,
    status reader and backend handles both kinds alike, the engine trains each its own way."""

    method: str
    dataset: str
    seed: int
    preset: str
    hparams: dict[str, Any]
    configuration: dict[str, Any] = field(default_factory=dict, compare=False)
    kind: str = RUN

    def __post_init__(self) -> None:
        if self.kind not in KIND_FOLDERS:
            raise ValueError(f"unknown kind of run {self.kind!r}; known: {', '.join(KIND_FOLDERS)}")

    def identity(self) -> dict[str, Any]:
        """The five fields of a run's identity (``kind`` is left out: a run's id never changed)."""
        return {"method": self.method, "dataset": self.dataset, "seed": self.seed, "preset": self.preset,
                "hparams": self.hparams}

    def record(self) -> dict[str, Any]:
        """The identity and the configuration (and the kind, when not a run), as ``config.json``
        holds them."""
        return {**self.identity(), "configuration": self.configuration,
                **({"kind": self.kind} if self.kind != RUN else {})}

    @property
    def run_id(self) -> str:
        return run_id(self.record())

    @property
    def label(self) -> str:
        if self.kind == PRETRAINING:
            return f"{self.hparams['backbone']['arch']} pretrained on {self.dataset}"
        return f"{self.method} / {self.dataset} / seed {self.seed}"

    @property
    def row(self) -> str:
        """The method and what this run's grid set apart (:func:`row_label`)."""
        return row_label(self.method, self.configuration)

    @classmethod
    def from_record(cls, record: dict[str, Any]) -> "RunSpec":
        """The spec a ``config.json`` (or a checkpoint's ``args``, or :meth:`record`) records."""
        return cls(**{k: record[k] for k in IDENTITY_FIELDS}, configuration=record.get("configuration") or {},
                   kind=record.get("kind", RUN))


class RunFolder:
    """A run's folder and its records (see the module docstring and docs/RECORDS.md)."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)

    @classmethod
    def of(cls, output: str | Path, spec: RunSpec) -> "RunFolder":
        """``<output>/runs/<run_id>/`` (a suite pretraining's: ``<output>/pretraining/<run_id>/``)."""
        return cls(Path(output) / KIND_FOLDERS[spec.kind] / spec.run_id)

    def __repr__(self) -> str:
        return f"RunFolder({str(self.path)!r})"

    def __truediv__(self, name: str) -> Path:
        return self.path / name

    # -- records ---------------------------------------------------------------------------
    def read_config(self) -> dict[str, Any]:
        """``config.json``, checked to be a JSON object."""
        path = self / CONFIG
        config = read_json(path)
        if not isinstance(config, dict):
            raise RecordError(f"{path}: not a run's config (a JSON object)")
        return config

    def write_config(self, config: dict[str, Any]) -> None:
        atomic_write_json(self / CONFIG, config)

    def read_metrics(self) -> dict[str, Any]:
        """``metrics.json``, checked to be an object with :data:`METRICS_KEYS`."""
        path = self / METRICS
        metrics = read_json(path)
        missing = [k for k in METRICS_KEYS if k not in metrics] if isinstance(metrics, dict) else list(METRICS_KEYS)
        if missing:
            raise RecordError(f"{path}: not a run's metrics (lacks {', '.join(missing)})")
        return metrics

    def write_metrics(self, metrics: dict[str, Any]) -> None:
        atomic_write_json(self / METRICS, metrics)

    def read_predictions(self) -> dict[str, Any] | None:
        """``{predictions, labels, test_ids}`` arrays, or None without ``predictions.npz``
        (:class:`RecordError` naming it when it cannot be read)."""
        return self._read_arrays(PREDICTIONS, ("predictions", "labels", "test_ids"))

    def write_predictions(self, predictions: Any, labels: Any, test_ids: Any) -> None:
        import numpy as np

        self._write_arrays(PREDICTIONS, predictions=np.asarray(predictions, dtype=np.int64),
                           labels=np.asarray(labels, dtype=np.int64), test_ids=np.asarray(test_ids, dtype=np.int64))

    @property
    def has_policy(self) -> bool:
        return (self / POLICY).exists()

    def read_policy(self) -> dict[str, Any] | None:
        """``{decisions, labels, predictions, indices, train_fraction}`` arrays, or None without
        ``policy.npz`` (:class:`RecordError` naming it when it cannot be read)."""
        return self._read_arrays(POLICY, ("decisions", "labels", "predictions", "indices", "train_fraction"))

    def write_policy(self, decisions: Any, labels: Any, predictions: Any, train_fraction: Any) -> None:
        import numpy as np

        self._write_arrays(POLICY, decisions=np.asarray(decisions, dtype=np.uint8),
                           labels=np.asarray(labels, dtype=np.int64),
                           predictions=np.asarray(predictions, dtype=np.int64),
                           indices=np.arange(len(labels), dtype=np.int64),
                           train_fraction=np.asarray(train_fraction, dtype=np.float32))

    def read_submission(self) -> dict[str, Any] | None:
        """``submitted.json`` (the record of the run's last job, :mod:`spottune.launch.submission`), if any."""
        path = self / SUBMITTED
        return read_json(path) if path.exists() else None

    def write_submission(self, submission: dict[str, Any]) -> None:
        atomic_write_json(self / SUBMITTED, submission)

    def append_attempt(self, attempt: dict[str, Any]) -> None:
        """One line of ``attempts.log``."""
        append_json_line(self / ATTEMPTS, attempt)

    def read_attempts(self) -> list[dict[str, Any]]:
        """The lines of ``attempts.log`` (none without it; a line that is not a JSON object, such
        as one cut short by a crash, counts as an attempt without details)."""
        try:
            lines = (self / ATTEMPTS).read_text(errors="replace").splitlines()
        except FileNotFoundError:
            return []
        attempts = []
        for line in lines:
            try:
                attempt = json.loads(line)
            except json.JSONDecodeError:
                attempt = None
            attempts.append(attempt if isinstance(attempt, dict) else {})
        return attempts

    def _read_arrays(self, name: str, keys: tuple[str, ...]) -> dict[str, Any] | None:
        import numpy as np

        path = self / name
        if not path.exists():
            return None
        try:
            arrays = np.load(path, allow_pickle=False)  # never unpickle: nothing in a run folder runs
            if not isinstance(arrays, np.lib.npyio.NpzFile):
                raise ValueError("a single array, not an .npz archive")
            with arrays:
                missing = [key for key in keys if key not in arrays.files]
                if missing:
                    raise KeyError(f"lacks {', '.join(missing)}")
                return {key: arrays[key] for key in keys}
        except (OSError, ValueError, KeyError, EOFError, zipfile.BadZipFile, zlib.error) as err:
            reason = (err.args[0] if isinstance(err, KeyError) and err.args else str(err)).splitlines() or [""]
            raise RecordError(f"{path}: not readable as the run's arrays ({type(err).__name__}: {reason[0]})") from err

    def _write_arrays(self, name: str, **arrays: Any) -> None:
        import numpy as np

        buffer = io.BytesIO()
        np.savez_compressed(buffer, **arrays)
        atomic_write_bytes(self / name, buffer.getvalue())

    # -- markers ---------------------------------------------------------------------------
    def error_text(self) -> str | None:
        """The traceback in ``error.txt``, or None."""
        path = self / ERROR
        return path.read_text(errors="replace") if path.exists() else None

    def write_error(self, text: str) -> None:
        atomic_write_bytes(self / ERROR, text.encode())

    def clear_error(self) -> None:
        (self / ERROR).unlink(missing_ok=True)

    def mark_done(self) -> None:
        (self / DONE).touch()

    def clear_done(self) -> None:
        (self / DONE).unlink(missing_ok=True)

    def clear_results(self) -> None:
        """Remove what the end of a run writes (``metrics.json``, ``predictions.npz``,
        ``policy.npz``): a torn run is evaluated again from nothing."""
        for name in (METRICS, PREDICTIONS, POLICY):
            (self / name).unlink(missing_ok=True)

    def done_problem(self) -> str | None:
        """Why a run with a ``done`` marker is not done (a record the reports read is missing or
        cannot be read; the message starts with its path), else None."""
        if not (self / DONE).exists():
            return None
        try:
            self.read_metrics()
            self.read_config()
            self.read_predictions()
            self.read_policy()
        except RecordError as err:
            return str(err)
        except FileNotFoundError as err:
            return f"{err.filename}: missing"
        return None

    def status(self) -> Status:
        """What the files tell: ``done``, ``torn``, ``failed``, ``started`` (a config or checkpoint
        written) or ``new``."""
        if (self / DONE).exists():
            return Status.TORN if self.done_problem() else Status.DONE
        if (self / ERROR).exists():
            return Status.FAILED
        if (self / CONFIG).exists() or (self / CHECKPOINT).exists():
            return Status.STARTED
        return Status.NEW

    def record(self) -> dict[str, Any]:
        """The run as one flat row for the report: ``config.json`` and, for a done run,
        ``metrics.json`` (winning on shared keys), flattened (:func:`flatten`), with
        ``run_id``, ``status``, ``run_dir`` and ``has_policy``. An unreadable record raises
        :class:`RecordError`."""
        status = self.status()
        record = flatten(self.read_config() if (self / CONFIG).exists() else {})
        if status is Status.DONE:
            record.update(flatten(self.read_metrics()))
        record.setdefault("run_id", self.path.name)
        record.update(status=status.value, run_dir=str(self.path), has_policy=status is Status.DONE and self.has_policy)
        return record
