"""Training budgets given in iterations (optimiser steps), as some official protocols state them.

The engine trains for whole epochs with a step schedule at epoch milestones. A method or
variant whose own protocol is stated in iterations (L2-SP: 9,000 iterations of batch 64, lr
x0.1 at iteration 5,000) sets ``iterations`` and ``lr_milestone_iterations``; for each dataset
they become::

    steps per epoch  s = ceil(n_train / batch_size)          (the loader keeps the last batch)
    epochs           = max(1, round(iterations / s))
    lr_milestones    = [max(1, round(m / s)) for m in lr_milestone_iterations]

with ``n_train`` the run's training images known before any is read
(:func:`spottune.estimates.dataset_sizes.run_sizes`). The budget is then within half an epoch of the
stated one; the resolved ``epochs`` and ``lr_milestones`` are part of the run's hyperparameters
(and of its id), and both iteration counts stay recorded beside them.
"""
from __future__ import annotations

import math
from typing import Any

from spottune.estimates.dataset_sizes import run_sizes


def epochs_for_iterations(hp: dict[str, Any], dataset: str) -> dict[str, Any]:
    """``{"epochs", "lr_milestones"}`` equivalent to ``hp['iterations']`` on ``dataset``."""
    sizes = run_sizes(dataset, hp.get("data"))
    if sizes is None:
        raise ValueError(f"{dataset}: training-set size unknown, so iterations={hp['iterations']} cannot be "
                         f"turned into epochs; set epochs and lr_milestones instead")
    steps = math.ceil(sizes[0] / int(hp["batch_size"]))
    return {"epochs": max(1, round(int(hp["iterations"]) / steps)),
            "lr_milestones": [max(1, round(int(m) / steps)) for m in hp.get("lr_milestone_iterations", [])]}
