"""Image counts of the registered datasets, known without reading a single image.

Used to estimate what a grid costs before running it (:mod:`spottune.estimates.cost`). Keyed by the
registered dataset name; a dataset missing here has an unknown size, and so an unknown cost.
Sources:

* Visual Decathlon: the devkit's split sizes (Rebuffi et al. 2017).
* Embedded mini tasks: the sizes :mod:`spottune.data.mini` builds (README, "The embedded default").
* Standard datasets: the counts :mod:`spottune.data.standard` documents (Stanford Dogs,
  Indoor-67, FGVC-Aircraft, DTD, CIFAR-100, Caltech-256 with its default options) and, for the
  five of the Piggyback benchmark, the counts of their public splits: CUB-200-2011 and Stanford
  Cars have official splits (5,994 / 5,794 and 8,144 / 8,041, as public dataset listings
  give them); the splits Piggyback made of Flowers (train + val), WikiArt and Sketch are
  recalled, not checked against its folders: these are listed in :data:`UNVERIFIED` and every
  estimate built on them says so.

* VTAB-1k (``vtab1k/<task>``): 800 + 200 training images per task (the lists' sizes) and the
  VTAB test splits (Zhai et al. 2019); FGVC (``fgvc/<dataset>``): VPT's train / val / test
  sizes (Jia et al. 2022, its FGVC table). Both test-split tables are recalled, not checked
  against the distributed files: every estimate built on them says so (:data:`UNVERIFIED`).

A Decathlon run's training and scored images follow its data options as
:mod:`spottune.data.decathlon` reads them: ``split`` (``"train+val"``, default, as released;
or ``"train"``), ``eval_split`` (``"test"``, default; ``"val"``; or ``"holdout"``). With
``eval_split: holdout`` (Decathlon and standard datasets) a ``holdout`` fraction (default 0.1)
of the training images is scored instead of trained on; the loaders' per-class rounding is
approximated by rounding once. A mini task's ``train_per_class`` keeps at most that many
training images of each of its :data:`MINI_CLASSES` classes (exact while every class has as many).
"""
from __future__ import annotations

from typing import Any

DECATHLON_SPLITS: dict[str, tuple[int, int, int]] = {  # train, val, test
    "aircraft": (3334, 3333, 3333),
    "cifar100": (40000, 10000, 10000),
    "daimlerpedcls": (23520, 5880, 19600),
    "dtd": (1880, 1880, 1880),
    "gtsrb": (31367, 7842, 12630),
    "imagenet12": (1232167, 49000, 48238),
    "omniglot": (17853, 6492, 8115),
    "svhn": (47217, 26040, 26032),
    "ucf101": (7585, 1952, 3783),
    "vgg-flowers": (1020, 1020, 6149),
}

TRAIN_TEST: dict[str, tuple[int, int]] = {  # train, test
    "mini_source": (36000, 6000),  # Fashion-MNIST classes 0-5 (the mini presets' pretraining)
    "fmnist_heldout": (1000, 1000),
    "digits": (1198, 599),
    "glyph_letters": (1310, 874),
    "glyph_fonts": (1080, 720),
    "cubs": (5994, 5794),
    "stanford_cars": (8144, 8041),
    "flowers": (2040, 6149),
    "wikiart": (42129, 10628),
    "sketches": (16000, 4000),
    "stanford_dogs": (12000, 8580),
    "indoor67": (5360, 1340),
    "fgvc_aircraft": (6667, 3333),
    "dtd": (3760, 1880),
    "cifar100": (50000, 10000),
    "caltech256_30": (257 * 30, 257 * 20),
    "caltech256_60": (257 * 60, 257 * 20),
}
MINI_CLASSES: dict[str, int] = {"fmnist_heldout": 4, "digits": 10, "glyph_letters": 26, "glyph_fonts": 7}
VTAB1K_TEST: dict[str, int] = {
    "cifar": 10000, "caltech101": 6084, "dtd": 1880, "oxford_flowers102": 6149, "oxford_iiit_pet": 3669,
    "svhn": 26032, "sun397": 21750, "patch_camelyon": 32768, "eurosat": 5400, "resisc45": 6300,
    "diabetic_retinopathy": 42670, "clevr_count": 15000, "clevr_dist": 15000, "dmlab": 22735, "kitti": 711,
    "dsprites_loc": 73728, "dsprites_ori": 73728, "smallnorb_azi": 12150, "smallnorb_ele": 12150,
}
VTAB1K_SPLITS = {"train800val200": 1000, "train800": 800, "val200": 200}
FGVC_SPLITS: dict[str, tuple[int, int, int]] = {  # train, val, test (VPT's split files)
    "cub": (5394, 600, 5794), "nabirds": (21536, 2393, 24633), "flowers": (1020, 1020, 6149),
    "dogs": (10800, 1200, 8580), "cars": (7329, 815, 8041),
}
UNVERIFIED = frozenset({"flowers", "wikiart", "sketches", *(f"vtab1k/{t}" for t in VTAB1K_TEST),
                        *(f"fgvc/{d}" for d in FGVC_SPLITS)})


def run_sizes(dataset: str, data_options: dict[str, Any] | None = None) -> tuple[int, int] | None:
    """``(training images, scored images)`` of one run of ``dataset`` under ``data_options``,
    or ``None`` when the size of ``dataset`` is not known."""
    options = data_options or {}
    domain = dataset.removeprefix("decathlon/")
    if dataset.startswith("decathlon/") and domain in DECATHLON_SPLITS:
        sizes = dict(zip(("train", "val", "test"), DECATHLON_SPLITS[domain]))
        train = sum(sizes[p] for p in str(options.get("split", "train+val")).split("+"))
        scored = sizes.get(str(options.get("eval_split", "test")), 0)
    elif dataset.startswith("vtab1k/") and dataset.removeprefix("vtab1k/") in VTAB1K_TEST:
        train = VTAB1K_SPLITS[str(options.get("split", "train800val200"))]
        eval_split = str(options.get("eval_split", "test"))
        scored = VTAB1K_TEST[dataset.removeprefix("vtab1k/")] if eval_split == "test" else VTAB1K_SPLITS[eval_split]
    elif dataset.startswith("fgvc/") and dataset.removeprefix("fgvc/") in FGVC_SPLITS:
        sizes = dict(zip(("train", "val", "test"), FGVC_SPLITS[dataset.removeprefix("fgvc/")]))
        train = sizes["train"] + (sizes["val"] if options.get("split", "trainval") == "trainval" else 0)
        scored = sizes[str(options.get("eval_split", "test"))]
    elif dataset in TRAIN_TEST:
        train, scored = TRAIN_TEST[dataset]
        if dataset in MINI_CLASSES and options.get("train_per_class") is not None:
            train = min(train, int(options["train_per_class"]) * MINI_CLASSES[dataset])
    else:
        return None
    if options.get("eval_split") == "holdout":
        held = round(float(options.get("holdout", 0.1)) * train)
        return train - held, held
    return train, scored


def pretraining_sizes(pretrained: dict[str, Any]) -> tuple[int, int] | None:
    """:func:`run_sizes` of a suite pretraining's source task (``pretrained``: its spec), at most
    ``max_images`` training images when the spec sets it; ``None`` when the size is unknown."""
    sizes = run_sizes(pretrained["dataset"], pretrained.get("data_options"))
    if sizes is not None and pretrained.get("max_images"):
        return min(sizes[0], int(pretrained["max_images"])), sizes[1]
    return sizes
