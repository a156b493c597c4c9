"""One table, three formats: Markdown, LaTeX (booktabs) and CSV, written side by side.

A :class:`Table` holds numbers, not strings: ``mean`` (rows x columns, NaN = missing) and
optionally ``std`` (NaN = no spread, e.g. one seed). Printing rules, shared by every table:

- a cell is ``mean`` with ``decimals[column]`` digits (default 2), then `` ± std`` when a
  std exists; a missing number prints as ``–`` (``--`` in LaTeX), never as zero;
- rows in ``signed_rows`` (differences) print an explicit sign;
- for each column in ``best`` (``"max"`` or ``"min"``), the best *displayed* value among the
  rows not in ``unranked_rows`` is bold, ties included;
- ``markers`` (same shape, strings) are appended to cells, e.g. provenance tags or ``†``;
- ``rules_before`` are row labels that start a new group (a ``\\midrule`` in LaTeX);
- ``footnotes`` follow the table in Markdown and LaTeX.

The CSV has the numbers only: one column per table column and ``<column>_std`` where any
std exists, four decimals.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd

MISSING = "–"
LATEX_REPLACEMENTS = {
    "\\": r"\textbackslash{}", "&": r"\&", "%": r"\%", "$": r"\$", "#": r"\#", "_": r"\_",
    "{": r"\{", "}": r"\}", "~": r"\textasciitilde{}", "^": r"\textasciicircum{}",
    "±": r"$\pm$", "–": "--", "−": "-", "Δ": r"$\Delta$", "†": r"$^\dagger$",
    "×": r"$\times$",
}


@dataclass
class Table:
    """Numbers of one report table and the rules to print them (see the module docstring)."""

    name: str
    title: str
    mean: pd.DataFrame
    std: pd.DataFrame | None = None
    index_name: str = "method"
    decimals: dict[str, int] = field(default_factory=dict)
    best: dict[str, str] = field(default_factory=dict)
    unranked_rows: set[str] = field(default_factory=set)
    signed_rows: set[str] = field(default_factory=set)
    markers: pd.DataFrame | None = None
    rules_before: set[str] = field(default_factory=set)
    footnotes: list[str] = field(default_factory=list)

    def _number(self, value: float, row: str, column: str) -> str:
        sign = "+" if row in self.signed_rows else ""
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

    def cells(self) -> pd.DataFrame:
        """The printed text of every cell (without bold), as a frame of strings."""
        text = pd.DataFrame(MISSING, index=self.mean.index, columns=self.mean.columns)
        for row in self.mean.index:
            for column in self.mean.columns:
                value = self.mean.at[row, column]
                if pd.isna(value):
                    continue
                cell = self._number(value, row, column)
                spread = math.nan if self.std is None else self.std.at[row, column]
                if not pd.isna(spread):
                    cell += f" ± {spread:.{self.decimals.get(column, 2)}f}"
                text.at[row, column] = cell
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
    if table.footnotes:
        lines += [""] + [f"- {note}" for note in table.footnotes]
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
    if table.footnotes:
        lines += [r"\par\smallskip\footnotesize"]
        lines += [latex_escape(note) + r"\par" for note in table.footnotes]
    lines.append(r"\end{table}")
    return "\n".join(lines) + "\n"


def to_csv(table: Table) -> str:
    """Numbers only: each column, plus ``<column>_std`` where a std exists; four decimals."""
    frame = table.mean.copy()
    if table.std is not None:
        for column in table.std.columns[table.std.notna().any()]:
            frame.insert(frame.columns.get_loc(column) + 1, f"{column}_std", table.std[column])
    frame.index.name = table.index_name
    return frame.to_csv(float_format="%.4f", lineterminator="\n")


def write_table(table: Table, tables_dir: Path) -> list[Path]:
    """Write ``<name>.md``, ``<name>.tex`` and ``<name>.csv`` into ``tables_dir``."""
    tables_dir.mkdir(parents=True, exist_ok=True)
    paths = []
    for suffix, render in ((".md", to_markdown), (".tex", to_latex), (".csv", to_csv)):
        path = tables_dir / f"{table.name}{suffix}"
        path.write_text(render(table))
        paths.append(path)
    return paths
