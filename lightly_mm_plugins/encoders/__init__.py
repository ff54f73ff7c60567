"""Modality encoders: a registered kind, so any backbone can be used by name.

:func:`build_encoder` is the one entry point the pipeline uses. It resolves an
encoder *spec* through the ``encoders`` registry (hook
:func:`~lightly_mm_plugins.hookspecs.register_encoders`), where the host
registers its built-ins and plugins register more:

* a registered name: ``small-resnet`` (default image), ``resnet18``,
  ``resnet50``, ``vit`` (torchvision), ``minilm`` (default text, offline),
  ``mlp`` (vectors);
* ``<family>:<model>`` for families that take a model name: ``timm:<any
  timm.create_model name>``, ``open_clip:<model>`` (image or text tower),
  ``hf:<local folder>`` (Hugging Face transformers / sentence-transformers),
  ``torchvision:<one of the names above>``;
* for text, the path of a local model folder (as ``hf:PATH``).

Every encoder is an :class:`lightly_mm_plugins.api.Encoder`: ``forward`` gives
``(N, feature_dim)``; most also give local features (``supports_local``).
Nothing is ever downloaded: models start from random weights unless the user
passes ``weights_path`` (safetensors or a ``weights_only`` state dict).

Example:
    >>> enc = build_encoder("vector", input_dim=10)
    >>> enc.feature_dim
    128
    >>> build_encoder("image", "small-resnet").feature_dim
    256
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from ..api import Encoder

__all__ = [
    "DEFAULT_ENCODERS",
    "ENCODER_NAMES",
    "build_encoder",
    "encoder_names",
    "frozen_text_encoder",
    "resolve_encoder",
]

#: Modality kind -> the host's own encoder names (before plugins and families).
ENCODER_NAMES: dict[str, tuple[str, ...]] = {
    "image": ("small-resnet", "resnet18", "resnet50", "vit"),
    "text": ("minilm",),
    "vector": ("mlp",),
}

#: Modality kind -> the encoder used when no name is given.
DEFAULT_ENCODERS: dict[str, str] = {"image": "small-resnet", "text": "minilm", "vector": "mlp"}


def __getattr__(name: str) -> Any:
    if name == "frozen_text_encoder":
        from .text import frozen_text_encoder

        return frozen_text_encoder
    raise AttributeError(name)


def _registry() -> Any:
    from .. import get_host

    return get_host().registry("encoders")


def encoder_names(kind: str) -> list[str]:
    """Registered encoder specs usable for modality ``kind`` (families as ``name:<model>``)."""
    own = ENCODER_NAMES.get(kind, ())
    entries = sorted(
        (e for e in _registry().entries() if kind in e.metadata.get("modalities", ())),
        key=lambda e: (e.name not in own, own.index(e.name) if e.name in own else 0, e.name),
    )
    return [f"{e.name}:<model>" if e.metadata.get("takes_model") else e.name for e in entries]


def resolve_encoder(kind: str, spec: str) -> tuple[Any, str | None]:
    """The registry entry and model name of encoder ``spec`` for a ``kind`` modality.

    Raises ``ValueError`` naming the available encoders (and the fix) for an
    unknown name, a family without a model, or an encoder of another kind; a
    family's ``check`` (entry metadata ``check="module:function"``) validates
    the model name cheaply (an unknown timm model, a name that would need a
    download).
    """
    from ..errors import LightlyMMError

    if kind not in ENCODER_NAMES:
        raise ValueError(f"unknown modality kind {kind!r}; use one of {', '.join(ENCODER_NAMES)}")
    registry = _registry()
    entry: Any = None
    model: str | None = None
    prefix, sep, rest = spec.partition(":")
    try:
        if sep and prefix.strip().lower() in registry:
            entry, model = registry.get(prefix), rest.strip()
        elif spec in registry:
            entry = registry.get(spec)
            model = entry.metadata.get("default_model")
        elif kind == "text" and "hf" in registry and Path(spec).is_dir():
            entry, model = registry.get("hf"), spec
    except LightlyMMError as exc:  # a name clash between two plugins
        raise ValueError(str(exc)) from exc
    available = ", ".join(encoder_names(kind))
    if entry is None:
        extra = " or the path of a local model folder" if kind == "text" else ""
        if "/" in spec and not Path(spec).exists():
            extra += (
                f" ({spec!r} looks like a Hugging Face Hub id or a missing folder: download the "
                "model yourself and pass its folder)"
            )
        raise ValueError(
            f"unknown {kind} encoder {spec!r}; available: {available}{extra}. "
            "Nothing is downloaded."
        )
    if kind not in entry.metadata.get("modalities", ()):
        raise ValueError(
            f"encoder {entry.name!r} encodes {', '.join(entry.metadata.get('modalities', ()))}, "
            f"not {kind}; {kind} encoders: {available}"
        )
    if entry.metadata.get("takes_model") and not model:
        raise ValueError(f"encoder {entry.name!r} needs a model name: {entry.name}:<model>")
    if (
        model
        and not entry.metadata.get("takes_model")
        and model != entry.metadata.get("default_model")
    ):
        raise ValueError(f"encoder {entry.name!r} takes no model name (got {spec!r})")
    check = entry.metadata.get("check")
    if check and model:
        module, _, attr = str(check).partition(":")
        import importlib

        getattr(importlib.import_module(module), attr)(model)
    return entry, model


def build_encoder(kind: str, name: str | None = None, **kwargs: Any) -> Encoder:
    """Build encoder ``name`` (default per kind) for a modality of ``kind``.

    Args:
        kind: ``image``, ``text`` or ``vector``.
        name: An encoder spec (see the module docstring); None picks
            ``DEFAULT_ENCODERS[kind]``.
        **kwargs: Passed to the factory: ``image_size``, ``weights_path``,
            ``width`` ... (images); ``trainable``, ``max_seq_length``,
            ``weights_path`` (text); ``input_dim`` (required), ``hidden_dim``,
            ``output_dim``, ``num_layers`` (vectors).

    Raises:
        ValueError: unknown kind or name (the message lists the known ones),
            a weights file that does not fit, a missing ``input_dim`` for vectors.
        ImportError: an optional back end (timm, open_clip) is not installed
            (the message names the extra).
    """
    if kind not in ENCODER_NAMES:
        raise ValueError(f"unknown modality kind {kind!r}; use one of {', '.join(ENCODER_NAMES)}")
    spec = name or DEFAULT_ENCODERS[kind]
    entry, model = resolve_encoder(kind, spec)
    if kwargs.get("weights_path") is None:
        kwargs.pop("weights_path", None)
    encoder = entry.resolve()(kind=kind, model=model, **kwargs)
    if not isinstance(encoder, Encoder) or int(getattr(encoder, "feature_dim", 0) or 0) < 1:
        raise ValueError(
            f"encoder {entry.name!r} from {entry.distribution} {entry.version} built a "
            f"{type(encoder).__name__} without a positive feature_dim; an encoder factory must "
            "return a lightly_mm_plugins.api.Encoder"
        )
    return encoder
