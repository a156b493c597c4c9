"""``python -m spottune.report <output_dir>``: every table and figure, from run records alone."""
from __future__ import annotations

import argparse
import importlib
import logging
from collections.abc import Sequence
from pathlib import Path

from spottune.plugins import load_plugins
from spottune.report.comparison import DEFAULT_BASELINE
from spottune.report.figures import ImageLookup
from spottune.report.writer import write_all


def resolve(spec: str) -> ImageLookup:
    """``package.module:function`` -> that callable."""
    module, _, name = spec.partition(":")
    if not name:
        raise argparse.ArgumentTypeError(f"expected MODULE:CALLABLE, got {spec!r}")
    return getattr(importlib.import_module(module), name)


def parser(prog: str = "python -m spottune.report") -> argparse.ArgumentParser:
    """The command line (see ``--help``), named ``prog`` in its usage."""
    cli = argparse.ArgumentParser(
        prog=prog,
        description="Regenerate the summary, the paper tables (Markdown, LaTeX, CSV) and the "
                    "figures (PNG, PDF) from the run records under OUTPUT_DIR/runs/*/, without "
                    "training anything. Tables go to OUTPUT_DIR/tables/, figures to "
                    "OUTPUT_DIR/figures/, everything on one page to OUTPUT_DIR/report.html (or "
                    "under --into), replacing the earlier report whole (nothing of it survives "
                    "beside the new one). Only done runs count; missing runs print as '–', and a "
                    "torn run (a record that cannot be read) is left out with one warning naming "
                    "the file.")
    cli.add_argument("output_dir", help="a grid's output folder (the one holding runs/)")
    cli.add_argument("--into", metavar="DIR", default=None,
                     help="write tables/ and figures/ under DIR instead of OUTPUT_DIR")
    cli.add_argument("--tables-only", action="store_true",
                     help="skip the figures (an earlier report's figures are removed with it)")
    cli.add_argument("--baseline", default=DEFAULT_BASELINE, metavar="METHOD",
                     help="the method every other is compared with, per dataset (paired "
                          "differences, McNemar tests; default: %(default)s)")
    cli.add_argument("--plugins", default="", metavar="MODULE[,MODULE...]",
                     help="modules to import first: tables of their own (register_table in "
                          "spottune.report.tables; README, 'Add a table')")
    cli.add_argument("--image-lookup", metavar="MODULE:CALLABLE", type=resolve, default=None,
                     help="callable(dataset, indices) -> images (k, H, W[, C]) for the figure "
                          "of the test images with the fewest and most fine-tuned blocks; "
                          "without it that figure is skipped (and an earlier one removed)")
    return cli


def main(argv: Sequence[str] | None = None, prog: str = "python -m spottune.report") -> None:
    """Parse ``argv`` (the command ``prog``), write everything, print the written paths."""
    cli = parser(prog)
    args = cli.parse_args(argv)
    if not (Path(args.output_dir) / "runs").is_dir():
        cli.exit(2, f"error: {args.output_dir} has no runs/ folder (give a grid's output folder)\n")
    try:
        load_plugins([m for m in args.plugins.split(",") if m])
    except ImportError as err:
        cli.exit(2, f"error: {err}\n")
    logging.basicConfig(format="%(message)s")
    logging.getLogger("spottune").setLevel(logging.INFO)
    try:
        written = write_all(args.output_dir, image_lookup=args.image_lookup, report_dir=args.into,
                            figures_too=not args.tables_only, baseline=args.baseline)
    except OSError as err:  # a full disk, a folder without write permission: one line naming it
        cli.exit(1, f"error: {err}\n")
    for path in written:
        print(path)


if __name__ == "__main__":
    main()
