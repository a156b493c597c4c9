"""Every method against a reference method, per dataset, with the seed as the unit.

For each preset, each row ``A`` of the tables other than the baseline ``B`` (``finetune``
unless told; rows are labelled configurations, :mod:`spottune.report.rows`) and each dataset
``A`` has done runs on, with ``S`` the seeds both have done (:func:`paired_comparison`):

- ``difference``: the mean over ``s`` in ``S`` of ``acc_A(s) - acc_B(s)`` (percentage points)
  with its 95 % Student-t interval, and ``difference_sd`` the standard deviation of those
  per-seed differences;
- ``p_value``: the two-sided paired t-test over ``S``
  (:func:`~spottune.report.statistics.paired_t_test`: the seed, one trained network, is the
  unit; the test images are not);
- ``p_holm``: those p-values Holm-corrected over the family of one method's tested datasets
  in the preset (``family`` tests);
- ``outcome``: ``win`` / ``loss`` when ``p_holm < 0.05`` and the mean difference is positive /
  negative, ``n.s.`` (not significant) otherwise, or ``untested`` with the ``reason``: no done
  baseline run on the dataset, fewer than :data:`~spottune.report.statistics.MIN_SEEDS` common
  seeds, or per-seed differences all equal and not zero (``t`` undefined). A win or a loss
  implies ``p < 0.05``, so its 95 % interval never contains 0;
- ``detectable``: the smallest true difference the seeds in hand detect with 80 % power at the
  level a lone effect in the family must reach (``0.05 / family``, Holm's first step), from
  ``difference_sd`` (:func:`~spottune.report.statistics.detectable_difference`), and
  ``seeds_for_1pt``: the seeds that would detect 1 percentage point the same way.

:func:`per_seed_mcnemar` describes, seed by seed, whether the method's and the baseline's
trained networks differ on the same test images (exact McNemar test on ``predictions.npz``):
a statement about those networks, not about the methods, printed in its own table
(:func:`mcnemar_table`); every seed that cannot be paired says why.

:func:`outcome_counts` gives each method's wins / n.s. / losses / untested, the form of the
paper's "better on 12 out of 14"; :func:`paired_table` prints one preset's differences,
:func:`power_table` what its seeds can detect.
"""
from __future__ import annotations

import functools
import logging
from collections.abc import Callable

import numpy as np
import pandas as pd

from spottune.storage.records import RecordError, RunFolder
from spottune.report.render import Table
from spottune.report.statistics import (ALPHA, LEVEL, MAX_SEEDS, MIN_SEEDS, POWER, detectable_difference, holm,
                                        mcnemar_exact, paired_t_test, percent, seeds_needed)

log = logging.getLogger(__name__)

DEFAULT_BASELINE = "finetune"
WIN, LOSS, NOT_SIGNIFICANT, UNTESTED = "win", "loss", "n.s.", "untested"
MARKERS = {WIN: "▲", LOSS: "▼", NOT_SIGNIFICANT: "°", UNTESTED: "‡"}
"""What a suite cell of a compared row is followed by, per outcome (the baseline's cells: nothing)."""
COUNTS = {WIN: "wins", NOT_SIGNIFICANT: "n.s.", LOSS: "losses", UNTESTED: "untested"}
"""Outcome -> the column counting it (:func:`outcome_counts`)."""
DETECTABLE_FOR = 1.0
"""The difference (percentage points) :func:`power_table` gives the seeds needed for."""
COLUMNS = ["preset", "method", "dataset", "baseline", "seeds", "difference", "difference_low",
           "difference_high", "difference_sd", "p_value", "family", "p_holm", "outcome", "reason",
           "detectable", "seeds_for_1pt"]
MCNEMAR_COLUMNS = ["preset", "method", "dataset", "baseline", "seed", "images", "only_method",
                   "only_baseline", "p_value", "reason"]


def _compare(method: pd.Series, baseline: pd.Series | None, baseline_name: str) -> dict:
    """The seed-level numbers of one (method, dataset) against the baseline's runs there (test
    accuracy per seed, NaN where a seed has no done run; ``None``: the baseline has none)."""
    row = {"seeds": 0, "reason": ""}
    if baseline is None:
        return {**row, "reason": f"no done {baseline_name} run on this dataset"}
    test = paired_t_test((method - baseline).dropna())
    row.update(seeds=test.n, difference=test.estimate, difference_low=test.low,
               difference_high=test.high, difference_sd=test.sd, p_value=test.p_value)
    if test.n < MIN_SEEDS:
        row.update(p_value=np.nan, reason=f"{test.n} common seed{'s' * (test.n != 1)} with "
                                          f"{baseline_name}, fewer than {MIN_SEEDS}")
    elif np.isnan(test.p_value):
        row["reason"] = f"the {test.n} per-seed differences are all {test.estimate:+.2f} (t undefined)"
    return row


def _outcome(row: pd.Series) -> str:
    """``win``, ``loss``, ``n.s.`` or ``untested`` for one row (see the module docstring)."""
    if pd.isna(row["p_holm"]):
        return UNTESTED
    if row["p_holm"] >= ALPHA or row["difference"] == 0:
        return NOT_SIGNIFICANT
    return WIN if row["difference"] > 0 else LOSS


def _done(records: pd.DataFrame) -> pd.DataFrame:
    if "test_accuracy" not in records:  # no run finished
        records = records.assign(test_accuracy=np.nan)
    return records[(records["status"] == "done") & records["test_accuracy"].notna()]


def paired_comparison(records: pd.DataFrame, baseline: str = DEFAULT_BASELINE) -> pd.DataFrame:
    """One row per (preset, method, dataset) with done runs of the method; columns
    :data:`COLUMNS` (see the module docstring). Empty when a preset has no method but the
    baseline."""
    done, rows = _done(records), []
    # (preset, dataset, method) x seeds; one done run per seed (spottune.report.rows.one_run_per_seed)
    wide = done.astype({"test_accuracy": float}).pivot_table(
        index=["preset", "dataset", "method"], columns="seed", values="test_accuracy", aggfunc="first")
    for (preset, dataset), accuracy in wide.groupby(level=["preset", "dataset"], sort=True):
        accuracy = accuracy.droplevel(["preset", "dataset"])
        reference = accuracy.loc[baseline] if baseline in accuracy.index else None
        for method in accuracy.index.drop(baseline, errors="ignore"):
            rows.append({"preset": preset, "method": method, "dataset": dataset, "baseline": baseline,
                         **_compare(accuracy.loc[method], reference, baseline)})
    frame = pd.DataFrame(rows, columns=COLUMNS).sort_values(["preset", "method", "dataset"],
                                                            ignore_index=True)
    frame["reason"] = frame["reason"].fillna("")
    family = frame.groupby(["preset", "method"])["p_value"]
    frame["family"] = family.transform(lambda p: p.notna().sum()).astype(int)
    frame["p_holm"] = family.transform(holm)
    frame["outcome"] = [_outcome(row) for _, row in frame.iterrows()]
    level = ALPHA / frame["family"].clip(lower=1)
    frame["detectable"] = [detectable_difference(sd, n, a) if n >= 2 else np.nan
                           for sd, n, a in zip(frame["difference_sd"], frame["seeds"], level)]
    frame["seeds_for_1pt"] = [seeds_needed(sd, DETECTABLE_FOR, a) for sd, a in zip(frame["difference_sd"], level)]
    return frame


def outcome_counts(comparison: pd.DataFrame) -> pd.DataFrame:
    """Per (preset, method): how many datasets are ``wins``, ``n.s.``, ``losses``, ``untested``."""
    counts = pd.crosstab([comparison["preset"], comparison["method"]], comparison["outcome"])
    return counts.rename(columns=COUNTS).reindex(columns=list(COUNTS.values()), fill_value=0)


def cell_markers(comparison: pd.DataFrame, preset: str) -> dict[tuple[str, str], str]:
    """``(method, dataset) -> marker`` (:data:`MARKERS`) of every compared cell of ``preset``."""
    rows = comparison[comparison["preset"] == preset]
    return {(r.method, r.dataset): MARKERS[r.outcome] for r in rows.itertuples()}


def _untested_note(rows: pd.DataFrame, prefix: str = "") -> str | None:
    untested = rows[rows["outcome"] == UNTESTED]
    if untested.empty:
        return None
    reasons = [f"{method} on {', '.join(d.removeprefix(prefix) for d in group['dataset'])} ({reason})"
               for (method, reason), group in untested.groupby(["method", "reason"], sort=True)]
    return f"{MARKERS[UNTESTED]} = not tested: " + "; ".join(reasons) + "."


def significance_note(comparison: pd.DataFrame, preset: str, prefix: str = "") -> list[str]:
    """Footnotes saying what the :data:`MARKERS` mean in ``preset``'s tables and why each
    untested cell is untested (dataset names without ``prefix``); empty when nothing of
    ``preset`` was compared."""
    rows = comparison[comparison["preset"] == preset]
    if rows.empty:
        return []
    baseline = rows["baseline"].iloc[0]
    families = sorted(set(rows.loc[rows["family"] > 0, "family"]))
    family = (f"{families[0]} tested datasets" if len(families) == 1 else
              f"tested datasets ({' or '.join(map(str, families))} per method)" if families else "tested datasets")
    notes = [f"{MARKERS[WIN]} / {MARKERS[LOSS]} = significantly above / below {baseline}, "
             f"{MARKERS[NOT_SIGNIFICANT]} = not significantly different (n.s.), at {percent(ALPHA)}: "
             f"two-sided paired t-test over the seeds both have (the seed, one trained network, is "
             f"the unit; at least {MIN_SEEDS} seeds), Holm-corrected over each method's {family} "
             f"(tables/paired_{preset}.md); {baseline}'s own cells are unmarked."]
    untested = _untested_note(rows, prefix)
    return notes + ([untested] if untested else [])


def _wide(rows: pd.DataFrame, column: str, preset: str) -> pd.DataFrame:
    """``column`` as methods x datasets, dataset names without a ``<preset>/`` prefix."""
    frame = rows.pivot(index="method", columns="dataset", values=column)
    frame.columns = [name.removeprefix(f"{preset}/") for name in frame.columns]
    frame.index.name, frame.columns.name = None, None
    return frame


def paired_table(comparison: pd.DataFrame, preset: str, source: str | None = None) -> Table | None:
    """Methods x datasets of ``preset``: the mean paired difference to the baseline with its
    95 % interval and its :data:`MARKERS`, then wins / n.s. / losses / untested; ``None`` when
    nothing was compared. ``source``: the footnote naming the source network the intervals
    are conditional on (:func:`spottune.report.source.conditioning_note`)."""
    rows = comparison[comparison["preset"] == preset]
    if rows.empty:
        return None
    baseline = rows["baseline"].iloc[0]
    counts = outcome_counts(rows).droplevel("preset")
    mean = pd.concat([_wide(rows, "difference", preset), counts], axis=1).astype(float)
    low, high, seeds, outcome = (_wide(rows, column, preset).reindex_like(mean) for column in
                                 ("difference_low", "difference_high", "seeds", "outcome"))
    markers = outcome.map(lambda o: MARKERS.get(o, "") if isinstance(o, str) else "")
    notes = [f"Mean over the common seeds of (method − {baseline}) test accuracy, percentage "
             f"points ± half-width of its {percent(LEVEL)} Student-t interval ([low, high] where "
             "asymmetric, none with one seed); (n=k): the common seeds behind the test.",
             *significance_note(comparison, preset, f"{preset}/"),
             f"{', '.join(COUNTS.values())}: datasets per outcome.",
             *([source] if source else [])]
    return Table(name=f"paired_{preset}", title=f"Paired comparison with {baseline}, preset {preset}",
                 mean=mean, low=low, high=high, seeds=seeds.where(mean.notna()),
                 decimals=dict.fromkeys(COUNTS.values(), 0), signed_columns=set(mean.columns) - set(COUNTS.values()),
                 markers=markers, footnotes=notes)


def power_table(comparison: pd.DataFrame, preset: str) -> Table | None:
    """Methods x datasets of ``preset``: the smallest difference the common seeds detect with
    80 % power, followed by ``(N for 1 pt)``, the seeds that would detect 1 point; ``None``
    when no comparison has two seeds."""
    rows = comparison[(comparison["preset"] == preset) & (comparison["seeds"] >= 2)]
    if rows.empty or rows["detectable"].isna().all():
        return None
    baseline = rows["baseline"].iloc[0]
    needed = rows.assign(note=[f" (>{MAX_SEEDS} for 1 pt)" if pd.isna(n) and pd.notna(d) else
                               "" if pd.isna(n) else f" ({n:.0f} for 1 pt)"
                               for n, d in zip(rows["seeds_for_1pt"], rows["detectable"])])
    return Table(name=f"power_{preset}", title=f"What the seeds can detect against {baseline}, preset {preset}",
                 mean=_wide(needed, "detectable", preset).astype(float),
                 seeds=_wide(needed, "seeds", preset).astype(float),
                 markers=_wide(needed, "note", preset).fillna(""), footnotes=[
                     f"Smallest true difference (percentage points) that a paired t-test over the "
                     f"common seeds detects with {percent(POWER)} power at the level a lone effect "
                     f"must reach after Holm's correction ({percent(ALPHA)} / the tested datasets of the "
                     "method), from the standard deviation of the per-seed differences in hand "
                     f"(itself uncertain with few seeds); (N for 1 pt): the seeds that would detect "
                     f"{DETECTABLE_FOR:g} point the same way."])


Predictions = tuple[np.ndarray, np.ndarray, np.ndarray]
"""``(predictions, labels, test_ids)`` of one run (``predictions.npz``)."""


def _predictions(run_dir: str) -> Predictions | str:
    """``(predictions, labels, test_ids)`` of a run, or why there are none."""
    try:
        arrays = RunFolder(run_dir).read_predictions()
    except (RecordError, OSError, ValueError, KeyError) as err:
        return f"unreadable predictions.npz ({str(err).splitlines()[0][:80]})"
    if arrays is None:
        return "no predictions.npz"
    return arrays["predictions"], arrays["labels"], arrays["test_ids"]


def _pair(load: Callable[[str], Predictions | str], method_dir: str, baseline_dir: str) -> dict:
    """The McNemar numbers of two runs on the same labelled test images, or the reason why not."""
    method, baseline = load(method_dir), load(baseline_dir)
    for who, arrays in (("method", method), ("baseline", baseline)):
        if isinstance(arrays, str):
            return {"reason": f"{who}: {arrays}"}
        if len(arrays[0]) != len(arrays[1]):
            return {"reason": f"{who}: {len(arrays[0])} predictions for {len(arrays[1])} labels"}
    (predicted_a, labels_a, ids_a), (predicted_b, labels_b, ids_b) = method, baseline
    if not (np.array_equal(labels_a, labels_b) and np.array_equal(ids_a, ids_b)):
        return {"reason": "different test images (labels or test_ids differ)"}
    if labels_a.size == 0 or (labels_a < 0).any():
        return {"reason": "unlabelled test images"}
    test = mcnemar_exact(predicted_a == labels_a, predicted_b == labels_b)
    return {"images": len(labels_a), **test._asdict(), "reason": ""}


def per_seed_mcnemar(records: pd.DataFrame, baseline: str = DEFAULT_BASELINE) -> pd.DataFrame:
    """One row per (preset, method, dataset, seed) that both the method and the baseline have
    done: the exact McNemar test of those two networks (columns :data:`MCNEMAR_COLUMNS`)."""
    done, rows, load = _done(records), [], functools.cache(_predictions)  # each baseline run read once
    for (preset, dataset), runs in done.groupby(["preset", "dataset"], sort=True):
        reference = runs[runs["method"] == baseline].set_index("seed")["run_dir"]
        for method, group in runs[runs["method"] != baseline].groupby("method", sort=True):
            for seed, run_dir in group.set_index("seed")["run_dir"].items():
                if seed in reference.index:
                    rows.append({"preset": preset, "method": method, "dataset": dataset, "baseline": baseline,
                                 "seed": seed, **_pair(load, run_dir, reference[seed])})
    return pd.DataFrame(rows, columns=MCNEMAR_COLUMNS).sort_values(
        ["preset", "method", "dataset", "seed"], ignore_index=True)


def mcnemar_table(tests: pd.DataFrame, preset: str) -> Table | None:
    """Rows ``method, seed k`` x datasets of ``preset``: the exact McNemar p-value of seed k's
    two networks, followed by the discordant images ``(method only : baseline only)``, or
    :data:`MARKERS` ``untested`` with the reason in a footnote; ``None`` when ``preset`` has no
    common seed."""
    rows = tests[tests["preset"] == preset]
    if rows.empty:
        return None
    baseline = rows["baseline"].iloc[0]
    cells = rows.assign(row=[f"{m}, seed {s:g}" for m, s in zip(rows["method"], rows["seed"])],
                        mark=[f"{MARKERS[UNTESTED]}" if r.reason else f" ({r.only_method:.0f}:{r.only_baseline:.0f})"
                              for r in rows.itertuples()])
    untested = cells[cells["reason"] != ""]
    reasons = "; ".join(f"{row} on {', '.join(d.removeprefix(preset + '/') for d in group['dataset'])} ({reason})"
                        for (row, reason), group in untested.groupby(["row", "reason"], sort=True))
    images = ", ".join(f"{name.removeprefix(preset + '/')} {count:.0f}" for name, count in
                       cells.groupby("dataset")["images"].max().dropna().items())
    wide = cells.pivot(index="row", columns="dataset", values="p_value").astype(float)
    order = list(dict.fromkeys(cells["row"]))
    marks = cells.pivot(index="row", columns="dataset", values="mark")
    for frame in (wide, marks):
        frame.columns = [name.removeprefix(f"{preset}/") for name in frame.columns]
        frame.index.name, frame.columns.name = None, None
    return Table(name=f"mcnemar_{preset}", title=f"Do the trained networks differ from {baseline}'s "
                 f"on the same test images? Exact McNemar test per seed, preset {preset}",
                 mean=wide.reindex(order), index_name="method, seed",
                 decimals=dict.fromkeys(wide.columns, 3), markers=marks.reindex(order).fillna(""),
                 footnotes=[
                     f"Two-sided exact McNemar p-value (not corrected for multiple tests) of seed k's "
                     f"network of the method against seed k's network of {baseline} on the same "
                     f"test images; (a:b) = images only the method's / only {baseline}'s network gets "
                     "right. It describes these trained networks on these images; whether the "
                     f"methods differ is the seed-level test of tables/paired_{preset}.md.",
                     *([f"Test images per seed: {images}."] if images else []),
                     *([f"{MARKERS[UNTESTED]} = not tested: {reasons}."] if reasons else [])])
