"""lightly-mm-mxmclr: multifold cross-modal contrastive learning (MXM-CLR) as a plugin.

Attributes are imported lazily so that loading the plugin (``plugin.py``)
does not import torch.
"""

from __future__ import annotations

from lightly_mm_plugins.lazy import lazy_getattr

__all__ = ["MXMCLRLoss", "MXMCLRObjective", "MultifoldView"]

_WHERE = {
    "MXMCLRLoss": "loss",
    "MXMCLRObjective": "objective",
    "MultifoldView": "views",
}

__getattr__ = lazy_getattr(__name__, _WHERE)
