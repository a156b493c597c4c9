"""BN adaptation: frozen convolutions, task-specific BatchNorm and classifier.

Bilen & Vedaldi 2017 ("Universal representations: the missing link between faces, text,
planktons, and cat breeds"), the "BN adapt." row of the Visual Decathlon tables of Rebuffi et
al. 2017 and SpotTune (Guo et al. 2019; Decathlon #par 1). For every BatchNorm layer ``l``::

    BN_l(x) = gamma_l * (x - mu_l) / sqrt(sigma_l^2 + eps) + beta_l

``gamma_l``, ``beta_l`` and the running statistics ``mu_l``, ``sigma_l^2`` become
task-specific (trained / re-estimated on the target task); every convolution weight keeps its
pretrained value; the classifier is new. Task-specific parameters: all BN affine parameters
plus the classifier (Guo et al. 2019, Sec. 4).

Hyperparameters: none of its own. Protocol as the preset's fine-tuning (Rebuffi et al. 2017
trained BN-adapt like the adapters: SGD 0.9, lr 0.1, 120 epochs, x0.1 at 80 and 100).
"""
from __future__ import annotations

from torch import nn

from baselines._common import freeze_convs_
from spottune.backbones.base import Backbone
from spottune.method_contract import Method, register_method


@register_method("bn_adapt")
class BNAdapt(Method):
    """Train only BatchNorm (affine + statistics) and the new classifier."""

    families = ("cnn", "mbconv")  # BatchNorm layers: a ViT has none

    def build(self, backbone: Backbone, num_classes: int) -> nn.Module:
        return freeze_convs_(backbone.for_task(num_classes))
