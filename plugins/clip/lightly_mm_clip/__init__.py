"""CLIP-style symmetric cross-modal InfoNCE: the baseline every method is compared to.

``import lightly_mm_clip.plugin`` (what discovery imports) must not import torch,
so the loss and objective load lazily on attribute access.
"""

from __future__ import annotations

from lightly_mm_plugins.lazy import lazy_getattr

__all__ = ["CLIPLoss", "CLIPObjective", "CLIPView"]

__getattr__ = lazy_getattr(
    __name__, {"CLIPLoss": "loss", "CLIPObjective": "objective", "CLIPView": "views"}
)
