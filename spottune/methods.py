"""The catalogue of methods: the built-in ones, the plugins' and the lookups by name.

Importing this module registers the built-in methods (:mod:`spottune.routing.methods`:
SpotTune, SpotTune-Global; the ``baselines`` package: fine-tuning and every baseline), each
through the contract of :mod:`spottune.method_contract`, which imports none of them: the
contract, a plugin and the baselines never import this catalogue back. ``--plugins`` modules
(:func:`spottune.plugins.load_plugins`) register their own methods the same way. An unknown name is a
``KeyError`` that names the closest known one and, when no plugin registered it, says how to
load one (:func:`unknown_methods`).

The contract's names (``Method``, ``register_method``, ...) are re-exported for plugins written
against ``spottune.methods``; new code imports them from :mod:`spottune.method_contract`.
"""
from __future__ import annotations

import difflib
import fnmatch
from collections.abc import Iterable
from typing import Any

import baselines  # noqa: F401  (registers the baselines)
import spottune.routing.methods  # noqa: F401  (registers SpotTune and SpotTune-Global)
from spottune.method_contract import (ForwardOutputs, Method, ParamGroup, family_problem, param_group,
                                      parameters_except, register_method, registered)
from spottune.plugins import load_plugins, loaded_plugins

__all__ = ["ForwardOutputs", "Method", "ParamGroup", "create_method", "family_problem", "get_method",
           "list_methods", "load_plugins", "methods_by_families", "param_group", "parameters_except",
           "register_method", "unknown_methods"]

def list_methods(pattern: str = "*") -> list[str]:
    """Registered method names matching a shell-style ``pattern``, sorted."""
    return sorted(n for n in registered() if fnmatch.fnmatch(n, pattern))


def methods_by_families() -> dict[tuple[str, ...], list[str]]:
    """Registered method names grouped by the backbone families they apply to (``--list``)."""
    groups: dict[tuple[str, ...], list[str]] = {}
    for name in list_methods():
        groups.setdefault(get_method(name).families, []).append(name)
    return dict(sorted(groups.items(), key=lambda item: (-len(item[0]), item[0])))


def unknown_methods(names: Iterable[str], also_known: Iterable[str] = ()) -> str:
    """The message for method ``names`` nobody registered: each with the closest known name
    (``also_known``: a preset's variants), the known ones, and where a missing one may come from."""
    known = sorted({*registered(), *also_known})
    quoted = []
    for name in names:
        close = difflib.get_close_matches(name, known, n=1)
        quoted.append(repr(name) + (f" (did you mean {close[0]!r}?)" if close else ""))
    plugins = loaded_plugins()
    where = (f"the plugin modules loaded ({', '.join(plugins)}) do not register it" if plugins else
             "a method of your own: pass the module that registers it with --plugins")
    return f"unknown method {', '.join(quoted)}; known methods: {', '.join(known)} ({where})"


def get_method(name: str) -> type[Method]:
    """The method registered as ``name``; a ``KeyError`` (:func:`unknown_methods`) otherwise."""
    methods = registered()
    if name not in methods:
        raise KeyError(unknown_methods([name]))
    return methods[name]


def create_method(name: str, hparams: dict[str, Any]) -> Method:
    """The method ``name`` with ``hparams`` (a ``ValueError`` for a value out of its range)."""
    return get_method(name)(hparams)
