"""A complete user-defined dataset: a folder of images, one subfolder per class.

Layout under ``--data-root`` (or ``$SPOTTUNE_DATA``)::

    my_folder/train/<class name>/*.png|jpg     the training images
    my_folder/test/<class name>/*.png|jpg      the test images (the same class names)

Classes are numbered in sorted order of their folder names; every image is decoded once, as
RGB, and resized to ``image_size`` (32 by default, bilinear); training images get the suite's
usual augmentation (zero-pad ``image_size // 16``, random crop), and both splits are normalised
with the training images' per-channel mean and std. A missing folder or an unreadable image
stops the run with a message naming the path (:mod:`spottune.data.images`).

Run it in any preset with ``python benchmarks/run_all.py --plugins examples.my_dataset
--datasets my_folder --data-root DIR``. The suite's tests write a tiny folder of images and run
a grid on it, so this example cannot rot.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from spottune.data import TaskData, register_dataset
from spottune.data.images import decode_rgb, require
from spottune.data.tensor_dataset import TensorImageDataset, channel_stats

NAME = "my_folder"
SUFFIXES = (".png", ".jpg", ".jpeg")
LAYOUT = f"{NAME}/train/<class>/*.png and {NAME}/test/<class>/*.png under --data-root"


def read_split(folder: Path, classes: list[str], size: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Every image of ``folder/<class>/`` as uint8 (N, 3, size, size) and its class index."""
    images, labels = [], []
    for label, name in enumerate(classes):
        for path in sorted(p for p in require(folder / name, LAYOUT).iterdir() if p.suffix.lower() in SUFFIXES):
            x = torch.from_numpy(np.array(decode_rgb(path))).permute(2, 0, 1).float().unsqueeze(0)
            images.append(F.interpolate(x, size=(size, size), mode="bilinear", align_corners=False)
                          .round().clamp(0, 255).to(torch.uint8))
            labels.append(label)
    return torch.cat(images), torch.tensor(labels)


@register_dataset(NAME)
def my_folder(data_root: Path | None, image_size: int = 32, **_: object) -> TaskData:
    """The task of ``data_root/my_folder`` (see the module docstring); other data options of a
    preset (``image_size`` aside) are ignored."""
    root = require(Path(data_root or ".") / NAME, LAYOUT)
    classes = sorted(p.name for p in require(root / "train", LAYOUT).iterdir() if p.is_dir())
    train_x, train_y = read_split(root / "train", classes, image_size)
    test_x, test_y = read_split(root / "test", classes, image_size)
    mean, std = channel_stats(train_x)
    return TaskData(name=NAME, num_classes=len(classes), image_size=image_size,
                    train=TensorImageDataset(train_x, train_y, mean, std, augment=True, pad=image_size // 16),
                    test=TensorImageDataset(test_x, test_y, mean, std),
                    info={"source": str(root), "classes": classes, "image_size": image_size, "mean": mean,
                          "std": std, "train_images": len(train_x), "test_images": len(test_x)},
                    test_ids=list(range(len(test_x))),
                    raw_test_images=lambda idx: test_x[idx].permute(0, 2, 3, 1).numpy())
