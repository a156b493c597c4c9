"""The protocol a run records is what ran (its hyperparameters and optimiser groups), and the
tables' footnote states it per method where methods differ."""
from __future__ import annotations

import pandas as pd

from baselines.taps import RECIPE
from spottune.backbones import resnet26
from spottune.planning.grid import load_preset, resolve_hparams
from spottune.methods import create_method
from spottune.training.protocol import run_protocol, schedule_description
from spottune.storage.records import flatten
from spottune.report.tables import protocol_note
from spottune.training.loop import build_optimizer

DOMAINS = ("decathlon/aircraft", "decathlon/cifar100")  # released network weight decay 5e-4 and 0


def recorded_protocol(preset: dict, method: str, dataset: str, **overrides) -> dict:
    """The protocol the engine records for one run of ``preset`` (a tiny network stands in)."""
    hp = resolve_hparams(preset, method, dataset, overrides)
    instance = create_method(hp.get("variant_of", method), hp)
    model = instance.build(resnet26(10, width=0.125, input_size=32), 5)
    return run_protocol(hp, instance, build_optimizer(instance, model), {"split": "train+val", "transforms": "released"})


def test_the_schedule_and_groups_are_the_ones_that_ran():
    preset = load_preset("decathlon")
    spottune = recorded_protocol(preset, "spottune", DOMAINS[0])
    assert spottune["schedule"] == "lr x0.1 at epoch 40 of 110"
    assert spottune["lr"] == "network 0.1 / policy 0.01" and spottune["weight_decay"] == "network 0.0005 / policy 0.001"
    assert spottune["optimizer"] == "sgd momentum 0.9" and spottune["test_routing"] == "argmax"
    assert spottune["split"] == "train+val" and spottune["train_split"] == "train+val"
    piggyback = recorded_protocol(preset, "piggyback", DOMAINS[0])
    assert piggyback["optimizer"] == "adam" and piggyback["weight_decay"] == "0"
    assert piggyback["schedule"] == "lr x0.1 at epoch 15 of 30"
    assert recorded_protocol(preset, "finetune", DOMAINS[0], lr_milestones=[40, 60, 80])["schedule"] == \
        "lr x0.1 at epochs 40/60/80 of 110"  # --set changes what is stated
    assert schedule_description({"epochs": 3, "lr_milestones": []}) == "constant lr for 3 epochs"


def test_the_footnote_states_per_method_what_ran():
    preset = load_preset("decathlon")
    rows = [{"method": method, "dataset": dataset, "seed": 0,
             **flatten({"protocol": recorded_protocol(preset, method, dataset)})}
            for method in ("finetune", "spottune", "piggyback", "residual_adapters_parallel") for dataset in DOMAINS]
    note = protocol_note(pd.DataFrame(rows))
    assert "as run: lr x0.1 at epoch 40 only" not in note  # the preset's hand-written text is not what is printed
    assert ("schedule: lr x0.1 at epoch 15 of 30 (piggyback), lr x0.1 at epoch 40 of 110 (finetune, spottune), "
            "lr x0.1 at epochs 80/100 of 120 (residual_adapters_parallel);") in note
    assert "optimizer: adam (piggyback), sgd momentum 0.9 (finetune, residual_adapters_parallel, spottune);" in note
    # the released per-domain decay reaches finetune and SpotTune's network, not Piggyback's Adam
    assert ("weight_decay: 0 (finetune on decathlon/cifar100, piggyback), 0.0001 (residual_adapters_parallel), "
            "0.0005 (finetune on decathlon/aircraft), network 0 / policy 0.001 (spottune on decathlon/cifar100), "
            "network 0.0005 / policy 0.001 (spottune on decathlon/aircraft);") in note


def test_taps_states_that_it_runs_the_presets_recipe_and_keys_of_other_runs_are_not_printed():
    preset = load_preset("decathlon")
    taps = recorded_protocol(preset, "taps", DOMAINS[0])
    assert taps["recipe"] == RECIPE
    assert taps["schedule"] == "lr x0.1 at epoch 40 of 110" and taps["lambda_sparsity"] == 0.1
    assert taps["lr"] == "0.1" and taps["weight_decay"] == "scores 0 / network 0.0005"
    rows = [{"method": method, "dataset": DOMAINS[0], "seed": 0,
             **flatten({"protocol": recorded_protocol(preset, method, DOMAINS[0])})} for method in ("finetune", "taps")]
    note = protocol_note(pd.DataFrame(rows))
    assert f"recipe: {taps['recipe']} (taps);" in note and "task_norm: True (taps);" in note
    finetune_only = protocol_note(pd.DataFrame(rows).iloc[:1])  # the column exists, empty: not printed
    assert "recipe" not in finetune_only and "task_norm" not in finetune_only
