"""Tiny datasets written in the real on-disk formats, for the data-loader tests.

Images are small JPEGs whose colour encodes the class, so label mappings can be checked
from pixels too.
"""
from __future__ import annotations

import hashlib
import json
import pickle
from pathlib import Path

import numpy as np
from PIL import Image

from spottune.data.decathlon import first_category


def write_image(path: Path, width: int, height: int, value: int, seed: int = 0) -> Path:
    """A JPEG of ``width`` x ``height`` filled with grey ``value`` plus mild noise."""
    rng = np.random.RandomState(seed)
    pixels = np.clip(value + rng.randint(-8, 9, (height, width, 3)), 0, 255).astype(np.uint8)
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(pixels).save(path, quality=95)
    return path


def write_devkit(root: Path, domain: str, counts: dict[str, int], num_classes: int,
                 size: tuple[int, int] = (96, 72), test_labels: str | None = "annotations") -> Path:
    """A ``decathlon-1.0`` devkit for ``domain`` with ``counts[split]`` images per split.

    Images of split s are ``data/<domain>/<s>/<n>.jpg``, class ``n % num_classes``, ids
    ``d * 10**7 + running number``. ``test_labels``: write ``<domain>_test.json`` into
    ``annotations/`` (``"annotations"``), into ``labels_test.zip`` (``"zip"``) or nowhere (``None``).
    Returns the devkit folder.
    """
    devkit = root / "decathlon-1.0"
    first = first_category(domain)
    image_base = first - 1
    categories = [{"id": first + c, "name": f"class{c}", "supercategory": domain} for c in range(num_classes)]
    running = 0
    for split, n in counts.items():
        images, annotations = [], []
        folder = "test" if split == "test" else split
        for k in range(n):
            running += 1
            label = k % num_classes
            name = f"data/{domain}/{folder}/{k:07d}.jpg"
            write_image(devkit / name, *size, value=20 + 200 * label // max(1, num_classes - 1), seed=running)
            images.append({"id": image_base + running, "width": size[0], "height": size[1], "file_name": name})
            annotations.append({"id": image_base + running, "image_id": image_base + running,
                                "category_id": first + label, "segmentation": [], "area": 0,
                                "bbox": [0, 0, 0, 0], "iscrowd": 0})
        doc = {"info": {}, "images": images, "categories": categories}
        (devkit / "annotations").mkdir(parents=True, exist_ok=True)
        if split == "test":
            (devkit / "annotations" / f"{domain}_test_stripped.json").write_text(json.dumps(doc))
            labelled = json.dumps({**doc, "annotations": annotations})
            if test_labels == "annotations":
                (devkit / "annotations" / f"{domain}_test.json").write_text(labelled)
            elif test_labels == "zip":
                import zipfile

                with zipfile.ZipFile(devkit / "labels_test.zip", "a") as archive:
                    archive.writestr(f"labels_test/{domain}_test.json", labelled)
        else:
            (devkit / "annotations" / f"{domain}_{split}.json").write_text(
                json.dumps({**doc, "annotations": annotations}))
    return devkit


def write_class_folders(split_dir: Path, classes: list[str], per_class: int, size: tuple[int, int] = (40, 30),
                        ext: str = ".jpg") -> None:
    """``<split_dir>/<class>/<n><ext>``: ImageFolder layout, class i has grey value 20 + 40 i."""
    for i, cls in enumerate(classes):
        for k in range(per_class):
            write_image(split_dir / cls / f"{k:04d}{ext}", *size, value=20 + 40 * i, seed=k)


def write_cifar100(root: Path, train: int, test: int) -> dict[str, str]:
    """torchvision's ``cifar-100-python/{train,test,meta}`` pickles (str keys, as the official
    Python 2 pickles read with ``encoding="latin1"``); image k is filled with ``k % 100`` and has
    class ``k % 100``. Returns the files' MD5s."""
    folder = root / "cifar-100-python"
    folder.mkdir(parents=True, exist_ok=True)
    md5 = {}
    for name, n in (("train", train), ("test", test)):
        labels = [k % 100 for k in range(n)]
        data = np.stack([np.full(3072, label, dtype=np.uint8) for label in labels])
        (folder / name).write_bytes(pickle.dumps({"data": data, "fine_labels": labels,
                                                  "coarse_labels": [0] * n}))
        md5[name] = hashlib.md5((folder / name).read_bytes()).hexdigest()
    (folder / "meta").write_bytes(pickle.dumps({"fine_label_names": [f"c{i}" for i in range(100)]}))
    md5["meta"] = hashlib.md5((folder / "meta").read_bytes()).hexdigest()
    return md5


def write_dtd(root: Path, classes: list[str], per_split: int, partition: int = 1) -> None:
    """torchvision's DTD layout: ``dtd/dtd/images/<class>/<class>_<n>.jpg`` and
    ``dtd/dtd/labels/{train,val,test}<partition>.txt`` (``<class>/<file>`` lines)."""
    data = root / "dtd" / "dtd"
    for split in ("train", "val", "test"):
        lines = []
        for i, cls in enumerate(classes):
            for k in range(per_split):
                name = f"{cls}_{split}{k:03d}.jpg"
                write_image(data / "images" / cls / name, 24, 20, value=20 + 40 * i, seed=k)
                lines.append(f"{cls}/{name}")
        (data / "labels").mkdir(parents=True, exist_ok=True)
        (data / "labels" / f"{split}{partition}.txt").write_text("\n".join(lines) + "\n")


def write_fgvc(root: Path, variants: list[str], per_split: int) -> None:
    """torchvision's FGVC-Aircraft layout: ``fgvc-aircraft-2013b/data/{variants.txt,
    images_variant_{trainval,test}.txt, images/<id>.jpg}``."""
    data = root / "fgvc-aircraft-2013b" / "data"
    data.mkdir(parents=True, exist_ok=True)
    (data / "variants.txt").write_text("\n".join(variants) + "\n")
    image_id = 1000000
    for split in ("trainval", "test"):
        lines = []
        for i, variant in enumerate(variants):
            for k in range(per_split):
                image_id += 1
                write_image(data / "images" / f"{image_id}.jpg", 24, 20, value=20 + 40 * i, seed=k)
                lines.append(f"{image_id} {variant}")
        (data / f"images_variant_{split}.txt").write_text("\n".join(lines) + "\n")


def write_caltech256(root: Path, per_class: list[int]) -> None:
    """torchvision's Caltech-256 layout: ``caltech256/256_ObjectCategories/<NNN.name>/<NNN_MMMM>.jpg``;
    the last class is ``257.clutter``-style (named ``<NNN>.clutter``)."""
    folder = root / "caltech256" / "256_ObjectCategories"
    for c, n in enumerate(per_class, start=1):
        name = f"{c:03d}.clutter" if c == len(per_class) else f"{c:03d}.class{c}"
        for k in range(1, n + 1):
            write_image(folder / name / f"{c:03d}_{k:04d}.jpg", 16, 16, value=10 * c, seed=k)
