#!/usr/bin/env python
"""GPU check: per-method training and evaluation images/s and peak GPU memory, fp32 and bf16.

Run it through the wrapper, which finds a Python that has the suite's dependencies:

    bash benchmarks/gpu_check.sh                 # one GPU, well under 5 minutes
    bash benchmarks/gpu_check.sh --smoke         # any machine: tiny shapes, one step each

Settings: ResNet-26 (width 1) at 64 px, batch 128, ResNet-50 at 224 px, batch 32, and ViT-S/16
at 224 px, batch 64; every registered method that applies to the setting's backbone family
plus ``spottune-split`` (SpotTune with every block split half and half, the
worst case of hard-routed evaluation); fp32 and bf16 autocast (:mod:`spottune.acceleration`),
in the models' own NCHW memory format or, with ``--channels-last``, in channels-last (the run
option ``runtime.channels_last``; faster with bf16 on tensor-core GPUs).
A measurement is what the engine does per batch (:mod:`spottune.workload`): ``--warmup``
untimed steps, then ``--iterations`` timed ones; peak memory is
``torch.cuda.max_memory_allocated`` over both (model, optimiser state and activations).
Each method's model is built once per setting and measured in every precision. cuDNN
settings are PyTorch's defaults, as in a run.

Writes a Markdown table to stdout and to ``gpu_results.md``, and the same numbers as a
throughput table (:mod:`spottune.throughput`, ``kind: measured``) to ``gpu_throughput.yaml``,
both in ``--out`` (default ``$OUT`` if set, else ``benchmarks/``; with ``--smoke`` only
``--out`` or ``$OUT``). Copy ``gpu_throughput.yaml`` over ``spottune/throughput.yaml`` to base
``run_all.py --dry-run`` estimates on it. A ``--time-budget`` (default 270 s) stops measuring
and marks the rest skipped, so the command ends in time. Exit status 1 if a measurement failed.
"""
from __future__ import annotations

import argparse
import dataclasses
import datetime
import os
import platform
import sys
import time
from dataclasses import dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
if str(REPO) not in sys.path:  # runnable from a checkout without installing
    sys.path.insert(0, str(REPO))

import torch  # noqa: E402

from spottune.acceleration import PRECISIONS, Acceleration  # noqa: E402
from spottune.backbones.vit import arch_family  # noqa: E402
from spottune.methods import get_method, list_methods  # noqa: E402
from spottune.throughput import REFERENCE_METHOD, ThroughputTable, setting_key  # noqa: E402
from spottune.workload import SPLIT, Workload, build_workload  # noqa: E402

PHASES = ("train", "eval")


@dataclass(frozen=True)
class Setting:
    arch: str
    image_size: int
    batch_size: int
    width: float = 1.0

    @property
    def key(self) -> str:
        return setting_key(self.arch, self.image_size)


SETTINGS = (Setting("resnet26", 64, 128), Setting("resnet50", 224, 32), Setting("vit_small_patch16_224", 224, 64))
SMOKE_SETTINGS = (Setting("resnet26", 32, 4, width=0.125), Setting("resnet50", 32, 2), Setting("vit_mini", 32, 2))


@dataclass
class Result:
    """One (setting, method, precision) row: images/s and peak MiB per phase, or why not."""

    setting: Setting
    method: str
    precision: str
    images_per_second: dict[str, float]
    peak_mib: dict[str, float]
    status: str = "ok"


def measure(workload: Workload, phase: str, warmup: int, iterations: int) -> tuple[float, float | None]:
    """Images/s of ``phase`` over ``iterations`` timed steps, and peak GPU MiB (``None`` off GPU)."""
    step = workload.train_step if phase == "train" else workload.eval_step
    cuda = workload.device.type == "cuda"
    if cuda:
        torch.cuda.reset_peak_memory_stats(workload.device)
    for _ in range(warmup):
        step()
    start = time.perf_counter()
    for _ in range(iterations):
        step()
    seconds = time.perf_counter() - start
    peak = torch.cuda.max_memory_allocated(workload.device) / 2**20 if cuda else None
    return iterations * workload.batch_size / seconds, peak


def run_setting(setting: Setting, methods: list[str], precisions: list[str], device: torch.device,
                warmup: int, iterations: int, deadline: float, channels_last: bool = False) -> list[Result]:
    """Every (method, precision) of ``setting`` for the methods that apply to its backbone family;
    one model per method, measured in every precision."""
    results = []
    family = arch_family(setting.arch)
    for method in [m for m in methods if family in get_method("spottune" if m == SPLIT else m).families]:
        rows = [Result(setting, method, precision, {}, {}) for precision in precisions]
        results += rows
        workload: Workload | None = None
        for row in rows:
            if time.perf_counter() > deadline:
                row.status = "skipped (time budget)"
                continue
            try:
                if workload is None:
                    workload = build_workload(method, setting.arch, setting.image_size, setting.batch_size,
                                              width=setting.width, device=device,
                                              accel=Acceleration(channels_last=channels_last))
                workload.accel = dataclasses.replace(workload.accel, precision=row.precision)
                for phase in PHASES:
                    rate, peak = measure(workload, phase, warmup, iterations)
                    row.images_per_second[phase] = rate
                    if peak is not None:
                        row.peak_mib[phase] = peak
            except torch.cuda.OutOfMemoryError:
                row.status = "out of memory"
            except Exception as err:  # one broken method must not hide the others' numbers
                row.status = f"error: {type(err).__name__}: {err}"
        workload = None  # free the model before the next one is built
        if device.type == "cuda":
            torch.cuda.empty_cache()
    return results


def _number(value: float | None, digits: int = 0) -> str:
    return "–" if value is None else f"{value:,.{digits}f}"


def markdown(results: list[Result], header: list[str]) -> str:
    """The results as a Markdown table, ratios to standard fine-tuning in the same setting and precision."""
    reference = {(r.setting.key, r.precision): r.images_per_second for r in results if r.method == REFERENCE_METHOD}
    lines = header + ["", "| setting | batch | method | precision | train img/s | eval img/s | train / finetune "
                      "| eval / finetune | peak MiB train | peak MiB eval | status |",
                      "|---|---:|---|---|---:|---:|---:|---:|---:|---:|---|"]
    for r in results:
        ref = reference.get((r.setting.key, r.precision), {})
        ratios = [r.images_per_second[p] / ref[p] if p in r.images_per_second and ref.get(p) else None
                  for p in PHASES]
        lines.append(f"| {r.setting.key} x{r.setting.width:g} | {r.setting.batch_size} | {r.method} | {r.precision} "
                     f"| {_number(r.images_per_second.get('train'))} | {_number(r.images_per_second.get('eval'))} "
                     f"| {_number(ratios[0], 2)} | {_number(ratios[1], 2)} "
                     f"| {_number(r.peak_mib.get('train'))} | {_number(r.peak_mib.get('eval'))} | {r.status} |")
    return "\n".join(lines) + "\n"


def throughput_table(results: list[Result], device_name: str, source: str) -> ThroughputTable:
    settings: dict = {}
    for r in results:
        if r.status != "ok":
            continue
        entry = settings.setdefault(r.setting.key, {"batch_size": r.setting.batch_size, "methods": {}})
        entry["methods"].setdefault(r.method, {})[r.precision] = {
            p: round(r.images_per_second[p], 1) for p in PHASES}
    return ThroughputTable(kind="measured", device=device_name, source=source, settings=settings)


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--smoke", action="store_true", help="tiny shapes, one warm-up and one timed step (any device)")
    p.add_argument("--device", default="auto", help="cuda, cuda:1, cpu, or auto (default: cuda if visible)")
    p.add_argument("--methods", help="comma-separated methods (default: every registered one, plus spottune-split)")
    p.add_argument("--precisions", default=",".join(PRECISIONS), help="comma-separated (default: %(default)s)")
    p.add_argument("--channels-last", action="store_true",
                   help="measure in the channels-last memory format (default: NCHW, as a run without --channels-last)")
    p.add_argument("--warmup", type=int, help="untimed steps per measurement (default 3; smoke 1)")
    p.add_argument("--iterations", type=int, help="timed steps per measurement (default 10; smoke 1)")
    p.add_argument("--threads", type=int, help="CPU threads (torch.set_num_threads); default: PyTorch's")
    p.add_argument("--time-budget", type=float, default=270.0, help="seconds before the rest is skipped")
    p.add_argument("--out", type=Path, help="output folder (default: $OUT, else benchmarks/ unless --smoke)")
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    started = time.perf_counter()
    if args.threads:
        torch.set_num_threads(args.threads)
    device = torch.device(("cuda" if torch.cuda.is_available() else "cpu") if args.device == "auto" else args.device)
    if device.type == "cuda" and not torch.cuda.is_available():
        print("gpu_check: no CUDA device is visible (torch.cuda.is_available() is False); "
              "use --smoke or --device cpu to check the script on a CPU", file=sys.stderr)
        return 2
    if device.type != "cuda" and not args.smoke and args.device == "auto":
        print("gpu_check: no CUDA device is visible; the full check needs a GPU (use --smoke to check the "
              "script, or --device cpu to measure the CPU)", file=sys.stderr)
        return 2
    known = [*list_methods(), SPLIT]
    methods = args.methods.split(",") if args.methods else known
    unknown = [m for m in methods if m not in known]
    if unknown:
        print(f"gpu_check: unknown methods {unknown}; known: {', '.join(known)}", file=sys.stderr)
        return 2
    precisions = args.precisions.split(",")
    warmup = args.warmup if args.warmup is not None else (1 if args.smoke else 3)
    iterations = args.iterations if args.iterations is not None else (1 if args.smoke else 10)
    settings = SMOKE_SETTINGS if args.smoke else SETTINGS
    deadline = started + args.time_budget

    results = [r for s in settings
               for r in run_setting(s, methods, precisions, device, warmup, iterations, deadline,
                                    args.channels_last)]

    device_name = (torch.cuda.get_device_name(device) if device.type == "cuda"
                   else f"CPU ({platform.processor() or platform.machine()}, {os.cpu_count()} cores)")
    source = (f"benchmarks/gpu_check.sh {' '.join(argv if argv is not None else sys.argv[1:])}".strip()
              + f"; {'channels-last' if args.channels_last else 'NCHW'}; torch {torch.__version__}, "
              f"CUDA {torch.version.cuda}; {torch.get_num_threads()} CPU threads; "
              f"{warmup} warm-up + {iterations} timed steps; {datetime.date.today().isoformat()}")
    header = [f"# GPU check{' (smoke)' if args.smoke else ''}: {device_name}", "", f"{source}; "
              f"took {time.perf_counter() - started:.0f} s."]
    text = markdown(results, header)
    print(text)
    out = args.out or (Path(os.environ["OUT"]) if os.environ.get("OUT") else None)
    if out is None and not args.smoke:
        out = REPO / "benchmarks"
    if out is not None:
        out.mkdir(parents=True, exist_ok=True)
        (out / "gpu_results.md").write_text(text)
        throughput_table(results, device_name, source).save(
            out / "gpu_throughput.yaml",
            "Written by benchmarks/gpu_check.sh (spottune/throughput.py documents the layout).")
        print(f"wrote {out / 'gpu_results.md'} and {out / 'gpu_throughput.yaml'}")
    return 1 if any(r.status.startswith("error") for r in results) else 0


if __name__ == "__main__":
    sys.exit(main())
