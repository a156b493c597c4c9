"""Where the runs of a grid stand: from their folders, their claims and their backends' queues.

The statuses are :class:`spottune.storage.records.Status`: what the folder says (``done``, ``torn``,
``failed``, ``started``, ``new``), made ``running`` by a live claim (:mod:`spottune.storage.claim`),
``queued`` or ``running`` by the job that owns the run when its backend says it is in flight,
and ``failed`` when that job left the queue without finishing. A run's job is the one its
``submitted.json`` names (:class:`~spottune.launch.submission.Job`: a detached backend and an
id in its queue); the queue of each backend that owns an unfinished run or pretraining is
read once per call (:func:`jobs_in_flight`, :meth:`~spottune.launch.backend.Backend.in_flight`),
whatever ``--cluster`` the command runs with. A failed run is summed up by the exception line
of its ``error.txt`` (:func:`error_line`). The grid's suite pretrainings are runs too
(``kind: pretraining``, :mod:`spottune.launch.pretraining`), listed first, with one difference:
one is done while the cache holds its weights, whatever its folder says; a run whose job never
started because its pretraining failed says so.
"""
from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from spottune.storage.claim import live_holder
from spottune.launch.backend import get_backend
from spottune.launch.pretraining import cache_entry, pretraining_of, with_pretrainings
from spottune.launch.submission import Job, WithJob
from spottune.storage.records import ERROR, PRETRAINING, RUN, RunFolder, RunSpec, Status

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


def settled(output: Path, spec: RunSpec) -> bool:
    """Whether ``spec`` needs nothing more: a run whose folder is done, a pretraining whose
    weights are in its cache."""
    if spec.kind == PRETRAINING:
        return cache_entry(output, spec).complete
    return RunFolder.of(output, spec).status() is Status.DONE


def run_state(output: Path, spec: RunSpec, in_flight: InFlight,
              failed_pretrainings: frozenset[str] = frozenset()) -> RunState:
    """The state of one run from its folder and ``in_flight`` (read the queues *before* the
    folder: a job leaves its queue only after writing ``done`` or ``error.txt``);
    ``failed_pretrainings``: the ids of the grid's pretrainings that failed. A pretraining is
    done while its cache holds its weights; one whose folder says done without them is new."""
    folder = RunFolder.of(output, spec)
    job = Job.from_record(folder.read_submission())
    status = folder.status()
    if spec.kind == PRETRAINING:
        entry = cache_entry(output, spec)
        if entry.complete:
            return RunState(spec, folder, Status.DONE, job)
        in_flight_job = job is not None and job.key in in_flight
        if status in (Status.DONE, Status.TORN) and not in_flight_job:
            return RunState(spec, folder, Status.NEW, job, note=f"pretrained once, not in the cache {entry.folder} now: "
                                                            f"pretrained again when launched")
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
    pretraining = pretraining_of(spec)
    if job is not None and pretraining is not None and pretraining.run_id in failed_pretrainings:
        return RunState(spec, folder, Status.FAILED, job, note=f"never started: its pretraining "
                        f"{pretraining.run_id} failed (see the pretraining above)")
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
    """A failed run on the console: method, dataset, seed (or which pretraining) and folder,
    then its error line (or, for a run that never started, that its pretraining failed)."""
    text = folder.error_text()
    pretraining = pretraining_of(spec)
    output = folder.path.parent.parent
    if text is not None:
        reason = error_line(text)
    elif pretraining is not None and run_state(output, pretraining, {}).status is Status.FAILED:
        reason = f"never started: its pretraining {pretraining.run_id} failed (its error is above; --status shows it)"
    else:
        reason = "no error.txt: its process died or could not write it (a full disk?): see the launcher's output"
    return [f"FAILED {describe_run(spec)}  {folder.path}", f"    {reason}"]


def describe_run(spec: RunSpec) -> str:
    """How the console names a run (``finetune / digits / seed 0``) or a pretraining
    (``pretraining resnet26 pretrained on mini_source (<id>)``)."""
    return f"pretraining {spec.label} ({spec.run_id})" if spec.kind == PRETRAINING else spec.label


def states_of(output: Path, specs: list[RunSpec]) -> list[RunState]:
    """The state of every suite pretraining the runs ``specs`` start from, then of every run,
    from one read of the queue of each backend whose job owns an unsettled run or pretraining."""
    specs = with_pretrainings(specs)
    jobs = [Job.from_record(RunFolder.of(output, spec).read_submission()) for spec in specs
            if not settled(output, spec)]
    in_flight = jobs_in_flight(job for job in jobs if job is not None)
    states: list[RunState] = []
    failed: set[str] = set()
    for spec in specs:  # the pretrainings first: whether one failed tells its runs' state
        states.append(run_state(output, spec, in_flight, frozenset(failed)))
        if spec.kind == PRETRAINING and states[-1].status is Status.FAILED:
            failed.add(spec.run_id)
    return states


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


def describe_pretraining(output: Path, state: RunState) -> str:
    """``pretraining <what>: <status> (job <id> | no job; cache <folder>)``."""
    job = f"job {state.job_id}" if state.job_id else "no job"
    return (f"{describe_run(state.spec)}: {state.status} ({job}; cache {cache_entry(output, state.spec).folder})"
            + (f"; {state.note}" if state.note else ""))


def format_status(output: Path, states: list[RunState], error_lines: int = 5) -> str:
    """The ``--status`` report: the grid's pretrainings (a failed one with its log and last
    error lines), the runs' counts, then each failed run with its log and last error lines."""
    lines = []
    for p in (s for s in states if s.spec.kind == PRETRAINING):
        lines.append(describe_pretraining(output, p))
        if p.status is Status.FAILED:
            lines.extend(_failure_details(p, error_lines))
    states = [s for s in states if s.spec.kind == RUN]
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
            lines.extend(_failure_details(s, error_lines))
    return "\n".join(lines)


def _failure_details(state: RunState, error_lines: int) -> list[str]:
    """A failed run's or pretraining's ``error.txt`` and log paths, its note and the last
    ``error_lines`` lines of its error."""
    lines = [f"    error: {state.folder / ERROR}"] if state.folder.error_text() is not None else []
    lines += [f"    log:   {state.log}"] if state.log else []
    lines += [f"    {state.note}"] if state.note and state.spec.kind == RUN else []
    return lines + ["    | " + line for line in state.error.splitlines()[-error_lines:]]
