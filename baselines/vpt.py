"""Visual Prompt Tuning, shallow and deep (Jia, Tang, Chen, Cardie, Belongie, Hariharan,
Lim, ECCV 2022; official code KMnP/vpt).

``p`` learnable prompt tokens of the model's width are inserted after the class token; the
pretrained ViT is frozen and the classifier is new. With ``E_0`` the patch embeddings and
``L_i`` the i-th transformer block (Eq. 5-7 of the paper)::

    VPT-shallow:  [x_1, Z_1, E_1] = L_1([x_0, P, E_0]),        [x_i, Z_i, E_i] = L_i([x_{i-1}, Z_{i-1}, E_{i-1}])
    VPT-deep:     [x_i, _, E_i]   = L_i([x_{i-1}, P_{i-1}, E_{i-1}])   for every block i

so shallow prompts enter once and travel through the blocks, deep prompts are new tokens at
every block (the previous block's prompt outputs are dropped). The head reads the class token.

As the official code: prompts initialised uniformly in ``[-v, v]`` with
``v = sqrt(6 / (3 * patch^2 + dim))`` (Xavier uniform over the patch projection's fan-in and
the width; ``src/models/vit_prompt/vit.py`` lines 57-62), dropout on the prompts
(``prompt_dropout``): 0.0 for VPT-shallow (``src/configs/config.py`` line 74,
``_C.MODEL.PROMPT.DROPOUT = 0.0``), 0.1 for VPT-deep (the value of VPT's deep-prompt VTAB runs,
REFERENCE.md section 5), prompt length searched per task in {1, 5, 10, 50, 100, 200}
(``num_prompts``, default 10; the vtab1k and fgvc presets search it), the classifier
initialised as VPT's head (``head_init: vpt``: ``src/models/mlp.py`` lines 53-57 with
``special_bias=True`` from ``src/models/vit_models.py`` lines 160-165), SGD with momentum
0.9, a cosine schedule with 10 warm-up epochs over 100 epochs, batch 128
(``configs/base-prompt.yaml``; CUB: lr 0.1, weight decay 0.01).
Task-specific parameters: the prompts (``p x dim``, times the depth for deep) and the classifier.

Hyperparameters: ``num_prompts`` 10, ``prompt_dropout`` (0.0 shallow, 0.1 deep), ``head_init`` vpt.
"""
from __future__ import annotations

import math
from typing import ClassVar

import torch
from torch import nn

from baselines._peft import FrozenViTMethod
from spottune.backbones.base import Backbone
from spottune.hparams import FRACTION, HParam, integer, with_defaults
from spottune.method_contract import register_method


def new_prompts(count: int, num_prompts: int, dim: int, patch_size: int) -> nn.Parameter:
    """``(count, num_prompts, dim)`` prompt tokens, uniform in ``[-v, v]`` as VPT's code."""
    bound = math.sqrt(6.0 / (3 * patch_size ** 2 + dim))
    return nn.Parameter(torch.empty(count, num_prompts, dim).uniform_(-bound, bound))


def with_prompts(tokens: torch.Tensor, prompts: torch.Tensor, replace: int) -> torch.Tensor:
    """``[cls, prompts, tokens[1 + replace:]]``: the prompts after the class token, in place
    of the ``replace`` previous prompt outputs."""
    cls, rest = tokens[:, :1], tokens[:, 1 + replace:]
    return torch.cat([cls, prompts.expand(tokens.shape[0], -1, -1), rest], dim=1)


class PromptedStem(nn.Module):
    """The frozen stem, then the first prompts after the class token."""

    def __init__(self, stem: nn.Module, prompts: nn.Parameter, dropout: float) -> None:
        super().__init__()
        self.stem = stem
        self.prompts = prompts
        self.dropout = nn.Dropout(dropout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return with_prompts(self.stem(x), self.dropout(self.prompts), replace=0)


class DeepPromptedBlock(nn.Module):
    """A frozen block whose input prompts are replaced by this block's own (VPT-deep)."""

    def __init__(self, block: nn.Module, prompts: nn.Parameter, dropout: float) -> None:
        super().__init__()
        self.block = block
        self.prompts = prompts
        self.dropout = nn.Dropout(dropout)

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        prompts = self.dropout(self.prompts)
        return self.block(with_prompts(tokens, prompts, replace=prompts.shape[0]))


class _VPT(FrozenViTMethod):
    hparams: ClassVar[dict[str, HParam]] = {**with_defaults(FrozenViTMethod.hparams, head_init="vpt"),
                                            "num_prompts": HParam(10, integer(1), "prompt tokens per layer"),
                                            "prompt_dropout": HParam(0.0, FRACTION, "dropout on the prompts")}
    deep: ClassVar[bool]

    def build(self, backbone: Backbone, num_classes: int) -> nn.Module:
        model = self.frozen(backbone, num_classes)
        dim = model.stem.pos_embed.shape[-1]
        patch = model.stem.patch_embed.patch_size[0]
        count = model.num_blocks if self.deep else 1
        prompts = new_prompts(count, int(self.hp["num_prompts"]), dim, patch)
        dropout = float(self.hp["prompt_dropout"])
        model.stem = PromptedStem(model.stem, nn.Parameter(prompts.data[0]), dropout)
        if self.deep:
            model.blocks = nn.ModuleList(
                [model.blocks[0]] + [DeepPromptedBlock(block, nn.Parameter(prompts.data[t]), dropout)
                                     for t, block in enumerate(model.blocks) if t > 0])
        return model


@register_method("vpt_shallow")
class VPTShallow(_VPT):
    """VPT-shallow: prompts inserted once, before the first block."""

    hparams: ClassVar[dict[str, HParam]] = _VPT.hparams
    deep = False


@register_method("vpt_deep")
class VPTDeep(_VPT):
    """VPT-deep: new prompts at the input of every block."""

    hparams: ClassVar[dict[str, HParam]] = with_defaults(_VPT.hparams, prompt_dropout=0.1)
    deep = True
