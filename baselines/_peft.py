"""The common base of the parameter-efficient baselines on a ViT (BitFit, VPT, the adapters,
AdaptFormer, SSF, LoRA): the pretrained ViT frozen, a new classifier trained.

``head_init`` (each method's default: its source's; :data:`spottune.backbones.base.HEAD_INITS`)
initialises the new classifier as the source of the published row does: ``pytorch``
(``nn.Linear``'s own: timm's ``reset_classifier``, which NOAH and V-PETL Bench call), ``vpt``
(VPT's head) or ``timm`` (SSF's freshly built timm head); see
:func:`spottune.backbones.base.init_classifier_`.
"""
from __future__ import annotations

from typing import ClassVar

from baselines._common import frozen_for_task
from spottune.backbones.base import Backbone
from spottune.hparams import HParam
from spottune.method_contract import Method


class FrozenViTMethod(Method):
    """A method on a frozen pretrained ViT with a new classifier (:meth:`frozen`)."""

    hparams: ClassVar[dict[str, HParam]] = {
        "head_init": HParam("pytorch", help="how the new classifier is initialised (a protocol key)")}
    families = ("vit",)

    def frozen(self, backbone: Backbone, num_classes: int) -> Backbone:
        """A copy of ``backbone``, every pretrained weight frozen, with a new trainable
        classifier initialised as ``head_init`` says."""
        return frozen_for_task(backbone, num_classes, str(self.hp["head_init"]))
