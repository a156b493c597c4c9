"""The suite's command: run a grid of method x dataset x seed and write the paper's tables.

Installed (``pip install .``) it is the ``spottune`` console script; in a checkout without
installing, ``python benchmarks/run_all.py`` takes the same arguments.

Examples:
  spottune                                         # the embedded default (preset mini), all methods
  spottune --dry-run                               # list the runs, run nothing
  spottune --methods spottune,finetune --datasets digits --seeds 0,1
  spottune --set epochs=1 lr_milestones=[] batch_size=8   # override any preset / method hyperparameter
  spottune --plugins my_pkg.my_method --sweep bn_lr_mult=1,3   # a study: one labelled row per value
  spottune --list                                  # presets, methods and datasets known
  spottune --preset decathlon --data-root /data --cluster slurm --wait
                                                   # the paper's grid on a SLURM cluster
  spottune --preset decathlon --status             # done / running / pending / failed
  spottune --preset vtab1k --search                # the reference's per-task lr x weight-decay search
  spottune --plugins my_pkg.my_method --methods my_method,spottune

Subcommands (optional first word): `spottune run ...` is `spottune ...`; `spottune status ...` is
`spottune ... --status`; `spottune report OUTPUT [--into DIR] [--tables-only] [--baseline M]`
regenerates the tables and figures of an output folder (`python -m spottune.report`).

Runs land in <output>/runs/<run-id>/ (config.json, metrics.json, policy.npz, checkpoint.pt,
done), <output> being results/<preset> under the current directory unless --output says
otherwise. Re-running the same command skips done runs and resumes interrupted ones from their
checkpoint; changing any hyperparameter gives new run ids. Tables go to <output>/tables/,
figures to <output>/figures/; `spottune report <output>` regenerates both.

--search runs the per-task search the preset declares (`search:`; spottune/planning/search.py): first
the selection runs (every point of the space on the selection split, e.g. train800 -> val200),
then, per method and dataset, the grid's runs with the point of best selection accuracy; the
tables show these final runs only (their protocol footnote `selection` names each choice).

Before anything runs, the grid is checked: every hyperparameter (types and ranges), then the
data and pretrained files the runs will read; a bad grid or a wrong argument is one line per
problem on stderr and exit status 2 (--debug shows the traceback). Failed runs are listed at
the end with their error line (exit status 1); runs another launcher is training are skipped.
"""
from __future__ import annotations

import argparse
import os
import sys
import tempfile
from pathlib import Path
from typing import NoReturn

from spottune import report
from spottune.backbones import architectures
from spottune.backbones.base import FAMILIES
from spottune.estimates.cost import GridCost
from spottune.training.cpus import allotted_cpus, free_cpus, pretraining_threads
from spottune.data import list_datasets, test_image_lookup
from spottune.data.submission import write_grid_submissions
from spottune.engine import device_of
from spottune.planning.grid import list_presets, make_grid, parse_overrides, parse_sweeps
from spottune.launch import (Backend, failure_lines, format_status, get_backend, launch, list_backends, pending_runs,
                             states_of)
from spottune.hparams import describe
from spottune.method_contract import Method
from spottune.methods import get_method, methods_by_families
from spottune.plugins import load_plugins
from spottune.planning.preflight import hparam_problems, launch_problems
from spottune.pretraining.weights import PretrainedResolver, describe_checkpoint_file
from spottune.planning.recipes import names_recipes, recipe_lines
from spottune.storage.records import PRETRAINING, RUN, RunFolder, RunSpec, Status
from spottune.report.__main__ import main as report_main
from spottune.planning.search import Search, describe_point
from spottune.estimates.walltime import Calibration, WallTime

# what a wrong command line, preset, plugin, profile, data or output folder raises before anything
# runs: one line on stderr and exit status 2 (--debug: the traceback)
USER_ERRORS = (KeyError, ValueError, OSError, ImportError, RuntimeError)
# the site hook: modules every command imports, before --plugins (a site's own backends, methods)
SITE_PLUGINS = "SPOTTUNE_PLUGINS"


def _csv(value: str) -> list[str]:
    return [v.strip() for v in value.split(",") if v.strip()]


def plugin_modules(argv: list[str]) -> list[str]:
    """The modules to import before the command line is read (their backends are ``--cluster``
    choices): ``$SPOTTUNE_PLUGINS``, then ``--plugins``."""
    pre = argparse.ArgumentParser(add_help=False)
    pre.add_argument("--plugins", type=_csv, default=[])
    return [*_csv(os.environ.get(SITE_PLUGINS, "")), *pre.parse_known_args(argv)[0].plugins]


def _seeds(value: str) -> list[int]:
    try:
        return [int(s) for s in _csv(value)]
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated integers, got {value!r}") from None


def one_line(err: BaseException) -> str:
    """An exception as one line: its message's first line (a KeyError's without quotes)."""
    message = err.args[0] if len(err.args) == 1 and isinstance(err.args[0], str) else str(err)
    return (message.strip().splitlines() or [type(err).__name__])[0]


class CommandLine(argparse.ArgumentParser):
    """argparse whose usage errors are one line (``--help`` gives the usage)."""

    def error(self, message: str) -> NoReturn:
        self.exit(2, f"error: {message} (--help lists the options)\n")


def writable_output(output: Path) -> None:
    """Create ``output`` and check that a file can be written in it (an OSError naming it if not)."""
    try:
        output.mkdir(parents=True, exist_ok=True)
        fd, probe = tempfile.mkstemp(dir=output, prefix=".write-check-")
        os.close(fd)
        os.unlink(probe)
    except OSError as err:
        raise OSError(f"--output {output}: cannot write there ({err.strerror or err})") from err


def build_parser() -> argparse.ArgumentParser:
    """The command line of a grid (``--help``; this module's docstring is its description):
    ``--cluster`` takes the registered backends, each of which adds its own options."""
    p = CommandLine(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--preset", default="mini", help="grid to run: a preset name (%(default)s) or a YAML path")
    p.add_argument("--methods", type=_csv, help="comma-separated methods (default: the preset's)")
    p.add_argument("--datasets", type=_csv, help="comma-separated datasets (default: the preset's)")
    p.add_argument("--seeds", type=_seeds, help="comma-separated seeds, e.g. 0,1,2")
    p.add_argument("--output", type=Path, help="output folder (default: results/<preset>)")
    p.add_argument("--set", dest="overrides", nargs="+", default=[], metavar="KEY=VALUE",
                   help="override hyperparameters, e.g. --set epochs=2 batch_size=8 backbone.width=0.5 "
                        "(an int for a float default is the same value: bn_lr_mult=1 is bn_lr_mult=1.0)")
    p.add_argument("--sweep", dest="sweeps", nargs="+", default=[], metavar="KEY=V1,V2",
                   help="a hyperparameter study: the grid's runs for each value (several keys: each "
                        "combination), for the methods that have the key; the tables give each value its "
                        "own labelled row, compared with the baseline like any method, e.g. --sweep "
                        "bn_lr_mult=1,3 or --sweep lr_milestones=[2],[3]")
    p.add_argument("--data-root", type=Path, help="where datasets live (default: $SPOTTUNE_DATA)")
    p.add_argument("--pretrained", type=Path, help="backbone checkpoint replacing the preset's: a state_dict "
                   "or the released ResNet-26 pickle (default: the preset's backbone.pretrained)")
    p.add_argument("--download", action="store_true", help="allow downloading datasets that support it")
    p.add_argument("--plugins", type=_csv, default=[], help="modules to import that register your own methods or "
                   f"backends (after those of ${SITE_PLUGINS}, the site's)")
    p.add_argument("--device", default="auto", help="cpu, cuda, cuda:1, or auto (default)")
    p.add_argument("--channels-last", action="store_true",
                   help="channels-last memory format (speed only: same run ids; recorded in config.json)")
    p.add_argument("--compile", nargs="?", const=True, default=False, metavar="BACKEND",
                   help="torch.compile the model (optionally with BACKEND; speed only: same run ids)")
    p.add_argument("--cluster", choices=list_backends(), default="local", metavar="BACKEND",
                   help="where runs execute, a registered backend (default: %(default)s): " + "; ".join(
                       f"{name} = {get_backend(name).summary()}" for name in list_backends()))
    p.add_argument("--max-parallel", type=int, help="at most N runs at once (local: the workers; slurm: the array's "
                   "parallelism)")
    p.add_argument("--wait", action="store_true", help="with a backend whose jobs outlive the command (slurm): "
                   "follow them until they finish, then write the tables")
    p.add_argument("--status", action="store_true",
                   help="print the grid's state (its suite pretrainings, then the runs: done/running/queued/"
                        "failed/..., errors of failed ones) and exit (status 1 when a run or pretraining failed)")
    p.add_argument("--search", action="store_true",
                   help="run the preset's per-task search (selection runs, then the chosen point's runs; "
                        "with a backend whose jobs outlive the command, such as slurm, needs --wait)")
    p.add_argument("--dry-run", action="store_true",
                   help="print the grid (per run and per suite pretraining it needs: epochs, images, estimated "
                        "GPU-hours; the pretraining's total apart from the runs'; with a backend that trains here "
                        "(local, inline), the wall time on this machine from a few seconds' calibration, cached) "
                        "and exit")
    p.add_argument("--no-progress", action="store_true", help="no progress bars")
    p.add_argument("--baseline", default=report.DEFAULT_BASELINE, metavar="METHOD",
                   help="the method every other is compared with in the tables (paired differences, "
                        "McNemar tests; default: %(default)s)")
    p.add_argument("--list", action="store_true", help="list presets, methods, datasets and backends, then exit")
    p.add_argument("--debug", action="store_true", help="show the traceback of an error instead of one line")
    for name in list_backends():  # each backend's own options
        get_backend(name).add_arguments(p)
    return p


def main(argv: list[str] | None = None) -> int:
    """The command line ``argv`` (default: ``sys.argv[1:]``); its exit status."""
    argv = sys.argv[1:] if argv is None else list(argv)
    if argv[:1] == ["report"]:
        report_main(argv[1:], prog="spottune report")
        return 0
    if argv[:1] in (["run"], ["status"]):
        argv = argv[1:] + (["--status"] if argv[0] == "status" else [])
    plugins = plugin_modules(argv)
    try:  # first: the backends they register are --cluster choices
        load_plugins(plugins)
    except ImportError as err:
        if "--debug" in argv:
            raise
        print(f"error: {one_line(err)}", file=sys.stderr)
        return 2
    args = build_parser().parse_args(argv)
    args.plugins = plugins
    try:
        prepared = check_and_plan(args)
        if isinstance(prepared, int):  # listed, printed or refused: nothing to run here
            return prepared
        backend, output, runtime, specs, search = prepared
        failed = launch(backend, output, specs, runtime, args.wait)
        if search is not None:  # phase 2: the chosen points on the grid's splits
            specs = final_runs(search, output)
            failed += launch(backend, output, specs, runtime, args.wait)
    except USER_ERRORS as err:
        if args.debug:
            raise
        print(f"error: {one_line(err)}", file=sys.stderr)
        return 2
    if failed is None:  # submitted by a detached backend, not waiting
        return 0
    written = True
    try:
        write_outputs(output, runtime, specs, args.baseline)
    except OSError as err:  # a full disk: one line naming the folder (the earlier report stays)
        if args.debug:
            raise
        print(f"error: {one_line(err)}", file=sys.stderr)
        written = False
    finally:  # the failures last, where the user looks, even if a table could not be written
        report_failures(output, failed)
    return 1 if failed or not written else 0


def method_lines(method: type[Method]) -> list[str]:
    """``--list``'s lines for one method: its name (and why not the other backbone families),
    then each hyperparameter it declares with its default, range and meaning (``--set KEY=VALUE``)."""
    note = f" ({method.family_note})" if method.family_note else ""
    own = [f"    {describe(key, declared)}" for key, declared in method.hparams.items()]
    return [f"  {method.name}{note}" + ("" if own else ": no hyperparameters of its own")] + own


def final_runs(search: Search, output: Path) -> list[RunSpec]:
    """The search's choices (one line each, and one per pair still without a choice) and the
    final runs they give."""
    choices, waiting = search.choose(output)
    for choice in choices.values():
        print(f"chosen for {choice.method} / {choice.dataset}: {describe_point(choice.point)} "
              f"(selection top-1 {choice.accuracy:.2f}, best of {choice.candidates})")
    for line in waiting:
        print(line, file=sys.stderr)
    return search.final_runs(choices)


def report_failures(output: Path, failed: list[RunSpec]) -> None:
    """Each failed run on stderr: method, dataset, seed, folder and the line of its error."""
    if failed:
        print(f"{len(failed)} run(s) failed:", file=sys.stderr)
        for spec in failed:
            print("\n".join(failure_lines(RunFolder.of(output, spec), spec)), file=sys.stderr)
        print("(--status shows the end of each error.txt; fix the cause and re-run the same command)", file=sys.stderr)


def check_and_plan(args: argparse.Namespace) -> int | tuple[Backend, Path, dict, list[RunSpec], Search | None]:
    """Everything before a launch: the grid and its checks (one ``error:`` line per problem),
    the backend (made once: ``--cluster``), ``--list``, ``--dry-run`` and ``--status``; an exit
    status, or ``(backend, output, runtime, specs, search)``: with ``--search`` the specs are its
    selection runs, else the grid's."""
    if args.list:
        print("presets: ", ", ".join(list_presets()))
        print("backbones:", "; ".join(f"{', '.join(archs)} ({family})" for family, archs in architectures().items()))
        for families, names in methods_by_families().items():
            only = "" if families == FAMILIES else " only"
            print(f"methods ({' and '.join(families)}{only}):", ", ".join(names))
            for name in names:
                print("\n".join(method_lines(get_method(name))))
        print("datasets:", ", ".join(list_datasets()))
        print("backends:", ", ".join(list_backends()), "(--cluster)")
        return 0
    overrides = parse_overrides(args.overrides)
    if args.pretrained:
        overrides["backbone.pretrained"] = describe_checkpoint_file(args.pretrained)
    grid = make_grid(args.preset, args.methods, args.datasets, args.seeds, overrides, parse_sweeps(args.sweeps))
    # each row's released checkpoint where the preset documents it, else its fallback (a notice)
    grid.resolve_pretrained = resolver = PretrainedResolver(args.data_root)
    if refused(hparam_problems(grid)):
        return 2
    output = args.output or Path("results") / grid.preset["name"]
    runtime = {"device": args.device, "progress": not args.no_progress, "plugins": args.plugins,
               "channels_last": args.channels_last, "compile": args.compile,
               "data_root": str(args.data_root) if args.data_root else None, "download": args.download}
    search = Search(grid) if args.search else None
    backend = get_backend(args.cluster)(args, grid.preset)  # (slurm: its profile's cache is where to look)
    if search and backend.detached and not args.wait and not (args.dry_run or args.status):
        raise ValueError(f"--search on --cluster {args.cluster} needs --wait (the final runs start once the "
                         f"selection runs are done)")
    specs = search.selection_runs() if search else grid.runs()
    for notice in resolver.notices:
        print(notice, file=sys.stderr)
    swept = "".join(f" x {len(values)} {key} values" for key, values in grid.sweeps.items())
    grid_line = (f"{len(grid.methods)} methods x {len(grid.datasets)} datasets{swept} x {len(grid.seeds)} seeds "
                 f"-> {output}")
    if args.dry_run and search:
        print("phase 1, selection runs (the search's split):")
        dry_run(backend, output, specs, f"{len(specs)} selection runs ({grid.preset['name']}): every point of each "
                                     f"method's space x {grid_line}")
        chosen = search.final_runs(search.choose(output)[0])
        ready = {(s.method, s.dataset) for s in chosen}
        awaiting = [s for s in search.plain if (s.method, s.dataset) not in ready]
        print(f"phase 2, final runs (the grid's split; {len(awaiting)} of them wait for phase 1's choice and "
              f"are listed with the defaults' cost):")
        dry_run(backend, output, chosen + awaiting,
                f"{len(search.plain)} final runs ({grid.preset['name']}): {grid_line}",
                awaiting={s.run_id for s in awaiting})
    elif args.dry_run:
        dry_run(backend, output, specs, f"{len(specs)} runs ({grid.preset['name']}): {grid_line}")
    if args.dry_run:
        if search or names_recipes(grid):
            print("recipes (what each method trains with) and search spaces:")
            print("\n".join(f"  {line}" for line in recipe_lines(grid)))
        return 0
    if args.status:
        if search:  # the selection runs, then the final runs chosen so far
            specs = specs + search.final_runs(search.choose(output)[0])
        states = states_of(output, specs)
        print(format_status(output, states))
        return 1 if any(s.status is Status.FAILED for s in states) else 0
    # with --search, the grid's runs stand in for the final runs (same data, pretrained files)
    checked = pending_runs(output, specs) + (search.plain if search else [])
    if refused(launch_problems(checked, args.data_root, args.download)):
        return 2
    writable_output(output)
    return backend, output, runtime, specs, search


def dry_run(backend: Backend, output: Path, specs: list[RunSpec], count: str,
            awaiting: frozenset[str] | set[str] = frozenset()) -> None:
    """Print each pretraining and run of ``specs`` (status, cost), the ``count`` line, the
    GPU-hours, what each job of ``backend`` asks for and, for a backend that trains here, the
    wall time on this machine (:func:`wall_time_lines`); the runs in ``awaiting`` (run ids)
    print ``awaiting`` for id and status."""
    states = states_of(output, specs)
    pretrainings = [s for s in states if s.spec.kind == PRETRAINING]
    states = [s for s in states if s.spec.kind == RUN]
    cost = GridCost(specs, [p.spec for p in pretrainings])
    for p in pretrainings:
        what = f"{p.spec.label} ({p.spec.run_id})"
        print(f"pretraining   {p.status:8s}  {what:66s} {cost.describe_run(p.spec)}")
    for state in states:
        spec = state.spec
        ident, status = ("(choice)    ", "awaiting") if spec.run_id in awaiting else (spec.run_id, state.status)
        print(f"{ident}  {status:8s}  {spec.row:28s} {spec.dataset:22s} seed {spec.seed}  "
              f"{cost.describe_run(spec)}")
    print(count)
    print(cost.summary({state.spec.run_id: state.status for state in states if state.spec.run_id not in awaiting},
                       frozenset(p.spec.run_id for p in pretrainings if p.status is Status.DONE)))
    asks = backend.resources()
    if asks:
        print(f"each {backend.title} job asks for " + ", ".join(f"{key} {value}" for key, value in asks.items()))
    todo = [s.spec for s in states if s.status is not Status.DONE and not s.status.in_flight]
    to_pretrain = [p.spec for p in pretrainings if p.status is not Status.DONE and not p.status.in_flight]
    print("\n".join(wall_time_lines(backend, todo, to_pretrain)))


def wall_time_lines(backend: Backend, todo: list[RunSpec], to_pretrain: list[RunSpec]) -> list[str]:
    """The wall time of the runs ``todo`` and the pretrainings ``to_pretrain`` with the workers
    and threads ``backend`` would start now on this machine (:mod:`spottune.estimates.walltime`); none for
    a backend whose runs train elsewhere."""
    if backend.detached:
        return []
    allotted, free = allotted_cpus(), free_cpus()
    plan = backend.plan_here(len(todo), free)
    if plan is None:
        return []
    estimate = WallTime(Calibration(device_of({"device": backend.args.device}), keep=free >= allotted))
    return estimate.summary(todo, to_pretrain, f"--cluster {backend.name}", *plan, pretraining_threads(),
                            busy_cpus=allotted - free)


def refused(problems: list[str]) -> bool:
    """Print each problem of the grid as an ``error:`` line; whether there was any."""
    for problem in problems:
        print(f"error: {problem}", file=sys.stderr)
    return bool(problems)


def write_outputs(output: Path, runtime: dict, specs: list[RunSpec], baseline: str) -> None:
    """Tables, figures, report.html (every method compared with ``baseline``) and (for Decathlon
    runs) results.json submissions from the run records."""
    options = {s.dataset: s.hparams.get("data", {}) for s in specs}
    report.write_all(output, image_lookup=test_image_lookup(runtime["data_root"], options),
                     baseline=baseline)
    print((output / "tables" / "summary.md").read_text())
    print(f"tables: {output / 'tables'}  figures: {output / 'figures'}  report: {output / 'report.html'}")
    for path in write_grid_submissions(output):
        print(f"Decathlon submission: {path}")


if __name__ == "__main__":
    sys.exit(main())
