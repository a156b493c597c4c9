"""The CPUs this process may use, and how a launcher on this machine splits them.

:func:`allotted_cpus` is what the process was given, not what the machine has:
``$SLURM_CPUS_PER_TASK`` inside a SLURM job, else the CPU affinity mask
(``os.sched_getaffinity``: ``taskset``, cgroup cpusets, containers), else ``os.cpu_count()``.

:func:`local_plan` splits them into worker processes and torch threads per worker for the
local launcher. On CPUs, several single-thread workers beat one multi-thread worker for the
suite's small networks, and thread oversubscription is catastrophic (more threads than CPUs:
a 3-epoch run 20x slower), so the default is one single-thread worker per allotted CPU, never
more workers than runs. Measured on the 2-core development machine, mini grid of
benchmarks/RESULTS.md ("Workers and threads"): see there for the numbers and the command.
``$OMP_NUM_THREADS``, when set, is the threads per worker and the workers fill the rest.
"""
from __future__ import annotations

import os
import platform

THREADS_ENV = "OMP_NUM_THREADS"


def allotted_cpus() -> int:
    """CPUs this process may run on (see the module docstring), at least 1."""
    slurm = os.environ.get("SLURM_CPUS_PER_TASK")
    if slurm and slurm.isdigit() and int(slurm) > 0:
        return int(slurm)
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except (AttributeError, OSError):  # no affinity on this platform
        return max(1, os.cpu_count() or 1)


def threads_from_env() -> int | None:
    """``$OMP_NUM_THREADS`` as a positive integer, or None when unset or not a positive integer."""
    value = os.environ.get(THREADS_ENV, "")
    return int(value) if value.isdigit() and int(value) > 0 else None


def local_plan(runs: int, max_parallel: int | None = None, cpus: int | None = None) -> tuple[int, int]:
    """``(workers, threads per worker)`` for ``runs`` runs on ``cpus`` CPUs (default: allotted).

    ``max_parallel`` caps the workers; the threads then share the CPUs among them
    (``cpus // workers``), unless ``$OMP_NUM_THREADS`` fixes them.
    """
    cpus = cpus or allotted_cpus()
    fixed = threads_from_env()
    workers = max_parallel or max(1, cpus // (fixed or 1))
    workers = max(1, min(workers, runs, cpus))
    return workers, fixed or max(1, cpus // workers)


def cpu_model() -> str:
    """The CPU's model name (``/proc/cpuinfo``, else :func:`platform.processor`): the numbers of a
    CPU run are reproducible on the same CPU type and thread count, so every run records it."""
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine() or "unknown"
