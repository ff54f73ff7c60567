"""Image encoders from torchvision architectures, randomly initialised by default.

No weights are downloaded: architectures start from scratch unless the user
passes ``weights_path`` (a state dict, loaded with ``weights_only=True``).

Example:
    >>> import torch
    >>> enc = ImageEncoder("small-resnet")
    >>> enc(torch.randn(2, 3, 32, 32)).shape
    torch.Size([2, 256])
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from ..api import Encoder

IMAGE_ENCODERS = ("small-resnet", "resnet18", "resnet50", "vit")


def _cifar_stem(model: nn.Module, width: int) -> None:
    """3x3 stride-1 first convolution and no max-pool: keeps small images' detail."""
    model.conv1 = nn.Conv2d(3, width, kernel_size=3, stride=1, padding=1, bias=False)
    model.maxpool = nn.Identity()


def _small_resnet() -> tuple[nn.Module, int]:
    """torchvision's ResNet with one BasicBlock per stage (a ResNet-10) and half width."""
    from torchvision.models.resnet import BasicBlock, ResNet

    model = ResNet(BasicBlock, [1, 1, 1, 1], num_classes=1, width_per_group=64)
    # Halve every stage's width: 32-64-128-256 channels (fast on a CPU).
    widths = [32, 64, 128, 256]
    model.inplanes = widths[0]
    model.conv1 = nn.Conv2d(3, widths[0], 3, 1, 1, bias=False)
    model.bn1 = nn.BatchNorm2d(widths[0])
    model.maxpool = nn.Identity()
    model.layer1 = model._make_layer(BasicBlock, widths[0], 1)
    model.layer2 = model._make_layer(BasicBlock, widths[1], 1, stride=2)
    model.layer3 = model._make_layer(BasicBlock, widths[2], 1, stride=2)
    model.layer4 = model._make_layer(BasicBlock, widths[3], 1, stride=2)
    model.fc = nn.Identity()
    return model, widths[3]


class ImageEncoder(Encoder):
    """A torchvision backbone returning pooled features and, on request, local cells.

    Args:
        name: ``small-resnet`` (ResNet-10 at half width with a small-image
            stem, the fast default), ``resnet18``, ``resnet50`` (small-image stem
            when ``image_size <= 64``), or ``vit`` (torchvision VisionTransformer,
            small config: patch 4, 6 layers, 4 heads, 192 dims).
        image_size: Input side length (ViT needs it; ResNets use it for the stem).
        weights_path: Optional state dict to start from (never downloaded).

    ``forward_local`` returns ResNet last-stage feature-map cells or ViT patch
    tokens as ``(N, L, D)`` with an all-true mask.
    """

    supports_local = True

    def __init__(
        self,
        name: str = "small-resnet",
        image_size: int = 32,
        weights_path: str | Path | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__()
        from torchvision import models

        self.name = name
        self.is_vit = name == "vit"
        self.backbone: Any
        dim: int
        if name == "small-resnet":
            self.backbone, dim = _small_resnet()
        elif name in ("resnet18", "resnet50"):
            self.backbone = getattr(models, name)(weights=None)
            dim = int(self.backbone.fc.in_features)
            if image_size <= 64:
                _cifar_stem(self.backbone, self.backbone.conv1.out_channels)
            self.backbone.fc = nn.Identity()
        elif name == "vit":
            patch = kwargs.pop("patch_size", 4 if image_size <= 64 else 16)
            if image_size % patch:
                raise ValueError(
                    f"vit: image_size {image_size} must be a multiple of patch_size {patch}"
                )
            self.backbone = models.VisionTransformer(
                image_size=image_size,
                patch_size=patch,
                num_layers=kwargs.pop("num_layers", 6),
                num_heads=kwargs.pop("num_heads", 4),
                hidden_dim=kwargs.pop("hidden_dim", 192),
                mlp_dim=kwargs.pop("mlp_dim", 768),
            )
            self.backbone.heads = nn.Identity()
            dim = int(self.backbone.hidden_dim)
        else:
            raise ValueError(
                f"unknown image encoder {name!r}; available: {', '.join(IMAGE_ENCODERS)}"
            )
        if kwargs:
            raise TypeError(f"image encoder {name!r}: unexpected arguments {sorted(kwargs)}")
        self.feature_dim = self.local_dim = int(dim)
        if weights_path is not None:
            load_weights(self.backbone, weights_path)

    def forward(self, x: Tensor) -> Tensor:
        return self.backbone(x)  # type: ignore[no-any-return]

    def forward_local(self, x: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        if self.is_vit:
            vit: Any = self.backbone
            tokens = vit._process_input(x)
            cls = vit.class_token.expand(tokens.shape[0], -1, -1)
            tokens = vit.encoder(torch.cat([cls, tokens], dim=1))
            glob, local = tokens[:, 0], tokens[:, 1:]
        else:
            b: Any = self.backbone
            h = b.maxpool(b.relu(b.bn1(b.conv1(x))))
            h = b.layer4(b.layer3(b.layer2(b.layer1(h))))
            glob = torch.flatten(b.avgpool(h), 1)
            local = h.flatten(2).transpose(1, 2)
        mask = torch.ones(local.shape[:2], dtype=torch.bool, device=local.device)
        return glob, local, mask


def load_weights(module: nn.Module, path: str | Path) -> None:
    """Load a user's state dict safely (``weights_only=True``) with a clear error."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"weights file {str(path)!r} does not exist")
    state = torch.load(path, map_location="cpu", weights_only=True)
    if isinstance(state, dict) and "state_dict" in state:
        state = state["state_dict"]
    try:
        module.load_state_dict(state)
    except RuntimeError as exc:
        raise ValueError(
            f"weights in {str(path)!r} do not fit this architecture: {exc}".splitlines()[0]
            + " (pass weights saved from the same encoder name and image size)"
        ) from exc
