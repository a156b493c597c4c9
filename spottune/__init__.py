"""SpotTune benchmark suite.

The names below are imported on first use (PEP 562), so that the stdlib-only and numpy-only
modules (``spottune.records``, ``spottune.visual_decathlon``, ...) import without torch.
Importing it sets ``OMP_WAIT_POLICY=PASSIVE`` unless the environment sets it (see
:mod:`spottune.cpus`), so that a process importing spottune before torch never spins its
OpenMP threads against other work.
"""
from __future__ import annotations

import importlib
from typing import Any

from spottune.cpus import passive_openmp_waits

passive_openmp_waits()  # OpenMP threads sleep while they wait: read once, when torch loads (spottune.cpus)

__version__ = "0.1.0"
_LAZY = {"SpotTune": "spottune.spottune", "SpotTuneGlobal": "spottune.spottune",
         "Method": "spottune.methods", "create_method": "spottune.methods", "get_method": "spottune.methods",
         "list_methods": "spottune.methods", "register_method": "spottune.methods"}
__all__ = list(_LAZY)


def __getattr__(name: str) -> Any:
    if name not in _LAZY:
        raise AttributeError(f"module 'spottune' has no attribute {name!r}")
    return getattr(importlib.import_module(_LAZY[name]), name)
