"""The method registry: registration by name, duplicates, unknown names, plugins."""
from __future__ import annotations

import sys

import pytest

from spottune import method_contract
from spottune.methods import Method, create_method, get_method, list_methods, load_plugins, register_method
from tests.helpers import BUILTIN



@pytest.fixture
def scratch_names():
    """Names registered by a test are removed afterwards, leaving the registry as it was."""
    names: list[str] = []
    yield names
    for name in names:
        method_contract._REGISTRY.pop(name, None)


def test_builtins_are_registered():
    assert BUILTIN <= set(list_methods())
    assert list_methods("residual_adapters_*") == ["residual_adapters_parallel", "residual_adapters_series"]
    for name in BUILTIN:
        assert get_method(name).name == name


def test_duplicate_name_raises_and_keeps_the_first(scratch_names):
    list_methods()  # built-ins loaded
    with pytest.raises(ValueError, match="'piggyback' is already registered"):
        @register_method("piggyback")
        class Again(Method):
            pass
    assert get_method("piggyback").__module__ == "baselines.piggyback"

    scratch_names.append("scratch_method")

    @register_method("scratch_method")
    class Scratch(Method):
        """A test method."""

    with pytest.raises(ValueError, match="already registered"):
        register_method("scratch_method")(type("Other", (Method,), {}))
    assert get_method("scratch_method") is Scratch


def test_unknown_name_lists_the_known_ones():
    with pytest.raises(KeyError) as info:
        get_method("no_such_method")
    message = str(info.value)
    assert "no_such_method" in message
    for name in BUILTIN:
        assert name in message
    with pytest.raises(KeyError, match="known methods"):
        create_method("finetun", {})


def test_only_method_subclasses_register(scratch_names):
    scratch_names.append("not_a_method")
    with pytest.raises(TypeError):
        register_method("not_a_method")(object)
    assert "not_a_method" not in list_methods()


def test_hyperparameters_merge_defaults_and_preset():
    method = create_method("l2sp", {"lr": 0.01, "alpha": 0.5})
    assert method.hp["alpha"] == 0.5 and method.hp["beta"] == 0.01 and method.hp["lr"] == 0.01
    assert get_method("l2sp").defaults["alpha"] == 0.1  # class defaults untouched


def test_plugin_module_registers_its_method(scratch_names, tmp_path, monkeypatch):
    scratch_names.append("plugin_method")
    (tmp_path / "my_plugin_for_tests.py").write_text(
        "from spottune.methods import Method, register_method\n\n\n"
        "@register_method('plugin_method')\n"
        "class PluginMethod(Method):\n"
        '    """A plugin."""\n')
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.delitem(sys.modules, "my_plugin_for_tests", raising=False)
    load_plugins(["my_plugin_for_tests"])
    assert "plugin_method" in list_methods()
    with pytest.raises(ImportError, match="PYTHONPATH"):
        load_plugins(["no_such_plugin_module_xyz"])
