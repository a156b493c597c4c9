"""A hyperparameter's declaration: its default, the values it may take and what it means.

Every method declares its own hyperparameters as :class:`HParam` in ``Method.hparams``
(:mod:`spottune.method_contract`), as peft gives each method a typed config checked in
``__post_init__`` (huggingface/peft, ``tuners/lora/config.py``, ``LoraConfig.__post_init__``);
the training protocol's shared keys (``lr``, ``epochs``, ...) have their :class:`Range` in
:data:`spottune.planning.preflight.RULES`, built from the same constructors here. Both are checked before
anything launches, with the same one-line message ``<key>=<value>: must be <range>``
(:meth:`Range.problem`); ``run_all.py --list`` prints each method's declarations
(:func:`describe`).

A range accepts finite numbers only: ``--set lr=inf`` would train a run to ``nan``.
"""
from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from typing import Any


def is_number(value: Any) -> bool:
    """A finite int or float (not a bool)."""
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def is_integer(value: Any) -> bool:
    """An int (not a bool)."""
    return isinstance(value, int) and not isinstance(value, bool)


@dataclass(frozen=True)
class Range:
    """The values a hyperparameter may take: ``accepts(value)`` and how messages say it
    (``text``, e.g. ``"a number > 0"``)."""

    accepts: Callable[[Any], bool]
    text: str

    def problem(self, key: str, value: Any) -> str | None:
        """``"<key>=<value>: must be <text>"`` when ``value`` is out of range, else None."""
        return None if self.accepts(value) else f"{key}={value!r}: must be {self.text}"


def number(*, above: float | None = None, at_least: float | None = None, below: float | None = None,
           at_most: float | None = None) -> Range:
    """Finite numbers within the given bounds: ``number(above=0)`` is "a number > 0",
    ``number(at_least=0, below=1)`` "a number in [0, 1)"."""
    low = (above, ">", "(") if above is not None else (at_least, ">=", "[") if at_least is not None else None
    high = (below, "<", ")") if below is not None else (at_most, "<=", "]") if at_most is not None else None

    def accepts(value: Any) -> bool:
        if not is_number(value):
            return False
        if low and not (value > low[0] if low[1] == ">" else value >= low[0]):
            return False
        return not (high and not (value < high[0] if high[1] == "<" else value <= high[0]))

    if low and high:
        text = f"a number in {low[2]}{low[0]:g}, {high[0]:g}{high[2]}"
    elif low or high:
        bound = low or high
        text = f"a number {bound[1]} {bound[0]:g}"
    else:
        text = "a finite number"
    return Range(accepts, text)


def integer(at_least: int) -> Range:
    """Integers ``>= at_least``."""
    return Range(lambda v: is_integer(v) and v >= at_least, f"an integer >= {at_least}")


def one_of(options: Sequence[Any]) -> Range:
    """One of ``options`` (strings, or the integers of a two-valued switch)."""
    allowed = tuple(options)
    return Range(lambda v: not isinstance(v, bool) and v in allowed, "one of " + ", ".join(map(str, allowed)))


def optional(inner: Range, meaning: str) -> Range:
    """``null`` (which means ``meaning``) or a value of ``inner``."""
    return Range(lambda v: v is None or inner.accepts(v), f"null ({meaning}) or {inner.text}")


POSITIVE = number(above=0)
NON_NEGATIVE = number(at_least=0)
FRACTION = number(at_least=0, below=1)  # a dropout rate, a momentum: 1 would stop learning
PROBABILITY = number(at_least=0, at_most=1)
FLAG = Range(lambda v: isinstance(v, bool), "true or false")
STRING_LIST = Range(lambda v: isinstance(v, list) and bool(v) and all(isinstance(s, str) for s in v),
                    "a non-empty list of names")


@dataclass(frozen=True)
class HParam:
    """One hyperparameter of a method: ``default``, the values it may take (``range``; None for a
    training-protocol key the method gives its own default, checked by
    :data:`spottune.planning.preflight.RULES`, or a value checked only when the model is built, such as a
    block count the backbone bounds) and what it means (``help``, one phrase for ``--list``)."""

    default: Any
    range: Range | None = None
    help: str = ""

    def __post_init__(self) -> None:
        if self.range is not None and not self.range.accepts(self.default):
            raise ValueError(f"default {self.default!r} is not {self.range.text}")

    def problem(self, key: str, value: Any) -> str | None:
        """``"<key>=<value>: must be <range> (<help>)"`` when ``value`` is out of range, else None."""
        problem = self.range.problem(key, value) if self.range is not None else None
        return f"{problem} ({self.help})" if problem and self.help else problem


def with_defaults(declared: dict[str, HParam], **defaults: Any) -> dict[str, HParam]:
    """``declared`` with other defaults for some of its keys (a method's variant, e.g. AdaptFormer
    at the official code's values); a key it does not declare is a ``KeyError``."""
    return {**declared, **{key: replace(declared[key], default=value) for key, value in defaults.items()}}


def describe(key: str, declared: HParam) -> str:
    """``"temperature 5.0 (a number > 0): Gumbel-softmax temperature"``: one ``--list`` entry."""
    what = f" ({declared.range.text})" if declared.range else ""
    return f"{key} {declared.default!r}{what}" + (f": {declared.help}" if declared.help else "")
