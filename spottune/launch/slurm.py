"""``--cluster slurm``: SLURM through submitit, one job array per launch, cluster profiles,
preemption-safe resume.

A run's folder tells what happened to it (done, error.txt); ``submitted.json`` names the job
that owns it (:class:`~spottune.launch.submission.Job`, backend ``slurm``), and the queue
(``squeue``, never ``sacct``: many clusters, and our local one, have no accounting) tells
whether that job is still in flight (:meth:`Slurm.in_flight`, read by
:mod:`spottune.launch.status` for every command). A run is submitted again only when it is
neither done nor in flight (no live claim, no job queued or running for it), under a lock on
the output folder (:mod:`spottune.launch.launcher`), so two invocations cannot launch the same
run twice; and a job claims its run before training it (:func:`spottune.engine.run`), so
neither can a local or inline launcher on the same output. See ``slurm/README.md``.

A launch submits, in this order:

* each suite pretraining among the runs it is given (the ones the pending runs need that the
  cache lacks and no job of an earlier launch is doing, :mod:`spottune.launch.pretraining`), as
  a job of its own (:class:`RunJob`, as every run), with the preset's ``pretraining_resources``;
* the runs as one job array, depending on those jobs and on the jobs of earlier launches still
  pretraining a backbone they need (``--dependency=afterok:...``, and
  ``--kill-on-invalid-dep=yes``: a failed pretraining cancels the runs instead of leaving them
  pending forever). With the profile's ``runs_per_gpu: N`` each array task trains N runs at
  once, each in its own process on the task's GPU (:mod:`spottune.launch.runs_per_gpu`), and asks
  for N times a run's ``mem_gb`` and ``time_min`` (:func:`per_task`).

What a job asks for (:func:`slurm_resources`) is worked out once per command, when the
backend is made: the profile's ``cache_dir`` (default: ``$SPOTTUNE_CACHE``, else
``~/.cache/spottune``, as the jobs see them) is where pretrained weights are cached; it must be
a folder every node sees.
"""
from __future__ import annotations

import argparse
import os
import subprocess
from collections.abc import Collection
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import submitit

from spottune.engine import run
from spottune.planning.grid import parse_overrides, read_yaml
from spottune.launch.backend import Backend, record_submission, register_backend
from spottune.launch.inline import without_progress
from spottune.launch.runs_per_gpu import PackedRunJob
from spottune.launch.pretraining import cache_entry, grid_pretrainings
from spottune.launch.submission import Job
from spottune.pretraining.cache import CACHE_ENV
from spottune.storage.records import PRETRAINING, RUN, RunFolder, RunSpec, Status

PROFILE_DIR = Path(__file__).resolve().parent.parent / "slurm_profiles"  # the packaged profiles
SITE_PROFILE_DIR = Path("slurm")  # your own, under the current directory: found first
PROFILE_KEYS = ("partition", "account", "qos", "constraint", "exclude", "gpus_per_node", "cpus_per_task",
                "mem_gb", "time_min", "signal_delay_s", "max_requeues", "max_parallel", "job_name",
                "setup", "additional", "runs_per_gpu", "cache_dir")
# a preset's ``resources`` (what one run needs) in profile terms
PRESET_RESOURCES = {"gpus": "gpus_per_node", "cpus": "cpus_per_task", "mem_gb": "mem_gb", "time_min": "time_min"}
# one thread per allocated CPU unless the user chose otherwise
THREADS_SETUP = "export OMP_NUM_THREADS=${OMP_NUM_THREADS:-${SLURM_CPUS_PER_TASK:-1}}"
# what a run needs, times the runs of a task (runs_per_gpu): they train at once, sharing its GPU
PER_RUN = ("mem_gb", "time_min")
# squeue keeps finished jobs for MinJobAge seconds: these states are not in flight
FINISHED_STATES = {"COMPLETED", "CANCELLED", "FAILED", "TIMEOUT", "NODE_FAIL", "OUT_OF_MEMORY",
                   "BOOT_FAIL", "DEADLINE", "PREEMPTED", "SPECIAL_EXIT", "REVOKED"}
RUNNING_STATES = {"RUNNING", "COMPLETING"}


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
    """A KeyError naming ``where`` and the unknown keys of ``profile``, if any."""
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
    _check_profile_keys(overrides, "--slurm-set")
    default = read_profile(str(PROFILE_DIR / "default.yaml"))
    chosen = read_profile(profile) if profile else {}
    return {**default, **needs, **chosen, **overrides}


def per_task(resources: dict[str, Any]) -> dict[str, Any]:
    """``resources`` for an array task of ``runs_per_gpu`` runs: every layer gives ``mem_gb`` and
    ``time_min`` for one run, and the task's N runs train at once (N processes sharing its GPU):
    it asks for N times the memory and, at most N times slower than one run alone, N times the
    time. ``cpus_per_task`` is the task's, shared by its runs (keep it >= N)."""
    runs = max(1, int(resources.get("runs_per_gpu") or 1))
    return {**resources, **{key: resources[key] * runs for key in PER_RUN if resources.get(key)}}


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
    """One run (or suite pretraining) as a submitit job, checkpointable in the FAIR pattern.

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


@dataclass
class SubmittedGrid:
    """What a launch submitted: the pretraining jobs and the runs' array (None: no runs)."""

    array_job_id: str | None
    run_ids: list[str]
    tasks: int
    pretraining_jobs: list[str]
    log_dir: Path

    def __str__(self) -> str:
        lines = [f"submitted pretraining job {job} (the runs wait for it); logs in {self.log_dir}/{job}/"
                 for job in self.pretraining_jobs]
        if self.array_job_id is None:
            return "\n".join(lines)
        tasks = f"_[0-{self.tasks - 1}]" if self.tasks > 1 else ""
        packed = f" in {self.tasks} tasks" if self.tasks != len(self.run_ids) else ""
        lines.append(f"submitted {len(self.run_ids)} run(s) to SLURM as job {self.array_job_id}{tasks}{packed}; "
                     f"logs in {self.log_dir}/{self.array_job_id}*/")
        return "\n".join(lines)


def _executor(output: Path, resources: dict[str, Any]) -> submitit.AutoExecutor:
    return submitit.AutoExecutor(folder=output / "slurm" / "%j", cluster="slurm",
                                 slurm_max_num_timeout=int(resources.get("max_requeues", 3)))


def _job(job: submitit.Job) -> Job:
    return Job(Slurm.name, str(job.job_id), str(job.paths.stdout), str(job.paths.stderr))


@register_backend("slurm")
class Slurm(Backend):
    """as SLURM job arrays through submitit (--profile, --slurm-set; see slurm/README.md)"""

    title = "SLURM"
    detached = True

    @classmethod
    def add_arguments(cls, parser: argparse.ArgumentParser) -> None:
        group = parser.add_argument_group("SLURM (--cluster slurm)")
        group.add_argument("--profile",
                           help="cluster profile: a YAML path, or NAME: ./slurm/NAME.yaml under the current directory, "
                                "else the packaged one (default, local, gpu-example; see slurm/README.md); keys left "
                                "out come from the packaged default.yaml")
        group.add_argument("--slurm-set", nargs="+", default=[], metavar="KEY=VALUE",
                           help="override profile keys, e.g. --slurm-set partition=gpu time_min=120")

    def __init__(self, args: argparse.Namespace, preset: dict[str, Any]) -> None:
        """What a run's task and a pretraining's job ask for (:func:`slurm_resources`): the
        preset's ``resources`` and ``pretraining_resources`` (default: its ``resources``) under
        the profile and ``--slurm-set``, the task's scaled by its runs (:func:`per_task`); the
        profile's ``cache_dir`` becomes this process's cache (:func:`apply_cache_dir`)."""
        super().__init__(args, preset)
        overrides = {**parse_overrides(args.slurm_set, "--slurm-set"), "max_parallel": args.max_parallel}
        pretraining = preset.get("pretraining_resources") or preset.get("resources")
        self.run_resources = per_task(slurm_resources(preset.get("resources"), args.profile, overrides))
        self.pretraining_resources = slurm_resources(pretraining, args.profile, overrides)
        apply_cache_dir(self.run_resources)

    def resources(self) -> dict[str, Any]:
        r = self.run_resources
        return {"gpus": r.get("gpus_per_node") or 0, "cpus": r.get("cpus_per_task") or 1, "mem_gb": r.get("mem_gb"),
                "time_min": r.get("time_min"), "runs": max(1, int(r.get("runs_per_gpu") or 1))}

    def submit(self, output: Path, runs: list[RunSpec], runtime: dict[str, Any]) -> dict[str, Status]:
        """Each pretraining among ``runs`` as a job of its own, then the other runs as one job
        array (``runs_per_gpu`` runs per task) depending on those jobs and on the recorded jobs
        of this backend still pretraining a backbone the runs need (an earlier launch's); each
        job recorded."""
        runtime = without_progress(runtime)
        submitted, queued = [], {spec.run_id: Status.QUEUED for spec in runs}
        for spec in (s for s in runs if s.kind == PRETRAINING):
            executor = _executor(output, self.pretraining_resources)
            executor.update_parameters(**submitit_parameters(self.pretraining_resources, name_suffix="-pretrain"))
            folder = RunFolder.of(output, spec)
            job = executor.submit(RunJob(spec, runtime, folder.path))
            record_submission(output, spec, _job(job), resources=self.pretraining_resources,
                              cache=str(cache_entry(output, spec).folder))
            submitted.append(str(job.job_id))
        runs = [s for s in runs if s.kind == RUN]
        if not runs:
            print(SubmittedGrid(None, [], 0, submitted, output / "slurm"), flush=True)
            return queued
        waits = self._earlier_pretraining_jobs(output, runs, submitted) + submitted
        per_task_runs = max(1, int(self.run_resources.get("runs_per_gpu") or 1))
        packs = [runs[i:i + per_task_runs] for i in range(0, len(runs), per_task_runs)]
        executor = _executor(output, self.run_resources)
        executor.update_parameters(**submitit_parameters(self.run_resources, depends_on=waits))
        with executor.batch():
            jobs = [executor.submit(RunJob(pack[0], runtime, RunFolder.of(output, pack[0]).path) if per_task_runs == 1
                                    else PackedRunJob(pack, runtime, output)) for pack in packs]
        for pack, job in zip(packs, jobs):
            job_id = str(job.job_id)
            for spec in pack:
                record_submission(output, spec, _job(job), resources=self.run_resources, depends_on=list(waits),
                                  packed_with=[s.run_id for s in pack if s is not spec],
                                  array_job_id=job_id.split("_")[0],
                                  array_task_id=int(job_id.split("_")[1]) if "_" in job_id else None)
        print(SubmittedGrid(str(jobs[0].job_id).split("_")[0], [s.run_id for s in runs], len(packs), submitted,
                            output / "slurm"), flush=True)
        return queued

    def _earlier_pretraining_jobs(self, output: Path, runs: list[RunSpec], submitted: list[str]) -> list[str]:
        """This backend's recorded jobs of the pretrainings ``runs`` need that the cache still
        lacks and this launch did not submit (an earlier launch's, in flight: the launcher hands
        a failed one over again)."""
        jobs = [Job.from_record(RunFolder.of(output, p).read_submission()) for p in grid_pretrainings(runs)
                if not cache_entry(output, p).complete]
        return [job.job_id for job in jobs if job is not None and job.backend == self.name
                and job.job_id not in submitted]

    @classmethod
    def in_flight(cls, job_ids: Collection[str]) -> dict[str, Status]:
        """``squeue`` once: each of ``job_ids`` (``123``, or ``123_4`` for an array task) that
        is pending, running or completing."""
        cmd = ["squeue", "--noheader", "--array", "--format=%i|%T"]
        try:
            out = subprocess.run(cmd, capture_output=True, text=True, timeout=120, check=True).stdout
        except (OSError, subprocess.SubprocessError) as err:
            detail = getattr(err, "stderr", None) or err
            raise RuntimeError(f"cannot read the SLURM queue ({' '.join(cmd)}: {str(detail).strip()}); is SLURM_CONF "
                               f"set and slurmctld up? Without the queue, runs in flight are unknown.") from err
        wanted, queue = set(job_ids), {}
        for line in out.splitlines():
            job_id, _, state = line.strip().partition("|")
            if job_id in wanted and state not in FINISHED_STATES:
                queue[job_id] = Status.RUNNING if state in RUNNING_STATES else Status.QUEUED
        return queue

    @classmethod
    def cancel(cls, job_ids: Collection[str]) -> None:
        """``scancel`` them (where SLURM did not already honour ``--kill-on-invalid-dep``)."""
        if job_ids:
            subprocess.run(["scancel", *job_ids], capture_output=True, timeout=60, check=False)
