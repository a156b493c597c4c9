"""Launchers: run a grid's runs here (``inline``), in local workers (``local``, through
submitit's local executor) or on a SLURM cluster (``slurm``, submitit job arrays).

Every launcher calls the same :func:`spottune.engine.run` on the same runs (a
:class:`~spottune.records.RunSpec` and the launch's ``runtime``), so where a run executes
never changes its numbers. The local and inline launchers claim each run before
training it (:mod:`spottune.claim`); SLURM submissions are kept single by a lock and
the queue.
"""
from spottune.claim import Claim, RunClaimed, live_holder
from spottune.launch.inline import launch_inline, pending_runs, skip_claimed
from spottune.launch.local import launch_local
from spottune.launch.slurm import RunJob, apply_cache_dir, launch_slurm, read_profile, slurm_resources, wait_for_slurm
from spottune.launch.status import (RunState, error_line, failure_lines, format_status, grid_states, pretraining_states,
                                    states_of)

__all__ = ["Claim", "RunClaimed", "live_holder", "launch_inline", "pending_runs", "skip_claimed", "launch_local",
           "RunJob", "apply_cache_dir", "launch_slurm", "read_profile", "slurm_resources", "wait_for_slurm", "RunState",
           "error_line",
           "failure_lines", "format_status", "grid_states", "pretraining_states", "states_of"]
