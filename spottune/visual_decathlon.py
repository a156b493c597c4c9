"""The Visual Decathlon (Rebuffi, Bilen, Vedaldi 2017): its domains, the Finetune baseline and the score
the evaluation server computes. Constants and numpy only, so that the data loaders, the submission
writer and the report share them without loading each other.

The score: for each domain d, with test top-1 accuracy ``acc_d`` and the baseline's ``base_d`` (both as
fractions here; the functions take percent):

    E_d    = 1 - acc_d                   (test error)
    Emax_d = 2 * (1 - base_d)            (twice the baseline's error)
    S_d    = 1000 * max(0, 1 - E_d / Emax_d) ** 2
    S      = sum_d S_d

A perfect domain scores 1000, matching the baseline scores 250, an error at or beyond twice
the baseline's scores 0; ten domains give at most 10 000. The built-in baseline is the
"Finetune" row of Rebuffi et al. 2017: that row scores exactly 2500. Another
baseline (e.g. a preset's own fine-tuning runs) may be passed; its keys are then the domains
scored. A perfect baseline (``Emax_d = 0``) is the limit of the formula: 1000 for a perfect
result, else 0.
"""
from __future__ import annotations

from collections.abc import Mapping

import numpy as np

DOMAINS = ("aircraft", "cifar100", "daimlerpedcls", "dtd", "gtsrb", "imagenet12", "omniglot",
           "svhn", "ucf101", "vgg-flowers")
"""The ten devkit domain names, in the devkit's (alphabetical) order."""

SOURCE_DOMAIN = "imagenet12"
"""The domain the shared network is pretrained on; the other nine are target tasks."""

FINETUNE_BASELINE = {"imagenet12": 59.87, "aircraft": 60.34, "cifar100": 82.12,
                     "daimlerpedcls": 92.82, "dtd": 55.53, "gtsrb": 97.53, "vgg-flowers": 81.41,
                     "omniglot": 87.69, "svhn": 96.55, "ucf101": 51.20}
"""Rebuffi et al. 2017, "Finetune" test accuracies (%), the score's reference point."""

MAX_DOMAIN_SCORE = 1000.0
SCORE_FORMULA = "S = Σ_d 1000·max(0, 1 − E_d / (2·E_d^base))²"
"""The score as the tables' footnotes print it (E: test error; see the module docstring)."""


def domain_score(accuracy: float | np.ndarray, baseline: float) -> float | np.ndarray:
    """``S_d`` for one domain from accuracies in percent (see the module docstring);
    elementwise for an array of accuracies."""
    error, max_error = 1 - np.asarray(accuracy, dtype=float) / 100, 2 * (1 - baseline / 100)
    if max_error <= 0:
        return np.where(error <= 0, MAX_DOMAIN_SCORE, 0.0)[()]
    return MAX_DOMAIN_SCORE * np.maximum(0.0, 1 - error / max_error)[()] ** 2


def decathlon_score(accuracies: Mapping[str, float | np.ndarray], per_domain: bool = False,
                    baseline: Mapping[str, float] | None = None, allow_partial: bool = False
                    ) -> float | np.ndarray | dict[str, float | np.ndarray]:
    """The Decathlon score of ``accuracies`` (domain -> top-1 accuracy in percent).

    ``baseline`` defaults to :data:`FINETUNE_BASELINE`; its keys are the domains scored.
    Accuracies may be arrays of one shape (scores elementwise).
    Returns the total ``S``, or ``{domain: S_d}`` for the domains present with
    ``per_domain=True``. A domain of the baseline missing from ``accuracies`` raises
    ``ValueError`` naming it, unless ``allow_partial`` (then the sum is over the domains
    present). A domain unknown to the baseline raises ``ValueError``: it cannot be scored.
    """
    reference = FINETUNE_BASELINE if baseline is None else baseline
    unknown = sorted(set(accuracies) - set(reference))
    if unknown:
        raise ValueError(f"no baseline accuracy for {unknown}; known domains: {sorted(reference)}")
    missing = sorted(set(reference) - set(accuracies))
    if missing and not allow_partial:
        raise ValueError(f"accuracies missing for domains {missing} "
                         "(pass allow_partial=True to score the others)")
    scores = {domain: domain_score(accuracies[domain], reference[domain])
              for domain in reference if domain in accuracies}
    return scores if per_domain else sum(scores.values())


def parameter_cost(task_specific: float, backbone: float, target_tasks: int) -> float:
    """The Decathlon ``#par``: total parameters for all tasks, in units of one backbone.

    One shared pretrained network serves the source task and each of the ``target_tasks``
    new tasks adds ``task_specific`` parameters (mean over tasks; classifiers differ in size):
    ``#par = 1 + target_tasks * task_specific / backbone``. On the Decathlon the source is
    ``imagenet12`` and the nine other domains are the targets, so plain fine-tuning (a whole
    new network per task) costs about 10, a feature extractor about 1 and SpotTune (a
    fine-tuned copy plus a policy network per task) about 11.
    """
    return 1 + target_tasks * task_specific / backbone
