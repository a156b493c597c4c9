"""pytest-benchmark suites of the suite: run explicitly (``pytest benchmarks/``), never by the
test suite (whose ``testpaths`` is ``tests``).

Threads: ``SPOTTUNE_BENCH_THREADS`` (default 1) intra-op threads for every benchmark, set here
and recorded in the JSON's ``machine_info``, with the load averages (1 / 5 / 15 min) at the
start and at the end of the session. The memory format of the throughput suite:
``test_bench_throughput.py``.
One thread by default: on a shared machine, one thread's CPU time is the measurement least
disturbed by other processes (``test_bench_throughput.py``).
"""
from __future__ import annotations

import os
from typing import Any

import pytest
import torch

THREADS = int(os.environ.get("SPOTTUNE_BENCH_THREADS", "1"))
LOAD_AT_START = os.getloadavg()


def pytest_configure(config: pytest.Config) -> None:
    torch.set_num_threads(THREADS)


def pytest_benchmark_update_machine_info(config: pytest.Config, machine_info: dict[str, Any]) -> None:
    machine_info.update({"torch": torch.__version__, "torch_threads": torch.get_num_threads(),
                         "cpu_count": os.cpu_count(), "load_average_start": LOAD_AT_START,
                         "load_average_end": os.getloadavg()})
