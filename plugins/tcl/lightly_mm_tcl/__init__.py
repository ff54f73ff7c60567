"""lightly-mm-tcl: Triple Contrastive Learning (Yang et al., CVPR 2022) as a plugin.

Attributes are imported lazily so that loading the plugin (``plugin.py``)
does not import torch.
"""

from __future__ import annotations

from lightly_mm_plugins.lazy import lazy_getattr

__all__ = [
    "CrossModalAlignmentLoss",
    "FeatureQueue",
    "IntraModalContrastLoss",
    "LocalMutualInfoLoss",
    "TCLLoss",
    "TCLObjective",
    "TCLView",
]

_WHERE = {
    "CrossModalAlignmentLoss": "loss",
    "IntraModalContrastLoss": "loss",
    "LocalMutualInfoLoss": "loss",
    "TCLLoss": "loss",
    "FeatureQueue": "lightly_mm_plugins.queue",
    "TCLObjective": "objective",
    "TCLView": "views",
}

__getattr__ = lazy_getattr(__name__, _WHERE)
