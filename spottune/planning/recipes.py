"""What each method of a grid trains with: its recipe and its search space, as ``run_all.py
--dry-run`` prints them (with ``--search``, or when the preset names recipes).

A recipe is the set of training-protocol hyperparameters a preset gives a method
(:data:`RECIPE_SHOWN`, resolved per dataset by :meth:`spottune.planning.grid.Grid.hparams`, ``--set``
included), named by its ``recipe`` hyperparameter where the preset declares one (the published
recipe it follows, with its source). A value that differs between datasets prints as ``per
dataset`` with its range; the schedule prints as the runs record it
(:func:`spottune.training.protocol.schedule_description`). The search space is the method's own
(:func:`spottune.planning.grid.search_space`): each searched hyperparameter with its values, and the
number of points.
"""
from __future__ import annotations

from typing import Any

from spottune.planning.grid import Grid, search_space
from spottune.training.protocol import schedule_description
from spottune.planning.search import search_points
from spottune.training.loop import default_exemption

RECIPE_SHOWN = ("optimizer", "lr", "weight_decay", "weight_decay_exempt", "batch_size", "drop_path",
                "label_smoothing", "head_init")
"""The hyperparameters a recipe line shows (then the schedule), when the runs have them."""


def _value(values: list[Any]) -> str:
    """One value as ``%g``, or ``per dataset lo..hi`` (``per dataset a|b`` for strings)."""
    distinct = sorted(set(values), key=str)
    if len(distinct) == 1:
        value = distinct[0]
        return f"{value:g}" if isinstance(value, float) else str(value)
    if all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in distinct):
        return f"per dataset {min(distinct):g}..{max(distinct):g}"
    return "per dataset " + "|".join(map(str, distinct))


def recipe_line(grid: Grid, method: str) -> str:
    """``method: <recipe>: optimizer adamw, lr 0.001, ..., schedule ...; search: ...``."""
    runs = [grid.hparams(method, dataset, grid.overrides) for dataset in grid.datasets]
    for hp in runs:
        hp.setdefault("weight_decay_exempt", default_exemption(hp.get("optimizer", "sgd")))
    shown = [f"{key} {_value([hp[key] for hp in runs])}" for key in RECIPE_SHOWN if all(key in hp for hp in runs)]
    shown.append(f"schedule {_value([schedule_description(hp) for hp in runs])}")
    names = sorted({str(hp.get("recipe", "the preset's hparams")) for hp in runs})
    space = search_space(grid.preset, method)
    searched = (" x ".join(f"{key} {values}" for key, values in space.items())
                + f" ({len(search_points(space))} points per dataset)") if space else "none (the values above)"
    return f"{method}: {' | '.join(names)}: {', '.join(shown)}; search: {searched}"


def recipe_lines(grid: Grid) -> list[str]:
    """One :func:`recipe_line` per method of the grid, in the grid's order."""
    return [recipe_line(grid, method) for method in grid.methods]


def names_recipes(grid: Grid) -> bool:
    """Whether any method of the grid runs a named ``recipe``."""
    return any("recipe" in grid.hparams(method, dataset, grid.overrides)
               for method in grid.methods for dataset in grid.datasets[:1])
