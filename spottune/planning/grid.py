"""Presets -> the list of runs (:class:`spottune.storage.records.RunSpec`).

A preset is a YAML file (``spottune/presets/<name>.yaml``, or any path) with ``name``,
``description``, ``backbone`` (``arch``, ``width``, ``input_size``, ``pretrained``),
``datasets``, ``methods`` (``all`` or a list), ``seeds``, ``hparams`` (common to all
runs), ``method_hparams`` and ``dataset_hparams`` (per method / per dataset overrides; a
method's entry may hold its own ``dataset_hparams``, per dataset values of that method only,
e.g. the per-task lr of a published recipe),
``data_options`` (handed to the dataset loader), ``protocol`` (named protocol choices,
recorded in run configs and table footnotes), ``resources`` (what one run needs on a
cluster), ``pretraining_resources`` (what the job pretraining a ``kind: suite`` backbone
needs; default: ``resources``) and ``search`` (the space a reference protocol searches per task, declared beside
the defaults: ``hparams`` and ``method_hparams`` map hyperparameters to lists of values,
``data_options`` name the selection split; a method listed in ``method_hparams`` searches
exactly its own space, an empty one meaning no search; :func:`search_space`; checked before a launch by
:mod:`spottune.planning.preflight`, run with ``--search``: :mod:`spottune.planning.search`).

The hyperparameters of a run, later entries winning::

    preset.hparams < preset.dataset_hparams[dataset] < method.defaults
                   < preset.method_hparams[method]
                   < preset.method_hparams[method].dataset_hparams[dataset] < --set overrides

(a per-dataset setting such as the released per-domain weight decay applies to every method
that does not set that hyperparameter itself: Piggyback keeps its Adam without decay).

``variants`` name a method run with another backbone, e.g. the parameter-matched ResNet-101
fine-tuning row: ``variants: {finetune_resnet101: {method: finetune, backbone: {arch:
resnet101}}}``; the variant's name is the run's method (its rows in the tables), the
registered method it runs is ``hparams.variant_of``.

and ``backbone`` / ``data`` / ``protocol`` nested inside them, so that the run id (a hash of
method, dataset, seed, preset and hparams) changes whenever anything that changes the
numbers does. ``--set`` keys must already exist (dotted keys reach nested values, e.g.
``backbone.width=0.5``); values are parsed as YAML (``epochs=1``, ``lr_milestones=[2,3]``) and
take the type of the value they replace where that loses nothing (``bn_lr_mult=1`` for a float
default is ``1.0``, ``epochs=6.0`` is ``6``), so one configuration has one run id however it is
typed.

``--sweep KEY=V1,V2,...`` (:func:`parse_sweeps`) is a hyperparameter study in one command: the
grid's runs for each value (several sweeps: each combination), applied to the methods that have
the key (the others run once). Each run records in ``configuration`` what it sets apart from the
preset's resolution for its method and dataset (:attr:`spottune.storage.records.RunSpec.configuration`),
and the report gives each configuration its own labelled row (``bn_last_stage [bn_lr_mult=3.0]``).
"""
from __future__ import annotations

import copy
import itertools
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from spottune.backbones import arch_family
from spottune.data import list_datasets
from spottune.planning.iteration_budget import epochs_for_iterations
from spottune.methods import family_problem, get_method, list_methods, unknown_methods
from spottune.storage.records import RunSpec, canonical_json, flatten

PRESET_DIR = Path(__file__).parents[1] / "presets"
METHOD_DATASET_KEY = "dataset_hparams"  # per dataset values inside one method's method_hparams entry
PRESET_KEYS = ("name", "description", "backbone", "datasets", "methods", "seeds", "hparams", "method_hparams",
               "dataset_hparams", "variants", "data_options", "protocol", "resources", "pretraining_resources",
               "search")


def list_presets() -> list[str]:
    return sorted(p.stem for p in PRESET_DIR.glob("*.yaml"))


def read_yaml(path: Path, what: str) -> Any:
    """The YAML document in ``path``; a syntax error is a one-line ``ValueError`` naming the
    file, line and column (``what``: the kind of file, for the message)."""
    try:
        with open(path) as f:
            return yaml.safe_load(f)
    except yaml.YAMLError as err:
        mark = getattr(err, "problem_mark", None)
        where = f", line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        problem = getattr(err, "problem", None) or str(err).splitlines()[0]
        raise ValueError(f"{what} {path}{where}: invalid YAML ({problem})") from err


def load_preset(name_or_path: str) -> dict[str, Any]:
    """A preset by name (``mini``, ``decathlon``, ...) or by path to a YAML file."""
    path = Path(name_or_path)
    if not path.suffix:
        path = PRESET_DIR / f"{name_or_path}.yaml"
    if not path.exists():
        raise FileNotFoundError(f"unknown preset {name_or_path!r}; known presets: {', '.join(list_presets())} "
                                f"(or pass the path of a YAML file)")
    preset = read_yaml(path, "preset")
    if not isinstance(preset, dict):
        raise ValueError(f"preset {path} is not a YAML mapping of the keys {', '.join(PRESET_KEYS)}")
    missing = {"name", "backbone", "datasets", "hparams"} - set(preset)
    if missing:
        raise ValueError(f"preset {path} lacks the keys {sorted(missing)}")
    unknown = sorted(set(preset) - set(PRESET_KEYS))
    if unknown:
        raise ValueError(f"preset {path}: unknown keys {unknown}; known: {', '.join(PRESET_KEYS)}")
    return preset


def parse_overrides(items: list[str], option: str = "--set") -> dict[str, Any]:
    """``["epochs=1", "backbone.width=0.5"]`` -> ``{"epochs": 1, "backbone.width": 0.5}``; a
    ValueError naming ``option`` (the command-line option they came from) for a bad item."""
    out = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise ValueError(f"{option} expects KEY=VALUE, got {item!r}")
        try:
            out[key.strip()] = _number_or_value(yaml.safe_load(value))
        except yaml.YAMLError as err:
            raise ValueError(f"{option} {item!r}: the value is not YAML ({' '.join(str(err).split())})") from None
    return out


def parse_sweeps(items: list[str]) -> dict[str, list[Any]]:
    """``["bn_lr_mult=1,3", "lr_milestones=[2],[3]"]`` -> ``{"bn_lr_mult": [1, 3],
    "lr_milestones": [[2], [3]]}`` (the values are read as one YAML flow sequence)."""
    out = {}
    for item in items:
        key, sep, values = item.partition("=")
        try:
            parsed = yaml.safe_load(f"[{values}]") if sep and key and values else None
        except yaml.YAMLError:
            parsed = None
        if not isinstance(parsed, list) or not parsed:
            raise ValueError(f"--sweep expects KEY=V1,V2,..., got {item!r}")
        if key.strip() in out:
            raise ValueError(f"--sweep {key.strip()} is given twice")
        out[key.strip()] = [_number_or_value(value) for value in parsed]
    return out


def _number_or_value(value: Any) -> Any:
    """YAML 1.1 reads ``1e-3`` as a string; hyperparameters mean the number."""
    if isinstance(value, str):
        try:
            return float(value)
        except ValueError:
            return value
    return value


def _like(value: Any, current: Any) -> Any:
    """``value`` in the type of ``current`` where that loses nothing: an int for a float
    (``1`` -> ``1.0``), an integral float for an int (``6.0`` -> ``6``); else ``value``."""
    if isinstance(current, bool) or isinstance(value, bool):
        return value
    if isinstance(current, float) and isinstance(value, int):
        return float(value)
    if isinstance(current, int) and isinstance(value, float) and value.is_integer():
        return int(value)
    return value


def _apply(hp: dict[str, Any], key: str, value: Any, where: str) -> None:
    """Set ``hp[key]`` (dotted for nested dicts) to ``value`` in the type of the value it replaces
    (:func:`_like`); an unknown key is an error naming the known ones."""
    parts = key.split(".")
    node = hp
    for part in parts[:-1]:
        if not isinstance(node.get(part), dict):
            raise KeyError(f"{where}: unknown hyperparameter {key!r}")
        node = node[part]
    if parts[-1] not in node:
        known = sorted(k for k in hp if not isinstance(hp[k], dict))
        raise KeyError(f"{where}: unknown hyperparameter {key!r}; known: {', '.join(known)} "
                       f"(nested: backbone.*, data.*, protocol.*)")
    node[parts[-1]] = _like(value, node[parts[-1]])


def resolve_hparams(preset: dict[str, Any], method: str, dataset: str,
                    overrides: dict[str, Any] | None = None) -> dict[str, Any]:
    """Every hyperparameter of one run (see the module docstring for the precedence)."""
    variant = (preset.get("variants") or {}).get(method, {})
    base = variant.get("method", method)
    hp: dict[str, Any] = copy.deepcopy(preset["hparams"])
    hp.update(copy.deepcopy((preset.get("dataset_hparams") or {}).get(dataset, {})))
    hp.update(copy.deepcopy(get_method(base).defaults))
    own = copy.deepcopy((preset.get("method_hparams") or {}).get(method) or {})
    per_dataset = own.pop(METHOD_DATASET_KEY, None) or {}
    hp.update(own)
    hp.update(per_dataset.get(dataset) or {})
    hp["backbone"] = _deep_merge(preset["backbone"], variant.get("backbone", {}))
    if variant:
        hp["variant_of"] = base
    hp["data"] = copy.deepcopy(preset.get("data_options") or {})
    hp["protocol"] = copy.deepcopy(preset.get("protocol") or {})
    for key, value in (overrides or {}).items():
        top = key.split(".")[0]
        if top in hp or top not in _all_method_keys():  # else a key of other methods only
            _apply(hp, key, value, f"--set {key}")
    if hp.get("iterations"):  # a protocol stated in optimiser steps (spottune.planning.iteration_budget)
        hp.update(epochs_for_iterations(hp, dataset))
    return hp


def search_space(preset: dict[str, Any], method: str) -> dict[str, Any]:
    """The values the preset's ``search`` declares for ``method`` (each a hyperparameter -> list
    of values): ``search.method_hparams[method]`` when the method is listed there (its own
    space; empty or null: no search), else ``search.hparams``; empty without ``search``."""
    search = preset.get("search") or {}
    own = search.get("method_hparams") or {}
    return dict((own[method] if method in own else search.get("hparams")) or {})


def _deep_merge(base: dict[str, Any], update: dict[str, Any]) -> dict[str, Any]:
    out = copy.deepcopy(base)
    for key, value in update.items():
        out[key] = _deep_merge(out[key], value) if isinstance(value, dict) and isinstance(out.get(key), dict) \
            else copy.deepcopy(value)
    return out


def _all_method_keys() -> set[str]:
    return {k for name in list_methods() for k in get_method(name).defaults}


def configuration(base: dict[str, Any], hparams: dict[str, Any]) -> dict[str, Any]:
    """The dotted hyperparameters of ``hparams`` that differ from ``base``, what the preset
    resolves without overrides (what ``--set`` / ``--sweep`` changed)."""
    base = flatten(base)
    return {key: value for key, value in flatten(hparams).items() if key not in base or base[key] != value}


@dataclass
class Grid:
    """The runs of a preset restricted to some methods, datasets and seeds, with ``--set``
    ``overrides`` and ``--sweep`` ``sweeps`` (a list of values per key)."""

    preset: dict[str, Any]
    methods: list[str]
    datasets: list[str]
    seeds: list[int]
    overrides: dict[str, Any]
    # turns a preset's ``backbone.pretrained`` into the file or spec that runs (the released
    # checkpoint where documented, else the fallback: spottune.pretraining.weights.PretrainedResolver)
    resolve_pretrained: Callable[[dict[str, Any]], dict[str, Any]] | None = None
    sweeps: dict[str, list[Any]] = field(default_factory=dict)
    _resolved: dict[str, dict[str, Any]] = field(default_factory=dict, init=False, repr=False, compare=False)

    def hparams(self, method: str, dataset: str, overrides: dict[str, Any] | None = None) -> dict[str, Any]:
        """:func:`resolve_hparams` of the grid's preset, computed once per (method, dataset,
        overrides) and handed out as a copy (the runs, their configuration, the preflight and
        the recipes read the same resolution)."""
        key = canonical_json([method, dataset, overrides or {}])
        if key not in self._resolved:
            self._resolved[key] = resolve_hparams(self.preset, method, dataset, overrides)
        return copy.deepcopy(self._resolved[key])

    def settings(self) -> list[dict[str, Any]]:
        """The overrides of each point of the sweeps (one, ``overrides``, without sweeps)."""
        keys = list(self.sweeps)
        return [{**self.overrides, **dict(zip(keys, values))}
                for values in itertools.product(*self.sweeps.values())]

    def runs(self) -> list[RunSpec]:
        """Every run of the grid, datasets outermost, then methods, then the sweeps' points,
        then seeds; a method the sweeps do not reach runs once."""
        out, seen = [], set()
        for dataset in self.datasets:
            for method in self.methods:
                for overrides in self.settings():
                    hparams = self.hparams(method, dataset, overrides)
                    changed = configuration(self.hparams(method, dataset), hparams)
                    if self.resolve_pretrained and "pretrained" in hparams["backbone"]:
                        hparams["backbone"]["pretrained"] = self.resolve_pretrained(hparams["backbone"]["pretrained"])
                    for seed in self.seeds:
                        spec = RunSpec(method, dataset, int(seed), self.preset["name"], hparams, changed)
                        if spec.run_id not in seen:
                            seen.add(spec.run_id)
                            out.append(spec)
        return out


def _check_names(kind: str, wanted: list[str], known: list[str]) -> None:
    unknown = [w for w in wanted if w not in known]
    if unknown:
        raise KeyError(f"unknown {kind} {', '.join(map(repr, unknown))}; known {kind}s: {', '.join(known)}")


def make_grid(preset_name: str, methods: list[str] | None = None, datasets: list[str] | None = None,
              seeds: list[int] | None = None, overrides: dict[str, Any] | None = None,
              sweeps: dict[str, list[Any]] | None = None) -> Grid:
    """The grid of ``preset_name``, optionally restricted; unknown names fail with the known ones,
    a key both set and swept or swept for no method of the grid is an error."""
    preset = load_preset(preset_name)
    preset_methods = preset.get("methods", "all")
    variants = list(preset.get("variants") or {})
    family = arch_family(preset["backbone"]["arch"])
    applicable = [m for m in list_methods() if family in get_method(m).families]
    default_methods = applicable + variants if preset_methods in (None, "all") else list(preset_methods)
    methods = methods or default_methods
    known = set(list_methods()) | set(variants)
    unknown = [m for m in methods if m not in known]
    if unknown:
        raise KeyError(unknown_methods(unknown, variants))
    wrong_family = [family_problem(get_method(m), family, preset["backbone"]["arch"]) for m in methods
                    if m not in variants and m not in applicable]
    if wrong_family:
        raise ValueError("; ".join(wrong_family))
    datasets = datasets or list(preset["datasets"])
    _check_names("dataset", datasets, list_datasets())
    seeds = seeds if seeds is not None else list(preset.get("seeds", [0]))
    grid = Grid(preset, methods, datasets, seeds, dict(overrides or {}), sweeps=dict(sweeps or {}))
    both = sorted(set(grid.overrides) & set(grid.sweeps))
    if both:
        raise ValueError(f"{', '.join(both)}: both --set and --sweep; give each key one of them")
    if grid.methods and grid.datasets:
        for settings in grid.settings():  # fail early on a bad --set / --sweep
            grid.hparams(grid.methods[0], grid.datasets[0], settings)
    for key in grid.sweeps:
        reached = [m for m in grid.methods if grid.datasets and key in flatten(grid.hparams(m, grid.datasets[0]))]
        if not reached:
            raise ValueError(f"--sweep {key}: no method of this grid has it ({', '.join(grid.methods)})")
    return grid
