"""A training step's slowdown beside busy processes (issue 23: no collapse under load).

The step is the suite's pretraining step on the mini preset's network (ResNet-26 width 0.25,
32 px, batch 128, SGD: REFERENCE.md section 9), timed quiet and beside ``N`` competitors (each a
process spinning one core, started before the threads are chosen). Threads follow the suite's
rules as when ``$OMP_NUM_THREADS`` is unset, or the old ones with
``SPOTTUNE_BENCH_LEGACY_THREADS=1`` (benchmarks/conftest.py):

* now (:mod:`spottune.training.cpus`): ``process_threads(allotted CPUs)``, capped by the CPUs free once
  the competitors run; OpenMP's wait policy as the environment sets it (recorded);
* legacy (the suite before issue 23): every allotted CPU as a thread.

Each loaded case records ``slowdown`` (its median over the quiet case's, same session) and
``slowdown_per_core_lost`` (that over the cores the competitors take); the target is at most 2.
Run it alone, on an otherwise quiet machine, both ways::

    pytest benchmarks/test_bench_contention.py --benchmark-json=contention_now.json
    SPOTTUNE_BENCH_LEGACY_THREADS=1 pytest benchmarks/test_bench_contention.py \\
        --benchmark-json=contention_legacy.json

``SPOTTUNE_BENCH_ROUNDS`` timed rounds (default 10) after 2 warm-up rounds.
"""
from __future__ import annotations

import os
import statistics
import subprocess
import sys
import time
from collections.abc import Iterator
from typing import Any

import pytest
import torch

from spottune.training.cpus import allotted_cpus, process_threads
from spottune.estimates.workload import build_workload

ROUNDS = int(os.environ.get("SPOTTUNE_BENCH_ROUNDS", "10"))
SPIN = "while True: pass"
QUIET: dict[str, float] = {}  # the quiet case's median step (s), for the loaded cases' slowdown


@pytest.fixture
def competitors(request: pytest.FixtureRequest) -> Iterator[int]:
    """``request.param`` processes spinning a core each, for the test's duration."""
    spinning = [subprocess.Popen([sys.executable, "-c", SPIN]) for _ in range(request.param)]
    time.sleep(0.5)  # running before the threads are chosen
    yield request.param
    for process in spinning:
        process.kill()
        process.wait()


@pytest.mark.parametrize("competitors", [0, 1], indirect=True, ids=["quiet", "1-busy"])
def test_training_step_beside_busy_processes(benchmark: Any, competitors: int, thread_rules: dict[str, Any],
                                            monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("OMP_NUM_THREADS", raising=False)  # the suite's own choice, not the user's
    planned = allotted_cpus()
    threads = planned if thread_rules["legacy"] else process_threads(planned)
    before = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        workload = build_workload("finetune", "resnet26", 32, 128, width=0.25, hparams={"lr": 0.1})
        benchmark.group = "training step beside busy processes"
        benchmark.pedantic(workload.train_step, rounds=ROUNDS, iterations=1, warmup_rounds=2)
    finally:
        torch.set_num_threads(before)
    median = statistics.median(benchmark.stats.stats.data)
    info = {"competitors": competitors, "threads": threads, "allotted_cpus": planned,
            "rules": "legacy" if thread_rules["legacy"] else "now", "wait_policy": thread_rules["wait_policy"],
            "median_s": median}
    if competitors == 0:
        QUIET["median_s"] = median
    elif "median_s" in QUIET:
        slowdown = median / QUIET["median_s"]
        info.update(slowdown=slowdown, slowdown_per_core_lost=slowdown / min(competitors, planned))
    benchmark.extra_info.update(info)
