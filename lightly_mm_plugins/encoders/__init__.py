"""Modality encoders: image (torchvision), text (sentence-transformers), vector (MLP).

:func:`build_encoder` is the one entry point the pipeline uses: it picks the
encoder class by modality *kind* and a *name* (default per kind:
``small-resnet`` for images, ``minilm`` for text, ``mlp`` for vectors).
Every encoder is an :class:`lightly_mm_plugins.api.Encoder`: ``forward`` gives
``(N, feature_dim)``; image and text encoders also give local features
(``supports_local``). Nothing is ever downloaded.

Example:
    >>> enc = build_encoder("vector", input_dim=10)
    >>> enc.feature_dim
    128
    >>> build_encoder("image", "small-resnet").feature_dim
    256
"""

from __future__ import annotations

from typing import Any

from ..api import Encoder

__all__ = ["DEFAULT_ENCODERS", "ENCODER_NAMES", "build_encoder"]

#: Modality kind -> the encoder names :func:`build_encoder` knows (text also
#: takes the path of a local sentence-transformers model folder).
ENCODER_NAMES: dict[str, tuple[str, ...]] = {
    "image": ("small-resnet", "resnet18", "resnet50", "vit"),
    "text": ("minilm",),
    "vector": ("mlp",),
}

#: Modality kind -> the encoder used when no name is given.
DEFAULT_ENCODERS: dict[str, str] = {"image": "small-resnet", "text": "minilm", "vector": "mlp"}


def build_encoder(kind: str, name: str | None = None, **kwargs: Any) -> Encoder:
    """Build encoder ``name`` (default per kind) for a modality of ``kind``.

    Args:
        kind: ``image``, ``text`` or ``vector``.
        name: One of ``ENCODER_NAMES[kind]`` (text: or a local model folder);
            None picks ``DEFAULT_ENCODERS[kind]``.
        **kwargs: Passed to the encoder: ``image_size``, ``weights_path``,
            ``width`` ... (:class:`~.image.ImageEncoder`); ``trainable``,
            ``max_seq_length`` (:class:`~.text.TextEncoder`); ``input_dim``
            (required), ``hidden_dim``, ``output_dim``, ``num_layers``
            (:class:`~.vector.VectorEncoder`).

    Raises:
        ValueError: unknown kind or name (the message lists the known ones), or
            a missing ``input_dim`` for vectors.
    """
    if kind not in ENCODER_NAMES:
        raise ValueError(f"unknown modality kind {kind!r}; use one of {', '.join(ENCODER_NAMES)}")
    name = name or DEFAULT_ENCODERS[kind]
    if kind == "image":
        if name not in ENCODER_NAMES["image"]:
            raise ValueError(
                f"unknown image encoder {name!r}; available: {', '.join(ENCODER_NAMES['image'])}"
            )
        from .image import ImageEncoder

        return ImageEncoder(name, **kwargs)
    if kind == "text":
        from .text import TextEncoder

        return TextEncoder(name, **kwargs)  # validates name (known or a local folder)
    if name not in ENCODER_NAMES["vector"]:
        raise ValueError(
            f"unknown vector encoder {name!r}; available: {', '.join(ENCODER_NAMES['vector'])}"
        )
    if "input_dim" not in kwargs:
        raise ValueError("the vector encoder needs input_dim=<size of the input vectors>")
    from .vector import VectorEncoder

    return VectorEncoder(**kwargs)
