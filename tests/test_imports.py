"""What importing a module drags in: data loaders and records never load the report's plotting
and table libraries (every worker and SLURM job imports the loaders), records not even torch."""
from __future__ import annotations

import subprocess
import sys

import pytest

HEAVY_REPORT = ("pandas", "matplotlib", "seaborn")


def loaded_after(module: str) -> set[str]:
    """Top-level packages in ``sys.modules`` after importing ``module`` in a fresh interpreter."""
    code = f"import sys, {module}; print(' '.join(sorted({{m.split('.')[0] for m in sys.modules}})))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    return set(out.split())


@pytest.mark.parametrize("module", ["spottune.data", "spottune.data.decathlon", "spottune.data.standard",
                                    "spottune.data.mini", "spottune.data.prepare", "spottune.data.submission",
                                    "spottune.engine", "spottune.visual_decathlon"])
def test_loaders_and_engine_do_not_load_the_report_libraries(module):
    assert not loaded_after(module) & set(HEAVY_REPORT)


@pytest.mark.parametrize("module", ["spottune.storage.records", "spottune.visual_decathlon"])
def test_plain_modules_do_not_load_torch(module):
    assert "torch" not in loaded_after(module)
