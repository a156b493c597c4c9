"""The protocol a run records: what ran, derived from its resolved hyperparameters, the
optimiser groups it built and its data (docs/RECORDS.md).

Every run's ``config.json`` and ``metrics.json`` hold ``protocol``, a flat mapping of short
strings (without commas or semicolons, which separate the footnote's entries) that the tables' footnotes print (:func:`spottune.report.tables.protocol_note`, per
method where runs differ):

* ``optimizer``: ``sgd momentum 0.9``, ``adam`` or ``adamw`` (``eps 1e-06`` after either
  when not PyTorch's 1e-8);
* ``lr`` and ``weight_decay``: the initial value of every optimiser group that ran,
  ``0.05`` when all groups agree, else ``network 0.05 / policy 0.005`` (the groups of
  parameters exempt from weight decay, :func:`spottune.training.loop.split_decay`: ``all 0.01 /
  all biases 0``, ``all 0.0001 / all 1-D 0``, ``all 0.01 / all classifier bias 0``);
* ``schedule``: ``lr x0.1 at epoch 2 of 3``, ``lr x0.1 at epochs 80/100 of 120``
  (``lr_milestones``, ``lr_gamma``, ``epochs``), ``constant lr for 3 epochs`` or, for
  ``schedule: cosine``, ``linear warm-up from 0 over 10 epochs then cosine to 0 at epoch 100
  (per epoch)`` (``cosine to 0 over 100 epochs (per epoch)`` without warm-up), for
  ``schedule: timm_cosine`` e.g. ``timm cosine stepped one epoch late: warm-up from 1e-06 over
  10 epochs then cosine to 1e-05 at epoch 100 of 100``;
* ``batch_size``, and where the run has them ``recipe`` (the published recipe the preset
  declares it follows, with its source), ``label_smoothing``, ``drop_path`` and
  ``head_init`` (:data:`RECIPE_KEYS`);
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

from spottune.method_contract import Method

DATA_KEYS = ("split", "eval_split", "test_labelled", "transforms", "train_transform", "test_transform")
RECIPE_KEYS = ("recipe", "batch_size", "label_smoothing", "drop_path", "head_init")  # recorded when the run has them


def _per_group(groups: list[dict[str, Any]], key: str) -> str:
    """``0.05`` when every group has that value, else ``name value`` per group, ``/``-separated."""
    values = [(g.get("name", f"group{i}"), float(g.get(f"initial_{key}", g[key]))) for i, g in enumerate(groups)]
    if len({v for _, v in values}) == 1:
        return f"{values[0][1]:g}"
    return " / ".join(f"{name} {value:g}" for name, value in values)


def _text(value: Any) -> str:
    """A recorded value as a short string (numbers in ``%g``)."""
    return f"{value:g}" if isinstance(value, (int, float)) and not isinstance(value, bool) else str(value)


def schedule_description(hp: dict[str, Any]) -> str:
    """``lr x0.1 at epoch 2 of 3``, ``lr x0.1 at epochs 40/60 of 90``, ``constant lr for 3
    epochs`` or the warm-up and cosine of ``schedule: cosine`` / ``timm_cosine`` (see the module
    docstring)."""
    epochs, milestones = int(hp["epochs"]), [int(m) for m in hp.get("lr_milestones", [])]
    if hp.get("schedule", "step") == "timm_cosine":
        warmup, cycle = int(hp.get("warmup_epochs", 0)), epochs - int(hp.get("cooldown_epochs", 0))
        late = " stepped one epoch late" if int(hp.get("timm_step_offset", 1)) == 0 else ""
        start = f"warm-up from {float(hp.get('warmup_lr', 0.0)):g} over {warmup} epochs then " if warmup else ""
        return f"timm cosine{late}: {start}cosine to {float(hp.get('min_lr', 0.0)):g} at epoch {cycle} of {epochs}"
    if hp.get("schedule", "step") == "cosine":
        warmup = int(hp.get("warmup_epochs", 0))
        if not warmup:
            return f"cosine to 0 over {epochs} epochs (per epoch)"
        return f"linear warm-up from 0 over {warmup} epochs then cosine to 0 at epoch {epochs} (per epoch)"
    if not milestones:
        return f"constant lr for {epochs} epochs"
    at = f"epoch{'s' if len(milestones) > 1 else ''} {'/'.join(map(str, milestones))}"
    return f"lr x{float(hp.get('lr_gamma', 0.1)):g} at {at} of {epochs}"


def optimizer_description(optimizer: torch.optim.Optimizer) -> str:
    """``sgd momentum 0.9``, ``adam`` or ``adamw`` (the optimiser's class, lower case), then
    ``eps <value>`` for Adam / AdamW when not PyTorch's default 1e-8."""
    name = type(optimizer).__name__.lower()
    if name == "sgd":
        return f"{name} momentum {optimizer.defaults.get('momentum'):g}"
    eps = optimizer.defaults.get("eps", 1e-8)
    return name if eps == 1e-8 else f"{name} eps {eps:g}"


def run_protocol(hp: dict[str, Any], method: Method, optimizer: torch.optim.Optimizer,
                 data_info: dict[str, Any]) -> dict[str, Any]:
    """The protocol one run records (see the module docstring)."""
    ran = {"optimizer": optimizer_description(optimizer), "lr": _per_group(optimizer.param_groups, "lr"),
           "weight_decay": _per_group(optimizer.param_groups, "weight_decay"), "schedule": schedule_description(hp),
           **{k: _text(hp[k]) for k in RECIPE_KEYS if k in hp}}
    stated = {k: v for k, v in (hp.get("protocol") or {}).items() if k not in ran}
    return {**stated, **{k: hp[k] for k in method.protocol_keys if k in hp}, **ran,
            **{k: v for k, v in data_info.items() if k in DATA_KEYS}}
