"""Statistics of the tables against values computed by hand.

The fixture grid (preset ``mini``, 10 test images per dataset, seeds 0-2) is built so that
every number below follows from a few lines of arithmetic:

- ``finetune`` gets images 0-6 right on A (70 %), 0-4 on B (50 %), 0-5 on C (60 %);
- ``better`` gets 10, 9, 8 images right on A in seeds 0, 1, 2 (100, 90, 80 %), the same images
  as finetune on B (seeds 0-3; finetune has no seed 3), and 60 % on C with labels that differ
  from finetune's (not the same test images: C cannot be paired);
- ``worse`` gets nothing right on A and the same images as finetune on B.
"""
from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from spottune.cli import write_outputs
from spottune.report import load_records
from spottune.report.comparison import mcnemar_table, outcome_counts, paired_comparison, paired_table
from spottune.report.statistics import (bootstrap_interval, holm, mcnemar_exact, paired_difference,
                                        t_interval)
from spottune.report.tables import MINI, build_table

T_975_2 = 4.302652729911275  # Student t, 2 degrees of freedom, 97.5 % quantile (printed tables)
IMAGES = 10


def test_t_interval_of_three_values():
    interval = t_interval([1.0, 2.0, 3.0])  # mean 2, sample std 1
    assert interval.estimate == 2 and interval.n == 3
    assert interval.low == pytest.approx(2 - T_975_2 / math.sqrt(3))
    assert interval.high == pytest.approx(2 + T_975_2 / math.sqrt(3))


def test_t_interval_of_one_value_has_no_bounds():
    interval = t_interval([5.0, float("nan")])
    assert (interval.estimate, interval.n) == (5.0, 1)
    assert math.isnan(interval.low) and math.isnan(interval.high)


def test_paired_difference_uses_common_seeds_only():
    method = pd.Series({0: 80.0, 1: 90.0, 2: 70.0, 3: 10.0})
    baseline = pd.Series({0: 70.0, 1: 70.0, 2: 70.0})
    interval = paired_difference(method, baseline)  # differences 10, 20, 0
    assert (interval.estimate, interval.n) == (10, 3)
    assert interval.high == pytest.approx(10 + T_975_2 * 10 / math.sqrt(3))


@pytest.mark.parametrize("only_method, only_baseline, p_value", [
    (3, 0, 2 * 0.5 ** 3),              # both tails of Binomial(3, 1/2) at the extremes
    (1, 5, 2 * (1 + 6) / 2 ** 6),      # P(X <= 1) + P(X >= 5) for Binomial(6, 1/2)
    (0, 0, 1.0),                       # no discordant pair: nothing to test
])
def test_exact_mcnemar_is_a_binomial_test_on_discordant_pairs(only_method, only_baseline, p_value):
    both = 4
    method = np.array([True] * only_method + [False] * only_baseline + [True] * both)
    baseline = np.array([False] * only_method + [True] * only_baseline + [True] * both)
    test = mcnemar_exact(method, baseline)
    assert (test.only_method, test.only_baseline) == (only_method, only_baseline)
    assert test.p_value == pytest.approx(p_value)


def test_holm_steps_down_and_keeps_untested_as_nan():
    adjusted = holm([0.01, 0.04, float("nan"), 0.03])
    # sorted 0.01, 0.03, 0.04 -> 3 x 0.01, 2 x 0.03, max(0.06, 1 x 0.04)
    np.testing.assert_allclose(adjusted, [0.03, 0.06, np.nan, 0.06])
    np.testing.assert_allclose(holm([0.2, 0.01]), [0.2, 0.02])  # 1 x 0.2, 2 x 0.01
    assert holm([0.9, 0.8]).tolist() == [1.0, 1.0]  # capped at 1


def test_percentile_bootstrap_over_rows():
    # means of two draws from {1, 3}: 1 (1/4), 2 (1/2), 3 (1/4) -> 2.5 % and 97.5 % at 1 and 3
    assert bootstrap_interval(np.array([[1.0], [3.0]]), lambda m: m.mean(axis=(-2, -1))) == (1.0, 3.0)
    assert all(math.isnan(bound) for bound in bootstrap_interval(np.ones((1, 2)), np.sum))


def _write_run(root: Path, method: str, dataset: str, seed: int, correct: int | None,
               labels: int = 0) -> None:
    """A done run whose first ``correct`` of IMAGES test images are right (no predictions
    file when ``correct`` is None, then 60 %)."""
    folder = root / "runs" / f"{method}-{dataset}-{seed}"
    folder.mkdir(parents=True)
    identity = {"run_id": folder.name, "method": method, "dataset": dataset, "seed": seed,
                "preset": "mini"}
    (folder / "config.json").write_text(json.dumps({**identity, "hparams": {}}))
    right = 6 if correct is None else correct
    (folder / "metrics.json").write_text(json.dumps({**identity, "test_accuracy": 100 * right / IMAGES}))
    if correct is not None:
        truth = np.full(IMAGES, labels)
        predictions = np.where(np.arange(IMAGES) < correct, truth, truth + 1)
        np.savez(folder / "predictions.npz", predictions=predictions, labels=truth,
                 test_ids=np.arange(0))
    (folder / "done").write_text("")


@pytest.fixture(scope="module")
def grid(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("grid")
    for seed in range(3):
        _write_run(root, "finetune", "A", seed, 7)
        _write_run(root, "finetune", "B", seed, 5)
        _write_run(root, "finetune", "C", seed, 6)
        _write_run(root, "better", "A", seed, 10 - seed)
        _write_run(root, "better", "C", seed, 6, labels=1)
        _write_run(root, "worse", "A", seed, 0)
        _write_run(root, "worse", "B", seed, 5)
    for seed in range(4):
        _write_run(root, "better", "B", seed, 5)
    return root


@pytest.fixture(scope="module")
def comparison(grid) -> pd.DataFrame:
    return paired_comparison(load_records(grid))


def _row(comparison: pd.DataFrame, method: str, dataset: str) -> pd.Series:
    (row,) = [r for _, r in comparison.iterrows() if (r["method"], r["dataset"]) == (method, dataset)]
    return row


def test_paired_difference_and_pooled_mcnemar_with_holm(comparison):
    a = _row(comparison, "better", "A")
    # differences 30, 20, 10 percentage points: mean 20, sample std 10
    assert (a["seeds"], a["difference"]) == (3, 20)
    assert a["difference_low"] == pytest.approx(20 - T_975_2 * 10 / math.sqrt(3))
    # pooled over seeds: 3 + 2 + 1 images only `better` gets right, none only finetune
    assert (a["images"], a["only_method"], a["only_baseline"]) == (30, 6, 0)
    assert a["p_value"] == pytest.approx(2 * 0.5 ** 6)          # 0.03125 < 0.05 ...
    assert a["p_holm"] == pytest.approx(2 * 2 * 0.5 ** 6)       # ... but not after Holm (A, B)
    assert a["outcome"] == "tie"
    b = _row(comparison, "better", "B")
    assert (b["seeds"], b["difference"], b["p_value"], b["p_holm"]) == (3, 0, 1, 1)
    c = _row(comparison, "better", "C")  # labels differ from finetune's: not paired
    assert c["outcome"] == "untested" and c["images"] == 0 and math.isnan(c["p_holm"])
    worse = _row(comparison, "worse", "A")
    assert (worse["only_method"], worse["only_baseline"]) == (0, 21)
    assert worse["p_holm"] == pytest.approx(2 * 2 * 0.5 ** 21) and worse["outcome"] == "loss"


def test_wins_ties_losses(comparison):
    counts = outcome_counts(comparison).loc["mini"]
    assert counts.loc["better"].tolist() == [0, 2, 0]
    assert counts.loc["worse"].tolist() == [0, 1, 1]


def test_paired_and_mcnemar_tables(comparison):
    cells = paired_table(comparison, "mini").cells()
    half = T_975_2 * 10 / math.sqrt(3)
    assert cells.loc["better"].tolist() == [f"20.00 ± {half:.2f}°", "0.00 ± 0.00°", "0.00 ± 0.00",
                                            "0", "2", "0"]
    assert cells.loc["worse"].tolist() == ["-70.00 ± 0.00", "0.00 ± 0.00°", "–", "0", "1", "1"]
    p_values = mcnemar_table(comparison, "mini").cells()
    assert p_values.loc["better"].tolist() == ["0.062 (6:0)", "1.000 (0:0)", "–"]


def test_mini_table_intervals_markers_and_bootstrapped_score(grid):
    records = load_records(grid)
    table = build_table(records, MINI, comparison=paired_comparison(records))
    cells = table.cells()
    half = T_975_2 * 10 / math.sqrt(3)
    assert cells.at["better (suite)", "A"] == f"90.00 ± {half:.2f}°"
    assert cells.at["better (suite)", "B"] == "50.00 ± 0.00 (n=4)°"
    assert cells.at["better (suite)", "C"] == "60.00 ± 0.00"  # untested: no mark
    assert cells.at["worse (suite)", "A"] == "0.00 ± 0.00"     # significant: no mark
    # per-seed means over A, B, C of the complete seeds 0-2: 70, 66.67, 63.33
    assert table.mean.at["better (suite)", "mean"] == pytest.approx(200 / 3)
    assert table.high.at["better (suite)", "mean"] == pytest.approx(200 / 3 + T_975_2 * 10 / 3 / math.sqrt(3))
    # score against finetune's means (70, 50, 60): A at 90 % scores 1000 (1 - 0.1 / 0.6)^2
    assert table.mean.at["better (suite)", "score"] == pytest.approx(1000 * (5 / 6) ** 2 + 500)
    # bootstrap: A's mean over three drawn seeds lies in [80, 100], both ends drawn with
    # probability 1/27 > 2.5 %: the interval is the score at 80 % and at 100 % on A
    assert table.low.at["better (suite)", "score"] == pytest.approx(1000 * (2 / 3) ** 2 + 500)
    assert table.high.at["better (suite)", "score"] == pytest.approx(1500)
    assert table.low.at["finetune (suite)", "score"] == table.high.at["finetune (suite)", "score"] == 750
    assert table.usual_seeds() == 3
    assert any(note.startswith("° = not significantly different from finetune") for note in table.notes())


def test_run_all_prints_the_paired_comparison_and_writes_report_html(grid, capsys):
    write_outputs(grid, {"data_root": None}, [], "worse")
    out = capsys.readouterr().out
    assert "### Paired comparison with worse, preset mini" in out
    assert f"report: {grid / 'report.html'}" in out
    assert '<table id="paired_mini">' in (grid / "report.html").read_text()
