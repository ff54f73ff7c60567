"""The image and text towers of any open_clip model (optional extra: ``[open_clip]``).

``--image-encoder open_clip:<model>`` / ``--text-encoder open_clip:<model>``
build ``open_clip.create_model(model, pretrained=None,
force_custom_text=True, force_image_size=image_size)`` and keep one tower:
``model.visual`` (image) or ``model.text`` (text, with open_clip's tokenizer
for that model). Random initialisation, nothing downloaded; weights come from
``weights_path`` (``--image-weights`` / ``--text-weights``): the tower's own
``state_dict()`` or a whole open_clip checkpoint (``visual.*`` keys are picked
for the image tower; the text keys of a standard CLIP checkpoint are mapped to
the tower with open_clip's ``convert_to_custom_text_state_dict``).

Features: global = the tower's output (after its projection: ``embed_dim``
of the model); local = the tower's tokens (``output_tokens=True``): ViT patch
tokens (image) or token features after ``ln_final`` (text, mask False at
padding). Towers without tokens (ModifiedResNet, timm trunks) give global
features only.

Example:
    >>> enc = OpenCLIPImageEncoder("ViT-B-32", image_size=32)  # doctest: +SKIP
    >>> enc(torch.randn(2, 3, 32, 32)).shape                   # doctest: +SKIP
    torch.Size([2, 512])
"""

from __future__ import annotations

import inspect
import os
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from ..api import Encoder
from .text import check_texts
from .weights import load_weights

__all__ = ["OpenCLIPImageEncoder", "OpenCLIPTextEncoder", "import_open_clip"]


def import_open_clip() -> Any:
    """``import open_clip`` offline, or an ``ImportError`` naming the extra to install."""
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
    try:
        import open_clip
    except ImportError as exc:
        raise ImportError(
            "open_clip encoders need the package open-clip-torch: "
            "pip install 'lightly-mm-plugins[open_clip]'"
        ) from exc
    return open_clip


def check_open_clip_name(name: str) -> dict[str, Any]:
    """The configuration of open_clip architecture ``name``, or a ``ValueError`` saying why
    it cannot be built offline."""
    open_clip = import_open_clip()
    if not name:
        raise ValueError("open_clip encoder: give a model name, e.g. open_clip:ViT-B-32")
    if name.startswith(("hf-hub:", "local-dir:")) or "/" in name:
        raise ValueError(
            f"open_clip model {name!r} names downloadable weights; nothing is downloaded: use "
            "an architecture name (open_clip.list_models()) and pass the weights with "
            "--image-weights / --text-weights PATH"
        )
    config = open_clip.get_model_config(name)
    if config is None:
        import difflib

        close = difflib.get_close_matches(name, open_clip.list_models(), n=5, cutoff=0.6)
        raise ValueError(
            f"unknown open_clip model {name!r}"
            + (f"; did you mean {', '.join(close)}?" if close else "")
            + " (open_clip.list_models() lists the architectures; a pretrained tag is not a "
            "model: pass its weights file instead)"
        )
    return dict(config)


def _build(name: str, image_size: int | None) -> tuple[Any, dict[str, Any]]:
    """The whole open_clip model (random init) and its configuration."""
    open_clip = import_open_clip()
    config = check_open_clip_name(name)
    kwargs: dict[str, Any] = {"force_custom_text": True}
    if "load_weights" in inspect.signature(open_clip.create_model).parameters:
        kwargs["load_weights"] = False  # random init on purpose: no "no weights" warning
    if image_size is not None:
        kwargs["force_image_size"] = image_size
    try:
        model = open_clip.create_model(name, pretrained=None, **kwargs)
    except Exception as exc:  # e.g. a timm / HF text trunk that wants a download
        raise ValueError(
            f"open_clip model {name!r} cannot be built offline ({type(exc).__name__}: {exc}); "
            "its towers need files that would be downloaded"
        ) from exc
    return model, config


class OpenCLIPImageEncoder(Encoder):
    """``model.visual`` of open_clip model ``name`` (see the module docstring)."""

    def __init__(
        self, name: str, image_size: int = 224, weights_path: str | Path | None = None
    ) -> None:
        super().__init__()
        model, config = _build(name, image_size)
        self.name = name
        self.tower: Any = model.visual
        self.feature_dim = int(config["embed_dim"])
        self.supports_local = hasattr(self.tower, "output_tokens")
        self.local_dim = int(config["vision_cfg"].get("width", 0)) if self.supports_local else 0
        if weights_path is not None:
            load_weights(
                self.tower,
                weights_path,
                what=f"open_clip image tower {name!r}",
                prefixes=("visual.", "module.visual.", "tower."),
            )

    def forward(self, x: Tensor) -> Tensor:
        """Projected image features ``(N, embed_dim)``."""
        out = self.tower(x)
        return out[0] if isinstance(out, tuple) else out  # type: ignore[no-any-return]

    def forward_local(self, x: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        """``(global (N, D), patch tokens (N, L, width), mask all True)``."""
        if not self.supports_local:
            return super().forward_local(x)
        self.tower.output_tokens = True
        try:
            glob, tokens = self.tower(x)
        finally:
            self.tower.output_tokens = False
        mask = torch.ones(tokens.shape[:2], dtype=torch.bool, device=tokens.device)
        return glob, tokens, mask


class OpenCLIPTextEncoder(Encoder):
    """``model.text`` of open_clip model ``name`` with its tokenizer (trainable by default).

    Args:
        name: An open_clip architecture name.
        trainable: Train the tower (True) or freeze it (False: no gradient,
            eval mode, ``no_grad``).
        weights_path: Optional weights file (see the module docstring).
    """

    supports_local = True

    def __init__(
        self, name: str, trainable: bool = True, weights_path: str | Path | None = None
    ) -> None:
        super().__init__()
        open_clip = import_open_clip()
        model, config = _build(name, None)
        try:
            self.tokenizer = open_clip.get_tokenizer(name)
        except Exception as exc:
            raise ValueError(
                f"open_clip model {name!r}: its tokenizer cannot be loaded offline ({exc})"
            ) from exc
        self.name = name
        self.tower: Any = model.text
        self.feature_dim = int(config["embed_dim"])
        self.local_dim = int(config["text_cfg"].get("width", 0))
        self.pad_id = int(getattr(self.tower, "pad_id", 0) or 0)
        self.trainable = bool(trainable)
        if weights_path is not None:
            from open_clip.model import convert_to_custom_text_state_dict

            load_weights(
                self.tower,
                weights_path,
                what=f"open_clip text tower {name!r}",
                prefixes=("text.", "module.text.", "tower."),
                convert=convert_to_custom_text_state_dict,
            )
        for p in self.tower.parameters():
            p.requires_grad_(self.trainable)
        self.train(self.training)

    def train(self, mode: bool = True) -> OpenCLIPTextEncoder:
        """A frozen tower stays in eval mode whatever ``mode`` says."""
        super().train(mode and self.trainable)
        return self

    def _tokens(self, texts: Any) -> Tensor:
        ids = self.tokenizer(check_texts(texts))
        return ids.to(next(self.tower.parameters()).device)  # type: ignore[no-any-return]

    def forward(self, texts: list[str]) -> Tensor:
        """Projected sentence features ``(N, embed_dim)``."""
        ids = self._tokens(texts)
        with torch.set_grad_enabled(self.trainable and torch.is_grad_enabled()):
            out = self.tower(ids)
        return out[0] if isinstance(out, tuple) else out  # type: ignore[no-any-return]

    def forward_local(self, texts: list[str]) -> tuple[Tensor, Tensor, Tensor]:
        """``(global (N, D), token features (N, L, width), mask (N, L) False at padding)``."""
        ids = self._tokens(texts)
        self.tower.output_tokens = True
        try:
            with torch.set_grad_enabled(self.trainable and torch.is_grad_enabled()):
                glob, tokens = self.tower(ids)
        finally:
            self.tower.output_tokens = False
        mask = ids[:, : tokens.shape[1]] != self.pad_id
        keep = int(mask.sum(1).max())  # drop the padding every caption has
        return glob, tokens[:, :keep], mask[:, :keep]
