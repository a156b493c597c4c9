"""``--cluster inline``: a grid's pending runs one after the other in this process.

Each run is claimed before it trains (by :func:`spottune.engine.run`, :mod:`spottune.storage.claim`):
a run that another live process is training is skipped and reported, so two launchers on one
output never train the same run at once. The suite pretrainings come first among the runs
(:mod:`spottune.launch.pretraining`); a run whose pretraining failed here is not started.
:func:`run_here` (one run or pretraining in this process, its outcome) is what a backend of your
own that trains runs in its own process calls.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from spottune.storage.claim import RunClaimed
from spottune.training.cpus import allotted_cpus, process_threads
from spottune.engine import run
from spottune.launch.backend import Backend, register_backend
from spottune.launch.pretraining import blocked_by
from spottune.launch.status import describe_run, settled
from spottune.storage.records import PRETRAINING, RunFolder, RunSpec, Status


def without_progress(runtime: dict[str, Any]) -> dict[str, Any]:
    """The runtime with progress bars off, for runs whose output goes to a log file (the bars
    would fill it)."""
    return {**runtime, "progress": False}


def pending_runs(output: Path, specs: list[RunSpec]) -> list[RunSpec]:
    """Runs that are not done, pretrainings not in their cache (failed, interrupted and torn ones
    are retried / resumed)."""
    return [spec for spec in specs if not settled(output, spec)]


def run_here(output: Path, spec: RunSpec, runtime: dict[str, Any], label: str | None = None) -> Status:
    """Train ``spec`` in this process (:func:`spottune.engine.run`, which claims it); its outcome:
    ``done``, ``failed`` (recorded in ``error.txt``, said on the console) or ``running``
    (another process holds its claim). ``label`` starts the console lines (default: the run's)."""
    label = label or describe_run(spec)
    try:
        run(spec, RunFolder.of(output, spec).path, runtime)  # (if another launcher just finished it, run() returns)
        return Status.DONE
    except RunClaimed as claimed:
        print(f"{label} skipped: claimed by {claimed.holder}", flush=True)
        return Status.RUNNING
    except Exception as err:  # noqa: BLE001 - recorded in error.txt, reported, grid goes on
        print(f"{label} FAILED: {type(err).__name__}: {err}", flush=True)
        return Status.FAILED


def launch_inline(output: Path, specs: list[RunSpec], runtime: dict[str, Any]) -> dict[str, Status]:
    """Run every pending run in this process, one after the other (a failing one is recorded
    and the next starts; a run whose pretraining failed here is ``failed`` without starting);
    run_id -> outcome (:func:`run_here`)."""
    outcomes: dict[str, Status] = {}
    todo = pending_runs(output, specs)
    for i, spec in enumerate(todo, 1):
        label = f"[{i}/{len(todo)}] {describe_run(spec)}"
        failed = {s.run_id for s in todo[:i] if s.kind == PRETRAINING and outcomes.get(s.run_id) is Status.FAILED}
        if blocked_by(failed, [spec]):
            print(f"{label} not started: its pretraining failed", flush=True)
            outcomes[spec.run_id] = Status.FAILED
            continue
        print(label if spec.kind == PRETRAINING else f"{label}  ({spec.run_id})", flush=True)
        outcomes[spec.run_id] = run_here(output, spec, runtime, label)
    return outcomes


@register_backend("inline")
class Inline(Backend):
    """in this process, one after the other, with per-epoch progress bars (debuggers welcome)"""

    def plan_here(self, runs: int, free: int) -> tuple[int, int] | None:
        return 1, process_threads(allotted_cpus(), free)

    def submit(self, output: Path, runs: list[RunSpec], runtime: dict[str, Any]) -> dict[str, Status]:
        torch.set_num_threads(process_threads(allotted_cpus()))  # never more than the CPUs free now
        return launch_inline(output, runs, runtime)
