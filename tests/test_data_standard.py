"""The standard datasets on tiny fixtures in Piggyback's folders and torchvision's raw layouts."""
from __future__ import annotations

from pathlib import Path

import pytest
import torch
import torchvision

from spottune.data import DatasetError, list_datasets, load_task
from tests.data_fixtures import write_caltech256, write_cifar100, write_class_folders, write_dtd, write_fgvc

PIGGYBACK = {"cubs": "cubs_cropped", "stanford_cars": "stanford_cars_cropped", "flowers": "flowers",
             "wikiart": "wikiart", "sketches": "sketches"}


def test_registered() -> None:
    assert set(PIGGYBACK) | {"stanford_dogs", "indoor67", "fgvc_aircraft", "dtd", "cifar100", "caltech256_30",
                             "caltech256_60"} <= set(list_datasets())


@pytest.mark.parametrize("name", list(PIGGYBACK))
def test_piggyback_folders(tmp_path: Path, name: str) -> None:
    folder = tmp_path / PIGGYBACK[name]
    write_class_folders(folder / "train", ["b_class", "a_class", "c_class"], per_class=2)
    write_class_folders(folder / "test", ["b_class", "a_class", "c_class"], per_class=1)
    task = load_task(name, tmp_path)
    assert (task.num_classes, len(task.train), len(task.test)) == (3, 6, 3)
    assert task.test.labels == [0, 1, 2]  # sorted class folders: a_class, b_class, c_class
    x, y = task.test[1]
    assert x.shape == (3, 224, 224) and y == 1
    grey = float((x * torch.tensor([0.229, 0.224, 0.225]).view(3, 1, 1)
                  + torch.tensor([0.485, 0.456, 0.406]).view(3, 1, 1)).mean()) * 255
    assert abs(grey - 20) < 4  # b_class was written first: grey 20
    assert task.train[0][0].shape == (3, 224, 224)
    assert task.raw_test_images([0]).shape == (1, 224, 224, 3)
    assert task.info["train_transform"].startswith("Resize(256) + RandomResizedCrop(224)")


def test_missing_folder_and_unknown_test_class(tmp_path: Path) -> None:
    layout = r"(?s)not found: .*cubs_cropped/train.*cubs_cropped/\{train,test\}/<class>"
    with pytest.raises(DatasetError, match=layout):
        load_task("cubs", tmp_path)
    write_class_folders(tmp_path / "wikiart" / "train", ["a"], per_class=1)
    write_class_folders(tmp_path / "wikiart" / "test", ["a", "zz"], per_class=1)
    with pytest.raises(DatasetError, match=r"class folders absent from .*\['zz'\]"):
        load_task("wikiart", tmp_path)
    with pytest.raises(DatasetError, match="needs --data-root"):
        load_task("flowers", None)


def test_holdout_for_model_selection(tmp_path: Path) -> None:
    write_class_folders(tmp_path / "sketches" / "train", ["a", "b"], per_class=5)
    write_class_folders(tmp_path / "sketches" / "test", ["a", "b"], per_class=1)
    task = load_task("sketches", tmp_path, eval_split="holdout", holdout=0.4)
    assert (len(task.train), len(task.test)) == (6, 4)
    assert sorted(task.test.labels) == [0, 0, 1, 1]


def test_dtd_through_torchvision(tmp_path: Path) -> None:
    write_dtd(tmp_path, ["banded", "zigzagged", "dotted"], per_split=2)
    task = load_task("dtd", tmp_path)
    assert (task.num_classes, len(task.train), len(task.test)) == (3, 12, 6)  # train1 + val1 / test1
    assert task.test.labels == [0, 0, 2, 2, 1, 1]  # torchvision's sorted class names
    assert task.test[0][0].shape == (3, 224, 224)


def test_fgvc_aircraft_through_torchvision(tmp_path: Path) -> None:
    write_fgvc(tmp_path, ["707-320", "A300B4", "MD-11"], per_split=2)
    task = load_task("fgvc_aircraft", tmp_path)
    assert (task.num_classes, len(task.train), len(task.test)) == (3, 6, 6)
    assert task.train.labels == [0, 0, 1, 1, 2, 2]
    assert task.info["annotation_level"] == "variant"


def test_cifar100_through_torchvision_with_md5(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    md5 = write_cifar100(tmp_path, train=200, test=100)
    with pytest.raises(DatasetError, match="MD5"):
        load_task("cifar100", tmp_path)  # not the official files
    cls = torchvision.datasets.CIFAR100
    monkeypatch.setattr(cls, "train_list", [["train", md5["train"]]])
    monkeypatch.setattr(cls, "test_list", [["test", md5["test"]]])
    monkeypatch.setattr(cls, "meta", {**cls.meta, "md5": md5["meta"]})
    task = load_task("cifar100", tmp_path)
    assert (task.num_classes, len(task.train), len(task.test)) == (100, 200, 100)
    assert task.test.labels[:3] == [0, 1, 2]
    assert task.test[5][0].shape == (3, 224, 224)


@pytest.mark.parametrize("name,train", [("caltech256_30", 30), ("caltech256_60", 60)])
def test_caltech256_per_class_split(tmp_path: Path, name: str, train: int) -> None:
    write_caltech256(tmp_path, per_class=[train + 20, train + 25, train + 21])
    task = load_task(name, tmp_path)
    assert (task.num_classes, len(task.train), len(task.test)) == (3, 3 * train, 60)
    train_files = {str(f) for f in task.train.images.files}
    assert train_files.isdisjoint(str(f) for f in task.test.images.files)
    without = load_task(name, tmp_path, include_clutter=False)
    assert without.num_classes == 2
    same = load_task(name, tmp_path)
    assert same.train.images.files == task.train.images.files  # split_seed fixes the sample
