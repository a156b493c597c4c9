"""Mean columns of a benchmark table: the mean of a group of datasets, or of earlier means.

A :class:`MeanColumn` averages the values of a row over ``over``: dataset names, or the
headers of mean columns computed before it. For VTAB-1k (:data:`VTAB_MEANS`), with ``a_t``
the accuracy on task ``t`` and the groups of :data:`spottune.data.peft_benchmarks.VTAB_GROUPS`
(Natural 7 tasks, Specialized 4, Structured 8)::

    Natural     = (1/7) Σ_{t ∈ Natural} a_t        (Specialized, Structured alike)
    mean (groups) = (Natural + Specialized + Structured) / 3     the three groups weighted equally
    mean (tasks)  = (1/19) Σ_t a_t                               V-PETL Bench's "Mean"

The two overall means differ (the 8 Structured tasks weigh 8/19 of the task mean, 1/3 of the
group mean), so each is labelled by what it averages. A mean is NaN unless every value under it
is present: a row that lacks a task has no mean for that task's group (printed ``–``), never a
mean over fewer tasks. :func:`mean_columns` applies the columns to a frame whose columns are
dataset names: one row of per-dataset means gives a row's cells, a seeds x datasets frame the
per-seed means behind their intervals.
"""
from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import pandas as pd

from spottune.data.peft_benchmarks import VTAB_GROUPS


@dataclass(frozen=True)
class MeanColumn:
    """The column ``header``: the mean of the row over ``over`` (datasets or earlier means);
    ``what`` says so in the table's footnote."""

    header: str
    over: tuple[str, ...]
    what: str


def mean_columns(values: pd.DataFrame, columns: Sequence[MeanColumn]) -> pd.DataFrame:
    """The mean columns of every row of ``values`` (columns: dataset names), in ``columns``
    order; NaN where a value under a mean is missing."""
    out = pd.DataFrame(index=values.index, dtype=float)
    missing = pd.Series(float("nan"), index=values.index)
    for column in columns:
        parts = [out[name] if name in out.columns else values.get(name, missing) for name in column.over]
        out[column.header] = pd.concat(parts, axis=1).astype(float).mean(axis=1, skipna=False)
    return out


def _group(name: str) -> MeanColumn:
    tasks = tuple(VTAB_GROUPS[name])
    return MeanColumn(name, tasks, f"{name}: mean over its {len(tasks)} tasks")


VTAB_MEANS = (
    *(_group(name) for name in VTAB_GROUPS),
    MeanColumn("mean (groups)", tuple(VTAB_GROUPS),
               "mean (groups): mean of the three group means"),
    MeanColumn("mean (tasks)", tuple(task for tasks in VTAB_GROUPS.values() for task in tasks),
               f"mean (tasks): mean over the {sum(map(len, VTAB_GROUPS.values()))} tasks (V-PETL Bench's Mean)"),
)
"""The VTAB-1k table's mean columns (see the module docstring)."""
