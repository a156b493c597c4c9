"""Labelled image files: decoding, label and layout checks, held-out splits.

Every file-based loader (Decathlon devkit, Piggyback folders, torchvision layouts) ends in
a :class:`LabelledImages` over an image source. Bad input stops the run with a
:class:`~spottune.data.base.DatasetError` that says what is wrong and where:

- a missing folder or annotation file names the expected path and the expected layout
  (:func:`require`);
- an image that cannot be decoded names the file (:class:`ImageFiles`); nothing is skipped;
- a label outside ``[0, num_classes)`` names its file (:func:`check_labels`).
"""
from __future__ import annotations

from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np
import torch
from PIL import Image
from torch.utils.data import Dataset

from spottune.data.base import DatasetError


def require(path: Path, layout: str) -> Path:
    """``path`` if it exists, else a :class:`DatasetError` naming it and the expected ``layout``."""
    if not path.exists():
        raise DatasetError(f"not found: {path}\nExpected layout:\n{layout}\n"
                           "See docs/DATA.md (and `python -m spottune.data.prepare`).")
    return path


def decode_rgb(path: str | Path) -> Image.Image:
    """The image at ``path`` fully decoded as RGB; a corrupt or unreadable file raises
    :class:`DatasetError` naming it."""
    try:
        with Image.open(path) as image:
            return image.convert("RGB")
    except (OSError, ValueError, SyntaxError) as error:
        raise DatasetError(f"corrupt or unreadable image {path}: {error}. "
                           "Replace or re-extract the file; the run stops here.") from error


class ImageFiles:
    """A sequence of image files, decoded on access with :func:`decode_rgb`, then ``prepare``d
    (e.g. resized and turned into a uint8 tensor)."""

    def __init__(self, files: Sequence[Path], prepare: Callable[[Image.Image], Any] | None = None) -> None:
        self.files = list(files)
        self.prepare = prepare

    def __len__(self) -> int:
        return len(self.files)

    def __getitem__(self, index: int) -> Any:
        image = decode_rgb(self.files[index])
        return self.prepare(image) if self.prepare else image


class LabelledImages(Dataset):
    """``(transform(images[i]), labels[i])``: the dataset type of every file-based loader."""

    def __init__(self, images: Sequence[Any], labels: Sequence[int], transform: Callable[[Any], torch.Tensor]
                 ) -> None:
        if len(images) != len(labels):
            raise ValueError(f"{len(images)} images but {len(labels)} labels")
        self.images = images
        self.labels = [int(label) for label in labels]
        self.transform = transform

    def __len__(self) -> int:
        return len(self.labels)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, int]:
        return self.transform(self.images[index]), self.labels[index]


def check_labels(labels: Sequence[int], num_classes: int, files: Sequence[Any], source: str) -> None:
    """Raise :class:`DatasetError` for the first label outside ``[0, num_classes)``, naming its file."""
    for label, file in zip(labels, files):
        if not 0 <= label < num_classes:
            raise DatasetError(f"label {label} of {file} (from {source}) is outside the "
                               f"{num_classes} classes [0, {num_classes - 1}]")


def stratified_holdout(labels: Sequence[int], fraction: float, seed: int) -> tuple[list[int], list[int]]:
    """Indices ``(kept, held_out)``: ``round(fraction * n_c)`` images of every class c held out,
    chosen by a ``numpy`` permutation seeded with ``seed``; both lists in ascending order."""
    if not 0 < fraction < 1:
        raise ValueError(f"holdout fraction must be in (0, 1), got {fraction}")
    labels_array = np.asarray(labels)
    rng = np.random.RandomState(seed)
    held: list[int] = []
    for label in np.unique(labels_array):
        members = np.flatnonzero(labels_array == label)
        held.extend(rng.permutation(members)[:int(round(fraction * len(members)))].tolist())
    held_set = set(held)
    return [i for i in range(len(labels_array)) if i not in held_set], sorted(held)
