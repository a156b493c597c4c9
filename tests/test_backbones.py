from __future__ import annotations

import sys
import types

import pytest
import torch
import torchvision
from torch import nn

from spottune.backbones import (backbone_size, count_parameters, from_torchvision, load_released_resnet26,
                                resnet26, torchvision_resnet)
from spottune.pretrain import pretrained_backbone


def test_resnet26_shapes_and_structure():
    net = resnet26(10)
    assert net.num_blocks == 12
    assert net.arch == "resnet26"
    x = torch.randn(2, 3, 64, 64)
    assert net(x).shape == (2, 10)
    assert net.forward_features(x).shape == (2, 256, 8, 8)
    convs = [m for m in net.modules() if isinstance(m, nn.Conv2d)]
    assert len(convs) == 25 and all(c.kernel_size == (3, 3) and c.bias is None for c in convs)
    # ~5.81M conv weights (REFERENCE 3.1); shortcuts have no parameters
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


def _fake_released_module():
    """Classes with the names of residual_adapters' models.py (a pickled whole module)."""
    mod = types.ModuleType("models")

    class conv_task(nn.Module):  # noqa: N801 - the released name
        def __init__(self, cin, cout, stride):
            super().__init__()
            self.conv = nn.Conv2d(cin, cout, 3, stride, 1, bias=False)
            self.bns = nn.ModuleList([nn.Sequential(nn.BatchNorm2d(cout))])
            self.parallel_conv = nn.ModuleList([nn.Conv2d(cin, cout, 1, stride, bias=False)])

    class BasicBlock(nn.Module):
        def __init__(self, cin, cout, stride):
            super().__init__()
            self.conv1 = conv_task(cin, cout, stride)
            self.conv2 = conv_task(cout, cout, 1)

    class ResNet(nn.Module):
        def __init__(self, width):
            super().__init__()
            self.pre_layers_conv = conv_task(3, int(32 * width), 1)
            blocks, cin = [], int(32 * width)
            for w in (64, 128, 256):
                for b in range(4):
                    blocks.append(BasicBlock(cin, int(w * width), 2 if b == 0 else 1))
                    cin = int(w * width)
            self.blocks = nn.Sequential(*blocks)
            self.end_bns = nn.ModuleList([nn.Sequential(nn.BatchNorm2d(cin), nn.ReLU(True))])
            self.linears = nn.ModuleList([nn.Linear(cin, 1000)])

    for cls in (conv_task, BasicBlock, ResNet):
        cls.__module__ = "models"
        cls.__qualname__ = cls.__name__
        setattr(mod, cls.__name__, cls)
    return mod


def test_released_checkpoint_loads_without_running_its_classes(tmp_path, monkeypatch):
    mod = _fake_released_module()
    monkeypatch.setitem(sys.modules, "models", mod)
    released = mod.ResNet(0.25)
    with torch.no_grad():
        for p in released.parameters():
            p.normal_()
        for m in released.modules():
            if isinstance(m, nn.BatchNorm2d):
                m.running_mean.normal_()
                m.running_var.uniform_(0.5, 2.0)
    path = tmp_path / "resnet26_pretrained.t7"
    torch.save({"net": released}, path)
    trap = types.ModuleType("models")  # the loader must never touch the checkpoint's classes

    def boom(name):
        raise AssertionError(f"the loader looked up models.{name}")

    trap.__getattr__ = boom
    monkeypatch.setitem(sys.modules, "models", trap)
    net = load_released_resnet26(path, resnet26(10, width=0.25))
    theirs3x3 = [m.weight for m in released.modules() if isinstance(m, nn.Conv2d) and m.kernel_size == (3, 3)]
    mine3x3 = [m.weight for m in net.modules() if isinstance(m, nn.Conv2d)]
    assert all(torch.equal(a, b) for a, b in zip(theirs3x3, mine3x3))
    theirs_bn = [m for m in released.modules() if isinstance(m, nn.BatchNorm2d)]
    mine_bn = [m for m in net.modules() if isinstance(m, nn.BatchNorm2d)]
    assert len(theirs_bn) == len(mine_bn) == 26
    assert all(torch.equal(a.running_var, b.running_var) and torch.equal(a.weight, b.weight)
               for a, b in zip(theirs_bn, mine_bn))


def test_released_checkpoint_with_wrong_architecture_says_so(tmp_path, monkeypatch):
    mod = _fake_released_module()
    monkeypatch.setitem(sys.modules, "models", mod)
    path = tmp_path / "ckpt.t7"
    torch.save({"net": mod.ResNet(0.25)}, path)
    with pytest.raises(ValueError, match="width"):
        load_released_resnet26(path, resnet26(10, width=0.5))
