"""CPUs allotted to a process and the local launcher's workers x threads."""
from __future__ import annotations

import os

import pytest

from spottune.cpus import allotted_cpus, local_plan


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
    assert config["compute"] == {"device": "cpu", "torch_threads": torch.get_num_threads()}
