"""One table, four formats: Markdown, LaTeX (booktabs, amssymb) and CSV written side by side, and HTML.

A :class:`Table` holds numbers, not strings: ``mean`` (rows x columns, NaN = missing) and
optionally the bounds ``low`` and ``high`` of its 95 % interval (NaN = none, e.g. one seed)
and ``seeds``, the number of seeds behind each number. Printing rules, shared by every table:

- a cell is ``mean`` with ``decimals[column]`` digits (default 2), then `` ± h`` when the
  interval is symmetric at that precision (``h = high - mean``), else `` [low, high]``, then
  `` (n=k)`` when its ``k`` seeds differ from the table's usual number
  (:meth:`Table.usual_seeds`); a missing number prints as ``–`` (``--`` in LaTeX), never as zero;
  when every value behind the number is equal (``low == high``) it prints :data:`EQUAL` instead
  of an interval;
- rows in ``signed_rows`` and columns in ``signed_columns`` (differences) print an explicit sign;
- for each column in ``best`` (``"max"`` or ``"min"``), the best *displayed* value among the
  rows not in ``unranked_rows`` is bold, ties included;
- ``markers`` (same shape, strings) are appended to cells, e.g. provenance tags or ``†``;
- ``rules_before`` are row labels that start a new group (a ``\\midrule`` in LaTeX);
- ``footnotes`` follow the table in Markdown, LaTeX and HTML, after a note giving the usual
  number of seeds when seed counts exist (:meth:`Table.notes`).

The CSV has the numbers only: one column per table column, then ``<column>_low``,
``<column>_high`` and ``<column>_n`` where any interval or seed count exists, four decimals.
"""
from __future__ import annotations

import html
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd

MISSING = "–"
EQUAL = "(all equal)"
"""Printed instead of an interval when every value behind it is the same: a zero-width
interval there says nothing about the spread of new seeds, so no ``± 0.00`` is printed."""
LATEX_REPLACEMENTS = {
    "\\": r"\textbackslash{}", "&": r"\&", "%": r"\%", "$": r"\$", "#": r"\#", "_": r"\_",
    "{": r"\{", "}": r"\}", "~": r"\textasciitilde{}", "^": r"\textasciicircum{}",
    "±": r"$\pm$", "–": "--", "−": "-", "Δ": r"$\Delta$", "†": r"$^\dagger$",
    "×": r"$\times$", "°": r"$^\circ$", "‡": r"$^\ddagger$",
    "▲": r"$^{\blacktriangle}$", "▼": r"$^{\blacktriangledown}$",  # amssymb
    "Σ": r"$\Sigma$", "·": r"$\cdot$", "²": r"$^2$",
}


@dataclass
class Table:
    """Numbers of one report table and the rules to print them (see the module docstring)."""

    name: str
    title: str
    mean: pd.DataFrame
    low: pd.DataFrame | None = None
    high: pd.DataFrame | None = None
    seeds: pd.DataFrame | None = None
    index_name: str = "method"
    decimals: dict[str, int] = field(default_factory=dict)
    best: dict[str, str] = field(default_factory=dict)
    unranked_rows: set[str] = field(default_factory=set)
    signed_rows: set[str] = field(default_factory=set)
    signed_columns: set[str] = field(default_factory=set)
    markers: pd.DataFrame | None = None
    rules_before: set[str] = field(default_factory=set)
    footnotes: list[str] = field(default_factory=list)

    def _number(self, value: float, row: str, column: str) -> str:
        sign = "+" if row in self.signed_rows or column in self.signed_columns else ""
        return f"{value:{sign}.{self.decimals.get(column, 2)}f}"

    def bold_mask(self) -> pd.DataFrame:
        """True where a cell is the best displayed value of its column (see ``best``)."""
        mask = pd.DataFrame(False, index=self.mean.index, columns=self.mean.columns)
        ranked = [row for row in self.mean.index if row not in self.unranked_rows]
        for column, direction in self.best.items():
            shown = self.mean.loc[ranked, column].dropna().round(self.decimals.get(column, 2))
            if shown.empty:
                continue
            target = shown.max() if direction == "max" else shown.min()
            mask.loc[shown.index[shown == target], column] = True
        return mask

    def _at(self, frame: pd.DataFrame | None, row: str, column: str) -> float:
        return float("nan") if frame is None else frame.at[row, column]

    def _interval(self, value: float, row: str, column: str) -> str:
        low, high = self._at(self.low, row, column), self._at(self.high, row, column)
        if pd.isna(low) or pd.isna(high):
            return ""
        digits = self.decimals.get(column, 2)
        if low == high:
            return f" {EQUAL}"
        if round(high - value, digits) == round(value - low, digits):
            return f" ± {high - value:.{digits}f}"
        return f" [{low:.{digits}f}, {high:.{digits}f}]"

    def usual_seeds(self) -> int | None:
        """The most common number of seeds among the cells with a number (the smallest on a
        tie); ``None`` without seed counts."""
        if self.seeds is None:
            return None
        counts = self.seeds.where(self.mean.notna()).stack().dropna()
        return int(counts.mode().min()) if len(counts) else None

    def notes(self) -> list[str]:
        """The footnotes, after ``n = k seeds ...`` when the table has seed counts."""
        usual = self.usual_seeds()
        if usual is None:
            return self.footnotes
        seeds = (f"n = {usual} seed{'s' if usual != 1 else ''} behind each number unless "
                 "marked (n=k)" + ("; one seed gives no interval." if usual == 1 else "."))
        return [seeds, *self.footnotes]

    def cells(self) -> pd.DataFrame:
        """The printed text of every cell (without bold), as a frame of strings."""
        text = pd.DataFrame(MISSING, index=self.mean.index, columns=self.mean.columns)
        usual = self.usual_seeds()
        for row in self.mean.index:
            for column in self.mean.columns:
                value = self.mean.at[row, column]
                if pd.isna(value):
                    continue
                seeds = self._at(self.seeds, row, column)
                text.at[row, column] = (self._number(value, row, column)
                                        + self._interval(value, row, column)
                                        + ("" if pd.isna(seeds) or seeds == usual
                                           else f" (n={int(seeds)})"))
        if self.markers is not None:
            text = text + self.markers.reindex_like(text).fillna("")
        return text


def to_markdown(table: Table) -> str:
    """GitHub Markdown: a ``###`` title, the table (bold with ``**``), footnotes as a list."""
    cells, bold = table.cells(), table.bold_mask()
    lines = [f"### {table.title}", "",
             "| " + " | ".join([table.index_name, *map(str, cells.columns)]) + " |",
             "|" + "---|" + "---:|" * len(cells.columns)]
    for row in cells.index:
        shown = [f"**{cells.at[row, c]}**" if bold.at[row, c] else cells.at[row, c]
                 for c in cells.columns]
        lines.append("| " + " | ".join([str(row), *shown]) + " |")
    if table.notes():
        lines += [""] + [f"- {note}" for note in table.notes()]
    return "\n".join(lines) + "\n"


def latex_escape(text: str) -> str:
    """Escape LaTeX specials and map the few Unicode symbols the tables use."""
    return "".join(LATEX_REPLACEMENTS.get(char, char) for char in text)


def to_latex(table: Table) -> str:
    """A booktabs ``table`` environment with caption, label ``tab:<name>`` and footnotes."""
    cells, bold = table.cells(), table.bold_mask()
    header = " & ".join(latex_escape(str(c)) for c in [table.index_name, *cells.columns])
    lines = [r"\begin{table}[t]", r"\centering", rf"\caption{{{latex_escape(table.title)}}}",
             rf"\label{{tab:{table.name}}}", r"\small",
             r"\begin{tabular}{l" + "r" * len(cells.columns) + "}", r"\toprule",
             header + r" \\", r"\midrule"]
    for position, row in enumerate(cells.index):
        if row in table.rules_before and position > 0:
            lines.append(r"\midrule")
        shown = [rf"\textbf{{{latex_escape(cells.at[row, c])}}}" if bold.at[row, c]
                 else latex_escape(cells.at[row, c]) for c in cells.columns]
        lines.append(" & ".join([latex_escape(str(row)), *shown]) + r" \\")
    lines += [r"\bottomrule", r"\end{tabular}"]
    if table.notes():
        lines += [r"\par\smallskip\footnotesize"]
        lines += [latex_escape(note) + r"\par" for note in table.notes()]
    lines.append(r"\end{table}")
    return "\n".join(lines) + "\n"


def to_csv(table: Table) -> str:
    """Numbers only: each column, plus ``<column>_{low,high,n}`` where they exist; four decimals."""
    frame = table.mean.copy()
    for column in reversed(table.mean.columns):
        extra = {f"{column}_{suffix}": part[column] for suffix, part in
                 (("low", table.low), ("high", table.high), ("n", table.seeds))
                 if part is not None and part[column].notna().any()}
        for position, (name, values) in enumerate(extra.items(), frame.columns.get_loc(column) + 1):
            frame.insert(position, name, values)
    frame.index.name = table.index_name
    return frame.to_csv(float_format="%.4f", lineterminator="\n")


def to_html(table: Table) -> str:
    """An HTML ``<table>`` (``id`` = the table's name) with caption, bold as ``<strong>``,
    numbers right-aligned and group rules as a CSS class, then the footnotes as a list."""
    cells, bold = table.cells(), table.bold_mask()
    header = "".join(f"<th>{html.escape(str(c))}</th>" for c in [table.index_name, *cells.columns])
    rows = []
    for position, row in enumerate(cells.index):
        rule = ' class="group"' if row in table.rules_before and position > 0 else ""
        shown = "".join(
            f"<td><strong>{html.escape(cells.at[row, c])}</strong></td>" if bold.at[row, c]
            else f"<td>{html.escape(cells.at[row, c])}</td>" for c in cells.columns)
        rows.append(f"<tr{rule}><th>{html.escape(str(row))}</th>{shown}</tr>")
    notes = "".join(f"<li>{html.escape(note)}</li>" for note in table.notes())
    return (f'<table id="{html.escape(table.name)}"><caption>{html.escape(table.title)}</caption>'
            f"<thead><tr>{header}</tr></thead><tbody>{''.join(rows)}</tbody></table>"
            + (f'<ul class="notes">{notes}</ul>' if notes else "") + "\n")


def write_table(table: Table, tables_dir: Path) -> list[Path]:
    """Write ``<name>.md``, ``<name>.tex`` and ``<name>.csv`` into ``tables_dir``."""
    tables_dir.mkdir(parents=True, exist_ok=True)
    paths = []
    for suffix, render in ((".md", to_markdown), (".tex", to_latex), (".csv", to_csv)):
        path = tables_dir / f"{table.name}{suffix}"
        path.write_text(render(table))
        paths.append(path)
    return paths
