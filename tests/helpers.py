"""Tiny run configs for engine and CLI tests."""
from __future__ import annotations

from typing import Any

from spottune.grid import make_grid

# no pretraining, two short epochs: seconds per run on one CPU thread
FAST = {"epochs": 2, "batch_size": 64, "lr_milestones": [1], "backbone.pretrained.kind": "none"}


def tiny_config(method: str = "finetune", dataset: str = "digits", seed: int = 0, **overrides: Any) -> dict:
    grid = make_grid("mini", [method], [dataset], [seed], {**FAST, **overrides})
    return grid.runs({"progress": False})[0]
