"""Shared fixtures: one thread, a private cache for pretrained weights, tiny configs."""
from __future__ import annotations

import os

import pytest
import torch

torch.set_num_threads(1)


@pytest.fixture(autouse=True)
def _private_cache(tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch) -> None:
    """Pretrained weights cached per test session, never in the user's ~/.cache."""
    monkeypatch.setenv("SPOTTUNE_CACHE", str(tmp_path_factory.getbasetemp() / "cache"))


@pytest.fixture(autouse=True)
def _no_calibration(monkeypatch: pytest.MonkeyPatch) -> None:
    """--dry-run's wall-time estimate from fixed rates: no test times this machine
    (tests/test_walltime.py tests the arithmetic and the cache)."""
    from spottune.estimates.walltime import Rates

    monkeypatch.setattr("spottune.estimates.walltime.measure_rates",
                        lambda setting, threads, device: Rates(1000.0, 4000.0))


@pytest.fixture(autouse=True)
def _seed() -> None:
    torch.manual_seed(0)


def pytest_configure(config: pytest.Config) -> None:
    os.environ.setdefault("OMP_NUM_THREADS", "1")
