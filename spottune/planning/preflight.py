"""Check a grid before anything launches: hyperparameters, data and pretrained weights, once.

A wrong grid must fail on the command line, not as a hundred failing runs (or, worse, as
runs recorded done with a meaningless number). :func:`hparam_problems` checks every resolved
hyperparameter of every run; :func:`launch_problems` then checks, once per grid, what the runs
to launch will read: ``--data-root``, every distinct (dataset, data options) through the same
:func:`spottune.data.load_task` the runs use, and the pretrained files of the backbones. Each
returns one line per distinct problem; ``run_all.py`` prints them and exits 2 before writing
anything. The data check reads what locates and labels the images (folders, annotation files,
splits) with any image ``cache`` option set to ``none``: the launcher (on a cluster, a login
node) never builds a packed cache or decodes every image; a corrupt image stops its run, whose
error names the file (and ``run_all.py`` prints that line).

Hyperparameter rules of the engine's training protocol, whatever sets the value (:data:`RULES`,
ranges of :mod:`spottune.hparams`)::

    epochs, batch_size, eval_batch_size   integer >= 1
    num_workers                           integer >= 0
    lr, lr_gamma, adam_eps, backbone.width  number > 0
    weight_decay, warmup_lr, min_lr       number >= 0
    momentum, label_smoothing, drop_path  number in [0, 1)
    optimizer                             sgd | adam | adamw   (spottune.training.loop.OPTIMIZERS)
    schedule                              step | cosine | timm_cosine   (spottune.training.loop.SCHEDULES)
    weight_decay_exempt                   none | classifier_bias | biases | 1d
                                          (spottune.training.loop.DECAY_EXEMPTIONS)
    head_init                             pytorch | vpt | timm (spottune.backbones.base.HEAD_INITS)
    timm_step_offset                      0 | 1
    precision                             fp32 | bf16          (spottune.training.acceleration.PRECISIONS)
    lr_milestones                         list of integers m with 1 <= m <= epochs;
                                          empty with schedule: cosine or timm_cosine
    warmup_epochs                         integer w with 0 <= w <= epochs
    cooldown_epochs                       integer c with 0 <= c and warmup_epochs + c <= epochs

(the lr is multiplied by ``lr_gamma`` after epoch ``m``; a milestone past the last epoch
would silently never apply, and the cosine schedule has none: milestones there would be
ignored). A method's own ``dataset_hparams`` (in ``method_hparams``) must name datasets the
suite knows. A preset's declared ``search`` space (:func:`spottune.planning.grid.search_space`) must name
hyperparameters the runs have, each with a non-empty list of values that pass the rules above.
A method's own hyperparameters are checked against the ranges it declares (``Method.hparams``,
e.g. SpotTune's ``temperature``, a number > 0) and its rules across keys, when it is made:
one line per key, ``method <name>: <key>=<value>: must be ...``; a search space's values
against the same ranges.

Every number, wherever it sits in the hyperparameters (the rules above, a method's own
values, a search space), must be finite: ``--set lr=inf`` (or ``1e400``, which ``float()``
reads as inf, or ``nan``) would train a run to ``nan`` and record it done.

Every value must be plain data (numbers, strings, booleans, null, lists, mappings: what a run
id hashes and a checkpoint may hold; YAML reads ``2024-01-01`` as a date). A value given with
``--set`` must also have the type of the value it replaces: a number for a number (``--set
lr=abc`` is an error), a string for a string, a list for a list, true/false for a boolean; a
value replacing ``null`` may be anything.
"""
from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

from spottune.training.acceleration import PRECISIONS
from spottune.backbones.base import HEAD_INITS
from spottune.data import DatasetError, list_datasets, load_task
from spottune.storage.records import RunSpec
from spottune.training.loop import DECAY_EXEMPTIONS, OPTIMIZERS, SCHEDULES
from spottune.planning.grid import METHOD_DATASET_KEY, Grid, search_space
from spottune.hparams import FRACTION, NON_NEGATIVE, POSITIVE, Range, integer, is_integer, one_of
from spottune.methods import create_method, get_method
from spottune.pretraining.weights import package_weights


def _numeric(value: Any) -> bool:
    """An int or a float (not a bool)."""
    return isinstance(value, (int, float)) and not isinstance(value, bool)


RULES: dict[str, Range] = {
    "epochs": integer(1),
    "batch_size": integer(1),
    "eval_batch_size": integer(1),
    "num_workers": integer(0),
    "lr": POSITIVE,
    "lr_gamma": POSITIVE,
    "adam_eps": POSITIVE,
    "backbone.width": POSITIVE,
    "weight_decay": NON_NEGATIVE,
    "momentum": FRACTION,
    "warmup_lr": NON_NEGATIVE,
    "min_lr": NON_NEGATIVE,
    "label_smoothing": FRACTION,
    "drop_path": FRACTION,
    "optimizer": one_of(OPTIMIZERS),
    "schedule": one_of(SCHEDULES),
    "weight_decay_exempt": one_of(DECAY_EXEMPTIONS),
    "head_init": one_of(HEAD_INITS),
    "timm_step_offset": one_of((0, 1)),
    "warmup_epochs": integer(0),
    "cooldown_epochs": integer(0),
    "precision": one_of(PRECISIONS),
}


def _lookup(hp: dict[str, Any], key: str) -> tuple[bool, Any]:
    """``(found, value)`` of a dotted key in nested dicts."""
    node: Any = hp
    for part in key.split("."):
        if not isinstance(node, dict) or part not in node:
            return False, None
        node = node[part]
    return True, node


def _kind(value: Any) -> str | None:
    """The type family a ``--set`` value must keep (None: anything goes)."""
    if value is None:
        return None
    if isinstance(value, bool):
        return "true or false"
    if _numeric(value):
        return "a number"
    return {str: "a string", list: "a list", dict: "a mapping"}.get(type(value))


def _same_kind(old: Any, new: Any) -> bool:
    return _kind(old) is None or _kind(old) == _kind(new)


def _not_plain(value: Any, key: str = "") -> list[str]:
    """The dotted keys under ``key`` whose values are not plain data (what checkpoints may hold)."""
    if isinstance(value, dict):
        return [bad for k, v in value.items() for bad in _not_plain(v, f"{key}.{k}" if key else str(k))]
    if isinstance(value, list):
        return [bad for v in value for bad in _not_plain(v, key)]
    return [] if value is None or isinstance(value, (str, int, float, bool)) else [key]


def _not_finite(value: Any, key: str = "") -> list[str]:
    """The dotted keys under ``key`` holding a float that is not finite (inf, -inf, nan)."""
    if isinstance(value, dict):
        return [bad for k, v in value.items() for bad in _not_finite(v, f"{key}.{k}" if key else str(k))]
    if isinstance(value, list):
        return [bad for v in value for bad in _not_finite(v, key)]
    return [key] if isinstance(value, float) and not math.isfinite(value) else []


def milestone_problem(hp: dict[str, Any]) -> str | None:
    """What is wrong with ``lr_milestones`` (or, for ``schedule: cosine``, ``warmup_epochs``)
    given ``epochs``, or None."""
    milestones, epochs = hp.get("lr_milestones", []), hp.get("epochs")
    if not isinstance(milestones, list) or not all(is_integer(m) for m in milestones):
        return f"lr_milestones={milestones!r}: must be a list of integers (epochs), e.g. [2] or []"
    schedule = hp.get("schedule")
    if schedule in ("cosine", "timm_cosine"):
        if milestones:
            return (f"lr_milestones={milestones} with schedule={schedule}: milestones belong to the step schedule "
                    f"and would be ignored; set lr_milestones=[]")
        warmup, cooldown = hp.get("warmup_epochs", 0), hp.get("cooldown_epochs", 0)
        if is_integer(epochs) and is_integer(warmup) and warmup > epochs:
            return (f"warmup_epochs={warmup} with epochs={epochs}: the warm-up must fit in the run; with fewer "
                    f"epochs set it too, e.g. --set warmup_epochs=0")
        if schedule == "timm_cosine" and is_integer(epochs) and is_integer(warmup) and is_integer(cooldown) \
                and warmup + cooldown > epochs:
            return (f"cooldown_epochs={cooldown} with warmup_epochs={warmup} and epochs={epochs}: the cosine "
                    f"must fit between them; with fewer epochs set both, e.g. --set warmup_epochs=0 cooldown_epochs=0")
        return None
    if is_integer(epochs) and epochs >= 1 and any(not 1 <= m <= epochs for m in milestones):
        return (f"lr_milestones={milestones} with epochs={epochs}: every milestone must be within 1..{epochs} "
                f"(the lr drops after that epoch); with fewer epochs set the milestones too, "
                f"e.g. --set lr_milestones=[]")
    return None


def hparam_problems(grid: Grid) -> list[str]:
    """One line per distinct problem of the grid's resolved hyperparameters (see module docstring)."""
    problems: dict[str, None] = {}  # ordered set
    for method in grid.methods:
        for dataset in grid.datasets:
            before = grid.hparams(method, dataset)
            hp = grid.hparams(method, dataset, grid.overrides)
            not_plain = _not_plain(hp)
            for key in not_plain:
                problems[f"{key}={_lookup(hp, key)[1]!r}: must be plain data (a number, string, true/false, null, "
                         f"list or mapping)"] = None
            infinite = _not_finite(hp)
            for key in infinite:
                problems[f"{key}={_lookup(hp, key)[1]!r}: must be a finite number (a value past 1.8e308, "
                         f"such as 1e400, reads as inf)"] = None
            mistyped = set()
            for key, value in grid.overrides.items():
                found, old = _lookup(before, key)
                if found and not _same_kind(old, value):
                    mistyped.add(key)
                    problems[f"--set {key}={value!r}: must be {_kind(old)} (like {old!r})"] = None
            for key, rule in RULES.items():
                found, value = _lookup(hp, key)
                if found and key not in mistyped and key not in infinite and not rule.accepts(value):
                    problems[rule.problem(key, value)] = None
            if not (mistyped or infinite or not_plain):  # those lines already name the method's keys
                try:
                    create_method(hp.get("variant_of", method), hp)
                except ValueError as err:
                    problems[f"method {method}: {err}"] = None
            milestones = None if "lr_milestones" in mistyped or "lr_milestones" in infinite else milestone_problem(hp)
            if milestones:
                problems[milestones] = None
            ranges = {**RULES, **declared_ranges(hp.get("variant_of", method))}
            problems.update(dict.fromkeys(search_problems(hp, search_space(grid.preset, method), ranges)))
    known = set(list_datasets())
    for method, own in (grid.preset.get("method_hparams") or {}).items():
        for dataset in ((own or {}).get(METHOD_DATASET_KEY) or {}):
            if dataset not in known:
                problems[f"method_hparams.{method}.{METHOD_DATASET_KEY}: unknown dataset {dataset!r} (use the "
                         f"names run_all.py --list prints, e.g. vtab1k/cifar)"] = None
    return list(problems)


def declared_ranges(method: str) -> dict[str, Range]:
    """The ranges ``method`` declares for its own hyperparameters (:class:`spottune.hparams.HParam`)."""
    return {key: declared.range for key, declared in get_method(method).hparams.items() if declared.range}


def search_problems(hp: dict[str, Any], space: dict[str, Any], ranges: dict[str, Range]) -> list[str]:
    """What is wrong with a declared search ``space`` for a run with hyperparameters ``hp``, each
    value checked against its key's range in ``ranges``."""
    problems = []
    for key, values in space.items():
        if not _lookup(hp, key)[0]:
            problems.append(f"search {key}: not a hyperparameter of the runs")
        elif not isinstance(values, list) or not values:
            problems.append(f"search {key}={values!r}: must be a non-empty list of values")
        elif _not_finite(values):
            problems.append(f"search {key}={values!r}: every value must be a finite number")
        elif key in ranges and not all(ranges[key].accepts(v) for v in values):
            problems.append(f"search {key}={values!r}: every value must be {ranges[key].text}")
    return problems


def _one_line(err: BaseException) -> str:
    message = err.args[0] if err.args and isinstance(err.args[0], str) else str(err)
    lines = message.strip().splitlines() or [type(err).__name__]
    return lines[0] + (" (docs/DATA.md gives the layouts)" if len(lines) > 1 else "")


def _pretrained_problem(spec: dict[str, Any]) -> str | None:
    pretrained = spec.get("pretrained") or {}
    if pretrained.get("kind") in ("released", "state_dict"):
        path = Path(str(pretrained.get("path"))).expanduser()
        if not path.is_file():
            return f"backbone.pretrained.path {path}: no such file (the {pretrained['kind']} weights)"
    if pretrained.get("kind") == "package":
        try:
            package_weights(spec)
        except ValueError as err:
            return str(err)
        except FileNotFoundError as err:
            return f"backbone.pretrained kind package: {err}"
    return None


def launch_problems(specs: list[RunSpec], data_root: str | Path | None,
                    download: bool = False) -> list[str]:
    """One line per distinct problem with the data and pretrained files ``specs`` will read,
    each distinct dataset (with its data options) loaded once, as the runs load it."""
    if data_root is not None and not Path(data_root).is_dir():
        return [f"--data-root {data_root}: no such folder"]
    problems: dict[str, None] = {}
    seen: set[str] = set()
    for spec in specs:
        hp = spec.hparams
        problem = _pretrained_problem(hp["backbone"])
        if problem:
            problems[problem] = None
        options = {**hp.get("data", {}), **({"cache": "none"} if "cache" in hp.get("data", {}) else {})}
        key = json.dumps([spec.dataset, options], sort_keys=True, default=str)
        if key in seen:
            continue
        seen.add(key)
        try:
            load_task(spec.dataset, data_root, **options, **({"download": True} if download else {}))
        except (DatasetError, OSError, KeyError, ValueError, TypeError) as err:
            problems[f"{spec.dataset}: {_one_line(err)}"] = None
    return list(problems)
