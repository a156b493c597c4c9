"""Launchers: run a grid's runs here (``inline``), in local workers (``local``, through
submitit's local executor) or on a SLURM cluster (``slurm``, submitit job arrays).

Every launcher calls the same :func:`spottune.engine.run` on the same runs (a
:class:`~spottune.records.RunSpec` and the launch's ``runtime``), so where a run executes
never changes its numbers, and that call claims the run before training it
(:mod:`spottune.claim`), in a worker, a SLURM job or a packed task's child alike. Before
starting a run every launcher also reads the claims and the SLURM queue
(:func:`~spottune.launch.status.startable_runs`, :func:`~spottune.launch.status.grid_states`):
runs in flight elsewhere are skipped; SLURM submissions are also kept single by a lock.
"""
from spottune.claim import Claim, RunClaimed, live_holder
from spottune.launch.inline import launch_inline, pending_runs
from spottune.launch.local import launch_local
from spottune.launch.slurm import RunJob, apply_cache_dir, launch_slurm, read_profile, slurm_resources, wait_for_slurm
from spottune.launch.status import (RunState, error_line, failure_lines, format_status, grid_states, pretraining_states,
                                    startable_runs, states_of)

__all__ = ["Claim", "RunClaimed", "live_holder", "launch_inline", "pending_runs", "launch_local",
           "RunJob", "apply_cache_dir", "launch_slurm", "read_profile", "slurm_resources", "wait_for_slurm", "RunState",
           "error_line",
           "failure_lines", "format_status", "grid_states", "pretraining_states", "startable_runs", "states_of"]
