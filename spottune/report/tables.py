"""The paper's tables from run records: Decathlon, standard datasets, and the mini preset.

Each table is described by a :class:`Layout` and built by :func:`build_table`. Rows are
methods; for every method that has them, in this order:

- ``<label> (paper) [tag]``: the published numbers (``spottune/reference/published.csv``),
  tagged with their provenance (per cell when a row mixes tags);
- ``<label> (suite)``: this suite's runs, each column the mean over the done seeds of that
  dataset with its 95 % Student-t interval and seed count (:mod:`spottune.report.aggregate`),
  marked with the outcome of its seed-level comparison with the baseline method (``▲`` / ``▼``
  significantly above / below, ``°`` n.s., ``‡`` untested; :mod:`spottune.report.comparison`);
- ``<label> Δ``: suite − paper wherever both exist (never bold).

Columns are keyed by dataset name (never by position) and printed under the layout's
headers. A scored layout adds:

- ``mean``: over the seeds done on every dataset of the row, the mean of each seed's accuracies
  over the row's dataset columns, averaged, with the t-interval of those per-seed means (point
  and interval from the same seeds);
- ``score``: :func:`~spottune.visual_decathlon.decathlon_score` of each seed's accuracies
  against the layout's baseline (the published Finetune row on the Decathlon; on ``mini`` the
  preset's own ``finetune`` run **of the same seed**, so the baseline's seed-to-seed spread
  enters the interval), averaged over the seeds done on every scored dataset by the row and
  the baseline, with the t-interval of those per-seed scores. The mean of per-seed scores is
  the expected score of one run, as a single published run is scored; the baseline's own row
  scores 250 per dataset in every seed (printed as ``(all equal)``);
- ``#par``: :func:`~spottune.visual_decathlon.parameter_cost` from the runs' mean
  ``params.task_specific`` and ``params.backbone`` (source-domain runs excluded): the suite's
  convention, the new classifier counted as task-specific;
- ``#par (pub.)`` (layouts with ``published_par``): the same without the new classifier
  (``params.task_specific - params.classifier``), the convention of the published Decathlon
  tables (Piggyback 1.28 there).

A layout with ``parameter_columns`` (VTAB-1k, FGVC) ends with ``Params (M)``, ``#par
(Decathlon)`` and ``#par (VPT)`` (:mod:`spottune.report.parameter_columns`, paper rows their
published ``Params (M)``), unranked; its ``published_note`` says how the published rows were
scored (V-PETL Bench's: the best test accuracy over checkpoints).

A layout's mean columns (:mod:`spottune.report.group_means`: VTAB-1k's Natural / Specialized /
Structured group means, the mean of the group means and the mean over the tasks; FGVC's mean)
follow the dataset columns, on every row: a suite row's is the mean, over the seeds done on
every dataset under the column, of each seed's mean, with the t-interval of those per-seed means; a
paper row's as published (``mean_accuracy`` goes to the layout's ``published_mean`` column),
else computed by the suite from its published per-dataset numbers and said so in a footnote.

A suite row missing a dataset gets ``mean`` and ``score`` over the datasets it has, marked
``†``; its Δ for those columns is left empty since it compares different sums. Methods with
more than one row are set off by rules (LaTeX). Footnotes
state the seeds, the runs not done, the protocol choices recorded in the runs' ``protocol``
dicts, the backbone and where its weights come from (see :func:`protocol_note` and
:func:`~spottune.report.source.weights_description`), what the intervals are conditional on
(:func:`~spottune.report.source.conditioning_note`), why a source-domain column is empty, and
the provenance of the published numbers (whose own setting, e.g. the backbone, is named in
their source).
"""
from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import NamedTuple

import pandas as pd

from spottune.report.aggregate import pivot, runs_not_done, seed_stats
from spottune.report.comparison import cell_markers, significance_note
from spottune.report.group_means import VTAB_MEANS, MeanColumn, mean_columns
from spottune.report.parameter_columns import COLUMNS as PARAMETER_COLUMNS
from spottune.report.parameter_columns import PARAMS_M, PUBLISHED_METRIC, parameter_cells, parameter_note
from spottune.visual_decathlon import (DOMAINS, FINETUNE_BASELINE, SCORE_FORMULA, SOURCE_DOMAIN,
                                       decathlon_score, parameter_cost)
from spottune.report.reference import PROVENANCE, load_published
from spottune.report.render import EQUAL, Table
from spottune.report.source import conditioning_note, weights_description
from spottune.report.statistics import LEVEL, Interval, percent, t_interval

SCORE_COLUMNS = ["mean", "score", "#par"]
OWN_FINETUNE = "this preset's own finetune runs"  # the baseline_note of a preset scored against its own finetune
PUBLISHED_PAR = "#par (pub.)"
PUBLISHED_SCORES = {"mean_accuracy": "mean", "score": "score", "params": "#par"}
"""``metric`` of ``published.csv`` -> the score column printing it."""
PARTIAL = "†"
PAPER = " (paper)"
"""Suffix of the published rows' labels."""


BEST_OVER_CHECKPOINTS = (
    "Paper rows report the best test accuracy over the checkpoints evaluated during training (V-PETL Bench's "
    "train/train_model_*.py keep config['best_acc']; NOAH and SSF their maximum too): an optimistic protocol. "
    "The suite's rows report the last epoch's model.")


@dataclass(frozen=True)
class Layout:
    """What one paper table shows.

    ``headers`` maps dataset names to column headers in print order (datasets of the runs
    that it does not list follow, sorted, under their own names); the runs' dataset names
    lose ``dataset_prefix`` first (``decathlon/aircraft`` -> ``aircraft``, the devkit name). ``baseline`` is either
    accuracies per dataset or the name of a method whose runs in the preset are the baseline;
    ``None`` gives a table without ``mean``, ``score`` and ``#par``. ``target_tasks`` is the
    number of new tasks in ``#par`` (``None``: the number of dataset columns);
    ``published_par`` adds :data:`PUBLISHED_PAR`, ``#par`` without the new classifiers.
    ``means`` are mean columns after the dataset columns (:mod:`spottune.report.group_means`);
    ``published_mean`` is the column a published ``mean_accuracy`` is printed in;
    ``parameter_columns`` adds :data:`~spottune.report.parameter_columns.COLUMNS`;
    ``published_note`` is a footnote on how the published rows were scored.
    """

    name: str
    title: str
    preset: str
    headers: dict[str, str] = field(default_factory=dict)
    published: str | None = None
    baseline: Mapping[str, float] | str | None = None
    baseline_note: str = ""
    target_tasks: int | None = None
    source_domain: str | None = None
    dataset_prefix: str = ""
    published_par: bool = False
    means: tuple[MeanColumn, ...] = ()
    published_mean: str = "mean"
    parameter_columns: bool = False
    published_note: str = ""


DECATHLON = Layout(
    name="decathlon", title="Visual Decathlon, test top-1 accuracy (%)",
    preset="decathlon",
    headers={"imagenet12": "ImNet", "aircraft": "Airc.", "cifar100": "C100",
             "daimlerpedcls": "DPed", "dtd": "DTD", "gtsrb": "GTSR", "vgg-flowers": "Flwr",
             "omniglot": "OGlt", "svhn": "SVHN", "ucf101": "UCF"},
    published="decathlon", baseline=FINETUNE_BASELINE,
    baseline_note="the Finetune accuracies of Rebuffi et al. 2017",
    target_tasks=len(DOMAINS) - 1, source_domain=SOURCE_DOMAIN, dataset_prefix="decathlon/",
    published_par=True)
STANDARD = Layout(
    name="standard", title="Standard datasets, test top-1 accuracy (%)",
    preset="standard",
    headers={"cubs": "CUBS", "stanford_cars": "Cars", "flowers": "Flowers",
             "wikiart": "WikiArt", "sketches": "Sketches"},
    published="standard")
MINI = Layout(
    name="mini", title="Embedded mini preset, test top-1 accuracy (%)", preset="mini",
    baseline="finetune", baseline_note=OWN_FINETUNE)
MINI_LONG = Layout(
    name="mini-long", title="Embedded mini-long preset, test top-1 accuracy (%)", preset="mini-long",
    baseline="finetune", baseline_note=OWN_FINETUNE)
MINI_VIT = Layout(
    name="mini-vit", title="Embedded mini-vit preset (vit_mini), test top-1 accuracy (%)", preset="mini-vit",
    baseline="finetune", baseline_note=OWN_FINETUNE)
MINI_EFFNET = Layout(
    name="mini-effnet", title="Offline mini-effnet preset (ImageNet EfficientNet-Lite0), test top-1 accuracy (%)",
    preset="mini-effnet", headers={"fmnist_heldout": "fmnist_heldout", "digits": "digits",
                                   "glyph_letters": "glyph_letters"},
    baseline="finetune", baseline_note=OWN_FINETUNE)
MINI_EFFNET_LONG = Layout(
    name="mini-effnet-long",
    title="Offline mini-effnet-long preset (ImageNet EfficientNet-Lite0, every method), test top-1 accuracy (%)",
    preset="mini-effnet-long", headers=MINI_EFFNET.headers, baseline="finetune", baseline_note=OWN_FINETUNE)
VTAB1K = Layout(
    name="vtab1k", title="VTAB-1k, test top-1 accuracy (%)", preset="vtab1k", dataset_prefix="vtab1k/",
    headers={"cifar": "CIFAR", "caltech101": "Caltech", "dtd": "DTD", "oxford_flowers102": "Flwr",
             "oxford_iiit_pet": "Pets", "svhn": "SVHN", "sun397": "SUN", "patch_camelyon": "Cmlyn",
             "eurosat": "EuroS", "resisc45": "Resisc", "diabetic_retinopathy": "Retino", "clevr_count": "Cl-Cnt",
             "clevr_dist": "Cl-Dst", "dmlab": "DMLab", "kitti": "KITTI", "dsprites_loc": "dS-Loc",
             "dsprites_ori": "dS-Ori", "smallnorb_azi": "sN-Azi", "smallnorb_ele": "sN-Ele"},
    published="vtab1k", means=VTAB_MEANS, published_mean="mean (tasks)", parameter_columns=True,
    published_note=BEST_OVER_CHECKPOINTS)
FGVC = Layout(
    name="fgvc", title="FGVC, test top-1 accuracy (%)", preset="fgvc", dataset_prefix="fgvc/",
    headers={"cub": "CUB", "nabirds": "NABirds", "flowers": "Flowers", "dogs": "Dogs", "cars": "Cars"},
    published="fgvc", means=(MeanColumn("mean", ("cub", "nabirds", "flowers", "dogs", "cars"),
                                        "mean: mean over the five datasets"),),
    parameter_columns=True, published_note=BEST_OVER_CHECKPOINTS)
_TABLES: dict[str, Layout] = {}


def register_table(layout: Layout) -> Layout:
    """Add ``layout`` to the paper tables every report writes, after those registered before it
    (a plugin's table of its own preset: README, "Add a table"); a name registered twice is an
    error."""
    if layout.name in _TABLES:
        raise ValueError(f"table {layout.name!r} is already registered (preset {_TABLES[layout.name].preset})")
    _TABLES[layout.name] = layout
    return layout


def paper_layouts() -> list[Layout]:
    """Every registered paper table, in registration order (the built-in ones first)."""
    return list(_TABLES.values())


for _layout in (DECATHLON, STANDARD, MINI, MINI_LONG, MINI_VIT, MINI_EFFNET, MINI_EFFNET_LONG, VTAB1K, FGVC):
    register_table(_layout)


def _owners(runs: pd.DataFrame, values: pd.Series, value: str) -> str:
    """Who has ``value``: methods if the key is constant per method, else datasets if constant
    per dataset, else each method with it, followed by its datasets where it varies
    (``finetune on aircraft, dtd``)."""
    for key in ("method", "dataset"):
        if (values.groupby(runs[key]).nunique() == 1).all():
            return ", ".join(sorted(set(runs.loc[values == value, key])))
    owners = []
    for method, own in values.groupby(runs["method"]):
        has = own == value
        if has.all():
            owners.append(str(method))
        elif has.any():
            owners.append(f"{method} on {', '.join(sorted(set(runs.loc[own.index[has], 'dataset'])))}")
    return ", ".join(owners)


def protocol_note(runs: pd.DataFrame) -> str | None:
    """``Protocol ...: key = value; key: value (who), ...`` over ``backbone``, its ``weights``
    (:func:`weights_description`) and ``protocol.*``: what every run recorded it ran (its
    optimiser, lr and weight decay per group, schedule, data; :mod:`spottune.training.protocol`).

    A key with one value in every run prints ``key = value``; otherwise each value is
    followed by the methods that use it (when the key is constant per method), else the
    datasets, else a count of runs.
    """
    parts = []
    weights = weights_description(runs)
    if weights is not None:
        runs = runs.assign(weights=weights)
    keys = [c for c in ("backbone", "weights", "hparams.backbone.width") if c in runs.columns]
    for column in keys + sorted(c for c in runs.columns if c.startswith("protocol.")):
        present = runs.dropna(subset=[column])
        if present.empty:  # a key only other presets' runs record
            continue
        values = present[column].map(str)
        name = column.removeprefix("protocol.").removeprefix("hparams.")
        if values.nunique() == 1 and len(present) == len(runs):
            parts.append(f"{name} = {values.iloc[0]}")
        else:
            parts.append(f"{name}: " + ", ".join(
                f"{v} ({_owners(present, values, v)})" for v in sorted(values.unique())))
    return "Protocol of the suite's runs: " + "; ".join(parts) + "." if parts else None


def _columns(layout: Layout, datasets: list[str]) -> dict[str, str]:
    """Dataset -> header for every column: the layout's first, then the runs' others."""
    extra = sorted(set(datasets) - set(layout.headers))
    return {**layout.headers, **{name: name for name in extra}}


def per_seed_accuracies(runs: pd.DataFrame) -> pd.DataFrame:
    """Test accuracy as seeds x datasets (one done run per seed and dataset; empty without any)."""
    if runs.empty or "test_accuracy" not in runs:
        return pd.DataFrame(dtype=float)
    return runs.astype({"test_accuracy": float}).pivot_table(
        index="seed", columns="dataset", values="test_accuracy", aggfunc="mean")


class ScoreBaseline(NamedTuple):
    """The score's reference accuracies: ``fixed`` per dataset (a published row), or
    ``per_seed`` (seeds x datasets) of the baseline method's runs, each seed scored against
    the baseline's run of the same seed."""

    fixed: Mapping[str, float]
    per_seed: pd.DataFrame | None = None

    @property
    def datasets(self) -> list[str]:
        return list(self.fixed) if self.per_seed is None else list(self.per_seed.columns)

    def of(self, seed: float) -> dict[str, float] | None:
        """The accuracies seed ``seed`` is scored against (None: the baseline lacks that seed)."""
        if self.per_seed is None:
            return dict(self.fixed)
        if seed not in self.per_seed.index:
            return None
        return self.per_seed.loc[seed].dropna().to_dict()


def _baseline(layout: Layout, done: pd.DataFrame) -> ScoreBaseline:
    """The score's reference (see :class:`ScoreBaseline`) for the done runs of ``layout``."""
    if isinstance(layout.baseline, str):
        return ScoreBaseline({}, per_seed_accuracies(done[done["method"] == layout.baseline]))
    return ScoreBaseline(dict(layout.baseline or {}))


class Row(NamedTuple):
    """One printed row of ``method``: numbers, interval bounds, seed counts and cell markers
    keyed by header; ``kind`` is ``paper``, ``suite`` or ``delta``. (Defaults are shared:
    never mutate.)"""

    name: str
    kind: str
    method: str
    values: dict[str, float]
    low: dict[str, float] = {}
    high: dict[str, float] = {}
    seeds: dict[str, float] = {}
    markers: dict[str, str] = {}


def _per_seed_scores(accuracies: pd.DataFrame, baseline: ScoreBaseline) -> pd.Series:
    """The Decathlon score of each seed of ``accuracies`` (seeds x datasets, complete rows)
    against the baseline (the baseline's run of the same seed, or its fixed accuracies), over
    the datasets the baseline has; seeds the baseline lacks are left out."""
    scored = [name for name in baseline.datasets if name in accuracies.columns]
    scores = {}
    for seed, values in accuracies[scored].iterrows():
        reference = baseline.of(seed)
        if scored and reference is not None and set(scored) <= set(reference):
            scores[seed] = float(decathlon_score(values.to_dict(), baseline=reference, allow_partial=True))
    return pd.Series(scores, dtype=float)


def _set(row: Row, header: str, interval: Interval) -> None:
    row.values[header] = interval.estimate
    row.low[header], row.high[header], row.seeds[header] = interval.low, interval.high, interval.n


def _suite_row(layout: Layout, label: str, runs: pd.DataFrame, stats: pd.DataFrame,
               columns: dict[str, str], baseline: ScoreBaseline) -> tuple[Row, list[str]]:
    """One method's suite row (``stats``: its :func:`seed_stats` indexed by dataset) and the
    columns it lacks."""
    present = stats[stats["mean"].notna() & stats.index.isin(list(columns))]
    header = {name: columns[name] for name in present.index}
    row = Row(f"{label} (suite)", "suite", runs["method"].iloc[0],
              values=present["mean"].rename(header).to_dict(),
              low=present["ci_low"].rename(header).to_dict(),
              high=present["ci_high"].rename(header).to_dict(),
              seeds=present["seeds"].rename(header).to_dict(), markers={})
    missing = [name for name in columns if name not in present.index]
    accuracies = per_seed_accuracies(runs)
    for header, values in mean_columns(accuracies, layout.means).items():
        _set(row, header, t_interval(values))
    if layout.parameter_columns:
        row.values.update(parameter_cells(runs, layout.target_tasks or len(columns)))
    if layout.baseline is None:
        return row, missing
    complete = accuracies.reindex(columns=present.index).dropna()
    _set(row, "mean", t_interval(complete.mean(axis=1)))
    _set(row, "score", t_interval(_per_seed_scores(complete, baseline)))
    targets = runs[runs["dataset"] != layout.source_domain]
    tasks = layout.target_tasks or len(columns)
    if {"params.task_specific", "params.backbone"} <= set(targets.columns) and len(targets):
        row.values["#par"] = parameter_cost(targets["params.task_specific"].mean(),
                                            targets["params.backbone"].mean(), tasks)
        if layout.published_par and "params.classifier" in targets.columns:
            without = (targets["params.task_specific"] - targets["params.classifier"]).mean()
            row.values[PUBLISHED_PAR] = parameter_cost(without, targets["params.backbone"].mean(), tasks)
    return row, missing


def _paper_row(published: pd.DataFrame, columns: dict[str, str], layout: Layout) -> tuple[dict, dict, list[str]]:
    """Numbers (keyed by header) and provenance tags of one method's published row (its
    parameter count under :data:`PUBLISHED_PAR` where the layout has that column: it is
    counted that way), and the mean columns computed from its per-dataset numbers because
    they are not published."""
    headers = {**columns, **PUBLISHED_SCORES, "mean_accuracy": layout.published_mean,
               **({"params": PUBLISHED_PAR} if layout.published_par else {}),
               **({PUBLISHED_METRIC: PARAMS_M} if layout.parameter_columns else {})}
    values, tags, accuracies = {}, {}, {}
    for entry in published.itertuples():
        key = entry.dataset if entry.metric == "accuracy" else entry.metric
        if key in headers:
            values[headers[key]], tags[headers[key]] = entry.value, entry.provenance
        if entry.metric == "accuracy":
            accuracies[entry.dataset] = entry.value
    computed = []
    if accuracies and layout.means:
        for header, value in mean_columns(pd.DataFrame([accuracies]), layout.means).iloc[0].dropna().items():
            if header not in values:
                values[header] = value
                computed.append(header)
    return values, tags, computed


def _method_rows(layout: Layout, method: str, label: str, published: pd.DataFrame,
                 done: pd.DataFrame, stats: pd.DataFrame, columns: dict[str, str],
                 baseline: ScoreBaseline, markers: dict[tuple[str, str], str]
                 ) -> tuple[list[Row], list[str], list[str]]:
    """The paper, suite and Δ rows of one method, the datasets its suite row lacks and the
    mean columns of its paper row the suite computed; ``markers``: the comparison's marker of
    each (method, dataset) cell (:func:`~spottune.report.comparison.cell_markers`)."""
    rows, missing = [], []
    paper, tags, computed = _paper_row(published[published["method"] == method], columns, layout)
    if paper:
        kinds = sorted(set(tags.values()))
        if len(kinds) == 1:
            rows.append(Row(f"{label}{PAPER} {kinds[0]}", "paper", method, paper))
        else:
            rows.append(Row(f"{label}{PAPER}", "paper", method, paper,
                            markers={h: f" {t}" for h, t in tags.items()}))
    own = stats[stats["method"] == method].set_index("dataset")
    if own["mean"].notna().any():
        suite, missing = _suite_row(layout, label, done[done["method"] == method], own, columns,
                                    baseline)
        suite.markers.update({columns[d]: mark for (m, d), mark in markers.items()
                              if m == method and d in columns})
        partial = {h: PARTIAL for h in ("mean", "score") if h in suite.values} if missing else {}
        suite.markers.update(partial)
        rows.append(suite)
        if paper:
            rows.append(Row(f"{label} Δ", "delta", method, {
                h: suite.values[h] - paper[h] for h in suite.values
                if h in paper and h not in partial}))
    return rows, missing, computed


def _with_pretraining_accuracy(runs: pd.DataFrame, layout: Layout) -> pd.DataFrame:
    """``runs`` plus, per (method, seed) without a run on the source domain, a source-domain
    record holding the shared pretrained network's accuracy there, as the suite's own
    pretraining recorded it (``pretraining.test_accuracy``): every method keeps that network,
    so it is the method's ImNet entry, as in the paper's table."""
    column, source = "pretraining.test_accuracy", layout.source_domain
    if source is None or column not in runs or "pretraining.dataset" not in runs:
        return runs
    known = runs[(runs["pretraining.dataset"] == layout.dataset_prefix + source)
                 & runs[column].notna() & (runs["status"] == "done") & (runs["dataset"] != source)]
    have = set(zip(*[runs.loc[runs["dataset"] == source, k] for k in ("method", "seed")]))
    known = known[pd.Series([key not in have for key in zip(known["method"], known["seed"])],
                            index=known.index, dtype=bool)]  # (a plain empty list would select columns)
    added = known.drop_duplicates(["method", "seed"]).assign(dataset=source, test_accuracy=known[column])
    return pd.concat([runs, added], ignore_index=True) if len(added) else runs


def build_table(records: pd.DataFrame, layout: Layout, reference_dir: str | Path | None = None,
                comparison: pd.DataFrame | None = None) -> Table | None:
    """The :class:`Table` of ``layout`` from ``records``; ``None`` when the preset has no runs.

    ``comparison`` (:func:`~spottune.report.comparison.paired_comparison` of ``records``)
    marks each suite cell with the outcome of its comparison with the baseline method.
    """
    runs = records[records["preset"] == layout.preset]
    if runs.empty:
        return None
    runs = _with_pretraining_accuracy(runs.assign(dataset=runs["dataset"].str.removeprefix(
        layout.dataset_prefix)), layout)
    stats = seed_stats(runs)
    means = pivot(stats, layout.preset)
    compared = pd.DataFrame() if comparison is None else comparison[
        comparison["preset"] == layout.preset].assign(dataset=lambda frame: frame[
            "dataset"].str.removeprefix(layout.dataset_prefix))
    markers = cell_markers(compared, layout.preset) if len(compared) else {}
    published = (load_published(layout.published, reference_dir) if layout.published
                 else pd.DataFrame(columns=["method", "label", "provenance", "source"]))
    columns = _columns(layout, list(means.columns))
    headers = list(columns.values()) + [m.header for m in layout.means] + (
        SCORE_COLUMNS if layout.baseline is not None else []) + ([PUBLISHED_PAR] if layout.published_par else []) + (
        list(PARAMETER_COLUMNS) if layout.parameter_columns else [])

    done = runs[runs["status"] == "done"]
    baseline = _baseline(layout, done)
    labels = dict(zip(published["method"], published["label"]))
    rows: list[Row] = []
    rules, partial, previous, computed = set(), [], 1, set()
    for method in dict.fromkeys([*published["method"], *sorted(means.index)]):
        label = labels.get(method, method)
        group, missing, derived = _method_rows(layout, method, label, published, done, stats, columns,
                                               baseline, markers)
        computed.update(derived)
        if len(group) > 1 or previous > 1:
            rules.add(group[0].name)
        previous = len(group)
        rows += group
        if missing and layout.baseline is not None:
            partial.append(f"{label} lacks {', '.join(missing)}")

    def frame(field_name: str) -> pd.DataFrame:
        cells = pd.DataFrame.from_dict({r.name: getattr(r, field_name) for r in rows},
                                       orient="index")
        return cells.reindex(index=[r.name for r in rows], columns=headers)

    deltas = {r.name for r in rows if r.kind == "delta"}
    markers = frame("markers")
    best = {h: "min" if h in ("#par", PUBLISHED_PAR) else "max" for h in headers if h not in PARAMETER_COLUMNS}
    printed = published[published["method"].isin({r.method for r in rows if r.kind == "paper"})]
    return Table(name=layout.name, title=layout.title, mean=frame("values").astype(float),
                 low=frame("low").astype(float), high=frame("high").astype(float),
                 seeds=frame("seeds").astype(float), decimals={"score": 0, "#par": 2, PUBLISHED_PAR: 2}, best=best,
                 unranked_rows=deltas, signed_rows=deltas,
                 markers=markers.astype(object).where(markers.notna(), ""), rules_before=rules,
                 footnotes=_footnotes(layout, runs, printed, bool(deltas), partial, baseline,
                                      columns, [m.header for m in layout.means if m.header in computed])
                 + (significance_note(compared, layout.preset) if len(compared) else []))


def source_column_note(layout: Layout, runs: pd.DataFrame, columns: dict[str, str]) -> str | None:
    """Why the source-domain column (ImNet) is empty: the ``pretraining.note`` the runs recorded
    (e.g. the devkit lacks imagenet12) when none of them has a source-domain accuracy."""
    source = layout.source_domain
    if source is None or "pretraining.note" not in runs.columns:
        return None
    if (runs["dataset"] == source).any() and runs.loc[runs["dataset"] == source, "test_accuracy"].notna().any():
        return None
    notes = sorted(set(runs["pretraining.note"].dropna()))
    return f"{columns.get(source, source)} empty: " + "; ".join(notes) + "." if notes else None


def _footnotes(layout: Layout, runs: pd.DataFrame, used: pd.DataFrame, deltas: bool,
               partial: list[str], baseline: ScoreBaseline, columns: dict[str, str],
               computed: list[str]) -> list[str]:
    """The notes printed under a table (see the module docstring); ``used``: printed
    published numbers, ``partial``: one ``<label> lacks <datasets>`` per partial row,
    ``computed``: the mean columns of paper rows the suite computed."""
    done = runs[runs["status"] == "done"]
    seeds = sorted(done["seed"].dropna().astype(int).unique())
    lines = [f"Suite rows: mean over the done seeds ({', '.join(map(str, seeds))}) ± half-width "
             f"of its {percent(LEVEL)} Student-t interval, [low, high] where asymmetric, {EQUAL} where "
             "every seed gave the same number; – = no number" + ("; Δ = suite − paper." if deltas else ".")]
    if layout.means:
        lines.append("; ".join(m.what for m in layout.means) + "; – where a dataset under the mean lacks a number; "
                     "a suite row's: the mean over the seeds done on every dataset under the column of "
                     "each seed's mean, with the t-interval of those per-seed means.")
    if computed:
        lines.append(f"{', '.join(computed)} of the paper rows: computed by the suite from their published "
                     f"per-dataset accuracies (not printed in the source).")
    if layout.baseline is not None:
        unscored = [name for name in columns if name not in baseline.datasets]
        against = (f"{layout.baseline_note}, the run of the same seed" if baseline.per_seed is not None
                   else layout.baseline_note)
        lines.append(
            "mean: over the seeds done on every dataset of the row, each seed's mean over the dataset "
            f"columns, averaged; score: Decathlon score {SCORE_FORMULA} of each seed's accuracies "
            f"against {against} (matching it scores 250 per dataset), averaged over the seeds done on "
            "every dataset of the row and of the baseline; both with the t-interval over those seeds "
            "(point and interval from the same seeds)"
            + (f", not scored: {', '.join(unscored)} (no baseline)" if unscored else "")
            + f"; #par = 1 + {layout.target_tasks or len(columns)} × task-specific / backbone "
            "parameters, means over the method's runs, the new classifier counted as task-specific"
            + (f"; {PUBLISHED_PAR}: the same without it, the published tables' convention."
               if layout.published_par else "."))
    if layout.parameter_columns:
        lines.append(parameter_note(layout.target_tasks or len(columns)))
    if partial:
        lines.append(f"{PARTIAL} over the datasets present only: " + "; ".join(partial) + ".")
    protocol = protocol_note(done)
    if protocol:
        lines.append(protocol)
    if len(done):
        lines.append(conditioning_note(done))
    source = source_column_note(layout, done, columns)
    if source:
        lines.append(source)
    pending = runs_not_done(runs)
    if pending:
        lines.append("Not done: " + ", ".join(pending) + ".")
    for tag in sorted(used["provenance"].unique()):
        sources = "; ".join(used.loc[used["provenance"] == tag, "source"].unique())
        lines.append(f"{tag} {PROVENANCE.get(tag, '')}: {sources}.")
    if layout.published_note and len(used):
        lines.append(layout.published_note)
    return lines
