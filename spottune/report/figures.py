"""Figures of where SpotTune fine-tunes, and of score against parameters.

Every routing method's ``policy.npz`` (``decisions`` (N, B) with 1 = fine-tuned block,
``indices``, ``train_fraction`` (epochs, B); docs/RECORDS.md) is pooled over the done seeds
of each (preset, method, dataset) into a :class:`Routing`. From it:

- :func:`routing_heatmap`: ``f[d, b] = mean_i decisions_i[b]``, the fraction of test images
  of dataset ``d`` taking the fine-tuned copy of block ``b`` (one cell per dataset x block);
- :func:`blocks_histogram`: per dataset, the distribution of ``sum_b decisions_i[b]``, the
  number of fine-tuned blocks per test image;
- :func:`extreme_images`: per dataset, the ``k`` test images with the fewest and the ``k``
  with the most fine-tuned blocks (count averaged over seeds per image index); needs
  ``image_lookup(dataset, indices) -> array (k, H, W[, C])``;
- :func:`routing_over_epochs`: per dataset, ``train_fraction`` (mean over seeds) as an
  epoch x block heatmap, titled with how far the policy moved its routing from the first
  epoch (:meth:`Routing.movement`): a policy that does not learn stays where its random
  initialisation put it (near 0.5 per block), and then SpotTune is stochastic fine-tuning;
- :func:`score_vs_params`: Decathlon score against ``#par`` for every row of a scored table
  (filled: the suite, hollow: published, with their provenance tags in the legend), partial
  rows (``†``) left out.

A method that selects layers per task (TAPS) records ``layer_selection`` in ``metrics.json``
(per gated layer, input to output: its name, its block, whether it ended task-specific); the
done seeds of each (preset, method, dataset) pool into a :class:`LayerSelection`. From it:

- :func:`layer_selection`: datasets x gated layers, the fraction of seeds that made each layer
  task-specific (the form of the TAPS paper's Figure 3: one row per task, input on the left),
  and below it, on the same datasets and the same horizontal axis, SpotTune's fraction of test
  images fine-tuning each block (:func:`routing_heatmap`'s numbers), every block drawn over the
  span of its layers: both methods' answer to "which layers does this task need".

Builders return :class:`matplotlib.figure.Figure` objects made without pyplot (no global
state, no display needed); :func:`save` writes PNG (200 dpi) and PDF. Sizes and fonts target
a two-column paper: 6.75 in wide, 8 pt text.
"""
from __future__ import annotations

import functools
import math
import re
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import matplotlib
import numpy as np
import pandas as pd
import seaborn as sns
from matplotlib.figure import Figure
from matplotlib.ticker import MaxNLocator

from spottune.storage.records import RunFolder
from spottune.report.render import Table
from spottune.report.tables import PAPER, PARTIAL, PUBLISHED_PAR

ImageLookup = Callable[[str, np.ndarray], np.ndarray]
"""``image_lookup(dataset, indices)`` -> test images at those indices, (k, H, W[, C])."""

WIDTH = 6.75
STYLE = {"font.size": 8, "axes.titlesize": 8, "axes.labelsize": 8, "xtick.labelsize": 7,
         "ytick.labelsize": 7, "legend.fontsize": 7, "pdf.fonttype": 42}
ANNOTATE_MAX_BLOCKS = 16
METADATA = {".png": {"Software": None}, ".pdf": {"Creator": None, "Producer": None,
                                                "CreationDate": None}}
"""No version or date stamps, so that regenerated figures are byte-identical."""


@dataclass
class Routing:
    """One (preset, method, dataset)'s routing pooled over seeds (see the module docstring)."""

    decisions: np.ndarray
    indices: np.ndarray
    train_fraction: np.ndarray

    def movement(self) -> float:
        """``mean_b |f_last[b] - f_1[b]|``: how far the training routing moved from the first
        epoch to the last (fractions of training images fine-tuning block ``b``, seeds averaged)."""
        return float(np.abs(self.train_fraction[-1] - self.train_fraction[0]).mean())

    def blocks_per_image(self) -> pd.Series:
        """Fine-tuned blocks per test image index, averaged over the seeds that saw it."""
        counts = pd.Series(self.decisions.sum(axis=1), index=self.indices)
        return counts.groupby(level=0).mean()


def load_routing(records: pd.DataFrame) -> dict[tuple[str, str], dict[str, Routing]]:
    """``{(preset, method): {dataset: Routing}}`` from the done runs that have a policy.npz."""
    routing: dict[tuple[str, str], dict[str, Routing]] = {}
    runs = records[records["has_policy"].astype(bool)]
    for (preset, method, dataset), group in runs.groupby(["preset", "method", "dataset"]):
        policies = [RunFolder(folder).read_policy() for folder in group["run_dir"]]
        routing.setdefault((preset, method), {})[dataset] = Routing(
            decisions=np.concatenate([p["decisions"] for p in policies]),
            indices=np.concatenate([p["indices"] for p in policies]),
            train_fraction=np.mean([p["train_fraction"] for p in policies], axis=0))
    return routing


@dataclass
class LayerSelection:
    """One (preset, method, dataset)'s layer selection over its done seeds: ``layers`` (names,
    input to output), ``block`` (each layer's block index, None for the stem) and
    ``task_specific`` (seeds, layers), 1 = the layer ended task-specific."""

    layers: list[str]
    block: list[int | None]
    task_specific: np.ndarray

    def fraction(self) -> np.ndarray:
        """Per layer, the fraction of seeds that made it task-specific."""
        return self.task_specific.mean(axis=0)

    def block_edges(self) -> np.ndarray:
        """Where each block begins on the layer axis (layer ``i`` spans ``[i - 0.5, i + 0.5]``),
        then where the last one ends: ``num_blocks + 1`` edges."""
        blocks = np.array([-1 if b is None else b for b in self.block])
        starts = [np.flatnonzero(blocks == b)[0] - 0.5 for b in range(blocks.max() + 1)]
        return np.array([*starts, np.flatnonzero(blocks >= 0)[-1] + 0.5])


def load_layer_selection(records: pd.DataFrame) -> dict[tuple[str, str], dict[str, LayerSelection]]:
    """``{(preset, method): {dataset: LayerSelection}}`` from the done runs that recorded one."""
    column = "layer_selection.task_specific"
    if column not in records:
        return {}
    runs = records[(records["status"] == "done") & records[column].notna()]
    selection: dict[tuple[str, str], dict[str, LayerSelection]] = {}
    for (preset, method, dataset), group in runs.groupby(["preset", "method", "dataset"]):
        first = group.iloc[0]
        selection.setdefault((preset, method), {})[dataset] = LayerSelection(
            layers=list(first["layer_selection.layers"]), block=list(first["layer_selection.block"]),
            task_specific=np.array(list(group[column]), dtype=float))
    return selection


def styled(build: Callable[..., Figure]) -> Callable[..., Figure]:
    """Build the figure under the paper-size :data:`STYLE`."""
    @functools.wraps(build)
    def wrapper(*args, **kwargs) -> Figure:
        with matplotlib.rc_context(STYLE):
            return build(*args, **kwargs)
    return wrapper


def _grid(count: int, columns: int, row_height: float) -> tuple[Figure, np.ndarray]:
    """A figure of ``count`` small panels, ``columns`` per row; unused panels hidden."""
    rows = math.ceil(count / columns)
    figure = Figure(figsize=(WIDTH, row_height * rows), layout="constrained")
    axes = figure.subplots(rows, columns, squeeze=False).ravel()
    for unused in axes[count:]:
        unused.set_visible(False)
    return figure, axes[:count]


@styled
def routing_heatmap(routing: dict[str, Routing], title: str) -> Figure:
    """Datasets x blocks heatmap of the fraction of test images fine-tuning each block."""
    fractions = pd.DataFrame({name: r.decisions.mean(axis=0) for name, r in routing.items()}).T
    fractions.columns = [str(block + 1) for block in fractions.columns]
    figure = Figure(figsize=(WIDTH, 0.9 + 0.28 * len(fractions)), layout="constrained")
    axes = figure.add_subplot()
    sns.heatmap(fractions, ax=axes, vmin=0, vmax=1, cmap="viridis", square=False,
                annot=fractions.shape[1] <= ANNOTATE_MAX_BLOCKS, fmt=".2f",
                annot_kws={"fontsize": 6}, cbar_kws={"label": "fraction fine-tuned"})
    axes.set(xlabel="block (stem excluded)", ylabel="dataset", title=title)
    return figure


@styled
def blocks_histogram(routing: dict[str, Routing], title: str) -> Figure:
    """Per dataset, the fraction of test images with each number of fine-tuned blocks."""
    figure, axes = _grid(len(routing), columns=min(3, len(routing)), row_height=1.6)
    for panel, (name, r) in zip(axes, routing.items()):
        blocks = r.decisions.shape[1]
        counts = np.bincount(r.decisions.sum(axis=1), minlength=blocks + 1) / len(r.decisions)
        panel.bar(np.arange(blocks + 1), counts, width=0.85, color="tab:blue")
        panel.set(title=name, xlim=(-0.5, blocks + 0.5), xlabel="fine-tuned blocks per image",
                  ylabel="fraction of images")
        panel.xaxis.set_major_locator(MaxNLocator(integer=True))
        panel.label_outer()
    figure.suptitle(title)
    return figure


@styled
def extreme_images(routing: dict[str, Routing], image_lookup: ImageLookup, title: str,
                   per_side: int = 4) -> Figure:
    """Per dataset (one row), the ``per_side`` images with the fewest, then the most, blocks."""
    figure = Figure(figsize=(WIDTH, 0.95 * len(routing) + 0.3), layout="constrained")
    axes = figure.subplots(len(routing), 2 * per_side, squeeze=False)
    for row, (name, r) in zip(axes, routing.items()):
        counts = r.blocks_per_image().sort_values(kind="stable")
        chosen = pd.concat([counts.head(per_side), counts.tail(per_side)])
        images = image_lookup(name, chosen.index.to_numpy())
        for panel, image, count in zip(row, images, chosen):
            panel.imshow(image, cmap="gray" if np.ndim(image) == 2 else None)
            panel.set_title(f"{count:g} blocks", fontsize=6)
            panel.set_xticks([])
            panel.set_yticks([])
        row[0].set_ylabel(name)
    figure.suptitle(f"{title}: fewest (left) and most (right) fine-tuned blocks")
    return figure


@styled
def routing_over_epochs(routing: dict[str, Routing], title: str) -> Figure:
    """Per dataset, the fraction of training images fine-tuning each block, per epoch, and how
    far that routing moved from the first epoch to the last (:meth:`Routing.movement`)."""
    figure, axes = _grid(len(routing), columns=min(3, len(routing)), row_height=1.8)
    for panel, (name, r) in zip(axes, routing.items()):
        epochs, blocks = r.train_fraction.shape
        image = panel.imshow(r.train_fraction.T, aspect="auto", origin="lower", vmin=0, vmax=1,
                             cmap="viridis", extent=(0.5, epochs + 0.5, 0.5, blocks + 0.5))
        panel.set(title=f"{name}: moved {r.movement():.2f}", xlabel="epoch", ylabel="block")
        panel.xaxis.set_major_locator(MaxNLocator(integer=True))
        panel.yaxis.set_major_locator(MaxNLocator(integer=True))
        panel.label_outer()
    figure.colorbar(image, ax=list(axes), label="fraction fine-tuned (train)")
    figure.suptitle(f"{title}; moved: mean over blocks of |last epoch - epoch 1|")
    return figure


@styled
def layer_selection(selection: dict[str, LayerSelection], title: str,
                    routing: dict[str, Routing] | None = None, routing_title: str = "") -> Figure:
    """Datasets x gated layers, the fraction of seeds that made each layer task-specific; below
    it, given SpotTune's ``routing`` of the same backbone, its fraction of test images
    fine-tuning each block on the same datasets, each block over its layers (see the module
    docstring). A dataset one of the two lacks is a blank row in its panel."""
    reference = next(iter(selection.values()))
    edges = reference.block_edges()
    if routing and any(r.decisions.shape[1] != len(edges) - 1 for r in routing.values()):
        routing = None  # another backbone: its blocks are not these layers' blocks
    datasets = sorted(set(selection) | set(routing or {}))
    rows = np.arange(len(datasets) + 1)
    panels = [("selection", len(reference.layers))] + ([("routing", len(edges) - 1)] if routing else [])
    figure = Figure(figsize=(WIDTH, len(panels) * (0.75 + 0.22 * len(datasets))), layout="constrained")
    axes = figure.subplots(len(panels), 1, squeeze=False, sharex=True).ravel()
    for panel, (kind, columns) in zip(axes, panels):
        cells = np.full((len(datasets), columns), np.nan)
        for row, name in enumerate(datasets):
            if kind == "selection" and name in selection:
                cells[row] = selection[name].fraction()
            elif kind == "routing" and name in routing:
                cells[row] = routing[name].decisions.mean(axis=0)
        x = np.arange(columns + 1) - 0.5 if kind == "selection" else edges
        mesh = panel.pcolormesh(x, rows, np.ma.masked_invalid(cells), vmin=0, vmax=1, cmap="viridis")
        figure.colorbar(mesh, ax=panel, label="fraction of seeds" if kind == "selection" else "fraction of images")
        panel.vlines(edges, 0, len(datasets), colors="white", linewidths=0.6)
        panel.set_yticks(rows[:-1] + 0.5, datasets)
        panel.set_ylim(len(datasets), 0)
        panel.set_ylabel("dataset")
        panel.set_title(f"{title}: layers made task-specific" if kind == "selection"
                        else f"{routing_title}: test images fine-tuning each block")
    centres = (edges[:-1] + edges[1:]) / 2
    stem = [i for i, b in enumerate(reference.block) if b is None]
    ticks, labels = [*centres], [str(b + 1) for b in range(len(centres))]
    if stem:
        ticks, labels = [float(np.mean(stem)), *ticks], ["stem", *labels]
    axes[-1].set_xticks(ticks, labels)
    axes[-1].set_xlim(-0.5, len(reference.layers) - 0.5)
    axes[-1].set_xlabel(f"gated layers, input to output, by block ({len(reference.layers)} layers)")
    return figure


@styled
def score_vs_params(table: Table) -> Figure:
    """Decathlon score against #par for each paper and suite row of a scored table.

    Where the table has the published convention's column (``#par (pub.)``, without the new
    classifiers) the points use it, so that published and suite points count alike. The legend
    names the provenance tags of the published points (see the table's footnotes).
    """
    par = PUBLISHED_PAR if PUBLISHED_PAR in table.mean.columns else "#par"
    rows = table.mean.drop(index=list(table.unranked_rows)).dropna(subset=["score", par])
    partial = table.markers.loc[rows.index, "score"].str.contains(PARTIAL, regex=False)
    rows = rows[~partial]
    is_paper = rows.index.astype(str).str.contains(PAPER, regex=False)  # (an empty index is not of strings)
    tags = sorted(set(re.findall(r"\[\w+\]", " ".join(
        [*rows.index[is_paper], *table.markers.loc[rows.index[is_paper]].to_numpy().ravel()]))))
    figure = Figure(figsize=(WIDTH / 2, 2.6), layout="constrained")
    axes = figure.add_subplot()
    labels: list[tuple[str, float, float, tuple[float, float]]] = []
    for points, name, style, offset in (
            (rows[is_paper], " ".join(["published", *tags]),
             {"facecolors": "none", "edgecolors": "0.4"}, (3, 2)),
            (rows[~is_paper], "this suite", {"color": "tab:red"}, (3, -7))):
        if points.empty:
            continue
        axes.scatter(points[par], points["score"], s=18, label=name, **style)
        labels.extend((label.split(" (")[0], point[par], point["score"], offset)
                      for label, point in points.iterrows())
    _annotate_without_overlap(axes, labels)
    axes.set(xlabel=f"{par} (backbones)", ylabel="Decathlon score", title=table.title.split(",")[0])
    if labels:
        axes.legend(loc="best")
    return figure


def _annotate_without_overlap(axes, labels: list[tuple[str, float, float, tuple[float, float]]],
                              fontsize: float = 6) -> None:
    """Point labels (text, x, y, offset in points), each shifted up or down by whole lines,
    nearest first, to the first place where its estimated box overlaps no label placed
    before and stays inside the axes (highest points placed first), with a leader line when moved."""
    axes.margins(x=0.08, y=0.12)
    axes.autoscale_view()
    to_points = 72.0 / axes.figure.dpi
    (left, bottom), (right, top) = (v * to_points for v in axes.bbox.get_points())
    placed: list[tuple[float, float, float, float]] = []
    for text, x, y, (dx, dy) in sorted(labels, key=lambda item: (-item[2], item[1])):
        px, py = (v * to_points for v in axes.transData.transform((x, y)))
        width, height = 0.55 * fontsize * len(text), fontsize + 1
        if px + dx + width > right:  # no room on the right: label to the left of the point
            dx = -dx - width
        box = (px + dx, py + dy, px + dx + width, py + dy + height)
        for shift in (0, 1, -1, 2, -2, 3, -3, 4, -4, 5, -5):
            candidate = (box[0], box[1] + shift * height, box[2], box[3] + shift * height)
            inside = bottom <= candidate[1] and candidate[3] <= top
            if inside and not any(candidate[0] < b[2] and b[0] < candidate[2] and candidate[1] < b[3]
                                  and b[1] < candidate[3] for b in placed):
                box = candidate
                break
        placed.append(box)
        moved = abs(box[1] - (py + dy)) > 0.5  # a leader line to a label moved off its point
        axes.annotate(text, (x, y), fontsize=fontsize, xytext=(box[0] - px, box[1] - py),
                      textcoords="offset points",
                      arrowprops={"arrowstyle": "-", "lw": 0.4, "color": "0.6"} if moved else None)


def save(figure: Figure, folder: Path, name: str) -> list[Path]:
    """Write ``<name>.png`` (200 dpi) and ``<name>.pdf`` into ``folder``, without date stamps."""
    folder.mkdir(parents=True, exist_ok=True)
    paths = [folder / f"{name}{suffix}" for suffix in METADATA]
    with matplotlib.rc_context(STYLE):
        for path in paths:
            figure.savefig(path, dpi=200, metadata=METADATA[path.suffix])
    return paths
