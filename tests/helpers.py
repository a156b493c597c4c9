"""Shared test helpers: tiny runs, a tiny SpotTune, protocol values, script loading."""
from __future__ import annotations

import importlib.util
from pathlib import Path
from types import ModuleType
from typing import Any

from spottune import SpotTune
from spottune.backbones import resnet26
from spottune.planning.grid import make_grid
from spottune.storage.records import RunSpec

REPO = Path(__file__).resolve().parent.parent

# no pretraining, two short epochs: seconds per run on one CPU thread
FAST = {"epochs": 2, "batch_size": 64, "lr_milestones": [1], "backbone.pretrained.kind": "none"}

# SpotTune's optimiser protocol, as the tests build the method
HP = {"lr": 0.1, "weight_decay": 5e-4, "momentum": 0.9, "optimizer": "sgd"}

# the methods that ship with the package (plugins such as examples/my_method.py come on top)
BUILTIN = frozenset({"bn_adapt", "feature_extractor", "finetune", "finetune_last_k", "l2sp", "lwf", "piggyback",
                     "progressive", "random_policy", "residual_adapters_parallel", "residual_adapters_series",
                     "spottune", "spottune_global", "stochastic_finetune", "taps"})


def tiny_run(method: str = "finetune", dataset: str = "digits", seed: int = 0, **overrides: Any) -> RunSpec:
    return make_grid("mini", [method], [dataset], [seed], {**FAST, **overrides}).runs()[0]


def tiny_spottune(num_classes: int = 5, **kwargs: Any) -> SpotTune:
    """SpotTune on a ResNet-26 of width 0.25 for 32 px images, policy width 0.25; ``kwargs`` go to SpotTune."""
    return SpotTune(resnet26(num_classes, width=0.25, input_size=32), num_classes, policy_width=0.25, **kwargs)


def load_script(path: str | Path) -> ModuleType:
    """A fresh module executed from ``path`` (relative to the repository root, or absolute), named
    after the file's stem and not registered in ``sys.modules``: each call gives a new instance."""
    path = REPO / path
    spec = importlib.util.spec_from_file_location(path.stem, path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module
