"""Launchers: where a grid's runs execute, each a registered backend (``--cluster NAME``,
:mod:`spottune.launch.backend`): ``inline`` (here, one after the other), ``local`` (local
workers, through submitit's local executor) and ``slurm`` (submitit job arrays); plugins
register more.

Every backend calls the same :func:`spottune.engine.run` on the same runs (a
:class:`~spottune.storage.records.RunSpec` and the launch's ``runtime``), so where a run executes
never changes its numbers, and that call claims the run before training it
(:mod:`spottune.storage.claim`), in a worker, a SLURM job or a packed task's child alike. Before
starting a run every launch also reads the claims and the queue of every backend that owns an
unfinished run (:func:`~spottune.launch.launcher.launch`,
:func:`~spottune.launch.status.states_of`): runs in flight elsewhere are skipped; detached
backends' submissions are also kept single by a lock. Importing this package registers the
three built-in backends.
"""
from spottune.storage.claim import Claim, RunClaimed, live_holder
from spottune.launch.backend import Backend, get_backend, list_backends, record_submission, register_backend
from spottune.launch.inline import Inline, pending_runs, run_here
from spottune.launch.launcher import follow, launch
from spottune.launch.local import Local
from spottune.launch.pretraining import grid_pretrainings, pretraining_of
from spottune.launch.slurm import RunJob, Slurm, read_profile, slurm_resources
from spottune.launch.status import (RunState, error_line, failure_lines, format_status, startable_runs, states_of)
from spottune.launch.submission import Job

__all__ = ["Claim", "RunClaimed", "live_holder", "Backend", "get_backend", "list_backends", "record_submission",
           "register_backend", "Inline", "pending_runs", "run_here", "follow", "launch", "Local", "grid_pretrainings",
           "pretraining_of", "RunJob", "Slurm", "read_profile", "slurm_resources", "RunState", "error_line",
           "failure_lines", "format_status", "startable_runs", "states_of", "Job"]
