"""The VTAB-1k and FGVC tables: group means (Natural / Specialized / Structured, the mean of the
group means, the mean over the tasks) from a small synthetic set of run records, and the
published V-PETL Bench rows beside the suite's, with their provenance."""
from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest
from scipy import stats

from spottune.data.peft_benchmarks import FGVC_DATASETS, VTAB_GROUPS, VTAB_TASKS
from spottune.report.group_means import VTAB_MEANS, mean_columns
from spottune.report.reference import load_published
from spottune.report.render import to_markdown
from spottune.report.tables import FGVC, VTAB1K, build_table

TASKS = list(VTAB_TASKS)  # index i: Natural 0-6, Specialized 7-10, Structured 11-18


def records(preset: str, datasets: list[str], methods: tuple[str, ...], seeds: int = 2) -> pd.DataFrame:
    """Done runs of ``preset`` scoring ``50 + i + seed`` on its ``i``-th dataset."""
    return pd.DataFrame([{"preset": preset, "method": method, "dataset": f"{preset}/{name}", "seed": seed,
                          "status": "done", "test_accuracy": 50.0 + i + seed}
                         for method in methods for i, name in enumerate(datasets) for seed in range(seeds)])


def test_vtab_group_means_and_both_overall_means_from_run_records():
    table = build_table(records("vtab1k", TASKS, ("bitfit",)), VTAB1K)
    row = table.mean.loc["BitFit (suite)"]
    # mean over seeds 0, 1 of 50 + i + seed is 50.5 + i
    assert row["Natural"] == pytest.approx(50.5 + 3)  # tasks 0..6
    assert row["Specialized"] == pytest.approx(50.5 + 8.5)  # tasks 7..10
    assert row["Structured"] == pytest.approx(50.5 + 14.5)  # tasks 11..18
    assert row["mean (groups)"] == pytest.approx((53.5 + 59.0 + 65.0) / 3)  # 59.1667
    assert row["mean (tasks)"] == pytest.approx(50.5 + 9)  # 59.5: a different number, labelled apart
    # Natural per seed: 53 and 54; 95 % t-interval with n = 2
    half = stats.t.ppf(0.975, 1) * np.std([53.0, 54.0], ddof=1) / math.sqrt(2)
    assert (table.low.at["BitFit (suite)", "Natural"], table.high.at["BitFit (suite)", "Natural"]) == \
        pytest.approx((53.5 - half, 53.5 + half))
    assert table.seeds.at["BitFit (suite)", "mean (groups)"] == 2
    assert list(table.mean.columns[-8:]) == ["Natural", "Specialized", "Structured", "mean (groups)", "mean (tasks)",
                                             "Params (M)", "#par (Decathlon)", "#par (VPT)"]
    assert any("mean (groups): mean of the three group means" in line and "mean (tasks): mean over the 19 tasks"
               in line for line in table.footnotes)


def test_a_missing_task_leaves_its_group_and_the_overall_means_empty():
    runs = records("vtab1k", TASKS, ("bitfit",))
    table = build_table(runs[runs["dataset"] != "vtab1k/kitti"], VTAB1K)
    row = table.mean.loc["BitFit (suite)"]
    assert np.isnan(row["Structured"]) and np.isnan(row["mean (groups)"]) and np.isnan(row["mean (tasks)"])
    assert row["Natural"] == pytest.approx(53.5) and row["Specialized"] == pytest.approx(59.0)
    assert table.cells().at["BitFit (suite)", "Structured"] == "–"


def test_mean_columns_are_means_of_means():
    values = pd.DataFrame([{task: float(i) for i, task in enumerate(TASKS)}])
    means = mean_columns(values, VTAB_MEANS).iloc[0]
    assert means.to_dict() == pytest.approx({"Natural": 3.0, "Specialized": 8.5, "Structured": 14.5,
                                             "mean (groups)": 26 / 3, "mean (tasks)": 9.0})


def test_published_vtab_rows_beside_the_suites_with_computed_group_means():
    table = build_table(records("vtab1k", TASKS, ("finetune", "vpt_deep")), VTAB1K)
    paper = table.mean.loc["Full fine-tuning (paper) [src]"]
    assert (paper["CIFAR"], paper["sN-Ele"], paper["mean (tasks)"]) == (68.9, 29.1, 65.57)  # as printed
    # V-PETL Bench prints no group means: computed from its 19 per-task numbers
    assert paper["Natural"] == pytest.approx((68.9 + 87.7 + 64.3 + 97.2 + 86.9 + 87.4 + 38.8) / 7)  # 75.89
    assert paper["Specialized"] == pytest.approx((79.7 + 95.7 + 84.2 + 73.9) / 4)  # 83.375
    assert paper["Structured"] == pytest.approx((56.3 + 58.6 + 41.7 + 65.5 + 57.5 + 46.7 + 25.7 + 29.1) / 8)
    assert paper["mean (groups)"] == pytest.approx((paper["Natural"] + paper["Specialized"] + paper["Structured"]) / 3)
    delta = table.mean.loc["Full fine-tuning Δ"]
    assert delta["Natural"] == pytest.approx(53.5 - paper["Natural"])
    assert delta["mean (tasks)"] == pytest.approx(59.5 - 65.57)
    assert table.mean.at["VPT-Deep (paper) [src]", "Pets"] == 88.3
    notes = "\n".join(table.footnotes)
    assert ("Natural, Specialized, Structured, mean (groups) of the paper rows: computed by the suite from their "
            "published per-dataset accuracies") in notes
    assert "[src] quoted by a secondary source: V-PETL Bench" in notes
    assert "README.md@c188fad2930fa2d1c07a8a64848427fd24ce6006" in notes
    assert "| Full fine-tuning (paper) [src] | 68.90 |" in to_markdown(table)


def test_published_fgvc_rows_and_their_mean():
    table = build_table(records("fgvc", list(FGVC_DATASETS), ("ssf",)), FGVC)
    assert table.mean.loc["SSF (paper) [src]", ["CUB", "NABirds", "Flowers", "Dogs", "Cars", "mean"]].tolist() == \
        [89.5, 85.7, 99.6, 89.6, 89.2, 90.72]
    assert table.mean.at["SSF (suite)", "mean"] == \
        pytest.approx(50.5 + 2)
    assert not any("computed by the suite" in line for line in table.footnotes)  # the mean is published


@pytest.mark.parametrize("name, datasets", [("vtab1k", TASKS), ("fgvc", list(FGVC_DATASETS))])
def test_reference_rows_parse_with_provenance_and_reproduce_their_printed_mean(name, datasets):
    published = load_published(name)
    assert set(published["provenance"]) == {"[src]"} and published["source"].str.contains("synbol/").all()
    assert set(published["method"]) == {"finetune", "feature_extractor", "adapter", "adaptformer", "bitfit",
                                        "vpt_shallow", "vpt_deep", "ssf", "lora"}
    accuracy = published[published["metric"] == "accuracy"].pivot(index="method", columns="dataset", values="value")
    assert sorted(accuracy.columns) == sorted(datasets) and not accuracy.isna().any().any()
    printed = published[published["metric"] == "mean_accuracy"].set_index("method")["value"]
    # the printed Mean is the mean over the tasks (not of the group means), to its rounding
    assert (accuracy.mean(axis=1) - printed).abs().max() < 0.005
    if name == "vtab1k":
        groups = mean_columns(accuracy, VTAB_MEANS)
        assert (groups["mean (groups)"] - printed).abs().max() > 1  # the two overall means differ
        assert sorted(t for tasks in VTAB_GROUPS.values() for t in tasks) == sorted(accuracy.columns)


def with_params(runs: pd.DataFrame, recipes: dict[str, str]) -> pd.DataFrame:
    """``runs`` with the parameter records of a ViT-B/16 (85.8 M without classifier, 10 classes) and
    each method's recorded recipe: finetune trains everything, adapter 0.157 M (NOAH's size)."""
    classifier, backbone = 10 * 769, 85_798_656
    specific = {"finetune": backbone, "adapter": 156_768}
    return runs.assign(**{
        "params.backbone": backbone, "params.classifier": classifier,
        "params.task_specific": runs["method"].map(specific) + classifier,
        "params.shares_pretrained": runs["method"] != "finetune",
        "protocol.recipe": runs["method"].map(recipes), "protocol.batch_size": runs["method"].map(
            {"finetune": "384", "adapter": "64"})})


def test_parameter_columns_in_three_labelled_conventions_and_the_recipe_per_method():
    runs = with_params(records("vtab1k", TASKS, ("finetune", "adapter")),
                       {"finetune": "VPT finetune (KMnP/vpt configs/base-finetune.yaml)",
                        "adapter": "NOAH (ZhangYuanhan-AI/NOAH configs/Adapter/VTAB/slurm_train_adapter_vtab.sh)"})
    table = build_table(runs, VTAB1K)
    suite, paper = table.mean.loc["Adapter (suite)"], table.mean.loc["Adapter (paper) [src]"]
    assert suite["Params (M)"] == pytest.approx(0.156768) and paper["Params (M)"] == 0.16  # V-PETL's column
    assert table.mean.at["Full fine-tuning (suite)", "Params (M)"] == pytest.approx(85.798656)
    # Decathlon-style: 1 + 19 x task-specific / backbone; VPT's: 19 x ..., plus 1 only for a shared backbone
    full = (85_798_656 + 7690) / 85_798_656
    assert table.mean.at["Full fine-tuning (suite)", "#par (Decathlon)"] == pytest.approx(1 + 19 * full)
    assert table.mean.at["Full fine-tuning (suite)", "#par (VPT)"] == pytest.approx(19 * full)  # 19.00, not 20.00
    assert suite["#par (VPT)"] == pytest.approx(1 + 19 * (156_768 + 7690) / 85_798_656) == suite["#par (Decathlon)"]
    assert table.mean.at["Adapter Δ", "Params (M)"] == pytest.approx(0.156768 - 0.16)
    assert not table.bold_mask()[["Params (M)", "#par (Decathlon)", "#par (VPT)"]].any().any()  # no "best" size
    notes = "\n".join(table.footnotes)
    assert ("recipe: NOAH (ZhangYuanhan-AI/NOAH configs/Adapter/VTAB/slurm_train_adapter_vtab.sh) (adapter), "
            "VPT finetune (KMnP/vpt configs/base-finetune.yaml) (finetune)") in notes
    assert "batch_size: 384 (finetune), 64 (adapter)" in notes
    assert "Params (M): trainable parameters per task in millions without the new classifier" in notes
    assert "#par (VPT) = 19 × task-specific / backbone, plus 1" in notes
    assert "Paper rows report the best test accuracy over the checkpoints" in notes
    markdown = to_markdown(table)
    assert "| Params (M) | #par (Decathlon) | #par (VPT) |" in markdown.splitlines()[2]
    assert "| 0.16 | 1.04 | 1.04 |" in next(line for line in markdown.splitlines() if line.startswith("| Adapter (suite)"))


def test_fgvc_params_of_the_published_rows():
    table = build_table(with_params(records("fgvc", list(FGVC_DATASETS), ("adapter",)), {"adapter": "x"}), FGVC)
    assert table.mean.at["Adapter (paper) [src]", "Params (M)"] == 0.41  # another size than VTAB-1k's 0.16
    assert table.mean.at["LoRA (paper) [src]", "Params (M)"] == 0.77
    assert table.mean.at["Adapter (suite)", "#par (VPT)"] == pytest.approx(1 + 5 * (156_768 + 7690) / 85_798_656)
