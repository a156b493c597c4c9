"""pytest-benchmark suites of the suite: run explicitly (``pytest benchmarks/``), never by the
test suite (whose ``testpaths`` is ``tests``).

Threads: ``SPOTTUNE_BENCH_THREADS`` (default 1) intra-op threads for every benchmark, set here
and recorded in the JSON's ``machine_info``, with the load averages (1 / 5 / 15 min) at the
start and at the end of the session. The memory format of the throughput suite:
``test_bench_throughput.py``.
One thread by default: on a shared machine, one thread's CPU time is the measurement least
disturbed by other processes (``test_bench_throughput.py``).

OpenMP's wait policy is read once, when torch loads, from ``$OMP_WAIT_POLICY`` (the suite
sets none: :mod:`spottune.training.cpus`); it is recorded. With ``SPOTTUNE_BENCH_LEGACY_THREADS=1``
``test_bench_contention.py`` gives its step every allotted CPU: the suite before issue 23.
"""
from __future__ import annotations

import os
from typing import Any

import pytest

LEGACY_THREADS = os.environ.get("SPOTTUNE_BENCH_LEGACY_THREADS", "0") == "1"
WAIT_POLICY = os.environ.get("OMP_WAIT_POLICY")  # what OpenMP reads when torch loads (None: its default)
import torch  # noqa: E402

THREADS = int(os.environ.get("SPOTTUNE_BENCH_THREADS", "1"))
LOAD_AT_START = os.getloadavg()


def pytest_configure(config: pytest.Config) -> None:
    torch.set_num_threads(THREADS)


def pytest_benchmark_update_machine_info(config: pytest.Config, machine_info: dict[str, Any]) -> None:
    machine_info.update({"torch": torch.__version__, "torch_threads": torch.get_num_threads(),
                         "legacy_threads": LEGACY_THREADS, "omp_wait_policy": WAIT_POLICY,
                         "cpu_count": os.cpu_count(), "load_average_start": LOAD_AT_START,
                         "load_average_end": os.getloadavg()})


@pytest.fixture
def thread_rules() -> dict[str, Any]:
    """``{legacy, wait_policy}``: whether the suite's old thread rules are benchmarked, and the
    OpenMP wait policy torch loaded with (None: OpenMP's default)."""
    return {"legacy": LEGACY_THREADS, "wait_policy": WAIT_POLICY}
