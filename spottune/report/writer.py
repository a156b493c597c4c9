"""Everything the report package can produce from one output folder, in one call.

``<report_dir>/tables/``: ``summary.{md,csv}``, and ``<table>.{md,tex,csv}`` for each paper
table whose preset has runs (:data:`spottune.report.tables.LAYOUTS`).
``<report_dir>/figures/``: for each routing method of each preset,
``<preset>_<method>_{routing_by_block,blocks_per_image}``, ``..._routing_over_epochs`` (for
the datasets whose history recorded ``finetune_fraction``) and, given an ``image_lookup``,
``<preset>_<method>_extreme_images``; for each scored table,
``<table>_score_vs_params``; each as PNG and PDF. ``report_dir`` defaults to the output folder.
"""
from __future__ import annotations

import logging
from pathlib import Path

import pandas as pd

from spottune.report import figures
from spottune.report.aggregate import seed_stats
from spottune.report.figures import ImageLookup
from spottune.report.records import load_records
from spottune.report.render import Table, write_table
from spottune.report.summary import write_summary_tables
from spottune.report.tables import LAYOUTS, build_table

log = logging.getLogger(__name__)


def paper_tables(records: pd.DataFrame) -> list[Table]:
    """The paper tables whose preset has runs in ``records``, in :data:`LAYOUTS` order."""
    return [table for table in (build_table(records, layout) for layout in LAYOUTS) if table]


def write_tables(tables: list[Table], report_dir: Path) -> list[Path]:
    """Write the paper tables as Markdown, LaTeX and CSV into ``<report_dir>/tables``."""
    return [path for table in tables for path in write_table(table, report_dir / "tables")]


def write_figures(records: pd.DataFrame, report_dir: Path, image_lookup: ImageLookup | None = None,
                  tables: list[Table] | None = None) -> list[Path]:
    """Write every figure into ``<report_dir>/figures`` (see the module docstring); ``tables``:
    the paper tables of ``records`` when already built (:func:`paper_tables`)."""
    folder, paths = report_dir / "figures", []
    for (preset, method), routing in figures.load_routing(records).items():
        stem, title = f"{preset}_{method}", f"{method}, preset {preset}"
        paths += figures.save(figures.routing_heatmap(routing, title), folder,
                              f"{stem}_routing_by_block")
        paths += figures.save(figures.blocks_histogram(routing, title), folder,
                              f"{stem}_blocks_per_image")
        trained = {name: r for name, r in routing.items() if r.train_fraction.size}
        if trained:
            paths += figures.save(figures.routing_over_epochs(trained, title), folder,
                                  f"{stem}_routing_over_epochs")
        if image_lookup is None:
            log.info("no image_lookup given: skipping %s_extreme_images", stem)
        else:
            paths += figures.save(figures.extreme_images(routing, image_lookup, title), folder,
                                  f"{stem}_extreme_images")
    for table in paper_tables(records) if tables is None else tables:
        if "score" in table.mean.columns:
            paths += figures.save(figures.score_vs_params(table), folder,
                                  f"{table.name}_score_vs_params")
    return paths


def write_all(output_dir: str | Path, image_lookup: ImageLookup | None = None,
              report_dir: str | Path | None = None, figures_too: bool = True) -> list[Path]:
    """Regenerate every table (and figure) from ``<output_dir>/runs``; return the written paths."""
    target = Path(report_dir or output_dir)
    records = load_records(output_dir)
    tables = paper_tables(records)
    paths = write_summary_tables(records, seed_stats(records), target / "tables")
    paths += write_tables(tables, target)
    if figures_too:
        paths += write_figures(records, target, image_lookup, tables)
    return paths
