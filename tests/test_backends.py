"""Backends behind one contract (issue 24): the registry, a fourth and a fifth backend defined
in this file alone, backend-neutral records (old SLURM records still read), the SLURM plan
worked out once and its resources scaled by ``runs_per_gpu``."""
from __future__ import annotations

import json
import re
import subprocess
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest

from spottune.storage import records
from spottune.cli import build_parser
from spottune.planning.grid import make_grid
from spottune.launch import (Backend, Job, Slurm, get_backend, list_backends, record_submission, register_backend,
                             run_here, states_of)
from spottune.storage.records import RunFolder, RunSpec, Status
from tests.helpers import REPO, load_script

run_all = load_script("benchmarks/run_all.py")

TINY = ["--methods", "finetune", "--datasets", "digits", "--no-progress", "--set", "epochs=1", "lr_milestones=[]",
        "backbone.pretrained.kind=none", "backbone.width=0.125"]


@register_backend("threads")
class Threads(Backend):
    """each run in a worker thread of this process, one at a time (tests/test_backends.py)"""

    def submit(self, output: Path, runs: list[RunSpec], runtime: dict[str, Any]) -> dict[str, Status]:
        with ThreadPoolExecutor(max_workers=1) as pool:  # one at a time: a run seeds the process's generators
            return dict(zip([s.run_id for s in runs], pool.map(lambda spec: run_here(output, spec, runtime), runs)))


QUEUE: dict[str, Status] = {}  # the "scheduler" of the backend below: job id -> state
JOBS: dict[str, tuple[Path, RunSpec, dict[str, Any]]] = {}  # job id -> what it trains


@register_backend("dictqueue")
class DictQueue(Backend):
    """jobs that outlive the command, in a dict that stands for a scheduler's queue (tests/test_backends.py)"""

    detached = True

    def submit(self, output: Path, runs: list[RunSpec], runtime: dict[str, Any]) -> dict[str, Status]:
        for spec in runs:  # the pretrainings come first: this queue runs its jobs in order
            job = Job(self.name, str(len(JOBS) + 1), stderr=str(output / f"{spec.run_id}.log"))
            QUEUE[job.job_id], JOBS[job.job_id] = Status.QUEUED, (output, spec, runtime)
            record_submission(output, spec, job, resources=self.resources())
        return {spec.run_id: Status.QUEUED for spec in runs}

    @classmethod
    def in_flight(cls, job_ids):
        return {job_id: QUEUE[job_id] for job_id in job_ids if job_id in QUEUE}

    @classmethod
    def cancel(cls, job_ids):
        for job_id in job_ids:
            QUEUE.pop(job_id, None)


def run_the_queue(*_: Any) -> None:
    """The "scheduler" runs every job in its queue; they leave it."""
    for job_id in list(QUEUE):
        run_here(*JOBS[job_id])
        del QUEUE[job_id]


def main(argv: list[str], capsys: pytest.CaptureFixture) -> tuple[int, str, str]:
    code = run_all.main([str(a) for a in argv])
    out = capsys.readouterr()
    return code, out.out, out.err


def test_cluster_choices_and_help_come_from_the_registry(capsys):
    assert {"inline", "local", "slurm", "threads", "dictqueue"} <= set(list_backends())
    text = "".join(build_parser().format_help().split())  # (argparse wraps lines, at hyphens too)
    for name in list_backends():
        assert "".join(f"{name} = {get_backend(name).summary()}".split()) in text
    assert "threads=eachruninaworkerthreadofthisprocess,oneatatime" in text
    assert run_all.main(["--list"]) == 0
    assert "backends: dictqueue, inline, local, " in capsys.readouterr().out
    with pytest.raises(SystemExit):
        run_all.main(TINY + ["--cluster", "nosuch", "--dry-run"])
    assert "argument --cluster: invalid choice: 'nosuch' (choose from " in capsys.readouterr().err
    with pytest.raises(KeyError, match="unknown backend 'nosuch'; known backends: dictqueue, inline, local, slurm"):
        get_backend("nosuch")


def test_a_backend_is_registered_once_and_must_be_a_backend():
    with pytest.raises(ValueError, match="backend 'threads' is already registered"):
        register_backend("threads")(Threads)
    with pytest.raises(TypeError, match="must decorate a subclass of Backend"):
        register_backend("not_a_backend")(dict)


@pytest.mark.slow
def test_a_backend_defined_in_a_test_runs_a_tiny_grid_with_the_numbers_of_inline(tmp_path, capsys):
    """Issue 24: a fourth backend needs no edit outside its own file; ``--plugins`` names the
    module that registers it, as a user's would; its runs end with the numbers of inline's."""
    code, out, err = main(TINY + ["--seeds", "0", "--output", tmp_path / "inline", "--cluster", "inline"], capsys)
    assert code == 0, err
    code, out, err = main(TINY + ["--seeds", "0", "--output", tmp_path / "threads", "--cluster", "threads",
                                  "--plugins", "tests.test_backends"], capsys)
    assert code == 0, err
    assert (tmp_path / "threads" / "tables" / "summary.md").exists()
    [folder] = [RunFolder(f) for f in (tmp_path / "threads" / "runs").iterdir()]
    [inline] = [RunFolder(f) for f in (tmp_path / "inline" / "runs").iterdir()]
    assert folder.status() is Status.DONE and folder.path.name == inline.path.name  # the same run id
    assert folder.read_metrics()["test_accuracy"] == inline.read_metrics()["test_accuracy"]
    assert folder.read_submission() is None  # trained in the command: nothing to follow later


def test_a_detached_backend_is_recorded_followed_and_skipped_by_every_launcher(tmp_path, capsys, monkeypatch):
    """``submitted.json`` names the backend; ``--status`` (with any --cluster), the other
    launchers and ``--wait`` read its queue through it."""
    QUEUE.clear(), JOBS.clear()
    output = tmp_path / "out"
    grid = TINY + ["--seeds", "0", "--output", output]
    code, out, err = main(grid + ["--cluster", "dictqueue"], capsys)
    assert code == 0, err
    [folder] = [RunFolder(f) for f in (output / "runs").iterdir()]
    record = json.loads((folder / records.SUBMITTED).read_text())
    assert record["backend"] == "dictqueue" and record["job_id"] == "1" and record["host"] and record["submitted_at"]
    assert Job.from_record(record) == Job("dictqueue", "1", None, str(output / f"{folder.path.name}.log"))

    code, out, err = main(grid + ["--status"], capsys)
    assert code == 0 and "1 queued" in out and "(job 1)" in out, out
    assert main(grid + ["--cluster", "dictqueue"], capsys)[1].startswith("nothing to submit")
    code, out, err = main(grid + ["--cluster", "inline"], capsys)
    assert f"skipped finetune / digits / seed 0 ({folder.path.name}): its dictqueue job 1 is queued" in err
    assert not (folder / records.CONFIG).exists()  # not trained

    QUEUE["1"] = Status.RUNNING
    assert "1 running" in main(grid + ["--status"], capsys)[1]
    del QUEUE["1"]  # the job left the queue without writing done or error.txt
    code, out, err = main(grid + ["--status"], capsys)
    assert code == 1 and "1 failed" in out and "its job left the queue without writing done or error.txt" in out
    monkeypatch.setattr("spottune.launch.launcher.time.sleep", run_the_queue)  # it runs while --wait follows it
    code, out, err = main(grid + ["--cluster", "dictqueue", "--wait"], capsys)  # submitted again, then followed
    assert code == 0 and QUEUE == {} and json.loads((folder / records.SUBMITTED).read_text())["job_id"] == "2", err
    assert folder.status() is Status.DONE and (output / "tables" / "summary.md").exists()


def test_a_submission_record_of_before_the_registry_is_read_as_slurms(tmp_path, monkeypatch):
    """Records written before backends were registered have no ``backend``: SLURM's."""
    output = tmp_path / "out"
    spec = make_grid("mini", ["finetune"], ["digits"], [0], {"backbone.pretrained.kind": "none"}).runs()[0]
    folder = RunFolder.of(output, spec)
    folder.path.mkdir(parents=True)
    (folder / records.SUBMITTED).write_text(json.dumps({
        "packed_with": [], "depends_on": [], "job_id": "7_1", "array_job_id": "7", "array_task_id": 1,
        "stdout": str(tmp_path / "7_1.out"), "stderr": str(tmp_path / "7_1.err"), "submitted_at": "2024-01-01T00:00:00",
        "host": "node", "resources": {"partition": "gpu"}}))
    asked = []

    def squeue(cmd, **kwargs):
        asked.append(cmd[0])
        return subprocess.CompletedProcess(cmd, 0, stdout="7_0|RUNNING\n7_1|RUNNING\n", stderr="")

    monkeypatch.setattr("spottune.launch.slurm.subprocess.run", squeue)
    [state] = states_of(output, [spec])
    assert (state.status, state.job, asked) == (Status.RUNNING, Job("slurm", "7_1", str(tmp_path / "7_1.out"),
                                                                      str(tmp_path / "7_1.err")), ["squeue"])
    (tmp_path / "7_1.err").write_text("Traceback (most recent call last):\nMemoryError: oom\n")
    monkeypatch.setattr("spottune.launch.slurm.subprocess.run",
                        lambda cmd, **kwargs: subprocess.CompletedProcess(cmd, 0, stdout="7_0|COMPLETED\n", stderr=""))
    [state] = states_of(output, [spec])
    assert state.status is Status.FAILED and state.log == str(tmp_path / "7_1.err")
    assert "MemoryError: oom" in state.error


def test_the_queues_are_read_once_per_poll_and_only_for_unfinished_jobs(tmp_path, monkeypatch):
    output = tmp_path / "out"
    specs = make_grid("mini", ["finetune"], ["digits"], [0, 1, 2], {"backbone.pretrained.kind": "none"}).runs()
    for i, spec in enumerate(specs[:2]):
        record_submission(output, spec, Job("slurm", f"5_{i}"))
    calls = []

    def squeue(cmd, **kwargs):
        calls.append(cmd)
        return subprocess.CompletedProcess(cmd, 0, stdout="5_0|PENDING\n5_1|RUNNING\n5_2|RUNNING\n", stderr="")

    monkeypatch.setattr("spottune.launch.slurm.subprocess.run", squeue)
    states = states_of(output, specs)
    assert len(calls) == 1 and [s.status for s in states] == [Status.QUEUED, Status.RUNNING, Status.NEW]
    states_of(output, specs[2:])  # no job to ask about: no read of the queue
    assert len(calls) == 1
    assert Slurm.in_flight({"5_1", "9"}) == {"5_1": Status.RUNNING}


def test_the_slurm_plan_is_worked_out_once_and_a_packed_task_asks_for_its_runs(tmp_path, monkeypatch, capsys):
    """``mem_gb`` and ``time_min`` are a run's; a task of ``runs_per_gpu`` runs asks for that many
    times them (the pretraining's job, never packed, does not)."""
    import spottune.launch.slurm as slurm

    worked_out, submitted = [], []
    real = slurm.slurm_resources
    monkeypatch.setattr(slurm, "slurm_resources", lambda *a, **k: worked_out.append(a) or real(*a, **k))
    monkeypatch.setattr(Slurm, "submit", lambda self, output, runs, runtime: submitted.append(self) or {})
    grid = TINY + ["--seeds", "0,1", "--output", tmp_path / "out", "--cluster", "slurm", "--profile", "local",
                   "--slurm-set", "runs_per_gpu=2"]
    code, out, err = main(grid, capsys)
    assert code == 0, err
    assert len(worked_out) == 2 and len(submitted) == 1  # the runs' and the pretraining's, once per launch
    backend = submitted[0]
    assert (backend.run_resources["mem_gb"], backend.run_resources["time_min"]) == (4, 120)  # local.yaml: 2, 60
    assert (backend.pretraining_resources["mem_gb"], backend.pretraining_resources["time_min"]) == (2, 60)
    assert backend.run_resources["cpus_per_task"] == 1
    code, out, err = main(grid + ["--dry-run"], capsys)
    assert "each SLURM job asks for gpus 0, cpus 1, mem_gb 4, time_min 120, runs 2" in out


@pytest.mark.parametrize("setting, message", [
    ("partition", "error: --slurm-set expects KEY=VALUE, got 'partition'"),
    ("nosuch=1", "error: --slurm-set: unknown SLURM setting(s) nosuch; known: partition"),
    ("additional={x", "error: --slurm-set 'additional={x': the value is not YAML"),
])
def test_slurm_set_errors_name_slurm_set(setting, message, tmp_path, capsys):
    code, out, err = main(TINY + ["--output", tmp_path, "--cluster", "slurm", "--profile", "local", "--dry-run",
                                  "--slurm-set", setting], capsys)
    assert code == 2 and message in err, err


def test_a_site_module_registers_a_backend_for_every_command(tmp_path, monkeypatch, capsys):
    """``$SPOTTUNE_PLUGINS``, the site hook: its modules are imported before the command line
    is read, so their backends are --cluster choices without --plugins."""
    (tmp_path / "site_backends_for_test.py").write_text(
        "from spottune.launch import Backend, register_backend\n\n\n"
        "@register_backend('site_test')\n"
        "class SiteTest(Backend):\n"
        "    \"\"\"the site's own\"\"\"\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.setenv("SPOTTUNE_PLUGINS", "site_backends_for_test")
    code, out, err = main(TINY + ["--seeds", "0", "--output", tmp_path / "out", "--cluster", "site_test", "--dry-run"],
                          capsys)
    assert code == 0 and "1 runs (mini)" in out, err
    monkeypatch.setenv("SPOTTUNE_PLUGINS", "no_such_site_module")
    code, out, err = main(TINY + ["--dry-run"], capsys)
    assert code == 2 and "no_such_site_module" in err


def test_only_the_slurm_backend_speaks_to_slurm():
    """Issue 24: ``grep -rn squeue spottune`` finds it in the SLURM backend's module alone (and
    its other commands too)."""
    for command, files in (("squeue", "*"), ("sacct", "*.py"), ("scancel", "*.py"), ("sbatch", "*.py")):
        found = subprocess.run(["grep", "-rl", f"--include={files}", command, str(REPO / "spottune")],
                               capture_output=True, text=True).stdout.split()
        assert [Path(f).relative_to(REPO).as_posix() for f in found] in ([], ["spottune/launch/slurm.py"]), command


# a grid whose backbone the suite pretrains (a tiny pretraining, in a cache of the test's own)
SUITE = ["--methods", "finetune", "--datasets", "digits", "--seeds", "0", "--no-progress", "--set", "epochs=1",
         "lr_milestones=[]", "backbone.pretrained.epochs=1", "backbone.pretrained.max_images=256",
         "backbone.width=0.125"]


def test_a_pretraining_is_a_run_whose_id_is_the_cache_key_of_before():
    """Issue 24: a suite pretraining is a ``RunSpec`` of its own kind. Its id is the key the cache
    has always used (the committed example's runs name it), its folder sits beside the runs',
    and the runs' ids did not move (``kind`` is not part of a run's identity)."""
    from spottune.pretraining.cache import SuitePretraining, pretraining_spec
    from spottune.launch import grid_pretrainings, pretraining_of

    [run] = make_grid("mini", ["finetune"], ["digits"], [0], {}).runs()
    spec = pretraining_of(run)
    recorded = {json.loads(p.read_text())["pretraining"]["id"] for p in (REPO / "results/example/runs").glob("*/metrics.json")}
    assert recorded == {spec.run_id} == {SuitePretraining(run.hparams["backbone"]).key} == {"d03449ae04f3"}
    assert spec == pretraining_spec(run.hparams["backbone"]) and spec.kind == records.PRETRAINING
    assert RunSpec.from_record(spec.record()) == spec and records.run_id(spec.record()) == spec.run_id
    assert RunFolder.of("out", spec).path == Path("out/pretraining/d03449ae04f3")
    assert run.kind == records.RUN and "kind" not in run.record() and RunFolder.of("out", run).path.parent.name == "runs"
    assert run.run_id in {p.parent.name for p in (REPO / "results/example/runs").glob("*/done")}
    assert grid_pretrainings([run, run]) == [spec] and pretraining_of(spec) is None
    with pytest.raises(ValueError, match="unknown kind of run 'job'; known: run, pretraining"):
        RunSpec("m", "d", 0, "p", {}, kind="job")


@pytest.mark.slow
def test_a_fourth_backend_pretrains_through_the_one_contract(tmp_path, capsys, monkeypatch):
    """The two backends of this file know nothing of pretraining: the launcher hands them the
    pretraining first, as one more run. The detached one submits it as a job that ``--status``
    follows; the in-process one trains it before the run; a cache emptied afterwards makes it
    ``new`` again, and a launch pretrains it again, nothing else."""
    QUEUE.clear(), JOBS.clear()
    monkeypatch.setenv("SPOTTUNE_CACHE", str(tmp_path / "cache"))
    queued = SUITE + ["--output", tmp_path / "queued"]
    code, out, err = main(queued + ["--cluster", "dictqueue"], capsys)
    assert code == 0, err
    [(_, pretraining, _), (_, run, _)] = [JOBS[job] for job in sorted(JOBS)]
    assert pretraining.kind == records.PRETRAINING and run.kind == records.RUN
    status = main(queued + ["--status"], capsys)[1]
    assert f"pretraining resnet26 pretrained on mini_source ({pretraining.run_id}): queued (job 1; cache " in status
    assert "1 runs in" in status and "1 queued" in status, status
    run_the_queue()
    status = main(queued + ["--status"], capsys)[1]
    assert f"({pretraining.run_id}): done (job 1;" in status and "1 done" in status, status
    folder = RunFolder.of(tmp_path / "queued", run)
    assert folder.read_metrics()["pretraining"]["id"] == pretraining.run_id

    threads = SUITE + ["--output", tmp_path / "threads", "--cluster", "threads", "--plugins", "tests.test_backends"]
    code, out, err = main(threads, capsys)
    assert code == 0 and not (tmp_path / "threads" / "pretraining").exists(), err  # cached: not trained again
    assert RunFolder.of(tmp_path / "threads", run).read_metrics()["test_accuracy"] == folder.read_metrics()["test_accuracy"]
    import shutil

    shutil.rmtree(tmp_path / "cache")
    status = main(queued + ["--status"], capsys)[1]
    assert f"({pretraining.run_id}): new (job 1; cache {tmp_path / 'cache' / 'pretrained'}); pretrained once, " in status
    code, out, err = main(threads + ["--status"], capsys)
    assert f"({pretraining.run_id}): new (no job;" in out and "1 done" in out, out
    assert main(threads, capsys)[0] == 0  # its runs are done: nothing to pretrain
    assert not (tmp_path / "cache").exists()


def test_the_runs_of_a_failed_pretraining_never_start_here(tmp_path, capsys, monkeypatch):
    """``--cluster inline`` and ``local`` train the pretraining first; when it fails, its error is
    recorded in its folder and its runs are failed without starting (before, the launch stopped
    with a traceback, or each run tried to pretrain again)."""
    monkeypatch.setenv("SPOTTUNE_CACHE", str(tmp_path / "cache"))
    for cluster in ("inline", "local"):
        output = tmp_path / cluster
        grid = SUITE + ["--seeds", "0,1", "--output", output, "--set", "backbone.pretrained.epochs=0"]
        code, out, err = main(grid + ["--cluster", cluster], capsys)
        assert code == 1, (out, err)
        assert re.search(r"FAILED pretraining resnet26 pretrained on mini_source \(\w+\)  .*/pretraining/\w+\n"
                         r"    ValueError: ", err), err
        assert err.count("never started: its pretraining") == 2 and not (output / "runs").exists(), err
        code, out, err = main(grid + ["--status"], capsys)
        assert code == 1 and "pretraining resnet26 pretrained on mini_source" in out and ": failed (no job;" in out
        assert "    | ValueError: " in out, out
