"""Factories of the host's built-in encoders, registered through ``register_encoders``.

Every encoder factory is called as ``factory(kind=..., model=..., **kwargs)``
(see :func:`lightly_mm_plugins.hookspecs.register_encoders`): ``kind`` is the
modality kind (``image``, ``text``, ``vector``), ``model`` the part after the
colon of ``<name>:<model>`` (or the entry's ``default_model``), and
``kwargs`` what the pipeline knows: ``image_size`` (image), ``trainable``
(text), ``input_dim`` (vector), ``weights_path`` when the user gave one. The
optional back ends (timm, open_clip) are imported here, only when used.
"""

from __future__ import annotations

from typing import Any

from ..api import Encoder

__all__ = [
    "hf_encoder",
    "mlp_encoder",
    "open_clip_encoder",
    "text_encoder",
    "timm_encoder",
    "torchvision_encoder",
]


def torchvision_encoder(
    kind: str, model: str | None = None, image_size: int = 32, **kwargs: Any
) -> Encoder:
    """``small-resnet``, ``resnet18``, ``resnet50``, ``vit`` (:class:`~.image.ImageEncoder`)."""
    from .image import ImageEncoder

    return ImageEncoder(model or "small-resnet", image_size=image_size, **kwargs)


def text_encoder(
    kind: str, model: str | None = None, trainable: bool = False, **kwargs: Any
) -> Encoder:
    """The packaged MiniLM (:class:`~.text.TextEncoder`)."""
    from .text import TextEncoder

    return TextEncoder(model or "minilm", trainable=trainable, **kwargs)


def hf_encoder(
    kind: str, model: str | None = None, trainable: bool = False, **kwargs: Any
) -> Encoder:
    """A local Hugging Face transformers / sentence-transformers folder: ``hf:PATH``."""
    from .text import TextEncoder

    if not model:
        raise ValueError("hf encoder: give the model folder, e.g. hf:/models/my-bert")
    return TextEncoder(model, trainable=trainable, **kwargs)


def timm_encoder(
    kind: str, model: str | None = None, image_size: int = 224, **kwargs: Any
) -> Encoder:
    """``timm:<any timm.create_model name>`` (:class:`~.timm_encoder.TimmEncoder`)."""
    from .timm_encoder import TimmEncoder

    return TimmEncoder(model or "", image_size=image_size, **kwargs)


def open_clip_encoder(
    kind: str,
    model: str | None = None,
    image_size: int = 224,
    trainable: bool = True,
    weights_path: Any = None,
    **kwargs: Any,
) -> Encoder:
    """``open_clip:<model>``: the image tower (image) or the text tower (text)."""
    from .open_clip_towers import OpenCLIPImageEncoder, OpenCLIPTextEncoder

    if kind == "text":
        return OpenCLIPTextEncoder(model or "", trainable=trainable, weights_path=weights_path)
    return OpenCLIPImageEncoder(model or "", image_size=image_size, weights_path=weights_path)


def mlp_encoder(kind: str, model: str | None = None, **kwargs: Any) -> Encoder:
    """FactorCL's MLP for vector modalities (:class:`~.vector.VectorEncoder`)."""
    from .vector import VectorEncoder

    if "input_dim" not in kwargs:
        raise ValueError("the vector encoder needs input_dim=<size of the input vectors>")
    if kwargs.pop("weights_path", None) is not None:
        raise ValueError("the mlp vector encoder takes no weights file")
    return VectorEncoder(**kwargs)


def check_timm(model: str) -> None:
    """Registered as the ``check`` of ``timm``: the name exists and needs no download."""
    from .timm_encoder import check_timm_name

    check_timm_name(model)


def check_open_clip(model: str) -> None:
    """Registered as the ``check`` of ``open_clip``: a known architecture name."""
    from .open_clip_towers import check_open_clip_name

    check_open_clip_name(model)


def check_hf(model: str) -> None:
    """Registered as the ``check`` of ``hf``: a local model folder."""
    from .text import resolve_model

    resolve_model(model)
