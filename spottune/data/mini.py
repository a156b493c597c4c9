"""The embedded default ("mini" preset): real, offline data at 32 px, small enough for a CPU.

Source task (pretraining): Fashion-MNIST classes 0-5 (t-shirt, trouser, pullover, dress,
coat, sandal), its training split. Target tasks, from near to far from the source:

``fmnist_heldout``
    Fashion-MNIST classes 6-9 (shirt, sneaker, bag, ankle boot), never seen in pretraining:
    250 training images per class from its training split, 250 test images per class from
    its test split (first ones in file order).
``digits``
    scikit-learn's handwritten digits (1,797 images of 8x8, 17 grey levels), upsampled to
    32x32 (bilinear); 10 classes; stratified split, 2/3 train, 1/3 test (seed 0).
``glyph_letters``
    The 26 capital letters rendered with 21 fonts shipped with matplotlib (DejaVu, STIX,
    Computer Modern), 4 jittered renderings each (size 18-26 px, rotation +-12 degrees,
    offset +-3 px; seed 0); 26 classes; split 60/40 at random (seed 0).
``glyph_fonts``
    Which of 7 font families (DejaVu Sans, DejaVu Sans Mono, DejaVu Serif, STIX, Computer
    Modern roman, sans and typewriter) rendered a letter or digit (36 characters, every font
    file of the family, 2 jittered renderings each, 6 for the single-file families so that
    the classes are about the same size); a style task far from the source; split 60/40 at
    random (seed 0).

Each task's ``test_ids`` number its test images in their source (the index in Fashion-MNIST's
test split, in ``load_digits``, in the rendering order of the glyphs), so that two runs' per-image
predictions are paired only when they scored the same images.

Images are grey (1 channel, repeated to 3); normalisation uses the training split's mean
and std; training augmentation is a random crop of a 2-px zero-padded image. The data option
``image_size`` (default 32) resizes every image once, bilinearly, before anything else (the
padding scales with it: 4 px at 64), for a network pretrained on larger images. The data option
``train_per_class`` (default: all) keeps that many training images of each class, drawn at random
once (seed 0, whatever the run's seed, as VTAB-1k fixes its 1,000), for a low-data variant of a
task; the test split is unchanged. Fashion-MNIST
is read from ``--data-root`` (``FashionMNIST/raw/`` as torchvision writes it, or
``fashion-mnist/``), else from Debian's ``dataset-fashion-mnist`` package
(``/usr/share/datasets/fashion-mnist``); it is downloaded only with ``download=True``.
"""
from __future__ import annotations

import functools
import gzip
import string
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from spottune.data.base import DatasetError, TaskData, register_dataset
from spottune.data.tensor_dataset import TensorImageDataset, channel_stats

IMAGE_SIZE = 32
PAD = 2
SOURCE_CLASSES = (0, 1, 2, 3, 4, 5)
HELDOUT_CLASSES = (6, 7, 8, 9)
DEBIAN_FMNIST = Path("/usr/share/datasets/fashion-mnist")
FMNIST_FILES = {"train": ("train-images-idx3-ubyte", "train-labels-idx1-ubyte"),
                "test": ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte")}
FONT_FAMILIES = {
    "dejavu-sans": ("DejaVuSans.ttf", "DejaVuSans-Bold.ttf", "DejaVuSans-Oblique.ttf",
                    "DejaVuSans-BoldOblique.ttf"),
    "dejavu-mono": ("DejaVuSansMono.ttf", "DejaVuSansMono-Bold.ttf", "DejaVuSansMono-Oblique.ttf",
                    "DejaVuSansMono-BoldOblique.ttf"),
    "dejavu-serif": ("DejaVuSerif.ttf", "DejaVuSerif-Bold.ttf", "DejaVuSerif-Italic.ttf",
                     "DejaVuSerif-BoldItalic.ttf"),
    "stix": ("STIXGeneral.ttf", "STIXGeneralBol.ttf", "STIXGeneralItalic.ttf", "STIXGeneralBolIta.ttf"),
    "cm-roman": ("cmr10.ttf", "cmb10.ttf", "cmti10.ttf"),
    "cm-sans": ("cmss10.ttf",),
    "cm-typewriter": ("cmtt10.ttf",),
}


def _fmnist_candidates(data_root: Path | None) -> list[Path]:
    roots = [data_root / "FashionMNIST" / "raw", data_root / "fashion-mnist"] if data_root else []
    return roots + [DEBIAN_FMNIST]


def _read_idx(path_stem: Path) -> np.ndarray:
    for path in (path_stem.with_name(path_stem.name + ".gz"), path_stem):
        if path.exists():
            opener = gzip.open if path.suffix == ".gz" else open
            with opener(path, "rb") as f:
                data = f.read()
            ndim = data[3]
            shape = [int.from_bytes(data[4 + 4 * i:8 + 4 * i], "big") for i in range(ndim)]
            offset = 4 + 4 * ndim
            array = np.frombuffer(data, dtype=np.uint8, count=int(np.prod(shape)), offset=offset)
            return array.reshape(shape)
    raise FileNotFoundError(path_stem)


@functools.lru_cache(maxsize=4)
def read_fashion_mnist(split: str, data_root: Path | None = None, download: bool = False
                       ) -> tuple[torch.Tensor, torch.Tensor]:
    """Fashion-MNIST ``split`` ("train" / "test") as uint8 images (N, 1, 28, 28) and labels."""
    images_name, labels_name = FMNIST_FILES[split]
    candidates = _fmnist_candidates(data_root)
    for folder in candidates:
        if (folder / (images_name + ".gz")).exists() or (folder / images_name).exists():
            images = _read_idx(folder / images_name)
            labels = _read_idx(folder / labels_name)
            return torch.from_numpy(images.copy()).unsqueeze(1), torch.from_numpy(labels.astype(np.int64))
    if download:
        if data_root is None:
            raise DatasetError("--download needs --data-root (or $SPOTTUNE_DATA) to know where to write")
        import torchvision

        torchvision.datasets.FashionMNIST(str(data_root), train=(split == "train"), download=True)
        read_fashion_mnist.cache_clear()
        return read_fashion_mnist(split, data_root, False)
    raise DatasetError(
        "Fashion-MNIST not found. Looked for " + images_name + "[.gz] in: "
        + ", ".join(str(c) for c in candidates)
        + ". Fix: `apt-get install dataset-fashion-mnist` (Debian), or put torchvision's raw files "
          "under <data-root>/FashionMNIST/raw/, or pass --download with --data-root.")


def _to_32(images: torch.Tensor) -> torch.Tensor:
    """28x28 -> 32x32 by zero-padding 2 px (MNIST style)."""
    return F.pad(images, (2, 2, 2, 2))


def resized(images: torch.Tensor, size: int) -> torch.Tensor:
    """uint8 images (N, C, 32, 32) resized to ``size`` px (bilinear; unchanged at 32)."""
    if size == images.shape[-1]:
        return images
    x = F.interpolate(images.float(), size=(size, size), mode="bilinear", align_corners=False, antialias=True)
    return x.round().clamp(0, 255).to(torch.uint8)


def per_class_subset(labels: torch.Tensor, per_class: int, seed: int = 0) -> torch.Tensor:
    """Indices (sorted) of ``per_class`` images of every class drawn without replacement (a
    ``torch.Generator`` seeded ``seed``, classes in label order); a class with fewer keeps all."""
    g = torch.Generator().manual_seed(seed)
    keep = []
    for c in labels.unique():
        idx = torch.nonzero(labels == c).flatten()
        keep.append(idx[torch.randperm(len(idx), generator=g)[:per_class]])
    return torch.cat(keep).sort().values


def _task(name: str, train_x: torch.Tensor, train_y: torch.Tensor, test_x: torch.Tensor,
          test_y: torch.Tensor, test_ids: torch.Tensor, info: dict, image_size: int = IMAGE_SIZE,
          train_per_class: int | None = None) -> TaskData:
    image_size = int(image_size)
    if image_size < IMAGE_SIZE:
        raise ValueError(f"{name}: image_size must be at least {IMAGE_SIZE} px (the images' own size), got {image_size}")
    if train_per_class is not None:
        if isinstance(train_per_class, bool) or not isinstance(train_per_class, int) or train_per_class < 1:
            raise ValueError(f"{name}: train_per_class must be a positive integer (training images kept per "
                             f"class), got {train_per_class!r}")
        keep = per_class_subset(train_y, train_per_class)
        train_x, train_y = train_x[keep], train_y[keep]
        info = {**info, "train_per_class": train_per_class}
    train_x, test_x = resized(train_x, image_size), resized(test_x, image_size)
    pad = PAD * image_size // IMAGE_SIZE
    mean, std = channel_stats(train_x)
    num_classes = int(train_y.max()) + 1
    resize = f"bilinear resize {IMAGE_SIZE} -> {image_size}, " if image_size != IMAGE_SIZE else ""
    info = {**info, "image_size": image_size, "mean": mean, "std": std,
            "train_transform": f"{resize}zero-pad {pad} + random crop {image_size}",
            "test_transform": f"bilinear resize {IMAGE_SIZE} -> {image_size}" if resize else "none",
            "train_images": len(train_x), "test_images": len(test_x)}
    return TaskData(name=name, num_classes=num_classes,
                    train=TensorImageDataset(train_x, train_y, mean, std, augment=True, pad=pad),
                    test=TensorImageDataset(test_x, test_y, mean, std),
                    image_size=image_size, info=info, test_ids=test_ids.tolist(),
                    raw_test_images=lambda idx: test_x[idx].expand(-1, 3, -1, -1).permute(0, 2, 3, 1).numpy())


def _select_classes(images: torch.Tensor, labels: torch.Tensor, classes: tuple[int, ...],
                    per_class: int | None) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """The images of ``classes`` (the first ``per_class`` of each), their labels renumbered
    0..k-1, and their indices in ``images``."""
    keep = []
    for c in classes:
        idx = torch.nonzero(labels == c).flatten()
        keep.append(idx if per_class is None else idx[:per_class])
    order = torch.cat(keep).sort().values
    remap = torch.full((10,), -1, dtype=torch.long)
    remap[list(classes)] = torch.arange(len(classes))
    return images[order], remap[labels[order]], order


def _fmnist_task(name: str, data_root: Path | None, download: bool, classes: tuple[int, ...],
                 per_class: int | None, source: str, image_size: int,
                 train_per_class: int | None = None) -> TaskData:
    """Fashion-MNIST ``classes`` (the first ``per_class`` of each, all when ``None``) of the
    training and test splits, padded to 32 px (after the selection: padding is per image)."""
    splits, test_ids = [], None
    for split in ("train", "test"):
        images, labels = read_fashion_mnist(split, data_root, download)
        images, labels, test_ids = _select_classes(images, labels, classes, per_class)
        splits += [_to_32(images), labels]
    return _task(name, *splits, test_ids, {"source": source}, image_size,  # test_ids: of the test split, read last
                 train_per_class)


@register_dataset("mini_source")
def mini_source(data_root: Path | None, download: bool = False, image_size: int = IMAGE_SIZE,
                **_: object) -> TaskData:
    """The pretraining task: Fashion-MNIST classes 0-5, training split (test: its test split)."""
    return _fmnist_task("mini_source", data_root, download, SOURCE_CLASSES, None, "Fashion-MNIST classes 0-5",
                        image_size)


@register_dataset("fmnist_heldout")
def fmnist_heldout(data_root: Path | None, download: bool = False, image_size: int = IMAGE_SIZE,
                   train_per_class: int | None = None, **_: object) -> TaskData:
    return _fmnist_task("fmnist_heldout", data_root, download, HELDOUT_CLASSES, 250,
                        "Fashion-MNIST classes 6-9 (held out from pretraining)", image_size, train_per_class)


def _random_split(images: torch.Tensor, labels: torch.Tensor, train_fraction: float, seed: int,
                  stratified: bool) -> tuple[torch.Tensor, ...]:
    """Training images and labels, test images and labels, and the test images' indices."""
    g = torch.Generator().manual_seed(seed)
    if stratified:
        train_idx, test_idx = [], []
        for c in labels.unique():
            idx = torch.nonzero(labels == c).flatten()
            idx = idx[torch.randperm(len(idx), generator=g)]
            n = int(round(train_fraction * len(idx)))
            train_idx.append(idx[:n])
            test_idx.append(idx[n:])
        tr, te = torch.cat(train_idx).sort().values, torch.cat(test_idx).sort().values
    else:
        perm = torch.randperm(len(labels), generator=g)
        n = int(round(train_fraction * len(labels)))
        tr, te = perm[:n].sort().values, perm[n:].sort().values
    return images[tr], labels[tr], images[te], labels[te], te


@register_dataset("digits")
def digits(data_root: Path | None, image_size: int = IMAGE_SIZE, train_per_class: int | None = None,
           **_: object) -> TaskData:
    from sklearn.datasets import load_digits

    bunch = load_digits()
    x = torch.from_numpy(bunch.images).float().unsqueeze(1) / 16.0
    x = F.interpolate(x, size=(IMAGE_SIZE, IMAGE_SIZE), mode="bilinear", align_corners=False)
    images = (x.clamp(0, 1) * 255).round().to(torch.uint8)
    labels = torch.from_numpy(bunch.target.astype(np.int64))
    return _task("digits", *_random_split(images, labels, 2 / 3, seed=0, stratified=True),
                 {"source": "scikit-learn load_digits, 8x8 upsampled to 32x32"}, image_size, train_per_class)


def _font_dir() -> Path:
    import matplotlib

    return Path(matplotlib.get_data_path()) / "fonts" / "ttf"


def render_glyph(char: str, font_file: str, rng: np.random.RandomState) -> np.ndarray:
    """One jittered rendering of ``char``: 32x32 uint8, white glyph on black."""
    from PIL import Image, ImageDraw, ImageFont

    size = int(rng.randint(18, 27))
    font = ImageFont.truetype(str(_font_dir() / font_file), size)
    canvas = Image.new("L", (48, 48), 0)
    draw = ImageDraw.Draw(canvas)
    left, top, right, bottom = draw.textbbox((0, 0), char, font=font)
    x = (48 - (right - left)) / 2 - left + rng.randint(-3, 4)
    y = (48 - (bottom - top)) / 2 - top + rng.randint(-3, 4)
    draw.text((x, y), char, fill=255, font=font)
    canvas = canvas.rotate(float(rng.uniform(-12, 12)), resample=Image.BILINEAR)
    return np.asarray(canvas.crop((8, 8, 40, 40)), dtype=np.uint8)


@functools.lru_cache(maxsize=2)
def _render(task: str) -> tuple[torch.Tensor, torch.Tensor]:
    rng = np.random.RandomState(0)
    images, labels = [], []
    if task == "glyph_letters":
        fonts = [f for files in FONT_FAMILIES.values() for f in files]
        for label, char in enumerate(string.ascii_uppercase):
            for font in fonts:
                for _ in range(4):
                    images.append(render_glyph(char, font, rng))
                    labels.append(label)
    else:
        chars = string.ascii_uppercase + string.digits
        for label, files in enumerate(FONT_FAMILIES.values()):
            for font in files:
                for char in chars:
                    for _ in range(2 if len(files) > 1 else 6):
                        images.append(render_glyph(char, font, rng))
                        labels.append(label)
    return (torch.from_numpy(np.stack(images)).unsqueeze(1),
            torch.tensor(labels, dtype=torch.long))


@register_dataset("glyph_letters")
def glyph_letters(data_root: Path | None, image_size: int = IMAGE_SIZE, train_per_class: int | None = None,
                  **_: object) -> TaskData:
    images, labels = _render("glyph_letters")
    return _task("glyph_letters", *_random_split(images, labels, 0.6, seed=0, stratified=False),
                 {"source": "26 capital letters rendered with 21 matplotlib fonts"}, image_size, train_per_class)


@register_dataset("glyph_fonts")
def glyph_fonts(data_root: Path | None, image_size: int = IMAGE_SIZE, train_per_class: int | None = None,
                **_: object) -> TaskData:
    images, labels = _render("glyph_fonts")
    return _task("glyph_fonts", *_random_split(images, labels, 0.6, seed=0, stratified=False),
                 {"source": "font family of letters and digits rendered with matplotlib fonts"}, image_size,
                 train_per_class)
