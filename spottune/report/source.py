"""Where the runs' pretrained weights come from, and what the intervals are conditional on.

Every interval and test of the report treats the training seed as the unit; the source network
every seed starts from is held fixed. When that network is the suite's own pretraining, it is
itself one random draw: the same spec pretrained on another CPU type or thread count gives other
weights (another SHA-256), and the cells of a grid fine-tuned from them can move beyond the
intervals printed here. :func:`conditioning_note` says so under every table, naming the source.
"""
from __future__ import annotations

import pandas as pd

KINDS = {"released": "released file", "state_dict": "state_dict file", "suite": "suite pretraining",
         "package": "package weights"}


def weights_description(runs: pd.DataFrame) -> pd.Series | None:
    """Where each run's pretrained weights come from, from its ``pretraining`` record
    (:mod:`spottune.pretraining.weights`): ``released file sha256:<12 hex>``, ``suite pretraining on
    <dataset> spec:<hash> (weights sha256:<12 hex>)`` (``with series adapters``),
    ``state_dict file sha256:<12 hex>``, ``package weights (<dataset>) sha256:<12 hex>`` (a
    weights file an installed package ships) or ``random init``; None when no run recorded it
    (records older than that field)."""
    if "pretraining.kind" not in runs.columns or runs["pretraining.kind"].isna().all():
        return None

    def describe(run: pd.Series) -> str | None:
        kind = run.get("pretraining.kind")
        if not isinstance(kind, str):
            return None
        if kind == "none":
            return "random init"
        ident = str(run.get("pretraining.id") or "?")
        text = KINDS.get(kind, kind)
        if kind == "suite":
            text += f" on {run.get('pretraining.dataset')} spec:{ident[:12]}"
            weights = run.get("pretraining.sha256")
            text += f" (weights sha256:{weights[:12]})" if isinstance(weights, str) else ""
        elif kind == "package":
            text = f"{KINDS[kind]} ({run.get('pretraining.dataset')}) sha256:{ident[:12]}"
        else:
            text += f" sha256:{ident[:12]}"
        return text + (" with series adapters" if run.get("pretraining.series_adapters") is True else "")

    return runs.apply(describe, axis=1)


def compute_description(runs: pd.DataFrame) -> str:
    """``cpu, AMD EPYC, 1 thread`` for each distinct (device, CPU type, torch threads) the runs'
    ``compute`` records (``not recorded`` for records older than that field)."""
    columns = [c for c in ("compute.device", "compute.cpu", "compute.torch_threads") if c in runs.columns]
    if not columns:
        return "not recorded"
    seen = []
    for values in runs[columns].itertuples(index=False):
        parts = dict(zip(columns, values))
        threads = parts.get("compute.torch_threads")
        text = ", ".join(str(v) for k, v in parts.items() if k != "compute.torch_threads" and pd.notna(v))
        if pd.notna(threads):
            text += f", {threads:g} thread{'s' * (threads != 1)}"
        if text not in seen:
            seen.append(text)
    return "; ".join(sorted(seen)) or "not recorded"


def conditioning_note(runs: pd.DataFrame) -> str:
    """The footnote saying what the intervals and tests of ``runs`` (done runs of one preset)
    are conditional on: the seeds as the unit, and the one source network they share."""
    weights = weights_description(runs)
    sources = sorted(set(weights.dropna())) if weights is not None else []
    named = "; ".join(sources) if sources else "not recorded by these runs"
    note = (f"Intervals and tests are over training seeds and conditional on the source network "
            f"({named}) and on the device, CPU type and thread count the runs ran with "
            f"({compute_description(runs)}): the same seed gives the same number only there.")
    if any(source.startswith(KINDS["suite"]) for source in sources):
        note += (" The suite pretrains that source itself: on another CPU type or thread count it "
                 "pretrains other weights, and cells can move beyond these intervals.")
    return note
