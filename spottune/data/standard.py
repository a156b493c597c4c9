"""The standard (224-px, ImageNet-pretrained ResNet) datasets, each with its on-disk layout.

Read from ``--data-root`` (or ``$SPOTTUNE_DATA``); nothing is downloaded unless
``download=True`` is given, and only the torchvision datasets can download.
``python -m spottune.data.prepare <name> <archives> <data-root>`` builds every layout from the
official archives. Class indices follow the sorted class-folder names (torchvision's
``ImageFolder`` rule) or, for the torchvision datasets, torchvision's own.

Piggyback train / test folders (Mallya et al. 2018; its ``data/`` folder), five datasets::

    cubs            <data-root>/cubs_cropped/{train,test}/<class>/<image>           200 classes
    stanford_cars   <data-root>/stanford_cars_cropped/{train,test}/<class>/<image>  196 classes
    flowers         <data-root>/flowers/{train,test}/<class>/<image>                102 classes
    wikiart         <data-root>/wikiart/{train,test}/<class>/<image>                195 classes
    sketches        <data-root>/sketches/{train,test}/<class>/<image>               250 classes

Flowers' ``train`` is the train+val of the official split, as the paper's author used it.
The same folder layout, written by ``prepare`` from the official archives and split lists::

    stanford_dogs   <data-root>/stanford_dogs/{train,test}/<class>/<image>   120 classes (12000 / 8580)
    indoor67        <data-root>/indoor67/{train,test}/<class>/<image>        67 classes (5360 / 1340)

torchvision layouts (what ``torchvision.datasets`` writes when it downloads)::

    fgvc_aircraft   <data-root>/fgvc-aircraft-2013b/data/...   torchvision FGVCAircraft:
                    trainval (6667) / test (3333), ``annotation_level`` "variant" (100 classes)
    dtd             <data-root>/dtd/dtd/{images,labels}/...     torchvision DTD: train+val /
                    test of ``partition`` 1 (1880 + 1880 / 1880 images, 47 classes)
    cifar100        <data-root>/cifar-100-python/{train,test,meta}  torchvision CIFAR100 (its MD5
                    check included): 50000 / 10000 images of 32 px, 100 classes
    caltech256_30,  <data-root>/caltech256/256_ObjectCategories/<NNN.name>/*.jpg (torchvision's
    caltech256_60   Caltech256 layout, read directly: that class creates folders and returns grey
                    images): ``train_per_class`` (30 or 60) random training images per class and
                    ``test_per_class`` (20) of the others for test, numpy ``split_seed`` 0;
                    257 classes with ``257.clutter`` (``include_clutter``) as in L2-SP [unverified]

Transforms (the SpotTune author's ResNet-50 runs), ImageNet mean / std: training
``Resize(256) + RandomResizedCrop(224) + RandomHorizontalFlip``, test ``Resize(256) +
CenterCrop(224)``; CIFAR-100's 32-px images are upsampled by the same ``Resize(256)``.

Options of every dataset: ``eval_split`` ``"test"`` (default) or ``"holdout"`` (a stratified
``holdout`` fraction of the training images, numpy ``holdout_seed``, removed from training and
scored instead, for model selection).
"""
from __future__ import annotations

import functools
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np
import torchvision
from PIL import Image
from torch.utils.data import Subset
from torchvision import transforms as T
from torchvision.datasets.folder import IMG_EXTENSIONS, find_classes, make_dataset

from spottune.data.base import DATA_ENV, DatasetError, TaskData, register_dataset
from spottune.data.images import ImageFiles, LabelledImages, check_labels, require, stratified_holdout

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
RESIZE, CROP = 256, 224
TRAIN_TRANSFORM = f"Resize({RESIZE}) + RandomResizedCrop({CROP}) + RandomHorizontalFlip + ToTensor + Normalize"
TEST_TRANSFORM = f"Resize({RESIZE}) + CenterCrop({CROP}) + ToTensor + Normalize"
FOLDER_DATASETS = {"cubs": "cubs_cropped", "stanford_cars": "stanford_cars_cropped", "flowers": "flowers",
                   "wikiart": "wikiart", "sketches": "sketches", "stanford_dogs": "stanford_dogs",
                   "indoor67": "indoor67"}
"""Registered name -> folder under the data root (train/ and test/ of class folders)."""


def training_transform() -> Callable[[Image.Image], Any]:
    """``Resize(256) + RandomResizedCrop(224) + RandomHorizontalFlip + ToTensor + Normalize``."""
    return T.Compose([T.Resize(RESIZE), T.RandomResizedCrop(CROP), T.RandomHorizontalFlip(),
                      T.ToTensor(), T.Normalize(IMAGENET_MEAN, IMAGENET_STD)])


def evaluation_geometry() -> Callable[[Image.Image], Image.Image]:
    """``Resize(256) + CenterCrop(224)`` (PIL in, PIL out)."""
    return T.Compose([T.Resize(RESIZE), T.CenterCrop(CROP)])


def evaluation_transform() -> Callable[[Image.Image], Any]:
    """:func:`evaluation_geometry` then ``ToTensor + Normalize``."""
    return T.Compose([evaluation_geometry(), T.ToTensor(), T.Normalize(IMAGENET_MEAN, IMAGENET_STD)])


@dataclass
class Listing:
    """One split: images (a sequence yielding PIL images), their classes, where they were read."""

    images: Sequence[Any]
    labels: list[int]
    source: str

    def names(self) -> Sequence[Any]:
        """What names image i in an error: its file, else its position in the source."""
        if isinstance(self.images, ImageFiles):
            return self.images.files
        return [f"{self.source} image {i}" for i in range(len(self.labels))]


class ArrayImages:
    """uint8 ``(N, H, W, 3)`` images as a sequence of PIL images (CIFAR-100)."""

    def __init__(self, array: np.ndarray) -> None:
        self.array = array

    def __len__(self) -> int:
        return len(self.array)

    def __getitem__(self, index: int) -> Image.Image:
        return Image.fromarray(self.array[index])


def _no_download(name: str, download: bool) -> None:
    if download:
        raise DatasetError(f"{name} has no official download the suite can use: get its archives and run "
                           f"`python -m spottune.data.prepare {name} <archives> <data-root>` (docs/DATA.md)")


def _root(data_root: Path | None, name: str, layout: str) -> Path:
    if data_root is None:
        raise DatasetError(f"{name} needs --data-root or ${DATA_ENV}; expected layout:\n{layout}")
    return data_root


def folder_listings(folder: Path, layout: str) -> tuple[Listing, Listing, list[str]]:
    """``(train, test, classes)`` of ``folder/{train,test}/<class>/<image>``; classes are the
    sorted training class folders, and every test class folder must be one of them."""
    train_dir, test_dir = require(folder / "train", layout), require(folder / "test", layout)
    try:
        classes, class_to_idx = find_classes(train_dir)
        unknown = sorted(set(find_classes(test_dir)[0]) - set(classes))
        if unknown:
            raise DatasetError(f"{test_dir} has class folders absent from {train_dir}: {unknown[:5]}")
        splits = [make_dataset(d, class_to_idx, extensions=IMG_EXTENSIONS) for d in (train_dir, test_dir)]
    except FileNotFoundError as error:
        raise DatasetError(f"{folder}: {error}\nExpected layout:\n{layout}") from error
    train, test = (Listing(ImageFiles([Path(p) for p, _ in s]), [c for _, c in s], str(d))
                   for s, d in zip(splits, (train_dir, test_dir)))
    return train, test, classes


def _torchvision(cls: Callable[..., Any], root: Path, layout: str, **kwargs: Any) -> Any:
    """``cls(root, **kwargs)``, its errors (missing or malformed files) as :class:`DatasetError`."""
    try:
        return cls(str(root), **kwargs)
    except (RuntimeError, KeyError, ValueError, OSError) as error:
        raise DatasetError(f"torchvision {cls.__name__} could not read {root}: {error!r}\n"
                           f"Expected layout:\n{layout}") from error


def _torchvision_listing(source: str, *datasets: Any) -> Listing:
    """The files and labels torchvision ``FGVCAircraft`` or ``DTD`` datasets listed from their split
    files (their ``_image_files`` / ``_labels``, present in both since torchvision 0.12), one
    dataset after the other."""
    return Listing(ImageFiles([Path(f) for d in datasets for f in d._image_files]),
                   [c for d in datasets for c in d._labels], source)


def standard_task(name: str, train: Listing, test: Listing, num_classes: int, info: dict[str, Any], *,
                  eval_split: str = "test", holdout: float = 0.1, holdout_seed: int = 0) -> TaskData:
    """The :class:`TaskData` of two listings with the 224-px transforms and the scoring choice."""
    for listing in (train, test):
        check_labels(listing.labels, num_classes, listing.names(), listing.source)
    test_ids = list(range(len(test.labels)))  # positions in the test listing (the held-out ones: in the training listing)
    if eval_split == "holdout":
        kept, held = stratified_holdout(train.labels, holdout, holdout_seed)
        test_ids = [int(i) for i in held]
        train, test = (Listing(Subset(train.images, idx), [train.labels[i] for i in idx],
                               f"{train.source} ({part})")
                       for idx, part in ((kept, "kept"), (held, "held out")))
    elif eval_split != "test":
        raise ValueError(f"eval_split must be 'test' or 'holdout', got {eval_split!r}")
    geometry = evaluation_geometry()
    info = {**info, "dataset": name, "eval_split": eval_split,
            "holdout": {"fraction": holdout, "seed": holdout_seed} if eval_split == "holdout" else None,
            "train_transform": TRAIN_TRANSFORM, "test_transform": TEST_TRANSFORM,
            "mean": list(IMAGENET_MEAN), "std": list(IMAGENET_STD), "image_size": CROP,
            "train_images": len(train.labels), "test_images": len(test.labels), "num_classes": num_classes,
            "train_source": train.source, "test_source": test.source}
    test_images = test.images

    def raw_test_images(indices: list[int]) -> np.ndarray:
        return np.stack([np.asarray(geometry(test_images[i])) for i in indices])

    return TaskData(name=name, num_classes=num_classes,
                    train=LabelledImages(train.images, train.labels, training_transform()),
                    test=LabelledImages(test.images, test.labels, evaluation_transform()),
                    image_size=CROP, info=info, raw_test_images=raw_test_images, test_ids=test_ids)


def load_folder_dataset(name: str, data_root: Path | None, *, download: bool = False,
                        **options: Any) -> TaskData:
    """A dataset of :data:`FOLDER_DATASETS` (``<data-root>/<folder>/{train,test}/<class>/``)."""
    _no_download(name, download)
    layout = f"  <data-root>/{FOLDER_DATASETS[name]}/{{train,test}}/<class>/<image>"
    folder = _root(data_root, name, layout) / FOLDER_DATASETS[name]
    train, test, classes = folder_listings(folder, layout)
    return standard_task(name, train, test, len(classes), {"layout": "train/test class folders",
                                                           "root": str(folder), "split": "train"}, **options)


@register_dataset("fgvc_aircraft")
def fgvc_aircraft(data_root: Path | None, *, annotation_level: str = "variant", download: bool = False,
                  **options: Any) -> TaskData:
    """FGVC-Aircraft through torchvision's ``FGVCAircraft``: trainval / test."""
    layout = "  <data-root>/fgvc-aircraft-2013b/data/{images/,images_<level>_{trainval,test}.txt,variants.txt}"
    root = _root(data_root, "fgvc_aircraft", layout)
    if not download:
        require(root / "fgvc-aircraft-2013b" / "data" / f"images_{annotation_level}_trainval.txt", layout)
    train, test = (_torchvision(torchvision.datasets.FGVCAircraft, root, layout, split=s,
                                annotation_level=annotation_level, download=download)
                   for s in ("trainval", "test"))
    return standard_task("fgvc_aircraft", _torchvision_listing("FGVCAircraft trainval", train),
                         _torchvision_listing("FGVCAircraft test", test), len(train.classes),
                         {"layout": "torchvision FGVCAircraft", "annotation_level": annotation_level,
                          "split": "trainval"}, **options)


@register_dataset("dtd")
def dtd(data_root: Path | None, *, partition: int = 1, download: bool = False, **options: Any) -> TaskData:
    """DTD through torchvision's ``DTD``: train+val / test of one of its ten partitions."""
    layout = "  <data-root>/dtd/dtd/{images/<class>/<image>,labels/{train,val,test}<1..10>.txt}"
    root = _root(data_root, "dtd", layout)
    if not download:
        require(root / "dtd" / "dtd" / "labels" / f"train{partition}.txt", layout)
    parts = {s: _torchvision(torchvision.datasets.DTD, root, layout, split=s, partition=partition,
                             download=download) for s in ("train", "val", "test")}
    train = _torchvision_listing(f"DTD train{partition}+val{partition}", parts["train"], parts["val"])
    return standard_task("dtd", train, _torchvision_listing(f"DTD test{partition}", parts["test"]),
                         len(parts["train"].classes),
                         {"layout": "torchvision DTD", "partition": partition, "split": "train+val"},
                         **options)


@register_dataset("cifar100")
def cifar100(data_root: Path | None, *, download: bool = False, **options: Any) -> TaskData:
    """CIFAR-100 through torchvision's ``CIFAR100`` (which checks the files' MD5)."""
    layout = "  <data-root>/cifar-100-python/{train,test,meta} (the official python pickles)"
    root = _root(data_root, "cifar100", layout)
    if not download:
        require(root / "cifar-100-python", layout)
    train, test = (_torchvision(torchvision.datasets.CIFAR100, root, layout + " (MD5 as in the official archive)",
                                train=t, download=download) for t in (True, False))
    listings = [Listing(ArrayImages(d.data), list(d.targets), f"CIFAR100 {s}") for d, s in
                ((train, "train"), (test, "test"))]
    return standard_task("cifar100", *listings, len(train.classes),
                         {"layout": "torchvision CIFAR100", "split": "train"}, **options)


def caltech256_listings(root: Path, train_per_class: int, test_per_class: int | None, include_clutter: bool,
                        split_seed: int) -> tuple[Listing, Listing, list[str]]:
    """Per class (sorted folder names), a numpy permutation (one ``RandomState(split_seed)`` for
    all classes, in class order) of its sorted ``*.jpg`` files: the first ``train_per_class``
    train, the next ``test_per_class`` (all the rest when ``None``) test."""
    layout = "  <data-root>/caltech256/256_ObjectCategories/<NNN.name>/<NNN_MMMM>.jpg"
    folder = require(root / "caltech256" / "256_ObjectCategories", layout)
    classes = sorted(d.name for d in folder.iterdir() if d.is_dir()
                     and (include_clutter or not d.name.endswith(".clutter")))
    rng = np.random.RandomState(split_seed)
    split_files: tuple[list[Path], list[Path]] = ([], [])
    split_labels: tuple[list[int], list[int]] = ([], [])
    for label, cls in enumerate(classes):
        files = sorted(p for p in (folder / cls).iterdir() if p.suffix == ".jpg")
        wanted = train_per_class + (test_per_class or 1)
        if len(files) < wanted:
            raise DatasetError(f"{folder / cls} has {len(files)} images; the split needs {wanted}")
        order = rng.permutation(len(files))
        end = train_per_class + test_per_class if test_per_class else len(files)
        for part, chosen in enumerate((order[:train_per_class], order[train_per_class:end])):
            split_files[part].extend(files[i] for i in chosen)
            split_labels[part].extend([label] * len(chosen))
    train, test = (Listing(ImageFiles(f), y, f"{folder} ({part})")
                   for f, y, part in zip(split_files, split_labels, ("train", "test")))
    return train, test, classes


def load_caltech256(train_per_class: int, data_root: Path | None, *, test_per_class: int | None = 20,
                    include_clutter: bool = True, split_seed: int = 0, download: bool = False,
                    **options: Any) -> TaskData:
    """Caltech-256 with ``train_per_class`` training images per class (see the module docstring)."""
    name = f"caltech256_{train_per_class}"
    root = _root(data_root, name, "  <data-root>/caltech256/256_ObjectCategories/<NNN.name>/*.jpg")
    if download:
        torchvision.datasets.Caltech256(str(root), download=True)
    train, test, classes = caltech256_listings(root, train_per_class, test_per_class, include_clutter,
                                               split_seed)
    return standard_task(name, train, test, len(classes),
                         {"layout": "torchvision Caltech256 folders", "split": f"{train_per_class} per class",
                          "train_per_class": train_per_class,
                          "test_per_class": test_per_class, "include_clutter": include_clutter,
                          "split_seed": split_seed}, **options)


for _name in FOLDER_DATASETS:
    register_dataset(_name)(functools.partial(load_folder_dataset, _name))
for _per_class in (30, 60):
    register_dataset(f"caltech256_{_per_class}")(functools.partial(load_caltech256, _per_class))
