"""The datasets of the parameter-efficient fine-tuning benchmarks, in the layouts their
reference codebases distribute.

**VTAB-1k** (Zhai et al. 2019), 19 tasks of 1,000 training images each, as NOAH
(ZhangYuanhan-AI/NOAH, ``lib/datasets.py``; also V-PETL Bench) distributes it, one folder per
task with image lists of ``<relative path> <label>`` lines::

    vtab1k/<task>   <data-root>/vtab-1k/<task>/{train800.txt, val200.txt, train800val200.txt, test.txt}
                    and the images those lists name, relative to <data-root>/vtab-1k/<task>/

``split``: ``train800val200`` (default: the 1,000 images, as the published tables are trained)
or ``train800``; ``eval_split``: ``test`` (default) or ``val200`` (model selection). NOAH's
VTAB transforms: ``Resize((224, 224))`` bicubic, no augmentation, ImageNet mean / std.
Groups (:data:`VTAB_GROUPS`): Natural 7, Specialized 4, Structured 8.

**FGVC** (the five fine-grained datasets of VPT, Jia et al. 2022), as VPT (KMnP/vpt,
``src/data/datasets/json_dataset.py``) reads them: in each dataset folder ``train.json``,
``val.json`` and ``test.json`` map an image path to its class id (VPT's split of the official
training set into train / val, and the official test set)::

    fgvc/cub        <data-root>/FGVC/CUB_200_2011/{train,val,test}.json, images/...      200 classes
    fgvc/nabirds    <data-root>/FGVC/nabirds/{train,val,test}.json, images/...           555 classes
    fgvc/flowers    <data-root>/FGVC/OxfordFlower/{train,val,test}.json, jpg/...         102 classes
    fgvc/dogs       <data-root>/FGVC/Stanford-dogs/{train,val,test}.json, Images/...     120 classes
    fgvc/cars       <data-root>/FGVC/Stanford-cars/{train,val,test}.json, car_ims/...    196 classes

(image paths relative to the dataset's image folder: ``images/`` for CUB and NABirds,
``Images/`` for Dogs, the dataset folder itself for Flowers and Cars, as VPT). Class ids become
0..C-1 in sorted order of those in the training JSON. ``split``: ``trainval`` (default: train +
val) or ``train`` (what VPT's ``train.py`` trains FGVC on, the fgvc preset's); ``eval_split``:
``test`` or ``val``. VPT's FGVC transforms:
training ``Resize(256) + RandomCrop(224) + RandomHorizontalFlip``, test
``Resize(256) + CenterCrop(224)``, ImageNet mean / std.

``python -m spottune.data.prepare vtab1k|fgvc <archives or folders> <data-root>`` puts either
into place. A missing file names itself and the layout; a label outside the task's classes
names its file.
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Callable

import numpy as np
from PIL import Image
from torchvision import transforms as T

from spottune.data.base import DATA_ENV, DatasetError, TaskData, register_dataset
from spottune.data.images import ImageFiles, LabelledImages, check_labels, require

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
VTAB_FOLDER, FGVC_FOLDER = "vtab-1k", "FGVC"

VTAB_TASKS: dict[str, int] = {
    "cifar": 100, "caltech101": 102, "dtd": 47, "oxford_flowers102": 102, "oxford_iiit_pet": 37, "svhn": 10,
    "sun397": 397, "patch_camelyon": 2, "eurosat": 10, "resisc45": 45, "diabetic_retinopathy": 5,
    "clevr_count": 8, "clevr_dist": 6, "dmlab": 6, "kitti": 4, "dsprites_loc": 16, "dsprites_ori": 16,
    "smallnorb_azi": 18, "smallnorb_ele": 9,
}
"""NOAH's task folder -> classes, in the order of the published tables."""
VTAB_GROUPS: dict[str, list[str]] = {
    "Natural": ["cifar", "caltech101", "dtd", "oxford_flowers102", "oxford_iiit_pet", "svhn", "sun397"],
    "Specialized": ["patch_camelyon", "eurosat", "resisc45", "diabetic_retinopathy"],
    "Structured": ["clevr_count", "clevr_dist", "dmlab", "kitti", "dsprites_loc", "dsprites_ori", "smallnorb_azi",
                   "smallnorb_ele"],
}
VTAB_SPLITS = {"split": ("train800val200", "train800"), "eval_split": ("test", "val200")}

FGVC_DATASETS: dict[str, tuple[str, str, int]] = {
    "cub": ("CUB_200_2011", "images", 200), "nabirds": ("nabirds", "images", 555),
    "flowers": ("OxfordFlower", "", 102), "dogs": ("Stanford-dogs", "Images", 120),
    "cars": ("Stanford-cars", "", 196),
}
"""Registered suffix -> (folder under <data-root>/FGVC, image folder inside it, classes)."""
FGVC_SPLITS = {"split": ("trainval", "train"), "eval_split": ("test", "val")}


def _transform(geometry: list[Callable[[Image.Image], Any]]) -> Callable[[Image.Image], Any]:
    return T.Compose([*geometry, T.ToTensor(), T.Normalize(IMAGENET_MEAN, IMAGENET_STD)])


def _folder(data_root: Path | None, name: str, layout: str) -> Path:
    if data_root is None:
        raise DatasetError(f"{name} needs --data-root or ${DATA_ENV}; expected layout:\n{layout}")
    return Path(data_root)


def _choice(value: str, key: str, allowed: tuple[str, ...]) -> str:
    if value not in allowed:
        raise ValueError(f"{key} must be one of {allowed}, got {value!r}")
    return value


def _task(name: str, splits: dict[str, tuple[list[Path], list[int], str]], num_classes: int,
          geometry: tuple[list[Callable], list[Callable]], size: int, info: dict[str, Any]) -> TaskData:
    """A :class:`TaskData` from ``{"train": (files, labels, source), "test": (...)}``."""
    for files, labels, source in splits.values():
        check_labels(labels, num_classes, files, source)
    (train_files, train_labels, train_source), (test_files, test_labels, test_source) = splits["train"], splits["test"]
    test_images = ImageFiles(test_files)
    test_geometry = T.Compose(geometry[1])

    def raw_test_images(indices: list[int]) -> np.ndarray:
        return np.stack([np.asarray(test_geometry(test_images[i])) for i in indices])

    info = {**info, "dataset": name, "mean": list(IMAGENET_MEAN), "std": list(IMAGENET_STD), "image_size": size,
            "train_images": len(train_labels), "test_images": len(test_labels), "num_classes": num_classes,
            "train_source": train_source, "test_source": test_source}
    return TaskData(name=name, num_classes=num_classes,
                    train=LabelledImages(ImageFiles(train_files), train_labels, _transform(geometry[0])),
                    test=LabelledImages(test_images, test_labels, _transform(geometry[1])),
                    image_size=size, info=info, raw_test_images=raw_test_images,
                    test_ids=list(range(len(test_labels))))  # line numbers of the test list, from 0


def read_image_list(path: Path, root: Path) -> tuple[list[Path], list[int], str]:
    """``(files, labels, source)`` of a NOAH list: one ``<relative path> <label>`` per line."""
    files, labels = [], []
    for number, line in enumerate(path.read_text().splitlines(), 1):
        if not line.strip():
            continue
        relative, _, label = line.strip().rpartition(" ")
        if not relative or not label.lstrip("-").isdigit():
            raise DatasetError(f"{path}:{number}: expected '<image path> <label>', got {line!r}")
        files.append(root / relative)
        labels.append(int(label))
    return files, labels, str(path)


def load_vtab1k(task: str, data_root: Path | None, *, split: str = "train800val200", eval_split: str = "test",
                download: bool = False) -> TaskData:
    """VTAB-1k ``task`` in NOAH's layout (see the module docstring)."""
    if download:
        raise DatasetError("VTAB-1k has no download the suite can use: get NOAH's vtab-1k archive and run "
                           "`python -m spottune.data.prepare vtab1k <archive> <data-root>` (docs/DATA.md)")
    layout = (f"  <data-root>/{VTAB_FOLDER}/{task}/{{train800,val200,train800val200,test}}.txt "
              f"('<image path> <label>' lines) and the images they name")
    folder = _folder(data_root, f"vtab1k/{task}", layout) / VTAB_FOLDER / task
    lists = {"train": _choice(split, "split", VTAB_SPLITS["split"]),
             "test": _choice(eval_split, "eval_split", VTAB_SPLITS["eval_split"])}
    splits = {part: read_image_list(require(folder / f"{stem}.txt", layout), folder) for part, stem in lists.items()}
    resize = [T.Resize((224, 224), interpolation=T.InterpolationMode.BICUBIC)]
    return _task(f"vtab1k/{task}", splits, VTAB_TASKS[task], (resize, resize), 224,
                 {"layout": "NOAH vtab-1k lists", "root": str(folder), "split": split, "eval_split": eval_split,
                  "group": next(g for g, tasks in VTAB_GROUPS.items() if task in tasks),
                  "train_transform": "Resize((224, 224)) bicubic + ToTensor + Normalize (no augmentation)",
                  "test_transform": "Resize((224, 224)) bicubic + ToTensor + Normalize"})


def read_split_json(path: Path, image_root: Path) -> dict[Path, int]:
    """``{image file: class id}`` of one VPT split file."""
    try:
        mapping = json.loads(path.read_text())
    except json.JSONDecodeError as error:
        raise DatasetError(f"{path}: not valid JSON ({error})") from error
    if not isinstance(mapping, dict):
        raise DatasetError(f"{path}: expected a JSON object mapping image paths to class ids")
    return {image_root / key: int(value) for key, value in mapping.items()}


def load_fgvc(dataset: str, data_root: Path | None, *, split: str = "trainval", eval_split: str = "test",
              download: bool = False) -> TaskData:
    """FGVC ``dataset`` with VPT's split files (see the module docstring)."""
    folder_name, image_folder, num_classes = FGVC_DATASETS[dataset]
    if download:
        raise DatasetError(f"fgvc/{dataset} has no download the suite can use: get the official images and VPT's "
                           f"split files and run `python -m spottune.data.prepare fgvc <sources> <data-root>`")
    layout = (f"  <data-root>/{FGVC_FOLDER}/{folder_name}/{{train,val,test}}.json (image path -> class id) "
              f"and the images under <data-root>/{FGVC_FOLDER}/{folder_name}/{image_folder}")
    folder = _folder(data_root, f"fgvc/{dataset}", layout) / FGVC_FOLDER / folder_name
    image_root = folder / image_folder
    parts = {"train": {"trainval": ["train", "val"], "train": ["train"]}[_choice(split, "split", FGVC_SPLITS["split"])],
             "test": [_choice(eval_split, "eval_split", FGVC_SPLITS["eval_split"])]}
    read = {stem: read_split_json(require(folder / f"{stem}.json", layout), image_root)
            for stem in ("train", "val", "test") if any(stem in stems for stems in parts.values())}
    class_ids = sorted(set(read["train"].values()))
    index = {class_id: i for i, class_id in enumerate(class_ids)}
    splits = {}
    for part, stems in parts.items():
        entries = [(file, index.get(class_id, -1)) for stem in stems for file, class_id in read[stem].items()]
        splits[part] = ([f for f, _ in entries], [c for _, c in entries], " + ".join(f"{folder / s}.json" for s in stems))
    train = ([T.Resize(256), T.RandomCrop(224), T.RandomHorizontalFlip()])
    test = [T.Resize(256), T.CenterCrop(224)]
    return _task(f"fgvc/{dataset}", splits, num_classes, (train, test), 224,
                 {"layout": "VPT FGVC split JSON", "root": str(folder), "split": split, "eval_split": eval_split,
                  "train_transform": "Resize(256) + RandomCrop(224) + RandomHorizontalFlip + ToTensor + "
                                     "Normalize",
                  "test_transform": "Resize(256) + CenterCrop(224) + ToTensor + Normalize"})


for _task_name in VTAB_TASKS:
    register_dataset(f"vtab1k/{_task_name}")(
        lambda data_root, _name=_task_name, **options: load_vtab1k(_name, data_root, **options))
for _dataset in FGVC_DATASETS:
    register_dataset(f"fgvc/{_dataset}")(
        lambda data_root, _name=_dataset, **options: load_fgvc(_name, data_root, **options))
