"""Performance machinery: hard-routed evaluation, no wasted gradients, speed options, the GPU
check script and the cost estimate of ``--dry-run``. Speed targets live in ``benchmarks/``."""
from __future__ import annotations

import copy
import json
import re
import subprocess
from dataclasses import replace
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from spottune import SpotTune
from spottune.training.acceleration import Acceleration
from spottune.backbones import resnet26, torchvision_resnet
from spottune.estimates.cost import GridCost, run_cost
from spottune.estimates.dataset_sizes import run_sizes
from spottune.engine import run
from spottune.methods import create_method
from spottune.storage.records import RunSpec
from spottune.routing.network import gumbel_softmax_decisions
from spottune.estimates.throughput import ThroughputTable
from spottune.training.loop import build_optimizer, train_step
from spottune.estimates.workload import SPLIT, build_workload, split_routing
from tests.helpers import HP, load_script, tiny_run, tiny_spottune

REPO = Path(__file__).resolve().parent.parent


def trained_like(model: SpotTune) -> SpotTune:
    """Copies that differ (tuned weights moved) and BN statistics of real batches, as after training."""
    with torch.no_grad():
        for p in model.tuned_blocks.parameters():
            p.add_(0.05 * torch.randn_like(p))
        model.train()
        for _ in range(3):
            model(torch.randn(16, 3, 32, 32))
    return model.eval()


@pytest.fixture(scope="module")
def spottune_model() -> SpotTune:
    torch.manual_seed(0)
    return trained_like(tiny_spottune())


def two_path_logits(model: SpotTune, x: torch.Tensor, decisions: torch.Tensor) -> torch.Tensor:
    """Eq. 2 as released: both copies of every block on the whole batch, mixed by the decisions."""
    h = model.stem(x)
    for t, (frozen, tuned) in enumerate(zip(model.frozen_blocks, model.tuned_blocks)):
        a = decisions[:, t].view(-1, 1, 1, 1)
        h = (1 - a) * frozen(h) + a * tuned(h)
    return model.head(h)


def patterns(batch: int, blocks: int) -> dict[str, torch.Tensor]:
    rows, cols = torch.arange(batch).view(-1, 1), torch.arange(blocks).view(1, -1)
    return {"all-0": torch.zeros(batch, blocks), "all-1": torch.ones(batch, blocks),
            "mixed": torch.randint(0, 2, (batch, blocks)).float(),
            "alternating": ((rows + cols) % 2).float().expand(batch, blocks),
            "per-block": (cols % 3 == 0).float().expand(batch, blocks)}


@pytest.mark.parametrize("batch", [1, 2, 7, 16])
def test_hard_routing_gives_the_two_path_logits(spottune_model, batch):
    x = torch.randn(batch, 3, 32, 32)
    with torch.no_grad():
        for name, decisions in patterns(batch, 12).items():
            routed = spottune_model(x, policy=decisions)
            reference = two_path_logits(spottune_model, x, decisions)
            assert (routed - reference).abs().max() < 1e-5, name


def test_hard_routing_with_the_policy_and_channels_last(spottune_model):
    x = torch.randn(9, 3, 32, 32)
    with torch.no_grad():
        logits, decisions = spottune_model.forward_routed(x)
        reference = two_path_logits(spottune_model, x, decisions)
        assert (logits - reference).abs().max() < 1e-5
        nhwc = trained_like(tiny_spottune())
        decisions = patterns(9, 12)["alternating"]
        expected = two_path_logits(nhwc, x, decisions)
        Acceleration(channels_last=True).prepare(nhwc)
        formats = []  # every block copy sees channels-last rows, also after the batch is reordered
        handles = [block.register_forward_hook(lambda m, i, o: formats.append(
            i[0].is_contiguous(memory_format=torch.channels_last) and not i[0].is_contiguous()))
            for block in [*nhwc.frozen_blocks, *nhwc.tuned_blocks]]
        assert (nhwc(x, policy=decisions) - expected).abs().max() < 1e-5
        for handle in handles:
            handle.remove()
        assert len(formats) == 24 and all(formats)


def test_hard_routing_on_a_torchvision_resnet():
    model = trained_like(SpotTune(torchvision_resnet("resnet18", 4), 4, policy_width=0.25))
    x = torch.randn(5, 3, 32, 32)
    decisions = torch.randint(0, 2, (5, 8)).float()
    with torch.no_grad():
        assert (model(x, policy=decisions) - two_path_logits(model, x, decisions)).abs().max() < 1e-5


def _rows_seen(model: SpotTune) -> tuple[dict[str, list[int]], list]:
    seen: dict[str, list[int]] = {"frozen": [], "tuned": []}
    handles = [block.register_forward_hook(lambda m, i, o, k=kind: seen[k].append(i[0].shape[0]))
               for kind, blocks in (("frozen", model.frozen_blocks), ("tuned", model.tuned_blocks))
               for block in blocks]
    return seen, handles


def test_evaluation_runs_each_copy_only_on_its_images_training_on_all(spottune_model):
    decisions = patterns(6, 12)["per-block"]  # blocks 0, 3, 6, 9 fine-tuned by every image
    seen, handles = _rows_seen(spottune_model)
    with torch.no_grad():
        spottune_model(torch.randn(6, 3, 32, 32), policy=decisions)
        assert seen == {"frozen": [6] * 8, "tuned": [6] * 4}
        seen["frozen"].clear(), seen["tuned"].clear()
        spottune_model(torch.randn(6, 3, 32, 32), policy=patterns(6, 12)["alternating"])
        assert seen == {"frozen": [3] * 12, "tuned": [3] * 12}
        seen["frozen"].clear(), seen["tuned"].clear()
        model = tiny_spottune().train()
        seen_train, train_handles = _rows_seen(model)
        model(torch.randn(6, 3, 32, 32), policy=decisions)
        assert seen_train == {"frozen": [6] * 12, "tuned": [6] * 12}  # straight-through needs both
    for h in handles + train_handles:
        h.remove()


def shortcut_calls(model: SpotTune, name: str, shape: tuple[int, ...]) -> dict[str, int]:
    """How often the shortcut modules (attribute ``name`` of the blocks) of each copy run in one
    training forward pass of ``model`` on a random batch of ``shape``."""
    calls = {"frozen": 0, "tuned": 0}
    handles = [shortcut.register_forward_hook(lambda m, i, o, k=kind: calls.__setitem__(k, calls[k] + 1))
               for kind, blocks in (("frozen", model.frozen_blocks), ("tuned", model.tuned_blocks))
               for shortcut in (getattr(block, name) for block in blocks) if shortcut is not None]
    with torch.no_grad():
        model.train()(torch.randn(*shape))
    for handle in handles:
        handle.remove()
    return calls


@pytest.mark.parametrize("freeze", ["conv", "block"])
def test_training_shares_the_parameter_free_shortcut_without_changing_numbers(freeze):
    torch.manual_seed(0)
    model = tiny_spottune(freeze=freeze)
    assert shortcut_calls(model, "shortcut", (6, 3, 32, 32)) == {"frozen": 12, "tuned": 0}  # one per block
    torchvision = SpotTune(torchvision_resnet("resnet18", 4), 4, policy_width=0.25)
    assert shortcut_calls(torchvision, "downsample", (2, 3, 32, 32)) == {"frozen": 3, "tuned": 3}  # has weights
    with torch.no_grad():
        for p in model.tuned_blocks.parameters():
            p.add_(0.05 * torch.randn_like(p))
    reference = copy.deepcopy(model)
    x, labels = torch.randn(6, 3, 32, 32), torch.randint(0, 5, (6,))
    logits = torch.randn(6, 12, 2)
    grads = []
    for net, forward in ((model, model), (reference, lambda x, policy: two_path_logits(reference, x, policy))):
        net.train()
        decision_logits = logits.clone().requires_grad_()
        decisions = gumbel_softmax_decisions(decision_logits, 5.0, sample=False)
        out = forward(x, policy=decisions)
        F.cross_entropy(out, labels).backward()
        grads.append((out.detach(), decision_logits.grad,
                      [p.grad for name, p in net.named_parameters() if not name.startswith("policy.")]))
    (out, g_decisions, g_params), (ref_out, ref_decisions, ref_params) = grads
    assert torch.equal(out, ref_out)  # the same operations in the forward pass
    assert (g_decisions - ref_decisions).abs().max() < 1e-6 and g_decisions.abs().max() > 0
    assert [g is None for g in g_params] == [r is None for r in ref_params]
    assert all(torch.allclose(g, r, atol=1e-6) for g, r in zip(g_params, ref_params) if g is not None)
    for bn, ref_bn in zip(model.modules(), reference.modules()):
        if isinstance(bn, nn.BatchNorm2d):
            assert torch.equal(bn.running_mean, ref_bn.running_mean)


@pytest.mark.parametrize("freeze", ["conv", "block"])
def test_frozen_convolutions_get_no_weight_gradient(freeze):
    method = create_method("spottune", {**HP, "policy_width": 0.25, "freeze": freeze})
    model = method.build(resnet26(5, width=0.25, input_size=32), 5).train()
    stats = [m.running_mean.clone() for m in model.frozen_blocks.modules() if isinstance(m, nn.BatchNorm2d)]
    optimizer = build_optimizer(method, model)
    train_step(model, method, optimizer, torch.randn(8, 3, 32, 32), torch.randint(0, 5, (8,)))
    frozen_convs = [m for m in model.frozen_blocks.modules() if isinstance(m, nn.Conv2d)]
    assert frozen_convs and all(m.weight.grad is None for m in frozen_convs)
    assert all(m.weight.grad is not None for m in model.tuned_blocks.modules() if isinstance(m, nn.Conv2d))
    frozen_bns = [m for m in model.frozen_blocks.modules() if isinstance(m, nn.BatchNorm2d)]
    after = [m.running_mean for m in frozen_bns]
    if freeze == "conv":  # as released: the frozen copy's BN trains
        assert all(m.weight.grad is not None for m in frozen_bns)
    else:  # whole copy frozen: no BN gradient, statistics untouched
        assert all(m.weight.grad is None for m in frozen_bns)
        assert all(torch.equal(a, b) for a, b in zip(after, stats))


def test_acceleration_options():
    accel = Acceleration.from_config({"precision": "bf16"}, {"channels_last": True, "compile": True})
    assert accel.describe() == {"precision": "bf16", "channels_last": True, "compile": "inductor"}
    assert Acceleration.from_config({}, {}).describe() == {"precision": "fp32", "channels_last": False,
                                                           "compile": None}
    with pytest.raises(ValueError, match="precision"):
        Acceleration.from_config({"precision": "fp8"}, {})
    with pytest.raises(ValueError, match="compile"):
        Acceleration.from_config({}, {"compile": 3})


def test_bf16_and_eager_compile_steps_keep_the_state_dict():
    workload = build_workload("spottune", "resnet26", 32, 4, width=0.125,
                              accel=Acceleration(precision="bf16", compile_backend="eager"))
    keys = set(workload.model.state_dict())
    workload.train_step()
    workload.eval_step()
    assert set(workload.model.state_dict()) == keys and not any("_orig_mod" in k for k in keys)
    assert all(torch.isfinite(p).all() for p in workload.model.parameters())


def test_split_routing_splits_every_block():
    workload = build_workload("spottune", "resnet26", 32, 6, width=0.125)
    assert split_routing(workload.model)
    fractions = workload.model.forward_routed(workload.images)[1].mean(0)
    assert torch.equal(fractions, torch.full((12,), 0.5))
    assert not split_routing(build_workload("finetune", "resnet26", 32, 2, width=0.125).model)
    by_name = build_workload(SPLIT, "resnet26", 32, 6, width=0.125)  # the benchmarks' "spottune-split"
    assert torch.equal(by_name.model.forward_routed(by_name.images)[1].mean(0), torch.full((12,), 0.5))


def test_engine_records_the_speed_options(tmp_path):
    """The run records what it computed with. bf16 steps are tested above; a bf16 run on a CPU
    (emulated, about 1 min) adds nothing here but its record, read from the same Acceleration."""
    spec = tiny_run("spottune", epochs=1, **{"backbone.width": 0.125})
    metrics = run(spec, tmp_path / "r", {"channels_last": True})
    stored = json.loads((tmp_path / "r" / "config.json").read_text())
    assert stored["acceleration"] == {"precision": "fp32", "channels_last": True, "compile": None}
    assert stored["acceleration"] == Acceleration.from_config(spec.hparams, {"channels_last": True}).describe()
    assert 0.0 <= metrics["test_accuracy"] <= 100.0
    bf16 = tiny_run("spottune", epochs=1, precision="bf16")
    assert bf16.hparams["precision"] == "bf16"
    assert Acceleration.from_config(bf16.hparams, {}).describe() == {"precision": "bf16", "channels_last": False,
                                                                     "compile": None}
    assert bf16.run_id != tiny_run("spottune", epochs=1).run_id  # bf16 changes the numbers


def test_gpu_check_smoke(tmp_path):
    """The device check end to end on the CPU, with channels-last (the default memory format is
    every other test's)."""
    memory_format, option = "channels-last", ["--channels-last"]
    done = subprocess.run(["bash", str(REPO / "benchmarks" / "gpu_check.sh"), "--smoke", "--threads", "1",
                           "--warmup", "0", "--methods", "finetune,spottune-split", "--out", str(tmp_path), *option],
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    assert f"; {memory_format}; torch" in done.stdout
    rows = [line for line in (tmp_path / "gpu_results.md").read_text().splitlines() if line.startswith("| resnet")]
    assert len(rows) == 2 * 2 * 2 and all(line.endswith("| ok |") for line in rows)
    table = ThroughputTable.load(tmp_path / "gpu_throughput.yaml")
    assert table.kind == "measured"
    assert set(table.settings["resnet50@32"]["methods"]["spottune-split"]) == {"fp32", "bf16"}
    vit_rows = [line for line in (tmp_path / "gpu_results.md").read_text().splitlines() if line.startswith("| vit")]
    assert len(vit_rows) == 2 * 2 and all(line.endswith("| ok |") for line in vit_rows)  # vit_mini
    effnet_rows = [line for line in (tmp_path / "gpu_results.md").read_text().splitlines()
                   if line.startswith("| efficientnet_lite0@32")]
    assert len(effnet_rows) == 2 * 2 and all(line.endswith("| ok |") for line in effnet_rows)
    assert done.stdout.count("| finetune |") == 8 + 2  # and the two rows of the section "Runs per GPU"
    # runs per GPU: finetune and spottune, N = 1 and 2 worker processes each, with numbers
    report = (tmp_path / "gpu_results.md").read_text()
    assert "## Runs per GPU" in report and "## Runs per GPU" in done.stdout
    packed = {}
    for line in report.split("## Runs per GPU")[1].splitlines():
        cells = [c.strip() for c in line.strip("|").split("|")]
        if len(cells) == 7 and cells[0] in ("finetune", "spottune"):
            packed[cells[0], int(cells[1])] = cells
    assert set(packed) == {(m, n) for m in ("finetune", "spottune") for n in (1, 2)}
    for (method, n), (_, _, total, per_process, speedup, _, status) in packed.items():
        assert status == "ok" and float(total.replace(",", "")) > 0
        assert re.fullmatch(r"[\d,]+ \([\d,]+–[\d,]+\)", per_process)
        assert float(speedup) > 0 and (n > 1 or speedup == "1.00")
    assert "Not a GPU: these numbers only check the code path." in report


def test_dataset_sizes():
    assert run_sizes("decathlon/aircraft") == (6667, 3333)  # train+val as released
    assert run_sizes("decathlon/aircraft", {"split": "train", "eval_split": "val"}) == (3334, 3333)
    assert run_sizes("decathlon/dtd", {"split": "train", "eval_split": "holdout", "holdout": 0.1}) == (1692, 188)
    assert run_sizes("digits") == (1198, 599)
    assert run_sizes("glyph_letters", {"train_per_class": 10, "image_size": 64}) == (260, 874)
    assert run_sizes("cubs", {"eval_split": "holdout", "holdout": 0.5}) == (2997, 2997)
    assert run_sizes("no_such_dataset") is None


def test_run_cost_from_a_throughput_table():
    table = ThroughputTable(kind="measured", device="test", source="test", settings={
        "resnet26@64": {"batch_size": 32, "methods": {"finetune": {"fp32": {"train": 100.0, "eval": 400.0}}}}})
    config = RunSpec("spottune", "decathlon/dtd", 0, "test",
                     {"epochs": 10, "backbone": {"arch": "resnet26", "input_size": 64, "width": 1.0},
                      "data": {"split": "train"}})
    cost = run_cost(config, table)
    assert cost.train_images == 1880 and cost.test_images == 1880
    assert cost.gpu_hours == pytest.approx((10 * 1880 / 100 + 1880 / 400) / 3600)
    assert any("finetune's rate" in n for n in cost.notes)
    def at(size: int, width: float) -> float:
        backbone = {"arch": "resnet26", "input_size": size, "width": width}
        return run_cost(replace(config, hparams={**config.hparams, "backbone": backbone}), table).gpu_hours

    assert at(128, 1.0) == pytest.approx(4 * cost.gpu_hours)  # 4x the compute
    assert at(32, 0.5) == pytest.approx(cost.gpu_hours)  # smaller: never faster than measured
    unknown = run_cost(replace(config, dataset="no_such_dataset"), table)
    assert unknown.gpu_hours is None and "unknown" in unknown.describe()
    assert "image counts of wikiart [unverified]" in run_cost(replace(config, dataset="wikiart"), table).notes
    assert not any("cubs" in note for note in run_cost(replace(config, dataset="cubs"), table).notes)
    resnet101 = replace(config, hparams={**config.hparams, "backbone": {"arch": "resnet101", "input_size": 224}})
    assert run_cost(resnet101, table).gpu_hours is None  # no torchvision ResNet measured in this table


def test_dry_run_prints_epochs_sizes_and_gpu_hours(capsys):
    run_all = load_script("benchmarks/run_all.py")
    assert run_all.main(["--dry-run", "--methods", "finetune,spottune", "--datasets", "digits,glyph_fonts",
                 "--output", "/nonexistent"]) == 0
    out = capsys.readouterr().out
    lines = [line for line in out.splitlines() if " seed 0 " in line]
    assert len(lines) == 4 and all("epochs 5" in line and re.search(r"~[\d.]+ GPU-(h|min|s)$", line) for line in lines)
    assert sum("train     1198  test     599" in line for line in lines) == 2
    assert "estimated GPU time of the runs:" in out and GridCost([]).table.describe() in out
