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


def test_readme_shows_the_committed_table_and_the_claims_its_comparisons_support():
    readme = (REPO / "README.md").read_text()
    assert sync_readme.synced(readme) == readme, \
        "README.md's example table or claims are stale: run `python scripts/sync_readme.py`"
    for figure in ("mini_spottune_routing_over_epochs.png", "mini_score_vs_params.png"):
        assert f'src="results/example/figures/{figure}"' in readme and (EXAMPLE / "figures" / figure).exists()


COMPARISON_WORDS = re.compile(r"\b(significant\w*|ties?|tied|beats?|loses?|trails?|wins?|outperforms?|"
                              r"better than|worse than|equivalent)\b", re.IGNORECASE)


NOT_RESULTS = ("not tuned for any method to win",)
"""Phrases with those words that state how the preset was made, not what came out."""


def test_the_example_section_states_no_comparison_outside_the_generated_block():
    """Prose cannot contradict the tables: in the README's section on the default grid, every
    sentence that compares methods is in the block scripts/sync_readme.py generates."""
    readme = (REPO / "README.md").read_text()
    section = readme.split("## The embedded default", 1)[1].split("\n## ", 1)[0]
    start, end = sync_readme.CLAIMS
    outside = section.split(start)[0] + section.split(end)[1]
    for block in sync_readme.TABLE:
        outside = outside.replace(block, "")
    table_start, table_end = (outside.find("### "), outside.find("What it shows"))
    prose = outside[:table_start] + outside[table_end:] if table_start >= 0 else outside
    for protocol in NOT_RESULTS:
        prose = prose.replace(protocol, "")
    assert not COMPARISON_WORDS.findall(prose), COMPARISON_WORDS.findall(prose)
