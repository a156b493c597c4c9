"""The committed default run (results/example) matches what the code produces from its records,
and the README shows its table (regenerate: see scripts/sync_readme.py)."""
from __future__ import annotations

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


def test_readme_shows_the_committed_table():
    readme = (REPO / "README.md").read_text()
    table = (EXAMPLE / "tables" / "mini.md").read_text()
    assert sync_readme.readme_with_table(readme, table) == readme, \
        "README.md's example table is stale: run `python scripts/sync_readme.py`"
    for figure in ("mini_spottune_routing_over_epochs.png", "mini_score_vs_params.png"):
        assert f'src="results/example/figures/{figure}"' in readme and (EXAMPLE / "figures" / figure).exists()
