"""Decathlon submissions: results.json entries, completeness, offline scoring."""
from __future__ import annotations

import json
from pathlib import Path

import pytest

from spottune.data import DatasetError, load_task
from spottune.data.submission import category_id, main, read_results, score_results, write_results
from tests.data_fixtures import write_devkit


@pytest.fixture(scope="module")
def devkit(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("submission")
    write_devkit(root, "aircraft", {"train": 2, "val": 2, "test": 8}, num_classes=4, size=(72, 72))
    return write_devkit(root, "vgg-flowers", {"train": 2, "val": 2, "test": 6}, num_classes=3, size=(72, 72),
                        test_labels="zip")


def test_category_ids_follow_the_devkit() -> None:
    assert category_id("aircraft", 0) == 10_000_001
    assert category_id("vgg-flowers", 101) == 100_000_102
    # what the released submit_test.py writes for omniglot (task_id 5 -> 6)
    assert category_id("omniglot", 3) == int(10e6 * (6 + 1) + 3 + 1)


def test_submission_round_trips_to_accuracy(devkit: Path, tmp_path: Path) -> None:
    """Predictions -> results.json -> offline score equals the accuracy on the labelled test set."""
    predictions, expected = {}, {}
    for domain, wrong in (("aircraft", {0, 5}), ("vgg-flowers", {1})):
        task = load_task(f"decathlon/{domain}", devkit.parent)
        predicted = [(y + 1) % task.num_classes if i in wrong else y for i, y in enumerate(task.test.labels)]
        predictions[domain] = (task.test_ids, predicted)
        expected[domain] = 100.0 * (1 - len(wrong) / len(task.test))
    path = write_results(tmp_path / "results.json", predictions, devkit=devkit)
    entries = json.loads(path.read_text())
    assert len(entries) == 14 and set(entries[0]) == {"image_id", "category_id"}
    assert all(type(e["image_id"]) is int and type(e["category_id"]) is int for e in entries)
    assert read_results(path)["aircraft"] == dict(zip(*predictions["aircraft"]))
    assert score_results(path, devkit) == pytest.approx(expected)


def test_incomplete_submission_is_refused(devkit: Path, tmp_path: Path) -> None:
    ids = load_task("decathlon/aircraft", devkit.parent).test_ids
    with pytest.raises(DatasetError, match="1 test images without a prediction"):
        write_results(tmp_path / "r.json", {"aircraft": (ids[:-1], [0] * 7)}, devkit=devkit)
    with pytest.raises(DatasetError, match="1 duplicate ids"):
        write_results(tmp_path / "r.json", {"aircraft": (ids + ids[:1], [0] * 9)}, devkit=devkit)


def test_cli_prints_accuracies_and_score(devkit: Path, tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    task = load_task("decathlon/aircraft", devkit.parent)
    path = write_results(tmp_path / "results.json", {"aircraft": (task.test_ids, task.test.labels)})
    main([str(path), "--data-root", str(devkit.parent)])
    out = capsys.readouterr().out
    assert "aircraft" in out and "100.00" in out and "score of these 1 domains: 1000" in out


def test_cli_scores_with_the_labels_file_alone(devkit: Path, tmp_path: Path, capsys: pytest.CaptureFixture,
                                               monkeypatch: pytest.MonkeyPatch) -> None:
    """The README's command: results.json and labels_test.zip, no data root."""
    monkeypatch.delenv("SPOTTUNE_DATA", raising=False)
    task = load_task("decathlon/aircraft", devkit.parent)
    path = write_results(tmp_path / "results.json", {"aircraft": (task.test_ids, task.test.labels)})
    main([str(path), "--labels", str(devkit / "annotations")])
    assert "score of these 1 domains: 1000" in capsys.readouterr().out
