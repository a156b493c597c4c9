"""The released ResNet-26 checkpoint: read from files written as PyTorch 0.3, 0.4.1 and 1.x wrote
them, never executing anything a file names (hostile files included)."""
from __future__ import annotations

import io
import os
import pickle
import sys
import tarfile
import types
from pathlib import Path

import pytest
import torch
from torch import nn

from spottune.backbones import ReleasedCheckpointError, load_released_resnet26, read_released_checkpoint, resnet26
from spottune.planning.grid import make_grid
from spottune.pretraining.weights import (PretrainedResolver, describe_checkpoint_file, pretrained_backbone,
                                          resolve_pretrained)
from tests.helpers import load_script
from tests.released_files import released_network, save_released

FORMATS = [("0.3", "legacy", True), ("0.4.1", "legacy", True), ("1.x", "legacy", True), ("1.x", "zip", False)]


@pytest.fixture
def trap(monkeypatch: pytest.MonkeyPatch):
    """After this, any lookup of the checkpoint's ``models`` classes fails the test."""
    def arm() -> None:
        module = types.ModuleType("models")

        def boom(name: str):
            raise AssertionError(f"the loader looked up models.{name}")

        module.__getattr__ = boom
        monkeypatch.setitem(sys.modules, "models", module)
    return arm


@pytest.mark.parametrize("version,container,python2", FORMATS)
def test_reproduces_the_source_network_exactly(tmp_path, monkeypatch, trap, version, container, python2):
    theirs = released_network(monkeypatch)
    path = save_released(theirs, tmp_path / "resnet26_pretrained.t7", version, python2, container)
    trap()
    mine = load_released_resnet26(path, resnet26(1, width=0.25))
    their_convs = [m.weight for m in theirs.modules() if isinstance(m, nn.Conv2d)]
    my_convs = [m.weight for m in mine.modules() if isinstance(m, nn.Conv2d)]
    assert len(their_convs) == len(my_convs) == 25
    assert all(torch.equal(a, b) for a, b in zip(their_convs, my_convs))
    their_bns = [m for m in theirs.modules() if isinstance(m, nn.BatchNorm2d)]
    my_bns = [m for m in mine.modules() if isinstance(m, nn.BatchNorm2d)]
    assert len(their_bns) == len(my_bns) == 26
    for a, b in zip(their_bns, my_bns):
        for key in ("weight", "bias", "running_mean", "running_var"):
            assert torch.equal(getattr(a, key), getattr(b, key))
    # the ImageNet classifier is kept as the source head (LwF distils from it)
    assert mine.head.fc.out_features == 1000
    assert torch.equal(mine.head.fc.weight, theirs.linears[0].weight)
    assert torch.equal(mine.head.fc.bias, theirs.linears[0].bias)


def test_legacy_files_are_what_old_pytorch_wrote(tmp_path, monkeypatch):
    """The fixtures really use the old reductions: 0.4.1 pickles Parameter itself (no
    _rebuild_parameter), 0.3 also rebuilds tensors with _rebuild_tensor; strings as Python 2's."""
    net = released_network(monkeypatch)
    for version, present, absent in (("0.4.1", [b"Parameter", b"_rebuild_tensor_v2"], [b"_rebuild_parameter"]),
                                     ("0.3", [b"Parameter", b"_rebuild_tensor\n"], [b"_rebuild_tensor_v2"])):
        data = save_released(net, tmp_path / f"{version}.t7", version).read_bytes()
        assert not data.startswith(b"PK")  # the legacy container, not a zip archive
        assert all(p in data for p in present) and not any(a in data for a in absent)
        assert pickle.SHORT_BINSTRING + bytes([len("_modules")]) + b"_modules" in data


class _Command:
    """Pickles to a call of ``function(*args)``: what a hostile file asks the unpickler to run."""

    def __init__(self, function, *args) -> None:
        self.function, self.args = function, args

    def __reduce__(self):
        return self.function, self.args


def _hostile_files(folder: Path, marker: Path) -> dict[str, Path]:
    command = f"touch {marker}"
    system = _Command(os.system, command)
    run_python = _Command(eval, f"__import__('os').system({command!r})")
    header = [torch.serialization.MAGIC_NUMBER, torch.serialization.PROTOCOL_VERSION,
              {"protocol_version": 1001, "little_endian": True, "type_sizes": {}}]
    files = {
        "plain pickle": pickle.dumps(system, protocol=2),
        "eval in a plain pickle": pickle.dumps({"net": run_python}, protocol=2),
        "magic-number record": pickle.dumps(system, protocol=2) + b"rest",
        "system-info record": b"".join(pickle.dumps(v, protocol=2) for v in header[:2])
        + pickle.dumps(system, protocol=2),
        "storage-keys record": b"".join(pickle.dumps(v, protocol=2) for v in header)
        + pickle.dumps({"net": 1}, protocol=2) + pickle.dumps(system, protocol=2),
    }
    paths = {name: folder / f"{i}.t7" for i, name in enumerate(files)}
    for name, data in files.items():
        paths[name].write_bytes(data)
    buffer = io.BytesIO()
    torch.save({"net": system}, buffer)  # the zip container, its data.pkl calling os.system
    paths["zip archive"] = folder / "zip.t7"
    paths["zip archive"].write_bytes(buffer.getvalue())
    with tarfile.open(folder / "old.tar", "w") as tar:
        info = tarfile.TarInfo("pickle")
        payload = pickle.dumps(system, protocol=2)
        info.size = len(payload)
        tar.addfile(info, io.BytesIO(payload))
    paths["tar archive"] = folder / "old.tar"
    return paths


def test_hostile_files_execute_nothing_and_fail_clearly(tmp_path):
    marker = tmp_path / "executed"
    for name, path in _hostile_files(tmp_path, marker).items():
        with pytest.raises(ReleasedCheckpointError, match=str(path)):
            read_released_checkpoint(path)
        assert not marker.exists(), f"the {name} ran its command"
        with pytest.raises(ValueError, match="neither a state_dict nor the released"):
            describe_checkpoint_file(path)
        assert not marker.exists(), f"the {name} ran its command"


@pytest.mark.filterwarnings("ignore::UserWarning")  # torch.save: no source for the module classes
def test_a_hostile_object_inside_a_network_stays_inert(tmp_path, monkeypatch):
    marker = tmp_path / "executed"
    net = released_network(monkeypatch)
    net.layer1[0]._modules["payload"] = _Command(os.system, f"touch {marker}")  # noqa: SLF001
    path = tmp_path / "net.t7"
    torch.save({"net": net}, path, pickle_protocol=2, _use_new_zipfile_serialization=False)
    assert len(read_released_checkpoint(path).convs) == 25
    assert not marker.exists()


def test_run_all_refuses_a_hostile_pretrained_file(tmp_path, capsys):
    marker = tmp_path / "executed"
    evil = tmp_path / "evil.pkl"
    evil.write_bytes(pickle.dumps(_Command(os.system, f"touch {marker}"), protocol=2))
    run_all = load_script("benchmarks/run_all.py")
    code = run_all.main(["--pretrained", str(evil), "--methods", "finetune", "--datasets", "digits",
                         "--set", "epochs=1", "--output", str(tmp_path / "out"), "--no-progress"])
    assert code == 2 and not marker.exists()
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and str(evil) in err[0] and "neither a state_dict nor" in err[0]


def test_described_files_name_their_kind_and_hash(tmp_path, monkeypatch):
    state = tmp_path / "state.pt"
    torch.save(resnet26(10, width=0.25).state_dict(), state)
    released = save_released(released_network(monkeypatch), tmp_path / "released.t7")
    for path, kind in ((state, "state_dict"), (released, "released")):
        described = describe_checkpoint_file(path)
        assert described["kind"] == kind and described["path"] == str(path.resolve())
        assert len(described["sha256"]) == 64
    with pytest.raises(FileNotFoundError):
        describe_checkpoint_file(tmp_path / "missing.pt")
    torch.save({"epoch": torch.tensor(1), "note": "x"}, tmp_path / "other.pt")
    with pytest.raises(ValueError, match="not a state_dict"):
        describe_checkpoint_file(tmp_path / "other.pt")


def test_the_released_file_is_found_at_its_documented_places(tmp_path, monkeypatch):
    spec = {"kind": "released", "fallback": {"kind": "suite", "dataset": "decathlon/imagenet12"}}
    monkeypatch.setenv("SPOTTUNE_CACHE", str(tmp_path / "cache"))
    resolved, notice = resolve_pretrained(spec, tmp_path / "data")
    assert resolved == spec["fallback"] and "fallback" in notice and "not the paper's" in notice
    net = released_network(monkeypatch)
    for place in (tmp_path / "cache", tmp_path / "data" / "decathlon-1.0"):  # the devkit wins
        place.mkdir(parents=True)
        save_released(net, place / "resnet26_pretrained.t7")
        resolved, notice = resolve_pretrained(spec, tmp_path / "data")
        assert notice is None and resolved["kind"] == "released"
        assert resolved["path"] == str((place / "resnet26_pretrained.t7").resolve())
    (tmp_path / "cache" / "resnet26_pretrained.t7").unlink()
    with pytest.raises(FileNotFoundError, match="resnet26_pretrained.t7"):  # no fallback: an error
        resolve_pretrained({"kind": "released"}, tmp_path / "elsewhere")


def test_released_backbone_says_where_it_comes_from(tmp_path, monkeypatch):
    path = save_released(released_network(monkeypatch), tmp_path / "resnet26_pretrained.t7")
    spec = {"arch": "resnet26", "width": 0.25, "input_size": 64,
            "pretrained": describe_checkpoint_file(path)}
    backbone = pretrained_backbone(spec, tmp_path / "no-data", progress=False)
    info = backbone.pretraining
    assert info["kind"] == "released" and info["id"] == spec["pretrained"]["sha256"]
    assert info["dataset"] == "decathlon/imagenet12" and info["test_accuracy"] is None
    assert "not found" in info["note"]


def test_lwf_refuses_a_backbone_without_a_source_classifier():
    from spottune.methods import create_method

    method = create_method("lwf", {"lr": 0.1, "weight_decay": 0.0, "lambda_old": 1.0, "temperature": 2.0})
    with pytest.raises(ValueError, match="source classifier has 1 output"):
        method.build(resnet26(1, width=0.25), 5)
    model = method.build(resnet26(1000, width=0.25), 5)
    assert model.old_fc.out_features == 1000


def test_the_network_with_series_adapters_in_it(tmp_path, monkeypatch, trap):
    """residual_adapters' second released network: its 3x3 convolutions and BatchNorms go to the
    backbone, its adapters' BatchNorms to the series adapters (their 1x1 convolutions start new,
    as the official train_new_task_adapters.py does)."""
    from spottune.methods import create_method

    theirs = released_network(monkeypatch, series_adapters=True)
    path = save_released(theirs, tmp_path / "resnet26_series_adapters_pretrained.t7")
    trap()
    backbone = load_released_resnet26(path, resnet26(1, width=0.25))
    adapter_bns = [m for name, m in theirs.named_modules() if isinstance(m, nn.BatchNorm2d) and ".conv.0" in name]
    block_bns = [m for name, m in theirs.named_modules() if isinstance(m, nn.BatchNorm2d) and ".conv.0" not in name]
    assert len(adapter_bns) == 25 and len(block_bns) == 26
    my_bns = [m for m in backbone.modules() if isinstance(m, nn.BatchNorm2d)]
    assert all(torch.equal(a.running_mean, b.running_mean) for a, b in zip(block_bns, my_bns))
    model = create_method("residual_adapters_series", {"lr": 0.1, "weight_decay": 5e-4}).build(backbone, 5)
    adapters = [m for m in model.modules() if type(m).__name__ == "SeriesAdapter"]
    their_1x1 = [m.weight for m in theirs.modules() if isinstance(m, nn.Conv2d) and m.kernel_size == (1, 1)]
    for adapter, bn, conv in zip(adapters, adapter_bns, their_1x1):
        assert torch.equal(adapter.adapter[0].weight, bn.weight)
        assert torch.equal(adapter.adapter[0].running_var, bn.running_var)
        assert not torch.equal(adapter.adapter[1].weight, conv)
    with pytest.raises(ValueError, match="only residual_adapters_series"):
        create_method("finetune", {"lr": 0.1, "weight_decay": 5e-4}).build(backbone, 5)


def test_each_row_resolves_its_own_released_file(tmp_path, monkeypatch):
    """The decathlon grid: the plain network for every method, the adapter-pretrained one for
    the series-adapter-source row; a file that is missing falls back with one notice."""
    monkeypatch.setenv("SPOTTUNE_CACHE", str(tmp_path / "cache"))
    devkit = tmp_path / "data" / "decathlon-1.0"
    devkit.mkdir(parents=True)
    save_released(released_network(monkeypatch), devkit / "resnet26_pretrained.t7")
    grid = make_grid("decathlon", ["finetune", "residual_adapters_series_adapter_source"], ["decathlon/dtd"])
    grid.resolve_pretrained = PretrainedResolver(tmp_path / "data")
    runs = {r.method: r.hparams["backbone"]["pretrained"] for r in grid.runs()}
    assert runs["finetune"]["kind"] == "released"
    assert runs["finetune"]["path"] == str((devkit / "resnet26_pretrained.t7").resolve())
    fallback = runs["residual_adapters_series_adapter_source"]
    assert fallback["kind"] == "suite" and fallback["series_adapters"] is True
    assert len(grid.resolve_pretrained.notices) == 1
    assert "resnet26_series_adapters_pretrained.t7" in grid.resolve_pretrained.notices[0]


def test_run_all_uses_the_released_file_or_says_it_falls_back(tmp_path, monkeypatch, capsys):
    """The decathlon preset without the released file: one notice per missing file, the runs
    on the fallback; with it in the devkit folder: no notice, the runs name its SHA-256."""
    run_all = load_script("benchmarks/run_all.py")
    monkeypatch.setenv("SPOTTUNE_CACHE", str(tmp_path / "cache"))
    data = tmp_path / "data"
    (data / "decathlon-1.0").mkdir(parents=True)
    argv = ["--preset", "decathlon", "--datasets", "decathlon/dtd", "--data-root", str(data),
            "--methods", "finetune,lwf", "--output", str(tmp_path / "out"), "--dry-run"]
    assert run_all.main(argv) == 0
    err = capsys.readouterr().err
    assert err.count("notice: the released checkpoint resnet26_pretrained.t7 is in none of") == 1
    path = save_released(released_network(monkeypatch, width=1.0), data / "decathlon-1.0" / "resnet26_pretrained.t7")
    assert run_all.main(argv) == 0
    assert "notice" not in capsys.readouterr().err
    grid = make_grid("decathlon", ["finetune"], ["decathlon/dtd"])
    grid.resolve_pretrained = PretrainedResolver(data)
    assert grid.runs()[0].hparams["backbone"]["pretrained"]["sha256"] == describe_checkpoint_file(path)["sha256"]


def test_imnet_accuracy_is_measured_once_per_file(tmp_path, monkeypatch):
    """With decathlon/imagenet12 in the devkit, the released network is evaluated on its
    validation split once; the result is cached under the file's SHA-256."""
    from spottune import engine
    from tests.data_fixtures import write_devkit

    monkeypatch.setenv("SPOTTUNE_CACHE", str(tmp_path / "cache"))
    write_devkit(tmp_path / "data", "imagenet12", {"train": 4, "val": 6, "test": 2}, num_classes=3)
    path = save_released(released_network(monkeypatch, num_classes=3), tmp_path / "resnet26_pretrained.t7")
    spec = {"arch": "resnet26", "width": 0.25, "input_size": 64, "pretrained": describe_checkpoint_file(path)}
    backbone = pretrained_backbone(spec, tmp_path / "data", progress=False)
    info = backbone.pretraining
    assert (info["dataset"], info["split"]) == ("decathlon/imagenet12", "val") and "note" not in info
    assert 0 <= info["test_accuracy"] <= 100 and info["test_accuracy"] * 6 / 100 == pytest.approx(
        round(info["test_accuracy"] * 6 / 100))  # k of the 6 validation images
    cached = list((tmp_path / "cache" / "pretrained").glob("released-*.json"))
    assert len(cached) == 1 and cached[0].name == f"released-{spec['pretrained']['sha256'][:16]}.json"

    def no_second_evaluation(*args, **kwargs):
        raise AssertionError("evaluated again")

    monkeypatch.setattr(engine, "evaluate", no_second_evaluation)
    assert pretrained_backbone(spec, tmp_path / "data", progress=False).pretraining == info
