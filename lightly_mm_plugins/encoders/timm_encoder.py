"""Image encoders from any ``timm.create_model`` name (optional extra: ``[timm]``).

``--image-encoder timm:<name>`` builds ``timm.create_model(name,
pretrained=False, num_classes=0)``: random initialisation, nothing
downloaded; weights come from ``weights_path`` (``--image-weights``), a
safetensors file or a ``weights_only`` state dict of the same timm model (a
timm checkpoint with its classifier keys is accepted: the head is dropped).

Features follow timm's own split of the forward pass:

* global ``(N, D)``: ``forward_head(forward_features(x), pre_logits=True)``,
  the model's pooled representation (average pooling for CNNs, the class
  token or average of patch tokens for ViTs); ``D = head_hidden_size``
  (``num_features`` for older timm).
* local ``(N, L, C)``: the ``forward_features`` map: the ``H'*W'`` cells of a
  CNN's last stage (NCHW or NHWC) or a ViT's patch tokens without its prefix
  (class / register) tokens; mask all True.

ViT-style models are rebuilt for the run's image size (``img_size=``), so
32-pixel images work with a patch-16 ViT's configuration (4 patches).

Example:
    >>> enc = TimmEncoder("test_resnet")                    # doctest: +SKIP
    >>> g, cells, mask = enc.forward_local(torch.randn(2, 3, 32, 32))  # doctest: +SKIP
    >>> g.shape, cells.shape                                # doctest: +SKIP
    (torch.Size([2, 96]), torch.Size([2, 1, 96]))
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from ..api import Encoder
from .weights import load_weights

__all__ = ["TimmEncoder", "check_timm_name", "import_timm"]


def import_timm() -> Any:
    """``import timm`` offline, or an ``ImportError`` naming the extra to install."""
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    try:
        import timm
    except ImportError as exc:
        raise ImportError(
            "timm encoders need the package timm: pip install 'lightly-mm-plugins[timm]'"
        ) from exc
    return timm


def check_timm_name(name: str) -> str:
    """The timm architecture of ``name``, or a ``ValueError`` saying why it cannot be built
    offline (a hub name) or does not exist (with close names)."""
    timm = import_timm()
    if not name:
        raise ValueError("timm encoder: give a model name, e.g. timm:resnet18")
    if name.startswith(("hf-hub:", "hf_hub:", "local-dir:")):
        raise ValueError(
            f"timm model {name!r} would be downloaded from the Hugging Face Hub; nothing is "
            "downloaded: use the architecture name (e.g. timm:vit_small_patch16_224) and pass "
            "its weights with --image-weights PATH"
        )
    arch = name.split(".")[0]  # a pretrained tag (resnet18.a1_in1k) names weights only
    if not timm.is_model(arch):
        import difflib

        close = difflib.get_close_matches(arch, timm.list_models(), n=5, cutoff=0.6)
        raise ValueError(
            f"unknown timm model {arch!r}"
            + (f"; did you mean {', '.join(close)}?" if close else "")
            + " (timm.list_models() lists them)"
        )
    return str(arch)


class TimmEncoder(Encoder):
    """A ``timm`` backbone with global and local features (see the module docstring).

    Args:
        name: Any ``timm.list_models()`` name (no ``hf-hub:`` names: those would
            be downloaded).
        image_size: Input side length (ViT-style models are built for it).
        weights_path: Optional weights file of the same model.
        **kwargs: Passed to ``timm.create_model`` (e.g. ``drop_path_rate=0.1``).
    """

    supports_local = True

    def __init__(
        self,
        name: str,
        image_size: int = 224,
        weights_path: str | Path | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__()
        timm = import_timm()
        arch = check_timm_name(name)
        args = dict(pretrained=False, num_classes=0, **kwargs)
        model = timm.create_model(arch, **args)
        default_size = getattr(getattr(model, "patch_embed", None), "img_size", None)
        if default_size is not None and tuple(default_size) != (image_size, image_size):
            model = timm.create_model(arch, img_size=image_size, **args)
        self.name = name
        self.image_size = int(image_size)
        self.backbone: Any = model
        self.num_prefix_tokens = int(getattr(model, "num_prefix_tokens", 0) or 0)
        self.local_dim = int(model.num_features)
        self.feature_dim = int(getattr(model, "head_hidden_size", None) or model.num_features)
        if weights_path is not None:
            load_weights(
                model,
                weights_path,
                what=f"timm model {arch!r}",
                prefixes=("backbone.", "module.", "model."),
                convert=lambda state: _drop_classifier(model, state),
            )

    def forward(self, x: Tensor) -> Tensor:
        """Global features ``(N, feature_dim)`` of images ``(N, 3, H, W)``."""
        return self.backbone(x)  # type: ignore[no-any-return]

    def forward_local(self, x: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        """``(global (N, D), local (N, L, C), mask (N, L) all True)`` from one pass."""
        feats = self.backbone.forward_features(x)
        glob = self.backbone.forward_head(feats, pre_logits=True)
        if feats.dim() == 4:
            # NCHW (most CNNs) or NHWC (e.g. Swin): the channel axis has local_dim entries.
            if feats.shape[1] == self.local_dim:
                local = feats.flatten(2).transpose(1, 2)
            else:
                local = feats.flatten(1, 2)
        elif feats.dim() == 3:
            local = feats[:, self.num_prefix_tokens :]
        else:
            raise NotImplementedError(
                f"timm model {self.name!r}: forward_features gave shape {tuple(feats.shape)}; "
                "no local features"
            )
        mask = torch.ones(local.shape[:2], dtype=torch.bool, device=local.device)
        return glob, local, mask


def _drop_classifier(model: Any, state: dict[str, Tensor]) -> dict[str, Tensor]:
    """Drop a checkpoint's classifier weights (the encoder is built with ``num_classes=0``)."""
    own = set(model.state_dict())
    names = getattr(model, "pretrained_cfg", None) or {}
    classifier = names.get("classifier", "head") if isinstance(names, dict) else "head"
    heads = (classifier,) if isinstance(classifier, str) else tuple(classifier)
    return {
        k: v for k, v in state.items() if k in own or not any(k.startswith(h + ".") for h in heads)
    }
