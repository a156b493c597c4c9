"""Several runs in one SLURM task, each in its own process on the task's GPU (``runs_per_gpu``).

A ResNet-26 at 64 px with batch 128 leaves a modern GPU mostly idle; with the profile's
``runs_per_gpu: N`` an array task trains N runs at once. The task's process starts one child
process per run that is not done (``python -m spottune.launch.runs_per_gpu``, the run handed over on
stdin as JSON, claimed there by :func:`spottune.engine.run` like every run), each with ``cpus_per_task / N`` torch threads, its own run folder, checkpoint
and log (``<run>/job.log``), and waits for them all; it fails when any of them failed, after
the others finished.

Requeue: on USR2 (preemption, time limit) submitit calls :meth:`PackedRunJob.checkpoint`,
which stops the children (their last finished epochs are checkpointed) and requeues the task;
a plain ``scontrol requeue`` kills them all. Either way the task starts again and every run
that is not done resumes from its checkpoint, with the numbers of an uninterrupted run. The
children ignore USR2 themselves: the task decides when they stop.
"""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path
from typing import Any

import submitit

import spottune
from spottune.training.cpus import allotted_cpus
from spottune.storage.records import RunFolder, RunSpec, Status

LOG = "job.log"
STOP_GRACE_S = 20.0  # how long children get between SIGTERM and SIGKILL when the task is requeued


class PackedRunJob:
    """A submitit job training ``specs`` at once, one child process each."""

    def __init__(self, specs: list[RunSpec], runtime: dict[str, Any], output: Path) -> None:
        self.specs = specs
        self.runtime = runtime
        self.output = Path(output)
        self.sys_path = list(sys.path)  # plugins importable from where the launcher started
        self._children: list[subprocess.Popen] = []

    def __call__(self) -> dict[str, str]:
        todo = [s for s in self.specs if RunFolder.of(self.output, s).status() is not Status.DONE]
        threads = max(1, allotted_cpus() // max(1, len(todo)))
        env = {**os.environ, "OMP_NUM_THREADS": str(threads),
               "PYTHONPATH": os.pathsep.join([str(Path(spottune.__file__).resolve().parent.parent),
                                              *filter(None, [os.environ.get("PYTHONPATH")])])}
        for spec in todo:
            folder = RunFolder.of(self.output, spec)
            folder.path.mkdir(parents=True, exist_ok=True)
            with open(folder.path / LOG, "ab") as log:
                child = subprocess.Popen([sys.executable, "-m", "spottune.launch.runs_per_gpu"], stdin=subprocess.PIPE,
                                         stdout=log, stderr=subprocess.STDOUT, env=env)
            child.stdin.write(json.dumps({"spec": spec.record(), "run_dir": str(folder.path),
                                          "runtime": self.runtime, "sys_path": self.sys_path}).encode())
            child.stdin.close()
            self._children.append(child)
        codes = [child.wait() for child in self._children]
        outcomes = {s.run_id: str(RunFolder.of(self.output, s).status()) for s in self.specs}
        failed = [s for s, code in zip(todo, codes) if code != 0]
        if failed:
            raise RuntimeError(f"{len(failed)} of this task's {len(self.specs)} runs failed: "
                               + ", ".join(f"{s.label} (exit {c}, {RunFolder.of(self.output, s).path / LOG})"
                                           for s, c in zip(todo, codes) if c != 0))
        return outcomes

    def stop_children(self) -> None:
        """SIGTERM the children still running, SIGKILL those alive ``STOP_GRACE_S`` later."""
        for child in self._children:
            if child.poll() is None:
                child.terminate()
        for child in self._children:
            try:
                child.wait(timeout=STOP_GRACE_S)
            except subprocess.TimeoutExpired:
                child.kill()
                child.wait()

    def checkpoint(self, *args: Any, **kwargs: Any) -> submitit.helpers.DelayedSubmission:
        # every run's last finished epoch is checkpointed: stop them, resubmit the same task
        self.stop_children()
        return submitit.helpers.DelayedSubmission(PackedRunJob(self.specs, self.runtime, self.output))


def main() -> None:
    """A child: train the run described on stdin (:func:`spottune.engine.run`)."""
    signal.signal(signal.SIGUSR2, signal.SIG_IGN)  # the task's process decides about requeueing
    job = json.loads(sys.stdin.read())
    sys.path.extend(p for p in job["sys_path"] if p not in sys.path)
    import torch

    from spottune.engine import run

    torch.set_num_threads(int(os.environ.get("OMP_NUM_THREADS", "1")))
    run(RunSpec.from_record(job["spec"]), job["run_dir"], job["runtime"])


if __name__ == "__main__":
    main()
