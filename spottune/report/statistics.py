"""The statistics behind every table: intervals over seeds, paired tests, multiple testing.

All distributions come from :mod:`scipy.stats`; nothing here knows about run records.

- :func:`t_interval`: for values ``x_1 .. x_n`` (one per seed), the mean
  ``m = sum_i x_i / n`` and its Student-t interval
  ``m ± t_{n-1}((1 + level) / 2) · s / sqrt(n)`` with the sample std
  ``s = sqrt(sum_i (x_i - m)^2 / (n - 1))``; undefined (NaN bounds) for ``n < 2``.
- :func:`paired_difference`: the t-interval of ``d_s = a_s - b_s`` over the seeds ``s``
  both series have.
- :func:`mcnemar_exact`: exact McNemar test on paired per-image outcomes. With ``b`` the
  pairs only the method gets right and ``c`` the pairs only the baseline gets right, under
  H0 (equal error rates) ``b ~ Binomial(b + c, 1/2)``; the two-sided p-value is
  ``scipy.stats.binomtest(b, b + c, 0.5)``, and 1 when ``b + c = 0``.
- :func:`holm`: Holm-Bonferroni adjusted p-values for a family of tests.
- :func:`bootstrap_interval`: percentile bootstrap interval of a statistic of a
  seeds x columns matrix, resampling whole rows (seeds) with replacement.
"""
from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import NamedTuple

import numpy as np
import pandas as pd
from scipy import stats

LEVEL = 0.95
"""Confidence level of every interval."""
ALPHA = 0.05
"""Significance level of every test (after Holm's correction)."""
BOOTSTRAP_RESAMPLES = 9999
BOOTSTRAP_SEED = 0
"""Fixed, so that a regenerated table prints the same interval."""


class Interval(NamedTuple):
    """An estimate with its confidence interval and the number of values behind it."""

    estimate: float
    low: float
    high: float
    n: int


def t_interval(values: Sequence[float], level: float = LEVEL) -> Interval:
    """Mean of ``values`` (NaN ignored) and its Student-t interval; NaN bounds when n < 2."""
    sample = np.asarray(values, dtype=float)
    sample = sample[~np.isnan(sample)]
    n = len(sample)
    if n == 0:
        return Interval(np.nan, np.nan, np.nan, 0)
    mean = float(sample.mean())
    if n == 1:
        return Interval(mean, np.nan, np.nan, 1)
    half = stats.t.ppf((1 + level) / 2, n - 1) * sample.std(ddof=1) / np.sqrt(n)
    return Interval(mean, float(mean - half), float(mean + half), n)


def paired_difference(method: pd.Series, baseline: pd.Series, level: float = LEVEL) -> Interval:
    """t-interval of ``method[s] - baseline[s]`` over the seeds ``s`` (index) both have."""
    differences = (method - baseline).dropna()
    return t_interval(differences.to_numpy(), level)


class McNemar(NamedTuple):
    """Discordant pairs of a paired comparison and the exact two-sided p-value."""

    only_method: int
    only_baseline: int
    p_value: float


def mcnemar_exact(method_correct: np.ndarray, baseline_correct: np.ndarray) -> McNemar:
    """Exact McNemar test of two classifiers on the same images (boolean arrays, paired)."""
    method_correct = np.asarray(method_correct, dtype=bool)
    baseline_correct = np.asarray(baseline_correct, dtype=bool)
    if method_correct.shape != baseline_correct.shape:
        raise ValueError(f"unpaired outcomes: {method_correct.shape} vs {baseline_correct.shape}")
    only_method = int((method_correct & ~baseline_correct).sum())
    only_baseline = int((~method_correct & baseline_correct).sum())
    discordant = only_method + only_baseline
    p_value = stats.binomtest(only_method, discordant, 0.5).pvalue if discordant else 1.0
    return McNemar(only_method, only_baseline, float(p_value))


def holm(p_values: Sequence[float]) -> np.ndarray:
    """Holm-Bonferroni adjusted p-values, in the input order (NaN = not tested, kept NaN).

    With the ``m`` tested p-values sorted, ``p_(1) <= ... <= p_(m)``, the adjusted value of
    the ``k``-th is ``max_{j <= k} min(1, (m - j + 1) · p_(j))``; rejecting where the adjusted
    value is below ``alpha`` controls the family-wise error rate at ``alpha``.
    """
    raw = np.asarray(p_values, dtype=float)
    adjusted = np.full_like(raw, np.nan)
    tested = np.flatnonzero(~np.isnan(raw))
    order = tested[np.argsort(raw[tested], kind="stable")]
    m = len(order)
    scaled = np.minimum(1.0, (m - np.arange(m)) * raw[order])
    adjusted[order] = np.maximum.accumulate(scaled)
    return adjusted


def bootstrap_interval(samples: np.ndarray, statistic: Callable[[np.ndarray], np.ndarray],
                       level: float = LEVEL, resamples: int = BOOTSTRAP_RESAMPLES
                       ) -> tuple[float, float]:
    """Percentile bootstrap interval of ``statistic`` over the rows (seeds) of ``samples``.

    ``statistic`` maps a stack of resampled matrices ``(..., rows, columns)`` to ``(...)``.
    Rows are drawn with replacement (``scipy.stats.bootstrap`` on the row indices, seed
    :data:`BOOTSTRAP_SEED`); fewer than two rows give NaN bounds.
    """
    matrix = np.asarray(samples, dtype=float)
    if len(matrix) < 2:
        return np.nan, np.nan

    def resampled(rows: np.ndarray, axis: int = -1) -> np.ndarray:
        return statistic(matrix[np.moveaxis(rows, axis, -1).astype(int)])

    result = stats.bootstrap((np.arange(len(matrix)),), resampled, vectorized=True,
                             n_resamples=resamples, confidence_level=level, method="percentile",
                             rng=np.random.default_rng(BOOTSTRAP_SEED))
    return float(result.confidence_interval.low), float(result.confidence_interval.high)
