from __future__ import annotations


import pytest
import torch
import torchvision
from torch import nn

from spottune.backbones import (backbone_size, count_parameters, from_torchvision, load_released_resnet26,
                                resnet26, torchvision_resnet)
from spottune.pretraining.weights import pretrained_backbone
from tests.released_files import released_network, save_released


def test_resnet26_shapes_and_structure():
    net = resnet26(10)
    assert net.num_blocks == 12
    assert net.arch == "resnet26"
    x = torch.randn(2, 3, 64, 64)
    assert net(x).shape == (2, 10)
    assert net.forward_features(x).shape == (2, 256, 8, 8)
    convs = [m for m in net.modules() if isinstance(m, nn.Conv2d)]
    assert len(convs) == 25 and all(c.kernel_size == (3, 3) and c.bias is None for c in convs)
    # ~5.81M conv weights (Rebuffi et al.'s ResNet-26); shortcuts have no parameters
    assert sum(c.weight.numel() for c in convs) == pytest.approx(5.81e6, rel=0.01)
    assert isinstance(net.stem[-1], nn.BatchNorm2d) and len(net.stem) == 2  # no ReLU in the stem
    strides = [b.conv1.stride[0] for b in net.blocks]
    assert strides == [2, 1, 1, 1] * 3


def test_resnet26_width_and_init():
    net = resnet26(5, width=0.25)
    assert net.feature_dim == 64
    conv = net.blocks[0].conv1
    expected = (2.0 / (3 * 3 * conv.out_channels)) ** 0.5
    assert conv.weight.std().item() == pytest.approx(expected, rel=0.1)
    assert torch.all(net.blocks[0].bn1.weight == 1) and torch.all(net.blocks[0].bn1.bias == 0)


def test_zero_pad_shortcut_is_avgpool_and_zeros():
    block = resnet26(2, width=0.25).blocks[4]
    x = torch.randn(1, 16, 8, 8)
    s = block.shortcut(x)
    assert s.shape == (1, 32, 4, 4)
    assert torch.equal(s[:, :16], nn.functional.avg_pool2d(x, 2))
    assert torch.all(s[:, 16:] == 0)


@pytest.mark.parametrize("arch", ["resnet50", "resnet101"])
def test_from_torchvision_identical_outputs(arch):
    model = getattr(torchvision.models, arch)(weights=None).eval()
    backbone = from_torchvision(model, arch).eval()
    x = torch.randn(2, 3, 64, 64)
    with torch.no_grad():
        diff = (backbone(x) - model(x)).abs().max().item()
    assert diff < 1e-5
    assert backbone.num_blocks == {"resnet50": 16, "resnet101": 33}[arch]


def test_torchvision_resnet_reset_classifier_and_size():
    backbone = torchvision_resnet("resnet18", 7)
    assert backbone.head.fc.out_features == 7
    assert backbone_size(backbone) == count_parameters(backbone) - (512 * 7 + 7)
    with pytest.raises(ValueError, match="known"):
        torchvision_resnet("resnet19", 7)


def test_torchvision_state_dict_keeps_its_classifier(tmp_path):
    """A user's torchvision weights arrive whole, classifier included (LwF distils from it)."""
    torch.manual_seed(0)
    model = torchvision.models.resnet18(weights=None, num_classes=10).eval()
    torch.save(model.state_dict(), tmp_path / "resnet18.pt")
    backbone = pretrained_backbone({"arch": "resnet18", "input_size": 224,
                                    "pretrained": {"kind": "state_dict", "path": str(tmp_path / "resnet18.pt")}})
    assert torch.equal(backbone.head.fc.weight, model.fc.weight)
    x = torch.randn(2, 3, 64, 64)
    with torch.no_grad():
        assert torch.equal(backbone.eval()(x), model(x))


def test_released_checkpoint_with_wrong_architecture_says_so(tmp_path, monkeypatch):
    path = save_released(released_network(monkeypatch, width=0.25), tmp_path / "ckpt.t7")
    with pytest.raises(ValueError, match="width"):
        load_released_resnet26(path, resnet26(10, width=0.5))
