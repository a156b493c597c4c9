"""Run folders -> one pandas DataFrame: how the reports read ``<output>/runs/*/``.

Each folder becomes one row, :meth:`spottune.storage.records.RunFolder.record`: ``config.json`` and,
for done runs, ``metrics.json`` (metrics win on shared keys), nested dictionaries flattened
into dotted columns (``hparams.lr``, ``protocol.schedule``, ``params.task_specific``,
``timing.train_seconds``, ...; lists stay as Python objects, ``history``), with ``status``
(:class:`spottune.storage.records.Status`), ``run_dir`` and ``has_policy``.
Only done runs carry numbers: ``metrics.json`` of any other run is ignored, so a report
never mixes a half-finished run into a mean and never shows a missing run as zero. A record
that cannot be read is logged as one warning naming the file and left out: a torn run (a done
marker beside a record that cannot be read, :meth:`spottune.storage.records.RunFolder.done_problem`)
is not done, so no table, comparison or figure reads it; re-running the grid repairs it. The selection runs of a
``--search`` (:mod:`spottune.planning.search`: ``hparams.protocol.search_stage = selection``, scored on
the selection split, not the test split) are left out too: the reports are of the final runs.
"""
from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import pandas as pd

from spottune.storage.records import RecordError, RunFolder, Status
from spottune.report.rows import label_rows, one_run_per_seed
from spottune.planning.search import SELECTION, STAGE_KEY

log = logging.getLogger(__name__)

KEY_COLUMNS = ["run_id", "preset", "method", "dataset", "seed", "status", "run_dir", "has_policy"]


def read_run(folder: RunFolder) -> dict[str, Any]:
    """The folder's row; an unreadable record leaves its fields out, with one warning."""
    try:
        row = folder.record()
    except RecordError as err:
        log.warning("%s; left out of the report", err)
        return {"run_id": folder.path.name, "status": folder.status().value, "run_dir": str(folder.path),
                "has_policy": False}
    if row["status"] == Status.TORN.value:
        log.warning("%s; left out of the report (re-run the grid to evaluate the run again)", folder.done_problem())
    return row


def load_records(output_dir: str | Path) -> pd.DataFrame:
    """All runs under ``<output_dir>/runs/``, one row each, sorted by preset, method, dataset, seed.

    Columns start with ``run_id, preset, method, dataset, seed, status, run_dir, has_policy``
    followed by every flattened config and metrics field. ``method`` is the run's row label
    (its registered name in ``method_name``; :func:`spottune.report.rows.label_rows`) and a
    second done run of one label, dataset and seed has the status ``duplicate``
    (:func:`spottune.report.rows.one_run_per_seed`). An output folder without runs gives an
    empty frame with those key columns. Selection runs of a search are left out.
    """
    runs = sorted(path for path in (Path(output_dir) / "runs").glob("*") if path.is_dir())
    frame = pd.DataFrame([read_run(RunFolder(path)) for path in runs])
    stage = f"hparams.protocol.{STAGE_KEY}"
    if stage in frame:
        frame = frame[frame[stage] != SELECTION].drop(columns=stage)
    for column in KEY_COLUMNS:
        if column not in frame:
            frame[column] = pd.Series(dtype=object)
    frame = frame[KEY_COLUMNS + [c for c in frame.columns if c not in KEY_COLUMNS]]
    frame = one_run_per_seed(label_rows(frame))
    return frame.sort_values(["preset", "method", "dataset", "seed", "run_id"],
                             na_position="last", ignore_index=True)
