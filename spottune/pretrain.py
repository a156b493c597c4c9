"""Pretrained backbones: built from a preset's ``backbone`` spec, loaded or pretrained once.

``pretrained`` kinds:

``suite``
    The suite pretrains the backbone itself on a registered dataset (the mini preset:
    Fashion-MNIST classes 0-5) with SGD, Nesterov momentum 0.9 and a one-cycle schedule
    (``lr``, ``epochs``, ``batch_size``, ``weight_decay``, optionally ``max_images`` of the
    spec) and caches the weights under ``<cache>/pretrained/<hash of spec>.pt``
    (``$SPOTTUNE_CACHE``, default ``~/.cache/spottune``); later runs reuse the file. The hash
    also covers :data:`PRETRAINING_VERSION`, so weights cached by an earlier pretraining
    procedure of the suite are not mistaken for the current one's. A file
    lock makes concurrent runs wait for one pretraining instead of repeating it. The
    pretrained network is then evaluated on the source task's test split (its ``eval_split``)
    and the result kept with the weights: ``backbone.pretraining`` = ``{dataset, split,
    test_accuracy}``, recorded in every run's metrics (the Decathlon table's ImNet column).
``released``
    The released ResNet-26 ImageNet checkpoint (a pickled module), converted safely by
    :func:`spottune.backbones.load_released_resnet26`.
``state_dict``
    A ``state_dict`` file of the suite's ResNet-26, or of the torchvision architecture
    (e.g. ImageNet weights the user downloaded once).
``none``
    Random initialisation (the "Scratch" row).
"""
from __future__ import annotations

import fcntl
import hashlib
import io
import os
from pathlib import Path
from typing import Any

import torch
from torch import nn

from spottune.backbones import Backbone, load_released_resnet26, resnet26, torchvision_resnet
from spottune.records import atomic_write_bytes, canonical_json

CACHE_ENV = "SPOTTUNE_CACHE"
# the suite's pretraining procedure (_pretrain): bump whenever a change to it changes the weights
# or what is stored with them, so that older cached files are not reused
PRETRAINING_VERSION = 2


def cache_dir() -> Path:
    return Path(os.environ.get(CACHE_ENV, Path.home() / ".cache" / "spottune"))


def build_backbone(spec: dict[str, Any], num_classes: int) -> Backbone:
    """A randomly initialised backbone of ``spec['arch']`` (width / input size from the spec)."""
    arch = spec["arch"]
    if arch == "resnet26":
        return resnet26(num_classes, width=float(spec.get("width", 1.0)),
                        input_size=int(spec.get("input_size", 64)))
    return torchvision_resnet(arch, num_classes)


def _pretrain(spec: dict[str, Any], data_root: Path | None, device: torch.device, progress: bool,
              download: bool) -> tuple[Backbone, dict[str, Any]]:
    """The pretrained backbone and its evaluation on the source task's test split."""
    from spottune.data import load_task, make_loader
    from spottune.engine import evaluate
    from tqdm import tqdm

    pre = spec["pretrained"]
    task = load_task(pre["dataset"], data_root, **pre.get("data_options", {}),
                     **({"download": True} if download else {}))
    train = task.train
    if pre.get("max_images"):  # a quick, smaller pretraining (tests, smoke runs)
        train = torch.utils.data.Subset(train, range(min(int(pre["max_images"]), len(train))))
    torch.manual_seed(int(pre.get("seed", 0)))
    model = build_backbone(spec, task.num_classes).to(device)
    opt = torch.optim.SGD(model.parameters(), lr=pre.get("lr", 0.1), momentum=0.9,
                          weight_decay=pre.get("weight_decay", 5e-4), nesterov=True)
    epochs = int(pre.get("epochs", 2))
    steps = epochs * -(-len(train) // int(pre.get("batch_size", 128)))
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=pre.get("lr", 0.1), total_steps=steps)
    loss_fn = nn.CrossEntropyLoss()
    for epoch in range(epochs):
        model.train()
        torch.manual_seed(int(pre.get("seed", 0)) * 1000 + epoch)
        loader = make_loader(train, int(pre.get("batch_size", 128)), shuffle=True,
                             seed=int(pre.get("seed", 0)), epoch=epoch)
        bar = tqdm(loader, desc=f"pretrain {spec['arch']} on {pre['dataset']} {epoch + 1}/{epochs}",
                   disable=not progress, leave=False)
        for x, y in bar:
            x, y = x.to(device), y.to(device)
            loss = loss_fn(model(x), y)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            sched.step()
            bar.set_postfix(loss=f"{loss.item():.3f}")
    result = evaluate(model, task, int(pre.get("batch_size", 128)), device, progress)
    source = {"dataset": pre["dataset"], "split": task.info.get("eval_split", "test"),
              "test_accuracy": result["accuracy"]}
    return model.cpu(), source


def pretrained_backbone(spec: dict[str, Any], data_root: Path | None = None,
                        device: torch.device | str = "cpu", progress: bool = True,
                        download: bool = False) -> Backbone:
    """The pretrained backbone described by ``spec`` (see the module docstring)."""
    pre = spec.get("pretrained", {"kind": "none"})
    kind = pre.get("kind", "none")
    if kind == "none":
        return build_backbone(spec, 1)
    if kind == "released":
        return load_released_resnet26(_existing(pre["path"]), build_backbone(spec, 1))
    if kind == "state_dict" and spec["arch"] != "resnet26":
        state = torch.load(_existing(pre["path"]), map_location="cpu", weights_only=True)
        return torchvision_resnet(spec["arch"], state["fc.weight"].shape[0], state_dict=state)
    if kind == "state_dict":
        state = torch.load(_existing(pre["path"]), map_location="cpu", weights_only=True)
        num_classes = next(v.shape[0] for k, v in state.items() if k.endswith("fc.weight"))
        model = build_backbone(spec, num_classes)
        model.load_state_dict(state)
        return model
    if kind == "suite":
        return _cached_suite_pretraining(spec, data_root, torch.device(device), progress, download)
    raise ValueError(f"unknown pretrained kind {kind!r}; use suite, released, state_dict or none")


def _existing(path: str) -> Path:
    p = Path(path).expanduser()
    if not p.exists():
        raise FileNotFoundError(f"pretrained checkpoint {p} does not exist (set backbone.pretrained.path)")
    return p


def _cached_suite_pretraining(spec: dict[str, Any], data_root: Path | None, device: torch.device,
                              progress: bool, download: bool) -> Backbone:
    key = hashlib.sha256(canonical_json({"spec": spec, "version": PRETRAINING_VERSION}).encode()).hexdigest()[:12]
    folder = cache_dir() / "pretrained"
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{spec['arch']}-{spec['pretrained']['dataset']}-{key}.pt"
    with open(folder / f".{key}.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if not path.exists():
            model, source = _pretrain(spec, data_root, device, progress, download)
            buffer = io.BytesIO()
            torch.save({"spec": spec, "state_dict": model.state_dict(), "source": source}, buffer)
            atomic_write_bytes(path, buffer.getvalue())
    blob = torch.load(path, map_location="cpu", weights_only=True)
    num_classes = blob["state_dict"]["head.fc.weight"].shape[0]
    model = build_backbone(spec, num_classes)
    model.load_state_dict(blob["state_dict"])
    model.pretraining = blob.get("source")
    return model
