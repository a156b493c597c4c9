"""Loader throughput on Decathlon-shaped data: the packed cache vs decoding the JPEGs with PIL.

One worker (the main process, ``num_workers=0``, one intra-op thread as in a ``DataLoader``
worker, whatever ``SPOTTUNE_BENCH_THREADS`` says), one epoch of 1,024 aircraft-like images
(72 px high, 72 to 130 px wide, smooth natural-looking content, JPEG quality 90) through
exactly what ``decathlon/aircraft`` builds: ``Resize(72)`` (JPEG path: per access; packed:
once, at build), the released ``RandomCrop(64)``, normalisation, shuffled batches of 128
from :func:`spottune.data.make_loader`. The packed path must be at least 5x faster::

    OMP_NUM_THREADS=1 python -m pytest benchmarks/test_bench_data.py
"""
from __future__ import annotations

import time
from typing import Any, Iterator

import numpy as np
import pytest
import torch
from PIL import Image

from spottune.data import make_loader
from spottune.data.decathlon import augmentations, resize_to_tensor
from spottune.data.images import ImageFiles
from spottune.data.image_cache import AugmentedImages, fingerprint, pack

N_IMAGES, BATCH, MIN_SPEEDUP = 1024, 128, 5.0


@pytest.fixture(autouse=True)
def one_thread() -> Iterator[None]:
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="module")
def sources(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    folder = tmp_path_factory.mktemp("bench")
    rng = np.random.RandomState(0)
    files = []
    for i in range(N_IMAGES):
        width = int(rng.randint(72, 131))
        coarse = rng.randint(0, 256, (6, 8, 3)).astype(np.uint8)
        image = Image.fromarray(coarse).resize((width, 72), Image.BICUBIC)
        noisy = np.clip(np.asarray(image, dtype=np.int16) + rng.randint(-12, 13, (72, width, 3)), 0, 255)
        files.append(folder / f"{i:07d}.jpg")
        Image.fromarray(noisy.astype(np.uint8)).save(files[-1], quality=90)
    images = ImageFiles(files, resize_to_tensor)
    return {"jpeg": images, "packed": pack(images, folder / "packed" / "aircraft",
                                           fingerprint([str(f) for f in files]))}


def _dataset(images: Any) -> AugmentedImages:
    train, _ = augmentations("aircraft", "released")
    return AugmentedImages(images, [i % 100 for i in range(len(images))], train)


def _epoch(dataset: AugmentedImages) -> int:
    seen = 0
    for x, _ in make_loader(dataset, BATCH, shuffle=True, seed=0, epoch=0):
        seen += len(x)
    return seen


def _images_per_second(dataset: AugmentedImages, repeats: int = 3) -> float:
    best = min(_timed(dataset) for _ in range(repeats))
    return len(dataset) / best


def _timed(dataset: AugmentedImages) -> float:
    start = time.perf_counter()
    _epoch(dataset)
    return time.perf_counter() - start


@pytest.mark.parametrize("path", ["jpeg", "packed"])
def test_epoch_throughput(benchmark: Any, sources: dict[str, Any], path: str) -> None:
    benchmark.group = "decathlon-72px loader, 1 worker, 1024 images"
    dataset = _dataset(sources[path])
    assert benchmark.pedantic(_epoch, args=(dataset,), rounds=5, warmup_rounds=1) == N_IMAGES
    benchmark.extra_info["images_per_second"] = N_IMAGES / benchmark.stats.stats.min


def test_packed_is_at_least_5x_faster_per_worker(sources: dict[str, Any]) -> None:
    jpeg, packed = (_images_per_second(_dataset(sources[p])) for p in ("jpeg", "packed"))
    print(f"\nimages/s, 1 worker: JPEG + PIL {jpeg:,.0f}, packed {packed:,.0f}, x{packed / jpeg:.1f}")
    assert packed >= MIN_SPEEDUP * jpeg
