"""Where a grid's runs execute: the backend contract and its registry (``--cluster NAME``).

A backend is one small class registered by name with :func:`register_backend`, as a method is
with ``register_method``. ``--cluster`` takes the registered names and ``--help`` lists them,
each with the first paragraph of its class docstring; ``--plugins`` and ``$SPOTTUNE_PLUGINS``
(the site hook: modules a site imports for every command) import modules that register more. The
model is DomainBed's ``command_launchers.REGISTRY``, one launcher function per cluster plus a
site module adding its own (facebookresearch/DomainBed, domainbed/command_launchers.py: the
``REGISTRY`` dict, lines 59-63, and the ``facebook`` site import, lines 65-69); a launcher of
this suite needs a few more verbs than "run these commands", so a backend is a class:

* :meth:`Backend.submit`: start the runs it is given, the suite pretrainings among them first
  (runs of their own kind, ``spec.kind == "pretraining"``, :mod:`spottune.launch.pretraining`);
  a backend that is not :attr:`~Backend.detached` trains them before it returns, a detached one
  (its jobs outlive the command) records each job (:class:`Job`, through
  :func:`record_submission`), makes the runs' jobs wait for their pretrainings' where its
  scheduler can, and returns;
* :meth:`Backend.in_flight`: which of its recorded jobs are queued or running, from one read of
  its queue, asked by ``--status``, ``--dry-run``, ``--wait`` and every launcher before it
  starts a run (:func:`spottune.launch.status.states_of`), whatever ``--cluster`` they run with;
* :meth:`Backend.cancel`: cancel jobs (``--wait`` cancels the runs of a failed pretraining);
* :meth:`Backend.resources`: what each of its jobs asks for, in the preset's ``resources``
  terms (``--dry-run`` prints it);
* waiting is shared: :func:`spottune.launch.launcher.follow` polls :meth:`~Backend.in_flight`.

What every backend shares is done once around it (:mod:`spottune.launch.launcher`): which runs
to start (neither done nor in flight anywhere: claims and every backend's queue), the
submission lock of a detached backend, the skip lines, the failed runs; every run trains
through :func:`spottune.engine.run`, which claims it, so the numbers never depend on the
backend. README.md, "Add a cluster backend", gives the recipe; tests/test_backends.py defines
two backends of its own, without an edit to the library.
"""
from __future__ import annotations

import argparse
import inspect
from collections.abc import Callable, Collection
from pathlib import Path
from typing import Any, ClassVar

from spottune.plugins import register_class
from spottune.launch.submission import Job
from spottune.storage.records import RunFolder, RunSpec, Status

_REGISTRY: dict[str, type[Backend]] = {}


class Backend:
    """Where runs execute. Subclass it, register it with ``@register_backend("name")`` and
    implement :meth:`submit`; the other verbs have defaults for a backend whose runs train in
    the command itself."""

    name: ClassVar[str] = ""  # set by register_backend
    title: ClassVar[str] = ""  # how messages name its jobs ("its SLURM job 7 is running"); default: name
    detached: ClassVar[bool] = False  # its jobs outlive the command: recorded, followed by --wait

    def __init__(self, args: argparse.Namespace, preset: dict[str, Any]) -> None:
        """Once per command, from the command line ``args`` (``max_parallel``, the backend's
        own options of :meth:`add_arguments`) and the grid's ``preset`` (its ``resources``)."""
        self.args = args
        self.preset = preset

    @classmethod
    def add_arguments(cls, parser: argparse.ArgumentParser) -> None:
        """Add its own command-line options to ``parser`` (default: none)."""

    def resources(self) -> dict[str, Any]:
        """What each of its jobs asks for, in the preset's ``resources`` terms (``gpus``, ``cpus``,
        ``mem_gb``, ``time_min``) plus ``runs`` (runs per job); empty for runs trained here."""
        return {}

    def plan_here(self, runs: int, free: int) -> tuple[int, int] | None:
        """The workers and threads per worker it would train ``runs`` runs with on this machine,
        ``free`` CPUs being free now (``--dry-run``'s wall-time estimate); None when the runs
        train elsewhere."""
        return None

    def submit(self, output: Path, runs: list[RunSpec], runtime: dict[str, Any]) -> dict[str, Status]:
        """Start ``runs`` (none of them done or in flight; the suite pretrainings the others need
        come first, ``kind == "pretraining"``: train them first, or make the others' jobs depend
        on theirs); run_id -> where each stands on return: ``done``, ``failed`` or ``running``
        (another process claimed it meanwhile) for a backend that trains them here, ``queued``
        for a detached one. :func:`spottune.launch.inline.run_here` trains any of them here."""
        raise NotImplementedError(f"backend {self.name!r} does not implement submit()")

    @classmethod
    def in_flight(cls, job_ids: Collection[str]) -> dict[str, Status]:
        """Those of ``job_ids`` (jobs it submitted) still in flight: id -> ``queued`` or
        ``running``, from one read of its queue (default: none, jobs end with the command)."""
        return {}

    @classmethod
    def cancel(cls, job_ids: Collection[str]) -> None:
        """Cancel these jobs of its own (default: nothing outlives the command to cancel)."""

    @classmethod
    def summary(cls) -> str:
        """The first paragraph of its docstring, on one line (``--help``)."""
        return " ".join(inspect.cleandoc(cls.__doc__ or "").split("\n\n")[0].split()).rstrip(".")


def register_backend(name: str) -> Callable[[type[Backend]], type[Backend]]:
    """Class decorator registering a :class:`Backend` under ``name`` (``--cluster name``)."""
    register = register_class(_REGISTRY, "backend", Backend, name)

    def decorate(cls: type[Backend]) -> type[Backend]:
        register(cls)
        cls.title = cls.title or name
        return cls

    return decorate


def list_backends() -> list[str]:
    """The registered backends' names, sorted."""
    return sorted(_REGISTRY)


def get_backend(name: str) -> type[Backend]:
    """The backend registered as ``name``; a KeyError naming the known ones (and the plugin that
    may be missing) otherwise."""
    if name not in _REGISTRY:
        raise KeyError(f"unknown backend {name!r}; known backends: {', '.join(list_backends())} (a backend of "
                       f"your own: pass the module that registers it with --plugins or $SPOTTUNE_PLUGINS)")
    return _REGISTRY[name]


def record_submission(output: Path, spec: RunSpec, job: Job, **fields: Any) -> None:
    """Record in the run's ``submitted.json`` that ``job`` owns it (with the writer's ``fields``,
    e.g. ``resources``), so that every later command follows it through its backend's queue."""
    RunFolder.of(output, spec).write_submission(job.record(**fields))
