"""Run a grid's pending runs one after the other in this process (``--cluster inline``)."""
from __future__ import annotations

from pathlib import Path
from typing import Any

from spottune.engine import run
from spottune.grid import run_dir, run_status


def without_progress(config: dict[str, Any]) -> dict[str, Any]:
    """The config with progress bars off, for runs whose output goes to a log file (the bars
    would fill it); ``runtime`` is not part of the run id."""
    return {**config, "runtime": {**config.get("runtime", {}), "progress": False}}


def pending_runs(output: Path, configs: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Runs without a ``done`` marker (failed and interrupted ones are retried / resumed)."""
    return [c for c in configs if run_status(output, c) != "done"]


def launch_inline(output: Path, configs: list[dict[str, Any]], keep_going: bool = True) -> dict[str, str]:
    """Run every pending config in this process, one after the other; run_id -> outcome.

    A failing run is recorded (``error.txt``) and, with ``keep_going``, the next one starts.
    """
    outcomes = {}
    todo = pending_runs(output, configs)
    for i, config in enumerate(todo, 1):
        label = f"[{i}/{len(todo)}] {config['method']} / {config['dataset']} / seed {config['seed']}"
        print(f"{label}  ({config['run_id']})", flush=True)
        try:
            run(config, run_dir(output, config))
            outcomes[config["run_id"]] = "done"
        except Exception as err:  # noqa: BLE001 - recorded in error.txt, reported, grid goes on
            outcomes[config["run_id"]] = "failed"
            print(f"{label} FAILED: {type(err).__name__}: {err}", flush=True)
            if not keep_going:
                raise
    return outcomes
