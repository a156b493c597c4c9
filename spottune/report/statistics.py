"""The statistics behind every table: intervals over seeds, the seed-level paired test, power,
multiple testing, and the per-seed McNemar description.

All distributions come from :mod:`scipy.stats`; nothing here knows about run records. The unit
of repetition of a training procedure is the **seed** (one trained network): every interval and
every decision below treats the seeds as the sample (``shared/REFERENCE.md`` section 7).

- :func:`t_interval`: for values ``x_1 .. x_n`` (one per seed), the mean
  ``m = sum_i x_i / n`` and its Student-t interval
  ``m ± t_{n-1}((1 + level) / 2) · s / sqrt(n)`` with the sample std
  ``s = sqrt(sum_i (x_i - m)^2 / (n - 1))``; undefined (NaN bounds) for ``n < 2``.
- :func:`paired_t_test`: the paired t-test over seeds. With ``d_s = a_s - b_s`` over the seeds
  ``s`` both methods have, ``t = mean(d) / (sd(d) / sqrt(n))`` on ``n - 1`` degrees of freedom,
  two-sided ``p = 2 · (1 - F_t(|t|))``, and the t-interval of ``mean(d)``. Chosen over a
  permutation or bootstrap test over seeds because with ``n`` seeds a sign-flip permutation
  test cannot give ``p`` below ``2 / 2^n`` (0.25 at three seeds) and a percentile bootstrap
  cannot reach its nominal level while ``n^-n > alpha / 2``; the t-test is exact when the
  per-seed differences are normal, which averages over hundreds of test images make them
  nearly so (``tests/test_calibration.py`` checks its false-positive rate by simulation).
- :func:`t_test_power`, :func:`detectable_difference`, :func:`seeds_needed`: the power of that
  test from the noncentral t distribution: with ``delta`` the true mean difference, ``sd`` the
  standard deviation of ``d_s`` and ``n`` seeds, ``ncp = delta · sqrt(n) / sd`` and
  ``power = P(|T'| > t_{n-1}(1 - alpha / 2))`` for ``T' ~ t'(n - 1, ncp)``.
- :func:`holm`: Holm-Bonferroni adjusted p-values for a family of tests.
- :func:`mcnemar_exact`: exact McNemar test on paired per-image outcomes of **two trained
  networks** (one seed of each method): it says whether these networks differ on these
  images, not whether the methods do. With ``b`` the images only the first gets right and
  ``c`` those only the second gets right, under H0 ``b ~ Binomial(b + c, 1/2)``; the two-sided
  p-value is ``scipy.stats.binomtest(b, b + c, 0.5)``, and 1 when ``b + c = 0``.
"""
from __future__ import annotations

import functools
import math
from collections.abc import Sequence
from typing import NamedTuple

import numpy as np
from scipy import optimize, stats

LEVEL = 0.95
"""Confidence level of every interval."""
ALPHA = 0.05
"""Significance level of every decision (after Holm's correction)."""
POWER = 0.80
"""The power at which :func:`detectable_difference` and :func:`seeds_needed` are stated."""
MIN_SEEDS = 3
"""Fewest common seeds behind a win or a loss: below it a comparison is ``untested``."""
MAX_SEEDS = 10_000
"""Where :func:`seeds_needed` stops looking."""


def percent(fraction: float) -> str:
    """``0.95`` -> ``"95 %"``: how every table and page writes :data:`LEVEL` and :data:`ALPHA`."""
    return f"{100 * fraction:g} %"


class Interval(NamedTuple):
    """An estimate with its confidence interval and the number of values behind it."""

    estimate: float
    low: float
    high: float
    n: int


def _sample(values: Sequence[float] | np.ndarray) -> np.ndarray:
    sample = np.asarray(values, dtype=float)
    return sample[~np.isnan(sample)]


def t_interval(values: Sequence[float] | np.ndarray, level: float = LEVEL) -> Interval:
    """Mean of ``values`` (NaN ignored) and its Student-t interval; NaN bounds when n < 2."""
    sample = _sample(values)
    n = len(sample)
    if n == 0:
        return Interval(np.nan, np.nan, np.nan, 0)
    mean = float(sample.mean())
    if n == 1:
        return Interval(mean, np.nan, np.nan, 1)
    half = stats.t.ppf((1 + level) / 2, n - 1) * sample.std(ddof=1) / math.sqrt(n)
    return Interval(mean, float(mean - half), float(mean + half), n)


class PairedTest(NamedTuple):
    """The paired t-test over seeds: the mean difference with its interval, the number of
    seeds, the standard deviation of the per-seed differences and the two-sided p-value
    (NaN when undefined: fewer than two seeds, or every difference equal and not zero)."""

    estimate: float
    low: float
    high: float
    n: int
    sd: float
    p_value: float


def paired_t_test(differences: Sequence[float] | np.ndarray, level: float = LEVEL) -> PairedTest:
    """Paired t-test of per-seed differences ``d_s = a_s - b_s`` (NaN ignored; see the module
    docstring). Zero spread with a zero mean is no difference (p = 1); zero spread with a
    non-zero mean leaves ``t`` undefined (p = NaN)."""
    sample = _sample(differences)
    interval = t_interval(sample, level)
    if interval.n < 2:
        return PairedTest(*interval, np.nan, np.nan)
    sd = float(sample.std(ddof=1))
    if sd == 0:
        return PairedTest(*interval, 0.0, 1.0 if interval.estimate == 0 else np.nan)
    t = interval.estimate / (sd / math.sqrt(interval.n))
    return PairedTest(*interval, sd, float(2 * stats.t.sf(abs(t), interval.n - 1)))


def _power(delta: float, sd: float, n: np.ndarray, alpha: float) -> np.ndarray:
    """:func:`t_test_power` for an array of seed counts ``n`` (each >= 2, ``sd`` > 0)."""
    df, ncp = n - 1, abs(delta) * np.sqrt(n) / sd  # the power is symmetric in delta
    critical = stats.t.ppf(1 - alpha / 2, df)
    wrong_side = np.nan_to_num(stats.nct.cdf(-critical, df, ncp))  # tiny for ncp >= 0; NaN far out
    return stats.nct.sf(critical, df, ncp) + wrong_side


def t_test_power(delta: float, sd: float, n: int, alpha: float = ALPHA) -> float:
    """Power of the two-sided paired t-test at level ``alpha`` with ``n`` seeds when the true
    mean difference is ``delta`` and the per-seed differences have standard deviation ``sd``."""
    if n < 2 or not sd > 0:
        return float("nan")
    return float(_power(delta, sd, np.array([n]), alpha)[0])


def detectable_difference(sd: float, n: int, alpha: float = ALPHA, power: float = POWER) -> float:
    """The smallest true mean difference that ``n`` seeds detect with probability ``power``
    at level ``alpha``, for per-seed differences of standard deviation ``sd`` (same unit as
    ``sd``); NaN when ``n < 2`` or ``sd`` is not positive."""
    if n < 2 or not sd > 0:
        return float("nan")
    return sd * _detectable_in_sds(n, alpha, power)


@functools.lru_cache(maxsize=None)
def _detectable_in_sds(n: int, alpha: float, power: float) -> float:
    """:func:`detectable_difference` in units of ``sd`` (the power depends on ``delta / sd`` only)."""
    high = 1.0
    while t_test_power(high, 1.0, n, alpha) < power:
        high *= 2
    return float(optimize.brentq(lambda d: t_test_power(d, 1.0, n, alpha) - power, 0.0, high, xtol=1e-12))


def seeds_needed(sd: float, delta: float, alpha: float = ALPHA, power: float = POWER) -> int | None:
    """The fewest seeds that detect a true mean difference ``delta`` with probability ``power``
    at level ``alpha`` when the per-seed differences have standard deviation ``sd``; ``None``
    when ``sd`` is unknown or more than :data:`MAX_SEEDS` would be needed.

    The search starts at the normal approximation ``((z_{1-alpha/2} + z_power) sd / delta)^2``,
    a lower bound (the t-test never has more power than the z-test with the same seeds), and
    steps up through blocks of seed counts."""
    if not sd > 0 or not delta > 0:
        return None
    guess = ((stats.norm.ppf(1 - alpha / 2) + stats.norm.ppf(power)) * sd / delta) ** 2
    start, block = max(2, math.ceil(guess)), 16
    while start <= MAX_SEEDS:
        counts = np.arange(start, min(start + block, MAX_SEEDS + 1))
        enough = np.flatnonzero(_power(delta, sd, counts, alpha) >= power)
        if len(enough):
            return int(counts[enough[0]])
        start += block
    return None


def holm(p_values: Sequence[float] | np.ndarray) -> np.ndarray:
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


class McNemar(NamedTuple):
    """Discordant pairs of a paired comparison and the exact two-sided p-value."""

    only_method: int
    only_baseline: int
    p_value: float


def mcnemar_exact(method_correct: np.ndarray, baseline_correct: np.ndarray) -> McNemar:
    """Exact McNemar test of two trained networks on the same images (boolean arrays, paired)."""
    method_correct = np.asarray(method_correct, dtype=bool)
    baseline_correct = np.asarray(baseline_correct, dtype=bool)
    if method_correct.shape != baseline_correct.shape:
        raise ValueError(f"unpaired outcomes: {method_correct.shape} vs {baseline_correct.shape}")
    only_method = int((method_correct & ~baseline_correct).sum())
    only_baseline = int((~method_correct & baseline_correct).sum())
    discordant = only_method + only_baseline
    p_value = stats.binomtest(only_method, discordant, 0.5).pvalue if discordant else 1.0
    return McNemar(only_method, only_baseline, float(p_value))
