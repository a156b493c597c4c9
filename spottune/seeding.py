"""The one seeding formula: every epoch's randomness is a function of ``(seed, epoch)`` and a stream.

A run's epoch ``e`` draws from generators seeded with :func:`epoch_seed` at the start of the
epoch, so that a run resumed from the checkpoint of epoch ``e - 1`` continues exactly as an
uninterrupted one (same device and thread count, same numbers). Streams keep the draws of
different consumers apart; their constants are part of every run's numbers and never change:

* :data:`TRAINING`: ``7919 * (seed + 1) + epoch`` seeds torch's and numpy's global generators
  (augmentation, Gumbel noise, stochastic routing, dropout) for a target-task epoch;
* :data:`DATA_ORDER`: ``1_000_003 * (seed + 1) + epoch`` seeds the ``DataLoader``'s own generator
  (the order of the images and the loader workers' seeds);
* :data:`INITIALISATION`: ``seed`` itself seeds torch's global generator before a network is
  built (a backbone from random initialisation, a method's new layers: :func:`seed_initialisation`);
* :data:`PRETRAINING`: ``1000 * (seed + 1) + epoch - 1000`` (``1000 * seed + epoch``, the values
  the suite's pretraining has always used, ``spottune.pretraining.cache.PRETRAINING_VERSION`` 2) seeds the
  global generators for an epoch of the suite's own pretraining.

Imports torch and numpy only, so that the data loaders and the training loop share it.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch


@dataclass(frozen=True)
class SeedStream:
    """A consumer of randomness: its seed for ``(seed, epoch)`` is
    ``multiplier * (seed + 1) + epoch + offset`` (the salt that keeps consumers apart)."""

    name: str
    multiplier: int
    offset: int = 0


TRAINING = SeedStream("training", 7919)
DATA_ORDER = SeedStream("data order", 1_000_003)
PRETRAINING = SeedStream("pretraining", 1000, offset=-1000)
INITIALISATION = SeedStream("initialisation", 1, offset=-1)  # the seed itself


def seed_initialisation(seed: int) -> None:
    """Seed torch's global generator before building a network: its random initial weights (a
    backbone from random initialisation, a method's new layers) follow the run's seed."""
    torch.manual_seed(epoch_seed(seed, 0, INITIALISATION))


def epoch_seed(seed: int, epoch: int, stream: SeedStream) -> int:
    """The seed of ``stream`` for epoch ``epoch`` (0-based) of a run with seed ``seed``."""
    return stream.multiplier * (int(seed) + 1) + int(epoch) + stream.offset


def seed_epoch(seed: int, epoch: int, stream: SeedStream = TRAINING) -> None:
    """Seed torch's and numpy's global generators for one epoch (see the module docstring)."""
    value = epoch_seed(seed, epoch, stream)
    torch.manual_seed(value)
    np.random.seed(value % 2**32)


def epoch_generator(seed: int, epoch: int, stream: SeedStream = DATA_ORDER) -> torch.Generator:
    """A generator of its own for one epoch (a ``DataLoader``'s order and worker seeds)."""
    return torch.Generator().manual_seed(epoch_seed(seed, epoch, stream))
