"""The parameter columns of the VTAB-1k and FGVC tables: three conventions side by side, each
labelled, since PEFT papers print one and the Decathlon another.

* ``Params (M)`` (:data:`PARAMS_M`): the trainable parameters of one task in millions, the new
  classifier excluded: V-PETL Bench's "Params." column (``0.16M``, ``85.8M`` for full
  fine-tuning). Suite rows: the mean over the method's runs of ``params.task_specific -
  params.classifier``; paper rows: the published number (``published.csv`` metric ``params_m``);
* ``#par (Decathlon)`` (:data:`PAR_DECATHLON`): the suite's Decathlon convention
  ``1 + T x task-specific / backbone`` (:func:`spottune.visual_decathlon.parameter_cost`), the new
  classifier counted as task-specific, ``T`` the table's tasks (19 VTAB-1k, 5 FGVC): full
  fine-tuning costs about ``T + 1``;
* ``#par (VPT)`` (:data:`PAR_VPT`): the convention of VPT's "Total params" (Jia et al. 2022,
  Table 1, over its 24 FGVC + VTAB tasks: full fine-tuning 24.02x, linear probing 1.02x;
  [unverified], recalled, not checked against the PDF): the parameters stored for all ``T``
  tasks in backbones, ``T x task-specific / backbone`` plus 1 for the shared pretrained network
  only where a task's model needs it (``params.shares_pretrained``,
  :attr:`spottune.method_contract.Method.shares_pretrained`): full fine-tuning costs about ``T``.

Records without ``params.shares_pretrained`` (written before it existed) leave ``#par (VPT)``
empty.
"""
from __future__ import annotations

import numpy as np
import pandas as pd

from spottune.visual_decathlon import parameter_cost

PARAMS_M = "Params (M)"
PAR_DECATHLON = "#par (Decathlon)"
PAR_VPT = "#par (VPT)"
COLUMNS = (PARAMS_M, PAR_DECATHLON, PAR_VPT)
PUBLISHED_METRIC = "params_m"
"""The ``metric`` of ``published.csv`` printed under :data:`PARAMS_M`."""
NEEDED = ("params.task_specific", "params.backbone", "params.classifier")


def parameter_cells(runs: pd.DataFrame, tasks: int) -> dict[str, float]:
    """The three columns of one method's row from its done runs (see the module docstring);
    NaN where the records lack what a column needs."""
    if runs.empty or not set(NEEDED) <= set(runs.columns):
        return {column: np.nan for column in COLUMNS}
    specific, backbone = runs["params.task_specific"].astype(float).mean(), runs["params.backbone"].astype(float).mean()
    cells = {PARAMS_M: (runs["params.task_specific"] - runs["params.classifier"]).astype(float).mean() / 1e6,
             PAR_DECATHLON: parameter_cost(specific, backbone, tasks), PAR_VPT: np.nan}
    shares = runs.get("params.shares_pretrained")
    if shares is not None and shares.notna().all() and shares.nunique() == 1:
        cells[PAR_VPT] = float(bool(shares.iloc[0])) + tasks * specific / backbone
    return cells


def parameter_note(tasks: int) -> str:
    """The footnote defining the three columns for a table of ``tasks`` tasks."""
    return (f"{PARAMS_M}: trainable parameters per task in millions without the new classifier (V-PETL Bench's "
            f"Params column; paper rows as printed, suite rows the mean over the method's runs); "
            f"{PAR_DECATHLON} = 1 + {tasks} × task-specific / backbone parameters (the suite's convention, "
            f"the new classifier counted as task-specific); {PAR_VPT} = {tasks} × task-specific / backbone, plus 1 "
            f"for the shared pretrained network unless every pretrained weight is fine-tuned (VPT's \"Total params\" "
            f"convention, Jia et al. 2022 Table 1 [unverified]: full fine-tuning costs {tasks}, not {tasks + 1}).")
