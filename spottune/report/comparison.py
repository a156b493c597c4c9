"""Every method against a reference method, per dataset, paired by seed and by test image.

For each preset, each method ``A`` other than the baseline ``B`` (``finetune`` unless told)
and each dataset that both have done runs on, with ``S`` the seeds both have:

- ``difference``: the mean over ``s`` in ``S`` of ``acc_A(s) - acc_B(s)`` (percentage
  points) with its 95 % Student-t interval (:func:`~spottune.report.statistics.paired_difference`);
- the exact McNemar test (:func:`~spottune.report.statistics.mcnemar_exact`) on the per-image
  outcomes of ``predictions.npz``, pooled over ``S``: image ``i`` of seed ``s`` of ``A`` is
  paired with image ``i`` of seed ``s`` of ``B``. A seed is pooled only when both runs have
  labelled predictions of the same test images (equal ``labels`` and ``test_ids``); a dataset
  with no such seed is ``untested``;
- ``p_holm``: the McNemar p-values of one method, Holm-corrected across its datasets;
- ``outcome``: ``win`` / ``loss`` when ``p_holm < 0.05`` and ``A`` / ``B`` has more of the
  discordant images right, else ``tie`` (the difference is not significant), or ``untested``.

:func:`outcome_counts` gives each method's wins / ties / losses, the form of the paper's
"better on 12 out of 14"; :func:`paired_table` prints one preset's differences and
:func:`mcnemar_table` its tests.
"""
from __future__ import annotations

import functools
import logging
from collections.abc import Callable

import numpy as np
import pandas as pd

from spottune.records import RunFolder
from spottune.report.render import Table
from spottune.report.statistics import ALPHA, holm, mcnemar_exact, paired_difference

log = logging.getLogger(__name__)

DEFAULT_BASELINE = "finetune"
NOT_SIGNIFICANT = "°"
"""Marks a cell whose difference from the baseline is not significant."""
OUTCOMES = ["wins", "ties", "losses"]
COLUMNS = ["preset", "method", "dataset", "baseline", "seeds", "difference", "difference_low",
           "difference_high", "images", "only_method", "only_baseline", "p_value", "p_holm",
           "outcome"]


Predictions = tuple[np.ndarray, np.ndarray, np.ndarray]
"""``(predictions, labels, test_ids)`` of one run (``predictions.npz``)."""


def _predictions(run_dir: str) -> Predictions | None:
    """``(predictions, labels, test_ids)`` of a run, or ``None`` without predictions.npz."""
    arrays = RunFolder(run_dir).read_predictions()
    return None if arrays is None else (arrays["predictions"], arrays["labels"], arrays["test_ids"])


def _paired_outcomes(load: Callable[[str], Predictions | None], method_dir: str, baseline_dir: str
                     ) -> tuple[np.ndarray, np.ndarray] | None:
    """Per-image correctness of two runs on the same labelled test images, else ``None``."""
    method, baseline = load(method_dir), load(baseline_dir)
    if method is None or baseline is None:
        return None
    (predicted_a, labels_a, ids_a), (predicted_b, labels_b, ids_b) = method, baseline
    if not (np.array_equal(labels_a, labels_b) and np.array_equal(ids_a, ids_b)):
        log.warning("not pairing %s with %s: their test images differ", method_dir, baseline_dir)
        return None
    if labels_a.size == 0 or (labels_a < 0).any():
        return None
    return predicted_a == labels_a, predicted_b == labels_b


def _by_seed(runs: pd.DataFrame) -> pd.DataFrame:
    """One done run per seed (the first in record order), indexed by seed."""
    return runs.drop_duplicates("seed").set_index("seed")


def _compare(load: Callable[[str], Predictions | None], method: pd.DataFrame,
             baseline: pd.DataFrame) -> dict:
    """The numbers of one (method, dataset) against the baseline (see the module docstring);
    ``load`` reads a run's predictions."""
    method, baseline = _by_seed(method), _by_seed(baseline)
    difference = paired_difference(method["test_accuracy"].astype(float),
                                   baseline["test_accuracy"].astype(float))
    pairs = [_paired_outcomes(load, method.at[seed, "run_dir"], baseline.at[seed, "run_dir"])
             for seed in method.index.intersection(baseline.index)]
    pairs = [pair for pair in pairs if pair is not None]
    row = {"seeds": difference.n, "difference": difference.estimate,
           "difference_low": difference.low, "difference_high": difference.high,
           "images": 0, "only_method": np.nan, "only_baseline": np.nan, "p_value": np.nan}
    if pairs:
        test = mcnemar_exact(np.concatenate([a for a, _ in pairs]),
                             np.concatenate([b for _, b in pairs]))
        row.update(images=sum(len(a) for a, _ in pairs), **test._asdict())
    return row


def _outcome(row: pd.Series) -> str:
    """``win``, ``loss``, ``tie`` or ``untested`` for one row (see the module docstring)."""
    if pd.isna(row["p_holm"]):
        return "untested"
    if row["p_holm"] >= ALPHA or row["only_method"] == row["only_baseline"]:
        return "tie"
    return "win" if row["only_method"] > row["only_baseline"] else "loss"


def paired_comparison(records: pd.DataFrame, baseline: str = DEFAULT_BASELINE) -> pd.DataFrame:
    """One row per (preset, method, dataset) with done runs of both it and ``baseline``;
    columns :data:`COLUMNS` (see the module docstring). Empty without ``baseline`` runs."""
    if "test_accuracy" not in records:  # no run finished
        records = records.assign(test_accuracy=np.nan)
    done = records[(records["status"] == "done") & records["test_accuracy"].notna()]
    rows, load = [], functools.cache(_predictions)  # each baseline run is read once
    for (preset, dataset), runs in done.groupby(["preset", "dataset"], sort=True):
        reference = runs[runs["method"] == baseline]
        if reference.empty:
            continue
        for method, group in runs[runs["method"] != baseline].groupby("method", sort=True):
            rows.append({"preset": preset, "method": method, "dataset": dataset,
                         "baseline": baseline, **_compare(load, group, reference)})
    frame = pd.DataFrame(rows, columns=[c for c in COLUMNS if c not in ("p_holm", "outcome")])
    frame = frame.sort_values(["preset", "method", "dataset"], ignore_index=True)
    frame["p_holm"] = frame.groupby(["preset", "method"])["p_value"].transform(holm)
    frame["outcome"] = [_outcome(row) for _, row in frame.iterrows()]
    return frame


def outcome_counts(comparison: pd.DataFrame) -> pd.DataFrame:
    """Per (preset, method): how many datasets are ``wins``, ``ties``, ``losses`` at 5 %."""
    counts = pd.crosstab([comparison["preset"], comparison["method"]], comparison["outcome"])
    counts = counts.rename(columns={"win": "wins", "tie": "ties", "loss": "losses"})
    return counts.reindex(columns=OUTCOMES, fill_value=0)


def not_significant(comparison: pd.DataFrame, preset: str) -> set[tuple[str, str]]:
    """``(method, dataset)`` of ``preset`` whose difference from the baseline is a tie."""
    ties = comparison[(comparison["preset"] == preset) & (comparison["outcome"] == "tie")]
    return set(zip(ties["method"], ties["dataset"]))


def significance_note(comparison: pd.DataFrame, preset: str) -> list[str]:
    """Footnotes saying what :data:`NOT_SIGNIFICANT` means in ``preset``'s tables, and which
    cells could not be tested; empty when nothing of ``preset`` was compared."""
    rows = comparison[comparison["preset"] == preset]
    if rows.empty:
        return []
    baseline = rows["baseline"].iloc[0]
    notes = [f"{NOT_SIGNIFICANT} = not significantly different from {baseline} at 5 %: exact "
             "McNemar test on the per-image test predictions pooled over the common seeds, "
             f"Holm-corrected across datasets (tables/paired_{preset}.md)."]
    untested = rows[rows["outcome"] == "untested"]
    if len(untested):
        notes.append("Not tested (no labelled per-image predictions of the same test images): "
                     + "; ".join(f"{method} on {', '.join(group['dataset'])}"
                                 for method, group in untested.groupby("method")) + ".")
    return notes


def _wide(rows: pd.DataFrame, column: str, preset: str) -> pd.DataFrame:
    """``column`` as methods x datasets, dataset names without a ``<preset>/`` prefix."""
    frame = rows.pivot(index="method", columns="dataset", values=column)
    frame.columns = [name.removeprefix(f"{preset}/") for name in frame.columns]
    frame.index.name = None
    return frame


def paired_table(comparison: pd.DataFrame, preset: str) -> Table | None:
    """Methods x datasets of ``preset``: the mean paired difference to the baseline with its
    95 % interval, :data:`NOT_SIGNIFICANT` on ties, then wins / ties / losses; ``None`` when
    nothing was compared."""
    rows = comparison[comparison["preset"] == preset]
    if rows.empty:
        return None
    baseline = rows["baseline"].iloc[0]
    counts = outcome_counts(rows).droplevel("preset")
    mean = pd.concat([_wide(rows, "difference", preset), counts], axis=1).astype(float)
    low, high, seeds, outcome = (_wide(rows, column, preset).reindex_like(mean) for column in
                                 ("difference_low", "difference_high", "seeds", "outcome"))
    markers = pd.DataFrame(np.where(outcome.eq("tie"), NOT_SIGNIFICANT, ""), index=mean.index,
                           columns=mean.columns)
    notes = [f"Mean over the common seeds of (method − {baseline}) test accuracy, percentage "
             "points ± half-width of its 95 % Student-t interval ([low, high] where "
             "asymmetric, none with one seed).",
             *significance_note(comparison, preset),
             "wins / ties / losses: datasets where the Holm-corrected McNemar p < 0.05 and the "
             f"method / {baseline} gets more of the discordant test images right, or neither "
             f"(p-values: tables/mcnemar_{preset}.md)."]
    return Table(name=f"paired_{preset}", title=f"Paired comparison with {baseline}, preset {preset}",
                 mean=mean, low=low, high=high, seeds=seeds, decimals=dict.fromkeys(OUTCOMES, 0),
                 markers=markers, footnotes=notes)


def mcnemar_table(comparison: pd.DataFrame, preset: str) -> Table | None:
    """Methods x datasets of ``preset``: the Holm-corrected McNemar p-value, followed by the
    discordant images ``(method only : baseline only)`` (``–`` where untested); ``None``
    when nothing was tested."""
    rows = comparison[comparison["preset"] == preset]
    if rows["outcome"].eq("untested").all():
        return None
    baseline = rows["baseline"].iloc[0]
    cells = rows.assign(discordant=["" if r.outcome == "untested" else
                                    f" ({r.only_method:.0f}:{r.only_baseline:.0f})"
                                    for r in rows.itertuples()])
    p_values = _wide(cells, "p_holm", preset).astype(float)
    discordant = _wide(cells, "discordant", preset)
    images = ", ".join(f"{name.removeprefix(preset + '/')} {count}" for name, count in
                       rows.groupby("dataset")["images"].max().items())
    return Table(name=f"mcnemar_{preset}", title=f"Exact McNemar tests against {baseline}, "
                 f"preset {preset}", mean=p_values, decimals=dict.fromkeys(p_values.columns, 3),
                 markers=discordant.fillna(""), footnotes=[
                     "Holm-corrected p-value (over each method's datasets) of the exact McNemar "
                     "test on the per-image test outcomes pooled over the common seeds; "
                     f"(a:b) = images only the method / only {baseline} gets right.",
                     f"Paired test images (seeds x images): {images}."])
