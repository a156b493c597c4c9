"""Copy the committed default run's table and what its comparisons support into README.md.

The README shows, between the markers below, the example's paper table
(``results/example/tables/<preset>.md``) and one generated sentence per method stating its
comparison with fine-tuning (:mod:`spottune.report.claims`, from the same records), so that no
sentence of the README states a comparison the tables do not support; tests/test_example.py
checks that both blocks are what the code produces. Regenerate everything with::

    .venv/bin/python benchmarks/run_all.py --output results/example   # the default grid
    .venv/bin/python -m spottune.report results/example               # tables + figures only
    .venv/bin/python scripts/sync_readme.py
"""
from __future__ import annotations

from pathlib import Path

from spottune.report import load_records, paired_comparison
from spottune.report.claims import claims_markdown

REPO = Path(__file__).resolve().parent.parent
EXAMPLE = REPO / "results" / "example"
TABLE = ("<!-- example-table:start -->", "<!-- example-table:end -->")
CLAIMS = ("<!-- example-claims:start -->", "<!-- example-claims:end -->")


def replace_block(readme: str, markers: tuple[str, str], text: str) -> str:
    """``readme`` with the text between ``markers`` replaced by ``text``."""
    start, end = markers
    head, rest = readme.split(start, 1)
    _, tail = rest.split(end, 1)
    return f"{head}{start}\n{text.strip()}\n{end}{tail}"


def example_preset(example: Path = EXAMPLE) -> str:
    """The one preset whose runs the example holds."""
    (preset,) = load_records(example)["preset"].dropna().unique()
    return str(preset)


def synced(readme: str, example: Path = EXAMPLE) -> str:
    """``readme`` with both blocks regenerated from ``example``."""
    preset = example_preset(example)
    table = (example / "tables" / f"{preset}.md").read_text()
    claims = claims_markdown(paired_comparison(load_records(example)), preset)
    return replace_block(replace_block(readme, TABLE, table), CLAIMS, claims)


if __name__ == "__main__":
    path = REPO / "README.md"
    path.write_text(synced(path.read_text()))
