"""The README's "Add a dataset" example (examples/my_dataset.py) loads a folder of images and
runs a grid through run_all.py with no edit to the library."""
from __future__ import annotations

import importlib
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from spottune import cli
from spottune.data import DatasetError, load_task

importlib.import_module("examples.my_dataset")  # registers "my_folder"

CLASSES = {"blue": (20, 40, 220), "red": (230, 30, 20)}  # sorted: blue = 0, red = 1


def write_folder(root: Path, per_class: dict[str, int]) -> Path:
    """``root/my_folder/{train,test}/<class>/<i>.png``: noisy squares of each class's colour, 20 px."""
    rng = np.random.RandomState(0)
    for split, count in per_class.items():
        for name, colour in CLASSES.items():
            folder = root / "my_folder" / split / name
            folder.mkdir(parents=True)
            for i in range(count):
                pixels = np.clip(np.array(colour) + rng.randint(-20, 21, (20, 20, 3)), 0, 255).astype(np.uint8)
                Image.fromarray(pixels).save(folder / f"{i}.png")
    return root


def test_the_folder_becomes_a_task(tmp_path):
    task = load_task("my_folder", write_folder(tmp_path, {"train": 4, "test": 3}))
    assert (task.num_classes, len(task.train), len(task.test)) == (2, 8, 6)
    assert task.info["classes"] == ["blue", "red"]
    image, label = task.test[0]
    assert image.shape == (3, 32, 32) and label == 0
    assert [task.test[i][1] for i in range(6)] == [0, 0, 0, 1, 1, 1]
    red = task.raw_test_images([3])[0]
    assert red.shape == (32, 32, 3) and red[..., 0].mean() > 150 > red[..., 2].mean()  # decoded as RGB


def test_a_missing_folder_names_the_path_and_the_layout(tmp_path):
    with pytest.raises(DatasetError, match=r"not found: .*my_folder(.|\n)*my_folder/train/<class>"):
        load_task("my_folder", tmp_path)


def test_a_grid_runs_on_it_through_run_all(tmp_path, capsys):
    data = write_folder(tmp_path / "data", {"train": 6, "test": 3})
    output = tmp_path / "out"
    assert cli.main(["--plugins", "examples.my_dataset", "--preset", "mini", "--methods", "finetune",
                     "--datasets", "my_folder", "--data-root", str(data), "--seeds", "0", "--cluster", "inline",
                     "--set", "epochs=1", "lr_milestones=[]", "backbone.pretrained.kind=none",
                     "--no-progress", "--output", str(output)]) == 0
    table = (output / "tables" / "mini.md").read_text()
    assert "my_folder" in table and "finetune" in table.lower()
