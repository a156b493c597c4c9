"""The Visual Decathlon devkit reader on tiny devkits written in the real JSON format."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from torchvision import transforms as T

from spottune.data import DatasetError, list_datasets, load_task
from spottune.data.decathlon import MEAN_STD, augmentations, first_category
from spottune.data.images import decode_rgb
from spottune.visual_decathlon import DOMAINS
from tests.data_fixtures import write_devkit

COUNTS = {"train": 9, "val": 6, "test": 5}


@pytest.fixture(scope="module")
def root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("decathlon")
    write_devkit(root, "aircraft", COUNTS, num_classes=3, size=(96, 72))
    write_devkit(root, "gtsrb", {"train": 3, "val": 2, "test": 2}, num_classes=2, size=(72, 80),
                 test_labels="zip")
    write_devkit(root, "daimlerpedcls", {"train": 2, "val": 2, "test": 2}, num_classes=2, size=(72, 144),
                 test_labels=None)
    return root


def test_all_ten_domains_are_registered() -> None:
    assert list_datasets("decathlon/*") == [f"decathlon/{d}" for d in DOMAINS]


def test_released_protocol_trains_on_train_plus_val_and_scores_test(root: Path) -> None:
    task = load_task("decathlon/aircraft", root)
    assert task.num_classes == 3
    assert (len(task.train), len(task.test)) == (15, 5)
    assert task.info["split"] == "train+val" and task.info["test_labelled"]
    first_test_id = first_category("aircraft") - 1 + COUNTS["train"] + COUNTS["val"] + 1
    assert task.test_ids == list(range(first_test_id, first_test_id + 5))
    # train then val, classes k % 3 from category ids d*10^7 + class + 1
    assert task.train.labels == [k % 3 for k in range(9)] + [k % 3 for k in range(6)]
    assert task.test.labels == [k % 3 for k in range(5)]
    assert task.info["label_mapping"] == "class = category_id - 10000001"


def test_labels_match_the_pixels(root: Path) -> None:
    """The fixture paints class c with grey 20 + 100 c: mapping and normalisation agree."""
    task = load_task("decathlon/aircraft", root)
    mean, std = (torch.tensor(v).view(3, 1, 1) for v in MEAN_STD["aircraft"])
    for i in range(len(task.test)):
        x, label = task.test[i]
        grey = float((x * std + mean).mean()) * 255
        assert abs(grey - (20 + 100 * label)) < 4


def test_train_only_protocols(root: Path) -> None:
    val = load_task("decathlon/aircraft", root, split="train", eval_split="val")
    assert (len(val.train), len(val.test)) == (9, 6)
    held = load_task("decathlon/aircraft", root, split="train", eval_split="holdout", holdout=1 / 3)
    assert (len(held.train), len(held.test)) == (6, 3)
    assert sorted(held.test.labels) == [0, 1, 2]  # stratified: one per class
    assert held.info["holdout"] == {"fraction": 1 / 3, "seed": 0}
    train_ids = set(range(first_category("aircraft"), first_category("aircraft") + COUNTS["train"]))
    assert len(set(held.test_ids)) == 3 and set(held.test_ids) <= train_ids
    with pytest.raises(DatasetError, match="val images are training images"):
        load_task("decathlon/aircraft", root, eval_split="val")


@pytest.mark.parametrize("domain,transforms,train_shape,test_shape", [
    ("aircraft", "released", (3, 64, 64), (3, 72, 72)),
    ("aircraft", "rebuffi", (3, 64, 64), (3, 64, 64)),
    ("gtsrb", "released", (3, 72, 72), (3, 72, 72)),
    ("gtsrb", "rebuffi", (3, 72, 72), (3, 72, 72)),
    ("daimlerpedcls", "released", (3, 144, 72), (3, 144, 72)),
    ("daimlerpedcls", "rebuffi", (3, 64, 64), (3, 64, 64)),
])
def test_transform_output_shapes(root: Path, domain: str, transforms: str, train_shape: tuple,
                                 test_shape: tuple) -> None:
    task = load_task(f"decathlon/{domain}", root, transforms=transforms)
    assert tuple(task.train[0][0].shape) == train_shape
    assert tuple(task.test[0][0].shape) == test_shape
    assert task.raw_test_images([0, 1]).shape == (2, test_shape[1], test_shape[2], 3)
    assert task.info["transforms"] == transforms


@pytest.mark.parametrize("transforms,reference", [
    ("released", [T.Resize(72), T.RandomCrop(64)]),
    ("rebuffi", [T.Resize(72), T.RandomCrop(64), T.RandomHorizontalFlip()]),
])
def test_training_transform_equals_the_reference_code_pipeline(root: Path, transforms: str,
                                                               reference: list) -> None:
    """Same random state -> the same tensor as the reference code's torchvision PIL pipeline."""
    task = load_task("decathlon/aircraft", root, transforms=transforms)
    pipeline = T.Compose(reference + [T.ToTensor(), T.Normalize(*MEAN_STD["aircraft"])])
    for i in range(4):
        torch.manual_seed(i)
        ours = task.train[i][0]
        torch.manual_seed(i)
        theirs = pipeline(decode_rgb(task.train.images.dataset.files[task.train.images.indices[i]]))
        assert torch.allclose(ours, theirs, atol=1e-5)


def test_packed_cache_gives_the_same_tensors_and_is_built_once(root: Path, tmp_path: Path) -> None:
    jpeg = load_task("decathlon/aircraft", root)
    packed = load_task("decathlon/aircraft", root, cache="packed", cache_dir=str(tmp_path))
    manifest = next(tmp_path.glob("aircraft-*.json"))
    built = manifest.stat().st_mtime_ns
    for i in range(len(jpeg.test)):
        assert torch.equal(jpeg.test[i][0], packed.test[i][0])
    torch.manual_seed(3)
    a = jpeg.train[4][0]
    torch.manual_seed(3)
    assert torch.equal(a, packed.train[4][0])
    load_task("decathlon/aircraft", root, cache="packed", cache_dir=str(tmp_path))
    assert manifest.stat().st_mtime_ns == built
    assert "packed" in packed.info["image_source"]


def test_test_labels_from_zip_or_missing(root: Path) -> None:
    gtsrb = load_task("decathlon/gtsrb", root)
    assert gtsrb.info["test_labels_source"].endswith("labels_test.zip:labels_test/gtsrb_test.json")
    assert gtsrb.test.labels == [0, 1]
    unlabelled = load_task("decathlon/daimlerpedcls", root)
    assert not unlabelled.info["test_labelled"] and unlabelled.test.labels == [-1, -1]
    assert len(unlabelled.test_ids) == 2


def test_data_root_from_environment(root: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SPOTTUNE_DATA", str(root))
    assert len(load_task("decathlon/aircraft").train) == 15


def test_missing_devkit_names_path_and_layout(tmp_path: Path) -> None:
    with pytest.raises(DatasetError, match=r"(?s)decathlon-1.0/annotations.*Expected layout.*test_stripped"):
        load_task("decathlon/aircraft", tmp_path)
    write_devkit(tmp_path, "aircraft", {"train": 2, "val": 2}, num_classes=2)
    with pytest.raises(DatasetError, match="dtd_train.json"):
        load_task("decathlon/dtd", tmp_path)


def test_corrupt_image_names_the_file(tmp_path: Path) -> None:
    devkit = write_devkit(tmp_path, "dtd", {"train": 3, "val": 2, "test": 2}, num_classes=2)
    bad = devkit / "data" / "dtd" / "train" / "0000001.jpg"
    bad.write_bytes(bad.read_bytes()[:60])
    task = load_task("decathlon/dtd", tmp_path)
    with pytest.raises(DatasetError, match=f"corrupt or unreadable image {bad}"):
        task.train[1]


def test_label_out_of_range_names_the_file(tmp_path: Path) -> None:
    devkit = write_devkit(tmp_path, "svhn", {"train": 3, "val": 2, "test": 2}, num_classes=2)
    path = devkit / "annotations" / "svhn_val.json"
    doc = json.loads(path.read_text())
    doc["annotations"][1]["category_id"] = first_category("svhn") + 7
    path.write_text(json.dumps(doc))
    with pytest.raises(DatasetError, match=r"label 7 of .*data/svhn/val/0000001.jpg .*svhn_val.json"):
        load_task("decathlon/svhn", tmp_path)


def test_wrong_category_ids_are_rejected(tmp_path: Path) -> None:
    devkit = write_devkit(tmp_path, "ucf101", {"train": 2, "val": 2, "test": 2}, num_classes=2)
    path = devkit / "annotations" / "ucf101_train.json"
    doc = json.loads(path.read_text())
    for c in doc["categories"]:
        c["id"] += 5
    path.write_text(json.dumps(doc))
    with pytest.raises(DatasetError, match="category ids of ucf101 must be 90000001"):
        load_task("decathlon/ucf101", tmp_path)


def test_raw_test_images_are_uint8_crops(root: Path) -> None:
    images = load_task("decathlon/aircraft", root).raw_test_images([0, 2])
    assert images.dtype == np.uint8 and images.shape == (2, 72, 72, 3)


def test_released_centre_crop_rounds_as_python2() -> None:
    """An image 73 px wide (Resize(72) of a 72 x 73 image): the released code, under Python 2,
    cropped columns 1..72; torchvision's CenterCrop under Python 3 crops 0..71."""
    image = torch.arange(73, dtype=torch.uint8).repeat(3, 72, 1)  # column j holds the value j
    _, released_test = augmentations("aircraft", "released")
    assert released_test.crop_image(image)[0, 0, [0, -1]].tolist() == [1, 72]
    python3 = T.CenterCrop(72)(image)
    assert python3[0, 0, [0, -1]].tolist() == [0, 71]
    _, rebuffi_test = augmentations("aircraft", "rebuffi")
    assert not rebuffi_test.python2_rounding
    assert "Python 2 rounding" in released_test.describe()
    # margins 1, 5, 9, ... (half-pixel offsets 0.5, 2.5, ...) differ; the others do not
    assert [released_test.centre_offset(m) for m in range(7)] == [0, 1, 1, 2, 2, 3, 3]
    assert [int(round(m / 2.0)) for m in range(7)] == [0, 0, 1, 2, 2, 2, 3]
