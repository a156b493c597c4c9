"""Network surgery shared by the backbones and the methods: find modules, swap them for wrappers."""
from __future__ import annotations

from collections.abc import Callable

from torch import nn


def replace_modules(root: nn.Module, predicate: Callable[[str, nn.Module], bool],
                    factory: Callable[[nn.Module], nn.Module]) -> list[str]:
    """Replace every submodule ``m`` of ``root`` (qualified name ``name``) with
    ``predicate(name, m)`` true by ``factory(m)``; returns the replaced names, in order.

    A matching module is not searched further (what it contains goes with it into the
    wrapper), so wrappers that hold the original module never match twice.
    """
    targets: list[tuple[nn.Module, str, str, nn.Module]] = []

    def visit(module: nn.Module, prefix: str) -> None:
        for name, child in module.named_children():
            qualified = prefix + name
            if predicate(qualified, child):
                targets.append((module, name, qualified, child))
            else:
                visit(child, qualified + ".")

    visit(root, "")
    for parent, name, _, child in targets:
        setattr(parent, name, factory(child))
    return [qualified for _, _, qualified, _ in targets]


def is_conv(module: nn.Module, kernel_size: int | None = None) -> bool:
    """``module`` is an ``nn.Conv2d`` (with a square ``kernel_size`` kernel when given)."""
    if not isinstance(module, nn.Conv2d):
        return False
    return kernel_size is None or tuple(module.kernel_size) == (kernel_size, kernel_size)
