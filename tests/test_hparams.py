"""Each method declares its own hyperparameters (default, range, meaning); the declarations are
checked before anything launches, printed by --list, and the contract imports no model."""
from __future__ import annotations

import ast
import sys

import pytest

from spottune import cli, plugins
from spottune.hparams import (FLAG, FRACTION, NON_NEGATIVE, POSITIVE, PROBABILITY, HParam, integer, number, one_of,
                              optional, with_defaults)
from spottune.method_contract import Method, register_method
from spottune.methods import create_method, get_method, list_methods
from spottune.planning.preflight import RULES, declared_ranges, search_problems
from tests.helpers import REPO

SUITE = ("spottune", "baselines")
BAD = "?not-a-value"  # out of every range: not a number, not an option, not a flag, not a list


@pytest.mark.parametrize("range_, accepted, refused, text", [
    (POSITIVE, [1e-9, 3, 2.5], [0, -1, float("inf"), float("nan"), True, "1"], "a number > 0"),
    (NON_NEGATIVE, [0, 0.0, 7], [-1e-9, float("-inf"), None], "a number >= 0"),
    (FRACTION, [0, 0.999], [1, 1.0, -0.1], "a number in [0, 1)"),
    (PROBABILITY, [0, 1, 0.5], [1.01, -0.01], "a number in [0, 1]"),
    (number(above=0, at_most=1), [1, 0.01], [0, 1.5], "a number in (0, 1]"),
    (number(), [-5, 0, 1e300], [float("inf"), "x", False], "a finite number"),
    (integer(1), [1, 10], [0, 1.0, True], "an integer >= 1"),
    (one_of(("conv", "block")), ["conv", "block"], ["Conv", 1], "one of conv, block"),
    (one_of((0, 1)), [0, 1], [2, True, False], "one of 0, 1"),
    (optional(integer(0), "half"), [None, 0, 3], [-1, 2.5], "null (half) or an integer >= 0"),
    (FLAG, [True, False], [0, 1, "true"], "true or false"),
])
def test_ranges_accept_and_refuse_at_their_bounds(range_, accepted, refused, text):
    assert range_.text == text
    assert all(range_.accepts(v) for v in accepted)
    assert not any(range_.accepts(v) for v in refused)
    assert range_.problem("key", refused[0]) == f"key={refused[0]!r}: must be {text}"
    assert range_.problem("key", accepted[0]) is None


def test_a_default_outside_its_range_is_refused_where_it_is_declared():
    with pytest.raises(ValueError, match="default -1 is not a number > 0"):
        HParam(-1, POSITIVE)
    variant = with_defaults({"p": HParam(0.5, PROBABILITY, "probability")}, p=1.0)
    assert variant["p"] == HParam(1.0, PROBABILITY, "probability")
    with pytest.raises(KeyError):
        with_defaults({"p": HParam(0.5)}, q=1)


@pytest.mark.parametrize("name", list_methods())
def test_every_declared_range_refuses_a_bad_value_naming_the_key(name):
    method = get_method(name)
    assert method.defaults == {key: declared.default for key, declared in method.hparams.items()}
    create_method(name, {"lr": 0.1, "weight_decay": 0.0})  # its defaults pass
    for key in declared_ranges(name):
        with pytest.raises(ValueError) as info:
            create_method(name, {"lr": 0.1, "weight_decay": 0.0, key: BAD})
        assert str(info.value).startswith(f"{key}={BAD!r}: must be ")


@pytest.mark.parametrize("name", list_methods())
def test_no_method_restates_a_training_protocol_rule(name):
    """A protocol key a method gives its own default (Piggyback's Adam) is checked once, by the
    protocol's rule: a range of its own there would print the problem twice."""
    assert not set(declared_ranges(name)) & set(RULES)


@pytest.mark.parametrize("argv, line", [
    (["--methods", "spottune", "--set", "temperature=-1"],  # SpotTune's own
     "error: method spottune: temperature=-1.0: must be a number > 0 (Gumbel-softmax temperature)"),
    (["--methods", "random_policy", "--set", "p=1.5"],  # its ablations
     "error: method random_policy: p=1.5: must be a number in [0, 1] (probability that a block is fine-tuned)"),
    (["--methods", "lwf", "--set", "lambda_old=-0.5"],  # a 2019 baseline
     "error: method lwf: lambda_old=-0.5: must be a number >= 0 (weight of the distillation of the source head)"),
    (["--methods", "residual_adapters_series", "--set", "adapt=1x1"],  # one of its options
     "error: method residual_adapters_series: adapt='1x1': must be one of 3x3, all (which convolutions get an "
     "adapter)"),
    (["--preset", "mini-effnet", "--methods", "piggyback", "--set", "classifier_lr_mult=0"],  # on MBConv
     "error: method piggyback: classifier_lr_mult=0.0: must be a number > 0 (classifier's lr / the masks' lr)"),
    (["--preset", "mini-vit", "--methods", "lora", "--set", "rank=0"],  # a ViT PEFT method
     "error: method lora: rank=0: must be an integer >= 1 (rank of each low-rank update)"),
    (["--preset", "mini-vit", "--methods", "taps", "--set", "score_init=0.05"],  # a rule across keys
     "error: method taps: score_init=0.05 with threshold=0.1: score_init must be above threshold (a layer that "
     "starts shared never trains its delta)"),
    (["--plugins", "examples.my_method", "--methods", "layerwise_lr", "--set", "decay=-1"],  # a plugin's
     "error: method layerwise_lr: decay=-1.0: must be a number in (0, 1] (lr factor per block, from the top down)"),
])
def test_a_bad_method_value_exits_2_naming_method_and_key_before_anything_is_written(tmp_path, capsys, argv, line):
    output = tmp_path / "out"
    assert cli.main([*argv, "--datasets", "digits", "--output", str(output)]) == 2
    err = capsys.readouterr().err
    assert err.strip().splitlines() == [line]
    assert not output.exists()


def test_search_values_are_checked_against_the_method_s_declared_range():
    ranges = {**RULES, **declared_ranges("vpt_deep")}
    assert search_problems({"num_prompts": 10}, {"num_prompts": [1, 0]}, ranges) == [
        "search num_prompts=[1, 0]: every value must be an integer >= 1"]
    assert search_problems({"num_prompts": 10}, {"num_prompts": [1, 5]}, ranges) == []


def test_list_prints_every_method_s_hyperparameters_with_default_range_and_meaning(capsys):
    assert cli.main(["--plugins", "examples.my_method", "--list"]) == 0
    out = capsys.readouterr().out
    assert "    temperature 5.0 (a number > 0): Gumbel-softmax temperature\n" in out
    assert "    decay 0.8 (a number in (0, 1]): lr factor per block, from the top down\n" in out  # the plugin's
    assert "  finetune: no hyperparameters of its own\n" in out
    assert "    optimizer 'adam': Piggyback's own optimiser (a protocol key)\n" in out  # no range of its own
    for name in list_methods():
        for key in get_method(name).hparams:
            assert f"    {key} " in out


def test_an_unknown_method_gets_the_closest_name_and_where_a_missing_one_comes_from(monkeypatch, capsys):
    monkeypatch.setattr(plugins, "_loaded", [])
    assert cli.main(["--methods", "spotune", "--dry-run"]) == 2
    err = capsys.readouterr().err
    assert "unknown method 'spotune' (did you mean 'spottune'?)" in err
    assert "(a method of your own: pass the module that registers it with --plugins)" in err
    assert cli.main(["--plugins", "examples.my_method", "--methods", "layerwise", "--dry-run"]) == 2
    err = capsys.readouterr().err
    assert "'layerwise' (did you mean 'layerwise_lr'?)" in err
    assert "the plugin modules loaded (examples.my_method) do not register it" in err


def test_a_plugin_of_the_older_contract_still_runs_its_plain_defaults(monkeypatch):
    monkeypatch.setattr(sys.modules["spottune.method_contract"], "_REGISTRY",
                        dict(sys.modules["spottune.method_contract"]._REGISTRY))

    @register_method("older_contract_for_test")
    class Older(Method):
        defaults = {"bn_lr_mult": 1.0}

    assert Older.hparams == {"bn_lr_mult": HParam(1.0)}
    assert create_method("older_contract_for_test", {"bn_lr_mult": -1.0}).hp["bn_lr_mult"] == -1.0  # undeclared


def test_the_contract_imports_no_model_and_no_method():
    """spottune/method_contract.py (and what it imports of the suite) loads neither a model
    (spottune.routing.network, the backbones' architectures) nor a method (baselines, the catalogue)."""
    seen, todo = set(), ["spottune.method_contract"]
    while todo:
        module = todo.pop()
        if module in seen:
            continue
        seen.add(module)
        path = REPO / (module.replace(".", "/") + ".py")
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom) and node.module and node.module.split(".")[0] in SUITE:
                todo.append(node.module)
            elif isinstance(node, ast.Import):
                todo.extend(a.name for a in node.names if a.name.split(".")[0] in SUITE)
    assert seen == {"spottune.method_contract", "spottune.backbones.base", "spottune.hparams", "spottune.plugins"}
