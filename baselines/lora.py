"""LoRA: low-rank adaptation (Hu, Shen, Wallis, Allen-Zhu, Li, Wang, Wang, Chen, ICLR 2022;
official code microsoft/LoRA), through Hugging Face ``peft`` (``LoraConfig`` and
``inject_adapter_in_model``: the suite does not re-implement it).

Every attention input projection of the frozen ViT (timm's fused ``qkv``: ``W_q``, ``W_k``
and ``W_v`` together) gets a trained low-rank update::

    h = W_0 x + (alpha / r) B A x,    A in R^{r x d} (Kaiming-uniform),  B in R^{3d x r} (zero)

so the network is exactly the pretrained one at step 0; dropout ``lora_dropout`` on ``x``
before ``A``. ``W_0`` is frozen; ``A``, ``B`` and the new classifier train. The paper adapts
``W_q`` and ``W_v`` and studies ranks from 1 to 64; the suite's default is r = 8 on the fused
qkv projection [unverified: the rank of the published ViT rows]. Task-specific parameters:
``r (d + 3d)`` per block plus the classifier.

Hyperparameters: ``rank`` 8, ``alpha`` 8, ``lora_dropout`` 0.1, ``target_modules`` ["qkv"].
"""
from __future__ import annotations

from typing import Any, ClassVar

from torch import nn

from baselines._common import frozen_for_task
from spottune.backbones.base import Backbone
from spottune.methods import Method, register_method


@register_method("lora")
class LoRA(Method):
    """Frozen ViT, peft's LoRA on the attention's qkv projections, new classifier."""

    defaults: ClassVar[dict[str, Any]] = {"rank": 8, "alpha": 8, "lora_dropout": 0.1, "target_modules": ["qkv"]}
    families = ("vit",)  # timm's attention projections

    def build(self, backbone: Backbone, num_classes: int) -> nn.Module:
        from peft import LoraConfig, inject_adapter_in_model

        model = frozen_for_task(backbone, num_classes)
        config = LoraConfig(r=int(self.hp["rank"]), lora_alpha=float(self.hp["alpha"]),
                            lora_dropout=float(self.hp["lora_dropout"]),
                            target_modules=list(self.hp["target_modules"]), bias="none")
        model = inject_adapter_in_model(config, model)
        model.head.fc.requires_grad_(True)  # peft leaves only its own parameters trainable
        return model
