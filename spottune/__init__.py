"""SpotTune benchmark suite.

The names below are imported on first use (PEP 562), so that the stdlib-only and numpy-only
modules (``spottune.records``, ``spottune.visual_decathlon``, ...) import without torch.
Importing it changes no environment variable (OpenMP's wait policy is the user's:
:mod:`spottune.cpus`).
"""
from __future__ import annotations

import importlib
from typing import Any

__version__ = "0.1.0"
_LAZY = {"SpotTune": "spottune.spottune", "SpotTuneGlobal": "spottune.spottune",
         "Method": "spottune.method_contract", "register_method": "spottune.method_contract",
         "HParam": "spottune.hparams", "create_method": "spottune.methods", "get_method": "spottune.methods",
         "list_methods": "spottune.methods"}
__all__ = list(_LAZY)


def __getattr__(name: str) -> Any:
    if name not in _LAZY:
        raise AttributeError(f"module 'spottune' has no attribute {name!r}")
    return getattr(importlib.import_module(_LAZY[name]), name)
