"""report.html: one self-contained page with every table, the statistics, the figures, the
protocol and the failed runs; rendered in headless Chromium (Debian's ``chromium``) when it
is installed, with a screenshot saved under ``$SPOTTUNE_ARTIFACTS`` (else the test's tmp
folder) and its path printed."""
from __future__ import annotations

import base64
import io
import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest
from PIL import Image

from spottune.report import write_all

SWEEP = Path(__file__).parent / "fixtures" / "sweep"
CHROMIUM_FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                  "--disable-background-networking", "--disable-component-update", "--disable-sync"]
PROBE = """<script>window.addEventListener("load", () => {
  const images = [...document.images].map(i => i.complete ? i.naturalWidth : 0);
  const tables = [...document.querySelectorAll("table")].map(t => t.getBoundingClientRect().width);
  document.body.dataset.images = images.join(",");
  document.body.dataset.tables = tables.join(",");
});</script>"""
"""Appended to a copy of the page (the report itself has no script): writes what rendered
into the DOM that ``--dump-dom`` prints."""


@pytest.fixture(scope="module")
def report(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("report")
    write_all(SWEEP, report_dir=folder)
    return folder / "report.html"


def test_report_holds_every_table_the_statistics_and_the_failed_runs(report):
    page = report.read_text()
    tables = set(re.findall(r'<table id="([^"]+)"', page))
    written = {path.stem for path in (report.parent / "tables").glob("*.md")} - {"summary"}
    summaries = {f"summary_{preset}" for preset in ("decathlon", "fgvc", "mini", "standard", "vtab1k")}
    assert written | summaries | {"runs", "unfinished"} == tables
    assert "Holm-corrected" in page and "paired t-test over the seeds" in page
    assert "<strong>spottune</strong> against finetune (paired t-test over 3 seeds" in page
    assert "Protocol of the suite&#x27;s runs: backbone = resnet26; weights = suite pretraining" in page
    failed = re.search(r"<tr><td>mini</td><td>spottune</td><td>glyph_letters</td><td>1</td>"
                       r"<td>failed</td><td>([^<]+)</td><td>([^<]+)</td></tr>", page)
    assert failed and Path(failed[1]).parent == SWEEP / "runs"
    assert failed[2] == "RuntimeError: CUDA out of memory (fixture)"


def test_report_is_self_contained_with_decodable_inlined_figures(report):
    page = report.read_text()
    assert not re.search(r'(?:src|href)="(?!data:)', page), "the page links to another file"
    figures = re.findall(r'src="data:image/png;base64,([^"]+)"', page)
    pngs = sorted(path.name for path in (report.parent / "figures").glob("*.png"))
    assert len(figures) == len(pngs) > 0
    for data in figures:
        with Image.open(io.BytesIO(base64.b64decode(data))) as image:
            assert image.format == "PNG" and min(image.size) > 100


@pytest.mark.skipif(shutil.which("chromium") is None, reason="Debian's chromium is not installed")
def test_report_renders_in_headless_chromium(report, tmp_path, capsys):
    probed = tmp_path / "probed.html"
    probed.write_text(report.read_text().replace("</body>", PROBE + "</body>"))

    def chromium(*arguments: str) -> str:
        profile = tmp_path / f"profile-{len(list(tmp_path.iterdir()))}"
        done = subprocess.run(["chromium", *CHROMIUM_FLAGS, f"--user-data-dir={profile}", *arguments],
                              capture_output=True, text=True, timeout=180, check=True)
        return done.stdout

    dom = chromium("--virtual-time-budget=10000", "--dump-dom", probed.as_uri())
    images = re.search(r'data-images="([^"]*)"', dom)[1].split(",")
    tables = re.search(r'data-tables="([^"]*)"', dom)[1].split(",")
    assert len(images) == report.read_text().count("<img ") and all(int(w) > 100 for w in images)
    assert len(tables) == report.read_text().count("<table ") and all(float(w) > 50 for w in tables)

    artifacts = Path(os.environ.get("SPOTTUNE_ARTIFACTS", tmp_path))
    artifacts.mkdir(parents=True, exist_ok=True)
    screenshot = artifacts / "report.png"
    chromium(f"--screenshot={screenshot}", "--window-size=1400,3000", report.as_uri())
    with capsys.disabled():
        print(f"\nscreenshot of report.html: {screenshot}")
    with Image.open(screenshot) as image:
        assert image.size == (1400, 3000)
        low, high = image.convert("L").getextrema()
        assert high - low > 100  # text on a background, not a blank page
