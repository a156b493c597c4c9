"""Where the runs of a grid stand: from their folders, their claims and their backends' queues.

The statuses are :class:`spottune.storage.records.Status`: what the folder says (``done``, ``torn``,
``failed``, ``started``, ``new``), made ``running`` by a live claim (:mod:`spottune.storage.claim`),
``queued`` or ``running`` by the job that owns the run when its backend says it is in flight,
and ``failed`` when that job left the queue without finishing. A run's job is the one its
``submitted.json`` names (:class:`~spottune.launch.submission.Job`: a detached backend and an
id in its queue); the queue of each backend that owns an unfinished run or pretraining is
read once per call (:func:`jobs_in_flight`, :meth:`~spottune.launch.backend.Backend.in_flight`),
whatever ``--cluster`` the command runs with. A failed run is summed up by the exception line
of its ``error.txt`` (:func:`error_line`). The grid's suite pretrainings have states of their
own (:mod:`spottune.launch.pretraining`); a run whose job never started because its
pretraining failed says so.
"""
from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from spottune.storage.claim import live_holder
from spottune.launch.backend import get_backend
from spottune.launch.pretraining import (PretrainingState, grid_pretrainings, pretraining_of, pretraining_state,
                                         recorded_job)
from spottune.launch.submission import Job, WithJob
from spottune.storage.records import ERROR, RunFolder, RunSpec, Status

InFlight = dict[tuple[str, str], Status]  # (backend, job id) -> queued | running


def jobs_in_flight(jobs: Iterable[Job]) -> InFlight:
    """Which of ``jobs`` are queued or running: one read of the queue of each backend among
    them (none when there are no jobs)."""
    by_backend: dict[str, set[str]] = {}
    for job in jobs:
        by_backend.setdefault(job.backend, set()).add(job.job_id)
    return {(name, job_id): status for name, ids in by_backend.items()
            for job_id, status in get_backend(name).in_flight(ids).items()}


def describe_job(job: Job) -> str:
    """``SLURM job 7``: the job named as its backend names its jobs."""
    return f"{get_backend(job.backend).title} job {job.job_id}"


def _tail(path: Path | str | None, lines: int = 10) -> str:
    if not path or not Path(path).exists():
        return ""
    return "\n".join(Path(path).read_text(errors="replace").rstrip().splitlines()[-lines:])


@dataclass
class RunState(WithJob):
    """Where one run of the grid stands (its :class:`~spottune.storage.records.Status`), with the job
    a detached backend submitted for it, the last lines of its error, and a note saying why."""

    spec: RunSpec
    folder: RunFolder
    status: Status
    job: Job | None = None
    error: str = ""  # last lines of error.txt, or of the job's log when there is none
    note: str = ""

    @property
    def label(self) -> str:
        return f"{self.spec.run_id}  {self.spec.label}"


def run_state(output: Path, spec: RunSpec, in_flight: InFlight,
              failed_pretrainings: frozenset[str] = frozenset()) -> RunState:
    """The state of one run from its folder and ``in_flight`` (read the queues *before* the
    folder: a job leaves its queue only after writing ``done`` or ``error.txt``);
    ``failed_pretrainings``: the keys of the grid's pretrainings that failed."""
    folder = RunFolder.of(output, spec)
    job = Job.from_record(folder.read_submission())
    status = folder.status()
    if status is Status.DONE:
        return RunState(spec, folder, status, job)
    if job is not None and job.key in in_flight:
        return RunState(spec, folder, in_flight[job.key], job)
    holder = live_holder(folder.path)
    if holder is not None:
        return RunState(spec, folder, Status.RUNNING, note=f"claimed by {holder}")
    if status is Status.FAILED:
        return RunState(spec, folder, status, job, _tail(folder / ERROR))
    if status is Status.TORN:  # finished (its job too), then a record was damaged
        return RunState(spec, folder, status, job,
                        note=f"{folder.done_problem()}: not done, evaluated again when launched")
    if job is not None and pretraining_of(spec) in failed_pretrainings:
        return RunState(spec, folder, Status.FAILED, job, note=f"never started: its pretraining "
                        f"{pretraining_of(spec)} failed (see the pretraining above)")
    if job is not None:
        return RunState(spec, folder, Status.FAILED, job, _tail(job.stderr), note="its job left the queue without "
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
    """Whether the job pretraining the backbone of ``spec`` left its queue without publishing
    (called once the grid is no longer in flight)."""
    return any(pretraining_state(output, p, {}).status is Status.FAILED for p in grid_pretrainings([spec]))


def states_of(output: Path, specs: list[RunSpec]) -> tuple[list[RunState], list[PretrainingState]]:
    """Every run's state and the state of every suite pretraining they start from, from one
    read of the queue of each backend whose job owns an unfinished run or pretraining."""
    pretrainings = grid_pretrainings(specs)
    jobs = [recorded_job(output, p) for p in pretrainings if not p.complete]
    for folder in (RunFolder.of(output, spec) for spec in specs):
        job = Job.from_record(folder.read_submission())
        if job is not None and folder.status() is not Status.DONE:
            jobs.append(job)
    in_flight = jobs_in_flight(job for job in jobs if job is not None)
    pretraining = [pretraining_state(output, p, in_flight) for p in pretrainings]
    failed = frozenset(p.pretraining.key for p in pretraining if p.status is Status.FAILED)
    return [run_state(output, spec, in_flight, failed) for spec in specs], pretraining


def startable_runs(states: list[RunState]) -> tuple[list[RunSpec], list[str]]:
    """The runs of ``states`` a launcher may start (neither done nor in flight: no live claim,
    no job queued or running for them), and one line per run skipped."""
    todo, skipped = [], []
    for state in states:
        if state.status.in_flight:
            owner = f"its {describe_job(state.job)} is {state.status}" if state.job else state.note
            skipped.append(f"skipped {state.spec.label} ({state.spec.run_id}): {owner}")
        elif state.status is not Status.DONE:
            todo.append(state.spec)
    return todo, skipped


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
