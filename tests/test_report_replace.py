"""A report is replaced whole (issue 23): nothing of an earlier report survives beside a newer
one, and a report that cannot be written leaves the earlier one in place."""
from __future__ import annotations

import errno
import json
from pathlib import Path

import pytest

from spottune.report import writer
from spottune.report.__main__ import main as report_main


def _done_run(output: Path, method: str, seed: int, accuracy: float) -> None:
    folder = output / "runs" / f"{method}-{seed}"
    folder.mkdir(parents=True)
    identity = {"run_id": folder.name, "method": method, "dataset": "digits", "seed": seed, "preset": "mini"}
    (folder / "config.json").write_text(json.dumps({**identity, "hparams": {}}))
    (folder / "metrics.json").write_text(json.dumps({**identity, "test_accuracy": accuracy}))
    (folder / "done").write_text("")


@pytest.fixture
def output(tmp_path: Path) -> Path:
    """Two methods x two seeds, and an earlier report with a table and a figure the next one
    does not write."""
    for seed in (0, 1):
        _done_run(tmp_path, "finetune", seed, 90.0 + seed)
        _done_run(tmp_path, "spottune", seed, 80.0 + seed)
    for stale in ("tables/mcnemar_old.md", "tables/summary.md", "figures/old_figure.png", "report.html"):
        (tmp_path / stale).parent.mkdir(exist_ok=True)
        (tmp_path / stale).write_text("from an earlier report")
    return tmp_path


def test_a_report_replaces_every_table_figure_and_page_of_the_earlier_one(output):
    written = writer.write_all(output, figures_too=False)
    assert all(path.exists() and path.parent in (output, output / "tables") for path in written)
    tables = sorted(p.name for p in (output / "tables").iterdir())
    assert "mcnemar_old.md" not in tables and "summary.md" in tables
    assert "| finetune" in (output / "tables" / "summary.md").read_text()
    assert not (output / "figures").exists()  # --tables-only: the earlier figures go too
    assert "from an earlier report" not in (output / "report.html").read_text()
    assert sorted(p.name for p in output.iterdir()) == ["report.html", "runs", "tables"]  # nothing left aside


def test_a_report_that_cannot_be_written_leaves_the_earlier_one_and_names_the_folder(output, monkeypatch, capsys):
    def full_disk(*args, **kwargs):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(writer, "write_report", full_disk)
    with pytest.raises(SystemExit) as exit_:
        report_main([str(output), "--tables-only"])
    assert exit_.value.code == 1
    assert capsys.readouterr().err == f"error: [Errno 28] writing the report into {output}: No space left on device\n"
    assert (output / "tables" / "mcnemar_old.md").exists() and (output / "figures" / "old_figure.png").exists()
    assert (output / "report.html").read_text() == "from an earlier report"
    assert sorted(p.name for p in output.iterdir()) == ["figures", "report.html", "runs", "tables"]


def test_swap_in_replaces_a_folder_a_file_and_removes_what_the_new_report_lacks(tmp_path):
    (tmp_path / "new").mkdir()
    (tmp_path / "new" / "a.md").write_text("new")
    (tmp_path / "final").mkdir()
    (tmp_path / "final" / "b.md").write_text("old")
    writer.swap_in(tmp_path / "new", tmp_path / "final")
    assert [p.name for p in (tmp_path / "final").iterdir()] == ["a.md"]
    (tmp_path / "page.new").write_text("new page")
    (tmp_path / "page").write_text("old page")
    writer.swap_in(tmp_path / "page.new", tmp_path / "page")
    assert (tmp_path / "page").read_text() == "new page"
    writer.swap_in(tmp_path / "absent", tmp_path / "final")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["page"]
