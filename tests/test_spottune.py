from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from spottune import SpotTune, SpotTuneGlobal
from spottune.backbones import resnet26, torchvision_resnet
from spottune.methods import ForwardOutputs, create_method
from spottune.routing.network import gumbel_softmax_decisions
from spottune.training.loop import build_optimizer, train_step
from tests.helpers import HP, tiny_spottune



def test_num_blocks():
    assert tiny_spottune().num_blocks == 12
    assert SpotTune(torchvision_resnet("resnet101", 3), 3).num_blocks == 33


def test_all_frozen_and_all_tuned_routing_agree_at_initialisation():
    model = tiny_spottune().eval()
    x = torch.randn(4, 3, 32, 32)
    zeros, ones = torch.zeros(4, 12), torch.ones(4, 12)
    with torch.no_grad():
        assert torch.equal(model(x, policy=zeros), model(x, policy=ones))


def test_decisions_are_exactly_binary_and_recorded():
    model = tiny_spottune().train()
    logits, decisions = model.forward_routed(torch.randn(8, 3, 32, 32))
    assert decisions.shape == (8, 12) and decisions.requires_grad
    assert set(decisions.detach().unique().tolist()) <= {0.0, 1.0}
    recorded = ForwardOutputs(logits, routing=decisions).detached().routing
    assert recorded.dtype == torch.uint8 and torch.equal(recorded.float(), decisions.detach())


def test_gumbel_straight_through_gradient_is_the_soft_gradient():
    logits = torch.randn(3, 4, 2, requires_grad=True)
    hard = gumbel_softmax_decisions(logits, temperature=5.0, sample=False)
    assert torch.equal(hard, (logits[..., 1] > logits[..., 0]).float())
    hard.sum().backward()
    soft = F.softmax(logits.detach() / 5.0, dim=-1)
    expected = torch.stack([-soft[..., 0] * soft[..., 1], soft[..., 0] * soft[..., 1]], -1) / 5.0
    assert torch.allclose(logits.grad, expected, atol=1e-6)


def test_evaluation_routes_by_argmax_and_sampled_option_adds_noise():
    model = tiny_spottune().eval()
    x = torch.randn(16, 3, 32, 32)
    with torch.no_grad():
        a, b = model.route(x), model.route(x)
        assert torch.equal(a, b)
        assert torch.equal(a, (model.policy(x).argmax(-1) == 1).float())
        model.test_routing = "sampled"
        draws = torch.stack([model.route(x) for _ in range(20)])
    assert (draws != draws[0]).any()


def test_frozen_copy_bit_identical_after_step_tuned_copy_and_policy_change():
    method = create_method("spottune", {**HP, "policy_width": 0.25})
    model = method.build(resnet26(5, width=0.25, input_size=32), 5).train()
    frozen_before = {n: p.detach().clone() for n, p in model.frozen_blocks.named_parameters() if not p.requires_grad}
    tuned_before = {n: p.detach().clone() for n, p in model.tuned_blocks.named_parameters()}
    policy_before = {n: p.detach().clone() for n, p in model.policy.named_parameters()}
    opt = build_optimizer(method, model)
    x, y = torch.randn(8, 3, 32, 32), torch.randint(0, 5, (8,))
    train_step(model, method, opt, x, y)
    assert frozen_before and all("conv" in n for n in frozen_before)  # as released: conv weights only
    for n, p in model.frozen_blocks.named_parameters():
        if n in frozen_before:
            assert torch.equal(p, frozen_before[n]), n
    tuned_convs = [n for n in tuned_before if "conv" in n]
    assert any(not torch.equal(dict(model.tuned_blocks.named_parameters())[n], tuned_before[n]) for n in tuned_convs)
    # both copies are equal at initialisation, so d loss / d a_t = <grad, F'_t(x) - F_t(x)> = 0
    # on the first step; from the second step on the policy network receives gradient
    assert all(p.grad.abs().sum() == 0 for p in model.policy.parameters())
    train_step(model, method, opt, x, y)
    assert any(p.grad.abs().sum() > 0 for p in model.policy.parameters())
    assert any(not torch.equal(p, policy_before[n]) for n, p in model.policy.named_parameters())
    groups = {g["name"]: g for g in opt.param_groups}
    assert groups["policy"]["lr"] == pytest.approx(0.01) and groups["policy"]["weight_decay"] == 1e-3


def test_freeze_block_freezes_batchnorm_statistics_too():
    model = tiny_spottune(freeze="block").train()
    assert all(not p.requires_grad for p in model.frozen_blocks.parameters())
    stats = model.frozen_blocks[0].bn1.running_mean.clone()
    model(torch.randn(8, 3, 32, 32) * 3 + 1)
    assert torch.equal(model.frozen_blocks[0].bn1.running_mean, stats)


def test_explicit_policy_overrides_and_is_validated():
    model = tiny_spottune().eval()
    x = torch.randn(2, 3, 32, 32)
    policy = torch.tensor([[1.0] * 12, [0.0] * 12])
    assert torch.equal(model.forward_routed(x, policy=policy)[1], policy)
    with pytest.raises(ValueError, match="shape"):
        model(x, policy=torch.ones(2, 11))


def test_policy_network_downsamples_224_px_inputs():
    model = SpotTune(torchvision_resnet("resnet18", 3), 3, policy_width=0.25)
    assert model.policy.input_size == 64
    assert model.policy(torch.randn(1, 3, 224, 224)).shape == (1, 8, 2)


def test_spottune_global_regularizer_and_global_routing():
    model = SpotTuneGlobal(resnet26(5, width=0.25, input_size=32), 5, k=3, lambda_k=1.0,
                           lambda_entropy=0.5, policy_width=0.25).train()
    _, decisions = model.forward_routed(torch.randn(8, 3, 32, 32))
    v = decisions.mean(0)
    expected = (v.sum() - 3) ** 2 + 0.5 * -(v * torch.log(v.clamp_min(1e-8))).sum()
    reg = model.regularizer(decisions)
    assert reg.item() == pytest.approx(expected.item(), rel=1e-6)
    reg.backward()
    assert any(p.grad is not None and p.grad.abs().sum() > 0 for p in model.policy.parameters())
    model.finetune_fraction.copy_(torch.tensor([0.9, 0.1] * 6))
    model.eval()
    assert torch.equal(model.forward_routed(torch.randn(4, 3, 32, 32))[1], torch.tensor([[1.0, 0.0] * 6] * 4))


def test_spottune_global_rejects_impossible_k():
    with pytest.raises(ValueError, match="k must be"):
        SpotTuneGlobal(resnet26(5, width=0.25), 5, k=13)
