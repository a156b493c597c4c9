"""What every data loader hands the engine: a :class:`TaskData`, and a dataset registry.

A dataset item is ``(image, label)``: a float tensor (3, H, W), already augmented and
normalised, and an ``int`` label in ``[0, num_classes)``. Loaders are built by
:func:`make_loader`, whose order depends only on ``(seed, epoch)`` so that a resumed run
sees the same batches as an uninterrupted one.
"""
from __future__ import annotations

import fnmatch
import functools
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import torch
from torch.utils.data import DataLoader, Dataset

from spottune.seeding import epoch_generator

DATA_ENV = "SPOTTUNE_DATA"


@dataclass
class TaskData:
    """A target task: its splits, class count and the protocol details to record.

    ``info`` lands in the run's config and metrics (split names and sizes, transforms,
    normalisation, where the files were read). ``test_ids``: one id per test image that
    names it in its source (the Decathlon's devkit image ids, for a submission; elsewhere the
    image's index in its source split or listing), stored in ``predictions.npz`` so that the
    report pairs two runs' predictions only on the same images; every loader sets them. ``raw_test_images``: returns the unnormalised test
    images (N, H, W, 3 uint8) at given indices, for figures.
    """

    name: str
    num_classes: int
    train: Dataset
    test: Dataset
    image_size: int
    info: dict[str, Any] = field(default_factory=dict)
    test_ids: list[int] | None = None
    raw_test_images: Callable[[list[int]], Any] | None = None


class DatasetError(RuntimeError):
    """A dataset is missing, incomplete or corrupt; the message says what to do."""


DatasetFactory = Callable[..., TaskData]
_DATASETS: dict[str, DatasetFactory] = {}


def register_dataset(name: str) -> Callable[[DatasetFactory], DatasetFactory]:
    """Register ``factory(data_root: Path | None, **options) -> TaskData`` under ``name``."""

    def decorate(factory: DatasetFactory) -> DatasetFactory:
        if name in _DATASETS:
            raise ValueError(f"dataset {name!r} is already registered")
        _DATASETS[name] = factory
        return factory

    return decorate


def list_datasets(pattern: str = "*") -> list[str]:
    return sorted(n for n in _DATASETS if fnmatch.fnmatch(n, pattern))


def load_task(name: str, data_root: str | Path | None = None, **options: Any) -> TaskData:
    """Build the task registered as ``name``; ``data_root`` defaults to ``$SPOTTUNE_DATA``."""
    if name not in _DATASETS:
        raise KeyError(f"unknown dataset {name!r}; known datasets: {', '.join(sorted(_DATASETS))}")
    root = data_root if data_root is not None else os.environ.get(DATA_ENV)
    return _DATASETS[name](Path(root) if root else None, **options)


def test_image_lookup(data_root: str | Path | None = None,
                      options: dict[str, dict[str, Any]] | None = None) -> Callable[[str, Any], Any]:
    """``(dataset, indices) -> images`` (unnormalised test images, for the report's figures);
    ``options[dataset]``: the loader options the runs used (their test split must be the same).
    Each dataset is loaded once, on its first lookup."""

    @functools.lru_cache(maxsize=None)
    def task_of(dataset: str) -> TaskData:
        return load_task(dataset, data_root, **(options or {}).get(dataset, {}))

    def lookup(dataset: str, indices: Any) -> Any:
        task = task_of(dataset)
        if task.raw_test_images is None:
            raise LookupError(f"dataset {dataset!r} does not provide raw test images")
        return task.raw_test_images(list(indices))

    return lookup


def make_loader(dataset: Dataset, batch_size: int, *, shuffle: bool, seed: int = 0, epoch: int = 0,
                num_workers: int = 0) -> DataLoader:
    """A ``DataLoader`` whose order (and worker seeds) depend only on ``(seed, epoch)``
    (:func:`spottune.seeding.epoch_generator`, the data-order stream)."""
    return DataLoader(dataset, batch_size=batch_size, shuffle=shuffle, num_workers=num_workers,
                      generator=epoch_generator(seed, epoch), drop_last=False,
                      persistent_workers=False, pin_memory=torch.cuda.is_available())
