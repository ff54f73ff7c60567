"""CLIP-style symmetric cross-modal InfoNCE: the baseline every method is compared to.

``import lightly_mm_clip.plugin`` (what discovery imports) must not import torch,
so the loss and objective load lazily on attribute access.
"""

from __future__ import annotations

from typing import Any

__all__ = ["CLIPLoss", "CLIPObjective", "CLIPView"]


def __getattr__(name: str) -> Any:
    if name == "CLIPLoss":
        from .loss import CLIPLoss

        return CLIPLoss
    if name == "CLIPObjective":
        from .objective import CLIPObjective

        return CLIPObjective
    if name == "CLIPView":
        from .views import CLIPView

        return CLIPView
    raise AttributeError(name)
