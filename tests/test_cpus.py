"""CPUs allotted to a process and the local launcher's workers x threads."""
from __future__ import annotations

import os

import pytest

from spottune.training.cpus import allotted_cpus, cpu_model, local_plan


@pytest.fixture(autouse=True)
def _no_slurm_or_threads(monkeypatch):
    monkeypatch.delenv("SLURM_CPUS_PER_TASK", raising=False)
    monkeypatch.delenv("OMP_NUM_THREADS", raising=False)


def test_allotted_cpus_follow_slurm_then_affinity(monkeypatch):
    monkeypatch.setattr(os, "sched_getaffinity", lambda pid: {0, 3, 5})
    assert allotted_cpus() == 3  # taskset / cgroups, not the machine's count
    monkeypatch.setenv("SLURM_CPUS_PER_TASK", "6")
    assert allotted_cpus() == 6
    monkeypatch.setenv("SLURM_CPUS_PER_TASK", "x")
    assert allotted_cpus() == 3


def test_local_plan_one_single_thread_worker_per_cpu(monkeypatch):
    assert local_plan(runs=50, cpus=2) == (2, 1)
    assert local_plan(runs=1, cpus=8) == (1, 8)  # one run: all CPUs as threads
    assert local_plan(runs=50, max_parallel=1, cpus=2) == (1, 2)
    assert local_plan(runs=50, max_parallel=16, cpus=4) == (4, 1)  # never more workers than CPUs
    monkeypatch.setenv("OMP_NUM_THREADS", "2")
    assert local_plan(runs=50, cpus=8) == (4, 2)
    assert local_plan(runs=50, max_parallel=1, cpus=8) == (1, 2)


def test_a_run_records_its_thread_count(tmp_path):
    import json

    import torch

    from spottune.engine import run
    from tests.helpers import tiny_run

    run(tiny_run(epochs=1, lr_milestones=[]), tmp_path / "run")
    config = json.loads((tmp_path / "run" / "config.json").read_text())
    assert config["compute"] == {"device": "cpu", "torch_threads": torch.get_num_threads(), "cpu": cpu_model()}


def test_a_multi_thread_process_takes_at_most_the_cpus_other_work_leaves_free(monkeypatch):
    """Issue 23: the suite's pretraining ran 2 threads on 2 cores beside other work (6.17 s per step
    against 0.34 quiet)."""
    from spottune.training import cpus

    monkeypatch.setattr(os, "sched_getaffinity", lambda pid: {0, 1})
    ticks = iter([(100.0, 1000.0), (150.0, 1100.0)])  # (idle, total) jiffies of CPUs 0-1: half idle
    monkeypatch.setattr(cpus, "_idle_and_total", lambda cpus_: next(ticks))
    monkeypatch.setattr(cpus.time, "sleep", lambda s: None)
    assert cpus.free_cpus() == 1  # one of the two CPUs is busy
    assert cpus.process_threads(2, free=1) == 1 and cpus.process_threads(2, free=2) == 2
    assert cpus.process_threads(2, free=0) == 1  # never no thread
    assert cpus.process_threads(1) == 1  # a single thread: nothing measured
    assert cpus.worker_plan(runs=1, free=1) == (1, 1) and cpus.worker_plan(runs=50, free=0) == (2, 1)
    monkeypatch.setenv("OMP_NUM_THREADS", "2")
    assert cpus.process_threads(2, free=1) == 2  # the user's choice wins


def test_free_cpus_reads_this_machines_counters():
    from spottune.training.cpus import free_cpus

    assert 1 <= free_cpus(sample_s=0.05) <= allotted_cpus()


def test_import_spottune_leaves_the_openmp_wait_policy_to_the_user():
    """``OMP_WAIT_POLICY=PASSIVE`` halved the quiet pretraining's speed when the suite set it on
    import (spottune.training.cpus): the policy is the environment's, whatever it is."""
    import subprocess
    import sys

    probe = "import os, spottune; print(os.environ.get('OMP_WAIT_POLICY', 'unset'))"
    env = {k: v for k, v in os.environ.items() if k != "OMP_WAIT_POLICY"}
    assert subprocess.run([sys.executable, "-c", probe], env=env, capture_output=True, text=True,
                          check=True).stdout.strip() == "unset"
    assert subprocess.run([sys.executable, "-c", probe], env={**env, "OMP_WAIT_POLICY": "PASSIVE"},
                          capture_output=True, text=True, check=True).stdout.strip() == "PASSIVE"
