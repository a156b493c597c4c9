"""The packed uint8 cache and the tensor augmentation."""
from __future__ import annotations

import pickle
from pathlib import Path

import pytest
import torch
from torchvision import transforms as T

from spottune.data import DatasetError
from spottune.data.image_cache import AugmentedImages, PackedImages, TensorAugment, fingerprint, pack


def _images() -> list[torch.Tensor]:
    g = torch.Generator().manual_seed(0)
    return [torch.randint(0, 256, (3, 72, w), dtype=torch.uint8, generator=g) for w in (72, 90, 131)] + [
        torch.randint(0, 256, (1, 20, 30), dtype=torch.uint8, generator=g)]


def test_round_trip_of_images_of_different_sizes(tmp_path: Path) -> None:
    images = _images()
    packed = pack(images, tmp_path / "c" / "set", fingerprint(["a", "b"]))
    assert len(packed) == 4
    for original, read in zip(images, packed):
        assert torch.equal(original, read)
    again = pickle.loads(pickle.dumps(packed))  # what a spawned DataLoader worker receives
    assert again._data is None and torch.equal(again[2], images[2])


def test_corruption_and_foreign_source_are_errors(tmp_path: Path) -> None:
    stem = tmp_path / "set"
    pack(_images(), stem, "source-1")
    with pytest.raises(DatasetError, match="built from other images"):
        pack(_images(), stem, "source-2")
    data = Path(f"{stem}.u8")
    raw = bytearray(data.read_bytes())
    raw[100] ^= 0xFF
    data.write_bytes(bytes(raw))
    with pytest.raises(DatasetError, match=f"{data} is missing or corrupt"):
        PackedImages(stem)
    assert len(PackedImages(stem, verify=False)) == 4  # size still matches: only the checksum tells


def test_tensor_augment_matches_torchvision_on_pil() -> None:
    image = _images()[2]
    mean, std = (0.5, 0.4, 0.3), (0.2, 0.25, 0.3)
    ours = TensorAugment(mean, std, crop=64, random_crop=True, flip=True)
    theirs = T.Compose([T.RandomCrop(64), T.RandomHorizontalFlip(), T.ToTensor(), T.Normalize(mean, std)])
    pil = T.functional.to_pil_image(image)
    for seed in range(6):
        torch.manual_seed(seed)
        a = ours(image)
        torch.manual_seed(seed)
        assert torch.allclose(a, theirs(pil), atol=1e-5)
    centre = TensorAugment(mean, std, crop=72)(image)
    assert torch.allclose(centre, T.Compose([T.CenterCrop(72), T.ToTensor(), T.Normalize(mean, std)])(pil),
                          atol=1e-5)
    assert TensorAugment(mean, std)(_images()[3]).shape == (3, 20, 30)  # grey -> 3 channels
    assert ours.describe() == "RandomCrop(64) + RandomHorizontalFlip + ToTensor + Normalize"


def test_batched_access_equals_one_by_one(tmp_path: Path) -> None:
    """``__getitems__`` (what DataLoader calls) draws and returns exactly what ``[i]`` does."""
    images = _images()[:3]
    augment = TensorAugment((0.5, 0.4, 0.3), (0.2, 0.25, 0.3), crop=64, random_crop=True, flip=True)
    dataset = AugmentedImages(pack(images, tmp_path / "set", "s"), [7, 8, 9], augment)
    torch.manual_seed(1)
    batch = dataset.__getitems__([2, 0, 1])
    torch.manual_seed(1)
    single = [dataset[i] for i in (2, 0, 1)]
    assert [y for _, y in batch] == [9, 7, 8]
    assert all(torch.equal(a, b) for (a, _), (b, _) in zip(batch, single))
    mixed = AugmentedImages(images + _images()[3:], [0, 1, 2, 3], TensorAugment((0.5,) * 3, (0.2,) * 3))
    assert [x.shape[-2:] for x, _ in mixed.__getitems__([0, 3])] == [(72, 72), (20, 30)]
