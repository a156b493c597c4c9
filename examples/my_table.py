"""A complete user-defined paper table: the runs on one's own dataset beside the mini tasks.

A table is a :class:`spottune.report.tables.Layout`: which preset's runs it shows, its title,
the column header of each dataset (in print order; other datasets follow under their own
names) and the baseline the ``mean``, ``score`` and ``#par`` columns and the significance marks
compare with (a method of the same preset, or published accuracies per dataset). Registered
with :func:`~spottune.report.tables.register_table`, it is written by every report: ``run_all.py
--plugins examples.my_table`` at the end of a grid, ``python -m spottune.report OUTPUT
--plugins examples.my_table`` from the records alone, as ``tables/my_folder_study.{md,tex,csv}``.
The suite's tests write it from a grid on examples/my_dataset.py's folder of images.
"""
from __future__ import annotations

from spottune.report.tables import OWN_FINETUNE, Layout, register_table

MY_TABLE = register_table(Layout(
    name="my_folder_study", title="My folder of images beside the mini tasks, test top-1 accuracy (%)",
    preset="mini", headers={"my_folder": "Mine", "digits": "Digits"},
    baseline="finetune", baseline_note=OWN_FINETUNE))
