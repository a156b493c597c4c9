"""A run's checkpoints: tensors and plain data only, the last two kept, a torn one moved aside.

After every epoch the engine saves ``{model, optimizer, lr_scheduler, epoch, args, history}``
(state dicts, the run's config and its per-epoch history: tensors, numbers, strings, lists,
dicts, ``None``). Saving renames the current ``checkpoint.pt`` to ``checkpoint.prev.pt`` and
then writes the new one atomically, so a crash at any point leaves at least one complete
checkpoint of the last two epochs.

Loading reads with ``torch.load(weights_only=True)``: nothing in a run folder (shared storage,
writable by others) can execute code. A file that unpickles to anything else than tensors and
plain data (a pickle with an ``os.system`` payload, a whole pickled module: torch's restricted
unpickler raises ``UnpicklingError``) is refused: :class:`UnsafeCheckpoint` names it and the
run fails until someone removes it. A file that cannot be read otherwise (cut short, empty,
not a checkpoint) or lacks the keys above is torn: it is renamed to ``<name>.torn-<time>``
with a warning and the previous checkpoint is tried, then the start of training.
"""
from __future__ import annotations

import io
import logging
import os
import pickle
import time
import warnings
from pathlib import Path
from typing import Any

import torch

from spottune.storage import records

log = logging.getLogger(__name__)

KEYS = ("model", "optimizer", "lr_scheduler", "epoch", "args", "history")


class UnsafeCheckpoint(RuntimeError):
    """A checkpoint that holds more than tensors and plain data; the message names the file."""


def save(run_dir: Path, state: dict[str, Any]) -> None:
    """Write ``state`` (the :data:`KEYS`) as the run's checkpoint; the current one becomes the previous."""
    buffer = io.BytesIO()
    torch.save(state, buffer)
    current = Path(run_dir) / records.CHECKPOINT
    if current.exists():
        os.replace(current, Path(run_dir) / records.PREVIOUS_CHECKPOINT)
    records.atomic_write_bytes(current, buffer.getvalue())


def load_weights_only(path: Path, map_location: torch.device | str = "cpu") -> Any:
    """``torch.load(path, weights_only=True)`` without torch's warnings (a pickle's protocol,
    printed before it fails on a file that is not tensors and plain data: the error that
    follows says what matters, naming the file)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return torch.load(path, map_location=map_location, weights_only=True)


def load(run_dir: Path, map_location: torch.device | str = "cpu") -> dict[str, Any] | None:
    """The newest readable checkpoint of ``run_dir`` (current, then previous), or None.

    Raises :class:`UnsafeCheckpoint` for a file that is not tensors and plain data; moves a
    torn file aside with a warning (see the module docstring).
    """
    for path in (Path(run_dir) / records.CHECKPOINT, Path(run_dir) / records.PREVIOUS_CHECKPOINT):
        if not path.exists():
            continue
        try:
            state = load_weights_only(path, map_location)
        except pickle.UnpicklingError as err:
            raise UnsafeCheckpoint(f"refusing to load {path}: a pickle of more than tensors and plain data "
                                   f"({_reason(err)}); nothing in it was executed; the suite never writes such a "
                                   f"file: delete it") from err
        except Exception as err:  # noqa: BLE001 - any other failure to read it: the file is torn
            _move_aside(path, f"{type(err).__name__}: {_reason(err)}")
            continue
        missing = [k for k in KEYS if k not in state] if isinstance(state, dict) else list(KEYS)
        if missing:
            _move_aside(path, f"not a run checkpoint (lacks {', '.join(missing)})")
            continue
        if path.name == records.PREVIOUS_CHECKPOINT:
            log.warning("%s: resuming from the previous checkpoint (epoch %d)", path, state["epoch"])
        return state
    return None


def discard_previous(run_dir: Path) -> None:
    """Remove the previous checkpoint (once the run is done, only the last one is kept)."""
    (Path(run_dir) / records.PREVIOUS_CHECKPOINT).unlink(missing_ok=True)


def _reason(err: BaseException) -> str:
    """The line of torch's (long) message that says what is wrong with the file."""
    lines = [line.strip() for line in str(err).splitlines() if line.strip()]
    telling = [line for line in lines if "GLOBAL" in line or line.startswith("Unsupported")]
    return (telling or lines or ["no details"])[0]


def _move_aside(path: Path, reason: str) -> None:
    aside = path.with_name(f"{path.name}.torn-{time.strftime('%Y%m%dT%H%M%S')}-{os.getpid()}")
    os.replace(path, aside)
    log.warning("%s is unreadable (%s): moved to %s; resuming from the previous checkpoint or the start",
                path, reason, aside.name)
