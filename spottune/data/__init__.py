"""Shared data loaders: every method reads its data through :func:`load_task`."""
from spottune.data import decathlon, mini, peft_benchmarks, standard  # noqa: F401  (register their datasets)
from spottune.data.base import (DatasetError, TaskData, list_datasets, load_task, make_loader,
                                register_dataset, test_image_lookup)

__all__ = ["DatasetError", "TaskData", "list_datasets", "load_task", "make_loader", "register_dataset",
           "test_image_lookup"]
