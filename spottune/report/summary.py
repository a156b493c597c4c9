"""The summary printed at the end of every grid: test accuracy per method x dataset.

One Markdown table per preset found in the records (methods as rows, datasets as columns,
mean ± sample std over the done seeds, best per dataset in bold, ``–`` where no run is
done), followed by the runs that are not done. ``summary.csv`` is the tidy form of the same
numbers: one row per (preset, method, dataset) with ``mean, std, seeds, runs`` (see
:mod:`spottune.report.aggregate`).
"""
from __future__ import annotations

from pathlib import Path

import pandas as pd

from spottune.report.aggregate import pivot, runs_not_done, seed_stats
from spottune.report.records import load_records
from spottune.report.render import Table, to_markdown


def summary_tables(records: pd.DataFrame, stats: pd.DataFrame) -> list[Table]:
    """One accuracy :class:`Table` per preset, in preset order (``stats``: of ``records``)."""
    tables = []
    for preset in sorted(stats["preset"].unique()):
        mean = pivot(stats, preset)
        notes = ["Test top-1 accuracy (%), mean ± sample std over the done seeds; "
                 "– = no done run."]
        pending = runs_not_done(records[records["preset"] == preset])
        if pending:
            notes.append("Not done: " + ", ".join(pending) + ".")
        tables.append(Table(name=f"summary_{preset}", title=f"Summary: preset {preset}",
                            mean=mean, std=pivot(stats, preset, "std"),
                            best={column: "max" for column in mean.columns}, footnotes=notes))
    return tables


def write_summary_tables(records: pd.DataFrame, stats: pd.DataFrame, tables_dir: Path) -> list[Path]:
    """Write ``summary.md`` and ``summary.csv`` for ``records`` (``stats``: their
    :func:`seed_stats`) into ``tables_dir``."""
    tables_dir.mkdir(parents=True, exist_ok=True)
    markdown = "\n".join(to_markdown(table) for table in summary_tables(records, stats))
    paths = [tables_dir / "summary.md", tables_dir / "summary.csv"]
    paths[0].write_text(markdown or "No runs found.\n")
    stats.to_csv(paths[1], index=False, float_format="%.4f", lineterminator="\n")
    return paths


def write_summary(output_dir: str | Path, report_dir: str | Path | None = None) -> pd.DataFrame:
    """Write ``<report_dir>/tables/summary.{md,csv}``; return the tidy numbers (see module doc).

    ``report_dir`` defaults to ``output_dir``. The returned frame has columns
    ``preset, method, dataset, mean, std, seeds, runs``.
    """
    records = load_records(output_dir)
    stats = seed_stats(records)
    write_summary_tables(records, stats, Path(report_dir or output_dir) / "tables")
    return stats
