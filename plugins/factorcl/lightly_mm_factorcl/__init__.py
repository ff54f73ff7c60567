"""FactorCL (Liang et al., NeurIPS 2023) for lightly-mm-plugins.

Shared + unique factorized contrastive learning: InfoNCE lower bounds and
NCE-CLUB upper bounds with concat critics, self-supervised (augmentations) and
supervised (labels) variants, the paper's multimodal augmentations and its
synthetic benchmark.

Imports are lazy so that ``import lightly_mm_factorcl`` stays cheap.
"""

from __future__ import annotations

from lightly_mm_plugins.lazy import lazy_getattr

__all__ = [
    "ConcatCritic",
    "FactorCLCleanView",
    "FactorCLObjective",
    "FactorCLSupObjective",
    "FactorCLView",
    "InfoNCEBound",
    "NCECLUBBound",
    "generate_data",
    "synthetic_samples",
    "tiled_pairwise_scores",
]

_LOCATIONS = {
    "ConcatCritic": "critics",
    "tiled_pairwise_scores": "critics",
    "InfoNCEBound": "loss",
    "NCECLUBBound": "loss",
    "FactorCLObjective": "objective",
    "FactorCLSupObjective": "objective",
    "FactorCLView": "views",
    "FactorCLCleanView": "views",
    "generate_data": "synthetic",
    "synthetic_samples": "synthetic",
}

__getattr__ = lazy_getattr(__name__, _LOCATIONS)
