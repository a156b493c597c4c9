"""Turn official archives or folders into the layouts the loaders read (docs/DATA.md)::

    python -m spottune.data.prepare <dataset> <archive-or-folder> [...] <data-root> [--pack]

Archives (``.tar``, ``.tar.gz``, ``.tgz``, ``.zip``) are extracted into a staging folder inside
``<data-root>`` (tar members are filtered: no absolute paths, no ``..``, no links outside) and
moved into place; ``.tar`` files found inside are extracted where they lie (the Decathlon's
per-domain archives). Folders given as sources are never modified: their files are
hard-linked into place (copied across file systems). A destination that already exists is
left alone, so preparing again, or adding a source later (e.g. ImageNet to the Decathlon),
only adds what is missing. At the end every affected dataset is loaded once and its split
sizes and class counts printed; nothing is downloaded.

What each ``<dataset>`` takes:

``decathlon``      decathlon-1.0-devkit.tar.gz, decathlon-1.0-data.tar.gz,
                   decathlon-1.0-data-imagenet.tar, optionally labels_test.zip; ``--pack``
                   also builds the packed caches
``cubs``, ``stanford_cars``, ``flowers``, ``wikiart``, ``sketches``
                   Piggyback's archive or folder with train/ and test/ class folders
``stanford_dogs``  images.tar and lists.tar (Images/, train_list.mat, test_list.mat)
``indoor67``       indoorCVPR_09.tar (Images/) and TrainImages.txt, TestImages.txt
``fgvc_aircraft``  fgvc-aircraft-2013b.tar.gz
``dtd``            dtd-r1.0.1.tar.gz
``caltech256``     256_ObjectCategories.tar
``cifar100``       cifar-100-python.tar.gz
``vtab1k``         NOAH's vtab-1k archive or folder (one folder per task with train800.txt,
                   val200.txt, train800val200.txt, test.txt and its images); every task found
``fgvc``           the FGVC dataset folders holding VPT's {train,val,test}.json beside their
                   images (CUB_200_2011, nabirds, OxfordFlower, Stanford-dogs, Stanford-cars)
"""
from __future__ import annotations

import argparse
import os
import shutil
import tarfile
import zipfile
from pathlib import Path
from typing import Callable, Iterator, Sequence

from spottune.data.base import DatasetError, load_task
from spottune.data.decathlon import DEVKIT
from spottune.data.peft_benchmarks import FGVC_DATASETS, FGVC_FOLDER, VTAB_FOLDER, VTAB_TASKS
from spottune.data.standard import FOLDER_DATASETS
from spottune.visual_decathlon import DOMAINS

ARCHIVE_SUFFIXES = (".tar", ".tar.gz", ".tgz", ".zip")
TORCHVISION_FOLDERS = {"fgvc_aircraft": ("fgvc-aircraft-2013b", "data", "fgvc-aircraft-2013b"),
                       "dtd": ("dtd", "labels", "dtd/dtd"),
                       "caltech256": ("256_ObjectCategories", "", "caltech256/256_ObjectCategories"),
                       "cifar100": ("cifar-100-python", "meta", "cifar-100-python")}
"""dataset -> (folder to find in the sources, an entry it must hold, its place under the data root)."""


def is_archive(path: Path) -> bool:
    """A file named like a tar or zip archive."""
    return path.is_file() and path.name.endswith(ARCHIVE_SUFFIXES)


def extract(archive: Path, dest: Path) -> None:
    """Extract ``archive`` into ``dest`` (tar members through the ``data`` filter)."""
    dest.mkdir(parents=True, exist_ok=True)
    if archive.name.endswith(".zip"):
        with zipfile.ZipFile(archive) as z:
            z.extractall(dest)
        return
    with tarfile.open(archive) as tar:
        tar.extractall(dest, filter="data")


def unpack(source: Path, staging: Path) -> tuple[Path, bool]:
    """``(folder, owned)``: ``source`` itself when it is a folder (not owned), else the archive
    extracted into ``staging`` with the ``.tar`` files inside extracted in place (owned)."""
    if source.is_dir():
        return source, False
    if not is_archive(source):
        raise DatasetError(f"{source} is neither a folder nor an archive ({', '.join(ARCHIVE_SUFFIXES)})")
    dest = staging / source.name
    extract(source, dest)
    for inner in sorted(dest.rglob("*.tar")):
        extract(inner, inner.parent)
        inner.unlink()
    return dest, True


def walk_dirs(root: Path, stop: Callable[[Path], bool]) -> Iterator[Path]:
    """Folders under ``root`` (itself included), not descending into those where ``stop`` holds."""
    for current, dirs, _ in os.walk(root):
        path = Path(current)
        yield path
        if stop(path):
            dirs.clear()


def link_or_copy(src: str, dst: str) -> None:
    """Hard-link ``src`` to ``dst``; copy it when linking fails (another file system)."""
    try:
        os.link(src, dst)
    except OSError:
        shutil.copy2(src, dst)


def install(src: Path, dest: Path, owned: bool) -> None:
    """Put ``src`` (file or folder) at ``dest``: moved if ``owned``, else hard-linked / copied."""
    if dest.exists():
        print(f"  already there, left as is: {dest}")
        return
    dest.parent.mkdir(parents=True, exist_ok=True)
    if owned:
        shutil.move(str(src), str(dest))
    elif src.is_dir():
        shutil.copytree(src, dest, copy_function=link_or_copy)
    else:
        link_or_copy(str(src), str(dest))
    print(f"  {dest}")


def find_dirs(roots: Sequence[tuple[Path, bool]], match: Callable[[Path], bool]) -> list[tuple[Path, bool]]:
    """``(folder, owned)`` of every folder that ``match``es, not looking inside the matches."""
    return [(path, owned) for root, owned in roots for path in walk_dirs(root, match) if match(path)]


def find_dir(roots: Sequence[tuple[Path, bool]], match: Callable[[Path], bool], what: str
             ) -> tuple[Path, bool]:
    """The first of :func:`find_dirs`; none is an error naming ``what`` and the sources."""
    found = find_dirs(roots, match)
    if not found:
        raise DatasetError(f"none of the sources holds {what}: {', '.join(str(r) for r, _ in roots)}")
    return found[0]


def find_file(roots: Sequence[tuple[Path, bool]], files: Sequence[Path], name: str) -> Path:
    """The source file called ``name``, else the first one found in the source folders."""
    folders = [root for root, _ in roots]
    for path in [f for f in files if f.name == name] + [p for root in folders for p in sorted(root.rglob(name))]:
        return path
    raise DatasetError(f"none of the sources is or holds {name}: {', '.join(map(str, [*files, *folders]))}")


def holds_test_labels(path: Path) -> bool:
    """Whether ``path`` is a zip holding ``<domain>_test.json`` files (``labels_test.zip``)."""
    if not zipfile.is_zipfile(path):
        return False
    with zipfile.ZipFile(path) as z:
        return any(name.endswith("_test.json") for name in z.namelist())


def prepare_decathlon(roots: list[tuple[Path, bool]], files: list[Path], data_root: Path) -> list[str]:
    """Annotations, per-domain image folders and the test labels into ``<data-root>/decathlon-1.0``."""
    devkit = data_root / DEVKIT

    def is_domain(p: Path) -> bool:
        return p.name in DOMAINS and any((p / s).is_dir() for s in ("train", "val", "test"))

    for folder, owned in find_dirs(roots, lambda p: p.name == "annotations" or is_domain(p)):
        if folder.name == "annotations":
            for json_file in sorted(folder.glob("*.json")):
                install(json_file, devkit / "annotations" / json_file.name, owned)
        else:
            install(folder, devkit / "data" / folder.name, owned)
    for labels in filter(holds_test_labels, files):
        install(labels, devkit / "labels_test.zip", False)
    return [f"decathlon/{domain}" for domain in DOMAINS
            if (devkit / "annotations" / f"{domain}_train.json").exists() and (devkit / "data" / domain).is_dir()]


def prepare_piggyback(name: str, roots: list[tuple[Path, bool]], data_root: Path) -> list[str]:
    """The folder with ``train/`` and ``test/`` class folders (named as Piggyback's if several)."""
    candidates = find_dirs(roots, lambda p: (p / "train").is_dir() and (p / "test").is_dir())
    if not candidates:
        raise DatasetError(f"no folder with train/ and test/ in {', '.join(str(r) for r, _ in roots)}")
    named = [c for c in candidates if c[0].name == FOLDER_DATASETS[name]]
    folder, owned = (named or candidates)[0]
    install(folder, data_root / FOLDER_DATASETS[name], owned)
    return [name]


def _split_lists(name: str, roots: list[tuple[Path, bool]], files: list[Path]) -> dict[str, list[str]]:
    """``{"train": [...], "test": [...]}`` of ``<class>/<file>`` paths from the official lists:
    Stanford Dogs' ``{train,test}_list.mat`` (``file_list``), Indoor-67's ``{Train,Test}Images.txt``."""
    if name == "stanford_dogs":
        from scipy.io import loadmat

        return {split: [str(entry[0][0]) for entry in
                        loadmat(find_file(roots, files, f"{split}_list.mat"))["file_list"]]
                for split in ("train", "test")}
    return {split: [line.strip() for line in find_file(roots, files, f"{cap}Images.txt").read_text().splitlines()
                    if line.strip()] for split, cap in (("train", "Train"), ("test", "Test"))}


def prepare_from_lists(name: str, roots: list[tuple[Path, bool]], files: list[Path], data_root: Path
                       ) -> list[str]:
    """Stanford Dogs / MIT Indoor-67: ``Images/<class>/<file>`` sorted into train / test class folders."""
    images, _ = find_dir(roots, lambda p: p.name == "Images", "an Images/ folder")
    dest = data_root / FOLDER_DATASETS[name]
    if dest.exists():
        print(f"  already there, left as is: {dest}")
        return [name]
    for split, entries in _split_lists(name, roots, files).items():
        for entry in entries:
            if not (images / entry).is_file():
                raise DatasetError(f"{images / entry} is in the {split} list but not in {images}")
            target = dest / split / entry
            target.parent.mkdir(parents=True, exist_ok=True)
            link_or_copy(str(images / entry), str(target))
        print(f"  {dest / split}: {len(entries)} images")
    return [name]


def prepare_torchvision(name: str, roots: list[tuple[Path, bool]], data_root: Path) -> list[str]:
    """The dataset's official folder, moved to where torchvision's class looks for it."""
    folder_name, child, target = TORCHVISION_FOLDERS[name]
    folder, owned = find_dir(roots, lambda p: p.name == folder_name and (p / child).exists(),
                             f"{folder_name}/{child}")
    install(folder, data_root / target, owned)
    return ["caltech256_30", "caltech256_60"] if name == "caltech256" else [name]


def prepare_split_folders(dataset: str, roots: list[tuple[Path, bool]], data_root: Path) -> list[str]:
    """VTAB-1k's task folders (with ``test.txt``) or FGVC's dataset folders (with ``test.json``),
    each into ``<data-root>/vtab-1k/<task>`` or ``<data-root>/FGVC/<folder>``."""
    if dataset == "vtab1k":
        folders, split_file, parent = {task: f"vtab1k/{task}" for task in VTAB_TASKS}, "test.txt", VTAB_FOLDER
    else:
        folders = {folder: f"fgvc/{name}" for name, (folder, _, _) in FGVC_DATASETS.items()}
        split_file, parent = "test.json", FGVC_FOLDER
    found = find_dirs(roots, lambda p: p.name in folders and (p / split_file).is_file())
    if not found:
        raise DatasetError(f"none of the sources holds a folder named one of {', '.join(folders)} with "
                           f"{split_file}: {', '.join(str(r) for r, _ in roots)}")
    for folder, owned in found:
        install(folder, data_root / parent / folder.name, owned)
    return [folders[folder.name] for folder, _ in found]


DATASETS = ["decathlon", *FOLDER_DATASETS, *TORCHVISION_FOLDERS, "vtab1k", "fgvc"]


def prepare(dataset: str, sources: Sequence[Path], data_root: Path, pack: bool = False) -> list[str]:
    """Prepare ``dataset`` from ``sources`` under ``data_root``; returns the registered names ready."""
    if dataset not in DATASETS:
        raise DatasetError(f"unknown dataset {dataset!r}; prepare knows: {', '.join(DATASETS)}")
    missing = [str(s) for s in sources if not s.exists()]
    if missing:
        raise DatasetError(f"sources not found: {', '.join(missing)}")
    data_root.mkdir(parents=True, exist_ok=True)
    staging = data_root / f".prepare-{os.getpid()}"
    try:
        files = [s for s in sources if s.is_file() and (not is_archive(s) or holds_test_labels(s))]
        roots = [unpack(s, staging) for s in sources if s not in files]
        if dataset == "decathlon":
            names = prepare_decathlon(roots, files, data_root)
        elif dataset in ("stanford_dogs", "indoor67"):
            names = prepare_from_lists(dataset, roots, files, data_root)
        elif dataset in FOLDER_DATASETS:
            names = prepare_piggyback(dataset, roots, data_root)
        elif dataset in ("vtab1k", "fgvc"):
            names = prepare_split_folders(dataset, roots, data_root)
        else:
            names = prepare_torchvision(dataset, roots, data_root)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    for name in names:
        task = load_task(name, data_root, **({"cache": "packed"} if pack and dataset == "decathlon" else {}))
        print(f"{name}: {task.num_classes} classes, {len(task.train)} training and {len(task.test)} "
              f"test images ({task.info.get('eval_split')})")
    return names


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("dataset", choices=DATASETS)
    parser.add_argument("sources", nargs="+", type=Path, help="official archives or folders")
    parser.add_argument("data_root", type=Path, help="the suite's --data-root")
    parser.add_argument("--pack", action="store_true", help="decathlon: also build the packed caches")
    args = parser.parse_args(argv)
    try:
        prepare(args.dataset, args.sources, args.data_root, args.pack)
    except DatasetError as error:
        raise SystemExit(f"error: {error}") from error


if __name__ == "__main__":
    main()
