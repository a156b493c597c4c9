"""Where the runs of a grid stand: from their folders and, for SLURM runs, the queue.

The statuses are :class:`spottune.records.Status`: what the folder says (``done``, ``torn``,
``failed``, ``started``, ``new``), made ``running`` by a live local claim or a running job,
``queued`` by a queued job, and ``failed`` when its job left the queue without finishing. A
failed run is summed up by the exception line of its ``error.txt`` (:func:`error_line`). The
grid's suite pretrainings have states of their own (:mod:`spottune.launch.pretraining`); a run
whose job never started because its pretraining failed says so.
"""
from __future__ import annotations

import subprocess
from dataclasses import dataclass
from pathlib import Path

from spottune.claim import live_holder
from spottune.launch.pretraining import PretrainingState, grid_pretrainings, pretraining_of, pretraining_state, read_record
from spottune.records import ERROR, RunFolder, RunSpec, Status
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


def _tail(path: Path | str | None, lines: int = 10) -> str:
    if not path or not Path(path).exists():
        return ""
    return "\n".join(Path(path).read_text(errors="replace").rstrip().splitlines()[-lines:])


@dataclass
class RunState:
    """Where one run of the grid stands (its :class:`~spottune.records.Status`), with its SLURM
    job and log when it has one, the last lines of its error, and a note saying why."""

    spec: RunSpec
    folder: RunFolder
    status: Status
    job_id: str | None = None
    log: str | None = None
    error: str = ""  # last lines of error.txt, or of the job's log when there is none
    note: str = ""

    @property
    def label(self) -> str:
        return f"{self.spec.run_id}  {self.spec.label}"


def run_state(output: Path, spec: RunSpec, queue: dict[str, str],
              failed_pretrainings: frozenset[str] = frozenset()) -> RunState:
    """The state of one run from its folder and the queue (read the queue *before* the folder:
    a job leaves the queue only after writing ``done`` or ``error.txt``); ``failed_pretrainings``:
    the keys of the grid's pretrainings that failed."""
    folder = RunFolder.of(output, spec)
    submission = folder.read_submission() or {}
    job_id, log = submission.get("job_id"), submission.get("stderr")
    status = folder.status()
    if status is Status.DONE:
        return RunState(spec, folder, status, job_id, log)
    if job_id in queue:
        running = queue[job_id] in ("RUNNING", "COMPLETING")
        return RunState(spec, folder, Status.RUNNING if running else Status.QUEUED, job_id, log)
    holder = live_holder(folder.path)
    if holder is not None:
        return RunState(spec, folder, Status.RUNNING, note=f"claimed by {holder}")
    if status is Status.FAILED:
        return RunState(spec, folder, status, job_id, log, _tail(folder / ERROR))
    if status is Status.TORN:  # finished (its job too), then a record was damaged
        return RunState(spec, folder, status, job_id, log,
                        note=f"{folder.done_problem()}: not done, evaluated again when launched")
    if job_id and pretraining_of(spec) in failed_pretrainings:
        return RunState(spec, folder, Status.FAILED, job_id, log, note=f"never started: its pretraining "
                        f"{pretraining_of(spec)} failed (see the pretraining above)")
    if job_id:
        return RunState(spec, folder, Status.FAILED, job_id, log, _tail(log), note="its job left the queue without "
                        "writing done or error.txt (cancelled, out of memory, node failure?); the end of its log:")
    return RunState(spec, folder, status)


class RunWarnings:
    """The warnings the runs ``specs`` recorded when they started (``attempts.log``,
    :func:`spottune.engine.collected_warnings`), each given once by :meth:`new_lines`: how a
    launcher whose runs execute in other processes (local workers, SLURM jobs) prints them."""

    def __init__(self, output: Path, specs: list[RunSpec]) -> None:
        self.runs = [(spec, RunFolder.of(output, spec)) for spec in specs]
        self.seen = {spec.run_id: len(folder.read_attempts()) for spec, folder in self.runs}

    def new_lines(self) -> list[str]:
        """``warning: <run> (<id>): <message>`` for each warning of an attempt not seen before."""
        lines = []
        for spec, folder in self.runs:
            attempts = folder.read_attempts()
            for attempt in attempts[self.seen[spec.run_id]:]:
                messages = attempt.get("warnings")
                lines += [f"warning: {spec.label} ({spec.run_id}): {message}"
                          for message in (messages if isinstance(messages, list) else [])]
            self.seen[spec.run_id] = len(attempts)
        return lines


def error_line(traceback_text: str) -> str:
    """The exception line of a traceback (``Type: first line of its message``; of the last
    exception when they are chained), else the text's last line."""
    lines = traceback_text.rstrip().splitlines()
    starts = [i for i, line in enumerate(lines) if line.startswith("Traceback (most recent call last)")]
    after = lines[starts[-1] + 1:] if starts else []
    exception = [line for line in after if line.strip() and not line.startswith(" ")]
    return exception[0] if exception else (lines[-1] if lines else "")


def failure_lines(folder: RunFolder, spec: RunSpec) -> list[str]:
    """A failed run on the console: method, dataset, seed and folder, then its error line (or,
    for a run that never started, that its pretraining job failed)."""
    text = folder.error_text()
    if text is not None:
        reason = error_line(text)
    elif _pretraining_failed(folder.path.parent.parent, spec):
        reason = f"never started: its pretraining {pretraining_of(spec)} failed (its error is above; --status shows it)"
    else:
        reason = "no error.txt: its process died or could not write it (a full disk?): see the launcher's output"
    return [f"FAILED {spec.label}  {folder.path}", f"    {reason}"]


def _pretraining_failed(output: Path, spec: RunSpec) -> bool:
    """Whether the SLURM job pretraining the backbone of ``spec`` left the queue without
    publishing (called once the grid is no longer in flight)."""
    return any(p.status is Status.FAILED for p in pretraining_states(output, [spec], queue={}))


def grid_states(output: Path, specs: list[RunSpec]) -> list[RunState]:
    """Every run's state (:func:`states_of`)."""
    return states_of(output, specs)[0]


def states_of(output: Path, specs: list[RunSpec]) -> tuple[list[RunState], list[PretrainingState]]:
    """Every run's state and the state of every suite pretraining they start from, from one
    read of the queue, asked only when a run or a pretraining submitted to SLURM is unfinished."""
    pretrainings = grid_pretrainings(specs)
    unfinished = (any(read_record(output, p) is not None and not p.complete for p in pretrainings)
                  or any(f.read_submission() is not None and f.status() is not Status.DONE
                         for f in (RunFolder.of(output, spec) for spec in specs)))
    queue = slurm_queue() if unfinished else {}
    pretraining = [pretraining_state(output, p, queue) for p in pretrainings]
    failed = frozenset(p.pretraining.key for p in pretraining if p.status is Status.FAILED)
    return [run_state(output, spec, queue, failed) for spec in specs], pretraining


def startable_runs(output: Path, specs: list[RunSpec]) -> tuple[list[RunSpec], list[str]]:
    """The runs of ``specs`` a launcher on this machine may start (neither done nor in flight:
    no live claim, no SLURM job queued or running for them), and one line per run skipped."""
    todo, skipped = [], []
    for state in grid_states(output, specs):
        if state.status.in_flight:
            owner = f"its SLURM job {state.job_id} is {state.status}" if state.job_id else state.note
            skipped.append(f"skipped {state.spec.label} ({state.spec.run_id}): {owner}")
        elif state.status is not Status.DONE:
            todo.append(state.spec)
    return todo, skipped


def pretraining_states(output: Path, specs: list[RunSpec], queue: dict[str, str] | None = None
                       ) -> list[PretrainingState]:
    """The state of every suite pretraining the runs ``specs`` start from; asks the queue (when
    ``queue`` is None) only when a submitted pretraining is not cached."""
    pretrainings = grid_pretrainings(specs)
    if queue is None:
        queue = slurm_queue() if any(read_record(output, p) is not None and not p.complete
                                     for p in pretrainings) else {}
    return [pretraining_state(output, p, queue) for p in pretrainings]


def count_states(states: list[RunState]) -> dict[Status, int]:
    """How many runs have each status, every status listed."""
    return {status: sum(s.status is status for s in states) for status in Status}


def format_status(output: Path, states: list[RunState], error_lines: int = 5,
                  pretrainings: list[PretrainingState] = ()) -> str:
    """The ``--status`` report: the grid's pretrainings (a failed one with its log and last
    error lines), the runs' counts, then each failed run with its log and last error lines."""
    lines = []
    for p in pretrainings:
        lines.append(p.describe())
        if p.status is Status.FAILED:
            lines.append(f"    log:   {p.log}")
            lines.extend("    | " + line for line in _tail(p.log, error_lines).splitlines())
    counts = count_states(states)
    lines.append(f"{len(states)} runs in {output}: " + ", ".join(f"{n} {status}" for status, n in counts.items()))
    for s in states:
        if s.status.in_flight:
            lines.append(f"  {s.status:8s} {s.label}  ({f'job {s.job_id}' if s.job_id else s.note})")
        elif s.note and s.status is not Status.FAILED:
            lines.append(f"  {s.status:8s} {s.label}  ({s.note})")
    for s in states:
        if s.status is Status.FAILED:
            lines.append(f"  FAILED   {s.label}  (job {s.job_id or '-'})")
            if s.folder.error_text() is not None:
                lines.append(f"    error: {s.folder / ERROR}")
            if s.log:
                lines.append(f"    log:   {s.log}")
            if s.note:
                lines.append(f"    {s.note}")
            lines.extend("    | " + line for line in s.error.splitlines()[-error_lines:])
    return "\n".join(lines)
