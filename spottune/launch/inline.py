"""Run a grid's pending runs one after the other in this process (``--cluster inline``).

Each run is claimed before it trains (by :func:`spottune.engine.run`, :mod:`spottune.claim`):
a run that another live process is training is skipped and reported, so two launchers on one
output never train the same run at once.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any

from spottune.engine import run
from spottune.claim import RunClaimed
from spottune.records import RunFolder, RunSpec, Status


def without_progress(runtime: dict[str, Any]) -> dict[str, Any]:
    """The runtime with progress bars off, for runs whose output goes to a log file (the bars
    would fill it)."""
    return {**runtime, "progress": False}


def pending_runs(output: Path, specs: list[RunSpec]) -> list[RunSpec]:
    """Runs that are not done (failed, interrupted and torn ones are retried / resumed)."""
    return [spec for spec in specs if RunFolder.of(output, spec).status() is not Status.DONE]


def launch_inline(output: Path, specs: list[RunSpec], runtime: dict[str, Any],
                  keep_going: bool = True) -> dict[str, Status]:
    """Run every pending run in this process, one after the other; run_id -> outcome
    (``done``, ``failed`` or ``running``: another process is training it, its claim says).

    A failing run is recorded (``error.txt``) and, with ``keep_going``, the next one starts.
    """
    outcomes = {}
    todo = pending_runs(output, specs)
    for i, spec in enumerate(todo, 1):
        label = f"[{i}/{len(todo)}] {spec.label}"
        print(f"{label}  ({spec.run_id})", flush=True)
        folder = RunFolder.of(output, spec)
        try:
            run(spec, folder.path, runtime)  # (if another launcher just finished it, run() returns)
            outcomes[spec.run_id] = Status.DONE
        except RunClaimed as claimed:
            outcomes[spec.run_id] = Status.RUNNING
            print(f"{label} skipped: claimed by {claimed.holder}", flush=True)
        except Exception as err:  # noqa: BLE001 - recorded in error.txt, reported, grid goes on
            outcomes[spec.run_id] = Status.FAILED
            print(f"{label} FAILED: {type(err).__name__}: {err}", flush=True)
            if not keep_going:
                raise
    return outcomes
