"""Bad input and faults (issue 16): checked before launching, one clear line, never trained twice,
torn records recovered, hostile checkpoints refused; failed runs named on the console."""
from __future__ import annotations

import errno
import json
import os
import pickle
import shutil
import socket
import stat
import subprocess
import sys
import time
import warnings
from pathlib import Path

import numpy as np
import pytest
import torch

from spottune.storage import checkpoint
from spottune.storage import records
from spottune.engine import run
from spottune.data import DatasetError
from spottune.planning.grid import make_grid, parse_overrides
from spottune.launch import Claim, RunClaimed, error_line, failure_lines, live_holder
from spottune.storage.claim import process_alive, process_start
from spottune.planning.preflight import RULES, launch_problems, search_problems
from spottune.report.__main__ import main as report_main
from spottune.report.frame import load_records
from tests.data_fixtures import write_devkit
from tests.fail_at_epoch import ENV as FAIL_AT_EPOCH
from tests.fail_at_epoch import InjectedFailure
from tests.helpers import REPO, load_script, tiny_run

run_all = load_script("benchmarks/run_all.py")

TINY = ["--methods", "finetune", "--datasets", "digits", "--seeds", "0", "--no-progress", "--cluster", "inline",
        "--set", "epochs=1", "lr_milestones=[]", "backbone.pretrained.kind=none"]


def refused(argv: list[str], capsys: pytest.CaptureFixture) -> list[str]:
    """Run run_all.py expecting exit status 2 and no traceback; its stderr lines."""
    assert run_all.main(argv) == 2
    err = capsys.readouterr().err
    assert "Traceback" not in err
    return err.strip().splitlines()


# -- the grid is checked before anything launches ---------------------------------------------

@pytest.mark.parametrize("settings, message", [
    (["epochs=-1"], "epochs=-1: must be an integer >= 1"),
    (["lr=abc"], "--set lr='abc': must be a number (like 0.05)"),
    (["batch_size=0"], "batch_size=0: must be an integer >= 1"),
    (["lr=0"], "lr=0.0: must be a number > 0"),
    (["optimizer=rmsprop"], "optimizer='rmsprop': must be one of sgd, adam"),
    (["epochs=2", "lr_milestones=[3]"], "lr_milestones=[3] with epochs=2: every milestone must be within 1..2"),
    (["epochs=1"], "lr_milestones=[4] with epochs=1"),  # the preset's milestone, past a shortened run
    (["lr_milestones=2"], "--set lr_milestones=2: must be a list"),
    (["lr=inf"], "lr=inf: must be a finite number"),  # issue 23: inf passed as a number > 0
    (["weight_decay=inf"], "weight_decay=inf: must be a finite number"),
    (["lr=1e400"], "lr=inf: must be a finite number"),  # float("1e400") is inf
    (["lr_gamma=nan"], "lr_gamma=nan: must be a finite number"),
    (["temperature=0"], "temperature=0.0: must be a number > 0"),
])
def test_bad_hyperparameters_exit_2_with_one_line_and_write_nothing(tmp_path, capsys, settings, message):
    output = tmp_path / "out"
    lines = refused(["--methods", "finetune,spottune", "--datasets", "digits,glyph_fonts", "--output", str(output),
                     "--set", *settings], capsys)
    assert lines == [f"error: {lines[0][len('error: '):]}"] and message in lines[0]  # one line for 4 runs
    assert not output.exists()


def test_every_number_must_be_finite_method_values_and_search_spaces_too(capsys):
    lines = refused(["--methods", "spottune_global", "--datasets", "digits", "--dry-run", "--set", "lambda_k=-inf"],
                    capsys)
    assert lines == ["error: lambda_k=-inf: must be a finite number (a value past 1.8e308, such as 1e400, reads as inf)"]
    assert search_problems({"lr": 0.1}, {"lr": [0.1, float("inf")]}, RULES) == [
        "search lr=[0.1, inf]: every value must be a finite number"]


def test_values_must_be_plain_data(tmp_path, capsys):
    lines = refused(["--methods", "spottune_global", "--datasets", "digits", "--dry-run", "--set", "k=2024-01-01"],
                    capsys)
    assert lines == ["error: k=datetime.date(2024, 1, 1): must be plain data (a number, string, true/false, null, "
                     "list or mapping)"]


def test_distinct_problems_one_line_each(tmp_path, capsys):
    lines = refused(["--methods", "finetune", "--datasets", "digits", "--output", str(tmp_path / "o"),
                     "--set", "batch_size=0", "eval_batch_size=-3", "momentum=1.5"], capsys)
    assert len(lines) == 3 and all(line.startswith("error: ") for line in lines)


def test_data_root_and_datasets_checked_once_per_grid(tmp_path, capsys):
    output = tmp_path / "out"
    decathlon = ["--preset", "decathlon", "--methods", "finetune,spottune", "--datasets",
                 "decathlon/aircraft,decathlon/dtd", "--output", str(output), "--set", "backbone.pretrained.kind=none"]
    lines = refused(decathlon + ["--data-root", str(tmp_path / "nonexistent")], capsys)
    assert lines == [f"error: --data-root {tmp_path / 'nonexistent'}: no such folder"]
    (tmp_path / "empty").mkdir()
    lines = refused(decathlon + ["--data-root", str(tmp_path / "empty")], capsys)
    assert len(lines) == 2  # one per dataset, not one per run (4)
    assert lines[0].startswith("error: decathlon/aircraft: ") and lines[1].startswith("error: decathlon/dtd: ")
    assert not output.exists()


def test_a_corrupt_devkit_image_is_named_on_the_console(tmp_path):
    devkit = write_devkit(tmp_path / "data", "aircraft", {"train": 6, "val": 3, "test": 3}, num_classes=3)
    broken = next((devkit / "data" / "aircraft" / "train").glob("*.jpg"))
    broken.write_bytes(b"not a jpeg")
    grid = make_grid("decathlon", ["finetune"], ["decathlon/aircraft"], [0],
                     {"backbone.pretrained.kind": "none", "epochs": 1, "lr_milestones": [], "batch_size": 4,
                      "num_workers": 0, "backbone.width": 0.25})
    configs = grid.runs()
    assert launch_problems(configs, tmp_path / "data") == []  # the devkit's layout is right: the run starts
    with pytest.raises(DatasetError):
        run(configs[0], tmp_path / "out" / "runs" / configs[0].run_id, {"data_root": str(tmp_path / "data")})
    folder = tmp_path / "out" / "runs" / configs[0].run_id
    lines = failure_lines(records.RunFolder(folder), configs[0])
    assert lines[0] == f"FAILED finetune / decathlon/aircraft / seed 0  {folder}"
    assert "DatasetError: corrupt or unreadable image" in lines[1] and str(broken) in lines[1]


# -- every user error: one line, exit 2, --debug shows the traceback ---------------------------

def test_preset_yaml_syntax_error(tmp_path, capsys):
    preset = tmp_path / "bad.yaml"
    preset.write_text("name: bad\nhparams: {lr: 0.1\nepochs: 2\n")
    lines = refused(["--preset", str(preset), "--dry-run"], capsys)
    assert len(lines) == 1 and str(preset) in lines[0] and "line 3" in lines[0] and "invalid YAML" in lines[0]
    with pytest.raises(ValueError, match="invalid YAML"):
        run_all.main(["--preset", str(preset), "--dry-run", "--debug"])


def test_plugins_that_are_missing_or_raise(tmp_path, capsys, monkeypatch):
    (tmp_path / "raising_plugin.py").write_text("raise RuntimeError('this plugin is broken')\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    lines = refused(["--plugins", "raising_plugin", "--dry-run"], capsys)
    assert lines == ["error: plugin module 'raising_plugin' raised RuntimeError on import: this plugin is broken"]
    lines = refused(["--plugins", "no_such_plugin_module", "--dry-run"], capsys)
    assert len(lines) == 1 and "cannot import plugin module 'no_such_plugin_module'" in lines[0]


@pytest.mark.parametrize("output", ["/proc/spottune-output", "/sys/spottune-output"])
def test_output_that_cannot_be_written(output, capsys):
    lines = refused(TINY + ["--output", output], capsys)
    assert lines == [lines[0]] and lines[0].startswith(f"error: --output {output}: cannot write there (")


@pytest.mark.skipif(os.geteuid() == 0, reason="root writes into read-only folders")
def test_output_without_write_permission(tmp_path, capsys):
    locked = tmp_path / "locked"
    locked.mkdir(mode=0o555)
    lines = refused(TINY + ["--output", str(locked / "out")], capsys)
    assert len(lines) == 1 and "cannot write there (Permission denied)" in lines[0]


def test_seeds_that_are_not_integers(capsys):
    with pytest.raises(SystemExit) as exit_:
        run_all.main(["--seeds", "x", "--dry-run"])
    assert exit_.value.code == 2
    assert capsys.readouterr().err.strip().splitlines() == [
        "error: argument --seeds: expected comma-separated integers, got 'x' (--help lists the options)"]


# -- files: the umask's mode, validated reads --------------------------------------------------

@pytest.mark.parametrize("mask, mode", [(0o022, 0o644), (0o007, 0o660)])
def test_files_get_the_umask_mode(tmp_path, mask, mode):
    old = os.umask(mask)
    try:
        records.atomic_write_json(tmp_path / "x.json", {"a": 1})
    finally:
        os.umask(old)
    assert stat.S_IMODE((tmp_path / "x.json").stat().st_mode) == mode


def test_torn_json_names_the_file(tmp_path):
    path = tmp_path / "metrics.json"
    path.write_text('{"run_id": "abc", "test_acc')
    with pytest.raises(records.RecordError, match=f"^{path}: torn or not JSON"):
        records.read_json(path)


def _full_disk(*args):
    raise OSError(errno.ENOSPC, "No space left on device")


def test_a_full_disk_names_the_file(tmp_path, monkeypatch, capsys):
    """Issue 23: a full disk said ``OSError: [Errno 28] No space left on device`` and no file."""
    with pytest.raises(OSError, match=r"No space left on device: '/dev/full'"):
        records.append_json_line(Path("/dev/full"), {"a": 1})  # a real ENOSPC
    monkeypatch.setattr(records.os, "fsync", _full_disk)
    with pytest.raises(OSError, match=f"No space left on device: '{tmp_path / 'x.json'}'") as raised:
        records.atomic_write_json(tmp_path / "x.json", {"a": 1})
    assert raised.value.errno == errno.ENOSPC and list(tmp_path.iterdir()) == []  # no temporary file left
    assert run_all.main(TINY + ["--output", str(tmp_path / "out")]) == 1  # the run's first file cannot be written
    assert f"FAILED: OSError: [Errno 28] No space left on device: '{tmp_path / 'out' / 'runs'}/" in capsys.readouterr().out


def test_a_plain_pickle_as_pretrained_is_one_line_without_library_warnings(tmp_path, capsys):
    """Issue 23: torch printed two lines of warnings (the pickle's protocol) before the error."""
    plain = tmp_path / "plain.pkl"
    plain.write_bytes(pickle.dumps({"weights": [1.0, 2.0]}))
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        lines = refused(["--pretrained", str(plain), "--dry-run"], capsys)
    assert [str(w.message) for w in caught] == []
    assert len(lines) == 1 and lines[0].startswith(f"error: --pretrained {plain}: neither a state_dict nor")


# -- torn records and checkpoints recover, hostile checkpoints are refused ---------------------

DAMAGED = ["--methods", "spottune", "--datasets", "digits", "--seeds", "0", "--no-progress", "--cluster", "inline",
           "--set", "epochs=1", "lr_milestones=[]", "backbone.pretrained.kind=none", "backbone.width=0.125"]


@pytest.fixture(scope="module")
def done_spottune_run(tmp_path_factory) -> tuple:
    """A done SpotTune run (it has a policy.npz): its output folder and metrics."""
    output = tmp_path_factory.mktemp("damaged") / "out"
    assert run_all.main(DAMAGED + ["--output", str(output)]) == 0
    [folder] = (output / "runs").iterdir()
    return output, records.RunFolder(folder).read_metrics()


def _truncate(path):
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])


def _plant_pickle(path):
    marker = path.parent / "executed"
    np.savez(path, decisions=np.array([_Payload(str(marker))], dtype=object), labels=np.zeros(1, np.int64),
             predictions=np.zeros(1, np.int64), indices=np.zeros(1, np.int64), train_fraction=np.zeros((1, 1)))


@pytest.mark.slow
@pytest.mark.parametrize("name, damage", [(records.PREDICTIONS, _truncate), (records.POLICY, _plant_pickle),
                                          (records.CONFIG, lambda path: path.write_text("garbage {"))])
def test_a_damaged_record_is_torn_left_out_with_one_warning_and_repaired_by_a_rerun(
        done_spottune_run, tmp_path, capsys, caplog, name, damage):
    """Issue 23: one damaged record of a done run made every report exit 1 (a traceback naming no
    file) while --status said done, so re-running never repaired it."""
    template, metrics = done_spottune_run
    output = tmp_path / "out"
    shutil.copytree(template, output)
    folder = output / "runs" / metrics["run_id"]
    damage(folder / name)
    argv = DAMAGED + ["--output", str(output)]

    assert run_all.main(argv + ["--status"]) == 0
    out = capsys.readouterr().out
    assert f"torn     {metrics['run_id']}" in out and f"({folder / name}: " in out

    caplog.clear()
    report_main([str(output), "--tables-only"])  # exit 0: no SystemExit, no exception
    warnings = [r.getMessage() for r in caplog.records if r.levelname == "WARNING"]
    assert len(warnings) == 1 and warnings[0].startswith(f"{folder / name}: ") and "left out" in warnings[0]
    summary = (output / "tables" / "summary.md").read_text()
    assert "Not done: spottune/digits/seed 0 (torn)" in summary if name != records.CONFIG else "No runs found" in summary

    assert run_all.main(argv) == 0  # repaired: evaluated again from its checkpoint
    repaired = records.RunFolder(folder)
    assert repaired.status() is records.Status.DONE and not (folder / "executed").exists()
    attempts = [json.loads(line) for line in (folder / records.ATTEMPTS).read_text().splitlines()]
    assert [a["from_epoch"] for a in attempts] == [0, 1]  # not trained again
    again = repaired.read_metrics()
    assert again["test_accuracy"] == metrics["test_accuracy"] and again["history"] == metrics["history"]
    assert repaired.read_policy()["decisions"].dtype == np.uint8

@pytest.mark.slow
def test_torn_metrics_of_a_done_run_is_evaluated_again(tmp_path, caplog):
    folder = tmp_path / "runs" / "r"
    first = run(tiny_run(), folder)
    metrics = folder / "metrics.json"
    metrics.write_bytes(metrics.read_bytes()[:100])  # cut in half
    assert records.RunFolder(folder).status() is records.Status.TORN
    frame = load_records(tmp_path)  # the report does not fail, and counts no number
    assert frame["status"].tolist() == ["torn"]
    again = run(tiny_run(), folder)
    assert f"{metrics}: torn or not JSON" in caplog.text
    assert again["test_accuracy"] == first["test_accuracy"] and again["history"] == first["history"]  # not retrained
    assert records.RunFolder(folder).status() is records.Status.DONE


def test_report_names_a_torn_config_and_leaves_it_out(tmp_path, caplog):
    folder = tmp_path / "runs" / "abc"
    folder.mkdir(parents=True)
    (folder / "config.json").write_text('{"method": "fine')
    frame = load_records(tmp_path)
    assert frame["method"].isna().all()
    assert f"{folder / 'config.json'}: torn or not JSON" in caplog.text and "left out of the report" in caplog.text


@pytest.mark.slow
def test_a_local_workers_warning_about_a_run_reaches_the_console(tmp_path, capsys, monkeypatch):
    """Issue 23: with the local launcher, "torn checkpoint moved aside" reached only O/local/* logs."""
    output = tmp_path / "out"
    argv = ["--methods", "finetune", "--datasets", "digits", "--seeds", "0", "--no-progress", "--output", str(output),
            "--set", "epochs=2", "lr_milestones=[]", "backbone.pretrained.kind=none", "backbone.width=0.125"]
    monkeypatch.setenv(FAIL_AT_EPOCH, "2")
    assert run_all.main(argv + ["--cluster", "inline", "--plugins", "tests.fail_at_epoch"]) == 1
    monkeypatch.delenv(FAIL_AT_EPOCH)
    [folder] = (output / "runs").iterdir()
    (folder / records.CHECKPOINT).write_bytes(b"torn")  # epoch 1's, the only one
    capsys.readouterr()
    assert run_all.main(argv + ["--max-parallel", "1"]) == 0  # one local worker (--cluster local)
    err = capsys.readouterr().err
    assert f"warning: finetune / digits / seed 0 ({folder.name}): {folder / records.CHECKPOINT} is unreadable" in err
    attempts = records.RunFolder(folder).read_attempts()
    assert [a["from_epoch"] for a in attempts] == [0, 0] and "moved to checkpoint.pt.torn-" in attempts[1]["warnings"][0]


@pytest.mark.slow
def test_torn_checkpoint_is_moved_aside_and_the_previous_one_resumes(tmp_path, caplog, monkeypatch):
    config = tiny_run(epochs=3, lr_milestones=[1], **{"backbone.width": 0.125})
    reference = run(config, tmp_path / "straight")
    folder = tmp_path / "resumed"
    monkeypatch.setenv(FAIL_AT_EPOCH, "3")
    with pytest.raises(InjectedFailure):
        run(config, folder)
    monkeypatch.delenv(FAIL_AT_EPOCH)
    assert torch.load(folder / records.PREVIOUS_CHECKPOINT, weights_only=True)["epoch"] == 1
    current = folder / records.CHECKPOINT
    current.write_bytes(current.read_bytes()[:1000])  # torn: epoch 2 is lost
    resumed = run(config, folder)
    aside = list(folder.glob("checkpoint.pt.torn-*"))
    assert len(aside) == 1 and f"{current} is unreadable" in caplog.text and "previous checkpoint" in caplog.text
    assert resumed["history"][1].get("resumed") is True  # epochs 2 and 3 trained again
    assert [h["train_loss"] for h in resumed["history"]] == [h["train_loss"] for h in reference["history"]]
    assert resumed["test_accuracy"] == reference["test_accuracy"]
    assert not (folder / records.PREVIOUS_CHECKPOINT).exists()  # a done run keeps one checkpoint


def test_unreadable_checkpoints_restart_from_the_start(tmp_path):
    (tmp_path / records.CHECKPOINT).write_bytes(b"")
    (tmp_path / records.PREVIOUS_CHECKPOINT).write_bytes(b"\0" * 1000)
    assert checkpoint.load(tmp_path) is None
    assert len(list(tmp_path.glob("*.torn-*"))) == 2 and not (tmp_path / records.CHECKPOINT).exists()


class _Payload:
    def __init__(self, marker: str) -> None:
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


@pytest.mark.parametrize("as_torch_file", [True, False])
def test_hostile_checkpoint_is_refused_with_its_path(tmp_path, as_torch_file):
    marker, folder = tmp_path / "executed", tmp_path / "run"
    folder.mkdir()
    if as_torch_file:
        torch.save({"model": {}, "epoch": 1, "payload": _Payload(str(marker))}, folder / records.CHECKPOINT)
    else:
        (folder / records.CHECKPOINT).write_bytes(pickle.dumps(_Payload(str(marker))))
    with pytest.raises(checkpoint.UnsafeCheckpoint, match=f"refusing to load {folder / records.CHECKPOINT}"):
        run(tiny_run(), folder)
    assert not marker.exists() and (folder / records.CHECKPOINT).exists()
    assert "UnsafeCheckpoint: refusing to load" in error_line((folder / records.ERROR).read_text())


@pytest.mark.slow
def test_checkpoints_hold_only_tensors_and_plain_data(tmp_path, monkeypatch):
    config = tiny_run("piggyback")  # Adam states
    monkeypatch.setenv(FAIL_AT_EPOCH, "2")
    with pytest.raises(InjectedFailure):
        run(config, tmp_path)
    state = torch.load(tmp_path / records.CHECKPOINT, weights_only=True)
    assert state["epoch"] == 1 and state["args"]["run_id"] == config.run_id and len(state["history"]) == 1


# -- claims: one launcher per run --------------------------------------------------------------

def test_a_claim_is_exclusive_and_released(tmp_path):
    with Claim(tmp_path) as claim:
        holder = live_holder(tmp_path)
        assert holder.pid == os.getpid() and holder.token == claim.token
        with pytest.raises(RunClaimed, match=f"claimed by pid {os.getpid()} on {socket.gethostname()}"):
            Claim(tmp_path)
    assert live_holder(tmp_path) is None and not (tmp_path / records.CLAIM).exists()


def _write_claim(folder, pid: int, host: str, age_s: float) -> None:
    path = folder / records.CLAIM
    path.write_text(json.dumps({"pid": pid, "host": host, "since": "earlier", "token": "t0", "process_start": None}))
    os.utime(path, (time.time() - age_s, time.time() - age_s))


def test_process_liveness_sees_exited_zombie_and_reused_pids():
    child = subprocess.Popen([sys.executable, "-c", "import sys; sys.stdin.read()"], stdin=subprocess.PIPE)
    started = process_start(child.pid)
    assert process_alive(child.pid, started) and not process_alive(child.pid, "0")  # "0": another process
    child.stdin.close()  # it exits
    os.waitid(os.P_PID, child.pid, os.WEXITED | os.WNOWAIT)  # exited, not reaped: a zombie
    assert not process_alive(child.pid, started)
    child.wait()
    assert not process_alive(child.pid, started)


def test_stale_claims_are_taken_over(tmp_path):
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    _write_claim(tmp_path, dead.pid, socket.gethostname(), age_s=1)  # this host, process gone: stale at once
    assert live_holder(tmp_path) is None
    with Claim(tmp_path) as claim:
        assert live_holder(tmp_path).token == claim.token
    _write_claim(tmp_path, 1, "another-host", age_s=10)  # another host, fresh heartbeat: live
    assert live_holder(tmp_path).host == "another-host"
    with pytest.raises(RunClaimed):
        Claim(tmp_path)
    _write_claim(tmp_path, 1, "another-host", age_s=400)  # heartbeat older than the timeout: stale
    with Claim(tmp_path):
        pass
    assert not list(tmp_path.glob("claim.json.stale-*"))



@pytest.mark.parametrize("content", ['{"pid": ', '[1, 2]', '{"pid": "x", "host": "h", "since": "s", "token": "t"}'])
def test_a_damaged_claim_is_taken_over_at_once_with_one_line(tmp_path, caplog, content):
    """Issue 23: a garbage claim.json looked like a live run for 5 minutes (``claimed by pid -1 on ?``)."""
    (tmp_path / records.CLAIM).write_text(content)  # fresh mtime
    assert live_holder(tmp_path) is None
    with caplog.at_level("WARNING", logger="spottune.storage.claim"), Claim(tmp_path) as claim:
        assert live_holder(tmp_path).token == claim.token
    [line] = [r.getMessage() for r in caplog.records]
    assert line.startswith(f"{tmp_path / records.CLAIM}: ") and "taken over by pid" in line


def test_the_engine_claims_every_run_and_touches_none_another_process_holds(tmp_path):
    """Issue 23: a SLURM job (RunJob) and a packed task's child called run() without a claim."""
    config, folder = tiny_run(), tmp_path / "run"
    with Claim(folder) as claim:  # held by a live process (this one, as another launcher would)
        with pytest.raises(RunClaimed, match=f"claimed by pid {os.getpid()}"):
            run(config, folder)
        assert sorted(p.name for p in folder.iterdir()) == [records.CLAIM]  # nothing read or written
        assert live_holder(folder).token == claim.token


def test_a_local_launcher_skips_a_run_whose_slurm_job_is_in_flight(tmp_path, capsys, monkeypatch):
    """Issue 23: --cluster inline trained a run that its SLURM job (job 9) was training."""
    output = tmp_path / "out"
    spec = make_grid("mini", ["finetune"], ["digits"], [0], parse_overrides(TINY[TINY.index("--set") + 1:])).runs()[0]
    folder = records.RunFolder.of(output, spec)
    folder.write_submission({"job_id": "9", "stderr": str(tmp_path / "9.err")})
    for state, word in (("PENDING", "queued"), ("RUNNING", "running")):
        squeue = subprocess.CompletedProcess([], 0, stdout=f"8|RUNNING\n9|{state}\n", stderr="")
        monkeypatch.setattr("spottune.launch.slurm.subprocess.run", lambda *args, **kwargs: squeue)
        assert run_all.main(TINY + ["--output", str(output)]) == 0
        err = capsys.readouterr().err
        assert f"skipped finetune / digits / seed 0 ({spec.run_id}): its SLURM job 9 is {word}" in err
        assert not (folder / records.ATTEMPTS).exists() and not (folder / records.CONFIG).exists()


def test_the_heartbeat_keeps_a_claim_fresh(tmp_path):
    with Claim(tmp_path, heartbeat_s=0.05):
        os.utime(tmp_path / records.CLAIM, (time.time() - 100, time.time() - 100))
        time.sleep(0.3)
        assert live_holder(tmp_path, stale_after_s=1.0) is not None


@pytest.mark.slow
def test_two_launchers_on_one_output_train_every_run_once(tmp_path):
    output = tmp_path / "out"
    argv = [sys.executable, str(REPO / "benchmarks" / "run_all.py"), "--methods", "finetune", "--datasets", "digits",
            "--seeds", "0,1,2,3", "--output", str(output), "--no-progress", "--cluster", "inline",
            "--set", "epochs=1", "lr_milestones=[]", "backbone.pretrained.kind=none", "backbone.width=0.125"]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    launchers = [subprocess.Popen(argv, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
                 for _ in range(2)]
    results = [p.communicate(timeout=300) for p in launchers]
    assert [p.returncode for p in launchers] == [0, 0], results
    runs = sorted((output / "runs").iterdir())
    assert len(runs) == 4
    for folder in runs:
        assert records.RunFolder(folder).status() is records.Status.DONE and not (folder / records.CLAIM).exists()
        attempts = [json.loads(line) for line in (folder / records.ATTEMPTS).read_text().splitlines()]
        assert [a["from_epoch"] for a in attempts] == [0]  # trained exactly once, from the start
        assert len(records.RunFolder(folder).read_metrics()["history"]) == 1


@pytest.mark.slow
def test_a_killed_launchers_claim_is_taken_over_and_the_run_resumes(tmp_path, capsys):
    output = tmp_path / "out"
    argv = ["--methods", "finetune", "--datasets", "digits", "--no-progress", "--cluster", "inline",
            "--output", str(output), "--set", "epochs=3", "lr_milestones=[]", "backbone.pretrained.kind=none",
            "backbone.width=0.125"]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    launcher = subprocess.Popen([sys.executable, str(REPO / "benchmarks" / "run_all.py"), *argv], env=env,
                                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 120
    while not list(output.glob("runs/*/checkpoint.pt")) and time.time() < deadline:  # in training, claimed
        time.sleep(0.05)
    folder = next(output.glob("runs/*"))
    assert live_holder(folder).pid == launcher.pid
    launcher.kill()  # kill -9: no chance to release the claim
    launcher.wait()
    assert (folder / records.CLAIM).exists() and live_holder(folder) is None  # stale: its process is gone
    assert run_all.main(argv) == 0
    attempts = [json.loads(line) for line in (folder / records.ATTEMPTS).read_text().splitlines()]
    assert len(attempts) == 2 and attempts[0]["pid"] == launcher.pid and attempts[1]["from_epoch"] >= 1
    assert records.RunFolder(folder).status() is records.Status.DONE and not (folder / records.CLAIM).exists()


@pytest.mark.slow
def test_a_worker_left_training_by_a_killed_launcher_is_not_doubled(tmp_path, capsys):
    """kill -9 of run_all.py alone leaves its local worker training: a re-run skips that run."""
    output = tmp_path / "out"
    settings = ["--set", "epochs=6", "lr_milestones=[]", "backbone.pretrained.kind=none", "backbone.width=0.125"]
    grid = ["--methods", "finetune", "--datasets", "digits", "--output", str(output), "--no-progress"]
    assert run_all.main(TINY + ["--output", str(output)]) == 0  # a done run for the tables
    capsys.readouterr()
    launcher = subprocess.Popen([sys.executable, str(REPO / "benchmarks" / "run_all.py"), *grid, "--seeds", "0",
                                 "--max-parallel", "1", *settings], env={**os.environ, "OMP_NUM_THREADS": "1"},
                                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    holder = None
    try:
        deadline, folder = time.time() + 120, None
        while folder is None and time.time() < deadline:  # wait for a claimed run with a first checkpoint
            time.sleep(0.05)
            folder = next((f for f in output.glob("runs/*")
                           if (f / records.CLAIM).exists() and (f / records.CHECKPOINT).exists()), None)
        holder = live_holder(folder)
        assert holder is not None and holder.pid != launcher.pid  # the worker's claim
        launcher.kill()
        launcher.wait()
        assert run_all.main(grid + ["--seeds", "0", "--cluster", "inline"] + settings) == 0
        err = capsys.readouterr().err
        assert f"skipped finetune / digits / seed 0 ({folder.name}): claimed by pid {holder.pid}" in err
        while time.time() < deadline and records.RunFolder(folder).status() is not records.Status.DONE:  # the worker finishes the run
            time.sleep(0.2)
        assert records.RunFolder(folder).status() is records.Status.DONE and len((folder / records.ATTEMPTS).read_text().splitlines()) == 1
    finally:
        launcher.kill()
        if holder is not None and process_alive(holder.pid, holder.process_start):
            os.kill(holder.pid, 9)


# -- failures on the console and in --status ---------------------------------------------------

BROKEN_PLUGIN = '''
from baselines.finetune import Finetune
from spottune.method_contract import register_method


@register_method("broken_for_test")
class Broken(Finetune):
    def build(self, backbone, num_classes):
        raise RuntimeError("cannot build this model\\nsecond line of the message")
'''


@pytest.mark.slow
def test_failed_runs_are_named_with_their_error_line(tmp_path, capsys, monkeypatch):
    (tmp_path / "broken_plugin.py").write_text(BROKEN_PLUGIN)
    monkeypatch.syspath_prepend(str(tmp_path))
    output = tmp_path / "out"
    argv = TINY + ["--plugins", "broken_plugin", "--methods", "finetune,broken_for_test", "--output", str(output)]
    assert run_all.main(argv) == 1
    out, err = capsys.readouterr()
    assert "| finetune" in out and "No runs found" not in out  # the summary of the run that finished
    folder = next(f for f in (output / "runs").iterdir() if "broken" in (f / "config.json").read_text())
    lines = err.strip().splitlines()
    at = lines.index("1 run(s) failed:")
    assert lines[at + 1] == f"FAILED broken_for_test / digits / seed 0  {folder}"
    assert lines[at + 2] == "    RuntimeError: cannot build this model"
    assert "<run-id>" not in err
    assert run_all.main(argv + ["--status"]) == 1
    assert "FAILED" in capsys.readouterr().out
    assert run_all.main(TINY + ["--output", str(output), "--status"]) == 0  # finetune alone: done


def test_a_grid_whose_runs_all_failed_still_prints_its_summary(tmp_path, capsys, monkeypatch):
    monkeypatch.setenv(FAIL_AT_EPOCH, "1")
    assert run_all.main(TINY + ["--output", str(tmp_path), "--plugins", "tests.fail_at_epoch"]) == 1
    out, err = capsys.readouterr()
    assert "Not done: finetune/digits/seed 0 (failed)." in out and "Traceback" not in err
    assert err.strip().splitlines()[-2] == \
        "    tests.fail_at_epoch.InjectedFailure: injected failure at epoch 1 ($SPOTTUNE_TEST_FAIL_AT_EPOCH)"


def test_error_line_is_the_last_exception_of_a_traceback():
    text = ("Traceback (most recent call last):\n  File \"a.py\", line 1, in <module>\n    f()\n"
            "KeyError: 'x'\n\nThe above exception was the direct cause of the following exception:\n\n"
            "Traceback (most recent call last):\n  File \"b.py\", line 2, in g\n    ^^^^\n"
            "spottune.data.base.DatasetError: corrupt or unreadable image /d/1.jpg: bad\nexpected layout:\n  x/\n")
    assert error_line(text) == "spottune.data.base.DatasetError: corrupt or unreadable image /d/1.jpg: bad"
    assert error_line("killed\n") == "killed"


def test_status_reports_a_live_claim_and_a_torn_run(tmp_path, capsys):
    config = tiny_run()  # the grid below
    status = ["--methods", "finetune", "--datasets", "digits", "--output", str(tmp_path), "--status",
              "--set", "epochs=2", "batch_size=64", "lr_milestones=[1]", "backbone.pretrained.kind=none"]
    folder = tmp_path / "runs" / config.run_id
    with Claim(folder):
        assert run_all.main(status) == 0
        assert f"running  {config.run_id}" in capsys.readouterr().out
    assert np.isfinite(run(config, folder)["test_accuracy"])
    (folder / "metrics.json").write_text("{")
    assert run_all.main(status) == 0
    out = capsys.readouterr().out
    assert f"torn     {config.run_id}" in out and f"{folder / 'metrics.json'}: torn or not JSON" in out
