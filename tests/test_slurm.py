"""Integration tests against a real SLURM cluster (issue 5): job arrays, requeue, failures.

They need a running cluster that ``sinfo`` reaches, e.g. the one-node cluster of slurm/local/::

    eval "$(bash slurm/local/start.sh)"      # exports SLURM_CONF
    pytest -m slurm tests/test_slurm.py

and are skipped, with the reason, when there is none. Runs are tiny (1 epoch, a backbone
pretrained on 1,000 images) so that the file takes about two minutes on two CPU cores.
"""
from __future__ import annotations

import io
import json
import os
import re
import shutil
import subprocess
import sys
import time
from contextlib import redirect_stderr, redirect_stdout
from pathlib import Path

import pandas as pd
import pytest

from spottune.storage.claim import RunClaimed, live_holder
from spottune.engine import run as run_engine
from spottune.storage.records import RunSpec
from tests.fail_at_epoch import ENV as FAIL_AT_EPOCH
from tests.helpers import load_script

RUN_ALL = load_script("benchmarks/run_all.py")
TINY = ["--set", "epochs=1", "lr_milestones=[]", "backbone.pretrained.max_images=1000", "--no-progress"]
GRID = ["--methods", "finetune,spottune", "--datasets", "digits,glyph_letters", "--seeds", "0"]
ON_SLURM = ["--cluster", "slurm", "--profile", "local"]

pytestmark = pytest.mark.slurm


def cluster_problem() -> str | None:
    """Why no SLURM cluster can run our jobs, or None when one can."""
    if not os.environ.get("SLURM_CONF") and not Path("/etc/slurm/slurm.conf").exists():
        return "SLURM_CONF is unset (start one: eval \"$(bash slurm/local/start.sh)\")"
    if shutil.which("sinfo") is None:
        return "sinfo is not installed"
    try:
        answer = subprocess.run(["sinfo", "--noheader", "--format=%T"], capture_output=True, text=True, timeout=30)
    except subprocess.TimeoutExpired:
        return "sinfo timed out: slurmctld unreachable"
    if answer.returncode != 0:
        return f"sinfo cannot reach the controller: {answer.stderr.strip()}"
    if not any(s.startswith(("idle", "mixed", "allocated")) for s in answer.stdout.split()):
        return f"no node is up (sinfo: {answer.stdout.split()})"
    return None


@pytest.fixture(scope="module", autouse=True)
def cluster(tmp_path_factory: pytest.TempPathFactory) -> None:
    """Skip without a cluster; else the environment that sbatch hands to the jobs: one thread,
    the session's cache of pretrained weights (the folder tests/conftest.py points at)."""
    problem = cluster_problem()
    if problem:
        pytest.skip(f"no SLURM cluster: {problem}")
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("OMP_NUM_THREADS", "1")
        patch.setenv("SPOTTUNE_CACHE", str(tmp_path_factory.getbasetemp() / "cache"))
        yield


def run_all(*args: str | Path, expect: int = 0, err: io.StringIO | None = None) -> str:
    """``benchmarks/run_all.py ARGS`` in this process (saves the imports); its stdout (its
    stderr into ``err`` when given)."""
    out, err = io.StringIO(), err if err is not None else io.StringIO()
    with redirect_stdout(out), redirect_stderr(err):
        code = RUN_ALL.main([str(a) for a in args])
    assert code == expect, f"exit {code}\n{out.getvalue()}\n{err.getvalue()}"
    return out.getvalue()


def run_folders(output: Path) -> dict[tuple[str, str], Path]:
    """(method, dataset) -> run folder, from each run's config.json."""
    out = {}
    for folder in (output / "runs").iterdir():
        config = json.loads((folder / "config.json").read_text())
        out[config["method"], config["dataset"]] = folder
    return out


def mtime(path: Path) -> float:
    """``path``'s modification time, 0 while it does not exist (a checkpoint is absent for an
    instant while it is rotated: spottune.storage.checkpoint.save)."""
    try:
        return path.stat().st_mtime
    except FileNotFoundError:
        return 0.0


def wait_for(condition, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, f"timed out after {timeout} s waiting for {what}"
        time.sleep(0.2)


@pytest.fixture(scope="module")
def slurm_grid(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, str]:
    """The 2 x 2 tiny grid run through SLURM with --wait: (output folder, stdout)."""
    output = tmp_path_factory.mktemp("slurm_grid")
    return output, run_all(*GRID, *TINY, *ON_SLURM, "--wait", "--output", output)


def test_grid_on_slurm_gives_the_tables_of_a_local_run(slurm_grid, tmp_path):
    output, stdout = slurm_grid
    assert "submitted 4 run(s) to SLURM as job " in stdout
    for folder in run_folders(output).values():
        assert (folder / "done").exists() and not (folder / "error.txt").exists()
        assert json.loads((folder / "submitted.json").read_text())["job_id"]
    local = tmp_path / "local"
    run_all(*GRID, *TINY, "--cluster", "local", "--output", local)
    on_slurm = pd.read_csv(output / "tables" / "summary.csv")
    here = pd.read_csv(local / "tables" / "summary.csv")
    assert len(on_slurm) == 4
    pd.testing.assert_frame_equal(on_slurm, here)


def test_requeued_and_preempted_run_resumes_from_its_checkpoint(tmp_path):
    """``scontrol requeue`` (the job is killed) after epoch 1, then a preemption signal (USR2:
    submitit calls RunJob.checkpoint and requeues) later: the run resumes twice from its
    checkpoint and ends with the numbers of an uninterrupted run."""
    run = ["--methods", "spottune", "--datasets", "digits", "--seeds", "0", "--set", "epochs=6",
           "backbone.pretrained.max_images=1000", "--no-progress"]
    output, reference = tmp_path / "slurm", tmp_path / "local"
    run_all(*run, *ON_SLURM, "--output", output)  # returns once submitted
    uninterrupted_run = subprocess.Popen([sys.executable, RUN_ALL.__file__, *run, "--output", str(reference)],
                                         stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    [folder] = (output / "runs").iterdir()
    checkpoint = folder / "checkpoint.pt"
    submission = json.loads((folder / "submitted.json").read_text())
    starts = lambda: Path(submission["stdout"]).read_text().count("Starting with JobEnvironment")  # noqa: E731

    wait_for(checkpoint.exists, 120, "the first epoch's checkpoint")
    subprocess.run(["scontrol", "requeue", submission["job_id"]], check=True, timeout=30)
    wait_for(lambda: starts() == 2, 120, "the requeued job to start again")
    restarted = time.time()
    wait_for(lambda: mtime(checkpoint) > restarted, 120, "a checkpoint of the restarted job")
    assert not (folder / "done").exists(), "the run finished before it could be preempted"
    subprocess.run(["scancel", "--signal=USR2", submission["job_id"]], check=True, timeout=30)

    again = run_all(*run, *ON_SLURM, "--wait", "--output", output)
    assert "nothing to submit" in again  # in flight: not submitted twice
    assert starts() == 3
    assert "Calling checkpoint method" in Path(submission["stdout"]).read_text()
    assert uninterrupted_run.wait(timeout=180) == 0, uninterrupted_run.stderr.read()

    resumed = json.loads((folder / "metrics.json").read_text())
    uninterrupted = json.loads(next((reference / "runs").iterdir()).joinpath("metrics.json").read_text())
    assert [h["epoch"] for h in resumed["history"]] == list(range(1, 7))
    assert sum(bool(h.get("resumed")) for h in resumed["history"]) == 2
    assert resumed["test_accuracy"] == uninterrupted["test_accuracy"]
    for key in ("train_loss", "train_accuracy", "lr"):
        assert [h[key] for h in resumed["history"]] == [h[key] for h in uninterrupted["history"]], key


def test_failed_run_is_reported_and_only_it_is_retried(slurm_grid, monkeypatch):
    output, _ = slurm_grid
    # finetune/digits is done (slurm_grid); spottune_global/digits is new and crashes
    grid = ["--methods", "finetune,spottune_global", "--datasets", "digits", "--seeds", "0", *TINY, "--output", output]
    done_job = json.loads((run_folders(output)["finetune", "digits"] / "submitted.json").read_text())["job_id"]

    monkeypatch.setenv(FAIL_AT_EPOCH, "1")  # the jobs inherit it; the plugin raises at epoch 1
    crashed = run_all(*grid, *ON_SLURM, "--wait", "--plugins", "tests.fail_at_epoch", expect=1)
    monkeypatch.delenv(FAIL_AT_EPOCH)
    assert "1 run(s)" in crashed
    folder = run_folders(output)["spottune_global", "digits"]
    assert (folder / "error.txt").exists()
    assert not (folder / "done").exists() and not (folder / "metrics.json").exists()

    status = run_all(*grid, "--status", expect=1)  # --status exits 1 when a run failed
    assert "2 runs" in status and "1 done" in status and "1 failed" in status, status
    assert "InjectedFailure" in status and str(folder / "error.txt") in status
    log = json.loads((folder / "submitted.json").read_text())["stderr"]
    assert f"log:   {log}" in status and Path(log).exists()

    retried = run_all(*grid, *ON_SLURM, "--wait")
    assert "1 run(s)" in retried
    assert (folder / "done").exists() and not (folder / "error.txt").exists()
    finetune = run_folders(output)["finetune", "digits"]
    assert json.loads((finetune / "submitted.json").read_text())["job_id"] == done_job  # not resubmitted
    status = run_all(*grid, "--status")
    assert "2 done" in status and "0 failed" in status, status


def squeue_field(job_id: str, field: str) -> list[str]:
    """``squeue``'s ``field`` (e.g. ``%E``, the dependency) of every task of ``job_id`` in flight."""
    out = subprocess.run(["squeue", "--noheader", "--array", "-j", job_id, f"--format={field}"], capture_output=True,
                         text=True, timeout=30).stdout
    return [line.strip() for line in out.splitlines() if line.strip()]


def test_an_uncached_pretraining_is_a_job_the_runs_array_waits_for(tmp_path, monkeypatch):
    """Issue 12: the backbone is not cached, so the launch submits its pretraining as a job of
    its own and the array with ``afterok`` on it; --status and --dry-run show it; the runs
    start from the weights that job published."""
    monkeypatch.setenv("SPOTTUNE_CACHE", str(tmp_path / "shared-cache"))  # nothing cached there
    grid = ["--methods", "finetune,spottune", "--datasets", "digits", "--seeds", "0", *TINY,
            "--output", tmp_path / "out"]
    dry = run_all(*grid, *ON_SLURM, "--dry-run")
    assert re.search(r"^pretraining +new .*resnet26 pretrained on mini_source", dry, re.M), dry
    assert "estimated GPU time of the pretraining:" in dry and "1 backbone(s) to pretrain (0 cached)" in dry

    submitted = run_all(*grid, *ON_SLURM)
    pretraining_job = re.search(r"submitted pretraining job (\d+)", submitted).group(1)
    array_job = re.search(r"submitted 2 run\(s\) to SLURM as job (\d+)", submitted).group(1)
    dependencies = squeue_field(array_job, "%E")  # read at once: the pretraining takes seconds
    assert dependencies and all(f"afterok:{pretraining_job}" in d for d in dependencies), dependencies
    status = run_all(*grid, "--status")
    assert re.search(rf"pretraining resnet26 pretrained on mini_source .*: (queued|running) \(job {pretraining_job};",
                     status), status

    waited = run_all(*grid, *ON_SLURM, "--wait")
    assert "nothing to submit" in waited
    [record] = (tmp_path / "shared-cache" / "pretrained").glob("*.complete.json")
    record = json.loads(record.read_text())
    assert record["pretrained_by"]["job"] == pretraining_job
    for folder in run_folders(tmp_path / "out").values():
        assert (folder / "done").exists()
        assert json.loads((folder / "metrics.json").read_text())["pretraining"]["id"] == record["key"]
        assert json.loads((folder / "submitted.json").read_text())["depends_on"] == [pretraining_job]
    assert "pretraining resnet26 pretrained on mini_source" in run_all(*grid, "--status")
    again = run_all(*grid, *ON_SLURM, "--dry-run")
    assert re.search(r"^pretraining +done ", again, re.M) and "0 backbone(s) to pretrain (1 cached)" in again


def test_a_failed_pretraining_fails_its_runs_with_its_error_on_the_console(tmp_path, monkeypatch):
    monkeypatch.setenv("SPOTTUNE_CACHE", str(tmp_path / "cache"))
    grid = ["--methods", "finetune", "--datasets", "digits", "--seeds", "0", "--no-progress", "--output", tmp_path / "out",
            "--set", "epochs=1", "lr_milestones=[]", "backbone.pretrained.epochs=0"]  # 0 steps: the schedule raises
    err = io.StringIO()
    run_all(*grid, *ON_SLURM, "--wait", expect=1, err=err)
    assert re.search(r"FAILED pretraining resnet26 pretrained on mini_source .*: failed \(job \d+;", err.getvalue())
    assert "ValueError" in err.getvalue() and "1 run(s) failed" in err.getvalue(), err.getvalue()
    assert re.search(r"FAILED finetune / digits / seed 0 .*\n    never started: its pretraining \w+ failed", err.getvalue())
    status = run_all(*grid, "--status", expect=1)
    assert "never started: its pretraining" in status and "| ValueError" in status, status


def test_a_packed_task_requeued_mid_epoch_resumes_both_runs_to_uninterrupted_numbers(tmp_path):
    """``runs_per_gpu: 2``: two runs in one array task, one process each; ``scontrol requeue``
    kills the task mid-epoch; both runs resume from their checkpoints and end with the numbers
    of uninterrupted runs."""
    grid = ["--methods", "finetune,spottune", "--datasets", "digits", "--seeds", "0", "--set", "epochs=4",
            "lr_milestones=[]", "backbone.pretrained.max_images=1000", "--no-progress"]
    output, reference = tmp_path / "slurm", tmp_path / "local"
    submitted = run_all(*grid, *ON_SLURM, "--slurm-set", "runs_per_gpu=2", "--output", output)
    assert "submitted 2 run(s) to SLURM as job " in submitted and "in 1 tasks" in submitted, submitted
    uninterrupted_runs = subprocess.Popen([sys.executable, RUN_ALL.__file__, *grid, "--output", str(reference)],
                                          stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    folders = list((output / "runs").iterdir())
    submissions = [json.loads((f / "submitted.json").read_text()) for f in folders]
    assert len({s["job_id"] for s in submissions}) == 1 and all(len(s["packed_with"]) == 1 for s in submissions)
    job = submissions[0]
    starts = lambda: Path(job["stdout"]).read_text().count("Starting with JobEnvironment")  # noqa: E731

    wait_for(lambda: all((f / "checkpoint.pt").exists() for f in folders), 300, "both runs' first checkpoint")
    subprocess.run(["scontrol", "requeue", job["job_id"]], check=True, timeout=30)
    wait_for(lambda: starts() == 2, 180, "the requeued task to start again")
    assert not all((f / "done").exists() for f in folders), "the runs finished before the requeue"
    run_all(*grid, *ON_SLURM, "--slurm-set", "runs_per_gpu=2", "--wait", "--output", output)
    assert uninterrupted_runs.wait(timeout=300) == 0, uninterrupted_runs.stderr.read()

    uninterrupted = {json.loads((f / "config.json").read_text())["method"]: json.loads((f / "metrics.json").read_text())
                     for f in (reference / "runs").iterdir()}
    for folder in folders:
        resumed = json.loads((folder / "metrics.json").read_text())
        attempts = (folder / "attempts.log").read_text().splitlines()
        assert len(attempts) == 2 and json.loads(attempts[1])["from_epoch"] >= 1, attempts
        expected = uninterrupted[resumed["method"]]
        assert [h["epoch"] for h in resumed["history"]] == [1, 2, 3, 4]
        assert resumed["test_accuracy"] == expected["test_accuracy"]
        for key in ("train_loss", "train_accuracy", "lr"):
            assert [h[key] for h in resumed["history"]] == [h[key] for h in expected["history"]], key


def test_a_slurm_run_and_an_inline_launcher_on_one_output_train_it_once(tmp_path):
    """Issue 23: a SLURM job took no claim and the local launchers did not read the queue, so
    ``--cluster inline`` on the same output trained the run again while its job trained it
    (two attempts.log lines, both writing the same checkpoint)."""
    run = ["--methods", "finetune", "--datasets", "digits", "--seeds", "0", "--set", "epochs=6", "lr_milestones=[]",
           "backbone.pretrained.max_images=1000", "--no-progress", "--output", tmp_path / "out"]
    run_all(*run, *ON_SLURM)  # returns once submitted
    [folder] = (tmp_path / "out" / "runs").iterdir()
    job = json.loads((folder / "submitted.json").read_text())["job_id"]
    wait_for(lambda: (folder / "checkpoint.pt").exists(), 180, "the job's first epoch")
    holder = live_holder(folder)
    assert holder is not None and holder.job is not None and holder.pid != os.getpid()  # the job claimed its run

    err = io.StringIO()
    run_all(*run, "--cluster", "inline", err=err)  # reads the queue: skips the run
    assert f"its SLURM job {job} is running" in err.getvalue(), err.getvalue()
    config = RunSpec.from_record(json.loads((folder / "config.json").read_text()))
    with pytest.raises(RunClaimed):  # past the queue (a launcher started just before the job): the claim
        run_engine(config, folder, {})

    run_all(*run, *ON_SLURM, "--wait")
    attempts = (folder / "attempts.log").read_text().splitlines()
    assert [json.loads(a)["from_epoch"] for a in attempts] == [0], attempts  # trained once
    assert (folder / "done").exists() and not (folder / "claim.json").exists()
