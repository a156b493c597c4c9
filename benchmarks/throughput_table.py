#!/usr/bin/env python
"""Images/s and ratios to standard fine-tuning from a pytest-benchmark JSON of the throughput suite.

    pytest benchmarks/ --benchmark-json=bench.json
    python benchmarks/throughput_table.py bench.json                       # Markdown to stdout
    python benchmarks/throughput_table.py bench.json --yaml spottune/estimates/throughput.yaml \\
        --anchor 938 --anchor-device "NVIDIA A100 80GB" --anchor-source "..."

A benchmark's rate is its batch size over its fastest timed round, timed by the process CPU
time the suite records (``extra_info["cpu_seconds"]``; wall-clock time where it is missing):
on a machine shared with other jobs it is the measurement they disturb least. Ratios divide
by ``finetune`` in the same setting and phase. ``--yaml`` writes the CPU rates scaled to a GPU as a throughput table of kind
``estimate`` (:mod:`spottune.estimates.throughput`): factor = ``--anchor`` (a published training
images/s of standard ResNet-50 fine-tuning on ``--anchor-device``) / this run's ``finetune``
ResNet-50 training images/s, the same factor for every method, setting and phase; settings of
another width than 1 (``-w0.25``) are left out of it, as the table's settings are of width 1.
"""
from __future__ import annotations

import argparse
import json
import sys
from collections import defaultdict
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
if str(REPO) not in sys.path:  # runnable from a checkout without installing
    sys.path.insert(0, str(REPO))

from spottune.estimates.throughput import REFERENCE_METHOD, ThroughputTable, setting_key  # noqa: E402

ANCHOR_SETTING = "resnet50@224-b8"


def rates(doc: dict[str, Any]) -> dict[str, dict[str, dict[str, float]]]:
    """``{setting: {method: {phase: images/s}}}`` from the benchmarks' ``extra_info`` and stats."""
    out: dict[str, dict[str, dict[str, float]]] = defaultdict(lambda: defaultdict(dict))
    for bench in doc["benchmarks"]:
        info = bench["extra_info"]
        if "setting" not in info:  # another suite's benchmark
            continue
        seconds = min(info["cpu_seconds"]) if info.get("cpu_seconds") else bench["stats"]["min"]
        out[info["setting"]][info["method"]][info["phase"]] = info["batch_size"] / seconds
    return out


def machine_line(doc: dict[str, Any]) -> str:
    info = doc["machine_info"]
    channels_last = any(b["extra_info"].get("channels_last") for b in doc["benchmarks"])
    load_text = "load average (1 / 5 / 15 min) " + ", ".join(
        f"{when} {' / '.join(f'{v:.2f}' for v in info[f'load_average_{when}'])}"
        for when in ("start", "end") if info.get(f"load_average_{when}"))
    return (f"{info.get('cpu', {}).get('brand_raw', info.get('processor', '?'))}, {info.get('cpu_count')} cores, "
            f"torch threads: {info.get('torch_threads')}, "
            f"memory format: {'channels-last' if channels_last else 'NCHW'}, torch {info.get('torch')}, Python "
            f"{info.get('python_version')}; {load_text}; {doc.get('datetime', '')[:19]}")


def markdown(table: dict[str, dict[str, dict[str, float]]]) -> str:
    lines = []
    for setting, methods in table.items():
        reference = methods.get(REFERENCE_METHOD, {})
        lines += [f"### {setting}", "", "| method | train img/s | train / finetune | eval img/s | eval / finetune |",
                  "|---|---:|---:|---:|---:|"]
        for method in sorted(methods, key=lambda m: (m != REFERENCE_METHOD, m)):
            cells = []
            for phase in ("train", "eval"):
                value = methods[method].get(phase)
                ratio = value / reference[phase] if value and reference.get(phase) else None
                cells += ["–" if value is None else f"{value:.2f}", "–" if ratio is None else f"{ratio:.2f}"]
            lines.append(f"| {method} | " + " | ".join(cells) + " |")
        lines.append("")
    return "\n".join(lines)


def estimate(table: dict[str, dict[str, dict[str, float]]], anchor: float, device: str, anchor_source: str,
             machine: str) -> ThroughputTable:
    """The CPU rates times ``anchor`` / the CPU's finetune ResNet-50 training rate."""
    factor = anchor / table[ANCHOR_SETTING][REFERENCE_METHOD]["train"]
    settings = {}
    for setting, methods in table.items():
        arch_size, batch_width = setting.rsplit("-b", 1)
        batch, _, width = batch_width.partition("-w")
        if width and float(width) != 1.0:
            continue
        arch, size = arch_size.split("@")
        settings[setting_key(arch, int(size))] = {"batch_size": int(batch), "methods": {
            m: {"fp32": {p: round(v * factor, 1) for p, v in phases.items()}} for m, phases in sorted(methods.items())}}
    return ThroughputTable(kind="estimate", device=device, source=f"CPU benchmark ({machine})", settings=settings,
                           scale={"factor": round(factor, 1), "anchor": anchor_source})


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("json", type=Path, help="pytest-benchmark JSON (--benchmark-json) of benchmarks/")
    p.add_argument("--yaml", type=Path, help="write a throughput table of kind 'estimate' here")
    p.add_argument("--anchor", type=float, help="published GPU training images/s of ResNet-50 fine-tuning")
    p.add_argument("--anchor-device", default="a GPU", help="the GPU the anchor was measured on")
    p.add_argument("--anchor-source", default="", help="where the anchor number comes from")
    args = p.parse_args(argv)
    doc = json.loads(args.json.read_text())
    table = rates(doc)
    print(f"Machine: {machine_line(doc)}\n")
    print(markdown(table))
    if args.yaml:
        if args.anchor is None:
            p.error("--yaml needs --anchor")
        result = estimate(table, args.anchor, args.anchor_device, args.anchor_source, machine_line(doc))
        result.save(args.yaml, "Throughput per method (images/s) used by `run_all.py --dry-run` "
                    "(spottune/estimates/cost.py).\n"
                    "ESTIMATE: CPU measurements scaled by one factor (see scale), not a GPU measurement.\n"
                    "Regenerate: see benchmarks/RESULTS.md; replace with benchmarks/gpu_check.sh output on a GPU.")
        print(f"wrote {args.yaml}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
