"""MCL: multi-stage contrastive learning against feature suppression (Zhang et al., 2024).

``import lightly_mm_mcl.plugin`` (what discovery imports) must not import torch,
so the scheduler, the objective wrapper and the clustering helpers load lazily
on attribute access.
"""

from __future__ import annotations

from typing import Any

__all__ = [
    "MCLObjective",
    "MCLScheduler",
    "combine_pseudo_labels",
    "group_batches",
    "kmeans_labels",
]

_WHERE = {
    "MCLObjective": "objective",
    "MCLScheduler": "scheduler",
    "combine_pseudo_labels": "scheduler",
    "group_batches": "scheduler",
    "kmeans_labels": "clustering",
}


def __getattr__(name: str) -> Any:
    if name in _WHERE:
        import importlib

        module = importlib.import_module(f"{__name__}.{_WHERE[name]}")
        return getattr(module, name)
    raise AttributeError(name)
