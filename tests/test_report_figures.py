"""Figures from the committed run records: built without error, with the expected axes."""
from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from spottune.report import figures, load_records
from spottune.report.tables import DECATHLON, build_table
from spottune.report.writer import write_figures

SWEEP = Path(__file__).parent / "fixtures" / "sweep"


@pytest.fixture(scope="module")
def records() -> pd.DataFrame:
    return load_records(SWEEP)


@pytest.fixture(scope="module")
def routing(records) -> dict[str, figures.Routing]:
    return figures.load_routing(records)[("decathlon", "spottune")]


def visible_axes(figure) -> list:
    return [axes for axes in figure.axes if axes.get_visible() and axes.get_label() != "<colorbar>"]


def test_routing_pools_seeds_of_each_dataset(records):
    loaded = figures.load_routing(records)
    assert set(loaded) == {("decathlon", "spottune"), ("mini", "spottune"),
                           ("standard", "spottune")}
    digits = loaded[("mini", "spottune")]["digits"]
    assert digits.decisions.shape == (3 * 40, 12) and digits.train_fraction.shape == (4, 12)
    assert len(loaded[("mini", "spottune")]["glyph_letters"].decisions) == 2 * 40  # seed 1 failed


def test_heatmap_has_one_cell_per_dataset_and_block(routing):
    figure = figures.routing_heatmap(routing, "spottune")
    assert figure.get_size_inches()[0] == figures.WIDTH  # two-column paper width, 8 pt text
    axes = figure.axes[0]
    assert (axes.get_xlabel(), axes.get_ylabel()) == ("block (stem excluded)", "dataset")  # MBConv blocks too
    cells = axes.collections[0].get_array()
    assert cells.size == 10 * 12
    expected = routing["decathlon/dtd"].decisions.mean(axis=0)
    row = [label.get_text() for label in axes.get_yticklabels()].index("decathlon/dtd")
    np.testing.assert_allclose(np.asarray(cells).reshape(10, 12)[row], expected)


def test_histogram_has_one_panel_per_dataset_with_every_block_count(routing):
    figure = figures.blocks_histogram(routing, "spottune")
    panels = visible_axes(figure)
    assert [p.get_title() for p in panels] == list(routing)
    assert all(len(p.patches) == 13 for p in panels)
    assert panels[-1].get_xlabel() == "fine-tuned blocks per image"
    heights = [bar.get_height() for bar in panels[0].patches]
    assert sum(heights) == pytest.approx(1)


def test_routing_over_epochs_shows_epochs_by_blocks(routing):
    figure = figures.routing_over_epochs(routing, "spottune")
    panels = visible_axes(figure)
    assert len(panels) == 10
    assert panels[0].images[0].get_array().shape == (12, 4)
    assert any(a.get_ylabel() == "fraction fine-tuned (train)" for a in figure.axes)
    name, first = next(iter(routing.items()))
    moved = np.abs(first.train_fraction[-1] - first.train_fraction[0]).mean()
    assert panels[0].get_title() == f"{name}: moved {moved:.2f}"  # how far the policy's routing went


def test_routing_movement_is_the_mean_absolute_change_per_block():
    still = figures.Routing(np.zeros((2, 3)), np.arange(2), np.full((4, 3), 0.5))
    assert still.movement() == 0
    learned = figures.Routing(np.zeros((2, 3)), np.arange(2),
                              np.array([[0.5, 0.5, 0.5], [0.6, 0.4, 0.5], [0.9, 0.2, 0.5], [1.0, 0.1, 0.5]]))
    assert learned.movement() == pytest.approx((0.5 + 0.4 + 0.0) / 3)


def test_extreme_images_asks_for_fewest_and_most_routed_images(routing):
    asked = {}

    def lookup(dataset, indices):
        asked[dataset] = indices
        return np.zeros((len(indices), 8, 8))

    figure = figures.extreme_images(routing, lookup, "spottune", per_side=2)
    assert len(figure.axes) == 10 * 4
    counts = routing["decathlon/svhn"].blocks_per_image()
    assert counts[asked["decathlon/svhn"][0]] == counts.min() and counts[asked["decathlon/svhn"][-1]] == counts.max()


def test_score_vs_params_plots_complete_rows_only(records):
    figure = figures.score_vs_params(build_table(records, DECATHLON))
    axes = figure.axes[0]
    assert (axes.get_xlabel(), axes.get_ylabel()) == ("#par (pub.) (backbones)", "Decathlon score")
    paper, suite = (len(c.get_offsets()) for c in axes.collections)
    assert (paper, suite) == (10, 2)  # the feature extractor's partial row is left out
    legend = [text.get_text() for text in axes.get_legend().get_texts()]
    assert legend == ["published [src] [unverified]", "this suite"]


def test_layer_selection_pools_seeds_per_dataset(records):
    loaded = figures.load_layer_selection(records)
    assert set(loaded) == {("mini", "taps")}
    digits = loaded[("mini", "taps")]["digits"]
    assert digits.task_specific.shape == (3, 25) and digits.layers[:2] == ["stem.0", "blocks.0.conv1"]
    runs = records[(records["method"] == "taps") & (records["dataset"] == "digits")]
    np.testing.assert_allclose(digits.fraction(), np.mean(list(runs["layer_selection.task_specific"]), axis=0))
    np.testing.assert_array_equal(digits.block_edges(), np.arange(0.5, 25, 2))  # two convolutions per block


def test_layer_selection_is_drawn_above_spottunes_routing_block_by_block(records):
    selection = figures.load_layer_selection(records)[("mini", "taps")]
    routing = figures.load_routing(records)[("mini", "spottune")]
    figure = figures.layer_selection(selection, "taps", routing, "spottune")
    top, bottom = visible_axes(figure)
    assert [label.get_text() for label in top.get_yticklabels()] == sorted(selection)
    layers = np.asarray(top.collections[0].get_array())
    np.testing.assert_allclose(layers, np.stack([selection[d].fraction() for d in sorted(selection)]))
    blocks = np.asarray(bottom.collections[0].get_array())
    np.testing.assert_allclose(blocks, np.stack([routing[d].decisions.mean(axis=0) for d in sorted(selection)]))
    # block b of SpotTune lies over block b's two convolutions of TAPS; the stem has no SpotTune column
    np.testing.assert_allclose(bottom.collections[0].get_coordinates()[0, :, 0], np.arange(0.5, 25, 2))
    assert [t.get_text() for t in bottom.get_xticklabels()][:3] == ["stem", "1", "2"]
    assert len(visible_axes(figures.layer_selection(selection, "taps"))) == 1  # without SpotTune runs


def test_write_figures_png_and_pdf_and_skips_images_without_lookup(tmp_path, records, caplog):
    with caplog.at_level(logging.INFO):
        paths = write_figures(records[records["preset"] == "mini"], tmp_path)
    names = {path.name for path in paths}
    assert names == {f"mini_{stem}.{suffix}" for suffix in ("png", "pdf") for stem in
                     ("spottune_routing_by_block", "spottune_blocks_per_image",
                      "spottune_routing_over_epochs", "taps_layer_selection", "score_vs_params")}
    assert all(path.stat().st_size > 0 for path in paths)
    assert "skipping mini_spottune_extreme_images" in caplog.text
