"""No module of the suite imports one that imports it back, directly or through others.

Every ``import`` statement of every module under ``spottune/`` and ``baselines/`` counts,
those inside functions too (a deferred import hides a cycle, it does not remove it), read
from the source with :mod:`ast`; then every module is imported, so that the graph describes
code that loads.
"""
from __future__ import annotations

import ast
import importlib
from pathlib import Path

import pytest

from tests.helpers import REPO

PACKAGES = ("spottune", "baselines")


def module_files() -> dict[str, Path]:
    """Dotted module name -> its file, for every module of the suite's packages."""
    out = {}
    for package in PACKAGES:
        for path in sorted((REPO / package).rglob("*.py")):
            parts = path.relative_to(REPO).with_suffix("").parts
            out[".".join(parts[:-1] if parts[-1] == "__init__" else parts)] = path
    return out


MODULES = module_files()


def imported_modules(name: str, path: Path) -> set[str]:
    """The suite's modules that ``name`` imports by name (``from a import b`` counts ``a.b``
    when that is a module, else ``a``)."""
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.rsplit(".", node.level - 1)[0] if node.level > 1 else package
                base = f"{anchor}.{base}" if base else anchor
            found.update(f"{base}.{alias.name}" if f"{base}.{alias.name}" in MODULES else base for alias in node.names)
    return {m for m in found if m in MODULES and m != name}


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Every strongly connected component of more than one module (Tarjan), sorted."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    out = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        for nxt in graph[node]:
            if nxt not in index:
                visit(nxt)
                low[node] = min(low[node], low[nxt])
            elif nxt in stack:
                low[node] = min(low[node], index[nxt])
        if low[node] == index[node]:
            component = []
            while True:
                member = stack.pop()
                component.append(member)
                if member == node:
                    break
            if len(component) > 1:
                out.append(sorted(component))

    for node in sorted(graph):
        if node not in index:
            visit(node)
    return sorted(out)


@pytest.mark.parametrize("name", sorted(MODULES))
def test_every_module_imports(name):
    importlib.import_module(name)


def test_no_module_imports_one_that_imports_it_back():
    graph = {name: imported_modules(name, path) for name, path in MODULES.items()}
    assert cycles(graph) == []


def test_the_cycle_finder_finds_cycles():
    assert cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]
    assert cycles({"a": {"b"}, "b": set()}) == []


def _calls(path: Path) -> list[str]:
    """The dotted names called in ``path`` (``torch.optim.SGD(...)`` -> ``torch.optim.SGD``)."""
    def dotted(node: ast.AST) -> str:
        if isinstance(node, ast.Attribute):
            return f"{dotted(node.value)}.{node.attr}"
        return node.id if isinstance(node, ast.Name) else "?"

    return [dotted(node.func) for node in ast.walk(ast.parse(path.read_text(), str(path)))
            if isinstance(node, ast.Call)]


def test_only_training_builds_an_optimiser_a_schedule_or_resumes():
    """One loop: every optimiser, schedule and resume of a run and of a suite pretraining is
    spottune/training/loop.py's (issue 24: the pretraining had a loop of its own)."""
    def builds(name: str) -> bool:
        last = name.rsplit(".", 2)
        return ("optim" in last[:-1] and last[-1][:1].isupper()) or "lr_scheduler" in name \
            or name in ("checkpoint.load", "OneCycleLR", "MultiStepLR", "LambdaLR")

    found = {module: [c for c in _calls(path) if builds(c)] for module, path in MODULES.items()
             if module != "spottune.training.loop"}
    assert {module: calls for module, calls in found.items() if calls} == {}


def test_the_library_imports_no_method_module():
    """spottune/ imports the baselines only in the catalogue of methods (spottune.methods)."""
    graph = {name: imported_modules(name, path) for name, path in MODULES.items()}
    importers = sorted(name for name, targets in graph.items() if name.startswith("spottune")
                       and any(t == "baselines" or t.startswith("baselines.") for t in targets))
    assert importers == ["spottune.methods"]


def layer(module: str) -> str:
    """The layer a module belongs to: its folder under ``spottune/`` (``spottune.storage``), or the
    module itself at the top level and for ``baselines``' modules the package."""
    parts = module.split(".")
    if parts[0] == "baselines":
        return "baselines"
    return ".".join(parts[:2])


def test_the_folders_are_layers():
    """Folder by folder, imports run one way (issue 24: a newcomer sees the layers from ``ls``):
    no folder imports one that imports it back, through any of their modules."""
    graph: dict[str, set[str]] = {}
    for name, path in MODULES.items():
        graph.setdefault(layer(name), set()).update(
            layer(t) for t in imported_modules(name, path) if layer(t) != layer(name))
    assert cycles(graph) == []


def test_the_top_level_holds_the_public_modules_only():
    """What lies flat in ``spottune/``: the command, the engine and what a method or plugin author
    imports; everything else lives in a folder named for its layer."""
    top = sorted(p.stem for p in (REPO / "spottune").glob("*.py"))
    assert top == ["__init__", "cli", "engine", "hparams", "method_contract", "methods", "plugins",
                   "seeding", "visual_decathlon"]
    folders = sorted(p.name for p in (REPO / "spottune").iterdir() if (p / "__init__.py").is_file())
    assert folders == ["backbones", "data", "estimates", "launch", "planning", "pretraining", "report",
                       "routing", "storage", "training"]
    for folder in folders:
        assert ast.get_docstring(ast.parse((REPO / "spottune" / folder / "__init__.py").read_text())), folder
