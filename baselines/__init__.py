"""The baselines SpotTune is compared with, one module each; importing registers them.

``finetune``, ``spottune`` and ``spottune_global`` live in :mod:`spottune.methods`; shared
network surgery (freezing, module replacement, initialisation) in :mod:`baselines._common`.
"""
from baselines import (  # noqa: F401  (imported for their registrations)
    bn_adapt,
    feature_extractor,
    finetune_last_k,
    l2sp,
    lwf,
    piggyback,
    progressive,
    random_policy,
    residual_adapters,
    stochastic_finetune,
)
