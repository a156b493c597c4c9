"""Run folders -> one pandas DataFrame: the only place the reports read ``runs/*/``.

Each folder ``<output>/runs/<run_id>/`` (format in ``docs/RECORDS.md``) becomes one row.
``config.json`` and, for done runs, ``metrics.json`` are merged (metrics win on shared
keys) and nested dictionaries are flattened into dotted columns: ``hparams.lr``,
``protocol.train_split``, ``params.task_specific``, ``timing.train_seconds``, ... Lists stay
as Python objects (``history``).

``status`` is :func:`spottune.records.run_status`: ``done`` when the ``done`` marker exists
beside a valid ``metrics.json``, ``torn`` when that file is not valid, ``failed`` when
``error.txt`` exists, else ``started`` (running or interrupted).
Only done runs carry numbers: ``metrics.json`` of any other run is ignored, so a report
never mixes a half-finished run into a mean and never shows a missing run as zero. A record
that cannot be read is logged as a warning naming the file and left out.
"""
from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import pandas as pd

from spottune import records as files

log = logging.getLogger(__name__)

KEY_COLUMNS = ["run_id", "preset", "method", "dataset", "seed", "status", "run_dir", "has_policy"]


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


def _read_json(path: Path) -> dict[str, Any]:
    try:
        return files.read_json(path) if path.exists() else {}
    except files.RecordError as err:
        log.warning("%s; left out of the report", err)
        return {}


def read_run(run_dir: Path) -> dict[str, Any]:
    """One flattened record for ``run_dir``; metrics only when the run is done."""
    status = files.run_status(run_dir)
    record = flatten(_read_json(run_dir / files.CONFIG))
    if status == "done":
        record.update(flatten(_read_json(run_dir / files.METRICS)))
    record.setdefault("run_id", run_dir.name)
    record.update(status=status, run_dir=str(run_dir),
                  has_policy=status == "done" and (run_dir / files.POLICY).exists())
    return record


def load_records(output_dir: str | Path) -> pd.DataFrame:
    """All runs under ``<output_dir>/runs/``, one row each, sorted by preset, method, dataset, seed.

    Columns start with ``run_id, preset, method, dataset, seed, status, run_dir, has_policy``
    followed by every flattened config and metrics field. An output folder without runs
    gives an empty frame with those key columns.
    """
    runs = sorted(path for path in (Path(output_dir) / "runs").glob("*") if path.is_dir())
    frame = pd.DataFrame([read_run(path) for path in runs])
    for column in KEY_COLUMNS:
        if column not in frame:
            frame[column] = pd.Series(dtype=object)
    frame = frame[KEY_COLUMNS + [c for c in frame.columns if c not in KEY_COLUMNS]]
    return frame.sort_values(["preset", "method", "dataset", "seed", "run_id"],
                             na_position="last", ignore_index=True)
