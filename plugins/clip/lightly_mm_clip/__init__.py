"""CLIP-style symmetric cross-modal InfoNCE: the baseline every method is compared to."""

from .loss import CLIPLoss

__all__ = ["CLIPLoss"]
