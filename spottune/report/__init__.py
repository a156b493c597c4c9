"""Reports from run records: tables (Markdown, LaTeX, CSV) with their statistics, the
Decathlon score, figures, and one HTML page with all of it.

Everything here reads only ``<output>/runs/*/`` (see ``docs/RECORDS.md``), so
``python -m spottune.report <output>`` regenerates every table, figure and ``report.html``
without training.
"""
from spottune.report.comparison import DEFAULT_BASELINE, paired_comparison
from spottune.report.frame import load_records
from spottune.report.summary import write_summary
from spottune.report.writer import write_all
from spottune.visual_decathlon import decathlon_score

__all__ = ["DEFAULT_BASELINE", "decathlon_score", "load_records", "paired_comparison", "write_all",
           "write_summary"]
