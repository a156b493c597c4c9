"""``--cluster local``: a grid's runs on this machine, in workers of submitit's local executor.

The pending runs are dealt round-robin into workers, each a submitit local job that runs its
share one after the other: several runs at a time without paying a Python and torch start-up
per run. Workers and torch threads per worker follow :func:`spottune.training.cpus.worker_plan` (by
default one single-thread worker per allotted CPU; ``--max-parallel`` caps the workers,
``$OMP_NUM_THREADS`` fixes the threads; a multi-thread worker gets at most the CPUs free when
it starts); on a CPU the numbers depend on the thread count, which every run records in its
``config.json``. The suite pretrainings the runs need (the first of the runs it is given,
:mod:`spottune.launch.pretraining`) are trained first, here, in the parent, with the fixed thread
count their weights depend on; the runs of one that failed are not started. The parent follows the run folders with a progress bar; each worker's output goes to
``<output>/local/``, and the warnings a run recorded when it started (a torn checkpoint moved
aside, ...: :class:`~spottune.launch.status.RunWarnings`) are printed on the parent's console. Interrupting the parent (Ctrl-C) stops the workers; the next launch
resumes the runs from their checkpoints. A worker claims each run before training it
(:mod:`spottune.storage.claim`), so a worker left running after its parent was killed, or a
second launcher on the same output, never trains a run twice at once.
"""
from __future__ import annotations

import sys
import time
from pathlib import Path
from typing import Any

import submitit
import torch
from tqdm import tqdm

from spottune.training.cpus import worker_plan
from spottune.launch.backend import Backend, register_backend
from spottune.launch.inline import launch_inline, pending_runs, without_progress
from spottune.launch.pretraining import blocked_by
from spottune.launch.status import RunWarnings
from spottune.storage.records import PRETRAINING, RUN, RunFolder, RunSpec, Status


class LocalWorker:
    """A submitit job running its share of the runs in order (the inline launcher, in a worker)."""

    def __init__(self, output: Path, specs: list[RunSpec], runtime: dict[str, Any], threads: int) -> None:
        self.output = Path(output)
        self.specs = specs
        self.runtime = without_progress(runtime)
        self.threads = threads
        self.sys_path = list(sys.path)  # plugins importable from where run_all.py was started

    def __call__(self) -> dict[str, Status]:
        sys.path.extend(p for p in self.sys_path if p not in sys.path)
        torch.set_num_threads(self.threads)
        return launch_inline(self.output, self.specs, self.runtime)


def launch_local(output: Path, specs: list[RunSpec], runtime: dict[str, Any], max_parallel: int | None = None,
                 poll_s: float = 1.0) -> dict[str, Status]:
    """Run every pending run in ``max_parallel`` local workers; run_id -> ``done`` | ``failed`` |
    ``running`` (another process was training it)."""
    output = Path(output)
    todo = pending_runs(output, specs)
    if not todo:
        return {}
    workers, threads = worker_plan(len(todo), max_parallel)
    progress = bool(runtime.get("progress", True))
    warnings = RunWarnings(output, todo)
    executor = submitit.LocalExecutor(folder=output / "local")
    executor.update_parameters(timeout_min=60 * 24 * 30)
    jobs = [executor.submit(LocalWorker(output, todo[i::workers], runtime, threads)) for i in range(workers)]
    print(f"running {len(todo)} run(s) in {workers} local worker(s) of {threads} thread(s); "
          f"logs in {output / 'local'}/", flush=True)
    try:
        with tqdm(total=len(todo), desc="runs finished", unit="run", disable=not progress) as bar:
            while True:  # until the workers end (a run that failed before counts as finished at once)
                running = not all(job.done() for job in jobs)
                finished = sum(RunFolder.of(output, s).status() in (Status.DONE, Status.FAILED) for s in todo)
                bar.update(finished - bar.n)
                for line in warnings.new_lines():  # the workers' logs are files: their warnings here too
                    tqdm.write(line, file=sys.stderr)
                if not running:
                    break
                time.sleep(poll_s)
    except KeyboardInterrupt:
        for job in jobs:
            job.cancel()
        raise
    outcomes: dict[str, Status] = {}
    for job in jobs:
        try:
            outcomes.update(job.result())
        except Exception as err:  # noqa: BLE001 - a worker died: its unfinished runs are failed
            print(f"local worker {job.job_id} failed: {type(err).__name__}: {str(err).splitlines()[-1]}; "
                  f"log: {job.paths.stderr}", file=sys.stderr)
    for spec in todo:
        done = RunFolder.of(output, spec).status() is Status.DONE
        outcomes.setdefault(spec.run_id, Status.DONE if done else Status.FAILED)
    return outcomes


@register_backend("local")
class Local(Backend):
    """this machine, in --max-parallel submitit workers (default: one single-thread worker per
    allotted CPU; $OMP_NUM_THREADS sets threads per worker)"""

    def plan_here(self, runs: int, free: int) -> tuple[int, int] | None:
        return worker_plan(max(1, runs), self.args.max_parallel, free)

    def submit(self, output: Path, runs: list[RunSpec], runtime: dict[str, Any]) -> dict[str, Status]:
        # the pretrainings here, before any worker starts (else one worker pretrains while the others wait)
        outcomes = launch_inline(output, [s for s in runs if s.kind == PRETRAINING], runtime)
        failed = {run_id for run_id, outcome in outcomes.items() if outcome is Status.FAILED}
        blocked = blocked_by(failed, runs)
        for spec in blocked:
            print(f"{spec.label} not started: its pretraining failed", flush=True)
        outcomes.update({spec.run_id: Status.FAILED for spec in blocked})
        ready = [s for s in runs if s.kind == RUN and s.run_id not in outcomes]
        return {**outcomes, **launch_local(output, ready, runtime, self.args.max_parallel)}
