"""Visual Decathlon submissions: ``results.json`` for the evaluation server, and offline scoring.

``results.json`` is one JSON list over the test images of every submitted domain, each entry
``{"image_id": <int>, "category_id": <int>}``: ``image_id`` as in
``<domain>_test_stripped.json``, ``category_id = d * 10**7 + class + 1`` with d = 1..10 the
domain's alphabetical index (what the released ``submit/submit_test.py`` writes as
``int(10e6 * (task_id + 1) + prediction + 1)``). The domain of an entry is read back from its
category id.

With the public test labels (``<domain>_test.json`` files or ``labels_test.zip``, see
:func:`spottune.data.decathlon.read_test_labels`) a results file is scored offline: top-1
accuracy per domain over all the domain's labelled test images (an image without a
prediction counts as wrong), and the Decathlon score of the domains scored
(:func:`spottune.visual_decathlon.decathlon_score`)::

    python -m spottune.data.submission results.json --labels labels_test.zip
    python -m spottune.data.submission results.json --data-root <data-root>   # labels in the devkit
"""
from __future__ import annotations

import argparse
import json
import os
from collections.abc import Mapping, Sequence
from pathlib import Path

from spottune.storage import records
from spottune.data.base import DATA_ENV, DatasetError
from spottune.data.decathlon import (CATEGORY_BASE, find_devkit, first_category, read_split,
                                     read_test_labels)
from spottune.visual_decathlon import DOMAINS, decathlon_score


def category_id(domain: str, class_index: int) -> int:
    """The devkit's global category id of ``class_index`` in ``domain``."""
    return first_category(domain) + int(class_index)


def results_entries(domain: str, image_ids: Sequence[int], predictions: Sequence[int]) -> list[dict[str, int]]:
    """The ``results.json`` entries of one domain's predicted classes."""
    if len(image_ids) != len(predictions):
        raise ValueError(f"{domain}: {len(image_ids)} image ids but {len(predictions)} predictions")
    return [{"image_id": int(i), "category_id": category_id(domain, p)} for i, p in zip(image_ids, predictions)]


def _check_complete(domain: str, image_ids: Sequence[int], devkit: Path) -> None:
    expected = set(read_split(devkit, domain, "test").image_ids)
    given = [int(i) for i in image_ids]
    problems = []
    if len(set(given)) != len(given):
        problems.append(f"{len(given) - len(set(given))} duplicate ids")
    if missing := expected - set(given):
        problems.append(f"{len(missing)} test images without a prediction, e.g. {min(missing)}")
    if unknown := set(given) - expected:
        problems.append(f"{len(unknown)} ids not in {domain}_test_stripped.json, e.g. {min(unknown)}")
    if problems:
        raise DatasetError(f"{domain}: " + "; ".join(problems))


def write_results(path: str | Path, predictions: Mapping[str, tuple[Sequence[int], Sequence[int]]],
                  devkit: Path | None = None) -> Path:
    """Write ``results.json`` from ``{domain: (image_ids, predicted classes)}``.

    With ``devkit``, every domain's ids must be exactly those of its stripped test file (no
    duplicate, none missing, none unknown), as the server expects. Written atomically.
    """
    entries = []
    for domain, (image_ids, classes) in predictions.items():
        if devkit is not None:
            _check_complete(domain, image_ids, devkit)
        entries.extend(results_entries(domain, image_ids, classes))
    path = Path(path)
    records.atomic_write_bytes(path, json.dumps(entries).encode())
    return path


def write_grid_submissions(output_dir: str | Path) -> list[Path]:
    """One ``results.json`` per (method, seed) of the done Decathlon runs under ``output_dir``.

    Reads every run's ``predictions.npz`` (predicted classes and devkit ``test_ids``) and
    writes ``<output_dir>/submissions/<method>_seed<seed>/results.json`` over the domains run;
    the evaluation server expects all ten, ImageNet included. The ids are written as the runs
    recorded them, not checked against the devkit (:func:`write_results` with ``devkit`` does that).
    """
    grouped: dict[tuple[str, int], dict[str, tuple[Sequence[int], Sequence[int]]]] = {}
    for folder in map(records.RunFolder, sorted(Path(output_dir).glob("runs/*"))):
        if folder.status() is not records.Status.DONE:
            continue
        config = folder.read_config()
        arrays = folder.read_predictions() if str(config["dataset"]).startswith("decathlon/") else None
        if arrays is None:
            continue
        domain = config["dataset"].split("/", 1)[1]
        grouped.setdefault((config["method"], int(config["seed"])), {})[domain] = (
            arrays["test_ids"].tolist(), arrays["predictions"].tolist())
    written = []
    for (method, seed), by_domain in sorted(grouped.items()):
        path = Path(output_dir) / "submissions" / f"{method}_seed{seed}" / "results.json"
        path.parent.mkdir(parents=True, exist_ok=True)
        written.append(write_results(path, by_domain))
    return written


def read_results(path: str | Path) -> dict[str, dict[int, int]]:
    """``{domain: {image_id: class}}`` of a ``results.json``."""
    try:
        entries = json.loads(Path(path).read_text())
        by_domain: dict[str, dict[int, int]] = {}
        for entry in entries:
            cid, image_id = int(entry["category_id"]), int(entry["image_id"])
            d = (cid - 1) // CATEGORY_BASE
            if not 1 <= d <= len(DOMAINS):
                raise DatasetError(f"{path}: category_id {cid} belongs to no Decathlon domain")
            domain = DOMAINS[d - 1]
            by_domain.setdefault(domain, {})[image_id] = cid - first_category(domain)
    except (OSError, ValueError, KeyError, TypeError) as error:
        raise DatasetError(f"{path} is not a Decathlon results file: {error!r}") from error
    return by_domain


def score_results(path: str | Path, devkit: Path | None, labels: str | Path | None = None) -> dict[str, float]:
    """Top-1 test accuracy (percent) of every domain of ``path`` whose test labels are found
    (in ``labels`` when given, else in the devkit)."""
    accuracies = {}
    for domain, predicted in read_results(path).items():
        found = read_test_labels(devkit, domain, labels)
        if found is None:
            continue
        truth, _ = found
        correct = sum(predicted.get(image_id) == label for image_id, label in truth.items())
        accuracies[domain] = 100.0 * correct / len(truth)
    return accuracies


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="Score a Visual Decathlon results.json offline.")
    parser.add_argument("results", type=Path)
    parser.add_argument("--data-root", type=Path, default=os.environ.get(DATA_ENV),
                        help=f"folder holding decathlon-1.0/ (default ${DATA_ENV})")
    parser.add_argument("--labels", type=Path, help="labels_test.zip or a folder of <domain>_test.json "
                        "(default: looked for in the devkit)")
    args = parser.parse_args(argv)
    devkit = find_devkit(Path(args.data_root)) if args.data_root or not args.labels else None
    accuracies = score_results(args.results, devkit, args.labels)
    if not accuracies:
        raise SystemExit("no test labels found for the domains of this file; pass --labels")
    for domain, accuracy in accuracies.items():
        print(f"{domain:14s} {accuracy:6.2f}")
    print(f"Decathlon score of these {len(accuracies)} domains: "
          f"{decathlon_score(accuracies, allow_partial=True):.0f}")


if __name__ == "__main__":
    main()
