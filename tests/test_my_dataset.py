"""The README's "Add a dataset" and "Add a table" examples (examples/my_dataset.py,
examples/my_table.py) load a folder of images, run a grid on it through run_all.py and write a
table of their own, with no edit to the library."""
from __future__ import annotations

import importlib
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from spottune import cli
from spottune.data import DatasetError, load_task
from spottune.report import tables
from spottune.report.__main__ import main as report_main

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


@pytest.fixture
def own_table(monkeypatch):
    """The plugin's table is registered for this test only (the other tests' reports stay golden)."""
    monkeypatch.setattr(tables, "_TABLES", dict(tables._TABLES))
    monkeypatch.delitem(sys.modules, "examples.my_table", raising=False)
    yield
    sys.modules.pop("examples.my_table", None)


def test_a_grid_runs_on_it_through_run_all_and_the_plugin_s_table_is_written(tmp_path, capsys, own_table):
    data = write_folder(tmp_path / "data", {"train": 6, "test": 3})
    output = tmp_path / "out"
    assert cli.main(["--plugins", "examples.my_dataset,examples.my_table", "--preset", "mini",
                     "--methods", "finetune,feature_extractor",
                     "--datasets", "my_folder", "--data-root", str(data), "--seeds", "0", "--cluster", "inline",
                     "--set", "epochs=1", "lr_milestones=[]", "backbone.pretrained.kind=none",
                     "--no-progress", "--output", str(output)]) == 0
    table = (output / "tables" / "mini.md").read_text()
    assert "my_folder" in table and "finetune" in table.lower()
    mine = (output / "tables" / "my_folder_study.md").read_text().splitlines()
    assert mine[0] == "### My folder of images beside the mini tasks, test top-1 accuracy (%)"
    header = next(line for line in mine if line.startswith("| method"))
    assert header == "| method | Mine | Digits | mean | score | #par |"  # its columns in its order (digits: no run)
    (output / "tables" / "my_folder_study.md").unlink()
    report_main([str(output), "--plugins", "examples.my_table", "--tables-only"])
    assert (output / "tables" / "my_folder_study.md").read_text().splitlines() == mine  # from the records alone
