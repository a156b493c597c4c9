"""A grid's launch through a backend: what every backend shares around its
:meth:`~spottune.launch.backend.Backend.submit` (:mod:`spottune.launch.backend`).

:func:`launch` reads where the grid's runs stand (:func:`~spottune.launch.status.states_of`:
folders, claims and every backend's queue, once) and hands the backend the runs that are
neither done nor in flight, the suite pretrainings they need first (runs of their own kind,
:mod:`spottune.launch.pretraining`):

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
from spottune.launch.pretraining import pretraining_of
from spottune.launch.status import (RunState, RunWarnings, count_states, describe_pretraining, error_line,
                                    startable_runs, states_of)
from spottune.storage.records import PRETRAINING, RUN, RunSpec, Status

SUBMIT_LOCK = ".submit.lock"


@contextmanager
def submission_lock(output: Path) -> Iterator[None]:
    """Exclusive lock on the output folder while deciding what to submit and recording it."""
    Path(output).mkdir(parents=True, exist_ok=True)
    with open(Path(output) / SUBMIT_LOCK, "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        yield


def needed(states: list[RunState]) -> list[RunState]:
    """``states`` less the pretrainings that no unfinished run starts from (a pretraining whose
    runs are all done is not trained again because the cache was emptied)."""
    waiting = {p.run_id for s in states if s.spec.kind == RUN and s.status is not Status.DONE
               and (p := pretraining_of(s.spec)) is not None}
    return [s for s in states if s.spec.kind == RUN or s.spec.run_id in waiting]


def launch(backend: Backend, output: Path, specs: list[RunSpec], runtime: dict[str, Any],
           wait: bool = False) -> list[RunSpec] | None:
    """Start the runs of ``specs`` that are neither done nor in flight on ``backend``; the runs
    that failed, or None when a detached backend submitted them and ``wait`` is False."""
    if not backend.detached:
        todo, skipped = startable_runs(needed(states_of(output, specs)))
        outcomes = backend.submit(output, todo, runtime) if todo else {}
        skipped += [f"skipped {s.label} ({s.run_id}): claimed by another launcher meanwhile"
                    for s in todo if outcomes.get(s.run_id) is Status.RUNNING]
        for line in skipped:
            print(line, file=sys.stderr)
        if skipped:
            print(f"{len(skipped)} run(s) skipped: another launcher or job is training them; re-run this "
                  f"command once it is done for complete tables", file=sys.stderr)
        return [s for s in todo if outcomes.get(s.run_id) is Status.FAILED]
    with submission_lock(output):
        todo = [s.spec for s in needed(states_of(output, specs)) if s.status is not Status.DONE
                and not s.status.in_flight]
        if todo:
            backend.submit(output, todo, runtime)
        else:
            print("nothing to submit: every run is done or in flight", flush=True)
    if not wait:
        return None
    states = follow(output, specs, progress=bool(runtime.get("progress", True)))
    for p in states:
        if p.spec.kind == PRETRAINING and p.status is Status.FAILED:  # its runs never started: its error first
            text = p.folder.error_text() or (Path(p.log).read_text(errors="replace")
                                             if p.log and Path(p.log).exists() else "")
            print(f"FAILED {describe_pretraining(output, p)}\n    {error_line(text) if text else 'no log'}\n"
                  f"    log: {p.log}", file=sys.stderr)
    return [s.spec for s in states if s.status is Status.FAILED and s.spec.kind == RUN]


def cancel_runs_of_failed_pretrainings(states: list[RunState]) -> None:
    """Cancel the queued runs whose pretraining failed, through their backends (a scheduler
    that honours a dependency's failure does it itself; elsewhere they would wait forever)."""
    failed = {s.spec.run_id for s in states if s.spec.kind == PRETRAINING and s.status is Status.FAILED}
    jobs: dict[str, set[str]] = {}
    for s in states:
        pretraining = pretraining_of(s.spec)
        if s.status is Status.QUEUED and s.job is not None and pretraining is not None and pretraining.run_id in failed:
            jobs.setdefault(s.job.backend, set()).add(s.job.job_id)
    for name, ids in jobs.items():
        get_backend(name).cancel(sorted(ids))


def follow(output: Path, specs: list[RunSpec], progress: bool = True, max_poll_s: float = 30.0) -> list[RunState]:
    """Follow the grid until nothing is in flight (reading the queues, more rarely as time goes
    by), printing the warnings the runs record when they start; the runs of a failed
    pretraining are cancelled. The last states of the pretrainings and the runs."""
    start, warnings = time.monotonic(), RunWarnings(output, specs)
    with tqdm(total=len(specs), desc="runs finished", unit="run", disable=not progress) as bar:
        while True:
            states = states_of(output, specs)
            for line in warnings.new_lines():  # recorded by the jobs (their logs are files)
                tqdm.write(line, file=sys.stderr)
            cancel_runs_of_failed_pretrainings(states)
            counts = count_states([s for s in states if s.spec.kind == RUN])
            bar.n = counts[Status.DONE] + counts[Status.FAILED]
            bar.set_postfix({str(status): n for status, n in counts.items() if n}, refresh=True)
            if not any(s.status.in_flight for s in states):
                return states
            time.sleep(min(max_poll_s, max(2.0, (time.monotonic() - start) / 10)))
