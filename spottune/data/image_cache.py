"""The fast path for small images: a packed, memory-mapped uint8 cache and tensor augmentation.

A cache is built once from any sequence of uint8 ``(C, H, W)`` tensors (e.g. the Decathlon
JPEGs decoded and resized to 72 px) and stored as three files next to each other:

``<stem>.u8``
    every image's bytes, C-order ``(C, H, W)``, concatenated; images may differ in size.
``<stem>.index.npy``
    int64 ``(N, 4)``: byte offset, C, H, W of every image.
``<stem>.json``
    the manifest, written last (its presence means the cache is complete): format version,
    image count, ``source`` (the caller's fingerprint of what was packed: file list and
    preprocessing), byte size and SHA-256 of the data and index files.

Opening a cache checks the sizes and, unless ``verify=False``, the SHA-256 of both files; a
mismatch is an error that names the files (delete them to rebuild). Builds write uniquely named temporary
files and rename them into place, so runs (on any host) that build the same cache at once are safe.
Reading maps the data file (copy-on-write) and slices one image without copying, so a
worker reads at memory speed; the map is reopened lazily in every worker process.

:class:`TensorAugment` does on uint8 tensors what the torchvision pipeline
``[RandomCrop | CenterCrop] -> [RandomHorizontalFlip] -> ToTensor -> Normalize`` does on PIL
images, with the same random draws in the same order from the global torch generator, so the
packed path and the JPEG path give identical tensors for identical random states (and the same
as the reference code's PIL pipeline up to float rounding).
"""
from __future__ import annotations

import hashlib
import json
import logging
import os
import uuid
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import torch

from spottune.storage import records
from spottune.data.base import DatasetError
from spottune.data.images import LabelledImages

FORMAT_VERSION = 1
_CHUNK = 1 << 22
log = logging.getLogger(__name__)


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(_CHUNK):
            digest.update(block)
    return digest.hexdigest()


def fingerprint(items: Sequence[str]) -> str:
    """SHA-256 of ``items`` (one per line): a cache's ``source``, e.g. file names + preprocessing."""
    return hashlib.sha256("\n".join(items).encode()).hexdigest()


class PackedImages:
    """The images of one cache, read through a memory map: ``packed[i]`` is a uint8 ``(C, H, W)``
    tensor sharing memory with the map (read-only use)."""

    def __init__(self, stem: Path, verify: bool = True) -> None:
        self.stem = Path(stem)
        self.data_path = Path(f"{self.stem}.u8")
        self.index_path = Path(f"{self.stem}.index.npy")
        self.manifest = json.loads(Path(f"{self.stem}.json").read_text())
        if self.manifest.get("format") != FORMAT_VERSION:
            raise DatasetError(f"packed cache {self.stem}.json has format {self.manifest.get('format')}, "
                               f"this suite reads format {FORMAT_VERSION}: delete {self.stem}.* to rebuild")
        self._check(verify)
        self.index = np.load(self.index_path, allow_pickle=False)  # its size (and SHA-256) checked above
        self._data: torch.Tensor | None = None

    def _check(self, verify: bool) -> None:
        for path, key in ((self.data_path, "data"), (self.index_path, "index")):
            expected = self.manifest[key]
            if not path.exists() or path.stat().st_size != expected["bytes"] or (
                    verify and _sha256(path) != expected["sha256"]):
                raise DatasetError(f"packed cache file {path} is missing or corrupt (size or SHA-256 "
                                   f"differs from {self.stem}.json): delete {self.stem}.* to rebuild it")

    @property
    def source(self) -> str:
        return self.manifest["source"]

    def __len__(self) -> int:
        return len(self.index)

    def __getitem__(self, i: int) -> torch.Tensor:
        if self._data is None:
            self._data = torch.from_numpy(np.memmap(self.data_path, dtype=np.uint8, mode="c"))
        offset, c, h, w = self.index[i].tolist()
        return self._data[offset:offset + c * h * w].view(c, h, w)

    def __getstate__(self) -> dict[str, Any]:
        return {**self.__dict__, "_data": None}


def pack(images: Sequence[torch.Tensor], stem: Path, source: str, verify: bool = True) -> PackedImages:
    """The cache at ``stem`` for ``source``: opened if complete, else built from ``images``.

    A complete cache built from another ``source`` is an error (pick another ``stem``)."""
    stem = Path(stem)
    manifest = Path(f"{stem}.json")
    if manifest.exists():
        packed = PackedImages(stem, verify)
        if packed.source != source:
            raise DatasetError(f"packed cache {manifest} was built from other images "
                               f"(source {packed.source[:16]}..., wanted {source[:16]}...)")
        return packed
    stem.parent.mkdir(parents=True, exist_ok=True)
    tmp = f".tmp-{uuid.uuid4().hex}"  # unique across processes and hosts sharing the folder
    data_tmp = Path(f"{stem}.u8{tmp}")
    index = np.zeros((len(images), 4), dtype=np.int64)
    log.info("packing %d images into %s.u8", len(images), stem)
    offset = 0
    with open(data_tmp, "wb") as f:
        for i in range(len(images)):
            image = images[i]
            if image.dtype != torch.uint8 or image.dim() != 3:
                raise ValueError(f"image {i}: expected uint8 (C, H, W), got {image.dtype} {tuple(image.shape)}")
            f.write(image.contiguous().numpy().tobytes())
            index[i] = (offset, *image.shape)
            offset += image.numel()
    index_tmp = Path(f"{stem}.index.npy{tmp}")
    with open(index_tmp, "wb") as f:
        np.save(f, index)
    entry = {"format": FORMAT_VERSION, "count": len(images), "source": source,
             "data": {"bytes": offset, "sha256": _sha256(data_tmp)},
             "index": {"bytes": index_tmp.stat().st_size, "sha256": _sha256(index_tmp)}}
    os.replace(data_tmp, f"{stem}.u8")
    os.replace(index_tmp, f"{stem}.index.npy")
    records.atomic_write_bytes(manifest, json.dumps(entry, indent=1).encode())
    return PackedImages(stem, verify=False)


class TensorAugment:
    """Crop, flip and normalise a uint8 ``(C, H, W)`` tensor into a float ``(3, h, w)`` one.

    ``crop``: output side (square), or ``None`` for the whole image. ``random_crop``: the
    crop's corner is drawn like torchvision's ``RandomCrop`` (``torch.randint`` for the row,
    then the column; no draw when the image already has the crop's size), else it is centred
    like ``CenterCrop`` (``round((H - crop) / 2)``). ``python2_rounding``: that ``round`` as
    Python 2 computed it (halves away from zero), as the released code ran torchvision's
    ``CenterCrop`` under Python 2: an odd margin puts the extra pixel before the crop
    (73 px -> offset 1) where Python 3's round-half-to-even puts it after (offset 0); margins of
    1, 5, 9, ... px differ that way, the others not at all. ``flip``: mirrored when
    ``torch.rand(1) < 0.5``, drawn after the crop. Then ``(x - 255 mean) / (255 std)``, which is
    ``ToTensor + Normalize`` up to float rounding (< 1e-6) in three tensor operations instead of
    four; one-channel images are repeated to three channels first.
    """

    def __init__(self, mean: Sequence[float], std: Sequence[float], crop: int | None = None,
                 random_crop: bool = False, flip: bool = False, python2_rounding: bool = False) -> None:
        self.mean255 = 255 * torch.tensor(mean, dtype=torch.float32).view(3, 1, 1)
        self.std255 = 255 * torch.tensor(std, dtype=torch.float32).view(3, 1, 1)
        self.crop = crop
        self.random_crop = random_crop
        self.flip = flip
        self.python2_rounding = python2_rounding

    def centre_offset(self, margin: int) -> int:
        """``round(margin / 2)`` as torchvision's ``CenterCrop`` computes it, in this Python or in Python 2."""
        return (margin + 1) // 2 if self.python2_rounding else int(round(margin / 2.0))

    def crop_image(self, x: torch.Tensor) -> torch.Tensor:
        """The geometric part (crop, flip) on the uint8 image."""
        c = self.crop
        if c is not None:
            h, w = x.shape[-2:]
            if h < c or w < c:
                raise ValueError(f"image of {h}x{w} px is smaller than the {c}-px crop")
            if not self.random_crop:
                i, j = self.centre_offset(h - c), self.centre_offset(w - c)
            elif h == c and w == c:
                i = j = 0
            else:
                i = int(torch.randint(0, h - c + 1, (1,)))
                j = int(torch.randint(0, w - c + 1, (1,)))
            x = x[:, i:i + c, j:j + c]
        if self.flip and bool(torch.rand(1) < 0.5):
            x = x.flip(-1)
        return x

    def normalize(self, x: torch.Tensor) -> torch.Tensor:
        """uint8 ``(..., C, H, W)`` -> float ``(..., 3, H, W)``, one image or a batch."""
        if x.shape[-3] == 1:
            x = x.expand(*x.shape[:-3], 3, *x.shape[-2:])
        return x.float().sub_(self.mean255).div_(self.std255)

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        return self.normalize(self.crop_image(x))

    def describe(self) -> str:
        """The equivalent torchvision steps, for the run's protocol record."""
        steps = []
        if self.crop is not None:
            rounding = ", Python 2 rounding" if self.python2_rounding and not self.random_crop else ""
            steps.append(f"{'RandomCrop' if self.random_crop else 'CenterCrop'}({self.crop}{rounding})")
        if self.flip:
            steps.append("RandomHorizontalFlip")
        return " + ".join(steps + ["ToTensor", "Normalize"])


class AugmentedImages(LabelledImages):
    """``(augment(images[i]), labels[i])`` over a sequence of uint8 ``(C, H, W)`` tensors (a
    packed cache, or JPEGs decoded to tensors).

    A batch (``__getitems__``, what ``DataLoader`` asks for) crops its images one by one, with
    the same random draws as one-by-one access, then normalises all crops of equal size in
    one operation: the same tensors, a fraction of the per-image overhead.
    """

    transform: TensorAugment

    def __init__(self, images: Sequence[torch.Tensor], labels: Sequence[int], augment: TensorAugment) -> None:
        super().__init__(images, labels, augment)

    def __getitems__(self, indices: list[int]) -> list[tuple[torch.Tensor, int]]:
        crops = [self.transform.crop_image(self.images[i]) for i in indices]
        if len({crop.shape for crop in crops}) == 1:
            images = self.transform.normalize(torch.stack(crops)).unbind(0)
        else:
            images = tuple(self.transform.normalize(crop) for crop in crops)
        return list(zip(images, (self.labels[i] for i in indices)))
