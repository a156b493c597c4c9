from __future__ import annotations

import pytest

from spottune.storage import records
from spottune.planning.grid import load_preset, make_grid, parse_overrides, resolve_hparams
from spottune.storage.records import RunFolder, Status


def test_parse_overrides_reads_yaml_values():
    assert parse_overrides(["epochs=1", "lr=1e-3", "lr_milestones=[2, 3]", "backbone.width=0.5", "k=null"]) == {
        "epochs": 1, "lr": 1e-3, "lr_milestones": [2, 3], "backbone.width": 0.5, "k": None}


def test_precedence_preset_method_dataset_cli():
    preset = load_preset("mini")
    preset["dataset_hparams"] = {"digits": {"lr": 0.5}}
    hp = resolve_hparams(preset, "spottune", "digits", {"temperature": 2.0})
    assert hp["policy_width"] == 0.25  # preset.method_hparams beats the method default (1.0)
    assert hp["policy_lr_mult"] == 1.0  # preset.method_hparams (the mini budget)
    assert hp["policy_weight_decay"] == 1e-3  # method default
    assert hp["lr"] == 0.5  # dataset_hparams beats preset.hparams
    assert hp["temperature"] == 2.0  # --set beats everything
    assert hp["backbone"]["arch"] == "resnet26" and hp["backbone"]["width"] == 0.25
    assert resolve_hparams(preset, "spottune", "digits", {"backbone.width": 0.5})["backbone"]["width"] == 0.5


def test_a_methods_own_per_dataset_values_beat_its_method_hparams_and_reach_no_other_method():
    preset = load_preset("mini")
    preset["dataset_hparams"] = {"digits": {"lr": 0.5, "weight_decay": 0.1}}
    preset["method_hparams"]["finetune"] = {"lr": 0.2, "dataset_hparams": {"digits": {"lr": 0.3}}}
    digits, fonts = (resolve_hparams(preset, "finetune", d, overrides) for d, overrides in
                     (("digits", {}), ("glyph_fonts", {})))
    assert (digits["lr"], digits["weight_decay"], fonts["lr"]) == (0.3, 0.1, 0.2)
    assert "dataset_hparams" not in digits  # the table itself is not a hyperparameter of the run
    assert resolve_hparams(preset, "finetune", "digits", {"lr": 0.4})["lr"] == 0.4  # --set still wins
    assert resolve_hparams(preset, "l2sp", "digits")["lr"] == 0.5


def test_per_dataset_values_of_an_unknown_dataset_are_refused():
    from spottune.planning.preflight import hparam_problems

    grid = make_grid("mini", ["finetune"], ["digits"], [0])
    grid.preset["method_hparams"]["finetune"] = {"dataset_hparams": {"vtab1k/cifa": {"lr": 0.3}}}
    assert hparam_problems(grid) == ["method_hparams.finetune.dataset_hparams: unknown dataset 'vtab1k/cifa' (use the "
                                     "names run_all.py --list prints, e.g. vtab1k/cifar)"]


def test_method_specific_override_applies_only_where_it_exists():
    grid = make_grid("mini", ["finetune", "spottune"], ["digits"], [0], {"temperature": 1.0})
    by_method = {c.method: c.hparams for c in grid.runs()}
    assert by_method["spottune"]["temperature"] == 1.0 and "temperature" not in by_method["finetune"]


def test_unknown_keys_fail():
    with pytest.raises(KeyError, match="unknown hyperparameter 'backbone.depth'"):
        make_grid("mini", ["finetune"], ["digits"], [0], {"backbone.depth": 3})


def test_run_ids_are_stable_and_change_with_anything_that_changes_numbers():
    a = make_grid("mini", ["finetune"], ["digits"], [0]).runs()[0]
    b = make_grid("mini", ["finetune"], ["digits"], [0]).runs()[0]
    c = make_grid("mini", ["finetune"], ["digits"], [0], {"lr": 0.01}).runs()[0]
    d = make_grid("mini", ["finetune"], ["digits"], [1]).runs()[0]
    assert a.run_id == b.run_id == records.run_id(a.identity())
    assert len({a.run_id, c.run_id, d.run_id}) == 3
    assert len(a.run_id) == 12


def test_grid_size_and_status(tmp_path):
    grid = make_grid("mini", ["finetune", "spottune"], ["digits", "glyph_fonts"], [0, 1])
    specs = grid.runs()
    assert len(specs) == 8 and len({s.run_id for s in specs}) == 8
    folder = RunFolder.of(tmp_path, specs[0])
    assert folder.path == tmp_path / "runs" / specs[0].run_id and folder.status() is Status.NEW
    folder.path.mkdir(parents=True)
    (folder / "config.json").write_text("{}")
    assert folder.status() is Status.STARTED
    (folder / "error.txt").write_text("boom")
    assert folder.status() is Status.FAILED
    (folder / "done").touch()
    assert folder.status() is Status.TORN  # a done marker without valid metrics is not done
    (folder / "metrics.json").write_text('{"run_id": "x", "method": "finetune", "dataset": "digits", "seed": 0, '
                                         '"preset": "mini", "test_accuracy": 50.0}')
    assert folder.status() is Status.DONE and folder.status() == "done" and f"{folder.status():6s}" == "done  "


def test_dataset_setting_does_not_override_a_methods_own_optimiser():
    grid = make_grid("decathlon", ["piggyback", "spottune"], ["decathlon/vgg-flowers"], [0])
    hp = {c.method: c.hparams for c in grid.runs()}
    assert hp["spottune"]["weight_decay"] == 1e-4  # the released per-domain value
    assert hp["piggyback"]["weight_decay"] == 0 and hp["piggyback"]["optimizer"] == "adam"


def test_variants_run_a_registered_method_on_another_backbone():
    grid = make_grid("standard", ["finetune", "finetune_resnet101"], ["cubs"], [0])
    by_method = {c.method: c.hparams for c in grid.runs()}
    assert by_method["finetune_resnet101"]["variant_of"] == "finetune"
    assert by_method["finetune_resnet101"]["backbone"]["arch"] == "resnet101"
    assert by_method["finetune"]["backbone"]["arch"] == "resnet50" and "variant_of" not in by_method["finetune"]


def test_bad_preset_files_name_the_problem(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("name: bad\nbackbone: {arch: resnet26}\ndatasets: [digits]\nhparams: {}\nhparms: {lr: 1}\n")
    with pytest.raises(ValueError, match=r"unknown keys \['hparms'\]"):
        load_preset(str(bad))
    bad.write_text("- just a list\n")
    with pytest.raises(ValueError, match="not a YAML mapping"):
        load_preset(str(bad))
    bad.write_text("name: bad\n")
    with pytest.raises(ValueError, match="lacks the keys"):
        load_preset(str(bad))


def test_each_run_s_hyperparameters_are_resolved_once(monkeypatch):
    """The runs, their configuration labels, the preflight and the recipes read one resolution
    per (method, dataset, overrides): what the run trains with is what was checked."""
    from spottune.planning import grid as grid_module
    from spottune.planning.preflight import hparam_problems
    from spottune.planning.recipes import recipe_lines

    calls = []
    real = grid_module.resolve_hparams
    monkeypatch.setattr(grid_module, "resolve_hparams",
                        lambda *args, **kw: calls.append(args[1:3]) or real(*args, **kw))
    grid = make_grid("mini", ["finetune", "spottune"], ["digits", "glyph_letters"], [0, 1, 2], {"lr": 0.2})
    specs = grid.runs()
    assert hparam_problems(grid) == [] and recipe_lines(grid)
    assert len(specs) == 12 and all(spec.hparams["lr"] == 0.2 for spec in specs)
    # with and without the --set, once each per method and dataset
    assert sorted(calls) == sorted([(m, d) for m in ("finetune", "spottune") for d in ("digits", "glyph_letters")] * 2)
    specs[0].hparams["lr"] = 9.0  # a copy: the next reader is not affected
    assert grid.hparams("finetune", "digits", {"lr": 0.2})["lr"] == 0.2
