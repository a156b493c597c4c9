"""The protocol a run records: what ran, derived from its resolved hyperparameters, the
optimiser groups it built and its data (docs/RECORDS.md).

Every run's ``config.json`` and ``metrics.json`` hold ``protocol``, a flat mapping of short
strings (without commas or semicolons, which separate the footnote's entries) that the tables' footnotes print (:func:`spottune.report.tables.protocol_note`, per
method where runs differ):

* ``optimizer``: ``sgd momentum 0.9`` or ``adam``;
* ``lr`` and ``weight_decay``: the initial value of every optimiser group that ran,
  ``0.05`` when all groups agree, else ``network 0.05 / policy 0.005``;
* ``schedule``: ``lr x0.1 at epoch 2 of 3``, ``lr x0.1 at epochs 80/100 of 120``
  (``lr_milestones``, ``lr_gamma``, ``epochs``) or ``constant lr for 3 epochs``;
* the data loader's ``split``, ``eval_split``, ``test_labelled``, ``transforms``,
  ``train_transform``, ``test_transform``;
* the method's ``protocol_keys`` (e.g. SpotTune's ``freeze`` and ``test_routing``);
* the preset's ``protocol`` entries for what hyperparameters cannot say (e.g. ``train_split:
  train (Piggyback folders)``). A preset entry named like a derived key above is not
  recorded: the derived value is what ran. (The preset's entries stay in ``hparams.protocol``
  unchanged, so that run ids do not change.)
"""
from __future__ import annotations

from typing import Any

import torch

from spottune.methods import Method

DATA_KEYS = ("split", "eval_split", "test_labelled", "transforms", "train_transform", "test_transform")


def _per_group(groups: list[dict[str, Any]], key: str) -> str:
    """``0.05`` when every group has that value, else ``name value`` per group, ``/``-separated."""
    values = [(g.get("name", f"group{i}"), float(g.get(f"initial_{key}", g[key]))) for i, g in enumerate(groups)]
    if len({v for _, v in values}) == 1:
        return f"{values[0][1]:g}"
    return " / ".join(f"{name} {value:g}" for name, value in values)


def schedule_description(hp: dict[str, Any]) -> str:
    """``lr x0.1 at epoch 2 of 3``, ``lr x0.1 at epochs 40/60 of 90`` or ``constant lr for 3 epochs``."""
    epochs, milestones = int(hp["epochs"]), [int(m) for m in hp.get("lr_milestones", [])]
    if not milestones:
        return f"constant lr for {epochs} epochs"
    at = f"epoch{'s' if len(milestones) > 1 else ''} {'/'.join(map(str, milestones))}"
    return f"lr x{float(hp.get('lr_gamma', 0.1)):g} at {at} of {epochs}"


def optimizer_description(optimizer: torch.optim.Optimizer) -> str:
    """``sgd momentum 0.9`` or ``adam`` (the optimiser's class, lower case)."""
    name = type(optimizer).__name__.lower()
    momentum = optimizer.defaults.get("momentum")
    return f"{name} momentum {momentum:g}" if name == "sgd" else name


def run_protocol(hp: dict[str, Any], method: Method, optimizer: torch.optim.Optimizer,
                 data_info: dict[str, Any]) -> dict[str, Any]:
    """The protocol one run records (see the module docstring)."""
    ran = {"optimizer": optimizer_description(optimizer), "lr": _per_group(optimizer.param_groups, "lr"),
           "weight_decay": _per_group(optimizer.param_groups, "weight_decay"), "schedule": schedule_description(hp)}
    stated = {k: v for k, v in (hp.get("protocol") or {}).items() if k not in ran}
    return {**stated, **{k: hp[k] for k in method.protocol_keys if k in hp}, **ran,
            **{k: v for k, v in data_info.items() if k in DATA_KEYS}}
