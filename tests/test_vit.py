"""Vision Transformers in the backbone contract: timm / torchvision / safetensors weights, the
suite's own pretraining of ``vit_mini``, methods per family, SpotTune on transformer blocks.

Tiny settings: ``vit_mini`` (32 px, 0.69 M parameters) and a 2-block ViT of width 32.
"""
from __future__ import annotations

import pytest
import torch
from safetensors.torch import save_file
from torchvision.models.vision_transformer import VisionTransformer

from spottune import SpotTune
from spottune.backbones import backbone_size, vit
from spottune.backbones.vit import VIT_ARCHS, timm_vit
from spottune.planning.grid import make_grid
from spottune.methods import create_method, get_method, list_methods
from spottune.pretraining.weights import describe_checkpoint_file, pretrained_backbone
from spottune.routing.network import SpotTuneGlobal
from tests.helpers import HP


def images(n: int = 4, seed: int = 0) -> torch.Tensor:
    return torch.randn(n, 3, 32, 32, generator=torch.Generator().manual_seed(seed))


def test_contract_shapes_and_the_timm_function():
    torch.manual_seed(0)
    reference = timm_vit("vit_mini", 7).eval()
    model = vit("vit_mini", 7, state_dict=reference.state_dict()).eval()
    x = images()
    tokens = model.stem(x)
    patches = (32 // VIT_ARCHS["vit_mini"]["patch_size"]) ** 2
    assert tokens.shape == (4, 1 + patches, 96)
    assert model.blocks[0](tokens).shape == tokens.shape and model.num_blocks == 6
    assert model.head.features(model.forward_features(x)).shape == (4, model.feature_dim)
    assert model.family == "vit" and model.input_size == 32
    assert torch.equal(model(x), reference(x))
    assert backbone_size(model) == sum(p.numel() for n, p in reference.named_parameters() if not n.startswith("head."))


def test_torchvision_weights_give_the_same_function():
    torchvision_vit = VisionTransformer(image_size=32, patch_size=8, num_layers=6, num_heads=3, hidden_dim=96,
                                        mlp_dim=384, num_classes=5).eval()
    model = vit("vit_mini", 1, state_dict=torchvision_vit.state_dict()).eval()
    x = images()
    assert model.head.fc.out_features == 5
    assert (model(x) - torchvision_vit(x)).abs().max() < 1e-5


@pytest.mark.parametrize("suffix", [".safetensors", ".pth"])
def test_local_weights_files_load_as_state_dict_kind(tmp_path, suffix):
    torch.manual_seed(0)
    reference = timm_vit("vit_mini", 3).eval()
    path = tmp_path / f"vit{suffix}"
    if suffix == ".safetensors":
        save_file(reference.state_dict(), str(path))
    else:
        torch.save(reference.state_dict(), path)
    described = describe_checkpoint_file(path)
    assert described["kind"] == "state_dict"
    model = pretrained_backbone({"arch": "vit_mini", "pretrained": {"kind": "state_dict", "path": str(path)}})
    assert model.pretraining == {"kind": "state_dict", "id": described["sha256"]}
    assert torch.equal(model.eval()(images()), reference(images()))


def test_a_foreign_state_dict_is_refused_naming_the_architecture():
    with pytest.raises(ValueError, match="does not fit vit_mini"):
        vit("vit_mini", 1, state_dict=timm_vit("vit_tiny_patch16_224", 2).state_dict())


def test_the_suite_pretrains_vit_mini_and_caches_it():
    spec = {"arch": "vit_mini", "pretrained": {"kind": "suite", "dataset": "mini_source", "epochs": 1,
                                               "batch_size": 64, "lr": 0.1, "weight_decay": 5e-4, "seed": 0,
                                               "max_images": 128}}
    first = pretrained_backbone(spec, progress=False)
    again = pretrained_backbone(spec, progress=False)
    assert first.family == "vit" and first.head.fc.out_features == 6
    assert first.pretraining["kind"] == "suite" and 0 <= first.pretraining["test_accuracy"] <= 100
    assert all(torch.equal(a, b) for a, b in zip(first.state_dict().values(), again.state_dict().values()))


@pytest.mark.parametrize("name", [m for m in list_methods() if "vit" not in get_method(m).families])
def test_cnn_only_methods_refuse_a_vit_clearly(name):
    method = create_method(name, HP)
    families = " and ".join(get_method(name).families)
    with pytest.raises(ValueError, match=f"method {name} applies to {families} backbones only; vit_mini is a vit"):
        method.build(vit("vit_mini", 6), 5)


@pytest.mark.parametrize("model_class", [SpotTune, SpotTuneGlobal])
def test_spottune_on_vit_blocks_hard_routing_equals_the_two_path_computation(model_class):
    torch.manual_seed(0)
    model = model_class(vit("vit_mini", 6), 5, policy_width=0.25)
    frozen_linear = [p.requires_grad for n, p in model.frozen_blocks.named_parameters() if ".norm" not in n]
    frozen_norms = [p.requires_grad for n, p in model.frozen_blocks.named_parameters() if ".norm" in n]
    assert not any(frozen_linear) and all(frozen_norms)  # freeze "conv": linear maps frozen, LayerNorms train
    with torch.no_grad():
        for p in model.tuned_blocks.parameters():
            p.add_(0.05 * torch.randn_like(p))
    model.eval()
    x = images(7)
    rows, cols = torch.arange(7).view(-1, 1), torch.arange(6).view(1, -1)
    decisions = ((rows + cols) % 2).float()  # every block splits the batch
    with torch.no_grad():
        routed = model(x, policy=decisions)
        h = model.stem(x)
        for t, (frozen, tuned) in enumerate(zip(model.frozen_blocks, model.tuned_blocks)):
            a = decisions[:, t].view(-1, 1, 1)
            h = (1 - a) * frozen(h) + a * tuned(h)
        assert (routed - model.head(h)).abs().max() < 1e-5


def test_mini_vit_preset_runs_the_methods_of_the_vit_family_only():
    grid = make_grid("mini-vit")
    assert grid.methods == [m for m in list_methods() if "vit" in get_method(m).families]
    assert {"vpt_deep", "lora", "spottune", "finetune"} <= set(grid.methods) and "bn_adapt" not in grid.methods
    assert "vpt_deep" not in make_grid("mini").methods
    # the budget: AdamW for 6 epochs on the two transferable tasks, frozen-backbone methods at 10x the lr
    lrs = {spec.method: spec.hparams["lr"] for spec in grid.runs() if spec.dataset == "digits"}
    assert grid.datasets == ["fmnist_heldout", "digits"] and {s.hparams["epochs"] for s in grid.runs()} == {6}
    assert lrs["finetune"] == lrs["spottune"] == 0.001 and lrs["lora"] == lrs["feature_extractor"] == 0.01
    with pytest.raises(ValueError, match="method piggyback applies to cnn and mbconv backbones only; vit_mini is a vit"):
        make_grid("mini-vit", ["finetune", "piggyback"])
