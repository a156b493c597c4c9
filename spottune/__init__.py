"""SpotTune benchmark suite.

One folder per layer, listed so that none imports a folder listed after it: ``storage`` (a run on disk),
``backbones``, ``data``, ``routing`` (SpotTune's two-path networks), ``training`` (the one loop),
``pretraining``, ``estimates`` (what a grid costs), ``planning`` (presets -> runs), ``launch``
(backends) and ``report``; at the top, the method contract and catalogue, the engine (one run)
and the command (tests/test_import_cycles.py holds the folders to it).

The names below are imported on first use (PEP 562), so that the stdlib-only and numpy-only
modules (``spottune.storage.records``, ``spottune.visual_decathlon``, ...) import without torch.
Importing it changes no environment variable (OpenMP's wait policy is the user's:
:mod:`spottune.training.cpus`).
"""
from __future__ import annotations

import importlib
from typing import Any

__version__ = "0.1.0"
_LAZY = {"SpotTune": "spottune.routing.network", "SpotTuneGlobal": "spottune.routing.network",
         "Method": "spottune.method_contract", "register_method": "spottune.method_contract",
         "HParam": "spottune.hparams", "create_method": "spottune.methods", "get_method": "spottune.methods",
         "list_methods": "spottune.methods"}
__all__ = list(_LAZY)


def __getattr__(name: str) -> Any:
    if name not in _LAZY:
        raise AttributeError(f"module 'spottune' has no attribute {name!r}")
    return getattr(importlib.import_module(_LAZY[name]), name)
