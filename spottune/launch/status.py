"""Where the runs of a grid stand: from their folders and, for SLURM runs, the queue.

``done`` (the ``done`` marker beside a valid ``metrics.json``), ``running`` (a live local claim,
or its job runs), ``pending`` (its job is queued), ``failed`` (``error.txt``, or its job left the
queue without finishing) or ``todo`` (never launched, interrupted, or ``done`` beside a torn
``metrics.json``: it resumes when launched). A failed run is summed up by the exception line of
its ``error.txt`` (:func:`error_line`).
"""
from __future__ import annotations

import subprocess
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from spottune import records
from spottune.grid import run_dir, run_status
from spottune.launch.claim import live_holder

SUBMITTED = "submitted.json"
# squeue keeps finished jobs for MinJobAge seconds: these states are not in flight
FINISHED_STATES = {"COMPLETED", "CANCELLED", "FAILED", "TIMEOUT", "NODE_FAIL", "OUT_OF_MEMORY",
                   "BOOT_FAIL", "DEADLINE", "PREEMPTED", "SPECIAL_EXIT", "REVOKED"}


def slurm_queue() -> dict[str, str]:
    """Job id (``123`` or ``123_4`` for array tasks) -> state, for every job in flight."""
    cmd = ["squeue", "--noheader", "--array", "--format=%i|%T"]
    try:
        out = subprocess.run(cmd, capture_output=True, text=True, timeout=120, check=True).stdout
    except (OSError, subprocess.SubprocessError) as err:
        detail = getattr(err, "stderr", None) or err
        raise RuntimeError(f"cannot read the SLURM queue ({' '.join(cmd)}: {str(detail).strip()}); is SLURM_CONF "
                           f"set and slurmctld up? Without the queue, runs in flight are unknown.") from err
    queue = {}
    for line in out.splitlines():
        job_id, _, state = line.strip().partition("|")
        if job_id and state not in FINISHED_STATES:
            queue[job_id] = state
    return queue


def read_submission(folder: Path) -> dict[str, Any] | None:
    """The run's ``submitted.json`` (its last SLURM job), if any."""
    path = Path(folder) / SUBMITTED
    return records.read_json(path) if path.exists() else None


def _tail(path: Path | str | None, lines: int = 10) -> str:
    if not path or not Path(path).exists():
        return ""
    return "\n".join(Path(path).read_text(errors="replace").rstrip().splitlines()[-lines:])


@dataclass
class RunState:
    """Where one run of the grid stands: ``done``, ``running``, ``pending`` (queued),
    ``failed`` (error.txt, or its job left the queue without finishing) or ``todo``
    (never submitted, or interrupted: resumes when launched)."""

    config: dict[str, Any]
    status: str
    job_id: str | None = None
    log: str | None = None
    error: str = ""  # last lines of error.txt, or of the job's log when there is none
    note: str = ""

    @property
    def label(self) -> str:
        c = self.config
        return f"{c['run_id']}  {c['method']} / {c['dataset']} / seed {c['seed']}"


def run_state(output: Path, config: dict[str, Any], queue: dict[str, str]) -> RunState:
    """The state of one run from its folder and the queue (read the queue *before* the folder:
    a job leaves the queue only after writing ``done`` or ``error.txt``)."""
    folder = run_dir(output, config)
    submission = read_submission(folder) or {}
    job_id, log = submission.get("job_id"), submission.get("stderr")
    status = run_status(output, config)
    if status == "done":
        return RunState(config, "done", job_id, log)
    if job_id in queue:
        running = queue[job_id] in ("RUNNING", "COMPLETING")
        return RunState(config, "running" if running else "pending", job_id, log)
    holder = live_holder(folder)
    if holder is not None:
        return RunState(config, "running", note=f"claimed by {holder}")
    if status == "failed":
        return RunState(config, "failed", job_id, log, _tail(folder / records.ERROR))
    if job_id:
        return RunState(config, "failed", job_id, log, _tail(log), note="its job left the queue without writing "
                        "done or error.txt (cancelled, out of memory, node failure?); the end of its log:")
    if status == "torn":
        return RunState(config, "todo", note=f"{records.done_problem(folder)}: not done, evaluated again when launched")
    return RunState(config, "todo")


def error_line(traceback_text: str) -> str:
    """The exception line of a traceback (``Type: first line of its message``; of the last
    exception when they are chained), else the text's last line."""
    lines = traceback_text.rstrip().splitlines()
    starts = [i for i, line in enumerate(lines) if line.startswith("Traceback (most recent call last)")]
    after = lines[starts[-1] + 1:] if starts else []
    exception = [line for line in after if line.strip() and not line.startswith(" ")]
    return exception[0] if exception else (lines[-1] if lines else "")


def failure_lines(output: Path, config: dict[str, Any]) -> list[str]:
    """A failed run on the console: method, dataset, seed and folder, then its error line."""
    folder = run_dir(output, config)
    error = folder / records.ERROR
    reason = error_line(error.read_text(errors="replace")) if error.exists() else \
        "no error.txt: its process died (see the launcher's log)"
    return [f"FAILED {config['method']} / {config['dataset']} / seed {config['seed']}  {folder}",
            f"    {reason}"]


def grid_states(output: Path, configs: list[dict[str, Any]]) -> list[RunState]:
    """Every run's state; asks the queue only when a run submitted to SLURM is not done."""
    folders = [run_dir(output, c) for c in configs]
    unfinished = any((f / SUBMITTED).exists() and not records.is_done(f) for f in folders)
    queue = slurm_queue() if unfinished else {}
    return [run_state(output, c, queue) for c in configs]


def count_states(states: list[RunState]) -> dict[str, int]:
    names = ("done", "running", "pending", "failed", "todo")
    return {name: sum(s.status == name for s in states) for name in names}


def format_status(output: Path, states: list[RunState], error_lines: int = 5) -> str:
    """The ``--status`` report: counts, then each failed run with its log and last error lines."""
    counts = count_states(states)
    lines = [f"{len(states)} runs in {output}: " + ", ".join(f"{n} {name}" for name, n in counts.items())]
    for s in states:
        if s.status in ("running", "pending"):
            lines.append(f"  {s.status:8s} {s.label}  ({f'job {s.job_id}' if s.job_id else s.note})")
        elif s.status == "todo" and s.note:
            lines.append(f"  todo     {s.label}  ({s.note})")
    for s in states:
        if s.status == "failed":
            lines.append(f"  FAILED   {s.label}  (job {s.job_id or '-'})")
            if (run_dir(output, s.config) / records.ERROR).exists():
                lines.append(f"    error: {run_dir(output, s.config) / records.ERROR}")
            if s.log:
                lines.append(f"    log:   {s.log}")
            if s.note:
                lines.append(f"    {s.note}")
            lines.extend("    | " + line for line in s.error.splitlines()[-error_lines:])
    return "\n".join(lines)
