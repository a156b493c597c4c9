"""Houlsby adapters (Houlsby, Giurgiu, Jastrzebski, Morrone, de Laroussilhe, Gesmundo,
Attariyan, Gelly, ICML 2019, "Parameter-efficient transfer learning for NLP"; official code
google-research/adapter-bert), on the blocks of a ViT: ``adapter_houlsby``, kept beside
``adapter`` (the published Adapter row's single adapter, :mod:`baselines.mlp_adapter`).

Two bottleneck adapters per transformer block, in series after each sub-layer's output and
before its residual addition (:mod:`baselines._bottleneck`, ``r`` hidden units)::

    x' = x  + A_1(Attn(LN_1(x))),      y = x' + A_2(MLP(LN_2(x'))),      A(h) = h + B(h)

The pretrained weights are frozen; the adapters, every LayerNorm (Houlsby et al. train them
too: adapter-bert ``run_classifier.py`` trains the collections ``adapters``, ``layer_norm``
and ``head``, ``optimization.py`` lines 71-73) and the new classifier train. Initialisation as
adapter-bert's ``feedforward_adapter`` (``modeling.py`` lines 321-350): weights from a normal
of std ``init_scale = 1e-3`` truncated at 2 std, biases zero; GELU (adapter-bert's, and the
ViT's own non-linearity); bottleneck sizes in the paper {8, 64, 256}. adapter-bert exempts
the LayerNorms and biases from weight decay (``optimization.py`` line 66: the vtab1k and fgvc
presets' ``weight_decay_exempt: 1d``). Task-specific parameters: adapters, LayerNorms,
classifier (0.35 M on ViT-B/16 at bottleneck 8, plus the classifier).

Hyperparameters: ``bottleneck`` 8 (the smallest size of the paper's search), ``head_init``.
"""
from __future__ import annotations

from typing import ClassVar

from torch import nn

from baselines._bottleneck import Bottleneck, ResidualBottleneck
from baselines._peft import FrozenViTMethod
from spottune.backbones.base import Backbone
from spottune.hparams import HParam, integer
from spottune.method_contract import register_method


@register_method("adapter_houlsby")
class HoulsbyAdapter(FrozenViTMethod):
    """Frozen ViT, two series bottleneck adapters per block, LayerNorms and classifier train."""

    hparams: ClassVar[dict[str, HParam]] = {**FrozenViTMethod.hparams,
                                            "bottleneck": HParam(8, integer(1), "hidden width of each adapter")}

    def build(self, backbone: Backbone, num_classes: int) -> nn.Module:
        model = self.frozen(backbone, num_classes)
        dim, hidden = model.feature_dim, int(self.hp["bottleneck"])
        for block in model.blocks:  # ls1 / ls2 follow the attention and the MLP (identities without layer scale)
            block.ls1 = ResidualBottleneck(block.ls1, Bottleneck(dim, hidden, nn.GELU, init="houlsby"))
            block.ls2 = ResidualBottleneck(block.ls2, Bottleneck(dim, hidden, nn.GELU, init="houlsby"))
        for module in model.modules():
            if isinstance(module, nn.LayerNorm):
                module.requires_grad_(True)
        return model
