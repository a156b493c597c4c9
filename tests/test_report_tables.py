"""Run records -> tables: loading, seed statistics, rendering, and golden files.

The golden outputs under ``tests/fixtures/sweep/expected/tables/`` are what the code makes
of the committed records in ``tests/fixtures/sweep/runs/`` (written by
``tests/fixtures/make_sweep.py``). After an intended change to the tables, regenerate and
review the diff::

    python -m spottune.report tests/fixtures/sweep --into tests/fixtures/sweep/expected --tables-only
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from spottune.report import load_records, write_all, write_summary
from spottune.report.__main__ import main
from spottune.report.render import Table, to_csv, to_latex, to_markdown
from spottune.report.tables import DECATHLON, MINI, STANDARD, build_table

SWEEP = Path(__file__).parent / "fixtures" / "sweep"
EXPECTED = SWEEP / "expected" / "tables"


@pytest.fixture(scope="module")
def records() -> pd.DataFrame:
    return load_records(SWEEP)


@pytest.fixture(scope="module")
def written(tmp_path_factory) -> Path:
    report = tmp_path_factory.mktemp("report")
    write_all(SWEEP, report_dir=report, figures_too=False)
    return report / "tables"


@pytest.mark.parametrize("name", sorted(p.name for p in EXPECTED.iterdir()))
def test_tables_match_golden_files(written, name):
    assert (written / name).read_text() == (EXPECTED / name).read_text(), (
        f"{name} changed; regenerate with the command in this module's docstring if intended")


def test_write_all_writes_exactly_the_golden_set(written):
    assert sorted(p.name for p in written.iterdir()) == sorted(p.name for p in EXPECTED.iterdir())


def test_records_one_row_per_run_with_status_and_flattened_fields(records):
    assert len(records) == len(list((SWEEP / "runs").iterdir()))
    assert records["status"].value_counts().to_dict() == {"done": 146, "started": 1, "failed": 1}
    for column in ("hparams.lr", "protocol.train_split", "params.task_specific",
                   "timing.train_seconds", "images.test", "history"):
        assert column in records.columns
    pending = records[records["status"] != "done"]
    assert pending["test_accuracy"].isna().all()
    assert not pending["has_policy"].any()
    assert records.loc[records["method"] == "spottune", "has_policy"].sum() == 21


def test_records_of_an_empty_output_folder(tmp_path):
    frame = load_records(tmp_path)
    assert frame.empty and {"run_id", "status", "method"} <= set(frame.columns)
    assert write_summary(tmp_path).empty
    assert (tmp_path / "tables" / "summary.md").read_text() == "No runs found.\n"


def test_summary_means_over_done_seeds_only(tmp_path, records):
    stats = write_summary(SWEEP, report_dir=tmp_path).set_index(["preset", "method", "dataset"])
    done = records[(records["status"] == "done") & (records["preset"] == "mini")]
    digits = done[(done["method"] == "finetune") & (done["dataset"] == "digits")]
    row = stats.loc[("mini", "finetune", "digits")]
    assert row["mean"] == pytest.approx(digits["test_accuracy"].mean())
    assert row["std"] == pytest.approx(digits["test_accuracy"].std(ddof=1))
    glyphs = stats.loc[("mini", "feature_extractor", "glyph_letters")]
    assert (glyphs["seeds"], glyphs["runs"]) == (2, 3)  # seed 1 started, never finished


def test_missing_run_prints_as_missing_never_zero(records):
    table = build_table(records, DECATHLON)
    cell = table.cells().at["Feature extractor (suite)", "ImNet"]
    assert cell == "–"
    assert table.cells().at["Feature extractor (suite)", "score"].endswith("†")


def test_decathlon_columns_are_keyed_by_domain_name(records):
    table = build_table(records, DECATHLON)
    assert list(table.mean.columns) == ["ImNet", "Airc.", "C100", "DPed", "DTD", "GTSR", "Flwr",
                                        "OGlt", "SVHN", "UCF", "mean", "score", "#par", "#par (pub.)"]
    suite = records[(records["preset"] == "decathlon") & (records["method"] == "finetune")]
    flowers = suite.loc[suite["dataset"] == "decathlon/vgg-flowers", "test_accuracy"].mean()
    assert table.mean.at["Finetune (suite)", "Flwr"] == pytest.approx(flowers)
    assert table.mean.at["Finetune (paper) [src]", "Flwr"] == 81.41
    assert table.mean.at["Finetune Δ", "Flwr"] == pytest.approx(flowers - 81.41)


def test_published_parameter_convention_beside_ours(records):
    """#par counts the new classifier; #par (pub.) does not, as the published tables: the
    paper's numbers sit in that column, and the Δ compares like with like."""
    table = build_table(records, DECATHLON)
    targets = records[(records["preset"] == "decathlon") & (records["method"] == "feature_extractor")
                      & (records["dataset"] != "decathlon/imagenet12")]
    ours = 1 + 9 * targets["params.task_specific"].mean() / targets["params.backbone"].mean()
    assert table.mean.at["Feature extractor (suite)", "#par"] == pytest.approx(ours)
    assert table.mean.at["Feature extractor (suite)", "#par (pub.)"] == pytest.approx(1.0)  # classifier only
    assert np.isnan(table.mean.at["Finetune (paper) [src]", "#par"])
    assert table.mean.at["Finetune (paper) [src]", "#par (pub.)"] == 10
    assert table.mean.at["Finetune Δ", "#par (pub.)"] == pytest.approx(
        table.mean.at["Finetune (suite)", "#par (pub.)"] - 10)
    assert any("#par (pub.): the same without it" in line for line in table.footnotes)


def test_footnotes_name_the_weights_and_why_imnet_is_empty(records):
    """Every table says where the backbone's weights come from; the Decathlon table without a
    source-domain accuracy says why its ImNet column is empty."""
    decathlon = build_table(records, DECATHLON)
    assert any("weights = released file sha256:9e2d00000000" in line for line in decathlon.footnotes)
    assert any("weights = suite pretraining on mini_source spec:5b1f3c2e9a7d" in line
               for line in build_table(records, MINI).footnotes)
    targets_only = records[records["dataset"] != "decathlon/imagenet12"]
    table = build_table(targets_only, DECATHLON)
    assert np.isnan(table.mean.at["Finetune (suite)", "ImNet"])
    assert "ImNet empty: decathlon/imagenet12 not found (fixture), so not measured." in table.footnotes
    mixed = records.copy()
    spottune = mixed["method"] == "spottune"
    mixed.loc[spottune, "pretraining.kind"] = "suite"
    mixed.loc[spottune, "pretraining.dataset"] = "decathlon/imagenet12"
    mixed.loc[spottune, "pretraining.id"] = "abcdef0123456789"
    mixed.loc[spottune, "pretraining.series_adapters"] = True
    note = next(line for line in build_table(mixed, DECATHLON).footnotes if "weights" in line)
    assert ("weights: released file sha256:9e2d00000000 (feature_extractor, finetune), suite pretraining on "
            "decathlon/imagenet12 spec:abcdef012345 with series adapters (spottune)") in note


def test_mini_scores_against_its_own_finetune_runs(records):
    table = build_table(records, MINI)
    # each seed against finetune's run of the same seed: 250 per dataset, 1000 where that run is
    # perfect (the score's limit at a perfect baseline, spottune.visual_decathlon)
    own = records[(records["preset"] == "mini") & (records["method"] == "finetune") & (records["status"] == "done")]
    per_seed = own.groupby("seed")["test_accuracy"].apply(lambda a: sum(1000 if x == 100 else 250 for x in a))
    assert table.mean.at["finetune (suite)", "score"] == pytest.approx(per_seed.mean())
    assert table.mean.at["feature_extractor (suite)", "#par"] == pytest.approx(1, abs=0.05)
    assert table.mean.at["finetune (suite)", "#par"] == pytest.approx(4, abs=0.05)


def test_no_table_for_a_preset_without_runs(records):
    assert build_table(records[records["preset"] != "mini"], MINI) is None


def test_bold_marks_every_tie_and_skips_difference_rows():
    table = Table(name="t", title="T", mean=pd.DataFrame({"a": [1.0, 1.001, 5.0]},
                                                         index=["x", "y", "Δ"]),
                  best={"a": "max"}, unranked_rows={"Δ"}, signed_rows={"Δ"})
    assert table.bold_mask()["a"].tolist() == [True, True, False]
    markdown = to_markdown(table)
    assert "| x | **1.00** |" in markdown and "| Δ | +5.00 |" in markdown


def test_latex_escapes_and_uses_booktabs():
    table = Table(name="t", title="100% & more", index_name="#par_x",
                  mean=pd.DataFrame({"a_b": [1.0, float("nan")]}, index=["r", "s"]),
                  low=pd.DataFrame({"a_b": [0.5, float("nan")]}, index=["r", "s"]),
                  high=pd.DataFrame({"a_b": [1.5, float("nan")]}, index=["r", "s"]))
    latex = to_latex(table)
    assert r"\caption{100\% \& more}" in latex and r"\#par\_x & a\_b \\" in latex
    assert r"r & 1.00 $\pm$ 0.50 \\" in latex and r"s & -- \\" in latex
    assert all(rule in latex for rule in (r"\toprule", r"\midrule", r"\bottomrule"))
    assert to_csv(table).splitlines() == ["#par_x,a_b,a_b_low,a_b_high", "r,1.0000,0.5000,1.5000",
                                          "s,,,"]


def test_cells_show_symmetric_intervals_as_plus_minus_else_bounds_and_unusual_seed_counts():
    index, columns = ["r", "s", "t"], ["a", "score"]
    table = Table(name="t", title="T", decimals={"score": 0},
                  mean=pd.DataFrame({"a": [1.0, 2.0, 3.0], "score": [100.0, 200.0, 300.0]}, index),
                  low=pd.DataFrame({"a": [0.5, float("nan"), 2.0], "score": [90.0, 150.0, 280.0]}, index),
                  high=pd.DataFrame({"a": [1.5, float("nan"), 4.0], "score": [110.0, 260.0, 320.0]}, index),
                  seeds=pd.DataFrame({"a": [3, 1, 3], "score": [3, 3, 2]}, index, columns))
    cells = table.cells()
    assert cells["a"].tolist() == ["1.00 ± 0.50", "2.00 (n=1)", "3.00 ± 1.00"]
    assert cells["score"].tolist() == ["100 ± 10", "200 [150, 260]", "300 ± 20 (n=2)"]
    assert table.usual_seeds() == 3
    assert table.notes()[0] == "n = 3 seeds behind each number unless marked (n=k)."


def test_cli_help_and_tables_only(tmp_path, capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(["--help"])
    assert exit_info.value.code == 0 and "--tables-only" in capsys.readouterr().out
    main([str(SWEEP), "--into", str(tmp_path), "--tables-only", "--baseline", "spottune"])
    assert (tmp_path / "tables" / "decathlon.tex").exists()
    assert not (tmp_path / "figures").exists()
    paired = (tmp_path / "tables" / "paired_mini.md").read_text()
    assert paired.startswith("### Paired comparison with spottune, preset mini")
    assert "No figures" in (tmp_path / "report.html").read_text()


@pytest.mark.parametrize("layout", [DECATHLON, STANDARD])
def test_every_published_number_carries_its_provenance(records, layout):
    table = build_table(records, layout)
    cells = table.cells()
    for name in (row for row in cells.index if "(paper)" in row):
        if not any(tag in name for tag in ("[src]", "[code]", "[unverified]")):
            printed = cells.loc[name][cells.loc[name] != "–"]
            assert printed.str.contains(r"\[(?:src|code|unverified)\]").all(), name
    assert any("[unverified] recalled" in note for note in table.footnotes)


def test_imnet_column_from_the_recorded_pretraining_accuracy(records):
    with_source = records.assign(**{"pretraining.dataset": "decathlon/imagenet12",
                                    "pretraining.test_accuracy": 58.5})
    table = build_table(with_source, DECATHLON)
    assert table.mean.at["Feature extractor (suite)", "ImNet"] == pytest.approx(58.5)
    assert not table.cells().at["Feature extractor (suite)", "score"].endswith("†")  # ten domains now
    finetune = records[(records["preset"] == "decathlon") & (records["method"] == "finetune")]
    own = finetune.loc[finetune["dataset"] == "decathlon/imagenet12", "test_accuracy"].mean()
    assert table.mean.at["Finetune (suite)", "ImNet"] == pytest.approx(own)  # a real source run wins


def test_routing_claims_state_each_datasets_fine_tuned_fraction_over_seeds(tmp_path):
    """Seeds fine-tuning 3/4, 2/4 and 4/4 of their decisions on one dataset: mean 0.75 with its
    t-interval (clipped at 1), one seed's 0.25 alone on the other; runs without a policy ignored."""
    from spottune.storage.records import RunFolder
    from spottune.report.claims import markdown_list, routing_claims
    from spottune.report.statistics import t_interval

    rows = []
    for dataset, ones in (("digits", (3, 2, 4)), ("letters", (1,))):
        for seed, k in enumerate(ones):
            folder = tmp_path / f"{dataset}{seed}"
            folder.mkdir()
            decisions = np.zeros((2, 2))
            decisions.flat[:k] = 1
            RunFolder(folder).write_policy(decisions, [0, 1], [0, 1], np.zeros((1, 2)))
            rows.append({"preset": "p", "method": "spottune", "dataset": dataset, "status": "done",
                         "has_policy": True, "run_dir": str(folder)})
    rows.append({"preset": "p", "method": "finetune", "dataset": "digits", "status": "done",
                 "has_policy": False, "run_dir": str(tmp_path / "none")})
    records = pd.DataFrame(rows)
    low = t_interval([0.75, 0.5, 1.0]).low
    assert routing_claims(records, "p") == [
        "**spottune** routing (test images x 2 blocks taking the fine-tuned copy, mean over 1/3 seeds "
        f"[95 % t-interval]): digits 0.75 [{low:.2f}, 1.00], letters 0.25."]
    assert markdown_list(routing_claims(records, "other")) == ""


def test_routing_claims_of_the_sweep_are_its_policies_means(records):
    from spottune.storage.records import RunFolder
    from spottune.report.claims import routing_claims

    runs = records[(records["method"] == "spottune") & (records["status"] == "done") & records["has_policy"]]
    for preset, group in runs.groupby("preset"):
        (sentence,) = routing_claims(records, preset)
        for dataset, folders in group.groupby("dataset")["run_dir"]:
            mean = np.mean([RunFolder(f).read_policy()["decisions"].mean() for f in folders])
            assert f"{dataset} {mean:.2f}" in sentence


def test_plateau_claims_state_training_and_test_accuracy_at_both_budgets():
    """The last 5 epochs' training accuracy and the test accuracy of each run found in both
    grids (a run only the shorter grid has, or another preset's, is left out)."""
    from spottune.report.claims import plateau_claims

    def run(method, seed, epochs, train, test, preset="p"):
        history = [{"train_accuracy": 0.0}] * (epochs - 5) + [{"train_accuracy": a} for a in train]
        return {"preset": preset, "method": method, "dataset": "digits", "seed": seed, "status": "done",
                "hparams.epochs": epochs, "history": history, "test_accuracy": test}

    short = pd.DataFrame([run("spottune", 0, 60, [90, 92, 94, 96, 98], 90.0),
                          run("spottune", 1, 60, [90] * 5, 91.0), run("finetune", 0, 60, [99] * 5, 93.0)])
    longer = pd.DataFrame([run("spottune", 0, 120, [97, 98, 99, 100, 96], 92.5),
                           run("finetune", 0, 120, [99] * 5, 93.0, preset="other")])
    assert plateau_claims(short, longer, "p") == [
        "**spottune**, seed 0, 60 -> 120 epochs: training accuracy (mean of the last 5 epochs) "
        "digits 94.0 -> 98.0 (+4.0); test accuracy digits 90.0 -> 92.5 (+2.5).",
        "Within 2 points of the longer run's training accuracy on every dataset (the mean rise over the seeds run "
        "at both budgets): no method; still rising by more: spottune (digits +4.0, 1 seed)."]
    longer = pd.concat([longer, pd.DataFrame([run("spottune", 1, 120, [92] * 5, 91.5),
                                              run("finetune", 0, 120, [100] * 5, 93.0)])])
    claims = plateau_claims(short, longer, "p")
    assert claims[1].startswith(
        "**spottune**, seeds 0, 1, 60 -> 120 epochs: training accuracy (mean of the last 5 epochs) "
        "digits seed 0 94.0 -> 98.0 (+4.0), digits seed 1 90.0 -> 92.0 (+2.0); test accuracy")
    assert claims[3] == ("The mean rise where several seeds ran at both budgets [95 % t-interval over the seeds]: "
                         "spottune digits +3.0 [-9.7, +15.7] (2 seeds).")
    # the mean of +4.0 and +2.0 is beyond the tolerance
    assert claims[2] == ("Within 2 points of the longer run's training accuracy on every dataset (the mean rise over "
                         "the seeds run at both budgets): finetune; still rising by more: spottune (digits +3.0, "
                         "mean of 2 seeds).")
    # one seed's +4.0 beside another's +0.0 is a mean of +2.0: within it
    longer = pd.DataFrame([run("spottune", 0, 120, [97, 98, 99, 100, 96], 92.5),
                           run("spottune", 1, 120, [90] * 5, 91.5), run("finetune", 0, 120, [100] * 5, 93.0)])
    assert plateau_claims(short, longer, "p")[2].endswith("at both budgets): finetune, spottune.")


def test_plateau_verdict_is_calibrated_on_simulated_rises():
    """The verdict as a decision rule. Null: a method already at its plateau, each seed's rise the
    difference of two independent final training accuracies with a per-seed spread of 0.87 points
    (stochastic fine-tuning's over the 5 seeds of mini-effnet's digits at 240 epochs), so
    N(0, 0.87 * sqrt(2)). Over 5 seeds the mean rule calls it still rising in well under 5 % of
    draws, where a rule on every run would in about a fifth; a planted rise of 3.5 points is
    called in nearly every draw, and one of 1 point in almost none."""
    from spottune.report.claims import PLATEAU_TOLERANCE, plateau_verdict
    from spottune.report.statistics import t_interval

    rng = np.random.default_rng(0)
    draws = rng.normal(0.0, 0.87 * np.sqrt(2), size=(2000, 5))

    def called_rising(rises: np.ndarray) -> float:
        return float(np.mean(["still rising" in plateau_verdict({"m": {"digits": t_interval(row)}}) for row in rises]))

    assert called_rising(draws) < 0.01
    assert np.mean((draws > PLATEAU_TOLERANCE).any(axis=1)) > 0.15  # the rule on every run
    assert called_rising(draws + 3.5) > 0.95
    assert called_rising(draws + 1.0) < 0.05


def test_plateau_claims_refuse_a_longer_grid_whose_run_is_no_longer():
    """Once a preset's budget grows to the longer grid's (digits: 120 -> 240 epochs), the longer
    grid holds the very same run: comparing it with itself would read as "at its plateau"."""
    from spottune.report.claims import plateau_claims

    def run(epochs, train):
        return {"preset": "p", "method": "spottune", "dataset": "digits", "seed": 0, "status": "done",
                "hparams.epochs": epochs, "history": [{"train_accuracy": train}] * epochs, "test_accuracy": 90.0}

    with pytest.raises(ValueError, match=r"no longer than the grid's: spottune digits seed 0 \(240 -> 240 epochs\)"):
        plateau_claims(pd.DataFrame([run(240, 95.0)]), pd.DataFrame([run(240, 95.0)]), "p")
    assert plateau_claims(pd.DataFrame([run(240, 95.0)]), pd.DataFrame([run(480, 96.0)]), "p")[0].startswith(
        "**spottune**, seed 0, 240 -> 480 epochs")


def test_runtime_claim_sums_the_runs_own_times_per_dataset():
    """Training plus evaluation seconds of the done runs of the preset, in minutes, largest dataset
    first; another preset's runs and unfinished runs are left out."""
    from spottune.report.claims import runtime_claim

    def run(dataset, train_s, eval_s, preset="p", status="done"):
        return {"preset": preset, "status": status, "dataset": dataset, "timing.train_seconds": train_s,
                "timing.eval_seconds": eval_s, "compute.device": "cpu", "compute.cpu": "Xeon",
                "compute.torch_threads": 1}

    records = pd.DataFrame([run("digits", 570, 30), run("digits", 1170, 30), run("fonts", 1860, 0),
                            run("digits", 6000, 0, preset="other"), run("digits", 6000, 0, status="running")])
    assert runtime_claim(records, "p") == (
        "The 3 runs' own training and evaluation times sum to 61 minutes (fonts 31 (1 run), digits 30 (2 runs); "
        "cpu, Xeon, 1 thread); data loading, start-up, checkpoints and setup are not counted.")


def test_plateau_claims_name_the_datasets_whose_longer_runs_ran_on_other_compute():
    from spottune.report.claims import plateau_claims

    def run(dataset, epochs, cpu):
        return {"preset": "p", "method": "finetune", "dataset": dataset, "seed": 0, "status": "done",
                "hparams.epochs": epochs, "history": [{"train_accuracy": 99.0}] * epochs, "test_accuracy": 90.0,
                "compute.device": "cpu", "compute.cpu": cpu, "compute.torch_threads": 1}

    short = pd.DataFrame([run("digits", 240, "Xeon"), run("fonts", 120, "Xeon")])
    longer = pd.DataFrame([run("digits", 480, "EPYC"), run("fonts", 240, "Xeon")])
    assert plateau_claims(short, longer, "p")[-1] == (
        "The longer runs on digits ran on cpu, EPYC, 1 thread, the grid's on cpu, Xeon, 1 thread: the same seed "
        "follows another trajectory on other compute, so there a rise compares two draws as well as two budgets.")
    assert len(plateau_claims(short, longer.assign(**{"compute.cpu": "Xeon"}), "p")) == 2
