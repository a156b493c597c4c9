"""The per-task search a preset declares (``search``, :func:`spottune.planning.grid.search_space`), run
as VPT's ``tune_vtab.py`` / ``tune_fgvc.py`` run it, in two phases of ordinary runs.

1. Selection: for every run of the grid (dataset, method, seed) and every point of that
   method's search space (the Cartesian product of the declared lists, keys in declared
   order, the last key varying fastest), a run with the point's values and the search's
   ``data_options`` over the preset's (the selection split: VTAB-1k trains on train800 and
   scores val200, FGVC trains on train and scores val), marked ``hparams.protocol.search_stage
   = selection`` (:data:`STAGE_KEY`). Its ``test_accuracy`` is the top-1 on that eval split
   (the last epoch's model, as VPT reads it). Selection runs have their own run ids and
   folders under the same ``<output>/runs/``: every launcher, ``--status``, resume and
   records treat them as any run; the report leaves them out of its tables
   (:func:`is_selection`, :func:`spottune.report.frame.load_records`).
2. Choice, per (method, dataset), once every selection run of the pair is done: the point
   with the highest mean ``test_accuracy`` over the grid's seeds (VPT selects on one seed,
   the vtab1k and fgvc presets' ``seeds: [0]``; with more seeds the suite averages them);
   ties go to the smallest ``lr`` when ``lr`` is searched (VPT's rule: "the smallest lr for
   stability"), then to the first point in declared order.
3. Final runs: the grid's runs (every seed, the preset's data options) with the chosen values
   and ``hparams.protocol.selection`` saying what was chosen (e.g. ``lr 0.5 weight_decay
   0.001 (best top-1 of 40 points on split train800 eval_split val200)``), which the tables'
   protocol footnote prints. A method whose search space is empty keeps the grid's runs.

A searched hyperparameter may not also be set with ``--set`` (the search sets it).
"""
from __future__ import annotations

import copy
import itertools
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from spottune.planning.grid import Grid, search_space
from spottune.storage.records import RunFolder, RunSpec, Status

STAGE_KEY = "search_stage"
SELECTION = "selection"
SELECTION_NOTE = "selection"  # the protocol entry of a final run naming its chosen point


def is_selection(hparams: dict[str, Any]) -> bool:
    """Whether a run with these hyperparameters is a selection run of a search."""
    return (hparams.get("protocol") or {}).get(STAGE_KEY) == SELECTION


def search_points(space: dict[str, list[Any]]) -> list[dict[str, Any]]:
    """The points of ``space`` (hyperparameter -> values), in declared order (last key fastest);
    none for an empty space."""
    if not space:
        return []
    keys = list(space)
    return [dict(zip(keys, values)) for values in itertools.product(*(space[k] for k in keys))]


def describe_point(point: dict[str, Any]) -> str:
    """``lr 0.5 weight_decay 0.001`` (numbers in ``%g``)."""
    return " ".join(f"{k} {v:g}" if isinstance(v, float) else f"{k} {v}" for k, v in point.items())


def _set(hp: dict[str, Any], key: str, value: Any) -> None:
    """``hp[key] = value``, a dotted key reaching into nested dicts (that preflight checked exist)."""
    *parents, last = key.split(".")
    for part in parents:
        hp = hp[part]
    hp[last] = copy.deepcopy(value)


def with_values(spec: RunSpec, point: dict[str, Any], data: dict[str, Any] | None = None,
                protocol: dict[str, Any] | None = None) -> RunSpec:
    """``spec`` with ``point``'s values, ``data`` over its data options and ``protocol`` over its
    ``hparams.protocol``."""
    hp = copy.deepcopy(spec.hparams)
    for key, value in point.items():
        _set(hp, key, value)
    hp["data"] = {**hp.get("data", {}), **(data or {})}
    hp["protocol"] = {**(hp.get("protocol") or {}), **(protocol or {})}
    return RunSpec(spec.method, spec.dataset, spec.seed, spec.preset, hp, spec.configuration)


@dataclass(frozen=True)
class Choice:
    """The chosen point of one (method, dataset): its values, its mean selection accuracy over
    the seeds and how many points competed."""

    method: str
    dataset: str
    point: dict[str, Any]
    accuracy: float
    candidates: int


class Search:
    """The search of ``grid``'s preset over ``grid``'s methods, datasets and seeds (see the
    module docstring); a ``ValueError`` when the preset declares no search or ``--set`` sets a
    searched hyperparameter."""

    def __init__(self, grid: Grid) -> None:
        search = grid.preset.get("search")
        if not search:
            raise ValueError(f"preset {grid.preset['name']} declares no search space (a `search:` block); "
                             f"--search needs one")
        searched = {k for m in grid.methods for k in search_space(grid.preset, m)}
        clashes = sorted(k for k in grid.overrides if k in searched)
        if clashes:
            raise ValueError(f"--set {', '.join(clashes)}: searched by --search (drop them from --set)")
        self.grid = grid
        self.data_options: dict[str, Any] = dict(search.get("data_options") or {})
        self.plain = grid.runs()

    def candidates(self) -> dict[tuple[str, str], list[tuple[dict[str, Any], list[RunSpec]]]]:
        """(method, dataset) -> each point of the method's space with its selection runs (one
        per seed), for the methods with a non-empty space."""
        out: dict[tuple[str, str], list[tuple[dict[str, Any], list[RunSpec]]]] = {}
        for spec in self.plain:
            points = search_points(search_space(self.grid.preset, spec.method))
            if not points:
                continue
            pair = out.setdefault((spec.method, spec.dataset), [(p, []) for p in points])
            for point, runs in pair:
                runs.append(with_values(spec, point, self.data_options, {STAGE_KEY: SELECTION}))
        return out

    def selection_runs(self) -> list[RunSpec]:
        """Every selection run: datasets outermost, then methods, then points, then seeds."""
        return [run for pair in self.candidates().values() for _, runs in pair for run in runs]

    def choose(self, output: str | Path) -> tuple[dict[tuple[str, str], Choice], list[str]]:
        """The choice of every (method, dataset) whose selection runs under ``output`` are all
        done, and one line for each pair still waiting (how many of its runs are not done)."""
        choices, waiting = {}, []
        for (method, dataset), pair in self.candidates().items():
            runs = [run for _, point_runs in pair for run in point_runs]
            not_done = [r for r in runs if RunFolder.of(output, r).status() is not Status.DONE]
            if not_done:
                waiting.append(f"no choice for {method} / {dataset}: {len(not_done)} of its {len(runs)} "
                               f"selection runs not done")
                continue
            means = [sum(RunFolder.of(output, r).read_metrics()["test_accuracy"] for r in point_runs)
                     / len(point_runs) for _, point_runs in pair]
            order = sorted(range(len(pair)), key=lambda i: (-means[i], pair[i][0].get("lr", 0.0), i))
            best = order[0]
            choices[(method, dataset)] = Choice(method, dataset, pair[best][0], means[best], len(pair))
        return choices, waiting

    def note(self, choice: Choice) -> str:
        """What a final run records as ``protocol.selection`` (no commas or semicolons)."""
        where = " ".join(f"{k} {v}" for k, v in self.data_options.items())
        return f"{describe_point(choice.point)} (best top-1 of {choice.candidates} points{' on ' * bool(where)}{where})"

    def final_runs(self, choices: dict[tuple[str, str], Choice]) -> list[RunSpec]:
        """The grid's runs with their pair's chosen values (in the grid's order); the runs of a
        searched pair without a choice are left out, a method without a space keeps its runs."""
        out = []
        for spec in self.plain:
            choice = choices.get((spec.method, spec.dataset))
            if choice is not None:
                out.append(with_values(spec, choice.point, protocol={SELECTION_NOTE: self.note(choice)}))
            elif not search_space(self.grid.preset, spec.method):
                out.append(spec)
        return out
