"""``python -m spottune.data.prepare``: official archives and folders -> the loaders' layouts."""
from __future__ import annotations

import shutil
import tarfile
from pathlib import Path

import numpy as np
import pytest
from scipy.io import savemat

from spottune.data import DatasetError, load_task
from spottune.data.prepare import main, prepare
from tests.data_fixtures import write_class_folders, write_devkit, write_dtd


def _tar(path: Path, folder: Path, arcname: str) -> Path:
    with tarfile.open(path, "w:gz" if path.name.endswith("gz") else "w") as tar:
        tar.add(folder, arcname=arcname)
    return path


def test_decathlon_from_the_official_archives(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    """devkit tar.gz + data tar.gz holding one .tar per domain + labels_test.zip."""
    made = tmp_path / "made"
    for domain in ("aircraft", "svhn"):
        write_devkit(made, domain, {"train": 2, "val": 2, "test": 2}, num_classes=2, test_labels="zip")
    devkit = made / "decathlon-1.0"
    downloads = tmp_path / "downloads"
    downloads.mkdir()
    _tar(downloads / "decathlon-1.0-devkit.tar.gz", devkit / "annotations", "decathlon-1.0/annotations")
    inner = tmp_path / "inner"
    inner.mkdir()
    for domain in ("aircraft", "svhn"):
        _tar(inner / f"{domain}.tar", devkit / "data" / domain, domain)
    _tar(downloads / "decathlon-1.0-data.tar.gz", inner, ".")
    shutil.copy(devkit / "labels_test.zip", downloads / "labels_test.zip")

    root = tmp_path / "data"
    main(["decathlon", *map(str, sorted(downloads.iterdir())), str(root), "--pack"])
    out = capsys.readouterr().out
    assert "decathlon/aircraft: 2 classes, 4 training and 2 test images" in out
    task = load_task("decathlon/svhn", root)
    assert task.info["test_labels_source"].startswith(str(root / "decathlon-1.0" / "labels_test.zip"))
    assert list((root / "decathlon-1.0" / "packed").glob("svhn-*.json"))
    assert not list(root.glob(".prepare-*"))  # staging removed
    assert prepare("decathlon", [downloads / "labels_test.zip"], root) == ["decathlon/aircraft", "decathlon/svhn"]


def test_piggyback_folder_is_linked_not_moved(tmp_path: Path) -> None:
    source = tmp_path / "piggyback" / "data" / "flowers"
    for split in ("train", "test"):
        write_class_folders(source / split, ["a", "b"], per_class=1)
    assert prepare("flowers", [tmp_path / "piggyback"], tmp_path / "root") == ["flowers"]
    assert (source / "train" / "a" / "0000.jpg").exists()
    assert load_task("flowers", tmp_path / "root").num_classes == 2


def test_stanford_dogs_from_images_and_mat_lists(tmp_path: Path) -> None:
    src = tmp_path / "src"
    classes = ["n02085620-Chihuahua", "n02085782-Japanese_spaniel"]
    write_class_folders(src / "Images", classes, per_class=3)
    for split, ks in (("train", (0, 1)), ("test", (2,))):
        names = [f"{c}/{k:04d}.jpg" for c in classes for k in ks]
        entries = np.empty((len(names), 1), dtype=object)  # a MATLAB cell column, as in lists.tar
        for i, name in enumerate(names):
            entries[i, 0] = np.array([name])
        savemat(src / f"{split}_list.mat", {"file_list": entries})
    images_tar = _tar(tmp_path / "images.tar", src / "Images", "Images")
    root = tmp_path / "root"
    prepare("stanford_dogs", [images_tar, src / "train_list.mat", src / "test_list.mat"], root)
    task = load_task("stanford_dogs", root)
    assert (task.num_classes, len(task.train), len(task.test)) == (2, 4, 2)


def test_indoor67_from_text_lists(tmp_path: Path) -> None:
    src = tmp_path / "src"
    write_class_folders(src / "Images", ["kitchen", "airport_inside"], per_class=2)
    (src / "TrainImages.txt").write_text("kitchen/0000.jpg\nairport_inside/0000.jpg\n")
    (src / "TestImages.txt").write_text("kitchen/0001.jpg\nairport_inside/0001.jpg\n")
    prepare("indoor67", [src], tmp_path / "root")
    task = load_task("indoor67", tmp_path / "root")
    assert (task.num_classes, len(task.train), len(task.test)) == (2, 2, 2)


def test_torchvision_archive_lands_where_torchvision_looks(tmp_path: Path) -> None:
    write_dtd(tmp_path / "made", ["banded", "dotted"], per_split=1)
    archive = _tar(tmp_path / "dtd-r1.0.1.tar.gz", tmp_path / "made" / "dtd" / "dtd", "dtd")
    prepare("dtd", [archive], tmp_path / "root")
    assert (tmp_path / "root" / "dtd" / "dtd" / "labels" / "train1.txt").exists()
    assert len(load_task("dtd", tmp_path / "root").test) == 2


def test_bad_sources(tmp_path: Path) -> None:
    with pytest.raises(DatasetError, match="sources not found"):
        prepare("cifar100", [tmp_path / "nope.tar.gz"], tmp_path / "root")
    (tmp_path / "empty").mkdir()
    with pytest.raises(DatasetError, match="none of the sources holds cifar-100-python/meta"):
        prepare("cifar100", [tmp_path / "empty"], tmp_path / "root")
