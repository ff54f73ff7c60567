"""Modality encoders: image (torchvision), text (sentence-transformers), vector (MLP).

Example:
    >>> enc = build_encoder("vector", input_dim=10)
    >>> enc.feature_dim
    128
"""

from __future__ import annotations

from typing import Any

from ..api import Encoder

ENCODER_NAMES: dict[str, tuple[str, ...]] = {
    "image": ("small-resnet", "resnet18", "resnet50", "vit"),
    "text": ("minilm",),
    "vector": ("mlp",),
}


def build_encoder(kind: str, name: str | None = None, **kwargs: Any) -> Encoder:
    """Build the encoder ``name`` (default per kind) for a modality of ``kind``."""
    if kind == "image":
        from .image import ImageEncoder

        return ImageEncoder(name or "small-resnet", **kwargs)
    if kind == "text":
        from .text import TextEncoder

        return TextEncoder(name or "minilm", **kwargs)
    if kind == "vector":
        if name not in (None, "mlp"):
            raise ValueError(f"unknown vector encoder {name!r}; available: mlp")
        from .vector import VectorEncoder

        return VectorEncoder(**kwargs)
    raise ValueError(f"unknown modality kind {kind!r}; use one of {', '.join(ENCODER_NAMES)}")


__all__ = ["ENCODER_NAMES", "build_encoder"]
