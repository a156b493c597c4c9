"""What a grid costs before it runs: epochs, images and estimated GPU-hours per run.

For ``run_all.py --dry-run``. One run costs::

    epochs * training images / training images/s  +  scored images / evaluation images/s

with the image counts of :mod:`spottune.estimates.dataset_sizes` (no image is read) and the rates of
the committed throughput table (:mod:`spottune.estimates.throughput`; whether those are measured or
estimated is printed with every total). A suite pretraining the cache lacks (once per
backbone spec) costs the same way, at fine-tuning's rate on its backbone: ``epochs`` x its
source images (``max_images`` when set) plus its source test split; it is printed apart from
the runs and added to the total. Not counted: data loading, checkpoints, start-up. Rates were
measured at one batch size per backbone; larger batches usually run faster on a GPU.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from typing import Any

from spottune.estimates.dataset_sizes import UNVERIFIED, pretraining_sizes, run_sizes
from spottune.pretraining.cache import pretraining_setting
from spottune.storage.records import PRETRAINING, RunSpec, Status
from spottune.estimates.throughput import DEFAULT_TABLE, ThroughputTable

UNKNOWN = "unknown"


@dataclass
class RunCost:
    """The estimate of one run; ``None`` where a size or a rate is unknown."""

    epochs: int
    train_images: int | None
    test_images: int | None
    gpu_hours: float | None
    notes: list[str] = field(default_factory=list)

    def describe(self) -> str:
        """``epochs 3  train 1198  test 599  ~4.2 GPU-s`` (or ``unknown`` parts)."""
        train = UNKNOWN if self.train_images is None else str(self.train_images)
        test = UNKNOWN if self.test_images is None else str(self.test_images)
        hours = UNKNOWN if self.gpu_hours is None else format_gpu_time(self.gpu_hours)
        return f"epochs {self.epochs:<4d} train {train:>8s}  test {test:>7s}  {hours}"


def format_gpu_time(hours: float) -> str:
    """``~12.3 GPU-h``; below a GPU-hour in GPU-min, below a GPU-minute in GPU-s."""
    if hours >= 1:
        return f"~{hours:.3g} GPU-h"
    if hours * 60 >= 1:
        return f"~{hours * 60:.3g} GPU-min"
    return f"~{hours * 3600:.2g} GPU-s"


def _estimate(epochs: int, dataset: str, sizes: tuple[int, int] | None, method: str, backbone: dict[str, Any],
              precision: str, table: ThroughputTable) -> RunCost:
    """``epochs`` over ``sizes`` = (training, scored images) of ``dataset`` at ``method``'s rate."""
    rate = table.rate(method, backbone["arch"], int(backbone.get("input_size", 224)),
                      float(backbone.get("width", 1.0)), precision)
    notes = [] if rate is None else list(rate.notes)
    if sizes is None:
        notes.append(f"size of {dataset} unknown")
    elif dataset in UNVERIFIED:
        notes.append(f"image counts of {dataset} [unverified]")
    if rate is None:
        notes.append(f"no throughput for {backbone['arch']}")
    if sizes is None or rate is None:
        return RunCost(epochs, *(sizes or (None, None)), None, notes)
    train, test = sizes
    seconds = epochs * train / rate.train + test / rate.eval
    return RunCost(epochs, train, test, seconds / 3600.0, notes)


def run_cost(spec: RunSpec, table: ThroughputTable) -> RunCost:
    """The cost of one run (as :meth:`spottune.planning.grid.Grid.runs` makes them), or of a
    suite pretraining (:func:`pretraining_cost`)."""
    hp = spec.hparams
    if spec.kind == PRETRAINING:
        return pretraining_cost(hp["backbone"], table)
    return _estimate(int(hp["epochs"]), spec.dataset, run_sizes(spec.dataset, hp.get("data")), spec.method,
                     hp["backbone"], str(hp.get("precision", "fp32")), table)


def pretraining_cost(backbone: dict[str, Any], table: ThroughputTable) -> RunCost:
    """The cost of the suite pretraining of ``backbone`` (its ``pretrained`` spec), as a
    fine-tuning run of its backbone on the source dataset."""
    pre = backbone["pretrained"]
    return _estimate(pretraining_setting(pre, "epochs"), pre["dataset"], pretraining_sizes(pre), "finetune", backbone,
                     "fp32", table)


class GridCost:
    """The costs of a grid's runs against the throughput table at ``table_path``."""

    def __init__(self, specs: list[RunSpec], pretrainings: list[RunSpec] = (),
                 table_path: str | Path = DEFAULT_TABLE) -> None:
        self.table_path = Path(table_path)
        self.table = ThroughputTable.load(table_path)
        self.costs = {s.run_id: run_cost(s, self.table) for s in specs}
        self.pretraining_costs = {p.run_id: run_cost(p, self.table) for p in pretrainings}

    def describe_run(self, spec: RunSpec) -> str:
        """The cost line of a run or a pretraining of the grid."""
        return {**self.costs, **self.pretraining_costs}[spec.run_id].describe()

    def summary(self, statuses: dict[str, Status], cached: frozenset[str] = frozenset()) -> str:
        """GPU-hours of the pretrainings not ``cached`` (their keys) and of the runs (the part
        not done yet: ``statuses``, run id -> status), their total, and what they rest on."""
        known = {r: c.gpu_hours for r, c in self.costs.items() if c.gpu_hours is not None}
        remaining = sum(h for r, h in known.items() if statuses.get(r) is not Status.DONE)
        unknown = len(self.costs) - len(known)
        to_pretrain = {k: c for k, c in self.pretraining_costs.items() if k not in cached}
        pretraining = sum(c.gpu_hours for c in to_pretrain.values() if c.gpu_hours is not None)
        notes = sorted({n for c in [*self.costs.values(), *to_pretrain.values()] for n in c.notes})
        lines = [f"estimated GPU time of the runs: {format_gpu_time(sum(known.values()))} for {len(known)} runs "
                 f"(not done yet: {format_gpu_time(remaining)})"
                 + (f"; {unknown} runs of unknown cost not counted" if unknown else "")]
        if self.pretraining_costs:
            lines.append(f"estimated GPU time of the pretraining: {format_gpu_time(pretraining)} for "
                         f"{len(to_pretrain)} backbone(s) to pretrain ({len(self.pretraining_costs) - len(to_pretrain)} "
                         f"cached)" + (" (cost unknown)" if any(c.gpu_hours is None for c in to_pretrain.values())
                                       else ""))
            lines.append(f"estimated GPU time still to spend: {format_gpu_time(remaining + pretraining)} "
                         f"(pretraining + runs not done yet)")
        lines += [f"  throughput: {self.table.describe()} ({self.table_path})",
                  "  per run: epochs x training images / training images/s + scored images / evaluation "
                  "images/s; per pretraining the same at fine-tuning's rate; data loading and start-up not counted"]
        lines += [f"  note: {n}" for n in notes]
        return "\n".join(lines)
