"""Copy the committed default run's table (results/example/tables/mini.md) into README.md.

The README shows the example between the markers below; tests/test_example.py checks that
the two agree and that the committed tables are what the code produces from the records.
Regenerate everything with::

    .venv/bin/python benchmarks/run_all.py --output results/example   # the default grid
    .venv/bin/python -m spottune.report results/example               # tables + figures only
    .venv/bin/python scripts/sync_readme.py
"""
from __future__ import annotations

from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
START, END = "<!-- example-table:start -->", "<!-- example-table:end -->"


def readme_with_table(readme: str, table: str) -> str:
    head, rest = readme.split(START, 1)
    _, tail = rest.split(END, 1)
    return f"{head}{START}\n{table.strip()}\n{END}{tail}"


if __name__ == "__main__":
    path = REPO / "README.md"
    path.write_text(readme_with_table(path.read_text(), (REPO / "results/example/tables/mini.md").read_text()))
