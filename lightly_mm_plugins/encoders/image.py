"""Image encoders from torchvision architectures, randomly initialised by default.

Nothing is downloaded: every architecture is built with ``weights=None`` and
starts from random weights, unless the user passes ``weights_path`` (a state
dict on disk, read with ``torch.load(weights_only=True)``).

Initialisation: torchvision's for the unchanged layers; layers we replace
(the small-image stem, the narrow stages of ``small-resnet``) keep PyTorch's
default initialisation, as the usual CIFAR adaptations (and Lightly's
examples) do. We tried torchvision's He fan-out init on them: in a 2-epoch
CLIP run on 512 digits (one seed) it gave a stronger *random* baseline
(linear probe 0.836 vs 0.747) but worse *trained* features (0.803 vs 0.825,
image-to-text R@10 0.063 vs 0.089), so the default stays.

Names (:data:`IMAGE_ENCODERS`):

* ``small-resnet`` (default): torchvision's :class:`~torchvision.models.ResNet`
  with one :class:`~torchvision.models.resnet.BasicBlock` per stage (a
  ResNet-10) at a reduced width (``width=32``: 32-64-128-256 channels, 1.2 M
  parameters) and the CIFAR stem (3x3 convolution, stride 1, no max-pool), so
  32x32 images keep a 4x4 final feature map. Built for CPU speed: the main job
  trains it on ~1250 digit images in a few minutes on two cores.
* ``resnet18`` / ``resnet50``: the torchvision models; the CIFAR stem replaces
  the ImageNet stem when ``image_size <= 64`` (``small_stem`` overrides).
* ``vit``: torchvision's :class:`~torchvision.models.VisionTransformer` in a
  small configuration for small images (patch 4 below 64 pixels, else 16;
  6 layers, 4 heads, 192 dims, MLP 768).

Global features are the average-pooled last feature map (ResNets) or the class
token after the final LayerNorm (ViT). Local features (:meth:`ImageEncoder.forward_local`)
are the last feature map's cells ``(N, H'*W', C)`` or the ViT patch tokens
``(N, (H/p)*(W/p), D)``, with an all-true mask.

Example:
    >>> import torch
    >>> enc = ImageEncoder("small-resnet")
    >>> enc(torch.randn(2, 3, 32, 32)).shape
    torch.Size([2, 256])
    >>> _, cells, mask = enc.forward_local(torch.randn(2, 3, 32, 32))
    >>> cells.shape, mask.shape
    (torch.Size([2, 16, 256]), torch.Size([2, 16]))
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from ..api import Encoder
from .weights import load_weights

__all__ = ["IMAGE_ENCODERS", "ImageEncoder", "load_weights"]

#: The image encoder names :class:`ImageEncoder` knows.
IMAGE_ENCODERS: tuple[str, ...] = ("small-resnet", "resnet18", "resnet50", "vit")

_VIT_ARGS = ("patch_size", "num_layers", "num_heads", "hidden_dim", "mlp_dim")


def _cifar_stem(model: Any) -> None:
    """3x3 stride-1 first convolution and no max-pool: small images keep their detail."""
    model.conv1 = nn.Conv2d(3, model.conv1.out_channels, 3, stride=1, padding=1, bias=False)
    model.maxpool = nn.Identity()


def _small_resnet(width: int) -> tuple[nn.Module, int]:
    """A torchvision ResNet-10 (one BasicBlock per stage) with stage widths ``width * 2**i``."""
    from torchvision.models.resnet import BasicBlock, ResNet

    if width < 1:
        raise ValueError(f"small-resnet: width must be a positive integer, got {width}")
    model: Any = ResNet(BasicBlock, [1, 1, 1, 1], num_classes=1)
    widths = [width * 2**i for i in range(4)]
    # torchvision's BasicBlock only comes at width 64; rebuild the stages narrower
    # with ResNet's own _make_layer (it tracks the running channel count in inplanes).
    model.inplanes = widths[0]
    model.conv1 = nn.Conv2d(3, widths[0], 3, stride=1, padding=1, bias=False)
    model.bn1 = nn.BatchNorm2d(widths[0])
    model.maxpool = nn.Identity()
    model.layer1 = model._make_layer(BasicBlock, widths[0], 1)
    model.layer2 = model._make_layer(BasicBlock, widths[1], 1, stride=2)
    model.layer3 = model._make_layer(BasicBlock, widths[2], 1, stride=2)
    model.layer4 = model._make_layer(BasicBlock, widths[3], 1, stride=2)
    model.fc = nn.Identity()
    return model, widths[3]


class ImageEncoder(Encoder):
    """A torchvision backbone: pooled features and, on request, local cells / patches.

    Args:
        name: One of :data:`IMAGE_ENCODERS` (see the module docstring).
        image_size: Input side length. The ViT is built for exactly this size;
            the ResNets use it to pick the small-image stem (``<= 64``).
        weights_path: Optional state dict to start from (never downloaded):
            the backbone's ``state_dict()``, the encoder's (keys prefixed
            ``backbone.``), or either under a ``"state_dict"`` key.
        width: ``small-resnet`` only: channels of the first stage (default 32;
            64 gives the standard ResNet widths at ~4x the compute).
        small_stem: ``resnet18`` / ``resnet50`` only: force (True) or forbid (False) the CIFAR stem;
            default ``image_size <= 64``.
        patch_size, num_layers, num_heads, hidden_dim, mlp_dim: ``vit`` only:
            the VisionTransformer configuration (defaults: patch 4 for images
            up to 64 pixels else 16, 6 layers, 4 heads, 192, 768).

    Shapes: ``forward(x (N, 3, H, W)) -> (N, feature_dim)``;
    ``forward_local(x) -> (global (N, D), local (N, L, D), mask (N, L))`` with
    ``L = H'*W'`` last-stage cells (ResNet, ``H' = H / 8`` with the small stem,
    ``H / 32`` otherwise) or ``(H/p)*(W/p)`` patches (ViT).
    """

    supports_local = True

    def __init__(
        self,
        name: str = "small-resnet",
        image_size: int = 32,
        weights_path: str | Path | None = None,
        *,
        width: int | None = None,
        small_stem: bool | None = None,
        patch_size: int | None = None,
        num_layers: int | None = None,
        num_heads: int | None = None,
        hidden_dim: int | None = None,
        mlp_dim: int | None = None,
    ) -> None:
        super().__init__()
        from torchvision import models

        if name not in IMAGE_ENCODERS:
            raise ValueError(
                f"unknown image encoder {name!r}; available: {', '.join(IMAGE_ENCODERS)}"
            )
        if image_size < 1:
            raise ValueError(f"image_size must be a positive integer, got {image_size}")
        vit_args = dict(
            patch_size=patch_size,
            num_layers=num_layers,
            num_heads=num_heads,
            hidden_dim=hidden_dim,
            mlp_dim=mlp_dim,
        )
        given = {k for k, v in vit_args.items() if v is not None}
        if name != "vit" and given:
            raise ValueError(f"image encoder {name!r} does not take {sorted(given)} (vit only)")
        if name != "small-resnet" and width is not None:
            raise ValueError(f"image encoder {name!r} does not take width (small-resnet only)")
        if name not in ("resnet18", "resnet50") and small_stem is not None:
            raise ValueError(
                f"image encoder {name!r} does not take small_stem (resnet18 / resnet50 only; "
                "small-resnet always has the small-image stem)"
            )

        self.name = name
        self.image_size = int(image_size)
        self.is_vit = name == "vit"
        self.backbone: Any
        if name == "small-resnet":
            self.backbone, dim = _small_resnet(32 if width is None else int(width))
        elif name in ("resnet18", "resnet50"):
            self.backbone = getattr(models, name)(weights=None)
            dim = int(self.backbone.fc.in_features)
            if small_stem if small_stem is not None else image_size <= 64:
                _cifar_stem(self.backbone)
            self.backbone.fc = nn.Identity()
        else:
            patch = patch_size or (4 if image_size <= 64 else 16)
            if image_size % patch:
                raise ValueError(
                    f"vit: image_size {image_size} must be a multiple of patch_size {patch}"
                )
            heads = num_heads or 4
            hidden = hidden_dim or 192
            if hidden % heads:
                raise ValueError(
                    f"vit: hidden_dim {hidden} must be a multiple of num_heads {heads}"
                )
            self.backbone = models.VisionTransformer(
                image_size=image_size,
                patch_size=patch,
                num_layers=num_layers or 6,
                num_heads=heads,
                hidden_dim=hidden,
                mlp_dim=mlp_dim or 4 * hidden,
            )
            self.backbone.heads = nn.Identity()
            dim = int(self.backbone.hidden_dim)
        self.feature_dim = self.local_dim = int(dim)
        if weights_path is not None:
            load_weights(self.backbone, weights_path, what=f"image encoder {name!r}")

    def _check(self, x: Tensor) -> None:
        if not isinstance(x, Tensor) or x.dim() != 4 or x.shape[1] != 3:
            shape = tuple(x.shape) if isinstance(x, Tensor) else type(x).__name__
            raise ValueError(f"image encoder expects images of shape (N, 3, H, W), got {shape}")
        if self.is_vit and tuple(x.shape[-2:]) != (self.image_size, self.image_size):
            raise ValueError(
                f"vit was built for {self.image_size}x{self.image_size} images, got "
                f"{x.shape[-2]}x{x.shape[-1]}; pass image_size={x.shape[-1]} or resize"
            )

    def forward(self, x: Tensor) -> Tensor:
        """Global features ``(N, feature_dim)`` of images ``(N, 3, H, W)``."""
        self._check(x)
        return self.backbone(x)  # type: ignore[no-any-return]

    def forward_local(self, x: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        """``(global (N, D), local (N, L, D), mask (N, L) all True)``.

        The global features equal :meth:`forward`'s: they are computed from the
        same pass (average of the cells for ResNets, class token for ViT).
        """
        self._check(x)
        b: Any = self.backbone
        if self.is_vit:
            # torchvision's VisionTransformer.forward, keeping the patch tokens.
            tokens = b._process_input(x)
            cls = b.class_token.expand(tokens.shape[0], -1, -1)
            tokens = b.encoder(torch.cat([cls, tokens], dim=1))
            glob, local = tokens[:, 0], tokens[:, 1:]
        else:
            # torchvision's ResNet._forward_impl up to the last stage.
            h = b.maxpool(b.relu(b.bn1(b.conv1(x))))
            h = b.layer4(b.layer3(b.layer2(b.layer1(h))))
            glob = torch.flatten(b.avgpool(h), 1)
            local = h.flatten(2).transpose(1, 2)
        mask = torch.ones(local.shape[:2], dtype=torch.bool, device=local.device)
        return glob, local, mask
