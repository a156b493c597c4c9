"""SLURM through submitit: one job array per launch, cluster profiles, preemption-safe resume.

A run's folder tells what happened to it (done, error.txt); ``submitted.json`` names the job
that owns it, and the queue (``squeue``, never ``sacct``: many clusters, and our local one,
have no accounting) tells whether that job is still in flight (:mod:`spottune.launch.status`).
A run is submitted again only when it is neither done nor in flight (no live claim, no job
queued or running for it), under a lock on the output folder, so two invocations cannot launch
the same run twice; and a job claims its run before training it (:func:`spottune.engine.run`),
so neither can a local or inline launcher on the same output. See ``slurm/README.md``.

A launch submits, in this order:

* each suite pretraining the pending runs need that the cache lacks (and no job of an earlier
  launch is doing), as a job of its own (:mod:`spottune.launch.pretraining`), with the
  preset's ``pretraining_resources``;
* the runs as one job array, depending on those jobs (``--dependency=afterok:...``, and
  ``--kill-on-invalid-dep=yes``: a failed pretraining cancels the runs instead of leaving them
  pending forever). With the profile's ``runs_per_gpu: N`` each array task trains N runs at
  once, each in its own process on the task's GPU (:mod:`spottune.launch.packed`).

The profile's ``cache_dir`` (default: ``$SPOTTUNE_CACHE``, else ``~/.cache/spottune``, as the
jobs see them) is where pretrained weights are cached; it must be a folder every node sees.
"""
from __future__ import annotations

import fcntl
import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import submitit
from tqdm import tqdm

from spottune.engine import run
from spottune.grid import read_yaml
from spottune.launch.inline import without_progress
from spottune.launch.packed import PackedRunJob
from spottune.launch.pretraining import PretrainingJob, PretrainingState, pretraining_of, write_record
from spottune.launch.status import RunState, RunWarnings, count_states, grid_states, pretraining_states, states_of
from spottune.pretrain_cache import CACHE_ENV
from spottune.records import RunFolder, RunSpec, Status

PROFILE_DIR = Path(__file__).resolve().parent.parent / "slurm_profiles"  # the packaged profiles
SITE_PROFILE_DIR = Path("slurm")  # your own, under the current directory: found first
SUBMIT_LOCK = ".slurm-submit.lock"
PROFILE_KEYS = ("partition", "account", "qos", "constraint", "exclude", "gpus_per_node", "cpus_per_task",
                "mem_gb", "time_min", "signal_delay_s", "max_requeues", "max_parallel", "job_name",
                "setup", "additional", "runs_per_gpu", "cache_dir")
# a preset's ``resources`` (what one run needs) in profile terms
PRESET_RESOURCES = {"gpus": "gpus_per_node", "cpus": "cpus_per_task", "mem_gb": "mem_gb", "time_min": "time_min"}
# one thread per allocated CPU unless the user chose otherwise
THREADS_SETUP = "export OMP_NUM_THREADS=${OMP_NUM_THREADS:-${SLURM_CPUS_PER_TASK:-1}}"


def read_profile(name_or_path: str) -> dict[str, Any]:
    """One cluster profile, keys checked: the path of a YAML file, or a name looked up as
    ``./slurm/<name>.yaml`` (the current directory's), then the package's ``<name>.yaml``."""
    path = Path(name_or_path)
    if not path.suffix:
        candidates = [folder / f"{name_or_path}.yaml" for folder in (SITE_PROFILE_DIR, PROFILE_DIR)]
        path = next((c for c in candidates if c.exists()), candidates[-1])
    if not path.exists():
        known = sorted({p.stem for d in (SITE_PROFILE_DIR, PROFILE_DIR) for p in d.glob("*.yaml")})
        raise FileNotFoundError(f"unknown SLURM profile {name_or_path!r}; known: {', '.join(known) or 'none'} "
                                f"(looked in ./{SITE_PROFILE_DIR}/, then {PROFILE_DIR}), or pass the path of a YAML file")
    profile = read_yaml(path, "SLURM profile") or {}
    _check_profile_keys(profile, str(path))
    return profile


def _check_profile_keys(profile: dict[str, Any], where: str) -> None:
    unknown = sorted(set(profile) - set(PROFILE_KEYS))
    if unknown:
        raise KeyError(f"{where}: unknown SLURM setting(s) {', '.join(unknown)}; known: {', '.join(PROFILE_KEYS)}")


def slurm_resources(preset_resources: dict[str, Any] | None, profile: str | None = None,
                    overrides: dict[str, Any] | None = None) -> dict[str, Any]:
    """What one job asks for, later layers winning::

        the package's default.yaml < the preset's resources < the profile < overrides (command line)

    The preset says what a run needs; the profile says how the cluster provides it.
    """
    needs = {PRESET_RESOURCES[k]: v for k, v in (preset_resources or {}).items() if k in PRESET_RESOURCES}
    overrides = {k: v for k, v in (overrides or {}).items() if v is not None}
    _check_profile_keys(overrides, "command line")
    default = read_profile(str(PROFILE_DIR / "default.yaml"))
    chosen = read_profile(profile) if profile else {}
    return {**default, **needs, **chosen, **overrides}


def apply_cache_dir(resources: dict[str, Any]) -> None:
    """Make the profile's ``cache_dir`` (when it sets one) this process's ``$SPOTTUNE_CACHE``, so
    that the launcher looks for cached pretrainings where its jobs will."""
    if resources.get("cache_dir"):
        os.environ[CACHE_ENV] = str(Path(resources["cache_dir"]).expanduser().resolve())


def submitit_parameters(resources: dict[str, Any], depends_on: list[str] = (), name_suffix: str = "") -> dict[str, Any]:
    """``slurm_resources`` in submitit's AutoExecutor vocabulary (unset keys are left out);
    ``depends_on``: jobs that must succeed before these start."""
    setup = [THREADS_SETUP, *(resources.get("setup") or [])]
    if os.environ.get(CACHE_ENV):  # the jobs cache pretrained weights where the launcher looks
        setup.append(f"export {CACHE_ENV}={os.environ[CACHE_ENV]}")
    params: dict[str, Any] = {"name": (resources.get("job_name") or "spottune") + name_suffix,
                              "timeout_min": int(resources["time_min"]),
                              "cpus_per_task": int(resources.get("cpus_per_task") or 1),
                              "slurm_setup": setup}
    if resources.get("gpus_per_node"):
        params["gpus_per_node"] = int(resources["gpus_per_node"])
    if resources.get("mem_gb"):
        params["mem_gb"] = float(resources["mem_gb"])
    for key in ("partition", "account", "qos", "constraint", "exclude", "signal_delay_s"):
        if resources.get(key) is not None:
            params[f"slurm_{key}"] = resources[key]
    if resources.get("max_parallel"):
        params["slurm_array_parallelism"] = int(resources["max_parallel"])
    additional = dict(resources.get("additional") or {})
    if depends_on:
        additional.update({"dependency": "afterok:" + ":".join(depends_on), "kill-on-invalid-dep": "yes"})
    if additional:
        params["slurm_additional_parameters"] = additional
    return params


class RunJob:
    """One run as a submitit job, checkpointable in the FAIR pattern.

    On preemption or time-out SLURM sends USR2; submitit then calls :meth:`checkpoint` and
    requeues the job, which calls this object again: the engine resumes from the
    ``checkpoint.pt`` of the last finished epoch (seeded per epoch, so the numbers equal those
    of an uninterrupted run). A plain ``scontrol requeue`` (no signal) resumes the same way.
    The run is claimed while it trains (taken over from the job's own earlier process, which a
    requeue killed); a run another live process holds fails the job without touching the run.
    """

    def __init__(self, spec: RunSpec, runtime: dict[str, Any], run_dir: Path) -> None:
        self.spec = spec
        self.runtime = runtime
        self.run_dir = Path(run_dir)

    def __call__(self) -> dict[str, Any]:
        return run(self.spec, self.run_dir, self.runtime)

    def checkpoint(self, *args: Any, **kwargs: Any) -> submitit.helpers.DelayedSubmission:
        # the engine has already saved the last finished epoch; resubmit the same run
        return submitit.helpers.DelayedSubmission(RunJob(self.spec, self.runtime, self.run_dir))


def write_submission(folder: RunFolder, job: submitit.Job, resources: dict[str, Any],
                      packed_with: list[str] = (), depends_on: list[str] = ()) -> None:
    job_id = str(job.job_id)
    folder.write_submission({
        "packed_with": list(packed_with), "depends_on": list(depends_on),
        "job_id": job_id, "array_job_id": job_id.split("_")[0],
        "array_task_id": int(job_id.split("_")[1]) if "_" in job_id else None,
        "stdout": str(job.paths.stdout), "stderr": str(job.paths.stderr),
        "submitted_at": time.strftime("%Y-%m-%dT%H:%M:%S%z"), "host": socket.gethostname(),
        "resources": resources})


@contextmanager
def submission_lock(output: Path) -> Iterator[None]:
    """Exclusive lock on the output folder while deciding what to submit and recording it."""
    Path(output).mkdir(parents=True, exist_ok=True)
    with open(Path(output) / SUBMIT_LOCK, "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        yield


@dataclass
class SubmittedGrid:
    """What a launch submitted: the pretraining jobs and the runs' array."""

    array_job_id: str
    run_ids: list[str]
    tasks: int
    pretraining_jobs: list[str]
    log_dir: Path

    def __str__(self) -> str:
        lines = [f"submitted pretraining job {job} (the runs wait for it); logs in {self.log_dir}/{job}/"
                 for job in self.pretraining_jobs]
        tasks = f"_[0-{self.tasks - 1}]" if self.tasks > 1 else ""
        packed = f" in {self.tasks} tasks" if self.tasks != len(self.run_ids) else ""
        lines.append(f"submitted {len(self.run_ids)} run(s) to SLURM as job {self.array_job_id}{tasks}{packed}; "
                     f"logs in {self.log_dir}/{self.array_job_id}*/")
        return "\n".join(lines)


def _executor(output: Path, resources: dict[str, Any]) -> submitit.AutoExecutor:
    return submitit.AutoExecutor(folder=output / "slurm" / "%j", cluster="slurm",
                                 slurm_max_num_timeout=int(resources.get("max_requeues", 3)))


def submit_pretrainings(output: Path, states: list[PretrainingState], runtime: dict[str, Any],
                        resources: dict[str, Any]) -> list[str]:
    """Submit each pretraining that is neither cached nor in flight as a job of its own; the
    jobs the runs must wait for (those in flight from an earlier launch included)."""
    waits = [s.job_id for s in states if s.status.in_flight]
    for state in states:
        if state.status in (Status.NEW, Status.FAILED):
            executor = _executor(output, resources)
            executor.update_parameters(**submitit_parameters(resources, name_suffix="-pretrain"))
            job = executor.submit(PretrainingJob(state.pretraining.spec, without_progress(runtime)))
            write_record(output, state.pretraining, job, resources)
            waits.append(str(job.job_id))
    return waits


def launch_slurm(output: Path, specs: list[RunSpec], runtime: dict[str, Any], resources: dict[str, Any],
                 pretraining_resources: dict[str, Any] | None = None) -> SubmittedGrid | None:
    """Submit every run that is neither done nor in flight (failed, torn and interrupted runs
    included) as one job array with ``resources`` (see :func:`slurm_resources`), after the
    pretraining jobs they need (``pretraining_resources``, default ``resources``); None if no
    run is to submit."""
    output = Path(output)
    with submission_lock(output):
        todo = [s.spec for s in grid_states(output, specs) if s.status is not Status.DONE and not s.status.in_flight]
        if not todo:
            return None
        waits = submit_pretrainings(output, pretraining_states(output, todo), runtime,
                                    pretraining_resources or resources)
        per_task = max(1, int(resources.get("runs_per_gpu") or 1))
        packs = [todo[i:i + per_task] for i in range(0, len(todo), per_task)]
        executor = _executor(output, resources)
        executor.update_parameters(**submitit_parameters(resources, depends_on=waits))
        runtime = without_progress(runtime)
        with executor.batch():
            jobs = [executor.submit(RunJob(pack[0], runtime, RunFolder.of(output, pack[0]).path) if per_task == 1
                                    else PackedRunJob(pack, runtime, output)) for pack in packs]
        for pack, job in zip(packs, jobs):
            for spec in pack:
                write_submission(RunFolder.of(output, spec), job, resources,
                                 [s.run_id for s in pack if s is not spec], waits)
    return SubmittedGrid(str(jobs[0].job_id).split("_")[0], [s.run_id for s in todo], len(packs), waits,
                         output / "slurm")


def cancel_runs_of_failed_pretrainings(states: list[RunState], pretrainings: list[PretrainingState]) -> None:
    """``scancel`` the queued runs whose pretraining failed (SLURM does it itself where it honours
    ``--kill-on-invalid-dep``; else they would wait forever)."""
    failed = {p.pretraining.key for p in pretrainings if p.status is Status.FAILED}
    jobs = sorted({s.job_id for s in states if s.status is Status.QUEUED and s.job_id
                   and pretraining_of(s.spec) in failed})
    if jobs:
        subprocess.run(["scancel", *jobs], capture_output=True, timeout=60, check=False)


def wait_for_slurm(output: Path, specs: list[RunSpec], progress: bool = True,
                   max_poll_s: float = 30.0) -> list[RunState]:
    """Follow the grid until no run is in flight (polling the queue, more rarely as time goes
    by), printing the warnings the runs record when they start; the runs of a failed
    pretraining are cancelled."""
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
                return states
            time.sleep(min(max_poll_s, max(2.0, (time.monotonic() - start) / 10)))
