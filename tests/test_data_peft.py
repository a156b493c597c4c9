"""VTAB-1k (NOAH's lists) and FGVC (VPT's split JSON) read from tiny files in those formats:
splits, labels, transforms, ``prepare``, and the named errors."""
from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
import torch

from spottune.data import DatasetError, list_datasets, load_task
from spottune.data.peft_benchmarks import FGVC_DATASETS, VTAB_GROUPS, VTAB_TASKS
from spottune.data.prepare import prepare
from spottune.methods import get_method, list_methods
from tests.data_fixtures import write_image
from tests.helpers import load_script


def write_vtab_task(root: Path, task: str, counts: dict[str, int], num_classes: int) -> Path:
    """``<root>/vtab-1k/<task>`` with ``counts[list]`` images per list, class = index % classes."""
    folder = root / "vtab-1k" / task
    for stem, count in counts.items():
        lines = []
        for i in range(count):
            relative = f"images/{stem}/{i:04d}.jpg"
            write_image(folder / relative, 40, 30, 10 * (i % num_classes))
            lines.append(f"{relative} {i % num_classes}")
        (folder / f"{stem}.txt").write_text("\n".join(lines) + "\n")
    return folder


def write_fgvc_dataset(root: Path, name: str, class_ids: list[int], per_split: int) -> Path:
    """``<root>/FGVC/<folder>`` with VPT's three JSON files over the given (non-contiguous) class ids."""
    folder_name, image_folder, _ = FGVC_DATASETS[name]
    folder = root / "FGVC" / folder_name
    for split in ("train", "val", "test"):
        mapping = {}
        for i in range(per_split):
            relative = f"{split}_{i}.jpg"
            write_image(folder / image_folder / relative, 300, 260, 20 * (i % len(class_ids)))
            mapping[relative] = class_ids[i % len(class_ids)]
        (folder / f"{split}.json").write_text(json.dumps(mapping))
    return folder


def test_every_task_is_registered_in_its_group():
    assert sorted(t for tasks in VTAB_GROUPS.values() for t in tasks) == sorted(VTAB_TASKS)
    assert [len(VTAB_GROUPS[g]) for g in ("Natural", "Specialized", "Structured")] == [7, 4, 8]
    assert {f"vtab1k/{t}" for t in VTAB_TASKS} | {f"fgvc/{d}" for d in FGVC_DATASETS} <= set(list_datasets())


def test_vtab_lists_splits_and_transforms(tmp_path):
    write_vtab_task(tmp_path, "eurosat", {"train800": 6, "val200": 2, "train800val200": 8, "test": 5}, 10)
    task = load_task("vtab1k/eurosat", tmp_path)
    assert (len(task.train), len(task.test), task.num_classes) == (8, 5, 10)
    assert task.info["group"] == "Specialized" and task.info["split"] == "train800val200"
    image, label = task.train[3]
    assert image.shape == (3, 224, 224) and label == 3
    assert torch.equal(task.train[3][0], task.train[3][0])  # no augmentation
    selection = load_task("vtab1k/eurosat", tmp_path, split="train800", eval_split="val200")
    assert (len(selection.train), len(selection.test)) == (6, 2)


def test_vtab_errors_name_the_file_and_layout(tmp_path):
    with pytest.raises(DatasetError, match=r"vtab-1k/dtd/train800val200.txt[\s\S]*'<image path> <label>'"):
        load_task("vtab1k/dtd", tmp_path)
    folder = write_vtab_task(tmp_path, "dtd", {"train800val200": 2, "test": 1}, 47)
    (folder / "test.txt").write_text("images/test/0000.jpg 47\n")
    with pytest.raises(DatasetError, match=r"label 47 of .*0000.jpg .*47 classes"):
        load_task("vtab1k/dtd", tmp_path)
    (folder / "test.txt").write_text("no-label-here\n")
    with pytest.raises(DatasetError, match=r"test.txt:1: expected '<image path> <label>'"):
        load_task("vtab1k/dtd", tmp_path)
    with pytest.raises(ValueError, match="split must be one of"):
        load_task("vtab1k/dtd", tmp_path, split="train1000")


def test_fgvc_split_json_classes_and_transforms(tmp_path):
    write_fgvc_dataset(tmp_path, "cub", [3, 7, 11], per_split=6)
    task = load_task("fgvc/cub", tmp_path)
    assert (len(task.train), len(task.test), task.num_classes) == (12, 6, 200)
    assert sorted({label for _, label in (task.train[i] for i in range(12))}) == [0, 1, 2]  # ids 3, 7, 11
    assert task.train[0][0].shape == task.test[0][0].shape == (3, 224, 224)
    assert torch.equal(task.test[0][0], task.test[0][0])
    assert (len(load_task("fgvc/cub", tmp_path, split="train", eval_split="val").train)) == 6


def test_fgvc_errors_name_the_file(tmp_path):
    with pytest.raises(DatasetError, match=r"FGVC/Stanford-dogs/train.json[\s\S]*Images"):
        load_task("fgvc/dogs", tmp_path)
    folder = write_fgvc_dataset(tmp_path, "dogs", [0, 1], per_split=2)
    (folder / "test.json").write_text(json.dumps({"test_0.jpg": 5}))  # a class the training set lacks
    with pytest.raises(DatasetError, match=r"label -1 of .*test_0.jpg"):
        load_task("fgvc/dogs", tmp_path)
    (folder / "test.json").write_text("[1, 2")
    with pytest.raises(DatasetError, match="test.json: not valid JSON"):
        load_task("fgvc/dogs", tmp_path)


@pytest.mark.parametrize("dataset", ["vtab1k", "fgvc"])
def test_prepare_moves_the_distributed_folders_into_place(tmp_path, dataset):
    source = tmp_path / "download"
    if dataset == "vtab1k":
        write_vtab_task(source, "kitti", {"train800val200": 4, "test": 4}, 4)
    else:
        write_fgvc_dataset(source, "flowers", [1, 2], per_split=2)
    names = prepare(dataset, [source], tmp_path / "data")
    assert names == (["vtab1k/kitti"] if dataset == "vtab1k" else ["fgvc/flowers"])
    assert len(load_task(names[0], tmp_path / "data").test) in (2, 4)
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(DatasetError, match="none of the sources holds"):
        prepare(dataset, [empty], tmp_path / "data2")


@pytest.mark.parametrize("preset, datasets", [("vtab1k", [f"vtab1k/{t}" for t in VTAB_TASKS]),
                                              ("fgvc", [f"fgvc/{d}" for d in FGVC_DATASETS])])
def test_presets_dry_run_on_fixture_data_with_their_gpu_hours(tmp_path, capsys, preset, datasets):
    for task in VTAB_TASKS:
        write_vtab_task(tmp_path, task, {"train800val200": 2, "test": 1}, 2)
    for dataset in FGVC_DATASETS:
        write_fgvc_dataset(tmp_path, dataset, [0, 1], per_split=2)
    run_all = load_script("benchmarks/run_all.py")
    assert run_all.main(["--preset", preset, "--data-root", str(tmp_path), "--output", str(tmp_path / "out"),
                         "--dry-run"]) == 0
    out = capsys.readouterr().out
    methods = [m for m in list_methods() if "vit" in get_method(m).families]
    assert f"{len(methods) * len(datasets)} runs ({preset})" in out
    assert "runs of unknown cost" not in out and re.search(r"estimated GPU time of the runs: ~[\d.e+]+ GPU-h", out)


def test_table_layouts_cover_every_task_in_group_order():
    from spottune.report.tables import FGVC, VTAB1K

    assert list(VTAB1K.headers) == [t for group in VTAB_GROUPS.values() for t in group]
    assert list(FGVC.headers) == list(FGVC_DATASETS)
    assert (VTAB1K.dataset_prefix, FGVC.dataset_prefix) == ("vtab1k/", "fgvc/")
