from __future__ import annotations

import pytest
import torch

from spottune.data import DatasetError, load_task, make_loader
from spottune.data import mini
from spottune.estimates.dataset_sizes import MINI_CLASSES, run_sizes

EXPECTED = {  # name: (classes, train, test)
    "mini_source": (6, 36000, 6000),
    "fmnist_heldout": (4, 1000, 1000),
    "digits": (10, 1198, 599),
    "glyph_letters": (26, 1310, 874),
    "glyph_fonts": (7, 1080, 720),
}


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_mini_tasks_sizes_classes_shapes(name):
    task = load_task(name)
    classes, n_train, n_test = EXPECTED[name]
    assert (task.num_classes, len(task.train), len(task.test)) == (classes, n_train, n_test)
    labels = task.train.labels
    assert labels.min() == 0 and labels.max() == classes - 1 and len(labels.unique()) == classes
    x, y = task.test[0]
    assert x.shape == (3, 32, 32) and x.dtype == torch.float32 and isinstance(y, int)
    assert task.info["train_images"] == n_train


def test_splits_are_deterministic_and_disjoint():
    a, b = load_task("glyph_letters"), load_task("glyph_letters")
    assert torch.equal(a.train.images, b.train.images) and torch.equal(a.test.labels, b.test.labels)
    train = {bytes(img.numpy()) for img in a.train.images}
    assert not any(bytes(img.numpy()) in train for img in a.test.images)


def test_heldout_classes_are_not_in_the_source():
    source = load_task("mini_source")
    held = load_task("fmnist_heldout")
    src = {bytes(img.numpy()) for img in source.train.images[:5000]}
    assert not any(bytes(img.numpy()) in src for img in held.train.images)


def test_training_augmentation_crops_and_normalisation():
    task = load_task("digits")
    xs = torch.stack([task.train[0][0] for _ in range(8)])
    assert xs.shape == (8, 3, 32, 32) and not all(torch.equal(xs[0], x) for x in xs[1:])
    loader = make_loader(task.test, 599, shuffle=False)
    batch, _ = next(iter(loader))
    assert abs(batch.mean().item()) < 0.15  # normalised with the training split's statistics


def test_image_size_resizes_once_and_scales_the_padding():
    small, large = load_task("digits"), load_task("digits", image_size=64)
    assert large.image_size == 64 and large.info["image_size"] == 64 and large.train.pad == 4
    assert large.train.images.shape[-2:] == (64, 64) and large.train[0][0].shape == (3, 64, 64)
    assert large.info["train_transform"] == "bilinear resize 32 -> 64, zero-pad 4 + random crop 64"
    assert large.info["test_transform"] == "bilinear resize 32 -> 64"
    # the same images: averaging 2x2 blocks of the resized ones comes back to the originals
    back = torch.nn.functional.avg_pool2d(large.test.images.float(), 2)
    assert (back - small.test.images.float()).abs().mean() < 3  # grey levels of 255
    assert torch.equal(load_task("digits", image_size=32).train.images, small.train.images)
    with pytest.raises(ValueError, match="image_size must be at least 32 px"):
        load_task("digits", image_size=16)


@pytest.mark.parametrize("name", ["fmnist_heldout", "digits", "glyph_letters"])
def test_train_per_class_keeps_a_fixed_random_subset_and_the_whole_test_split(name):
    full, few = load_task(name), load_task(name, train_per_class=5)
    assert torch.equal(torch.bincount(few.train.labels), torch.full((full.num_classes,), 5))
    assert few.info["train_images"] == 5 * full.num_classes and few.info["train_per_class"] == 5
    assert torch.equal(few.test.images, full.test.images) and few.test_ids == full.test_ids
    # drawn from the task's own training images, the same ones every time (not the first in order)
    rows = {tuple(x.flatten().tolist()) for x in full.train.images}
    assert all(tuple(x.flatten().tolist()) in rows for x in few.train.images)
    assert torch.equal(load_task(name, train_per_class=5).train.images, few.train.images)
    first = torch.cat([torch.nonzero(full.train.labels == c).flatten()[:5] for c in range(full.num_classes)])
    assert not torch.equal(full.train.images[first.sort().values], few.train.images)


@pytest.mark.parametrize("name", sorted(MINI_CLASSES))
def test_the_cost_estimates_sizes_are_the_loaders(name):
    """``dataset_sizes`` (what ``--dry-run`` estimates from, without loading) is a hand-kept copy:
    it must say what the loader gives, with and without ``train_per_class``."""
    for options in ({}, {"train_per_class": 3}):
        task = load_task(name, **options)
        assert task.num_classes == MINI_CLASSES[name]
        assert run_sizes(name, options) == (len(task.train), len(task.test)), options


@pytest.mark.parametrize("bad", [0, -3, 2.5, True, "10"])
def test_train_per_class_rejects_what_is_not_a_positive_integer(bad):
    with pytest.raises(ValueError, match="train_per_class must be a positive integer"):
        load_task("digits", train_per_class=bad)


def test_loader_order_depends_only_on_seed_and_epoch():
    task = load_task("digits")
    order = lambda s, e: next(iter(make_loader(task.test, 599, shuffle=True, seed=s, epoch=e)))[1]  # noqa: E731
    assert torch.equal(order(0, 1), order(0, 1)) and not torch.equal(order(0, 1), order(0, 2))


def test_missing_fashion_mnist_names_the_places_and_the_fix(tmp_path, monkeypatch):
    monkeypatch.setattr(mini, "DEBIAN_FMNIST", tmp_path / "nowhere")
    mini.read_fashion_mnist.cache_clear()
    with pytest.raises(DatasetError) as err:
        load_task("fmnist_heldout", data_root=tmp_path)
    mini.read_fashion_mnist.cache_clear()
    message = str(err.value)
    assert str(tmp_path / "FashionMNIST" / "raw") in message and "apt-get install dataset-fashion-mnist" in message
    assert "--download" in message


def test_fashion_mnist_read_from_data_root_in_torchvision_layout(tmp_path):
    import gzip
    import shutil

    raw = tmp_path / "FashionMNIST" / "raw"
    raw.mkdir(parents=True)
    for f in mini.DEBIAN_FMNIST.glob("t10k-*"):
        shutil.copy(f, raw / f.name)
    with gzip.open(mini.DEBIAN_FMNIST / "t10k-labels-idx1-ubyte.gz") as f:
        (raw / "t10k-labels-idx1-ubyte").write_bytes(f.read())
    (raw / "t10k-labels-idx1-ubyte.gz").unlink()
    images, labels = mini.read_fashion_mnist("test", tmp_path)
    assert images.shape == (10000, 1, 28, 28) and labels.shape == (10000,)
    assert images.dtype == torch.uint8 and int(labels.max()) == 9
