#!/usr/bin/env python
"""GPU check: per-method training and evaluation images/s and peak GPU memory, fp32 and bf16.

Run it through the wrapper, which finds a Python that has the suite's dependencies:

    bash benchmarks/gpu_check.sh                 # one GPU, well under 5 minutes
    bash benchmarks/gpu_check.sh --smoke         # any machine: tiny shapes, one step each

Settings: ResNet-26 (width 1) at 64 px, batch 128, ResNet-50 at 224 px, batch 32, ViT-S/16
at 224 px, batch 64, and EfficientNet-Lite0 at the ``mini-effnet`` presets' 64 px, batch 256;
every registered method that applies to the setting's backbone family
plus ``spottune-split`` (SpotTune with every block split half and half, the
worst case of hard-routed evaluation); fp32 and bf16 autocast (:mod:`spottune.training.acceleration`),
in the models' own NCHW memory format or, with ``--channels-last``, in channels-last (the run
option ``runtime.channels_last``; faster with bf16 on tensor-core GPUs).
A measurement is what the engine does per batch (:mod:`spottune.estimates.workload`): ``--warmup``
untimed steps, then ``--iterations`` timed ones; peak memory is
``torch.cuda.max_memory_allocated`` over both (model, optimiser state and activations).
Each method's model is built once per setting and measured in every precision. cuDNN
settings are PyTorch's defaults, as in a run.

Runs per GPU (the SLURM profile key ``runs_per_gpu``, :mod:`spottune.launch.runs_per_gpu`): for
N = 1, 2, 4 (``--runs-per-gpu``; smoke 1, 2), N worker processes (``gpu_check.py
--pack-worker``) start together on the device and train the first setting (ResNet-26 at 64 px,
batch 128) in fp32, one method after the other (``--pack-methods``, default finetune and
spottune): each builds its workload and runs the warm-up steps, then, once all N are warm,
trains for ``--pack-seconds`` (default 3 s; at least ``--iterations`` steps) and reports its
images/s and peak memory. The section "Runs per GPU" gives the total images/s (the sum over
the processes), the per-process rate and the speed-up over N = 1: packing pays when the total
rises with N. It keeps up to 60 s of the time budget (about what it takes on a GPU); a round
that would overrun the budget is skipped.

Writes a Markdown table to stdout and to ``gpu_results.md``, and the same numbers as a
throughput table (:mod:`spottune.estimates.throughput`, ``kind: measured``) to ``gpu_throughput.yaml``,
both in ``--out`` (default ``$OUT`` if set, else ``benchmarks/``; with ``--smoke`` only
``--out`` or ``$OUT``). Copy ``gpu_throughput.yaml`` over ``spottune/estimates/throughput.yaml`` to base
``run_all.py --dry-run`` estimates on it. A ``--time-budget`` (default 270 s) stops measuring
and marks the rest skipped, so the command ends in time. Exit status 1 if a measurement failed.
"""
from __future__ import annotations

import argparse
import dataclasses
import datetime
import json
import os
import platform
import queue
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
if str(REPO) not in sys.path:  # runnable from a checkout without installing
    sys.path.insert(0, str(REPO))

import torch  # noqa: E402

from spottune.training.acceleration import PRECISIONS, Acceleration  # noqa: E402
from spottune.backbones import arch_family  # noqa: E402
from spottune.methods import get_method, list_methods  # noqa: E402
from spottune.estimates.throughput import REFERENCE_METHOD, ThroughputTable, setting_key  # noqa: E402
from spottune.estimates.workload import SPLIT, Workload, build_workload  # noqa: E402

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


SETTINGS = (Setting("resnet26", 64, 128), Setting("resnet50", 224, 32), Setting("vit_small_patch16_224", 224, 64),
            Setting("efficientnet_lite0", 64, 256))
SMOKE_SETTINGS = (Setting("resnet26", 32, 4, width=0.125), Setting("resnet50", 32, 2), Setting("vit_mini", 32, 2),
                  Setting("efficientnet_lite0", 32, 2))


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


# --- runs per GPU (the SLURM profile key runs_per_gpu, spottune/launch/runs_per_gpu.py) -------------------

PACK_METHODS = ("finetune", "spottune")
PACK_SPEEDUP_PAYS = 1.1  # total images/s at least this much above one run's: packing pays
PACK_TAG = "gpu_check-pack:"  # starts a worker's lines to the parent (anything else it prints is ignored)


@dataclass
class PackResult:
    """N processes of one method training at once on one device: each one's images/s and peak MiB."""

    method: str
    processes: int
    images_per_second: list[float] = dataclasses.field(default_factory=list)
    peak_mib: list[float] = dataclasses.field(default_factory=list)
    status: str = "ok"

    @property
    def total(self) -> float | None:
        return sum(self.images_per_second) if self.status == "ok" and self.images_per_second else None


def pack_worker(job_json: str) -> int:
    """A packing worker (``gpu_check.py --pack-worker JSON``): for each of the job's methods, build
    the workload, run the warm-up steps, print ``ready`` and wait for ``go`` on stdin (every
    worker of the round is then warm), train for ``seconds`` (at least ``iterations`` steps) and
    print ``{"images_per_second": ..., "peak_mib": ...}`` as JSON (each line after :data:`PACK_TAG`)."""
    job = json.loads(job_json)
    torch.set_num_threads(job["threads"])
    device = torch.device(job["device"])
    setting = Setting(**job["setting"])
    for method in job["methods"]:
        workload = build_workload(method, setting.arch, setting.image_size, setting.batch_size, width=setting.width,
                                  device=device, accel=Acceleration(channels_last=job["channels_last"]))
        cuda = device.type == "cuda"
        if cuda:
            torch.cuda.reset_peak_memory_stats(device)
        for _ in range(job["warmup"]):
            workload.train_step()
        print(f"{PACK_TAG} ready", flush=True)
        if sys.stdin.readline().strip() != "go":
            return 1
        steps, start = 0, time.perf_counter()
        while steps < job["iterations"] or time.perf_counter() - start < job["seconds"]:
            workload.train_step()
            steps += 1
        seconds = time.perf_counter() - start
        peak = torch.cuda.max_memory_allocated(device) / 2**20 if cuda else None
        print(PACK_TAG, json.dumps({"images_per_second": steps * workload.batch_size / seconds, "peak_mib": peak}),
              flush=True)
        del workload
        if cuda:
            torch.cuda.empty_cache()
    return 0


class _Worker:
    """A packing worker process and a thread that queues its stdout lines."""

    def __init__(self, job: dict) -> None:
        self.stderr = tempfile.TemporaryFile()
        command = [sys.executable, str(Path(__file__).resolve()), "--pack-worker", json.dumps(job)]
        self.process = subprocess.Popen(command, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=self.stderr,
                                        text=True, env={**os.environ, "OMP_NUM_THREADS": str(job["threads"])})
        self.lines: queue.Queue[str | None] = queue.Queue()
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        for line in self.process.stdout:
            if line.startswith(PACK_TAG):
                self.lines.put(line[len(PACK_TAG):].strip())
        self.lines.put(None)

    def expect(self, deadline: float) -> str:
        try:
            line = self.lines.get(timeout=max(0.0, deadline - time.perf_counter()))
        except queue.Empty:
            raise TimeoutError("timed out (time budget)") from None
        if line is None:
            self.process.wait()
            self.stderr.seek(0)
            tail = self.stderr.read().decode(errors="replace").strip().splitlines()[-1:] or ["no output"]
            raise RuntimeError(f"worker exited {self.process.returncode}: {tail[0]}")
        return line

    def send(self, line: str) -> None:
        self.process.stdin.write(line + "\n")
        self.process.stdin.flush()

    def close(self) -> None:
        if self.process.poll() is None:
            self.process.kill()
        self.process.wait()
        self.stderr.close()


def run_packing(setting: Setting, methods: list[str], counts: list[int], device: torch.device, warmup: int,
                iterations: int, seconds: float, deadline: float, channels_last: bool = False,
                threads: int | None = None) -> list[PackResult]:
    """For each N of ``counts``: N worker processes started together on ``device``, each training
    every method of ``methods`` in turn (fp32), their timed windows started together."""
    results: list[PackResult] = []
    threads = threads or torch.get_num_threads()
    round_seconds = 0.0  # how long the last round took: a round likely to overrun the budget is skipped
    for n in counts:
        rows = [PackResult(method, n) for method in methods]
        results += rows
        started = time.perf_counter()
        if started + round_seconds * (1 + n / 4) > deadline:
            for row in rows:
                row.status = "skipped (time budget)"
            continue
        job = {"setting": dataclasses.asdict(setting), "methods": methods, "device": str(device),
               "threads": max(1, threads // n), "channels_last": channels_last, "warmup": warmup,
               "iterations": iterations, "seconds": seconds}
        workers = [_Worker(job) for _ in range(n)]
        try:
            for i, row in enumerate(rows):
                try:
                    for worker in workers:
                        if worker.expect(deadline) != "ready":
                            raise RuntimeError("unexpected worker output")
                    for worker in workers:
                        worker.send("go")
                    reports = [json.loads(worker.expect(deadline + 10 + seconds)) for worker in workers]
                except (TimeoutError, RuntimeError, ValueError) as err:
                    message = str(err) if isinstance(err, TimeoutError) else f"error: {err}"
                    if "OutOfMemoryError" in message:
                        message = "out of memory"
                    for later in rows[i:]:
                        later.status = message if later is row else "skipped (a worker failed)"
                    break
                row.images_per_second = [r["images_per_second"] for r in reports]
                row.peak_mib = [r["peak_mib"] for r in reports if r["peak_mib"] is not None]
        finally:
            for worker in workers:
                worker.close()
        round_seconds = time.perf_counter() - started
    return results


def packing_markdown(results: list[PackResult], setting: Setting, device_name: str, warmup: int, iterations: int,
                     seconds: float, gpu: bool) -> str:
    """The section "Runs per GPU": total and per-process images/s for each N, speed-up over one run."""
    lines = ["", "## Runs per GPU", "",
             f"`runs_per_gpu: N` (SLURM profile) trains N runs in one array task, each in its own process on the "
             f"task's GPU. Here N processes start together on {device_name}, each training "
             f"{setting.key} x{setting.width:g}, batch {setting.batch_size}, fp32: {warmup} warm-up step(s), then, "
             f"once every process is warm, at least {iterations} timed step(s)"
             + (f" and {seconds:g} s" if seconds else "")
             + ". Total is the sum over the processes (the device's images/s); speed-up is total over N = 1's. "
             "Packing pays when the total rises with N: one run left the device under-used.",
             "", "| method | N | total img/s | per process img/s (min–max) | speed-up over N = 1 "
             "| peak MiB per process (max) | status |", "|---|---:|---:|---:|---:|---:|---|"]
    single = {r.method: r.total for r in results if r.processes == 1}
    verdicts = []
    for method in dict.fromkeys(r.method for r in results):
        rows = [r for r in results if r.method == method]
        for r in rows:
            rates = r.images_per_second if r.status == "ok" else []
            per = (f"{_number(sum(rates) / len(rates))} ({_number(min(rates))}–{_number(max(rates))})"
                   if rates else "–")
            speedup = r.total / single[method] if r.total and single.get(method) else None
            peak = _number(max(r.peak_mib)) if r.peak_mib else "–"
            lines.append(f"| {method} | {r.processes} | {_number(r.total)} | {per} | {_number(speedup, 2)} "
                         f"| {peak} | {r.status} |")
        measured = [(r.total / single[method], r.processes) for r in rows
                    if r.total and single.get(method) and r.processes > 1]
        if measured:
            best, n = max(measured)
            if best >= PACK_SPEEDUP_PAYS:
                verdicts.append(f"{method}: packing pays, {n} runs per {'GPU' if gpu else 'device'} train "
                                f"{best:.2f}x the images/s of one (one run left it under-used).")
            else:
                verdicts.append(f"{method}: packing does not pay (at most {best:.2f}x the images/s of one run: "
                                f"one run already fills it); keep `runs_per_gpu: 1`.")
    if not gpu:
        verdicts.append("Not a GPU: these numbers only check the code path.")
    return "\n".join(lines + [""] + verdicts) + "\n"


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
    p.add_argument("--runs-per-gpu", help="comma-separated process counts N for the section \"Runs per GPU\" "
                   "(default 1,2,4; smoke 1,2; an empty string skips it)")
    p.add_argument("--pack-methods", default=",".join(PACK_METHODS),
                   help="methods of the section \"Runs per GPU\" (default: %(default)s)")
    p.add_argument("--pack-seconds", type=float,
                   help="timed training window of each packed process, in seconds (default 3; smoke 0)")
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
    counts_arg = args.runs_per_gpu if args.runs_per_gpu is not None else ("1,2" if args.smoke else "1,2,4")
    counts = [int(n) for n in counts_arg.split(",") if n.strip()]
    pack_methods = [m for m in args.pack_methods.split(",") if m]
    if any(n < 1 for n in counts) or any(m not in known for m in pack_methods):
        print(f"gpu_check: --runs-per-gpu takes counts >= 1, --pack-methods methods of: {', '.join(known)}",
              file=sys.stderr)
        return 2
    pack_seconds = args.pack_seconds if args.pack_seconds is not None else (0.0 if args.smoke else 3.0)
    # the section "Runs per GPU" keeps up to a minute of the budget (it takes about that on a GPU)
    reserve = min(60.0, args.time_budget / 4) if counts and pack_methods else 0.0

    results = [r for s in settings
               for r in run_setting(s, methods, precisions, device, warmup, iterations, deadline - reserve,
                                    args.channels_last)]
    packing = (run_packing(settings[0], pack_methods, counts, device, warmup, iterations, pack_seconds, deadline,
                           args.channels_last, args.threads) if counts and pack_methods else [])

    device_name = (torch.cuda.get_device_name(device) if device.type == "cuda"
                   else f"CPU ({platform.processor() or platform.machine()}, {os.cpu_count()} cores)")
    source = (f"benchmarks/gpu_check.sh {' '.join(argv if argv is not None else sys.argv[1:])}".strip()
              + f"; {'channels-last' if args.channels_last else 'NCHW'}; torch {torch.__version__}, "
              f"CUDA {torch.version.cuda}; {torch.get_num_threads()} CPU threads; "
              f"{warmup} warm-up + {iterations} timed steps; {datetime.date.today().isoformat()}")
    header = [f"# GPU check{' (smoke)' if args.smoke else ''}: {device_name}", "", f"{source}; "
              f"took {time.perf_counter() - started:.0f} s."]
    text = markdown(results, header)
    if packing:
        text += packing_markdown(packing, settings[0], device_name, warmup, iterations, pack_seconds,
                                 device.type == "cuda")
    print(text)
    out = args.out or (Path(os.environ["OUT"]) if os.environ.get("OUT") else None)
    if out is None and not args.smoke:
        out = REPO / "benchmarks"
    if out is not None:
        out.mkdir(parents=True, exist_ok=True)
        (out / "gpu_results.md").write_text(text)
        throughput_table(results, device_name, source).save(
            out / "gpu_throughput.yaml",
            "Written by benchmarks/gpu_check.sh (spottune/estimates/throughput.py documents the layout).")
        print(f"wrote {out / 'gpu_results.md'} and {out / 'gpu_throughput.yaml'}")
    return 1 if any(r.status.startswith("error") for r in [*results, *packing]) else 0


if __name__ == "__main__":
    if len(sys.argv) == 3 and sys.argv[1] == "--pack-worker":
        sys.exit(pack_worker(sys.argv[2]))
    sys.exit(main())
