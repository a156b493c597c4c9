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

A shared machine is rarely idle, and a multi-thread process beside other work collapses
(REFERENCE.md section 9: ResNet-26 width 0.25, batch 128, one busy competitor on 2 cores: 2
threads 0.662 s per step, 1 thread 0.366 s; under load 4-6 the suite's 2-thread pretraining
went from 0.34 to 1.7-6.2 s per step). So :func:`process_threads`: a process that would use
more than one thread (a lone worker, ``--cluster inline``) uses at most the CPUs actually free
when it starts (:func:`free_cpus`: the idle time of the allotted CPUs over
:data:`FREE_SAMPLE_S`, from ``/proc/stat``), at least one; ``$OMP_NUM_THREADS`` still wins.

A suite pretraining on the CPU runs :data:`PRETRAINING_THREADS` threads instead, whatever the
machine's size or load (:func:`pretraining_threads`): its weights depend on the thread count
(sums reduce in another order), and every run of a grid starts from them, so a count taken from
the CPUs free at launch gave the same command on the same machine another source network, and
every cell another number, depending on what else ran then.

OpenMP's wait policy is left to the environment. ``OMP_WAIT_POLICY=PASSIVE`` (threads sleep
at a barrier instead of spinning) protects a multi-thread process from other work that starts
*after* it chose its threads, but costs every quiet step: measured on a 2-core machine, the
mini preset's pretraining (one epoch, 2 threads) took 113 s with it and 55 s without; the
training step of ``benchmarks/test_bench_contention.py`` 0.246 s against 0.170 s
(benchmarks/RESULTS.md). Set it yourself when other work may start during a long
multi-thread run; the suite's own processes never compete with each other for threads.
``benchmarks/test_bench_contention.py`` measures a training step's slowdown beside one busy
process with these rules and without them.
"""
from __future__ import annotations

import os
import platform
import time
from collections.abc import Iterator
from contextlib import contextmanager

THREADS_ENV = "OMP_NUM_THREADS"
FREE_SAMPLE_S = 0.25  # how long free_cpus watches the CPUs


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


def _idle_and_total(cpus: set[int]) -> tuple[float, float]:
    """Idle (idle + iowait) and total jiffies of the CPUs ``cpus`` so far, from ``/proc/stat``."""
    idle = total = 0.0
    with open("/proc/stat") as f:
        for line in f:
            name, *fields = line.split()
            if name.startswith("cpu") and name[3:].isdigit() and int(name[3:]) in cpus:
                ticks = [float(v) for v in fields[:8]]  # user nice system idle iowait irq softirq steal
                idle += ticks[3] + ticks[4]
                total += sum(ticks)
    return idle, total


def free_cpus(sample_s: float = FREE_SAMPLE_S) -> int:
    """How many of the allotted CPUs other work leaves free now: their idle time over
    ``sample_s`` seconds, rounded, at least 1 (the allotted CPUs where ``/proc/stat`` or the
    affinity mask is unavailable)."""
    allotted = allotted_cpus()
    try:
        cpus = set(os.sched_getaffinity(0))
        idle_before, total_before = _idle_and_total(cpus)
        time.sleep(sample_s)
        idle_after, total_after = _idle_and_total(cpus)
    except (AttributeError, OSError, ValueError):
        return allotted
    if total_after <= total_before:
        return allotted
    idle_cpus = len(cpus) * (idle_after - idle_before) / (total_after - total_before)
    return max(1, min(allotted, round(idle_cpus)))


PRETRAINING_THREADS = 1
"""Torch threads of a suite pretraining on the CPU unless ``$OMP_NUM_THREADS`` is set. The mini
preset's source (one epoch) pretrained in an empty cache on the 2-core development machine (Intel
Xeon, quiet), twice with each count: 1 thread 55.7 s, source accuracy 92.07 both times; 2 threads
34.6 s, 91.87 both times: other weights (benchmarks/RESULTS.md, "Pretraining threads"). One
thread is also what each of the local launcher's workers gets when there are more runs than CPUs."""


def pretraining_threads() -> int:
    """The torch threads a suite pretraining on the CPU runs: ``$OMP_NUM_THREADS`` when set,
    else :data:`PRETRAINING_THREADS` (see the module docstring)."""
    return threads_from_env() or PRETRAINING_THREADS


@contextmanager
def torch_threads(threads: int) -> Iterator[None]:
    """Run the block with ``threads`` torch threads, then restore the caller's count."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        yield
    finally:
        torch.set_num_threads(before)


def process_threads(planned: int, free: int | None = None) -> int:
    """Torch threads for a process of the suite that would use ``planned``: ``$OMP_NUM_THREADS``
    when set, else ``planned`` capped by the CPUs ``free`` (default: :func:`free_cpus`, measured
    only when ``planned`` > 1)."""
    fixed = threads_from_env()
    if fixed:
        return fixed
    return planned if planned <= 1 else max(1, min(planned, free if free is not None else free_cpus()))


def worker_plan(runs: int, max_parallel: int | None = None, free: int | None = None) -> tuple[int, int]:
    """What the local launcher starts for ``runs`` runs now: :func:`local_plan`'s workers, their
    threads capped by :func:`process_threads`."""
    workers, threads = local_plan(runs, max_parallel)
    return workers, process_threads(threads, free)
