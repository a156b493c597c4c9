"""The Decathlon score and #par against the published rows (Rebuffi et al. 2017; Guo et al. 2019)."""
from __future__ import annotations

import pytest

from spottune.visual_decathlon import (DOMAINS, FINETUNE_BASELINE, decathlon_score,
                                       parameter_cost)
from spottune.report.reference import load_published


def published_rows() -> dict[str, dict]:
    """``{method: {"accuracy": {domain: acc}, "score": printed score}}`` of the Decathlon table."""
    rows: dict[str, dict] = {}
    for entry in load_published("decathlon").itertuples():
        row = rows.setdefault(entry.method, {"accuracy": {}})
        if entry.metric == "accuracy":
            row["accuracy"][entry.dataset] = entry.value
        else:
            row[entry.metric] = entry.value
    return rows


def test_finetune_row_scores_exactly_2500_and_250_per_domain():
    assert decathlon_score(FINETUNE_BASELINE) == pytest.approx(2500, abs=1e-9)
    per_domain = decathlon_score(FINETUNE_BASELINE, per_domain=True)
    assert set(per_domain) == set(DOMAINS)
    assert all(score == pytest.approx(250, abs=1e-9) for score in per_domain.values())


def test_perfect_classifier_scores_10000():
    assert decathlon_score({domain: 100.0 for domain in DOMAINS}) == 10_000


@pytest.mark.parametrize("beyond", [0.0, 0.5, 10.0])
def test_error_at_or_beyond_twice_the_baseline_scores_zero(beyond):
    accuracies = dict(FINETUNE_BASELINE)
    accuracies["dtd"] = 100 - 2 * (100 - FINETUNE_BASELINE["dtd"]) - beyond
    assert decathlon_score(accuracies, per_domain=True)["dtd"] == 0
    assert decathlon_score(accuracies) == pytest.approx(2250)


def test_every_published_row_reproduces_its_printed_score_within_3_points():
    rows = published_rows()
    assert decathlon_score(rows["spottune"]["accuracy"]) == pytest.approx(3612, abs=3)
    scored = {method: row for method, row in rows.items() if "score" in row}
    assert set(rows) - set(scored) == {"taps"}  # TAPS: only its mean is known [src], no score
    for method, row in scored.items():
        assert decathlon_score(row["accuracy"]) == pytest.approx(row["score"], abs=3), method


def test_reference_finetune_row_is_the_built_in_baseline():
    assert published_rows()["finetune"]["accuracy"] == FINETUNE_BASELINE


def test_missing_domains_raise_with_their_names_unless_partial_allowed():
    partial = {d: a for d, a in FINETUNE_BASELINE.items() if d not in ("svhn", "imagenet12")}
    with pytest.raises(ValueError, match=r"imagenet12.*svhn"):
        decathlon_score(partial)
    assert decathlon_score(partial, allow_partial=True) == pytest.approx(2000)
    assert set(decathlon_score(partial, per_domain=True, allow_partial=True)) == set(partial)


def test_unknown_domain_raises():
    with pytest.raises(ValueError, match="imagenet"):
        decathlon_score({**FINETUNE_BASELINE, "imagenet": 50.0})


def test_custom_baseline_defines_the_domains():
    baseline = {"digits": 90.0, "glyphs": 60.0}
    assert decathlon_score(baseline, baseline=baseline) == pytest.approx(500)
    assert decathlon_score({"digits": 100.0, "glyphs": 20.0}, baseline=baseline) == 1000
    with pytest.raises(ValueError, match="glyphs"):
        decathlon_score({"digits": 95.0}, baseline=baseline)


def test_perfect_baseline_is_the_limit_of_the_formula():
    assert decathlon_score({"a": 100.0}, baseline={"a": 100.0}) == 1000
    assert decathlon_score({"a": 99.9}, baseline={"a": 100.0}) == 0


def test_parameter_cost_counts_one_backbone_plus_nine_tasks():
    assert parameter_cost(task_specific=5.8e6, backbone=5.8e6, target_tasks=9) == 10
    assert parameter_cost(task_specific=0.0, backbone=5.8e6, target_tasks=9) == 1
