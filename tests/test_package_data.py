"""What the library reads ships inside the package: presets, SLURM profiles, published numbers.

Nothing is read from the repository root, so an installed ``spottune`` (``pip install .``,
outside the checkout) finds the same files; ``scripts/check_install.sh`` checks the installed
wheel itself.
"""
from __future__ import annotations

from pathlib import Path

import pytest

import spottune
from spottune.planning.grid import PRESET_DIR
from spottune.launch import read_profile, slurm_resources
from spottune.launch.slurm import PROFILE_DIR
from spottune.report.reference import REFERENCE_DIR, load_published
from tests.helpers import REPO

PACKAGE = Path(spottune.__file__).resolve().parent


def package_data() -> list[str]:
    """The globs of ``[tool.setuptools.package-data] spottune``."""
    tomllib = pytest.importorskip("tomllib")
    return tomllib.loads((REPO / "pyproject.toml").read_text())["tool"]["setuptools"]["package-data"]["spottune"]


@pytest.mark.parametrize("folder", [PRESET_DIR, PROFILE_DIR, REFERENCE_DIR])
def test_data_folders_lie_inside_the_package(folder):
    assert Path(folder).resolve().is_relative_to(PACKAGE) and Path(folder).is_dir()


def test_every_file_the_library_reads_is_declared_package_data():
    files = [*PRESET_DIR.glob("*.yaml"), *PROFILE_DIR.glob("*.yaml"), REFERENCE_DIR / "published.csv"]
    declared = {p for pattern in package_data() for p in PACKAGE.glob(pattern)}
    assert {"default.yaml", "local.yaml", "gpu-example.yaml"} <= {p.name for p in PROFILE_DIR.glob("*.yaml")}
    assert files and set(files) <= declared


def test_published_numbers_come_from_the_package():
    assert len(load_published("decathlon")) > 0 and len(load_published("standard")) > 0
    assert not (REPO / "results" / "reference").exists()


def test_a_name_reads_the_packaged_profile(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # no ./slurm/ here: the package's
    assert read_profile("local")["partition"] == "debug"
    resources = slurm_resources({"gpus": 1}, "local")
    assert resources["gpus_per_node"] == 0 and resources["job_name"] == "spottune"  # default.yaml below


def test_a_profile_under_the_current_directory_comes_first(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "slurm").mkdir()
    (tmp_path / "slurm" / "local.yaml").write_text("partition: mine\n")
    (tmp_path / "slurm" / "site.yaml").write_text("partition: site\nmem_gb: 7\n")
    assert read_profile("local") == {"partition": "mine"}
    assert slurm_resources(None, "site")["mem_gb"] == 7
    assert read_profile(str(PROFILE_DIR / "local.yaml"))["partition"] == "debug"  # a path is read as it is


def test_an_unknown_profile_names_both_places(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "slurm").mkdir()
    (tmp_path / "slurm" / "site.yaml").write_text("partition: site\n")
    with pytest.raises(FileNotFoundError) as err:
        read_profile("nosuch")
    message = str(err.value)
    assert "unknown SLURM profile 'nosuch'; known: default, gpu-example, local, site" in message
    assert "./slurm/" in message and str(PROFILE_DIR) in message


def test_ci_checks_the_installed_package_before_the_test_suite():
    lines = [line for line in (REPO / ".ci" / "run").read_text().splitlines() if line and not line.startswith("#")]
    assert lines[-2:] == ["bash scripts/check_install.sh", "bash scripts/test.sh"]
    script = (REPO / "scripts" / "check_install.sh").read_text()
    assert 'pip install -q --no-compile "$TMP/src"' in script and "-e " not in script  # a wheel, not editable
