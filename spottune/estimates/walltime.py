"""How long a grid takes on this machine: ``--dry-run``'s wall-time estimate beside the GPU-hours.

The GPU-hours of :mod:`spottune.estimates.cost` come from a committed table; the wall time here depends on
this machine, so it is measured: a *calibration* times standard fine-tuning's training step and
evaluation batch (:mod:`spottune.estimates.workload`: the engine's step on a synthetic batch) for one
backbone setting (architecture, image size, width, batch size: :class:`Setting`) with the
threads a launcher would give it, for :data:`CALIBRATION_S` seconds after a warm-up step, once
per machine (host, CPU model, torch version, device), setting and thread count. It is cached in
``<cache>/calibration/<hash>.json`` (``$SPOTTUNE_CACHE``; delete the file to measure again) when
no other work kept the CPUs busy; one measured on a busy machine is used once, not kept. The
batch is the run's, capped at :data:`CALIBRATION_PIXELS` pixels (a 224-px ResNet-50 batch of 32
would take a minute on a CPU), which makes large images' estimates conservative.

One run then takes::

    epochs * training images / (train rate * r_train) + scored images / (eval rate * r_eval)

where ``r`` is the method's throughput relative to fine-tuning's in the committed throughput
table (:mod:`spottune.estimates.throughput`: SpotTune trains at about half fine-tuning's rate); image
counts: :mod:`spottune.estimates.dataset_sizes`. A suite pretraining the cache lacks costs the same as a
fine-tuning run over its source images (``max_images`` when set) and runs first, with the
threads the launcher gives it. The grid's runs are dealt to the workers as the local launcher
deals them (round-robin, each worker's share one after the other): the wall time is the
pretraining plus the longest worker's share. Not counted: data loading and augmentation, process
start-up, checkpoints, the report; other work on the machine (said when there is some now).
"""
from __future__ import annotations

import hashlib
import platform
import socket
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import torch

from spottune.estimates.dataset_sizes import pretraining_sizes, run_sizes
from spottune.pretraining.cache import cache_dir, pretraining_setting
from spottune.storage.records import PRETRAINING, RecordError, RunSpec, atomic_write_json, canonical_json, read_json
from spottune.estimates.throughput import DEFAULT_TABLE, REFERENCE_METHOD, ThroughputTable
from spottune.training.cpus import torch_threads

CALIBRATION_S = 1.0  # seconds of timed training steps (and as long of evaluation batches)
CALIBRATION_PIXELS = 128 * 32 * 32  # largest calibration batch, in pixels (the mini preset's batch)
CALIBRATION_DIR = "calibration"


@dataclass(frozen=True)
class Setting:
    """What one calibration measures: a backbone at an image size and width, one batch size."""

    arch: str
    image_size: int
    width: float
    batch_size: int

    @classmethod
    def of(cls, backbone: dict[str, Any], batch_size: int) -> "Setting":
        """The calibration setting of a run (or pretraining) of ``backbone`` with ``batch_size``."""
        size = int(backbone.get("input_size", 224))
        return cls(backbone["arch"], size, float(backbone.get("width", 1.0)),
                   max(1, min(int(batch_size), CALIBRATION_PIXELS // (size * size))))

    def __str__(self) -> str:
        return f"{self.arch}@{self.image_size} width {self.width:g} batch {self.batch_size}"


@dataclass(frozen=True)
class Rates:
    """Fine-tuning's training and evaluation images/s on this machine for one setting."""

    train: float
    eval: float


def _images_per_second(step: Callable[[], None], batch_size: int, seconds: float) -> float:
    step()  # warm-up
    steps, start = 0, time.perf_counter()
    while steps == 0 or time.perf_counter() - start < seconds:
        step()
        steps += 1
    return steps * batch_size / (time.perf_counter() - start)


def measure_rates(setting: Setting, threads: int, device: torch.device) -> Rates:
    """Fine-tuning's :class:`Rates` for ``setting`` on ``device`` with ``threads`` torch threads
    (about ``2 * CALIBRATION_S`` seconds plus two warm-up steps)."""
    from spottune.estimates.workload import build_workload

    with torch_threads(threads):
        workload = build_workload(REFERENCE_METHOD, setting.arch, setting.image_size, setting.batch_size,
                                  width=setting.width, device=device)
        return Rates(_images_per_second(workload.train_step, setting.batch_size, CALIBRATION_S),
                     _images_per_second(workload.eval_step, setting.batch_size, CALIBRATION_S))


def machine(device: torch.device) -> dict[str, str]:
    """What a calibration is valid for besides its setting and threads."""
    cpu = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo") as f:
            cpu = next((line.split(":", 1)[1].strip() for line in f if line.startswith("model name")), cpu)
    except OSError:
        pass
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else cpu
    return {"host": socket.gethostname(), "device": f"{device.type}: {name}", "torch": torch.__version__}


class Calibration:
    """This machine's :class:`Rates` per setting and thread count, measured once, cached."""

    def __init__(self, device: torch.device, folder: Path | None = None, keep: bool = True) -> None:
        """``keep``: cache what is measured (the CPUs are not busy with other work now)."""
        self.device = device
        self.folder = Path(folder) if folder is not None else cache_dir() / CALIBRATION_DIR
        self.keep = keep
        self.machine = machine(device)
        self.used: dict[tuple[Setting, int], Rates] = {}
        self.measured_now = False

    def rates(self, setting: Setting, threads: int) -> Rates:
        """The cached rates of ``setting`` with ``threads``, measured first when there are none
        (saying so on stderr: it takes a few seconds)."""
        if (setting, threads) in self.used:
            return self.used[setting, threads]
        key = {**self.machine, "setting": str(setting), "threads": threads}
        path = self.folder / f"{hashlib.sha256(canonical_json(key).encode()).hexdigest()[:16]}.json"
        try:
            record = read_json(path)
            rates = Rates(float(record["train_images_per_second"]), float(record["eval_images_per_second"]))
        except (FileNotFoundError, RecordError, KeyError, TypeError, ValueError):  # none yet, or damaged
            where = f"once; cached in {self.folder}" if self.keep else "other work is running: not cached"
            print(f"calibrating this machine for the wall-time estimate: fine-tuning {setting}, {threads} "
                  f"thread(s), a few seconds ({where})", file=sys.stderr, flush=True)
            rates = measure_rates(setting, threads, self.device)
            self.measured_now = True
            if self.keep:
                atomic_write_json(path, {**key, "train_images_per_second": rates.train,
                                         "eval_images_per_second": rates.eval,
                                         "measured_at": time.strftime("%Y-%m-%dT%H:%M:%S%z")})
        self.used[setting, threads] = rates
        return rates

    def describe(self) -> str:
        """The rates this estimate used, one clause per setting and thread count."""
        return "; ".join(f"{setting}, {threads} thread(s): {rates.train:.0f} train / {rates.eval:.0f} eval images/s"
                         for (setting, threads), rates in self.used.items())


def format_duration(seconds: float) -> str:
    """``~42 s``, ``~8.5 min`` or ``~3.2 h``."""
    if seconds < 60:
        return f"~{seconds:.0f} s"
    if seconds < 3600:
        return f"~{seconds / 60:.1f} min"
    return f"~{seconds / 3600:.1f} h"


class WallTime:
    """The wall-time estimate of runs and pretrainings on this machine (module docstring)."""

    def __init__(self, calibration: Calibration, table_path: str | Path = DEFAULT_TABLE) -> None:
        self.calibration = calibration
        self.table = ThroughputTable.load(table_path)

    def _relative(self, method: str, backbone: dict[str, Any], precision: str) -> tuple[float, float]:
        """``method``'s (train, eval) throughput relative to fine-tuning's in the table (1 where
        the table does not know the architecture)."""
        args = (backbone["arch"], int(backbone.get("input_size", 224)), float(backbone.get("width", 1.0)), precision)
        rate, reference = self.table.rate(method, *args), self.table.rate(REFERENCE_METHOD, *args)
        if rate is None or reference is None:
            return 1.0, 1.0
        return rate.train / reference.train, rate.eval / reference.eval

    def _seconds(self, epochs: int, sizes: tuple[int, int], rates: Rates, relative: tuple[float, float]) -> float:
        train, scored = sizes
        return epochs * train / (rates.train * relative[0]) + scored / (rates.eval * relative[1])

    def run_seconds(self, spec: RunSpec, threads: int) -> float | None:
        """One run with ``threads`` threads, or None when its dataset's size is unknown; a suite
        pretraining (``kind: pretraining``) at fine-tuning's rate on its source task."""
        hp = spec.hparams
        if spec.kind == PRETRAINING:
            backbone = hp["backbone"]
            pre, relative = backbone["pretrained"], (1.0, 1.0)
            sizes, epochs = pretraining_sizes(pre), pretraining_setting(pre, "epochs")
            batch_size = pretraining_setting(pre, "batch_size")
        else:
            backbone, sizes = hp["backbone"], run_sizes(spec.dataset, hp.get("data"))
            epochs, batch_size = int(hp["epochs"]), int(hp["batch_size"])
            relative = self._relative(spec.method, backbone, str(hp.get("precision", "fp32")))
        if sizes is None:
            return None
        return self._seconds(epochs, sizes, self.calibration.rates(Setting.of(backbone, batch_size), threads), relative)

    def grid_seconds(self, specs: list[RunSpec], workers: int, threads: int) -> tuple[float, int]:
        """The runs dealt round-robin to ``workers`` workers of ``threads`` threads: the longest
        worker's share, and how many runs were left out for an unknown size."""
        times = [self.run_seconds(spec, threads) for spec in specs]
        shares = [sum(t for t in times[i::workers] if t is not None) for i in range(max(1, workers))]
        return max(shares, default=0.0), sum(t is None for t in times)

    def summary(self, runs: list[RunSpec], pretrainings: list[RunSpec], launch: str, workers: int,
                threads: int, pretraining_threads: int, busy_cpus: int = 0) -> list[str]:
        """The ``--dry-run`` lines: the wall time of ``pretrainings`` (first, in the launcher's
        process) and of ``runs`` (the runs not done) as ``launch`` (``--cluster local`` or
        ``inline``) would start them, then what it rests on; ``busy_cpus``: the allotted CPUs
        other work keeps busy now."""
        pretraining = [(p, self.run_seconds(p, pretraining_threads)) for p in pretrainings]
        runs_s, unknown = self.grid_seconds(runs, workers, threads)
        total = runs_s + sum(s for _, s in pretraining if s is not None)
        lines = [f"estimated wall time on this machine ({launch}: {workers} worker(s) x {threads} thread(s)): "
                 f"{format_duration(total)}"]
        for p, seconds in pretraining:
            lines.append(f"  pretraining first (not cached): {p.label} ({p.run_id}), {pretraining_threads} thread(s): "
                         f"{format_duration(seconds) if seconds is not None else 'unknown (source size unknown)'}")
        lines.append(f"  {len(runs)} run(s) not done: {format_duration(runs_s)}"
                     + (f" ({unknown} of unknown size not counted)" if unknown else ""))
        kept = (f"cached in {self.calibration.folder}" if self.calibration.keep or not self.calibration.measured_now
                else "measured now, beside other work")
        lines.append(f"  from this machine's rates for fine-tuning ({self.calibration.describe() or 'none needed'}; "
                     f"{kept}), other methods at their throughput-table cost relative to it; not counted: data "
                     f"loading, start-up, checkpoints, the report")
        if busy_cpus:
            lines.append(f"  note: {busy_cpus} allotted CPU(s) busy with other work now: slower while it lasts")
        return lines
