"""A grid's launch through a backend: what every backend shares around its
:meth:`~spottune.launch.backend.Backend.submit` (:mod:`spottune.launch.backend`).

:func:`launch` reads where the grid's runs stand (:func:`~spottune.launch.status.states_of`:
folders, claims and every backend's queue, once) and hands the backend the runs that are
neither done nor in flight, with the states of the suite pretrainings they need:

* a backend that trains the runs here returns their outcomes; the runs skipped (another
  launcher's claim, a job of a detached backend) are said on stderr, and the failed runs
  returned;
* a detached backend decides and records under a lock on the output folder
  (:data:`SUBMIT_LOCK`), so two commands at once submit each run once; without ``wait`` the
  command returns once submitted (None), with it :func:`follow` polls the queues until no run
  is in flight, cancelling the runs of a failed pretraining, and the failed runs are returned.
"""
from __future__ import annotations

import fcntl
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from tqdm import tqdm

from spottune.launch.backend import Backend, get_backend
from spottune.launch.pretraining import PretrainingState, pretraining_of
from spottune.launch.status import RunState, RunWarnings, count_states, error_line, startable_runs, states_of
from spottune.storage.records import RunSpec, Status

SUBMIT_LOCK = ".submit.lock"


@contextmanager
def submission_lock(output: Path) -> Iterator[None]:
    """Exclusive lock on the output folder while deciding what to submit and recording it."""
    Path(output).mkdir(parents=True, exist_ok=True)
    with open(Path(output) / SUBMIT_LOCK, "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        yield


def needed_pretrainings(runs: list[RunSpec], pretrainings: list[PretrainingState]) -> list[PretrainingState]:
    """The states of the suite pretrainings that ``runs`` start from."""
    keys = {pretraining_of(spec) for spec in runs}
    return [p for p in pretrainings if p.pretraining.key in keys]


def launch(backend: Backend, output: Path, specs: list[RunSpec], runtime: dict[str, Any],
           wait: bool = False) -> list[RunSpec] | None:
    """Start the runs of ``specs`` that are neither done nor in flight on ``backend``; the runs
    that failed, or None when a detached backend submitted them and ``wait`` is False."""
    if not backend.detached:
        states, pretrainings = states_of(output, specs)
        todo, skipped = startable_runs(states)
        outcomes = backend.submit(output, todo, needed_pretrainings(todo, pretrainings), runtime) if todo else {}
        skipped += [f"skipped {s.label} ({s.run_id}): claimed by another launcher meanwhile"
                    for s in todo if outcomes.get(s.run_id) is Status.RUNNING]
        for line in skipped:
            print(line, file=sys.stderr)
        if skipped:
            print(f"{len(skipped)} run(s) skipped: another launcher or job is training them; re-run this "
                  f"command once it is done for complete tables", file=sys.stderr)
        return [s for s in todo if outcomes.get(s.run_id) is Status.FAILED]
    with submission_lock(output):
        states, pretrainings = states_of(output, specs)
        todo = [s.spec for s in states if s.status is not Status.DONE and not s.status.in_flight]
        if todo:
            backend.submit(output, todo, needed_pretrainings(todo, pretrainings), runtime)
        else:
            print("nothing to submit: every run is done or in flight", flush=True)
    if not wait:
        return None
    states, pretrainings = follow(output, specs, progress=bool(runtime.get("progress", True)))
    for p in pretrainings:
        if p.status is Status.FAILED:  # its runs never started: its error first
            log = Path(p.log) if p.log else None
            reason = error_line(log.read_text(errors="replace")) if log and log.exists() else "no log"
            print(f"FAILED {p.describe()}\n    {reason}\n    log: {log}", file=sys.stderr)
    return [s.spec for s in states if s.status is Status.FAILED]


def cancel_runs_of_failed_pretrainings(states: list[RunState], pretrainings: list[PretrainingState]) -> None:
    """Cancel the queued runs whose pretraining failed, through their backends (a scheduler
    that honours a dependency's failure does it itself; elsewhere they would wait forever)."""
    failed = {p.pretraining.key for p in pretrainings if p.status is Status.FAILED}
    jobs: dict[str, set[str]] = {}
    for s in states:
        if s.status is Status.QUEUED and s.job is not None and pretraining_of(s.spec) in failed:
            jobs.setdefault(s.job.backend, set()).add(s.job.job_id)
    for name, ids in jobs.items():
        get_backend(name).cancel(sorted(ids))


def follow(output: Path, specs: list[RunSpec], progress: bool = True,
           max_poll_s: float = 30.0) -> tuple[list[RunState], list[PretrainingState]]:
    """Follow the grid until no run is in flight (reading the queues, more rarely as time goes
    by), printing the warnings the runs record when they start; the runs of a failed
    pretraining are cancelled. The last states of the runs and of their pretrainings."""
    start, warnings = time.monotonic(), RunWarnings(output, specs)
    with tqdm(total=len(specs), desc="runs finished", unit="run", disable=not progress) as bar:
        while True:
            states, pretrainings = states_of(output, specs)
            for line in warnings.new_lines():  # recorded by the jobs (their logs are files)
                tqdm.write(line, file=sys.stderr)
            cancel_runs_of_failed_pretrainings(states, pretrainings)
            counts = count_states(states)
            bar.n = counts[Status.DONE] + counts[Status.FAILED]
            bar.set_postfix({str(status): n for status, n in counts.items() if n}, refresh=True)
            if not any(s.status.in_flight for s in states):
                return states, pretrainings
            time.sleep(min(max_poll_s, max(2.0, (time.monotonic() - start) / 10)))
