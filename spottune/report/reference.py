"""Published numbers from ``spottune/reference/published.csv`` (package data), with their provenance.

The file has one published number per line (columns documented in
``spottune/reference/README.md``). :func:`load_published` returns the rows of one report
table with ``error`` rows turned into accuracies (``accuracy = 100 - error``, flagged in
``source``), so every table compares accuracies. Each row keeps its ``provenance`` tag:

- ``[src]``: quoted by a secondary source;
- ``[code]``: read in the named public repository;
- ``[unverified]``: recalled, not confirmed against the paper's PDF.
"""
from __future__ import annotations

from pathlib import Path

import pandas as pd

REFERENCE_DIR = Path(__file__).resolve().parents[1] / "reference"
PROVENANCE = {
    "[src]": "quoted by a secondary source",
    "[code]": "read in the public code or README named in the source",
    "[unverified]": "recalled, not confirmed against the paper's PDF",
}


def load_published(table: str, reference_dir: str | Path | None = None) -> pd.DataFrame:
    """Rows of ``published.csv`` for ``table`` (``decathlon``, ``standard``, ``vtab1k``, ``fgvc``),
    errors as accuracies.

    Columns: ``method, label, metric, dataset, value, provenance, source`` in file order.
    """
    path = Path(reference_dir or REFERENCE_DIR) / "published.csv"
    frame = pd.read_csv(path, dtype={"dataset": str}, keep_default_na=False,
                        na_values={"value": [""]})
    frame = frame[frame["table"] == table].drop(columns="table").reset_index(drop=True)
    errors = frame["metric"] == "error"
    frame.loc[errors, "value"] = (100 - frame.loc[errors, "value"]).round(10)
    frame.loc[errors, "source"] = frame.loc[errors, "source"] + " (accuracy = 100 - error)"
    frame.loc[errors, "metric"] = "accuracy"
    return frame
