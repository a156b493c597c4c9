"""The per-task search (:mod:`spottune.planning.search`) and ``--search`` of the command line, on a tiny
preset over the embedded ``digits``. The embedded loaders take no split options (they ignore
``eval_split``), so the tiny search's selection split ``eval_split: holdout`` only gives the
selection runs their own run ids and records: their accuracy is digits' test split here."""
from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest
import yaml

from spottune import cli
from spottune.planning.grid import make_grid
from spottune.storage.records import RunFolder, RunSpec
from spottune.report import load_records
from spottune.planning.search import Search, is_selection

TINY = {
    "name": "tiny-search",
    "backbone": {"arch": "resnet26", "width": 0.25, "input_size": 32, "pretrained": {"kind": "none"}},
    "datasets": ["digits"],
    "methods": ["feature_extractor"],
    "seeds": [0],
    "hparams": {"optimizer": "sgd", "lr": 0.05, "momentum": 0.9, "weight_decay": 0.0005, "epochs": 1,
                "batch_size": 64, "eval_batch_size": 256, "lr_milestones": [], "lr_gamma": 0.1,
                "precision": "fp32"},
    "data_options": {},
    "protocol": {"selection": "none"},
    "search": {"data_options": {"eval_split": "holdout"}, "hparams": {"lr": [0.1, 0.01]}},
}


def write_preset(tmp_path: Path, **changes: object) -> str:
    path = tmp_path / "tiny-search.yaml"
    path.write_text(yaml.safe_dump({**TINY, **changes}))
    return str(path)


def fake_done(output: Path, spec: RunSpec, accuracy: float) -> None:
    """A done run record of ``spec`` scoring ``accuracy`` (no training)."""
    folder = RunFolder.of(output, spec)
    folder.write_config({"run_id": spec.run_id, **spec.identity()})
    folder.write_metrics({"run_id": spec.run_id, "method": spec.method, "dataset": spec.dataset, "seed": spec.seed,
                          "preset": spec.preset, "test_accuracy": accuracy})
    folder.mark_done()


def test_selection_runs_cover_every_point_seed_and_pair_on_the_selection_split(tmp_path):
    space = {"hparams": {"lr": [0.1, 0.01], "weight_decay": [0.0, 0.001]},
             "method_hparams": {"finetune": {"lr": [0.2, 0.02, 0.002]}}, "data_options": {"eval_split": "holdout"}}
    grid = make_grid(write_preset(tmp_path, search=space), methods=["feature_extractor", "finetune"],
                     datasets=["digits", "glyph_letters"], seeds=[0, 1])
    runs = Search(grid).selection_runs()
    # 2 datasets x 2 seeds x (4 points of feature_extractor + 3 of finetune: its own space, not merged)
    assert len(runs) == 2 * 2 * (4 + 3) == len({r.run_id for r in runs})
    assert all(is_selection(r.hparams) and r.hparams["data"] == {"eval_split": "holdout"} for r in runs)
    first = [(r.hparams["lr"], r.hparams["weight_decay"], r.seed) for r in runs[:8]]  # digits, feature_extractor
    assert first == [(lr, wd, seed) for lr in (0.1, 0.01) for wd in (0.0, 0.001) for seed in (0, 1)]
    assert {r.hparams["lr"] for r in runs if r.method == "finetune"} == {0.2, 0.02, 0.002}
    assert {r.hparams["weight_decay"] for r in runs if r.method == "finetune"} == {0.0005}  # the preset's
    assert not {r.run_id for r in runs} & {r.run_id for r in grid.runs()}


def test_a_method_with_an_empty_space_is_not_searched_and_keeps_its_recipe(tmp_path):
    space = {"hparams": {"lr": [0.1, 0.01]}, "method_hparams": {"finetune": {}},
             "data_options": {"eval_split": "holdout"}}
    grid = make_grid(write_preset(tmp_path, search=space), methods=["feature_extractor", "finetune"], seeds=[0])
    search = Search(grid)
    assert {r.method for r in search.selection_runs()} == {"feature_extractor"}
    assert [r.method for r in search.final_runs({})] == ["finetune"]  # runs at once, with the grid's values


def test_choice_is_the_best_seed_mean_ties_to_the_smallest_lr_then_declared_order(tmp_path):
    space = {"hparams": {"lr": [0.1, 0.01, 0.001], "weight_decay": [0.0, 0.001]},
             "data_options": {"eval_split": "holdout"}}
    search = Search(make_grid(write_preset(tmp_path, search=space), seeds=[0, 1]))
    runs = search.selection_runs()  # points in order, two seeds each
    # per point (lr, wd): (0.1,0) 50/70 -> 60; (0.1,.001) 80/40 -> 60; (0.01,0) 90/50 -> 70;
    # (0.01,.001) 70/70 -> 70; (0.001,0) 40/60 -> 50; (0.001,.001) 10/10 -> 10
    accuracies = [50, 70, 80, 40, 90, 50, 70, 70, 40, 60, 10, 10]
    for spec, accuracy in zip(runs, accuracies):
        fake_done(tmp_path, spec, accuracy)
    choices, waiting = search.choose(tmp_path)
    choice = choices[("feature_extractor", "digits")]
    # 70 twice, both at lr 0.01: the first declared (weight_decay 0.0)
    assert (choice.point, choice.accuracy, choice.candidates, waiting) == ({"lr": 0.01, "weight_decay": 0.0},
                                                                           70.0, 6, [])
    fake_done(tmp_path, runs[10], 90)  # (0.001, 0.001) now 90/10 -> 50; (0.001, 0) raised to 70 below
    fake_done(tmp_path, runs[9], 100)  # (0.001, 0.0): 40/100 -> 70 ties 70 at a smaller lr
    assert search.choose(tmp_path)[0][("feature_extractor", "digits")].point == {"lr": 0.001, "weight_decay": 0.0}
    finals = search.final_runs(search.choose(tmp_path)[0])
    assert [f.seed for f in finals] == [0, 1] and all(not is_selection(f.hparams) for f in finals)
    assert all((f.hparams["lr"], f.hparams["weight_decay"], f.hparams["data"]) == (0.001, 0.0, {}) for f in finals)
    assert finals[0].hparams["protocol"]["selection"] == \
        "lr 0.001 weight_decay 0 (best top-1 of 6 points on eval_split holdout)"


def test_a_pair_with_a_selection_run_not_done_has_no_choice_and_no_final_runs(tmp_path):
    search = Search(make_grid(write_preset(tmp_path)))
    fake_done(tmp_path, search.selection_runs()[0], 50)
    choices, waiting = search.choose(tmp_path)
    assert choices == {} and search.final_runs(choices) == []
    assert waiting == ["no choice for feature_extractor / digits: 1 of its 2 selection runs not done"]


def test_the_report_leaves_selection_runs_out(tmp_path):
    search = Search(make_grid(write_preset(tmp_path)))
    for spec, accuracy in zip(search.selection_runs(), [30, 60]):
        fake_done(tmp_path, spec, accuracy)
    final = search.final_runs(search.choose(tmp_path)[0])[0]
    fake_done(tmp_path, final, 55)
    records = load_records(tmp_path)
    assert list(records["run_id"]) == [final.run_id] and list(records["test_accuracy"]) == [55]


@pytest.mark.parametrize("changes, argv, message", [
    ({"search": None}, [], "preset tiny-search declares no search space (a `search:` block); --search needs one"),
    ({}, ["--cluster", "slurm"], "--search on --cluster slurm needs --wait"),
    ({}, ["--set", "lr=0.3"], "--set lr: searched by --search"),
])
def test_search_refusals_are_one_line_and_exit_2(tmp_path, capsys, changes, argv, message):
    preset = write_preset(tmp_path, **changes)
    assert cli.main(["--preset", preset, "--search", "--output", str(tmp_path / "out"), *argv]) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"error: {message}") and err.count("\n") == 1
    assert not (tmp_path / "out").exists()


def test_dry_run_lists_both_phases_with_counts(tmp_path, capsys):
    argv = ["--preset", write_preset(tmp_path), "--search", "--seeds", "0,1", "--output", str(tmp_path), "--dry-run"]
    assert cli.main(argv) == 0
    lines = capsys.readouterr().out.splitlines()
    phase2 = next(i for i, line in enumerate(lines) if line.startswith("phase 2, final runs"))
    assert lines[0].startswith("phase 1, selection runs") and "2 of them wait for phase 1's choice" in lines[phase2]
    assert sum(" new " in line for line in lines[1:5]) == 4  # 2 points x 2 seeds
    assert lines[5].startswith("4 selection runs (tiny-search)")
    assert all(line.startswith("(choice)      awaiting") for line in lines[phase2 + 1:phase2 + 3])
    assert lines[phase2 + 3].startswith("2 final runs (tiny-search)")
    assert sum(line.startswith("estimated GPU time of the runs: ") for line in lines) == 2
    recipes = lines.index("recipes (what each method trains with) and search spaces:")
    assert lines[recipes + 1] == (
        "  feature_extractor: the preset's hparams: optimizer sgd, lr 0.05, weight_decay 0.0005, weight_decay_exempt "
        "none, batch_size 64, schedule constant lr for 1 epochs; search: lr [0.1, 0.01] (2 points per dataset)")


def test_vtab1k_dry_run_lists_each_methods_recipe_and_search_space(capsys, tmp_path):
    argv = ["--preset", "vtab1k", "--datasets", "vtab1k/cifar,vtab1k/eurosat", "--methods",
            "vpt_deep,adapter,ssf,finetune", "--search", "--dry-run", "--output", str(tmp_path)]
    assert cli.main(argv) == 0
    lines = capsys.readouterr().out.splitlines()
    recipes = {line.split(":")[0].strip(): line for line in lines[lines.index(
        "recipes (what each method trains with) and search spaces:") + 1:]}
    assert recipes["vpt_deep"].startswith("  vpt_deep: VPT prompt (KMnP/vpt configs/base-prompt.yaml): optimizer sgd, ")
    assert recipes["vpt_deep"].endswith("x num_prompts [1, 5, 10, 50, 100, 200] (240 points per dataset)")
    assert "weight_decay_exempt 1d, batch_size 64, drop_path 0.1" in recipes["adapter"]
    assert recipes["adapter"].endswith("; search: none (the values above)")
    assert ("lr per dataset 0.003..0.005, weight_decay per dataset 5e-05..0.05, weight_decay_exempt 1d, "
            "batch_size 64, drop_path per dataset 0..0.2") in recipes["ssf"]
    assert "search: lr [0.0075, 0.0015, 0.00075, 0.00015] x weight_decay [0.01] (4 points" in recipes["finetune"]
    # phase 1 holds the searched methods' selection runs only: 2 tasks x (240 + 4) points
    assert any(line.startswith("488 selection runs (vtab1k)") for line in lines)

@pytest.mark.slow  # three one-epoch runs: about 7 s on one thread
def test_search_end_to_end_then_idempotent_rerun(tmp_path, capsys):
    argv = ["--preset", write_preset(tmp_path), "--search", "--output", str(tmp_path), "--no-progress",
            "--cluster", "inline"]
    assert cli.main(argv) == 0
    out = capsys.readouterr().out
    folders = sorted((tmp_path / "runs").iterdir())
    assert len(folders) == 3 and all((f / "done").exists() for f in folders)  # 2 selection runs + 1 final run
    records = [(RunFolder(f).read_config()["hparams"], RunFolder(f).read_metrics()["test_accuracy"]) for f in folders]
    selection = {hp["lr"]: accuracy for hp, accuracy in records if is_selection(hp)}
    best = max(selection, key=lambda lr: (selection[lr], -lr))
    (final, _), = [(hp, accuracy) for hp, accuracy in records if not is_selection(hp)]
    assert final["lr"] == best and final["data"] == {} and final["protocol"]["selection"].startswith(f"lr {best:g} ")
    assert f"chosen for feature_extractor / digits: lr {best:g} " in out
    table = pd.read_csv(tmp_path / "tables" / "summary.csv")
    assert list(table["runs"]) == [1]  # the final run only
    note = f"selection = lr {best:g} (best top-1 of 2 points on eval_split holdout)"  # the protocol footnote
    assert note in (tmp_path / "report.html").read_text()
    mtimes = [(f / "metrics.json").stat().st_mtime_ns for f in folders]
    assert cli.main(argv) == 0
    assert [(f / "metrics.json").stat().st_mtime_ns for f in folders] == mtimes  # nothing trained twice
    assert len(list((tmp_path / "runs").iterdir())) == 3
    capsys.readouterr()
    assert cli.main(argv[:-2] + ["--dry-run"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert [line.split()[1] for line in lines if " seed " in line] == ["done"] * 3
