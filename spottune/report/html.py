"""``<report_dir>/report.html``: one self-contained page to read a grid's results.

In order: the runs (done / not done per preset), the protocol of each preset
(:func:`~spottune.report.tables.protocol_note`) and how its statistics are computed, what the
comparisons support (sentences generated from the comparison table,
:mod:`spottune.report.claims`), each preset's summary with its paired comparison, power and
per-seed McNemar tables, the paper tables, every PNG
figure inlined as a ``data:`` URI, and the runs that failed or did not finish, each with the
exception line of its ``error.txt``. No script, no external file, no date: regenerating from the
same records gives the same bytes.
"""
from __future__ import annotations

import base64
import html
import re
from collections.abc import Mapping, Sequence
from pathlib import Path

import pandas as pd

from spottune.storage.records import RunFolder
from spottune.launch.status import error_line
from spottune.report.render import Table, to_html
from spottune.report.statistics import ALPHA, LEVEL, MIN_SEEDS, POWER, percent
from spottune.report.tables import protocol_note

REPORT = "report.html"
STYLE = """
body { font: 14px/1.45 system-ui, sans-serif; margin: 2em auto; max-width: 1400px; padding: 0 1em;
       color: #222; }
h1 { font-size: 1.6em; } h2 { border-bottom: 1px solid #ccc; margin-top: 2em; }
div.scroll { overflow-x: auto; }
table { border-collapse: collapse; margin: 1em 0 0.3em; font-variant-numeric: tabular-nums; }
caption { text-align: left; font-weight: 600; padding-bottom: 0.3em; white-space: nowrap; }
th, td { padding: 0.2em 0.6em; border-bottom: 1px solid #e4e4e4; white-space: nowrap; }
thead th { border-bottom: 2px solid #888; } td { text-align: right; }
tbody th { text-align: left; font-weight: normal; }
tr.group { border-top: 2px solid #bbb; }
ul.notes { font-size: 0.85em; color: #555; margin-top: 0; }
figure { margin: 1.5em 0; } figure img { max-width: min(100%, 1000px); border: 1px solid #eee; }
#unfinished td { text-align: left; }
figcaption { font-size: 0.85em; color: #555; }
code { font-size: 0.95em; }
"""


def _error_line(run_dir: str) -> str:
    """The exception line of a run's ``error.txt``, as the console prints it
    (:func:`spottune.launch.status.error_line`); '' without one."""
    text = RunFolder(run_dir).error_text()
    return "" if text is None else error_line(text)


def runs_overview(records: pd.DataFrame) -> Table:
    """Runs per preset by status (``done``, ``started``, ``failed``, ...)."""
    counts = pd.crosstab(records["preset"], records["status"]).astype(float)
    counts.index.name, counts.columns.name = None, None
    return Table(name="runs", title="Runs per preset", index_name="preset", mean=counts,
                 decimals=dict.fromkeys(counts.columns, 0))


def _unfinished(records: pd.DataFrame) -> str:
    """The runs that are not done, with their folder and last error line, as an HTML table."""
    pending = records[records["status"] != "done"]
    if pending.empty:
        return "<p>None.</p>"
    header = "".join(f"<th>{name}</th>" for name in
                     ("preset", "method", "dataset", "seed", "status", "run folder", "error"))
    rows = "".join(
        "<tr>" + "".join(f"<td>{html.escape(str(value))}</td>" for value in (
            run.preset, run.method, run.dataset, f"{run.seed:g}", run.status, run.run_dir,
            _error_line(run.run_dir))) + "</tr>" for run in pending.itertuples())
    return f'<table id="unfinished"><thead><tr>{header}</tr></thead><tbody>{rows}</tbody></table>'


def _protocol(records: pd.DataFrame, baseline: str) -> str:
    """Per preset, the protocol of its done runs; then how the statistics are computed."""
    items = []
    for preset, runs in records.groupby("preset", sort=True):
        done = runs[runs["status"] == "done"]
        seeds = ", ".join(str(int(s)) for s in sorted(done["seed"].dropna().unique()))
        note = protocol_note(done) or "no done runs."
        items.append(f"<li><strong>{html.escape(preset)}</strong> (seeds {seeds or '–'}): "
                     f"{html.escape(note)}</li>")
    statistics = (
        f"Cells: mean over the done seeds with its {percent(LEVEL)} Student-t interval (none with one "
        "seed) and the number of seeds. The seed, one trained network, is the unit of every interval "
        f"and test. Paired comparison with <code>{html.escape(baseline)}</code>: per dataset the "
        "mean difference over the seeds both have, with its t-interval, and a two-sided paired "
        f"t-test over those seeds (at least {MIN_SEEDS}; fewer: untested, with the reason), "
        f"Holm-corrected across each method's datasets; a win or a loss needs a corrected p &lt; "
        f"{ALPHA:g}, otherwise the difference is n.s. (not significant). Power: the smallest "
        f"difference those seeds detect with {percent(POWER)} power. The exact McNemar test per "
        "seed describes whether two trained networks differ on the same test images, not whether "
        "the methods do. Decathlon-style scores: each seed's score against the baseline, averaged, "
        "with the t-interval over seeds. Every interval is conditional on the source network the "
        "runs started from (named under each table).")
    return f"<ul>{''.join(items)}</ul><p>{statistics}</p>"


def _figure(path: Path) -> str:
    """A PNG inlined as a ``data:`` URI, captioned with its file name."""
    data = base64.b64encode(path.read_bytes()).decode("ascii")
    return (f'<figure><img alt="{html.escape(path.stem)}" src="data:image/png;base64,{data}">'
            f"<figcaption>{html.escape(path.name)}</figcaption></figure>")


def _claims(claims: Mapping[str, Sequence[str]]) -> str:
    """Per preset, the generated sentences of :mod:`spottune.report.claims` (Markdown bold as HTML)."""
    items = []
    for preset, sentences in claims.items():
        bullets = "".join("<li>" + re.sub(r"\*\*(.+?)\*\*", r"<strong>\1</strong>", html.escape(s)) + "</li>"
                          for s in sentences)
        items.append(f"<h3>Preset {html.escape(preset)}</h3><ul>{bullets}</ul>")
    return "".join(items) or "<p>Nothing was compared.</p>"


def report_html(records: pd.DataFrame, sections: Sequence[tuple[str, Sequence[Table]]],
                figures: Sequence[Path], baseline: str, title: str,
                claims: Mapping[str, Sequence[str]] | None = None) -> str:
    """The page (see the module docstring); ``sections``: (heading, tables) in order,
    ``figures``: PNG files to inline (none: the page says so), ``claims``: per preset the
    sentences stating its comparisons (:func:`spottune.report.claims.comparison_claims`)."""
    overview = to_html(runs_overview(records)) if len(records) else "<p>No runs found.</p>"
    body = [f"<h1>{html.escape(title)}</h1>", "<h2>Runs</h2>", overview,
            "<h2>Protocol and statistics</h2>", _protocol(records, baseline),
            f"<h2>What the comparisons with {html.escape(baseline)} support</h2>", _claims(claims or {})]
    for heading, tables in sections:
        if tables:
            body += [f"<h2>{html.escape(heading)}</h2>",
                     *(f'<div class="scroll">{to_html(table)}</div>' for table in tables)]
    body.append("<h2>Figures</h2>")
    body += [_figure(path) for path in figures] or ["<p>No figures (none written).</p>"]
    body += ["<h2>Failed and unfinished runs</h2>", _unfinished(records)]
    return ("<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">"
            f"<title>{html.escape(title)}</title><style>{STYLE}</style></head>\n<body>\n"
            + "\n".join(body) + "\n</body></html>\n")


def write_report(path: Path, records: pd.DataFrame, sections: Sequence[tuple[str, Sequence[Table]]],
                 figures: Sequence[Path], baseline: str, title: str,
                 claims: Mapping[str, Sequence[str]] | None = None) -> Path:
    """Write :func:`report_html` to ``path``; return ``path``."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(report_html(records, sections, figures, baseline, title, claims), encoding="utf-8")
    return path
