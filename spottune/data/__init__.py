"""Shared data loaders: every method reads its data through :func:`load_task`."""
from spottune.data import mini  # noqa: F401  (registers the embedded datasets)
from spottune.data.base import (DatasetError, TaskData, list_datasets, load_task, make_loader,
                                register_dataset)

__all__ = ["DatasetError", "TaskData", "list_datasets", "load_task", "make_loader", "register_dataset"]
