"""Statistics of the tables against values computed by hand, and every gap said out loud.

The fixture grid (preset ``mini``, 10 test images per dataset) is built so that every number
below follows from a few lines of arithmetic (a run gets its first ``k`` images right):

- ``finetune`` gets 7, 5 and 6 images right on A, B, C in every seed 0-2, and 6 on D in seeds
  0-1 only;
- ``better`` gets 10, 10, 9 right on A (differences 30, 30, 20: mean 80/3, sd 10/sqrt(3),
  t = 8 on 2 df), 5 on B in seeds 0-3 (finetune has no seed 3), and 6 on C with labels that
  differ from finetune's (the seed-level test needs no per-image pairing; McNemar does);
  its seed-0 run on A is copied once more under another folder name (a duplicate);
- ``worse`` gets 0, 1, 0 right on A (differences -70, -60, -70: t = -20), 5 on B (its seed-1
  predictions.npz is missing, its seed-2 one has 9 predictions for 10 labels), 6 on D (two
  common seeds) and 6 on E, where finetune has no run.
"""
from __future__ import annotations

import json
import math
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from scipy import stats

from spottune.cli import write_outputs
from spottune.report import load_records
from spottune.report.comparison import (mcnemar_table, outcome_counts, paired_comparison, paired_table,
                                        per_seed_mcnemar, power_table)
from spottune.report.statistics import (detectable_difference, holm, mcnemar_exact, paired_t_test,
                                        seeds_needed, t_interval, t_test_power)
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


def test_paired_t_test_is_scipys_ttest_rel():
    a, b = np.array([80.0, 90.0, 70.0, 85.0]), np.array([70.0, 72.0, 71.0, 69.0])
    test = paired_t_test(a - b)
    reference = stats.ttest_rel(a, b)
    assert test.p_value == pytest.approx(reference.pvalue, rel=1e-12)
    assert (test.estimate, test.n) == (pytest.approx(10.75), 4)  # (10 + 18 - 1 + 16) / 4
    assert test.sd == pytest.approx(np.std(a - b, ddof=1))
    low, high = reference.confidence_interval(0.95)
    assert (test.low, test.high) == (pytest.approx(low), pytest.approx(high))


def test_paired_t_test_without_spread_or_seeds():
    assert paired_t_test([0.0, 0.0, 0.0]).p_value == 1.0          # no difference at all
    assert math.isnan(paired_t_test([2.0, 2.0, 2.0]).p_value)      # t undefined, not "certain"
    assert math.isnan(paired_t_test([2.0]).p_value) and paired_t_test([2.0]).n == 1


def test_power_from_the_noncentral_t_matches_a_simulation():
    rng = np.random.default_rng(0)
    delta, sd, n = 2.0, 1.5, 5
    draws = rng.normal(delta, sd, size=(20000, n))
    t = draws.mean(axis=1) / (draws.std(axis=1, ddof=1) / math.sqrt(n))
    simulated = np.mean(np.abs(t) > stats.t.ppf(0.975, n - 1))
    assert t_test_power(delta, sd, n) == pytest.approx(simulated, abs=0.01)
    assert t_test_power(-delta, sd, n) == pytest.approx(t_test_power(delta, sd, n))


def test_detectable_difference_and_seeds_needed_invert_the_power():
    delta = detectable_difference(sd=2.0, n=3)
    assert t_test_power(delta, 2.0, 3) == pytest.approx(0.80, abs=1e-8)
    n = seeds_needed(sd=2.0, delta=1.0)
    assert t_test_power(1.0, 2.0, n) >= 0.80 > t_test_power(1.0, 2.0, n - 1)
    assert detectable_difference(2.0, 3, alpha=0.0125) > delta  # a stricter level needs more
    assert math.isnan(detectable_difference(0.0, 3)) and seeds_needed(float("nan"), 1.0) is None


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


def _write_run(root: Path, method: str, dataset: str, seed: int, correct: int, labels: int = 0,
               predictions: str = "full") -> Path:
    """A done run whose first ``correct`` of IMAGES test images are right; ``predictions``:
    ``full``, ``none`` (no predictions.npz) or ``short`` (one prediction too few)."""
    folder = root / "runs" / f"{method}-{dataset}-{seed}"
    folder.mkdir(parents=True)
    identity = {"run_id": folder.name, "method": method, "dataset": dataset, "seed": seed,
                "preset": "mini"}
    (folder / "config.json").write_text(json.dumps({**identity, "hparams": {}}))
    (folder / "metrics.json").write_text(json.dumps({**identity, "test_accuracy": 100 * correct / IMAGES}))
    truth = np.full(IMAGES, labels)
    guesses = np.where(np.arange(IMAGES) < correct, truth, truth + 1)
    if predictions != "none":
        np.savez(folder / "predictions.npz", predictions=guesses[:IMAGES - (predictions == "short")],
                 labels=truth, test_ids=np.arange(IMAGES))
    (folder / "done").write_text("")
    return folder


@pytest.fixture(scope="module")
def grid(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("grid")
    for seed in range(3):
        _write_run(root, "finetune", "A", seed, 7)
        _write_run(root, "finetune", "B", seed, 5)
        _write_run(root, "finetune", "C", seed, 6)
        _write_run(root, "better", "A", seed, (10, 10, 9)[seed])
        _write_run(root, "better", "C", seed, 6, labels=1)
        _write_run(root, "worse", "A", seed, (0, 1, 0)[seed])
        _write_run(root, "worse", "B", seed, 5, predictions=("full", "none", "short")[seed])
        _write_run(root, "worse", "E", seed, 6)
    for seed in range(2):
        _write_run(root, "finetune", "D", seed, 6)
        _write_run(root, "worse", "D", seed, 6)
    for seed in range(4):
        _write_run(root, "better", "B", seed, 5)
    shutil.copytree(root / "runs" / "better-A-0", root / "runs" / "copy-of-better-A-0")
    return root


@pytest.fixture(scope="module")
def records(grid) -> pd.DataFrame:
    return load_records(grid)


@pytest.fixture(scope="module")
def comparison(records) -> pd.DataFrame:
    return paired_comparison(records)


def _row(frame: pd.DataFrame, method: str, dataset: str) -> pd.Series:
    (row,) = [r for _, r in frame.iterrows() if (r["method"], r["dataset"]) == (method, dataset)]
    return row


def test_a_duplicated_seed_counts_once_everywhere_and_is_named(records, comparison):
    duplicates = records[records["status"] == "duplicate"]
    assert duplicates["run_dir"].map(lambda d: Path(d).name).tolist() == ["copy-of-better-A-0"]
    assert duplicates["duplicate_of"].map(lambda d: Path(d).name).tolist() == ["better-A-0"]
    assert _row(comparison, "better", "A")["seeds"] == 3
    table = build_table(records, MINI, comparison=comparison)
    assert "(n=" not in table.cells().at["better (suite)", "A"]
    assert any("better/A/seed 0 (duplicate of better-A-0, left out: copy-of-better-A-0)" in note
               for note in table.notes())


def test_seed_level_paired_t_test_with_holm(comparison):
    a = _row(comparison, "better", "A")
    p = 2 * stats.t.sf(8.0, 2)  # differences 30, 30, 20: t = (80/3) / ((10/sqrt(3)) / sqrt(3)) = 8
    assert (a["seeds"], a["difference"], a["p_value"]) == (3, pytest.approx(80 / 3), pytest.approx(p))
    assert a["difference_low"] == pytest.approx(80 / 3 - T_975_2 * (10 / math.sqrt(3)) / math.sqrt(3))
    assert (a["family"], a["p_holm"], a["outcome"]) == (3, pytest.approx(3 * p), "win")  # A, B, C
    b = _row(comparison, "better", "B")
    assert (b["seeds"], b["difference"], b["p_value"], b["outcome"]) == (3, 0, 1, "n.s.")
    c = _row(comparison, "better", "C")  # other test images: no matter for the seed-level test
    assert (c["seeds"], c["outcome"]) == (3, "n.s.")
    worse = _row(comparison, "worse", "A")
    p = 2 * stats.t.sf(20.0, 2)
    assert (worse["family"], worse["p_holm"], worse["outcome"]) == (2, pytest.approx(2 * p), "loss")


def test_no_win_or_loss_whose_interval_contains_zero(comparison):
    decided = comparison[comparison["outcome"].isin(["win", "loss"])]
    assert len(decided) and ((decided["difference_low"] > 0) | (decided["difference_high"] < 0)).all()


def test_every_gap_is_an_untested_row_with_its_reason(comparison):
    d = _row(comparison, "worse", "D")
    assert (d["seeds"], d["outcome"], d["reason"]) == (2, "untested", "2 common seeds with finetune, fewer than 3")
    e = _row(comparison, "worse", "E")
    assert (e["outcome"], e["reason"]) == ("untested", "no done finetune run on this dataset")
    assert math.isnan(d["p_holm"]) and math.isnan(e["p_holm"])


def test_per_seed_mcnemar_describes_networks_and_names_what_it_cannot_pair(records):
    tests = per_seed_mcnemar(records)
    a0 = tests[(tests["method"] == "better") & (tests["dataset"] == "A") & (tests["seed"] == 0)].iloc[0]
    assert (a0["only_method"], a0["only_baseline"], a0["p_value"]) == (3, 0, pytest.approx(0.25))
    reasons = {(r.method, r.dataset, r.seed): r.reason for r in tests.itertuples() if r.reason}
    assert reasons == {
        ("better", "C", 0): "different test images (labels or test_ids differ)",
        ("better", "C", 1): "different test images (labels or test_ids differ)",
        ("better", "C", 2): "different test images (labels or test_ids differ)",
        ("worse", "B", 1): "method: no predictions.npz",
        ("worse", "B", 2): "method: 9 predictions for 10 labels"}
    cells = mcnemar_table(tests, "mini").cells()
    assert cells.at["better, seed 0", "A"] == "0.250 (3:0)"
    assert cells.at["worse, seed 1", "B"] == "–‡"


def test_counts_paired_and_power_tables(comparison):
    counts = outcome_counts(comparison).loc["mini"]
    assert counts.columns.tolist() == ["wins", "n.s.", "losses", "untested"]
    assert counts.loc["better"].tolist() == [1, 2, 0, 0]
    assert counts.loc["worse"].tolist() == [0, 1, 1, 2]
    table = paired_table(comparison, "mini")
    cells = table.cells()
    half = T_975_2 * (10 / math.sqrt(3)) / math.sqrt(3)
    assert cells.loc["better"].tolist()[:4] == [f"+26.67 ± {half:.2f}▲", "+0.00 (all equal)°",
                                                "+0.00 (all equal)°", "–"]
    assert cells.at["worse", "D"] == "+0.00 (all equal) (n=2)‡"
    assert any("worse on D (2 common seeds with finetune, fewer than 3)" in note for note in table.notes())
    power = power_table(comparison, "mini")
    sd = 10 / math.sqrt(3)
    assert power.mean.at["better", "A"] == pytest.approx(detectable_difference(sd, 3, 0.05 / 3))
    assert power.cells().at["better", "A"].endswith(f"({seeds_needed(sd, 1.0, 0.05 / 3)} for 1 pt)")


def test_mini_table_markers_and_scores_from_the_same_seeds(records, comparison):
    table = build_table(records, MINI, comparison=comparison)
    cells = table.cells()
    assert cells.at["better (suite)", "A"].endswith("▲")
    assert cells.at["better (suite)", "B"] == "50.00 (all equal) (n=4)°"
    assert cells.at["worse (suite)", "E"].endswith("‡")
    assert not cells.at["finetune (suite)", "A"].endswith(("▲", "▼", "°", "‡"))
    # per-seed means of better over A, B, C (seeds 0-2): 70, 70, 66.67
    assert table.mean.at["better (suite)", "mean"] == pytest.approx(np.mean([70, 70, 200 / 3]))
    # each seed scored against finetune's run of the same seed (70, 50, 60 in every seed):
    # A at 100 % scores 1000, at 90 % 1000 (1 - 0.1 / 0.6)^2; B and C match: 250 each
    per_seed = [1000 + 500, 1000 + 500, 1000 * (5 / 6) ** 2 + 500]
    interval = t_interval(per_seed)
    assert table.mean.at["better (suite)", "score"] == pytest.approx(interval.estimate)
    assert (table.low.at["better (suite)", "score"], table.high.at["better (suite)", "score"]) == (
        pytest.approx(interval.low), pytest.approx(interval.high))
    # finetune has D in seeds 0-1 only and lacks E: 4 datasets matched in both complete seeds
    assert cells.at["finetune (suite)", "score"] == "1000 (all equal) (n=2)†"
    assert all(table.low.at[r, c] <= table.mean.at[r, c] <= table.high.at[r, c]
               for r in table.mean.index for c in ("mean", "score") if pd.notna(table.low.at[r, c]))


def test_run_all_prints_the_paired_comparison_and_writes_report_html(grid, capsys):
    write_outputs(grid, {"data_root": None}, [], "worse")
    out = capsys.readouterr().out
    assert "### Paired comparison with worse, preset mini" in out
    assert f"report: {grid / 'report.html'}" in out
    page = (grid / "report.html").read_text()
    assert '<table id="paired_mini">' in page and '<table id="power_mini">' in page
    assert "<strong>better</strong> against worse" in page


def test_the_report_command_finishes_on_every_gap_and_names_each_one(grid, tmp_path, capsys):
    from spottune.report.__main__ import main

    main([str(grid), "--into", str(tmp_path), "--tables-only"])
    paired = (tmp_path / "tables" / "paired_mini.md").read_text()
    assert "worse on D (2 common seeds with finetune, fewer than 3)" in paired
    assert "worse on E (no done finetune run on this dataset)" in paired
    mcnemar = (tmp_path / "tables" / "mcnemar_mini.md").read_text()
    assert "worse, seed 1 on B (method: no predictions.npz)" in mcnemar
    assert "worse, seed 2 on B (method: 9 predictions for 10 labels)" in mcnemar
    assert "(duplicate of better-A-0, left out: copy-of-better-A-0)" in (tmp_path / "tables" / "mini.md").read_text()
