"""Sentences that state a comparison, generated from the comparison table, never written by hand.

The README's example section and ``report.html`` say what the seed-level comparison
(:func:`spottune.report.comparison.paired_comparison`) supports, one bullet per compared row:

    **spottune** against finetune (paired t-test over 3 seeds, Holm over 4 datasets): not
    significantly different on digits (-0.89 pp [-2.16, +0.38]), ...; significantly below on
    glyph_fonts (-14.12 pp [-20.41, -7.83], Holm p = 0.031). The seeds in hand detect
    differences of 1.2 to 25.0 pp with 80 % power; 1 pp would take 4 to 310 seeds.

so that prose cannot contradict the tables: ``scripts/sync_readme.py`` writes these bullets into
the README and ``tests/test_example.py`` checks them against the committed records.

Where SpotTune routes is stated the same way (:func:`routing_claims`), one bullet per routing
method: per dataset, the fraction ``f_s = mean_{i,b} decisions_i[b]`` of (test image, block)
decisions that took the fine-tuned copy in seed ``s``'s run (its ``policy.npz``), as the mean over
the seeds with its Student-t interval, clipped to [0, 1] where it passes a bound a fraction cannot:

    **spottune** routing (test images x 16 blocks taking the fine-tuned copy, mean over 3 seeds
    [95 % t-interval]): digits 0.91 [0.85, 0.97], ...

Whether a budget left a method short of its plateau is stated from a longer run of the same
runs (:func:`plateau_claims`): per (method, dataset, seed) found in both, the training accuracy
(mean of the last :data:`PLATEAU_EPOCHS` epochs' ``train_accuracy``, which the augmentation and,
for SpotTune, the sampled routing make noisy epoch to epoch) at the preset's epochs and at the
longer run's, and the test accuracy of both:

    **spottune**, seed 0, 60 -> 120 epochs: training accuracy digits 93.6 -> 96.8 (+3.2), ...;
    test accuracy digits 92.2 -> 93.2 (+1.0), ...

and a verdict (:func:`plateau_verdict`): the methods whose training accuracy, on every dataset,
rises by at most :data:`PLATEAU_TOLERANCE` points in the longer run (the mean rise over the seeds
run at both budgets), and the datasets where the others still rise by more; where several seeds
ran at both budgets, that mean with its Student-t interval (:func:`_mean_rises`).
"""
from __future__ import annotations

import numpy as np
import pandas as pd

from spottune.report.comparison import LOSS, NOT_SIGNIFICANT, UNTESTED, WIN
from spottune.report.source import compute_description
from spottune.storage.records import RunFolder
from spottune.report.statistics import LEVEL, MAX_SEEDS, POWER, Interval, percent, t_interval

PHRASES = {WIN: "significantly above", LOSS: "significantly below",
           NOT_SIGNIFICANT: "not significantly different", UNTESTED: "untested"}
"""How a sentence names each outcome (never "tie" or "equivalent": n.s. is not equality)."""


def _difference(row: pd.Series) -> str:
    text = f"{row['difference']:+.2f} pp"
    if pd.notna(row["difference_low"]):
        text += f" [{row['difference_low']:+.2f}, {row['difference_high']:+.2f}]"
    if row["outcome"] in (WIN, LOSS):
        text += f", Holm p = {row['p_holm']:.3g}"
    return text


def _range(values: pd.Series, unit: str, decimals: int = 1) -> str:
    low, high = values.min(), values.max()
    if round(low, decimals) == round(high, decimals):
        return f"{low:.{decimals}f} {unit}"
    return f"{low:.{decimals}f} to {high:.{decimals}f} {unit}"


def method_claim(rows: pd.DataFrame, prefix: str = "") -> str:
    """One bullet (without the ``- ``) for the comparison rows of one method of one preset;
    dataset names lose ``prefix``."""
    method, baseline = rows["method"].iloc[0], rows["baseline"].iloc[0]
    tested = rows[rows["outcome"] != UNTESTED]
    seeds = sorted(set(tested["seeds"].astype(int)))
    head = f"**{method}** against {baseline}"
    if len(tested):
        head += (f" (paired t-test over {'/'.join(map(str, seeds))} seeds, Holm over "
                 f"{int(tested['family'].max())} datasets)")
    parts = []
    for outcome in (WIN, LOSS, NOT_SIGNIFICANT):
        group = rows[rows["outcome"] == outcome]
        if len(group):
            parts.append(f"{PHRASES[outcome]} on " + ", ".join(
                f"{row['dataset'].removeprefix(prefix)} ({_difference(row)})" for _, row in group.iterrows()))
    untested = rows[rows["outcome"] == UNTESTED]
    if len(untested):
        parts.append(f"{PHRASES[UNTESTED]} on " + ", ".join(
            f"{row['dataset'].removeprefix(prefix)} ({row['reason']})" for _, row in untested.iterrows()))
    text = f"{head}: " + "; ".join(parts) + "."
    power = tested[tested["detectable"].notna()]
    if len(power):
        text += (f" The seeds in hand detect differences of {_range(power['detectable'], 'pp')} with "
                 f"{percent(POWER)} power")
        needed = power["seeds_for_1pt"]
        if needed.notna().any():
            text += f"; 1 pp would take {_range(needed.dropna(), 'seeds', 0)}"
            if needed.isna().any():
                text += f" (more than {MAX_SEEDS} on {needed.isna().sum()} of them)"
        text += "."
    return text


def comparison_claims(comparison: pd.DataFrame, preset: str) -> list[str]:
    """One sentence per method of ``preset`` (see the module docstring), in method order."""
    rows = comparison[comparison["preset"] == preset]
    return [method_claim(group, f"{preset}/") for _, group in rows.groupby("method", sort=True)]


def markdown_list(sentences: list[str]) -> str:
    """Generated sentences as a Markdown list, one bullet each ('' for none)."""
    return "".join(f"- {sentence}\n" for sentence in sentences)


def _fraction_interval(values: list[float]) -> str:
    interval = t_interval(values)
    if pd.isna(interval.low):
        return f"{interval.estimate:.2f}"
    return f"{interval.estimate:.2f} [{max(interval.low, 0.0):.2f}, {min(interval.high, 1.0):.2f}]"


def routing_claims(records: pd.DataFrame, preset: str) -> list[str]:
    """One sentence per routing method of ``preset`` (a done run with a ``policy.npz``), in
    method order: per dataset, the fine-tuned fraction of its test decisions over the seeds
    (see the module docstring)."""
    runs = records[(records["preset"] == preset) & (records["status"] == "done")
                   & records["has_policy"].astype(bool)]
    sentences = []
    for method, group in runs.groupby("method", sort=True):
        parts, blocks, seeds = [], set(), set()
        for dataset, folders in group.groupby("dataset", sort=True)["run_dir"]:
            decisions = [RunFolder(folder).read_policy()["decisions"] for folder in folders]
            blocks |= {d.shape[1] for d in decisions}
            seeds.add(len(decisions))
            parts.append(f"{dataset} {_fraction_interval([float(d.mean()) for d in decisions])}")
        sentences.append(
            f"**{method}** routing (test images x {'/'.join(map(str, sorted(blocks)))} blocks taking the "
            f"fine-tuned copy, mean over {'/'.join(map(str, sorted(seeds)))} seeds [{percent(LEVEL)} "
            f"t-interval]): " + ", ".join(parts) + ".")
    return sentences


PLATEAU_EPOCHS = 5
"""Epochs at the end of a run whose training accuracy is averaged into one number."""


def final_training_accuracy(history: list[dict]) -> float:
    """Mean ``train_accuracy`` of the last :data:`PLATEAU_EPOCHS` epochs of a run's history."""
    return float(np.mean([epoch["train_accuracy"] for epoch in history[-PLATEAU_EPOCHS:]]))


def plateau_claims(records: pd.DataFrame, longer: pd.DataFrame, preset: str) -> list[str]:
    """One sentence per method of ``preset`` that ``longer`` (the same runs trained for more
    epochs) also holds: training and test accuracy at both budgets (see the module docstring);
    then the verdict (:func:`plateau_verdict`). A run the longer grid holds with no more epochs
    than the grid's (the same run, say, once a preset's budget grew to the longer one) is an error,
    not a comparison of a run with itself."""
    def done(frame: pd.DataFrame) -> pd.DataFrame:
        return frame[(frame["preset"] == preset) & (frame["status"] == "done")]

    pairs = done(records).merge(done(longer), on=["method", "dataset", "seed"], suffixes=("", "_longer"))
    not_longer = pairs[pairs["hparams.epochs_longer"] <= pairs["hparams.epochs"]]
    if len(not_longer):
        runs = ", ".join(f"{row['method']} {row['dataset']} seed {int(row['seed'])} ({int(row['hparams.epochs'])} "
                         f"-> {int(row['hparams.epochs_longer'])} epochs)" for _, row in not_longer.iterrows())
        raise ValueError(f"the longer grid holds runs no longer than the grid's: {runs}; train them for more "
                         "epochs (--set epochs=... lr_milestones=[...]) or remove them from the longer grid")
    sentences, rises = [], {}
    for method, group in pairs.groupby("method", sort=True):
        rises[method] = {}
        seeds = sorted(group["seed"].unique())
        epochs = " / ".join(sorted({f"{int(a)} -> {int(b)}" for a, b in
                                    zip(group["hparams.epochs"], group["hparams.epochs_longer"])}))
        train, test = [], []
        for _, row in group.sort_values(["dataset", "seed"]).iterrows():
            label = row["dataset"] if len(seeds) == 1 else f"{row['dataset']} seed {int(row['seed'])}"
            a, b = final_training_accuracy(row["history"]), final_training_accuracy(row["history_longer"])
            train.append(f"{label} {a:.1f} -> {b:.1f} ({b - a:+.1f})")
            rises[method].setdefault(row["dataset"], []).append(b - a)
            a, b = row["test_accuracy"], row["test_accuracy_longer"]
            test.append(f"{label} {a:.1f} -> {b:.1f} ({b - a:+.1f})")
        named = ("seed " if len(seeds) == 1 else "seeds ") + ", ".join(str(int(seed)) for seed in seeds)
        sentences.append(f"**{method}**, {named}, {epochs} epochs: training accuracy (mean of the last "
                         f"{PLATEAU_EPOCHS} epochs) " + ", ".join(train) + "; test accuracy " + ", ".join(test) + ".")
    mean_rises = {method: {dataset: t_interval(values) for dataset, values in datasets.items()}
                  for method, datasets in rises.items()}
    return (sentences + ([plateau_verdict(mean_rises)] if mean_rises else []) + _mean_rises(mean_rises)
            + _compute_differences(pairs))


def _mean_rises(mean_rises: dict[str, dict[str, Interval]]) -> list[str]:
    """A sentence giving, where several seeds ran at both budgets, the mean rise of training
    accuracy with its Student-t interval over those seeds (:func:`t_interval`): how sure the
    verdict's mean is, and whether a rise within the tolerance is still a rise."""
    parts = []
    for method, datasets in mean_rises.items():
        several = {dataset: i for dataset, i in datasets.items() if i.n > 1}
        if several:
            parts.append(f"{method} " + ", ".join(f"{dataset} {i.estimate:+.1f} [{i.low:+.1f}, {i.high:+.1f}] "
                                                  f"({i.n} seeds)" for dataset, i in several.items()))
    if not parts:
        return []
    return [f"The mean rise where several seeds ran at both budgets [{percent(LEVEL)} t-interval over the seeds]: "
            + "; ".join(parts) + "."]


def _compute_differences(pairs: pd.DataFrame) -> list[str]:
    """A sentence naming the datasets whose longer runs ran on other compute (device, CPU type,
    threads) than the grid's: there the same seed follows another trajectory, so a rise compares
    two draws as well as two budgets."""
    longer = pairs.rename(columns=lambda column: column.removesuffix("_longer") if column.startswith("compute.")
                          else column)
    longer = longer.loc[:, ~longer.columns.duplicated(keep="last")]
    differing = [f"{dataset} ran on {compute_description(longer.loc[group.index])}, the grid's on "
                 f"{compute_description(group)}" for dataset, group in pairs.groupby("dataset", sort=True)
                 if compute_description(group) != compute_description(longer.loc[group.index])]
    if not differing:
        return []
    return ["The longer runs on " + "; on ".join(differing) + ": the same seed follows another trajectory on "
            "other compute, so there a rise compares two draws as well as two budgets."]


PLATEAU_TOLERANCE = 2.0
"""Points of training accuracy a method may still gain in the longer run and count as at its
plateau ("within a point or two of where a longer run takes it")."""


def plateau_verdict(mean_rises: dict[str, dict[str, Interval]]) -> str:
    """Which methods are within :data:`PLATEAU_TOLERANCE` points of their longer runs' training
    accuracy on every dataset, and where the others still rise by more; ``mean_rises``: method ->
    dataset -> :func:`t_interval` of the longer minus shorter training accuracy over the seeds run
    at both budgets.

    A method's rise on a dataset is the mean over those seeds, ``mean_s (b_s - a_s)``, not each
    seed's: one seed's final training accuracy is one draw (its spread over seeds, about one
    point for the sampled routings, is the noise of a single rise), so a rule on every run flags
    a method already at its plateau more often the more seeds are checked, while the mean's noise
    shrinks as 1/sqrt(seeds). ``tests/test_report_tables.py`` simulates both: the same method at
    both budgets (null) and a planted rise."""
    near = [method for method, datasets in mean_rises.items()
            if all(i.estimate <= PLATEAU_TOLERANCE for i in datasets.values())]
    short = {method: [f"{dataset} {i.estimate:+.1f}, " + ("1 seed" if i.n == 1 else f"mean of {i.n} seeds")
                      for dataset, i in datasets.items() if i.estimate > PLATEAU_TOLERANCE]
             for method, datasets in mean_rises.items() if method not in near}
    text = (f"Within {PLATEAU_TOLERANCE:g} points of the longer run's training accuracy on every dataset (the mean "
            "rise over the seeds run at both budgets): " + (", ".join(near) or "no method"))
    if short:
        text += "; still rising by more: " + "; ".join(f"{method} ({'; '.join(datasets)})"
                                                      for method, datasets in short.items())
    return text + "."


def runtime_claim(records: pd.DataFrame, preset: str) -> str:
    """One sentence: the done runs' own training and evaluation times, ``timing.train_seconds +
    timing.eval_seconds`` summed in minutes, per dataset and in all, and what they ran on
    (:func:`~spottune.report.source.compute_description`). Data loading, start-up, checkpoints
    and setup are not in it: a launch on W workers takes at least the sum / W of wall time."""
    runs = records[(records["preset"] == preset) & (records["status"] == "done")]
    minutes = (runs["timing.train_seconds"] + runs["timing.eval_seconds"]) / 60
    per_dataset = minutes.groupby(runs["dataset"]).agg(["sum", "size"]).sort_values("sum", ascending=False)
    parts = ", ".join(f"{dataset} {total:.0f} ({int(count)} run{'s' * (count != 1)})"
                      for dataset, (total, count) in per_dataset.iterrows())
    return (f"The {len(runs)} runs' own training and evaluation times sum to {minutes.sum():.0f} minutes "
            f"({parts}; {compute_description(runs)}); data loading, start-up, checkpoints and setup are "
            "not counted.")
