"""lightly-mm-cct: Contrastive Conditional Transport / CACR (Zheng et al.) as a plugin.

Attributes are imported lazily so that loading the plugin (``plugin.py``,
what discovery imports) does not import torch.
"""

from __future__ import annotations

from lightly_mm_plugins.lazy import lazy_getattr

__all__ = ["CCTLoss", "CCTObjective", "CCTView", "cct_image_transform"]

_WHERE = {
    "CCTLoss": "loss",
    "CCTObjective": "objective",
    "CCTView": "views",
    "cct_image_transform": "views",
}

__getattr__ = lazy_getattr(__name__, _WHERE)
