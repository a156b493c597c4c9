"""No host read per training batch: :func:`spottune.training.loop.train_epoch` sums the loss, the
correct predictions and the routing counts on the device and reads them back once per epoch,
with the numbers that reading them after every batch gave.
"""
from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import pytest
import torch
from torch.utils.data import TensorDataset

from spottune.training import loop as training
from spottune.backbones import resnet26
from spottune.data import make_loader
from spottune.methods import Method, create_method
from spottune.seeding import TRAINING, seed_epoch
from spottune.training.loop import build_optimizer, train_epoch, train_step
from tests.helpers import HP

CPU = torch.device("cpu")
BATCH = 4
# the tensor methods that copy a value to the host: on a GPU each one waits for the device
HOST_READS = ("item", "tolist", "cpu", "numpy", "__float__", "__int__", "__bool__", "__index__", "__array__")
# the plain model (method None, the suite's pretraining), the default grid's methods, the routed ablations
# and TAPS (a straight-through step per layer and a penalty on the scores at every step)
METHODS = [None, "finetune", "feature_extractor", "l2sp", "residual_adapters_parallel", "spottune",
           "spottune_global", "stochastic_finetune", "random_policy", "taps"]
ROUTED = ("spottune", "spottune_global", "stochastic_finetune", "random_policy")  # those that record routing


def task(batches: int, last: int = BATCH) -> TensorDataset:
    """``batches`` batches of random 32 px images of 3 classes, the last one of ``last`` images."""
    n = (batches - 1) * BATCH + last
    generator = torch.Generator().manual_seed(7)
    return TensorDataset(torch.randn(n, 3, 32, 32, generator=generator), torch.randint(0, 3, (n,), generator=generator))


def build(method_name: str | None) -> tuple[Method | None, torch.nn.Module, torch.optim.Optimizer]:
    """``method_name``'s model on a ResNet-26 of width 0.125 (the same weights on every call)."""
    torch.manual_seed(0)
    backbone = resnet26(4, width=0.125, input_size=32)
    if method_name is None:
        model = backbone.for_task(3)
        return None, model, torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
    method = create_method(method_name, {**HP, "epochs": 2, "batch_size": BATCH})
    model = method.build(backbone, 3)
    return method, model, build_optimizer(method, model)


def per_batch_reads(model: torch.nn.Module, method: Method | None, optimizer: torch.optim.Optimizer,
                    train: TensorDataset, *, seed: int, epoch: int) -> dict[str, Any]:
    """The epoch as the engine ran it before: loss, correct count and routing counts read to
    the host after every batch and summed there (the reference)."""
    seed_epoch(seed, epoch, TRAINING)
    model.train()
    total_loss, correct, seen, routed = 0.0, 0, 0, []
    for x, y in make_loader(train, BATCH, shuffle=True, seed=seed, epoch=epoch):
        loss, outputs = train_step(model, method, optimizer, x, y)
        total_loss += float(loss) * len(y)
        correct += int((outputs.logits.argmax(1) == y).sum())
        seen += len(y)
        if outputs.routing is not None:
            routed.append(outputs.routing.float().sum(0).cpu())
    entry = {"epoch": epoch + 1, "lr": optimizer.param_groups[0]["lr"], "train_loss": total_loss / seen,
             "train_accuracy": 100.0 * correct / seen}
    if routed:
        entry["finetune_fraction"] = (torch.stack(routed).sum(0) / seen).tolist()
    return entry


@pytest.mark.parametrize("method_name", METHODS)
def test_the_epoch_gives_the_numbers_of_per_batch_host_reads(method_name, monkeypatch):
    """Two epochs of 3 batches (4, 4, 3 images), the bar's loss read every 2 batches: the same
    entries, bit for bit, and the same weights as with per-batch reads."""
    monkeypatch.setattr(training, "PROGRESS_LOSS_EVERY", 2)
    train = task(3, last=3)
    entries, states = [], []
    for epoch_fn in (per_batch_reads, None):
        method, model, optimizer = build(method_name)
        run = []
        for epoch in range(2):
            if epoch_fn is None:
                entry = train_epoch(model, method, optimizer, train, batch_size=BATCH, seed=1, epoch=epoch,
                                    device=CPU, progress=True)
                assert entry.pop("seconds") > 0 and entry.pop("images_per_second") > 0
            else:
                entry = epoch_fn(model, method, optimizer, train, seed=1, epoch=epoch)
            run.append(entry)
        entries.append(run)
        states.append(model.state_dict())
    reference, new = entries
    assert new == reference
    assert reference[0]["train_loss"] > 0 and 0 <= reference[0]["train_accuracy"] <= 100
    routed = method_name in ROUTED
    assert all(("finetune_fraction" in e) == routed for e in new)
    if routed:  # fractions of the 11 images: multiples of 1/11 in float32
        fractions = torch.tensor(new[1]["finetune_fraction"])
        assert len(fractions) == 12 and torch.equal(fractions, (fractions * 11).round() / 11)
    assert states[0].keys() == states[1].keys() and all(torch.equal(states[0][k], states[1][k]) for k in states[0])


@contextmanager
def counting_host_reads() -> Iterator[Counter[str]]:
    """Count every call of the :data:`HOST_READS` methods on any tensor while the block runs."""
    counts: Counter[str] = Counter()
    originals = {name: getattr(torch.Tensor, name) for name in HOST_READS}
    own = {name for name in HOST_READS if name in vars(torch.Tensor)}  # the others come from the C base class

    def counted(name: str, original: Callable[..., Any]) -> Callable[..., Any]:
        def read(self: torch.Tensor, *args: Any, **kwargs: Any) -> Any:
            counts[name] += 1
            return original(self, *args, **kwargs)
        return read

    for name, original in originals.items():
        setattr(torch.Tensor, name, counted(name, original))
    try:
        yield counts
    finally:
        for name, original in originals.items():
            if name in own:
                setattr(torch.Tensor, name, original)
            else:
                delattr(torch.Tensor, name)


def host_reads(method_name: str | None, batches: int, progress: bool) -> Counter[str]:
    """The host reads of one epoch of ``batches`` batches (after the model is built)."""
    method, model, optimizer = build(method_name)
    train = task(batches)
    with counting_host_reads() as counts:
        train_epoch(model, method, optimizer, train, batch_size=BATCH, seed=1, epoch=0, device=CPU,
                    progress=progress)
    return counts


def test_the_counter_sees_host_reads():
    """Each way of reading a tensor on the host counts once, and the methods are put back."""
    originals = {name: vars(torch.Tensor).get(name) for name in HOST_READS}
    with counting_host_reads() as counts:
        value = torch.ones(3)
        float(value.sum()), int(value[0]), value.tolist(), value.sum().item(), bool(value.all()), value.cpu()
        value.numpy(), [0, 1][value[0].long()]
    assert counts == Counter({"__float__": 1, "__int__": 1, "tolist": 1, "item": 1, "__bool__": 1, "cpu": 1,
                              "numpy": 1, "__index__": 1})
    assert {name: vars(torch.Tensor).get(name) for name in HOST_READS} == originals


@pytest.mark.parametrize("method_name", METHODS)
def test_no_host_read_per_batch(method_name):
    """An epoch of 6 batches reads the device as often as one of 2: once per epoch, whatever
    its length (the loader's shuffle and the end-of-epoch sums), and never per batch."""
    two, six = host_reads(method_name, 2, progress=False), host_reads(method_name, 6, progress=False)
    assert six == two
    assert two["__float__"] == 1 and two["__int__"] == 1  # the loss sum and the correct count
    assert two["cpu"] == int(method_name in ROUTED)  # the routing counts


@pytest.mark.parametrize("every, extra", [(50, 0), (2, 2)])
def test_the_progress_bar_reads_the_loss_every_so_many_batches(every, extra, monkeypatch):
    """With the bar, the running loss is read every ``PROGRESS_LOSS_EVERY`` batches: 6 batches
    read it ``6 // every - 2 // every`` times more than 2 batches."""
    monkeypatch.setattr(training, "PROGRESS_LOSS_EVERY", every)
    two, six = host_reads("spottune", 2, progress=True), host_reads("spottune", 6, progress=True)
    assert six - two == Counter({"__float__": extra} if extra else {})
    assert two["__float__"] == 1 + 2 // every
