"""The Visual Decathlon (Rebuffi, Bilen, Vedaldi 2017): the devkit reader and its protocols.

Registered as ``decathlon/<domain>`` for the ten domains (``aircraft``, ``cifar100``,
``daimlerpedcls``, ``dtd``, ``gtsrb``, ``imagenet12``, ``omniglot``, ``svhn``, ``ucf101``,
``vgg-flowers``; ``imagenet12`` is the pretraining source).

On disk (``--data-root`` or ``$SPOTTUNE_DATA``; ``python -m spottune.data.prepare decathlon``
builds it from the official archives)::

    <data-root>/decathlon-1.0/           (or <data-root> itself when it holds annotations/)
      annotations/<domain>_train.json, <domain>_val.json, <domain>_test_stripped.json
      data/<domain>/{train,val,test}/... (paths as the JSON's file_name, relative to decathlon-1.0/)
      labels_test.zip or annotations/<domain>_test.json   (optional: the public test labels)

The JSON files are COCO style and are read with the standard library: ``images`` (``id``,
``file_name``), ``annotations`` (``image_id``, ``category_id``), ``categories`` (``id``).
Domain d = 1..10 in alphabetical order; ``category_id = d * 10**7 + class + 1``, so
``class = category_id - (d * 10**7 + 1)``. The released code instead subtracts the smallest
category id present in the split; the two agree whenever class 0 occurs, and the global rule
keeps the class of a submission exact. The categories must be the contiguous ids
``d * 10**7 + 1 .. d * 10**7 + K`` (K classes); every labelled image needs exactly one
annotation; a label outside ``[0, K)`` is reported with its file.

Options (a preset's ``data_options``; every choice lands in ``TaskData.info``):

``split``: ``"train+val"`` (default; the released SpotTune code trains on both, issue #4 of
    gyhui14/spottune) or ``"train"``.
``eval_split``: the images scored: ``"test"`` (default; the devkit's stripped test split,
    labelled when the public test labels are found, see :func:`read_test_labels`; otherwise
    its labels are -1, ``info["test_labelled"]`` is false and only a submission can score it),
    ``"val"`` (only with ``split="train"``), or ``"holdout"``: ``round(holdout * n_c)`` training
    images of every class c (numpy permutation, ``holdout_seed``) are removed from training
    and scored, for model selection.
``transforms``: ``"released"`` (default; gyhui14/spottune ``imdbfolder.py``) or ``"rebuffi"``
    (srebuffi/residual_adapters ``imdbfolder_coco.py``); every image is first resized to a
    shorter side of 72 px (torchvision ``Resize(72)``, bilinear)::

        released  gtsrb, omniglot, svhn  train CenterCrop(72)          test CenterCrop(72)
                  daimlerpedcls          train (none)                  test (none)
                  the others             train RandomCrop(64)          test CenterCrop(72)
        rebuffi   gtsrb, omniglot, svhn  train CenterCrop(72)          test CenterCrop(72)
                  the others             train RandomCrop(64) + flip   test CenterCrop(64)

    then ``ToTensor`` and ``Normalize`` with the domain's mean / std of the reference code
    (:data:`MEAN_STD`, its ``decathlon_mean_std.pickle``). The ``released`` centre crops round
    the offset of an odd margin as Python 2 did (the released code's interpreter): an image
    73 px wide is cropped from column 1, not 0 as under Python 3
    (:meth:`~spottune.data.image_cache.TensorAugment.centre_offset`).
``cache``: ``"none"`` (default; decode the JPEG with PIL at every access) or ``"packed"``
    (:mod:`spottune.data.image_cache`: the domain's train, val and test images, resized to 72 px,
    packed once into ``cache_dir`` (default ``<devkit>/packed``) and memory-mapped; the same
    tensors as the JPEG path). ``verify_cache`` checks its SHA-256 at every load.
``test_labels``: where to find the public test labels (a folder holding
    ``<domain>_test.json``, or a ``labels_test.zip``); by default they are looked for in
    :func:`test_label_candidates`.

``TaskData.test_ids`` holds the devkit image ids of the scored images, in dataset order, for
a submission (:mod:`spottune.data.submission`).
"""
from __future__ import annotations

import functools
import json
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import numpy as np
import torch
import torchvision.transforms.functional as TF
from PIL import Image
from torch.utils.data import Subset

from spottune.data.base import DatasetError, TaskData, register_dataset
from spottune.data.images import ImageFiles, check_labels, require, stratified_holdout
from spottune.data.image_cache import AugmentedImages, TensorAugment, fingerprint, pack
from spottune.visual_decathlon import DOMAINS

DEVKIT = "decathlon-1.0"
SHORTER_SIDE = 72
CATEGORY_BASE = 10 ** 7
SPLIT_FILES = {"train": "{}_train.json", "val": "{}_val.json", "test": "{}_test_stripped.json"}
TEST_LABELS_FILE = "{}_test.json"
LABELS_ZIP = "labels_test.zip"
LAYOUT = f"""  <data-root>/{DEVKIT}/annotations/<domain>_{{train,val,test_stripped}}.json
  <data-root>/{DEVKIT}/data/<domain>/{{train,val,test}}/<images>
  (from decathlon-1.0-devkit.tar.gz, decathlon-1.0-data.tar.gz and, for imagenet12,
   decathlon-1.0-data-imagenet.tar: `python -m spottune.data.prepare decathlon <archives> <data-root>`)"""

MEAN_STD: dict[str, tuple[tuple[float, ...], tuple[float, ...]]] = {
    "aircraft": ((0.4798, 0.5107, 0.5344), (0.2107, 0.2051, 0.2373)),
    "cifar100": ((0.5071, 0.4867, 0.4408), (0.2675, 0.2565, 0.2761)),
    "daimlerpedcls": ((0.4820,) * 3, (0.2361,) * 3),
    "dtd": ((0.5270, 0.4703, 0.4240), (0.2523, 0.2409, 0.2499)),
    "gtsrb": ((0.3392, 0.3118, 0.3205), (0.2756, 0.2658, 0.2709)),
    "imagenet12": ((0.485, 0.456, 0.406), (0.229, 0.224, 0.225)),
    "omniglot": ((0.0810,) * 3, (0.2705,) * 3),
    "svhn": ((0.4377, 0.4438, 0.4728), (0.198, 0.201, 0.197)),
    "ucf101": ((0.4995, 0.4988, 0.4998), (0.1090, 0.1081, 0.1068)),
    "vgg-flowers": ((0.4341, 0.3831, 0.2971), (0.2851, 0.2384, 0.2640)),
}
"""Per-domain RGB mean and std of the reference code (residual_adapters' ``decathlon_mean_std.pickle``)."""

CENTRE_ONLY = ("gtsrb", "omniglot", "svhn")
"""Domains both code bases never crop at random nor flip (orientation carries the class)."""

TRANSFORMS = ("released", "rebuffi")


def domain_index(domain: str) -> int:
    """d = 1..10: the domain's position in the devkit's alphabetical order."""
    if domain not in DOMAINS:
        raise KeyError(f"unknown Decathlon domain {domain!r}; domains: {', '.join(DOMAINS)}")
    return DOMAINS.index(domain) + 1


def first_category(domain: str) -> int:
    """The category id of class 0: ``d * 10**7 + 1``."""
    return domain_index(domain) * CATEGORY_BASE + 1


def find_devkit(data_root: Path | None) -> Path:
    """``<data-root>/decathlon-1.0``, or ``<data-root>`` itself when it holds ``annotations/``."""
    if data_root is None:
        raise DatasetError("the Visual Decathlon needs --data-root or $SPOTTUNE_DATA; expected layout:\n"
                           + LAYOUT)
    for candidate in (data_root / DEVKIT, data_root):
        if (candidate / "annotations").is_dir():
            return candidate
    return require(data_root / DEVKIT / "annotations", LAYOUT)


@dataclass
class DevkitSplit:
    """One annotation file: image files (absolute), devkit image ids, classes (``None`` when
    unlabelled) and the number of classes its ``categories`` list (``None`` when a stripped
    test file has no ``categories``)."""

    files: list[Path]
    image_ids: list[int]
    labels: list[int] | None
    num_classes: int | None
    source: str


def _load_json(path: Path) -> Any:
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError) as error:
        raise DatasetError(f"cannot read annotation file {path}: {error}") from error


def _num_classes(doc: dict, domain: str, source: str) -> int:
    ids = sorted(int(c["id"]) for c in doc["categories"])
    first = first_category(domain)
    if ids != list(range(first, first + len(ids))):
        raise DatasetError(f"{source}: the category ids of {domain} must be {first} .. {first}+K-1 "
                           f"(d*10^7 + class + 1, d = {domain_index(domain)}); got {ids[:3]}...{ids[-1:]}")
    return len(ids)


def _classes_by_image(annotations: list[dict], domain: str, source: str) -> dict[int, int]:
    """``image_id -> class`` from COCO-style annotations (each image annotated once)."""
    first, classes = first_category(domain), {}
    for ann in annotations:
        image_id = int(ann["image_id"])
        if image_id in classes:
            raise DatasetError(f"{source}: image {image_id} has more than one annotation")
        classes[image_id] = int(ann["category_id"]) - first
    return classes


def _labels_of(classes: dict[int, int], image_ids: list[int], files: list[Path], num_classes: int,
               source: str, missing_message: Callable[[int], str]) -> list[int]:
    """The class of every image id, checked to lie in ``[0, num_classes)``; images without a
    class are a :class:`DatasetError`: ``missing_message(count)``, then an example."""
    missing = [f for f, i in zip(files, image_ids) if i not in classes]
    if missing:
        raise DatasetError(f"{missing_message(len(missing))}, e.g. {missing[0]}")
    labels = [classes[i] for i in image_ids]
    check_labels(labels, num_classes, files, source)
    return labels


def read_split(devkit: Path, domain: str, split: str) -> DevkitSplit:
    """The devkit's ``split`` (``train``, ``val`` or ``test``, the stripped one) of ``domain``."""
    path = require(devkit / "annotations" / SPLIT_FILES[split].format(domain), LAYOUT)
    doc, source = _load_json(path), str(path)
    try:
        images = doc["images"]
        num_classes = (_num_classes(doc, domain, source)
                       if split != "test" or "categories" in doc else None)
        files = [devkit / image["file_name"] for image in images]
        image_ids = [int(image["id"]) for image in images]
        labels = None
        if split != "test":
            classes = _classes_by_image(doc["annotations"], domain, source)
            labels = _labels_of(classes, image_ids, files, num_classes, source,
                                lambda n: f"{source}: {n} images have no annotation")
    except KeyError as error:
        raise DatasetError(f"{source} is not a devkit annotation file: missing key {error}") from error
    return DevkitSplit(files, image_ids, labels, num_classes, source)


def test_label_candidates(devkit: Path, domain: str) -> list[Path]:
    """Where the public test labels are looked for, in order."""
    name = TEST_LABELS_FILE.format(domain)
    return [devkit / "annotations" / name, devkit / name, devkit / LABELS_ZIP, devkit.parent / LABELS_ZIP]


def _read_labels_file(path: Path, domain: str) -> tuple[Any, str] | None:
    """The JSON of ``<domain>_test.json`` in ``path`` (a file, a folder or a zip), if there."""
    name = TEST_LABELS_FILE.format(domain)
    if path.is_dir():
        path = path / name
    if not path.exists():
        return None
    if zipfile.is_zipfile(path):
        with zipfile.ZipFile(path) as archive:
            members = [m for m in archive.namelist() if Path(m).name == name]
            if not members:
                return None
            return json.loads(archive.read(members[0])), f"{path}:{members[0]}"
    return _load_json(path), str(path)


def read_test_labels(devkit: Path | None, domain: str, location: str | Path | None = None
                     ) -> tuple[dict[int, int], str] | None:
    """``({image_id: class}, source)`` of the public test labels of ``domain``, or ``None``.

    The labels file ``<domain>_test.json`` is COCO style like the train / val files (its
    ``annotations`` are read) or a plain list of ``{"image_id", "category_id"}``. It is read
    from ``location`` (a folder or a zip such as ``labels_test.zip``) when given (then no
    ``devkit`` is needed), else from the first of :func:`test_label_candidates` that has it.
    """
    if location is None and devkit is None:
        raise DatasetError("test labels: give their location (labels_test.zip) or the devkit's data root")
    for candidate in [Path(location)] if location is not None else test_label_candidates(devkit, domain):
        found = _read_labels_file(candidate, domain)
        if found:
            doc, source = found
            try:
                annotations = doc if isinstance(doc, list) else doc["annotations"]
                return _classes_by_image(annotations, domain, source), source
            except (KeyError, TypeError) as error:
                raise DatasetError(f"{source} is not a test label file: {error!r}") from error
    if location is not None:
        raise DatasetError(f"no {TEST_LABELS_FILE.format(domain)} in {location}")
    return None


def _label_test_split(test: DevkitSplit, num_classes: int, devkit: Path, domain: str,
                      location: str | Path | None) -> str | None:
    """Fill ``test.labels`` from the public test labels; returns their source (or ``None``)."""
    found = read_test_labels(devkit, domain, location)
    if found is None:
        return None
    classes, source = found
    test.labels = _labels_of(classes, test.image_ids, test.files, num_classes, source,
                             lambda n: f"{source} has no label for {n} test images")
    return source


def augmentations(domain: str, transforms: str) -> tuple[TensorAugment, TensorAugment]:
    """``(train, test)`` augmentation of ``domain`` under ``transforms`` (see the module docstring)."""
    mean, std = MEAN_STD[domain]
    if transforms not in TRANSFORMS:
        raise ValueError(f"transforms must be one of {TRANSFORMS}, got {transforms!r}")
    released = transforms == "released"  # centre crops as the released code computed them, in Python 2
    if domain in CENTRE_ONLY:
        return (TensorAugment(mean, std, crop=72, python2_rounding=released),
                TensorAugment(mean, std, crop=72, python2_rounding=released))
    if transforms == "rebuffi":
        return (TensorAugment(mean, std, crop=64, random_crop=True, flip=True),
                TensorAugment(mean, std, crop=64))
    if domain == "daimlerpedcls":
        return TensorAugment(mean, std), TensorAugment(mean, std)
    return (TensorAugment(mean, std, crop=64, random_crop=True),
            TensorAugment(mean, std, crop=72, python2_rounding=True))


def resize_to_tensor(image: Image.Image) -> torch.Tensor:
    """torchvision ``Resize(72)`` (shorter side 72 px, bilinear) as a uint8 ``(3, H, W)`` tensor."""
    return TF.pil_to_tensor(TF.resize(image, SHORTER_SIDE))


def image_source(files: list[Path], devkit: Path, domain: str, cache: str, cache_dir: str | None,
                 verify_cache: bool) -> tuple[Any, str]:
    """``(images, description)``: uint8 tensors after ``Resize(72)``, decoded from the JPEGs at
    every access (``cache="none"``) or read from the domain's packed cache, built if needed."""
    images = ImageFiles(files, resize_to_tensor)
    if cache == "none":
        return images, f"JPEG decoded with PIL at every access, Resize({SHORTER_SIDE})"
    source = fingerprint([f"decathlon {domain}: Resize({SHORTER_SIDE}) bilinear, uint8 CHW"]
                         + [str(f.relative_to(devkit)) for f in files])
    folder = Path(cache_dir) if cache_dir else devkit / "packed"
    packed = pack(images, folder / f"{domain}-{source[:16]}", source, verify=verify_cache)
    return packed, f"packed uint8 cache {packed.stem} (Resize({SHORTER_SIDE}) at build)"


def _eval_indices(split: str, eval_split: str, train: list[int], val: list[int], test: list[int],
                  labels: list[int], holdout: float, holdout_seed: int) -> tuple[list[int], list[int]]:
    """``(training, scored)`` positions in the concatenation train + val + test."""
    training = train + val if split == "train+val" else train
    if eval_split == "test":
        return training, test
    if eval_split == "val":
        if split != "train":
            raise DatasetError("eval_split='val' needs split='train': with split='train+val' "
                               "the val images are training images")
        return training, val
    kept, held = stratified_holdout([labels[i] for i in training], holdout, holdout_seed)
    return [training[i] for i in kept], [training[i] for i in held]


def load_decathlon(domain: str, data_root: Path | None, *, split: str = "train+val",
                   eval_split: str = "test", holdout: float = 0.1, holdout_seed: int = 0,
                   transforms: str = "released", cache: str = "none", cache_dir: str | None = None,
                   verify_cache: bool = True, test_labels: str | None = None,
                   download: bool = False) -> TaskData:
    """The task of one Decathlon domain under the options of the module docstring."""
    if download:
        raise DatasetError("the suite does not download the Visual Decathlon: get the archives from "
                           "https://www.robots.ox.ac.uk/~vgg/decathlon/ and run "
                           "`python -m spottune.data.prepare decathlon <archives> <data-root>`")
    if split not in ("train+val", "train") or eval_split not in ("test", "val", "holdout") \
            or cache not in ("none", "packed"):
        raise ValueError(f"bad option: split={split!r} (train+val | train), eval_split={eval_split!r} "
                         f"(test | val | holdout), cache={cache!r} (none | packed)")
    train_aug, test_aug = augmentations(domain, transforms)
    devkit = find_devkit(data_root)
    parts = {name: read_split(devkit, domain, name) for name in SPLIT_FILES}
    num_classes = parts["train"].num_classes
    for part in parts.values():
        if part.num_classes not in (None, num_classes):
            raise DatasetError(f"{part.source} lists {part.num_classes} categories, "
                               f"{parts['train'].source} {num_classes}")
    labels_source = (_label_test_split(parts["test"], num_classes, devkit, domain, test_labels)
                     if eval_split == "test" else None)
    files = [f for part in parts.values() for f in part.files]
    image_ids = [i for part in parts.values() for i in part.image_ids]
    labels = [c for part in parts.values() for c in (part.labels or [-1] * len(part.files))]
    sizes = [len(part.files) for part in parts.values()]
    starts = np.cumsum([0] + sizes).tolist()
    positions = [list(range(starts[k], starts[k + 1])) for k in range(3)]
    training, scored = _eval_indices(split, eval_split, *positions, labels, holdout, holdout_seed)
    images, description = image_source(files, devkit, domain, cache, cache_dir, verify_cache)

    def dataset(indices: list[int], augment: TensorAugment) -> AugmentedImages:
        return AugmentedImages(Subset(images, indices), [labels[i] for i in indices], augment)

    test_images = Subset(images, scored)

    def raw_test_images(indices: list[int]) -> np.ndarray:
        return np.stack([test_aug.crop_image(test_images[i]).permute(1, 2, 0).numpy() for i in indices])

    mean, std = MEAN_STD[domain]
    info = {
        "dataset": f"decathlon/{domain}", "domain": domain, "devkit": str(devkit),
        "split": split, "eval_split": eval_split,
        "holdout": {"fraction": holdout, "seed": holdout_seed} if eval_split == "holdout" else None,
        "test_labelled": eval_split != "test" or labels_source is not None,
        "test_labels_source": labels_source,
        "transforms": transforms,
        "train_transform": f"Resize({SHORTER_SIDE}) + {train_aug.describe()}",
        "test_transform": f"Resize({SHORTER_SIDE}) + {test_aug.describe()}",
        "mean": list(mean), "std": list(std), "mean_std_source": "decathlon_mean_std.pickle (reference code)",
        "label_mapping": f"class = category_id - {first_category(domain)}",
        "image_source": description, "split_sizes": dict(zip(SPLIT_FILES, sizes)),
        "train_images": len(training), "test_images": len(scored), "num_classes": num_classes,
    }
    return TaskData(name=f"decathlon/{domain}", num_classes=num_classes,
                    train=dataset(training, train_aug), test=dataset(scored, test_aug),
                    image_size=test_aug.crop or SHORTER_SIDE, info=info,
                    test_ids=[image_ids[i] for i in scored], raw_test_images=raw_test_images)


for _domain in DOMAINS:
    register_dataset(f"decathlon/{_domain}")(functools.partial(load_decathlon, _domain))
