"""Seeds -> one number per (preset, method, dataset): mean, sample std, 95 % interval, counts.

For a group of runs that differ only by seed, with accuracies ``a_1 .. a_n`` of the ``n``
done runs: ``mean = sum_i a_i / n``, ``std = sqrt(sum_i (a_i - mean)^2 / (n - 1))`` and
``ci_low, ci_high = mean ∓ t_{n-1}(0.975) · std / sqrt(n)``
(:func:`spottune.report.statistics.t_interval`); std and interval are NaN when ``n = 1``,
printed as no interval. ``runs`` counts every run of the group, done or not,
so a report can say when a mean rests on fewer seeds than the grid asked for. A group with
no done run has ``mean = NaN`` (printed as missing), never zero.
"""
from __future__ import annotations

from pathlib import Path

import pandas as pd

from spottune.report.rows import DUPLICATE
from spottune.report.statistics import t_interval

GROUP = ["preset", "method", "dataset"]


def seed_stats(records: pd.DataFrame, value: str = "test_accuracy") -> pd.DataFrame:
    """One row per group: ``preset, method, dataset, mean, std, ci_low, ci_high, seeds (done),
    runs (all)``."""
    frame = records.dropna(subset=GROUP)
    values = frame[value] if value in frame else pd.Series(float("nan"), index=frame.index)
    done = frame.assign(_value=values.astype(float).where(frame["status"] == "done"))
    grouped = done.groupby(GROUP, sort=True)["_value"]
    intervals = [t_interval(values) for _, values in grouped]
    stats = pd.DataFrame({"mean": grouped.mean(), "std": grouped.std(ddof=1),
                          "ci_low": [interval.low for interval in intervals],
                          "ci_high": [interval.high for interval in intervals],
                          "seeds": grouped.count(), "runs": grouped.size()})
    return stats.reset_index()


def runs_not_done(records: pd.DataFrame) -> list[str]:
    """``method/dataset/seed (status)`` for every run that is not done, in record order; a
    duplicate (:data:`spottune.report.rows.DUPLICATE`) names the folder used instead."""
    pending = records[records["status"] != "done"]
    return [f"{r.method}/{r.dataset}/seed {r.seed:g} ({r.status}"
            + (f" of {Path(r.duplicate_of).name}, left out: {Path(r.run_dir).name}"
               if r.status == DUPLICATE else "") + ")" for r in pending.itertuples()]


def pivot(stats: pd.DataFrame, preset: str, column: str = "mean") -> pd.DataFrame:
    """``column`` of :func:`seed_stats` for one preset as a method x dataset frame."""
    wide = stats[stats["preset"] == preset].pivot(index="method", columns="dataset", values=column)
    wide.index.name, wide.columns.name = None, None
    return wide.astype(float)

