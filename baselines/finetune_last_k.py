"""Fine-tune the last k residual blocks: an ablation of SpotTune (Guo et al. 2019, Table 1).

The stem and the first ``num_blocks - k`` residual blocks are frozen (BatchNorm included, in
eval mode with the pretrained statistics); the last ``k`` blocks, the pre-pool layers of the
head (ResNet-26's final BN) and a new classifier are fine-tuned::

    logits = head(B_N o ... o B_{N-k+1} (frozen(B_{N-k} o ... o B_1 o stem)(x)))

``k`` counts residual blocks of the backbone contract (ResNet-26: 12 basic blocks; ResNet-50:
16 bottlenecks). The paper reports k = 1, 2, 3 on ResNet-50 [unverified]; ``k = 0`` trains the
head only, ``k = num_blocks`` is standard fine-tuning with a frozen stem.
Task-specific parameters: the last k blocks plus the head.

Hyperparameters: ``k`` (default 3).
"""
from __future__ import annotations

from typing import ClassVar

from torch import nn

from baselines._common import Frozen
from spottune.backbones.base import Backbone
from spottune.hparams import HParam, integer
from spottune.method_contract import Method, register_method


@register_method("finetune_last_k")
class FinetuneLastK(Method):
    """Frozen stem and first blocks, fine-tuned last ``k`` blocks and head."""

    hparams: ClassVar[dict[str, HParam]] = {
        "k": HParam(3, integer(0), "blocks fine-tuned, counted from the top (at most the backbone's)")}

    def build(self, backbone: Backbone, num_classes: int) -> nn.Module:
        k = int(self.hp["k"])
        if not 0 <= k <= backbone.num_blocks:
            raise ValueError(f"k must be between 0 and {backbone.num_blocks} for {backbone.arch}, got {k}")
        model = backbone.for_task(num_classes)
        model.stem = Frozen(model.stem)
        first = backbone.num_blocks - k
        model.blocks = nn.ModuleList([Frozen(b) if t < first else b for t, b in enumerate(model.blocks)])
        return model
