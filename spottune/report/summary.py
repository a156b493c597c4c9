"""The summary printed at the end of every grid: test accuracy per method x dataset.

One Markdown table per preset found in the records (methods as rows, datasets as columns,
mean over the done seeds with its 95 % interval and seed count, best per dataset in bold,
each compared cell marked with the outcome of its seed-level comparison with the baseline
method (:data:`spottune.report.comparison.MARKERS`), ``–`` where no run is done), followed by
the runs that are not done and what the intervals are conditional on
(:func:`spottune.report.source.conditioning_note`), then the preset's paired comparison with
the baseline (:mod:`spottune.report.comparison`). ``summary.csv`` is the tidy form of the
accuracies: one row per (preset, method, dataset) with ``mean, std, ci_low, ci_high, seeds,
runs`` (see :mod:`spottune.report.aggregate`).
"""
from __future__ import annotations

from pathlib import Path

import pandas as pd

from spottune.report.aggregate import pivot, runs_not_done, seed_stats
from spottune.report.comparison import (DEFAULT_BASELINE, cell_markers, paired_comparison, paired_table,
                                        significance_note)
from spottune.report.frame import load_records
from spottune.report.render import EQUAL, Table, to_markdown
from spottune.report.source import conditioning_note
from spottune.report.statistics import LEVEL, percent


def summary_tables(records: pd.DataFrame, stats: pd.DataFrame,
                   comparison: pd.DataFrame) -> dict[str, Table]:
    """One accuracy :class:`Table` per preset, in preset order (``stats``: of ``records``,
    ``comparison``: their :func:`paired_comparison`, whose outcomes mark the cells)."""
    tables = {}
    for preset in sorted(stats["preset"].unique()):
        mean = pivot(stats, preset)
        markers = pd.DataFrame("", index=mean.index, columns=mean.columns)
        for (method, dataset), mark in cell_markers(comparison, preset).items():
            markers.at[method, dataset] = mark
        runs = records[records["preset"] == preset]
        notes = [f"Test top-1 accuracy (%), mean over the done seeds ± half-width of its {percent(LEVEL)} "
                 f"Student-t interval ({EQUAL}: every seed gave the same number); – = no done run.",
                 *significance_note(comparison, preset)]
        pending = runs_not_done(runs)
        if pending:
            notes.append("Not done: " + ", ".join(pending) + ".")
        source = conditioning(records, preset)
        if source:
            notes.append(source)
        tables[preset] = Table(name=f"summary_{preset}", title=f"Summary: preset {preset}",
                               mean=mean, low=pivot(stats, preset, "ci_low"),
                               high=pivot(stats, preset, "ci_high"),
                               seeds=pivot(stats, preset, "seeds"), markers=markers,
                               best={column: "max" for column in mean.columns}, footnotes=notes)
    return tables


def conditioning(records: pd.DataFrame, preset: str) -> str | None:
    """:func:`~spottune.report.source.conditioning_note` of ``preset``'s done runs (None without)."""
    done = records[(records["preset"] == preset) & (records["status"] == "done")]
    return conditioning_note(done) if len(done) else None


def write_summary_tables(records: pd.DataFrame, stats: pd.DataFrame, comparison: pd.DataFrame,
                         tables_dir: Path) -> list[Path]:
    """Write ``summary.md`` (each preset's summary, then its paired comparison) and
    ``summary.csv`` for ``records`` (``stats``: their :func:`seed_stats`, ``comparison``:
    their :func:`paired_comparison`) into ``tables_dir``."""
    tables_dir.mkdir(parents=True, exist_ok=True)
    printed = [table for preset, summary in summary_tables(records, stats, comparison).items()
               for table in (summary, paired_table(comparison, preset, conditioning(records, preset)))
               if table is not None]
    markdown = "\n".join(to_markdown(table) for table in printed)
    paths = [tables_dir / "summary.md", tables_dir / "summary.csv"]
    paths[0].write_text(markdown or "No runs found.\n")
    stats.to_csv(paths[1], index=False, float_format="%.4f", lineterminator="\n")
    return paths


def write_summary(output_dir: str | Path, report_dir: str | Path | None = None,
                  baseline: str = DEFAULT_BASELINE) -> pd.DataFrame:
    """Write ``<report_dir>/tables/summary.{md,csv}``; return the tidy numbers (see module doc).

    ``report_dir`` defaults to ``output_dir``; ``baseline`` is the method the others are
    compared with. The returned frame has columns
    ``preset, method, dataset, mean, std, ci_low, ci_high, seeds, runs``.
    """
    records = load_records(output_dir)
    stats = seed_stats(records)
    write_summary_tables(records, stats, paired_comparison(records, baseline),
                         Path(report_dir or output_dir) / "tables")
    return stats
