"""The method contract and registry.

A method is a small class registered by name. It declares its own hyperparameters with
their defaults (``defaults``; a preset or ``--set`` overrides them), builds the model for a
target task from a pretrained backbone (:meth:`Method.build`), says which parameters train
with which optimiser settings (:meth:`Method.param_groups`), may add a term to the loss
(:meth:`Method.regularizer`), and says how many parameters a new task costs
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
(:meth:`Method.layer_selection`, recorded in ``metrics.json``). A method checks its own
hyperparameters in its constructor: a ``ValueError`` there (one line naming the key) stops
``run_all.py`` before anything launches. The engine knows nothing else about methods. The
contract before :class:`ForwardOutputs`, ``regularizer(self, model)``, still works: such an
override is called without the outputs.

Training-protocol hyperparameters every method receives (``lr``, ``momentum``,
``weight_decay``, ``optimizer``, ``epochs``, ``batch_size``, ``lr_milestones``, ``lr_gamma``, and
where a preset sets them ``weight_decay_exempt``, ``schedule``, ``label_smoothing``,
``drop_path``, ...: :mod:`spottune.training`) come from the preset; a method may give its own
defaults for them (Piggyback uses Adam).

Register with ``@register_method("name")``; a name registered twice is an error; an unknown
name lists the known ones. Built-in methods live in :mod:`spottune.methods` (SpotTune,
SpotTune-Global, standard fine-tuning) and the ``baselines`` package; a user's own module is
loaded with ``run_all.py --plugins my_package.my_method``.
"""
from __future__ import annotations

import fnmatch
import functools
import importlib
import inspect
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any, Callable, ClassVar

import torch
from torch import nn

from spottune.backbones.base import FAMILIES, Backbone, count_parameters
from spottune.spottune import SpotTune, SpotTuneGlobal

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
    defaults: ClassVar[dict[str, Any]] = {}
    protocol_keys: ClassVar[tuple[str, ...]] = ()  # hparams stated in table footnotes
    families: ClassVar[tuple[str, ...]] = FAMILIES  # backbone families it applies to
    # whether a task's model needs the shared pretrained network beside its task-specific
    # parameters (False: every pretrained weight is fine-tuned, the task's copy replaces it)
    shares_pretrained: ClassVar[bool] = True
    family_note: ClassVar[str] = ""  # why not the other families (run_all.py --list, the refusal)

    def __init__(self, hparams: dict[str, Any]) -> None:
        self.hp = {**self.defaults, **hparams}

    def __init_subclass__(cls, **kwargs: Any) -> None:
        """Every ``build`` a subclass defines first checks the backbone's family; a
        ``regularizer(self, model)`` of the old contract is called without the outputs."""
        super().__init_subclass__(**kwargs)
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
_BUILTIN_PACKAGES = ("baselines",)
_builtins_loaded = False


def register_method(name: str) -> Callable[[type[Method]], type[Method]]:
    """Class decorator registering a :class:`Method` under ``name``."""

    def decorate(cls: type[Method]) -> type[Method]:
        if name in _REGISTRY:
            raise ValueError(f"method {name!r} is already registered (by {_REGISTRY[name].__module__})")
        if not (isinstance(cls, type) and issubclass(cls, Method)):
            raise TypeError(f"@register_method({name!r}) must decorate a subclass of Method")
        cls.name = name
        _REGISTRY[name] = cls
        return cls

    return decorate


def _load_builtins() -> None:
    global _builtins_loaded
    if not _builtins_loaded:
        _builtins_loaded = True
        for package in _BUILTIN_PACKAGES:
            importlib.import_module(package)


def load_plugins(modules: list[str] | tuple[str, ...]) -> None:
    """Import user modules that register their own methods (``--plugins``).

    Any failure is an ``ImportError`` with a one-line message naming the module: not found
    (is it on PYTHONPATH?), or the exception its code raised on import (chained, for a traceback).
    """
    for module in modules:
        try:
            importlib.import_module(module)
        except ModuleNotFoundError as err:
            raise ImportError(f"cannot import plugin module {module!r} ({err}); is it on PYTHONPATH?") from err
        except Exception as err:  # noqa: BLE001 - the plugin's own code failed: say which plugin
            detail = str(err).strip().splitlines()[0] if str(err).strip() else ""
            raise ImportError(f"plugin module {module!r} raised {type(err).__name__} on import"
                              + (f": {detail}" if detail else "")) from err


def list_methods(pattern: str = "*") -> list[str]:
    """Registered method names matching a shell-style ``pattern``, sorted."""
    _load_builtins()
    return sorted(n for n in _REGISTRY if fnmatch.fnmatch(n, pattern))


def methods_by_families() -> dict[tuple[str, ...], list[str]]:
    """Registered method names grouped by the backbone families they apply to (``--list``)."""
    groups: dict[tuple[str, ...], list[str]] = {}
    for name in list_methods():
        groups.setdefault(get_method(name).families, []).append(name)
    return dict(sorted(groups.items(), key=lambda item: (-len(item[0]), item[0])))


def get_method(name: str) -> type[Method]:
    _load_builtins()
    if name not in _REGISTRY:
        raise KeyError(f"unknown method {name!r}; known methods: {', '.join(sorted(_REGISTRY))}")
    return _REGISTRY[name]


def create_method(name: str, hparams: dict[str, Any]) -> Method:
    return get_method(name)(hparams)


def family_problem(method: type[Method], family: str, arch: str) -> str | None:
    """Why ``method`` cannot run on a backbone ``arch`` of ``family``, or None."""
    if family in method.families:
        return None
    return (f"method {method.name or method.__name__} applies to {' and '.join(method.families)} backbones only; "
            f"{arch} is a {family}" + (f" ({method.family_note})" if method.family_note else ""))


@register_method("finetune")
class Finetune(Method):
    """Standard fine-tuning: every weight trains from the pretrained values, new classifier."""

    shares_pretrained = False

    def build(self, backbone: Backbone, num_classes: int) -> nn.Module:
        return backbone.for_task(num_classes)


class RoutedMethod(Method):
    """A method whose model is a :class:`spottune.spottune.TwoPathNetwork`: its forward's
    per-image routing is recorded."""

    def forward(self, model: nn.Module, images: torch.Tensor) -> ForwardOutputs:
        logits, decisions = model.forward_routed(images)
        return ForwardOutputs(logits, routing=decisions)


@register_method("spottune")
class SpotTuneMethod(RoutedMethod):
    """SpotTune (Guo et al. 2019), see :mod:`spottune.spottune`.

    Optimisation as released: SGD, network lr and weight decay from the preset; the policy
    network with ``lr * policy_lr_mult`` (0.1 / 0.01 -> 0.1) and weight decay 1e-3.
    """

    defaults: ClassVar[dict[str, Any]] = {
        "temperature": 5.0, "freeze": "conv", "test_routing": "argmax", "policy_width": 1.0,
        "policy_lr_mult": 0.1, "policy_weight_decay": 1e-3,
    }
    model_class: ClassVar[type[SpotTune]] = SpotTune
    protocol_keys: ClassVar[tuple[str, ...]] = ("freeze", "test_routing")

    def model_kwargs(self) -> dict[str, Any]:
        return {"freeze": self.hp["freeze"], "temperature": self.hp["temperature"],
                "test_routing": self.hp["test_routing"], "policy_width": self.hp["policy_width"]}

    def build(self, backbone: Backbone, num_classes: int) -> nn.Module:
        return self.model_class(backbone, num_classes, **self.model_kwargs())

    def param_groups(self, model: nn.Module) -> list[ParamGroup]:
        policy = list(model.policy.parameters())
        return [param_group("network", parameters_except(model, policy), self.hp["lr"], self.hp["weight_decay"]),
                param_group("policy", policy, self.hp["lr"] * self.hp["policy_lr_mult"],
                            self.hp["policy_weight_decay"])]


@register_method("spottune_global")
class SpotTuneGlobalMethod(SpotTuneMethod):
    """SpotTune-Global: the k-block and entropy regularisers (Sec. 3.3), one routing for all
    test images. ``k = None`` means half of the blocks."""

    defaults: ClassVar[dict[str, Any]] = {
        **SpotTuneMethod.defaults, "k": None, "lambda_k": 0.1, "lambda_entropy": 0.1,
    }
    model_class: ClassVar[type[SpotTune]] = SpotTuneGlobal

    def regularizer(self, model: nn.Module, outputs: ForwardOutputs) -> torch.Tensor:
        """The k-block and entropy terms on the forward's decisions (:meth:`SpotTuneGlobal.regularizer`)."""
        return model.regularizer(outputs.routing)

    def model_kwargs(self) -> dict[str, Any]:
        return {**super().model_kwargs(), "k": self.hp["k"], "lambda_k": self.hp["lambda_k"],
                "lambda_entropy": self.hp["lambda_entropy"]}

    def task_specific_parameters(self, model: nn.Module) -> float:
        """Only the blocks the global routing fine-tunes need storing (plus everything else
        that trains outside the blocks); the policy network is not needed at test time."""
        routed = model.finetune_fraction > 0.5
        tuned = sum(count_parameters(b) for b, on in zip(model.tuned_blocks, routed) if not on)
        policy = count_parameters(model.policy)
        return float(count_parameters(model, trainable_only=True) - tuned - policy)
