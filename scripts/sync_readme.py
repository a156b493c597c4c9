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

and ``mini-effnet``'s the same way with ``--preset mini-effnet --channels-last --output
results/mini-effnet``; its plateau check (seed 0 of every method on every task, SpotTune's seed 1
on the two smaller tasks and stochastic fine-tuning's seeds 1 to 4 on digits, each trained twice as
long as the preset trains it: 240 epochs, 480 on digits) with::

    .venv/bin/python benchmarks/run_all.py --preset mini-effnet --datasets fmnist_heldout --seeds 0 \
        --set epochs=240 "lr_milestones=[180]" --channels-last --output results/mini-effnet-plateau
    .venv/bin/python benchmarks/run_all.py --preset mini-effnet --datasets fmnist_heldout --seeds 1 \
        --methods spottune --set epochs=240 "lr_milestones=[180]" --channels-last --output results/mini-effnet-plateau
    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/run_all.py --preset mini-effnet --datasets glyph_letters --seeds 0 \
        --set epochs=240 "lr_milestones=[180]" --channels-last --max-parallel 1 --output results/mini-effnet-plateau
    .venv/bin/python benchmarks/run_all.py --preset mini-effnet --datasets digits --seeds 0 \
        --set epochs=480 "lr_milestones=[360]" --channels-last --output results/mini-effnet-plateau
    .venv/bin/python benchmarks/run_all.py --preset mini-effnet --datasets digits --seeds 1 \
        --methods spottune --set epochs=480 "lr_milestones=[360]" --channels-last --output results/mini-effnet-plateau
    .venv/bin/python benchmarks/run_all.py --preset mini-effnet --datasets digits --seeds 1,2,3,4 \
        --methods stochastic_finetune --set epochs=480 "lr_milestones=[360]" --channels-last \
        --output results/mini-effnet-plateau
"""
from __future__ import annotations

from pathlib import Path
from typing import NamedTuple

from spottune.report import load_records, paired_comparison
from spottune.report.claims import comparison_claims, markdown_list, plateau_claims, routing_claims, runtime_claim

REPO = Path(__file__).resolve().parent.parent
RESULTS = REPO / "results"
EXAMPLE = RESULTS / "example"


class Committed(NamedTuple):
    """A grid whose records are committed under ``results/<folder>`` and quoted by the README
    between ``<!-- <name>-table:start -->`` / ``:end`` and ``<!-- <name>-claims:... -->``, its
    claims comparing every method with fine-tuning; with ``longer``, a folder of some of its
    runs trained for more epochs, also ``<!-- <name>-plateau:... -->`` (how far each moved);
    with ``ablated``, also ``<!-- <name>-ablations:... -->``: each of :data:`ABLATIONS` the grid
    ran, compared with the method it ablates (the same paired test, that method as baseline);
    with ``timed``, also ``<!-- <name>-runtime:... -->``: what its runs' own times sum to."""

    folder: str
    longer: str | None = None
    ablated: str | None = None
    timed: bool = False

    @property
    def path(self) -> Path:
        return RESULTS / self.folder

    def markers(self, block: str) -> tuple[str, str]:
        return f"<!-- {self.folder}-{block}:start -->", f"<!-- {self.folder}-{block}:end -->"

    def block_names(self) -> tuple[str, ...]:
        """The names of the README blocks this grid fills, in :meth:`blocks`' order."""
        return (("table", "claims") + ("plateau",) * bool(self.longer) + ("ablations",) * bool(self.ablated)
                + ("runtime",) * self.timed)

    def blocks(self) -> dict[str, str]:
        """The README's blocks of this grid by name (``table``, ``claims``, with ``longer`` also
        ``plateau``, with ``ablated`` also ``ablations``, with ``timed`` also ``runtime``), from its
        records read once; the folder holds one preset's runs."""
        records = load_records(self.path)
        (preset,) = records["preset"].dropna().unique()
        build = {
            "table": lambda: (self.path / "tables" / f"{preset}.md").read_text(),
            "claims": lambda: markdown_list(comparison_claims(paired_comparison(records), preset)
                                            + routing_claims(records, preset)),
            "plateau": lambda: markdown_list(plateau_claims(records, load_records(RESULTS / self.longer), preset)),
            "ablations": lambda: markdown_list(comparison_claims(paired_comparison(
                records[records["method"].isin((self.ablated, *ABLATIONS))], self.ablated), preset)),
            "runtime": lambda: runtime_claim(records, preset) + "\n",
        }
        return {name: build[name]() for name in self.block_names()}


ABLATIONS = ("random_policy", "stochastic_finetune", "finetune_last_k")
"""The paper's ablations of SpotTune (its first table, ../shared/REFERENCE.md 3.6): a fixed random
choice of fine-tuned blocks for every image (random policy), each block of each image routed
at random with p = 0.5 (stochastic fine-tuning), and only the last k blocks fine-tuned."""

DEFAULT = Committed("example")
EFFNET = Committed("mini-effnet", longer="mini-effnet-plateau", ablated="spottune", timed=True)
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
        for name, text in grid.blocks().items():
            readme = replace_block(readme, grid.markers(name), text)
    return readme


if __name__ == "__main__":
    path = REPO / "README.md"
    path.write_text(synced(path.read_text()))
