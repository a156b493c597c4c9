"""User modules imported by name (``--plugins``): they register their own methods, backends,
datasets or tables through the same registries as the built-in ones; :func:`register_class`, the
one way a class registers under a name (methods, backends)."""
from __future__ import annotations

import importlib
from collections.abc import Callable
from typing import TypeVar

T = TypeVar("T", bound=type)

_loaded: list[str] = []  # the modules imported so far, in order


def load_plugins(modules: list[str] | tuple[str, ...]) -> None:
    """Import user modules that register their own methods, backends, datasets or tables
    (``--plugins``).

    Any failure is an ``ImportError`` with a one-line message naming the module: not found
    (is it on PYTHONPATH?), or the exception its code raised on import (chained, for a traceback).
    """
    for module in modules:
        try:
            importlib.import_module(module)
        except ModuleNotFoundError as err:
            raise ImportError(f"cannot import plugin module {module!r} ({err}); is it on PYTHONPATH?") from err
        except Exception as err:  # noqa: BLE001 - the plugin's own code failed: say which plugin
            detail = str(err).strip().splitlines()[0] if str(err).strip() else ""
            raise ImportError(f"plugin module {module!r} raised {type(err).__name__} on import"
                              + (f": {detail}" if detail else "")) from err
        if module not in _loaded:
            _loaded.append(module)


def loaded_plugins() -> list[str]:
    """The plugin modules imported so far, in order."""
    return list(_loaded)


def register_class(registry: dict[str, T], kind: str, base: type, name: str) -> Callable[[T], T]:
    """A class decorator adding a subclass of ``base`` to ``registry`` under ``name`` and setting
    its ``name``; a name registered twice is a ``ValueError`` naming the module that has it, a
    class that is not a subclass of ``base`` a ``TypeError`` (``kind``: what messages call it,
    ``method``, ``backend``)."""

    def decorate(cls: T) -> T:
        if name in registry:
            raise ValueError(f"{kind} {name!r} is already registered (by {registry[name].__module__})")
        if not (isinstance(cls, type) and issubclass(cls, base)):
            raise TypeError(f"@register_{kind}({name!r}) must decorate a subclass of {base.__name__}")
        cls.name = name
        registry[name] = cls
        return cls

    return decorate
