"""A row is one configuration: what --set and --sweep change is recorded and labels the row,
values are normalised before hashing, and runs whose hyperparameters differ never share a cell."""
from __future__ import annotations

import importlib
import json
from pathlib import Path

import pytest

from spottune.planning.grid import make_grid, parse_sweeps
from spottune.storage.records import RunSpec
from spottune.report import load_records
from spottune.report.comparison import paired_comparison
from spottune.report.summary import summary_tables
from spottune.report.aggregate import seed_stats

importlib.import_module("examples.my_method")  # registers "layerwise_lr" (default decay 0.8)


def test_an_int_for_a_float_default_is_the_same_run():
    epochs = make_grid("mini").runs()[0].hparams["epochs"]
    as_int = make_grid("mini", ["layerwise_lr"], ["digits"], [0], {"decay": 1, "epochs": float(epochs)}).runs()
    as_float = make_grid("mini", ["layerwise_lr"], ["digits"], [0], {"decay": 1.0, "epochs": epochs}).runs()
    assert [s.run_id for s in as_int] == [s.run_id for s in as_float]
    assert as_int[0].hparams["decay"] == 1.0 and isinstance(as_int[0].hparams["epochs"], int)
    assert as_int[0].configuration == {"decay": 1.0}  # the preset's own epochs: not a change


def test_a_sweep_is_one_run_per_value_for_the_methods_that_have_the_key():
    grid = make_grid("mini", ["layerwise_lr", "finetune"], ["digits"], [0, 1], sweeps=parse_sweeps(["decay=0.8,0.5"]))
    runs = grid.runs()
    rows = sorted({spec.row for spec in runs})
    assert rows == ["finetune", "layerwise_lr", "layerwise_lr [decay=0.5]"]  # 0.8 is the default
    assert len(runs) == 6 and len({spec.run_id for spec in runs}) == 6  # finetune runs once per seed


@pytest.mark.parametrize("items, problem", [
    (["decay"], "--sweep expects KEY=V1,V2,..."),
    (["decay="], "--sweep expects KEY=V1,V2,..."),
    (["decay=1,2", "decay=3"], "--sweep decay is given twice"),
])
def test_bad_sweeps_are_one_clear_error(items, problem):
    with pytest.raises(ValueError, match=problem.replace(".", r"\.")):
        parse_sweeps(items)


def test_a_sweep_no_method_has_or_a_key_both_set_and_swept_is_an_error():
    with pytest.raises(ValueError, match="--sweep decay: no method of this grid has it"):
        make_grid("mini", ["finetune"], ["digits"], [0], sweeps={"decay": [0.5, 0.8]})
    with pytest.raises(ValueError, match="decay: both --set and --sweep"):
        make_grid("mini", ["layerwise_lr"], ["digits"], [0], {"decay": 0.5}, {"decay": [0.5, 0.8]})


def _write(root: Path, spec: RunSpec, accuracy: float) -> None:
    """A done run folder for ``spec`` (config.json as the engine writes it)."""
    folder = root / "runs" / spec.run_id
    folder.mkdir(parents=True)
    (folder / "config.json").write_text(json.dumps({"run_id": spec.run_id, **spec.record()}))
    (folder / "metrics.json").write_text(json.dumps({"run_id": spec.run_id, **spec.identity(),
                                                     "test_accuracy": accuracy}))
    (folder / "done").write_text("")


def test_two_set_values_in_one_output_are_two_labelled_rows(tmp_path):
    default = make_grid("mini", ["layerwise_lr", "finetune"], ["digits"], [0, 1, 2]).runs()
    changed = make_grid("mini", ["layerwise_lr"], ["digits"], [0, 1, 2], {"decay": 3}).runs()
    for number, spec in enumerate(default + changed):
        _write(tmp_path, spec, 50.0 + number)
    records = load_records(tmp_path)
    assert sorted(records["method"].unique()) == ["finetune", "layerwise_lr", "layerwise_lr [decay=3.0]"]
    assert set(records["method_name"]) == {"finetune", "layerwise_lr"}
    table = summary_tables(records, seed_stats(records), paired_comparison(records))["mini"]
    assert table.seeds.loc[["layerwise_lr", "layerwise_lr [decay=3.0]"], "digits"].tolist() == [3, 3]
    comparison = paired_comparison(records)
    assert sorted(comparison["method"]) == ["layerwise_lr", "layerwise_lr [decay=3.0]"]


def test_a_whole_grid_override_labels_nothing(tmp_path):
    for spec in make_grid("mini", ["layerwise_lr", "finetune"], ["digits"], [0], {"epochs": 1}).runs():
        _write(tmp_path, spec, 60.0)
    assert sorted(load_records(tmp_path)["method"]) == ["finetune", "layerwise_lr"]


def test_a_preset_edited_to_an_earlier_set_keeps_one_row(tmp_path):
    """Runs launched with ``--set decay=0.5`` record it; once the preset's default becomes 0.5,
    runs launched without it record nothing, yet both ran decay 0.5: one row of 4 seeds."""
    earlier = make_grid("mini", ["layerwise_lr"], ["digits"], [0, 1], {"decay": 0.5}).runs()
    later = [RunSpec(s.method, s.dataset, s.seed + 2, s.preset, s.hparams) for s in earlier]  # no configuration
    for spec in earlier + later:
        _write(tmp_path, spec, 55.0)
    records = load_records(tmp_path)
    assert records["method"].tolist() == ["layerwise_lr"] * 4
    assert sorted(records["seed"]) == [0, 1, 2, 3]


def test_a_budget_that_differs_between_datasets_only_keeps_one_row(tmp_path):
    """mini-effnet's case: digits' seed 0 ran with ``--set epochs=16`` (recorded), then the preset
    gave digits 16 epochs for its other seeds (recorded nothing), other tasks keep the preset's
    value and recorded a ``--set`` of it: one row per method, each cell of one budget."""
    earlier = make_grid("mini", ["finetune"], ["digits"], [0], {"epochs": 16}).runs()
    later = [RunSpec(s.method, s.dataset, 1, s.preset, s.hparams) for s in earlier]
    near = make_grid("mini", ["finetune"], ["fmnist_heldout"], [0, 1], {"epochs": 8}).runs()
    for spec in earlier + later + near:
        _write(tmp_path, spec, 65.0)
    records = load_records(tmp_path)
    assert records["method"].tolist() == ["finetune"] * 4
    assert records.groupby("dataset")["hparams.epochs"].unique().map(list).to_dict() == {
        "digits": [16], "fmnist_heldout": [8]}


def test_runs_whose_hyperparameters_differ_never_share_a_cell_even_without_a_record_of_why(tmp_path):
    """Records written before ``configuration`` existed, or a preset edited between launches."""
    for lr in (0.05, 0.1):
        for spec in make_grid("mini", ["finetune"], ["digits"], [0, 1], {"lr": lr}).runs():
            _write(tmp_path, RunSpec(spec.method, spec.dataset, spec.seed, spec.preset, spec.hparams), 70.0)
    records = load_records(tmp_path)
    counts = records.groupby("method").size().to_dict()
    assert counts == {"finetune [lr=0.05]": 2, "finetune [lr=0.1]": 2}
    assert (records["status"] == "done").all()


def test_the_configuration_reaches_config_json(tmp_path):
    spec = make_grid("mini", ["layerwise_lr"], ["digits"], [0], {"decay": 0.5}).runs()[0]
    assert RunSpec.from_record(json.loads(json.dumps(spec.record()))) == spec
    assert RunSpec.from_record(spec.record()).configuration == {"decay": 0.5}
    assert spec.row == "layerwise_lr [decay=0.5]"
