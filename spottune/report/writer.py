"""Everything the report package can produce from one output folder, in one call.

``<report_dir>/tables/``: ``summary.{md,csv}``, ``<table>.{md,tex,csv}`` for each paper
table whose preset has runs (:func:`spottune.report.tables.paper_layouts`), for each preset with
compared runs ``paired_<preset>`` (the seed-level comparison with the baseline method),
``power_<preset>`` (what its seeds can detect) and ``mcnemar_<preset>`` (the per-seed
description of the trained networks; :mod:`spottune.report.comparison`), ``paired.csv`` and
``mcnemar.csv`` (every comparison's and every per-seed test's numbers).
``<report_dir>/figures/``: for each routing method of each preset,
``<preset>_<method>_{routing_by_block,blocks_per_image}``, ``..._routing_over_epochs`` (for
the datasets whose history recorded ``finetune_fraction``) and, given an ``image_lookup``,
``<preset>_<method>_extreme_images``; for each scored table,
``<table>_score_vs_params``; for each method that selects layers per task (TAPS),
``<preset>_<method>_layer_selection``, drawn above SpotTune's routing of the same preset
(:data:`ROUTING_BESIDE_SELECTION`); each as PNG and PDF.
``<report_dir>/report.html``: all of it on one self-contained page (:mod:`spottune.report.html`).
``report_dir`` defaults to the output folder.

A report is replaced whole: it is written into a fresh hidden folder
``<report_dir>/.report-<random>/``, then ``tables/``, ``figures/`` and ``report.html`` are each
moved over the earlier report's (:func:`swap_in`), so that no table or figure of an earlier
report survives beside a newer one (a run's ``predictions.npz`` removed since: the earlier
``mcnemar_<preset>`` table no longer contradicts the new ``paired_<preset>``). What this report
does not write (figures with ``figures_too=False``, the extreme-images figure without an
``image_lookup``) is gone afterwards too. A failure while writing (a full disk) leaves the
earlier report in place and raises an ``OSError`` naming the report folder.
"""
from __future__ import annotations

import logging
import os
import re
import shutil
import tempfile
import uuid
from pathlib import Path

import pandas as pd

from spottune.report import figures
from spottune.report.claims import comparison_claims, routing_claims
from spottune.report.aggregate import seed_stats
from spottune.report.comparison import (DEFAULT_BASELINE, mcnemar_table, paired_comparison,
                                        paired_table, per_seed_mcnemar, power_table)
from spottune.report.figures import ImageLookup
from spottune.report.html import REPORT, write_report
from spottune.report.frame import load_records
from spottune.report.render import Table, write_table
from spottune.report.summary import conditioning, summary_tables, write_summary_tables
from spottune.report.tables import build_table, paper_layouts

log = logging.getLogger(__name__)

TABLES, FIGURES = "tables", "figures"
ROUTING_BESIDE_SELECTION = "spottune"
"""The routing method whose per-block fine-tune fractions a layer selection is drawn above."""


def paper_tables(records: pd.DataFrame, comparison: pd.DataFrame | None = None) -> list[Table]:
    """The paper tables whose preset has runs in ``records``, in registration order
    (``comparison``: see :func:`~spottune.report.tables.build_table`)."""
    return [table for table in (build_table(records, layout, comparison=comparison)
                                for layout in paper_layouts()) if table]


def comparison_tables(records: pd.DataFrame, comparison: pd.DataFrame, tests: pd.DataFrame,
                      preset: str) -> list[Table]:
    """The ``paired_<preset>``, ``power_<preset>`` and ``mcnemar_<preset>`` tables of what
    ``preset`` compared (``tests``: :func:`~spottune.report.comparison.per_seed_mcnemar`)."""
    return [table for table in (paired_table(comparison, preset, conditioning(records, preset)),
                                power_table(comparison, preset), mcnemar_table(tests, preset))
            if table is not None]


def file_stem(name: str) -> str:
    """``name`` as a file name: a row label's spaces, brackets and commas become ``_``
    (``mini_bn_last_stage [bn_lr_mult=3.0]`` -> ``mini_bn_last_stage_bn_lr_mult=3.0``)."""
    return re.sub(r"[^\w.=+-]+", "_", name).strip("_")


def write_tables(tables: list[Table], report_dir: Path) -> list[Path]:
    """Write the paper tables as Markdown, LaTeX and CSV into ``<report_dir>/tables``."""
    return [path for table in tables for path in write_table(table, report_dir / TABLES)]


def write_figures(records: pd.DataFrame, report_dir: Path, image_lookup: ImageLookup | None = None,
                  tables: list[Table] | None = None) -> list[Path]:
    """Write every figure into ``<report_dir>/figures`` (see the module docstring); ``tables``:
    the paper tables of ``records`` when already built (:func:`paper_tables`)."""
    folder, paths = report_dir / FIGURES, []
    routings = figures.load_routing(records)
    for (preset, method), routing in routings.items():
        stem, title = file_stem(f"{preset}_{method}"), f"{method}, preset {preset}"
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
    for (preset, method), selection in figures.load_layer_selection(records).items():
        beside = routings.get((preset, ROUTING_BESIDE_SELECTION))
        paths += figures.save(figures.layer_selection(selection, f"{method}, preset {preset}", beside,
                                                      ROUTING_BESIDE_SELECTION), folder,
                              f"{file_stem(f'{preset}_{method}')}_layer_selection")
    for table in paper_tables(records) if tables is None else tables:
        if "score" in table.mean.columns:
            paths += figures.save(figures.score_vs_params(table), folder,
                                  f"{table.name}_score_vs_params")
    return paths


def write_all(output_dir: str | Path, image_lookup: ImageLookup | None = None,
              report_dir: str | Path | None = None, figures_too: bool = True,
              baseline: str = DEFAULT_BASELINE) -> list[Path]:
    """Regenerate every table (and figure) and ``report.html`` from ``<output_dir>/runs``,
    comparing every method with ``baseline``, replacing the earlier report whole (see the
    module docstring); return the written paths."""
    target = Path(report_dir or output_dir)
    target.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(dir=target, prefix=".report-"))
    try:
        try:
            written = _write_report(output_dir, staging, image_lookup, figures_too, baseline)
        except OSError as err:
            raise OSError(err.errno, f"writing the report into {target}: {err.strerror or err}",
                          err.filename) from err
        for name in (TABLES, FIGURES, REPORT):
            swap_in(staging / name, target / name)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return [target / path.relative_to(staging) for path in written]


def swap_in(new: Path, final: Path) -> None:
    """Put ``new`` (a file or a folder; when absent, nothing) where ``final`` is: a file replaces
    a file by one atomic rename; a folder already there is renamed aside first, then deleted.
    Each of ``tables/``, ``figures/`` and ``report.html`` is thus one report's, whole (of the
    last of two reports written at once)."""
    while True:
        if new.exists():
            try:
                os.rename(new, final)
                return
            except OSError:  # a folder with files in it is there
                pass
        aside = final.with_name(f".{final.name}.old-{uuid.uuid4().hex}")
        try:
            os.rename(final, aside)
        except FileNotFoundError:  # nothing there (any more)
            if new.exists():
                continue
            return
        if aside.is_dir():
            shutil.rmtree(aside, ignore_errors=True)
        else:
            aside.unlink()


def _write_report(output_dir: str | Path, target: Path, image_lookup: ImageLookup | None, figures_too: bool,
                  baseline: str) -> list[Path]:
    """Everything of :func:`write_all` written into ``target``; the written paths."""
    records = load_records(output_dir)
    stats, comparison = seed_stats(records), paired_comparison(records, baseline)
    tests = per_seed_mcnemar(records, baseline)
    tables = paper_tables(records, comparison)
    summaries = summary_tables(records, stats, comparison)
    compared = {preset: comparison_tables(records, comparison, tests, preset) for preset in summaries}
    paths = write_summary_tables(records, stats, comparison, target / TABLES)
    paths += write_tables(tables + [t for group in compared.values() for t in group], target)
    for name, frame in (("paired.csv", comparison), ("mcnemar.csv", tests)):
        frame.to_csv(target / TABLES / name, index=False, float_format="%.6g", lineterminator="\n")
        paths.append(target / TABLES / name)
    figure_paths = write_figures(records, target, image_lookup, tables) if figures_too else []
    sections = [(f"Preset {preset}: summary and comparison with {baseline}",
                 [summary, *compared[preset]]) for preset, summary in summaries.items()]
    sections.append(("Paper tables", tables))
    paths.append(write_report(target / REPORT, records, sections,
                              [p for p in figure_paths if p.suffix == ".png"], baseline,
                              f"SpotTune benchmark report: {Path(output_dir).resolve().name}",
                              {preset: comparison_claims(comparison, preset) + routing_claims(records, preset)
                               for preset in summaries}))
    return paths
