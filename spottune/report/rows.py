"""What one row of a table is: one configuration of one method, with one run per seed.

A run's **row label** is its method, followed by the hyperparameters that set it apart from
other runs of the method: ``bn_last_stage [bn_lr_mult=3.0]``. They come from two places:

1. ``configuration`` in its ``config.json``: the values its grid set apart from what the preset
   resolves for that method and dataset (``--set`` and ``--sweep``, :mod:`spottune.planning.grid`),
   minus those that every run of the preset shares (``--set epochs=1`` on a whole grid labels
   nothing: the footnotes state it) and those every run resolved alike (a preset edited to what
   an earlier launch set with ``--set``: the runs of both launches are one configuration);
2. a safety net over what ran: runs under one label on one dataset whose resolved
   hyperparameters (``hparams.*``) still differ (records written before ``configuration``
   existed, a preset edited between two launches) get every differing key added to their label.

So runs whose resolved hyperparameters differ never share a cell (they are not seeds of one
configuration), and the rows of a hyperparameter study are labelled by its values.

**One run per seed**: two done runs with the same label, dataset and seed (a run folder copied
under another name, two outputs merged) would count one seed twice in a cell and once in a
paired test. The first in folder order is used everywhere; each other one gets the status
:data:`DUPLICATE` (never ``done``: no table counts it), ``duplicate_of`` naming the folder
used, and a warning naming both.
"""
from __future__ import annotations

import json
import logging
import math
from typing import Any

import pandas as pd

from spottune.storage.records import row_label

log = logging.getLogger(__name__)

CONFIGURATION = "configuration."
"""Prefix of the flattened ``configuration`` columns of a record."""
HPARAMS = "hparams."
DUPLICATE = "duplicate"
"""Status of a done run whose label, dataset and seed another done run already has."""


def _missing(value: Any) -> bool:
    return value is None or (isinstance(value, float) and math.isnan(value))


def _canonical(value: Any) -> str:
    return "<unset>" if _missing(value) else json.dumps(value, sort_keys=True, default=str)


def _distinguishing(runs: pd.DataFrame) -> list[str]:
    """The ``configuration.*`` columns of one preset's runs that label rows: set on some run,
    not one value shared by every run, and naming a hyperparameter that the runs of one method
    on one dataset did not all resolve alike. A ``configuration`` is relative to the preset at
    launch: once the preset is edited to what an earlier ``--set`` chose, the older runs still
    record it and the newer do not, yet they ran one configuration; and a value that differs
    between datasets only (a per-dataset budget, ``dataset_hparams``) is that method's recipe,
    one row, stated by the protocol footnote."""
    columns = [c for c in runs.columns if c.startswith(CONFIGURATION)]
    return [c for c in columns if runs[c].map(_canonical).nunique() > 1
            and _varies_in_a_cell(runs, HPARAMS + c.removeprefix(CONFIGURATION))]


def _varies(runs: pd.DataFrame, column: str) -> bool:
    """Whether ``column`` takes more than one value among ``runs`` (or is not recorded)."""
    return column not in runs.columns or runs[column].map(_canonical).nunique() > 1


def _varies_in_a_cell(runs: pd.DataFrame, column: str) -> bool:
    """Whether ``column`` takes more than one value among the runs of some (method, dataset)."""
    return column not in runs.columns or any(
        _varies(cell, column) for _, cell in runs.groupby(["method", "dataset"], sort=False, dropna=False))


def _varying(runs: pd.DataFrame) -> list[str]:
    """The ``hparams.*`` columns whose values differ among ``runs``."""
    return [c for c in runs.columns if c.startswith(HPARAMS) and _varies(runs, c)]


def label_rows(records: pd.DataFrame) -> pd.DataFrame:
    """``records`` with ``method`` replaced by each run's row label (see the module docstring)
    and the registered (or variant) name kept in ``method_name``."""
    frame = records.assign(method_name=records["method"])
    if frame.empty:
        return frame
    settings: dict[Any, dict[str, Any]] = {index: {} for index in frame.index}
    for _, runs in frame.groupby("preset", sort=False, dropna=False):
        for column in _distinguishing(runs):
            for index, value in runs[column].items():
                if not _missing(value):
                    settings[index][column.removeprefix(CONFIGURATION)] = value
    frame["method"] = [row_label(method, settings[i]) for i, method in frame["method_name"].items()]
    for _, runs in frame.groupby(["preset", "method", "dataset"], sort=False, dropna=False):
        varying = _varying(runs)
        for index in runs.index if varying else ():
            extra = {c.removeprefix(HPARAMS): runs.at[index, c] for c in varying}
            settings[index].update({key: ("<unset>" if _missing(v) else v) for key, v in extra.items()})
            frame.at[index, "method"] = row_label(frame.at[index, "method_name"], settings[index])
    return frame


def one_run_per_seed(records: pd.DataFrame) -> pd.DataFrame:
    """``records`` where every done run beyond the first of its (preset, label, dataset, seed)
    has the status :data:`DUPLICATE` and ``duplicate_of`` (see the module docstring)."""
    frame = records.assign(duplicate_of=None)
    done = frame[frame["status"] == "done"].sort_values("run_dir", kind="stable")
    for _, runs in done.groupby(["preset", "method", "dataset", "seed"], sort=False):
        kept = runs["run_dir"].iloc[0]
        for index in runs.index[1:]:
            log.warning("%s and %s are both %s on %s, seed %s: the report uses the first only",
                        kept, frame.at[index, "run_dir"], frame.at[index, "method"],
                        frame.at[index, "dataset"], frame.at[index, "seed"])
            frame.at[index, "status"] = DUPLICATE
            frame.at[index, "duplicate_of"] = kept
    return frame
