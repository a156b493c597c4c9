"""Training-step and evaluation throughput of every registered method on the CPU.

Five settings: ResNet-26 (width 1) at 64 px, batch 32 (the Visual Decathlon backbone),
ResNet-50 at 224 px, batch 8 (the standard datasets), ViT-S/16 at 224 px, batch 8 (the
PEFT benchmarks' family), and the offline presets' networks at their image size and batch:
EfficientNet-Lite0 at 64 px, batch 32 (``mini-effnet``) beside the width-0.25 ResNet-26 at 32 px,
batch 64 (``mini``; the setting's name carries its width, ``-w0.25``); each method in the settings of the
backbone families it applies to. Every benchmark times what the engine
does per batch (:mod:`spottune.estimates.workload`): ``train`` is a whole training step, ``eval`` one
evaluation batch. ``spottune-split`` is SpotTune's evaluation with every block split half and
half between the two copies (the worst case of hard routing; an untrained policy tends to
route a whole batch one way, which is the best case). One warm-up round, then
``SPOTTUNE_BENCH_ROUNDS`` timed rounds; threads: ``benchmarks/conftest.py``. Memory format:
the models' own (NCHW), or channels-last with ``SPOTTUNE_BENCH_CHANNELS_LAST=1`` (the run option
``runtime.channels_last``).

Besides pytest-benchmark's wall-clock statistics, every benchmark records the process CPU
time of each timed round (``extra_info["cpu_seconds"]``). On a machine shared with other
jobs, wall-clock time swings with their load while one thread's CPU time hardly moves, so
``throughput_table.py`` computes images/s from the fastest round's CPU time (with one
thread, the default, that is the wall-clock time of an idle machine).

    pytest benchmarks/ --benchmark-json=bench.json
    python benchmarks/throughput_table.py bench.json      # images/s and ratios to finetune

The speed targets of issue 7 are read from that table (``benchmarks/RESULTS.md``): SpotTune's
hard-routed evaluation >= 0.75x and its training step >= 0.5x standard fine-tuning on
ResNet-26.
"""
from __future__ import annotations

import os
import time
from typing import Any, Callable

import pytest
import torch

from spottune.training.acceleration import Acceleration
from spottune.backbones import arch_family
from spottune.methods import get_method, list_methods
from spottune.estimates.workload import SPLIT, build_workload

# name -> (arch, image size, batch, width); names: <arch>@<size>-b<batch>[-w<width>] (throughput_table.py)
SETTINGS = {"resnet26@64-b32": ("resnet26", 64, 32, 1.0), "resnet50@224-b8": ("resnet50", 224, 8, 1.0),
            "vit_small_patch16_224@224-b8": ("vit_small_patch16_224", 224, 8, 1.0),
            "efficientnet_lite0@64-b32": ("efficientnet_lite0", 64, 32, 1.0),
            "resnet26@32-b64-w0.25": ("resnet26", 32, 64, 0.25)}
CASES = [(setting, method) for setting, (arch, *_) in SETTINGS.items() for method in list_methods()
         if arch_family(arch) in get_method(method).families]
ROUNDS = int(os.environ.get("SPOTTUNE_BENCH_ROUNDS", "2"))
CHANNELS_LAST = os.environ.get("SPOTTUNE_BENCH_CHANNELS_LAST", "0") == "1"


def _measure(benchmark: Any, setting: str, method: str, phase: str) -> None:
    arch, size, batch, width = SETTINGS[setting]
    workload = build_workload(method, arch, size, batch, width=width, accel=Acceleration(channels_last=CHANNELS_LAST))
    step: Callable[[], None] = workload.train_step if phase == "train" else workload.eval_step
    cpu_seconds: list[float] = []

    def timed_step() -> None:
        start = time.process_time()
        step()
        cpu_seconds.append(time.process_time() - start)

    benchmark.group = f"{setting} {phase}"
    benchmark.pedantic(timed_step, rounds=ROUNDS, iterations=1, warmup_rounds=1)
    benchmark.extra_info.update({"method": method, "setting": setting, "arch": arch, "image_size": size,
                                 "batch_size": batch, "width": width, "phase": phase,
                                 "threads": torch.get_num_threads(),
                                 "channels_last": CHANNELS_LAST,
                                 "cpu_seconds": cpu_seconds[1:]})  # the first call is the warm-up


@pytest.mark.parametrize("setting, method", CASES)
@pytest.mark.parametrize("phase", ["train", "eval"])
def test_throughput(benchmark: Any, setting: str, method: str, phase: str) -> None:
    _measure(benchmark, setting, method, phase)


@pytest.mark.parametrize("setting", list(SETTINGS))
def test_spottune_split_evaluation(benchmark: Any, setting: str) -> None:
    _measure(benchmark, setting, SPLIT, "eval")
