"""What makes a run's numbers: the seeding formulas and the training loop, pinned.

The committed run ids (results/example) are what :func:`spottune.storage.records.run_id` computes from
each run's own recorded identity; the seeds of every stream are the formulas every existing
run was trained with; and :func:`spottune.training.loop.train_epoch` is exactly the recipe written
out by hand here (seed the generators, shuffle with the data-order generator, forward, loss
plus regulariser, step), so that a refactoring cannot change the numbers unnoticed.
"""
from __future__ import annotations

import json

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch.utils.data import DataLoader, TensorDataset

from spottune.storage import records
from spottune.backbones import resnet26
from spottune.methods import create_method
from spottune.seeding import DATA_ORDER, INITIALISATION, PRETRAINING, TRAINING, epoch_seed, seed_initialisation
from spottune.training.loop import build_optimizer, train_epoch
from tests.helpers import HP, REPO

EXAMPLE_RUNS = sorted((REPO / "results" / "example" / "runs").iterdir())


@pytest.mark.parametrize("folder", EXAMPLE_RUNS, ids=[f.name for f in EXAMPLE_RUNS])
def test_committed_run_ids_are_what_run_id_computes_from_their_identity(folder):
    config = json.loads((folder / records.CONFIG).read_text())
    assert records.run_id(config) == config["run_id"] == folder.name


def test_the_seed_of_every_stream():
    assert [epoch_seed(0, 0, TRAINING), epoch_seed(2, 5, TRAINING)] == [7919, 7919 * 3 + 5]
    assert [epoch_seed(0, 0, DATA_ORDER), epoch_seed(2, 5, DATA_ORDER)] == [1_000_003, 1_000_003 * 3 + 5]
    assert [epoch_seed(0, 1, PRETRAINING), epoch_seed(3, 1, PRETRAINING)] == [1, 3001]  # 1000 * seed + epoch
    assert [epoch_seed(0, 0, INITIALISATION), epoch_seed(4, 0, INITIALISATION)] == [0, 4]  # the seed itself


@pytest.mark.parametrize("seed", [0, 3])
def test_initialisation_is_seeded_as_every_committed_run_was(seed):
    """Runs recorded before seed_initialisation existed seeded torch with the bare seed: the
    same initial weights now."""
    torch.manual_seed(seed)
    before = torch.nn.Linear(8, 4).weight.detach().clone()
    seed_initialisation(seed)
    assert torch.equal(torch.nn.Linear(8, 4).weight, before)


def tiny_task(n: int = 24) -> TensorDataset:
    generator = torch.Generator().manual_seed(7)
    return TensorDataset(torch.randn(n, 3, 32, 32, generator=generator), torch.randint(0, 3, (n,), generator=generator))


def trained(method_name: str, by_hand: bool) -> tuple[list[float], dict[str, torch.Tensor]]:
    """Two epochs of ``method_name`` (seed 1) through train_epoch, or through the recipe by hand."""
    torch.manual_seed(0)
    method = create_method(method_name, {**HP, "epochs": 2, "batch_size": 8})
    model = method.build(resnet26(4, width=0.125, input_size=32), 3)
    optimizer = build_optimizer(method, model)
    losses = []
    for epoch in range(2):
        if not by_hand:
            losses.append(train_epoch(model, method, optimizer, tiny_task(), batch_size=8, seed=1, epoch=epoch,
                                      device=torch.device("cpu"))["train_loss"])
            continue
        torch.manual_seed(7919 * 2 + epoch)
        np.random.seed(7919 * 2 + epoch)
        model.train()
        order = torch.Generator().manual_seed(1_000_003 * 2 + epoch)
        total = 0.0
        for x, y in DataLoader(tiny_task(), batch_size=8, shuffle=True, generator=order):
            outputs = method.forward(model, x)
            loss = F.cross_entropy(outputs.logits, y)
            extra = method.regularizer(model, outputs)
            loss = loss if extra is None else loss + extra
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            total += float(loss.detach()) * len(y)
        losses.append(total / 24)
    return losses, {k: v.clone() for k, v in model.state_dict().items()}


@pytest.mark.parametrize("method", ["spottune_global", "stochastic_finetune", "l2sp"])
def test_train_epoch_is_the_seeded_recipe(method):
    losses, state = trained(method, by_hand=False)
    hand_losses, hand_state = trained(method, by_hand=True)
    assert losses == hand_losses
    assert state.keys() == hand_state.keys() and all(torch.equal(state[k], hand_state[k]) for k in state)
