"""Copy the committed grids' tables and what their comparisons support into README.md.

The README shows, between markers named after each committed grid (:data:`COMMITTED`), the
grid's paper table (``results/<folder>/tables/<preset>.md``) and one generated sentence per
compared method stating its comparison with a baseline, then one per routing method stating
where it routed (:mod:`spottune.report.claims`, from the same records), so that no sentence of
the README states a comparison the tables do not support; tests/test_example.py checks that
every block is what the code produces. Regenerate
the default's with::

    .venv/bin/python benchmarks/run_all.py --output results/example   # the default grid
    .venv/bin/python -m spottune.report results/example               # tables + figures
    .venv/bin/python scripts/sync_readme.py

and ``mini-effnet``'s the same way with ``--preset mini-effnet --output results/mini-effnet``; its
plateau check (seed 0 of three methods on two tasks, twice as long) with::

    .venv/bin/python benchmarks/run_all.py --preset mini-effnet --methods finetune,finetune_scratch,spottune \
        --datasets fmnist_heldout,digits --seeds 0 --set epochs=120 "lr_milestones=[90]" --channels-last \
        --output results/mini-effnet-plateau
"""
from __future__ import annotations

from pathlib import Path
from typing import NamedTuple

from spottune.report import load_records, paired_comparison
from spottune.report.claims import claims_markdown, plateau_claims, routing_markdown

REPO = Path(__file__).resolve().parent.parent
RESULTS = REPO / "results"
EXAMPLE = RESULTS / "example"


class Committed(NamedTuple):
    """A grid whose records are committed under ``results/<folder>`` and quoted by the README
    between ``<!-- <name>-table:start -->`` / ``:end`` and ``<!-- <name>-claims:... -->``, its
    claims comparing every method with fine-tuning; with ``longer``, a folder of some of its
    runs trained for more epochs, also ``<!-- <name>-plateau:... -->`` (how far each moved)."""

    folder: str
    longer: str | None = None

    @property
    def path(self) -> Path:
        return RESULTS / self.folder

    def markers(self, block: str) -> tuple[str, str]:
        return f"<!-- {self.folder}-{block}:start -->", f"<!-- {self.folder}-{block}:end -->"

    @property
    def preset(self) -> str:
        """The one preset whose runs the folder holds."""
        (preset,) = load_records(self.path)["preset"].dropna().unique()
        return str(preset)

    def table(self) -> str:
        return (self.path / "tables" / f"{self.preset}.md").read_text()

    def claims(self) -> str:
        records = load_records(self.path)
        return claims_markdown(paired_comparison(records), self.preset) + routing_markdown(records, self.preset)

    def plateau(self) -> str:
        sentences = plateau_claims(load_records(self.path), load_records(RESULTS / self.longer), self.preset)
        return "".join(f"- {sentence}\n" for sentence in sentences)


DEFAULT = Committed("example")
EFFNET = Committed("mini-effnet", longer="mini-effnet-plateau")
COMMITTED = (DEFAULT, EFFNET)


def replace_block(readme: str, markers: tuple[str, str], text: str) -> str:
    """``readme`` with the text between ``markers`` replaced by ``text``."""
    start, end = markers
    head, rest = readme.split(start, 1)
    _, tail = rest.split(end, 1)
    return f"{head}{start}\n{text.strip()}\n{end}{tail}"


def synced(readme: str, committed: tuple[Committed, ...] = COMMITTED) -> str:
    """``readme`` with every committed grid's table and claims regenerated from its records."""
    for grid in committed:
        readme = replace_block(readme, grid.markers("table"), grid.table())
        readme = replace_block(readme, grid.markers("claims"), grid.claims())
        if grid.longer:
            readme = replace_block(readme, grid.markers("plateau"), grid.plateau())
    return readme


if __name__ == "__main__":
    path = REPO / "README.md"
    path.write_text(synced(path.read_text()))
