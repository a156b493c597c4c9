"""Test plugin: a run raises :class:`InjectedFailure` at the start of epoch
``$SPOTTUNE_TEST_FAIL_AT_EPOCH`` (1-based) when that variable is set, and trains as usual otherwise
(a suite pretraining's epochs are never failed).

Loaded like any plugin (``run_all.py --plugins tests.fail_at_epoch``: the engine imports it in
every worker and SLURM job, which inherit the variable) or imported by a test
(``monkeypatch.setenv(ENV, "2")``); importing it wraps ``spottune.training.loop``'s epoch function once.
The engine itself knows nothing of it.
"""
from __future__ import annotations

import functools
import os
from typing import Any

from spottune.training import loop as training
from spottune.seeding import PRETRAINING

ENV = "SPOTTUNE_TEST_FAIL_AT_EPOCH"


class InjectedFailure(RuntimeError):
    """The failure this plugin injects (tests of failure handling and resume)."""


def _failing(train_epoch: Any) -> Any:
    @functools.wraps(train_epoch)
    def epoch_or_failure(*args: Any, epoch: int, **kwargs: Any) -> dict[str, Any]:
        if os.environ.get(ENV) == str(epoch + 1) and kwargs.get("stream") is not PRETRAINING:
            raise InjectedFailure(f"injected failure at epoch {epoch + 1} (${ENV})")
        return train_epoch(*args, epoch=epoch, **kwargs)

    epoch_or_failure.injects_failures = True
    return epoch_or_failure


if not getattr(training.train_epoch, "injects_failures", False):
    training.train_epoch = _failing(training.train_epoch)
