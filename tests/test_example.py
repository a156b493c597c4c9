"""The committed default run (results/example) matches what the code produces from its records,
and the README shows its table (regenerate: see scripts/sync_readme.py)."""
from __future__ import annotations

import re
from pathlib import Path

import pytest

from spottune.report import write_all
from tests.helpers import load_script

REPO = Path(__file__).resolve().parent.parent
EXAMPLE = REPO / "results" / "example"
sync_readme = load_script("scripts/sync_readme.py")


@pytest.mark.slow
def test_committed_tables_and_figures_are_what_the_code_produces(tmp_path):
    write_all(EXAMPLE, report_dir=tmp_path)
    committed = sorted(p.name for p in (EXAMPLE / "tables").iterdir())
    assert committed == sorted(p.name for p in (tmp_path / "tables").iterdir())
    for name in committed:
        assert (tmp_path / "tables" / name).read_text() == (EXAMPLE / "tables" / name).read_text(), (
            f"results/example/tables/{name} is stale: run `python -m spottune.report results/example`")
    regenerated = {p.name for p in (tmp_path / "figures").iterdir()}
    assert regenerated and regenerated <= {p.name for p in (EXAMPLE / "figures").iterdir()}


def test_readme_shows_the_committed_tables_and_the_claims_their_comparisons_support():
    readme = (REPO / "README.md").read_text()
    assert sync_readme.synced(readme) == readme, \
        "README.md's committed tables or claims are stale: run `python scripts/sync_readme.py`"
    for figure in ("mini_spottune_routing_over_epochs.png", "mini_score_vs_params.png"):
        assert f'src="results/example/figures/{figure}"' in readme and (EXAMPLE / "figures" / figure).exists()


COMPARISON_WORDS = re.compile(r"\b(significant\w*|ties?|tied|beats?|loses?|trails?|wins?|outperforms?|"
                              r"better than|worse than|equivalent)\b", re.IGNORECASE)


NOT_RESULTS = ("not tuned for any method to win",)
"""Phrases with those words that state how the preset was made, not what came out."""

SECTIONS = {"## The embedded default": sync_readme.DEFAULT,
            "## An ImageNet source on the CPU": sync_readme.EFFNET}
"""The README section that presents each committed grid."""


@pytest.mark.parametrize("heading", SECTIONS)
def test_a_results_section_states_no_comparison_outside_its_generated_blocks(heading):
    """Prose cannot contradict the tables: in the README's section on a committed grid, every
    sentence that compares methods is in a block scripts/sync_readme.py generates."""
    readme = (REPO / "README.md").read_text()
    section = readme.split(heading, 1)[1].split("\n## ", 1)[0]
    for block in SECTIONS[heading].block_names():
        start, end = SECTIONS[heading].markers(block)
        assert start in section and end in section, f"{heading}: no {block} block"
        section = section.split(start)[0] + section.split(end)[1]
    for protocol in NOT_RESULTS:
        section = section.replace(protocol, "")
    assert not COMPARISON_WORDS.findall(section), COMPARISON_WORDS.findall(section)
