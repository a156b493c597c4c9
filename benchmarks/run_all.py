#!/usr/bin/env python
"""Run a grid of method x dataset x seed and write the paper's tables.

Examples:
  python benchmarks/run_all.py                              # the embedded default (preset mini), all methods
  python benchmarks/run_all.py --dry-run                    # list the runs, run nothing
  python benchmarks/run_all.py --methods spottune,finetune --datasets digits --seeds 0,1
  python benchmarks/run_all.py --set epochs=1 batch_size=8  # override any preset / method hyperparameter
  python benchmarks/run_all.py --list                       # presets, methods and datasets known

Runs land in <output>/runs/<run-id>/ (config.json, metrics.json, policy.npz, checkpoint.pt,
done). Re-running the same command skips done runs and resumes interrupted ones from their
checkpoint; changing any hyperparameter gives new run ids. Tables go to <output>/tables/.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
if str(REPO) not in sys.path:  # runnable from a checkout without installing
    sys.path.insert(0, str(REPO))

from spottune import report  # noqa: E402
from spottune.data import list_datasets  # noqa: E402
from spottune.grid import list_presets, make_grid, parse_overrides, run_status  # noqa: E402
from spottune.launch import launch_inline  # noqa: E402
from spottune.methods import list_methods, load_plugins  # noqa: E402


def _csv(value: str) -> list[str]:
    return [v.strip() for v in value.split(",") if v.strip()]


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--preset", default="mini", help="grid to run: a preset name (%(default)s) or a YAML path")
    p.add_argument("--methods", type=_csv, help="comma-separated methods (default: the preset's)")
    p.add_argument("--datasets", type=_csv, help="comma-separated datasets (default: the preset's)")
    p.add_argument("--seeds", type=lambda v: [int(s) for s in _csv(v)], help="comma-separated seeds, e.g. 0,1,2")
    p.add_argument("--output", type=Path, help="output folder (default: results/<preset>)")
    p.add_argument("--set", dest="overrides", nargs="+", default=[], metavar="KEY=VALUE",
                   help="override hyperparameters, e.g. --set epochs=1 batch_size=8 backbone.width=0.5")
    p.add_argument("--data-root", type=Path, help="where datasets live (default: $SPOTTUNE_DATA)")
    p.add_argument("--download", action="store_true", help="allow downloading datasets that support it")
    p.add_argument("--plugins", type=_csv, default=[], help="modules to import that register your own methods")
    p.add_argument("--device", default="auto", help="cpu, cuda, cuda:1, or auto (default)")
    p.add_argument("--cluster", choices=["local"], default="local", help="where runs execute (default: here)")
    p.add_argument("--dry-run", action="store_true", help="print the grid, one line per run, and exit")
    p.add_argument("--no-progress", action="store_true", help="no progress bars")
    p.add_argument("--list", action="store_true", help="list presets, methods and datasets, then exit")
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    load_plugins(args.plugins)
    if args.list:
        print("presets: ", ", ".join(list_presets()))
        print("methods: ", ", ".join(list_methods()))
        print("datasets:", ", ".join(list_datasets()))
        return 0
    overrides = parse_overrides(args.overrides)
    if args.download:
        overrides["data.download"] = True
    try:
        grid = make_grid(args.preset, args.methods, args.datasets, args.seeds, overrides)
    except (KeyError, ValueError, FileNotFoundError) as err:
        print(f"error: {err.args[0] if err.args else err}", file=sys.stderr)
        return 2
    output = args.output or REPO / "results" / grid.preset["name"]
    runtime = {"device": args.device, "progress": not args.no_progress, "plugins": args.plugins,
               "data_root": str(args.data_root) if args.data_root else None}
    configs = grid.runs(runtime)
    if args.dry_run:
        for c in configs:
            print(f"{c['run_id']}  {run_status(output, c):8s}  {c['method']:28s} {c['dataset']:22s} seed {c['seed']}")
        print(f"{len(configs)} runs ({grid.preset['name']}): {len(grid.methods)} methods x "
              f"{len(grid.datasets)} datasets x {len(grid.seeds)} seeds -> {output}")
        return 0
    outcomes = launch_inline(output, configs)
    report.write_summary(output)
    print((output / "tables" / "summary.md").read_text())
    failed = [r for r, o in outcomes.items() if o == "failed"]
    print(f"tables: {output / 'tables'}")
    if failed:
        print(f"{len(failed)} run(s) failed: see {output}/runs/<run-id>/error.txt", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
