"""Launchers: run a grid's configs here (``inline``), in local workers (``local``, through
submitit's local executor) or on a SLURM cluster (``slurm``, submitit job arrays).

Every launcher calls the same :func:`spottune.engine.run` on the same configs, so where a
run executes never changes its numbers.
"""
from spottune.launch.inline import launch_inline, pending_runs
from spottune.launch.local import launch_local
from spottune.launch.slurm import RunJob, launch_slurm, read_profile, slurm_resources, wait_for_slurm
from spottune.launch.status import RunState, format_status, grid_states

__all__ = ["launch_inline", "pending_runs", "launch_local", "RunJob", "launch_slurm", "read_profile",
           "slurm_resources", "wait_for_slurm", "RunState", "format_status", "grid_states"]
