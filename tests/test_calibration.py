"""Calibration of the win / loss decision, simulated: the null and a planted effect.

A synthetic grid with known noise, shaped like real runs: each dataset has 500 test images of
fixed difficulty ``a_i ~ N(1, 1.5)`` (logit); each trained network (method x seed) adds its own
shift ``u ~ N(0, 0.1)``, so that two seeds of one method differ by more than the binomial noise
of their images (as real seeds do: 1.1-2.9x the binomial variance on the committed example);
image ``i`` is right with probability ``sigmoid(a_i + u + effect)``.

- **The null**: one method's networks split in two pseudo-methods (the same distribution).
  The family-wise rate of any win or loss over a method's 4 datasets must stay at or below 5 %
  within its Monte Carlo error; per comparison, at or below 5 %.
- **The old rule** (an exact McNemar test on per-image outcomes pooled over the seeds, Holm over
  the datasets, :func:`pooled_mcnemar_outcomes`) fails that check on the same simulation: it
  treats image x seed pairs as independent and the trained networks as fixed. This is the test
  that would have caught it.
- **A planted effect** on one dataset is detected at least as often as the power the code
  reports for it (:func:`spottune.report.statistics.t_test_power` at the Bonferroni level
  Holm's first step uses).
"""
from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest

from spottune.report.comparison import paired_comparison
from spottune.report.statistics import ALPHA, holm, mcnemar_exact, t_test_power

DATASETS, IMAGES, NETWORK_SD = 4, 500, 0.1
pytestmark = pytest.mark.slow


def simulate(rng: np.random.Generator, reps: int, seeds: int, effect: float = 0.0
             ) -> tuple[pd.DataFrame, dict]:
    """Records of ``reps`` independent grids (one preset each) of ``method`` and ``finetune`` on
    :data:`DATASETS` datasets; ``effect`` (logit) is added to ``method`` on dataset ``d0`` only.
    Returns the records and the per-image correctness ``{(rep, dataset, method): (seeds, images)}``."""
    rows, correct = [], {}
    for rep in range(reps):
        for d in range(DATASETS):
            difficulty = rng.normal(1.0, 1.5, IMAGES)
            for method in ("method", "finetune"):
                shift = rng.normal(0.0, NETWORK_SD, (seeds, 1)) + (effect if method == "method" and d == 0 else 0.0)
                right = rng.random((seeds, IMAGES)) < 1 / (1 + np.exp(-(difficulty + shift)))
                correct[rep, f"d{d}", method] = right
                rows += [{"preset": f"r{rep}", "method": method, "dataset": f"d{d}", "seed": s,
                          "status": "done", "run_dir": f"r{rep}/{method}/d{d}/{s}",
                          "test_accuracy": 100 * right[s].mean()} for s in range(seeds)]
    return pd.DataFrame(rows), correct


def pooled_mcnemar_outcomes(correct: dict, reps: int) -> pd.DataFrame:
    """The decision the suite used before: exact McNemar on outcomes pooled over seeds, Holm."""
    rows = []
    for rep in range(reps):
        tests = [mcnemar_exact(correct[rep, f"d{d}", "method"].ravel(), correct[rep, f"d{d}", "finetune"].ravel())
                 for d in range(DATASETS)]
        adjusted = holm([t.p_value for t in tests])
        rows += [{"preset": f"r{rep}", "decided": p < ALPHA and t.only_method != t.only_baseline}
                 for t, p in zip(tests, adjusted)]
    return pd.DataFrame(rows)


def monte_carlo_bound(rate: float, trials: int) -> float:
    """``rate`` plus three standard errors of a proportion over ``trials``."""
    return rate + 3 * math.sqrt(rate * (1 - rate) / trials)


@pytest.fixture(scope="module")
def null() -> tuple[pd.DataFrame, dict, int]:
    reps = 300
    records, correct = simulate(np.random.default_rng(20), reps, seeds=3)
    return records, correct, reps


def test_the_seed_level_decision_keeps_its_level_under_the_null(null):
    records, _, reps = null
    comparison = paired_comparison(records)
    assert len(comparison) == reps * DATASETS and (comparison["outcome"] != "untested").all()
    decided = comparison["outcome"].isin(["win", "loss"])
    family_wise = decided.groupby(comparison["preset"]).any().mean()
    assert family_wise <= monte_carlo_bound(ALPHA, reps)
    assert decided.mean() <= monte_carlo_bound(ALPHA, reps * DATASETS)
    # the raw p-values are uniform under the null (the t-test is exact for normal differences)
    assert (comparison["p_value"] < ALPHA).mean() == pytest.approx(ALPHA, abs=3 * math.sqrt(ALPHA / (reps * DATASETS)))


def test_the_pooled_mcnemar_decision_fails_the_same_check(null):
    records, correct, reps = null
    pooled = pooled_mcnemar_outcomes(correct, reps)
    family_wise = pooled["decided"].groupby(pooled["preset"]).any().mean()
    assert family_wise > 2 * monte_carlo_bound(ALPHA, reps)  # far above its nominal 5 %


def test_a_planted_effect_is_detected_as_often_as_its_power_says():
    reps, seeds = 200, 5
    records, _ = simulate(np.random.default_rng(21), reps, seeds, effect=0.6)
    comparison = paired_comparison(records)
    planted = comparison[comparison["dataset"] == "d0"]
    differences = planted["difference"].mean()
    assert differences > 5  # the logit shift is several points of accuracy
    power = t_test_power(differences, planted["difference_sd"].pow(2).mean() ** 0.5, seeds, ALPHA / DATASETS)
    assert power > 0.8
    detected = (planted["outcome"] == "win").mean()
    assert detected >= power - 3 * math.sqrt(power * (1 - power) / reps)
    assert (planted["outcome"] == "loss").sum() == 0
    others = comparison[comparison["dataset"] != "d0"]["outcome"].isin(["win", "loss"]).mean()
    assert others <= monte_carlo_bound(ALPHA, reps * (DATASETS - 1))
