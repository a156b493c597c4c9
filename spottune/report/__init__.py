"""Reports from run records: tables (Markdown, LaTeX, CSV), the Decathlon score, figures.

Everything here reads only ``<output>/runs/*/`` (see ``docs/RECORDS.md``), so
``python -m spottune.report <output>`` regenerates every table and figure without training.
"""
from spottune.report.decathlon import decathlon_score
from spottune.report.records import load_records
from spottune.report.summary import write_summary
from spottune.report.writer import write_all

__all__ = ["decathlon_score", "load_records", "write_all", "write_summary"]
