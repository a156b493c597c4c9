"""The method contract: what a method is, how it declares its hyperparameters, how it registers.

This module imports no model and no method: a plugin, the engine and every baseline read the
contract here; :mod:`spottune.methods` is the catalogue (the built-in methods and the lookups).

A method is a small class registered by name (``@register_method("name")``; a name registered
twice is an error). It declares its own hyperparameters with their defaults, ranges and meaning
(``hparams``: name -> :class:`spottune.hparams.HParam`; a preset or ``--set`` overrides the
values; ``defaults`` is derived from them) and may give its own default for a training-protocol
key (an ``HParam`` without a range: Piggyback's Adam, checked by the protocol's rules). Every
declared range is checked by :meth:`Method.hparam_problems` when the method is made, so
``run_all.py`` refuses ``--set temperature=-1`` with one line, ``method spottune:
temperature=-1.0: must be a number > 0 (Gumbel-softmax temperature)``, before anything
launches (:mod:`spottune.planning.preflight`); a method with a rule across keys adds it by extending
:meth:`Method.hparam_problems` (TAPS).
A plugin written against the older contract, a plain ``defaults`` dict, still runs: its values
are declared without ranges.

A method builds the model for a target task from a pretrained backbone (:meth:`Method.build`),
says which parameters train with which optimiser settings (:meth:`Method.param_groups`), may add
a term to the loss (:meth:`Method.regularizer`), and says how many parameters a new task costs
(:meth:`Method.task_specific_parameters`, the Decathlon "#par" accounting) and whether a
task's model still needs the shared pretrained network beside them (``shares_pretrained``;
False when every pretrained weight is fine-tuned, as VPT's "total params" counts), names the
hyperparameters that are protocol choices to state in table footnotes (``protocol_keys``,
e.g. SpotTune's test-time routing), and the backbone families it applies to (``families``,
of :data:`spottune.backbones.base.FAMILIES`: ``cnn`` ResNets, ``mbconv`` EfficientNet, ``vit``;
``family_note`` says why not the others; building on another family is a ``ValueError`` naming
both and the note, and a preset's ``methods: all`` keeps only the methods of its backbone's family). A method runs
its model on a batch (:meth:`Method.forward`, returning :class:`ForwardOutputs`: the logits
and, for a method that routes images, the per-image routing to record); its regulariser gets
that forward's outputs. Nothing passes through attributes a forward leaves on the model. A
method that selects layers per task says which it selected at the end
(:meth:`Method.layer_selection`, recorded in ``metrics.json``). The engine knows nothing else
about methods. The contract before :class:`ForwardOutputs`, ``regularizer(self, model)``, still
works: such an override is called without the outputs.

Training-protocol hyperparameters every method receives (``lr``, ``momentum``,
``weight_decay``, ``optimizer``, ``epochs``, ``batch_size``, ``lr_milestones``, ``lr_gamma``, and
where a preset sets them ``weight_decay_exempt``, ``schedule``, ``label_smoothing``,
``drop_path``, ...: :mod:`spottune.training.loop`) come from the preset.
"""
from __future__ import annotations

import functools
import inspect
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any, Callable, ClassVar

import torch
from torch import nn

from spottune.backbones.base import FAMILIES, Backbone, count_parameters
from spottune.hparams import HParam
from spottune.plugins import register_class

ParamGroup = dict[str, Any]


@dataclass
class ForwardOutputs:
    """What one forward pass of a method's model gives the loss and the records.

    ``logits`` (batch, classes); ``routing`` (batch, num_blocks), 1 = fine-tuned copy of the
    block, for a method whose images are routed (differentiable in training; recorded per
    image in ``policy.npz`` and per epoch as ``finetune_fraction``), else ``None``; ``extras``:
    further tensors the method's regulariser needs (LwF's source-task logits).
    """

    logits: torch.Tensor
    routing: torch.Tensor | None = None
    extras: dict[str, torch.Tensor] | None = None

    def detached(self) -> "ForwardOutputs":
        """Logits detached and the routing as recorded (detached, uint8); no extras."""
        routing = None if self.routing is None else self.routing.detach().to(torch.uint8)
        return ForwardOutputs(self.logits.detach(), routing)


def param_group(name: str, params: Iterable[nn.Parameter], lr: float, weight_decay: float) -> ParamGroup:
    """An optimiser parameter group as the engine expects it (only parameters that require gradients)."""
    return {"name": name, "params": [p for p in params if p.requires_grad], "lr": float(lr),
            "weight_decay": float(weight_decay)}


def parameters_except(model: nn.Module, params: Iterable[nn.Parameter]) -> list[nn.Parameter]:
    """The parameters of ``model`` that are not in ``params`` (the rest after a special group)."""
    excluded = {id(p) for p in params}
    return [p for p in model.parameters() if id(p) not in excluded]


class Method:
    """Base class of every fine-tuning method (see the module docstring for the contract)."""

    name: ClassVar[str] = ""
    hparams: ClassVar[dict[str, HParam]] = {}  # its own hyperparameters, declared
    defaults: ClassVar[dict[str, Any]] = {}  # derived: each declared hyperparameter's default
    protocol_keys: ClassVar[tuple[str, ...]] = ()  # hparams stated in table footnotes
    families: ClassVar[tuple[str, ...]] = FAMILIES  # backbone families it applies to
    # whether a task's model needs the shared pretrained network beside its task-specific
    # parameters (False: every pretrained weight is fine-tuned, the task's copy replaces it)
    shares_pretrained: ClassVar[bool] = True
    family_note: ClassVar[str] = ""  # why not the other families (run_all.py --list, the refusal)

    def __init__(self, hparams: dict[str, Any]) -> None:
        """The method with ``hparams`` over its defaults; a ``ValueError`` (one line, every
        problem of :meth:`hparam_problems`) when a value is out of its range."""
        self.hp = {**self.defaults, **hparams}
        problems = self.hparam_problems()
        if problems:
            raise ValueError("; ".join(problems))

    def __init_subclass__(cls, **kwargs: Any) -> None:
        """``defaults`` from the declared ``hparams`` (or, for a class of the older contract
        that gives only ``defaults``, undeclared ``hparams`` from them); every ``build`` a
        subclass defines first checks the backbone's family; a ``regularizer(self, model)`` of
        the old contract is called without the outputs."""
        super().__init_subclass__(**kwargs)
        if "hparams" in cls.__dict__:
            cls.defaults = {key: declared.default for key, declared in cls.hparams.items()}
        elif "defaults" in cls.__dict__:
            cls.hparams = {key: HParam(value) for key, value in cls.defaults.items()}
        build = cls.__dict__.get("build")
        if build is not None:
            @functools.wraps(build)
            def checked_build(self: Method, backbone: Backbone, num_classes: int) -> nn.Module:
                problem = family_problem(type(self), backbone.family, backbone.arch)
                if problem:
                    raise ValueError(problem)
                return build(self, backbone, num_classes)

            cls.build = checked_build
        regularizer = cls.__dict__.get("regularizer")
        if regularizer is not None and len(inspect.signature(regularizer).parameters) == 2:
            # ``regularizer(self, model)``, the contract before ForwardOutputs: called without them
            cls.regularizer = lambda self, model, outputs: regularizer(self, model)

    def hparam_problems(self) -> list[str]:
        """What is wrong with this method's hyperparameters (``self.hp``), one line per key out
        of its declared range, with the key's meaning (:meth:`spottune.hparams.HParam.problem`);
        extend it for a rule across keys."""
        return [problem for key, declared in self.hparams.items()
                for problem in [declared.problem(key, self.hp.get(key))] if problem]

    def build(self, backbone: Backbone, num_classes: int) -> nn.Module:
        """The model for a task with ``num_classes`` classes; ``backbone`` must not be modified."""
        raise NotImplementedError

    def param_groups(self, model: nn.Module) -> list[ParamGroup]:
        """Optimiser parameter groups (default: every trainable parameter, the preset's lr / wd)."""
        return [param_group("all", model.parameters(), self.hp["lr"], self.hp["weight_decay"])]

    def forward(self, model: nn.Module, images: torch.Tensor) -> ForwardOutputs:
        """The model on a batch (default: its logits, no routing)."""
        return ForwardOutputs(model(images))

    def regularizer(self, model: nn.Module, outputs: ForwardOutputs) -> torch.Tensor | None:
        """A term added to the cross-entropy of the forward pass that gave ``outputs`` (default:
        the model's own ``regularizer()`` if it has one, a function of its parameters)."""
        reg = getattr(model, "regularizer", None)
        return reg() if callable(reg) else None

    def task_specific_parameters(self, model: nn.Module) -> float:
        """Parameters a new task adds on top of the shared pretrained network (default: the
        trainable ones)."""
        return float(count_parameters(model, trainable_only=True))

    def layer_selection(self, model: nn.Module) -> dict[str, list] | None:
        """Which layers the trained model made task-specific, for a method that selects layers
        per task (TAPS): lists over its gated layers, ``layers`` (names), ``block`` (block
        index, None for the stem), ``task_specific`` (0 / 1) and what else the method records
        per layer; recorded as ``metrics.json`` ``layer_selection``. Default: None."""
        return None


_REGISTRY: dict[str, type[Method]] = {}


def register_method(name: str) -> Callable[[type[Method]], type[Method]]:
    """Class decorator registering a :class:`Method` under ``name``."""
    return register_class(_REGISTRY, "method", Method, name)


def registered() -> dict[str, type[Method]]:
    """Every method registered so far, by name (:mod:`spottune.methods` loads the built-ins)."""
    return dict(_REGISTRY)


def family_problem(method: type[Method], family: str, arch: str) -> str | None:
    """Why ``method`` cannot run on a backbone ``arch`` of ``family``, or None."""
    if family in method.families:
        return None
    return (f"method {method.name or method.__name__} applies to {' and '.join(method.families)} backbones only; "
            f"{arch} is a {family}" + (f" ({method.family_note})" if method.family_note else ""))
