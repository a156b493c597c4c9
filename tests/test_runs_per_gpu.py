"""``runs_per_gpu``: a SLURM array task training several runs at once, one process each
(spottune/launch/runs_per_gpu.py), called here without SLURM (tests/test_slurm.py requeues one)."""
from __future__ import annotations

import json

import pytest

from spottune.engine import run
from spottune.launch.runs_per_gpu import LOG, PackedRunJob
from spottune.storage.records import RunFolder, Status
from tests.fail_at_epoch import ENV as FAIL_AT_EPOCH
from tests.helpers import tiny_run

RUNTIME = {"device": "cpu", "progress": False, "plugins": ["tests.fail_at_epoch"]}


@pytest.mark.slow
def test_each_run_trains_in_its_own_process_and_the_task_fails_after_all_if_one_failed(tmp_path, monkeypatch):
    ok = tiny_run("finetune", epochs=1, lr_milestones=[])
    failing = tiny_run("finetune", epochs=2, lr_milestones=[])
    monkeypatch.setenv(FAIL_AT_EPOCH, "2")  # only the two-epoch run reaches epoch 2
    task = PackedRunJob([ok, failing], RUNTIME, tmp_path / "out")
    with pytest.raises(RuntimeError, match=r"1 of this task's 2 runs failed: finetune / digits / seed 0 \(exit 1"):
        task()
    done, crashed = RunFolder.of(tmp_path / "out", ok), RunFolder.of(tmp_path / "out", failing)
    assert done.status() is Status.DONE and crashed.status() is Status.FAILED
    assert "InjectedFailure" in (crashed.path / LOG).read_text()
    pids = {json.loads(f.path.joinpath("attempts.log").read_text())["pid"] for f in (done, crashed)}
    assert len(pids) == 2  # two processes
    assert json.loads((done.path / "config.json").read_text())["compute"]["torch_threads"] >= 1

    alone = run(ok, tmp_path / "alone", RUNTIME)  # the same run in this process: the same numbers
    packed = done.read_metrics()
    assert packed["test_accuracy"] == alone["test_accuracy"]
    assert [h["train_loss"] for h in packed["history"]] == [h["train_loss"] for h in alone["history"]]

    monkeypatch.delenv(FAIL_AT_EPOCH)
    assert PackedRunJob([ok, failing], RUNTIME, tmp_path / "out")() == {ok.run_id: "done", failing.run_id: "done"}
    assert len((done.path / "attempts.log").read_text().splitlines()) == 1  # a done run is not started again
