"""A grid's suite pretrainings as runs of the grid: which ones its runs need, where each stands.

A run whose backbone is pretrained by the suite (``backbone.pretrained.kind: suite``) needs
that pretraining's weights in the cache (:mod:`spottune.pretraining.cache`) before it starts.
The pretraining is a run of its own kind (:func:`spottune.pretraining.cache.pretraining_spec`,
``kind: pretraining``, its id the cache key, its folder ``<output>/pretraining/<id>/``):
:func:`spottune.launch.status.states_of` lists the grid's pretrainings before its runs, every
launcher hands them to the backend first, and the engine trains them
(:func:`spottune.engine.run`). A backend that trains here runs them first, in order
(:func:`spottune.launch.inline.launch_inline`, which starts no run whose pretraining failed);
a detached one submits each as a job the runs' jobs depend on (SLURM's ``afterok``).

A pretraining is done while the cache holds its weights, whatever its folder says: the cache is
shared by every output folder and may be emptied. Its cache is the one its records name
(``cache`` in its ``submitted.json``, or in the ``config.json`` of the process that trained it:
a SLURM profile's ``cache_dir`` may differ from the current ``$SPOTTUNE_CACHE``), else the
current one (:func:`cache_entry`).
"""
from __future__ import annotations

from collections.abc import Collection
from pathlib import Path

from spottune.pretraining.cache import SuitePretraining, pretraining_spec
from spottune.storage.records import CONFIG, PRETRAINING, RecordError, RunFolder, RunSpec, read_json


def pretraining_of(spec: RunSpec) -> RunSpec | None:
    """The suite pretraining run ``spec`` starts from (None when it starts from none)."""
    backbone = spec.hparams.get("backbone", {})
    if spec.kind == PRETRAINING or backbone.get("pretrained", {}).get("kind") != "suite":
        return None
    return pretraining_spec(backbone)


def grid_pretrainings(specs: list[RunSpec]) -> list[RunSpec]:
    """The distinct suite pretrainings the runs ``specs`` start from, in order."""
    needed = {p.run_id: p for p in map(pretraining_of, specs) if p is not None}
    return list(needed.values())


def with_pretrainings(specs: list[RunSpec]) -> list[RunSpec]:
    """``specs`` after the suite pretrainings they start from (the order every launcher keeps)."""
    return [*grid_pretrainings(specs), *specs]


def blocked_by(failed: Collection[str], specs: list[RunSpec]) -> list[RunSpec]:
    """The runs of ``specs`` whose pretraining is among ``failed`` (run ids)."""
    return [s for s in specs if (p := pretraining_of(s)) is not None and p.run_id in failed]


def cache_entry(output: Path, spec: RunSpec) -> SuitePretraining:
    """The cache entry the pretraining ``spec`` publishes to: in the cache its records in
    ``output`` name (its job's ``submitted.json``, else the ``config.json`` its training
    wrote), else in the current cache; a :class:`~spottune.storage.records.RecordError`
    naming the file when a record does not say one."""
    folder = RunFolder.of(output, spec)
    for record, path in ((folder.read_submission(), folder / "submitted.json"),
                         (read_json(folder / CONFIG) if (folder / CONFIG).exists() else None, folder / CONFIG)):
        if record is None:
            continue
        if not isinstance(record, dict) or not isinstance(record.get("cache", ""), str):
            raise RecordError(f"{path}: not a pretraining's record (its cache is not a folder); delete it and "
                              f"launch again")
        if record.get("cache"):
            return SuitePretraining(spec.hparams["backbone"], Path(record["cache"]))
    return SuitePretraining(spec.hparams["backbone"])

