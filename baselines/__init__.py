"""The baselines SpotTune is compared with, one module each; importing registers them: the
2019 ones on ResNets and the parameter-efficient (PEFT) ones on ViTs (BitFit, VPT, adapters,
AdaptFormer, SSF, LoRA; the linear probe is ``feature_extractor``, full fine-tuning ``finetune``),
and SpotTune's successor TAPS (per-task layer selection) on both.

``spottune`` and ``spottune_global`` live in :mod:`spottune.routing.methods`; every method
registers through :mod:`spottune.method_contract` and :mod:`spottune.methods` imports them all; shared
network surgery (freezing, module replacement, initialisation) in :mod:`baselines._common`, the
base of the ViT PEFT methods (frozen ViT, new classifier per ``head_init``) in
:mod:`baselines._peft`, the adapters' bottleneck in :mod:`baselines._bottleneck`.
"""
from baselines import (  # noqa: F401  (imported for their registrations)
    adaptformer,
    bitfit,
    bn_adapt,
    feature_extractor,
    finetune,
    finetune_last_k,
    houlsby_adapter,
    l2sp,
    lora,
    lwf,
    mlp_adapter,
    piggyback,
    progressive,
    random_policy,
    residual_adapters,
    ssf,
    stochastic_finetune,
    taps,
    vpt,
)
