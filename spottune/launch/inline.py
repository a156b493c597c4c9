"""Run a grid's pending runs one after the other in this process (``--cluster inline``).

Each run is claimed before it trains (:mod:`spottune.launch.claim`): a run that another live
process is training is skipped and reported, so two launchers on one output never train the
same run at once.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any

from spottune.engine import run
from spottune.grid import run_dir, run_status
from spottune.launch.claim import Claim, RunClaimed, live_holder


def without_progress(config: dict[str, Any]) -> dict[str, Any]:
    """The config with progress bars off, for runs whose output goes to a log file (the bars
    would fill it); ``runtime`` is not part of the run id."""
    return {**config, "runtime": {**config.get("runtime", {}), "progress": False}}


def pending_runs(output: Path, configs: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Runs that are not done (failed, interrupted and torn ones are retried / resumed)."""
    return [c for c in configs if run_status(output, c) != "done"]


def run_label(config: dict[str, Any]) -> str:
    return f"{config['method']} / {config['dataset']} / seed {config['seed']}"


def skip_claimed(output: Path, configs: list[dict[str, Any]]) -> tuple[list[dict[str, Any]], list[str]]:
    """``configs`` without the runs another live process holds, and one line per skipped run."""
    free, skipped = [], []
    for config in configs:
        holder = live_holder(run_dir(output, config))
        if holder is None:
            free.append(config)
        else:
            skipped.append(f"skipped {run_label(config)} ({config['run_id']}): claimed by {holder}")
    return free, skipped


def launch_inline(output: Path, configs: list[dict[str, Any]], keep_going: bool = True) -> dict[str, str]:
    """Run every pending config in this process, one after the other; run_id -> outcome
    (``done``, ``failed`` or ``claimed``: another process is training it).

    A failing run is recorded (``error.txt``) and, with ``keep_going``, the next one starts.
    """
    outcomes = {}
    todo = pending_runs(output, configs)
    for i, config in enumerate(todo, 1):
        label = f"[{i}/{len(todo)}] {run_label(config)}"
        print(f"{label}  ({config['run_id']})", flush=True)
        try:
            with Claim(run_dir(output, config)):  # (if another launcher just finished it, run() returns)
                run(config, run_dir(output, config))
            outcomes[config["run_id"]] = "done"
        except RunClaimed as claimed:
            outcomes[config["run_id"]] = "claimed"
            print(f"{label} skipped: claimed by {claimed.holder}", flush=True)
        except Exception as err:  # noqa: BLE001 - recorded in error.txt, reported, grid goes on
            outcomes[config["run_id"]] = "failed"
            print(f"{label} FAILED: {type(err).__name__}: {err}", flush=True)
            if not keep_going:
                raise
    return outcomes
