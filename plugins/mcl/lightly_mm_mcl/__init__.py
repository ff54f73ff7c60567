"""MCL: multi-stage contrastive learning against feature suppression (Zhang et al., 2024).

``import lightly_mm_mcl.plugin`` (what discovery imports) must not import torch,
so the scheduler, the objective wrapper and the clustering helpers load lazily
on attribute access.
"""

from __future__ import annotations

from lightly_mm_plugins.lazy import lazy_getattr

__all__ = [
    "MCLObjective",
    "MCLScheduler",
    "MCLStages",
    "combine_pseudo_labels",
    "group_batches",
    "kmeans_labels",
]

_WHERE = {
    "MCLObjective": "objective",
    "MCLScheduler": "scheduler",
    "MCLStages": "callback",
    "combine_pseudo_labels": "scheduler",
    "group_batches": "scheduler",
    "kmeans_labels": "clustering",
}

__getattr__ = lazy_getattr(__name__, _WHERE)
