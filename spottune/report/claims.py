"""Sentences that state a comparison, generated from the comparison table, never written by hand.

The README's example section and ``report.html`` say what the seed-level comparison
(:func:`spottune.report.comparison.paired_comparison`) supports, one bullet per compared row:

    **spottune** against finetune (paired t-test over 3 seeds, Holm over 4 datasets): not
    significantly different on digits (-0.89 pp [-2.16, +0.38]), ...; significantly below on
    glyph_fonts (-14.12 pp [-20.41, -7.83], Holm p = 0.031). The seeds in hand detect
    differences of 1.2 to 25.0 pp with 80 % power; 1 pp would take 4 to 310 seeds.

so that prose cannot contradict the tables: ``scripts/sync_readme.py`` writes these bullets into
the README and ``tests/test_example.py`` checks them against the committed records.
"""
from __future__ import annotations

import pandas as pd

from spottune.report.comparison import LOSS, NOT_SIGNIFICANT, UNTESTED, WIN
from spottune.report.statistics import MAX_SEEDS, POWER, percent

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


def claims_markdown(comparison: pd.DataFrame, preset: str) -> str:
    """:func:`comparison_claims` as a Markdown list ('' when nothing was compared)."""
    return "".join(f"- {claim}\n" for claim in comparison_claims(comparison, preset))
