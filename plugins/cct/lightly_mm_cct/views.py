"""The ``cct`` view: K augmented image views plus one caption.

Official small-scale augmentation (``small_scale_experiments/cifar10/main_ours.py``,
``get_data_loader``, drawn ``Ny + 1 = 5`` times per image by
``MultiAugUnsupervisedDataset``): RandomResizedCrop(32, scale 0.2-1),
RandomHorizontalFlip, ColorJitter(0.4, 0.4, 0.4, 0.4) applied always,
RandomGrayscale(p=0.2), then normalisation.

Example:
    >>> view = CCTView(modalities={"image": "image", "text": "text"}, image_size=32)
    >>> view.views_per_modality
    {'image': 2, 'text': 1}
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any

import torch
from torch import Tensor

from lightly_mm_plugins.views import IMAGENET_MEAN, IMAGENET_STD, ModalityView

__all__ = ["CCTView", "cct_image_transform"]


def cct_image_transform(
    image_size: int = 32,
    *,
    min_scale: float = 0.2,
    hflip: bool = False,
    color_jitter: float = 0.4,
    jitter_prob: float = 1.0,
    grayscale_prob: float = 0.2,
    mean: Sequence[float] = IMAGENET_MEAN,
    std: Sequence[float] = IMAGENET_STD,
) -> Callable[[Any], Tensor]:
    """The official small-scale CACR augmentation with ``torchvision.transforms.v2``.

    ``ColorJitter(cj, cj, cj, cj)`` (hue ``cj`` too, official 0.4) is applied with
    probability ``jitter_prob`` (official: always). ``hflip`` defaults to False here
    (digits and text in images are not mirror-symmetric; the official code flips).
    Normalisation uses the host's ImageNet statistics so training and the host's
    evaluation transform agree (the official code uses CIFAR statistics).
    """
    from torchvision.transforms import v2

    if not 0 < min_scale <= 1:
        raise ValueError(f"min_scale must be in (0, 1], got {min_scale}")
    if not 0 <= color_jitter <= 0.5:
        raise ValueError(f"color_jitter must be in [0, 0.5] (hue limit), got {color_jitter}")
    ops: list[Any] = [
        v2.ToImage(),
        v2.RGB(),
        v2.RandomResizedCrop(image_size, scale=(min_scale, 1.0), antialias=True),
    ]
    if hflip:
        ops.append(v2.RandomHorizontalFlip())
    if color_jitter > 0 and jitter_prob > 0:
        cj = color_jitter
        ops.append(v2.RandomApply([v2.ColorJitter(cj, cj, cj, cj)], p=jitter_prob))
    if grayscale_prob > 0:
        ops.append(v2.RandomGrayscale(p=grayscale_prob))
    ops += [v2.ToDtype(torch.float32, scale=True), v2.Normalize(list(mean), list(std))]
    return v2.Compose(ops)  # type: ignore[no-any-return]


class CCTView(ModalityView):
    """``num_views`` augmented views of every image modality, ``num_captions`` captions.

    * image modalities: ``num_views`` independent draws of :func:`cct_image_transform`
      (official small-scale: ``Ny + 1 = 5``; default 2 to keep CPU runs cheap);
    * text modalities: ``num_captions`` distinct captions drawn at random (default 1);
    * vector modalities: one observation (they have no augmentation).

    Args:
        modalities: Modality name -> kind.
        image_size: Output side length.
        num_views: Augmented views per image (K >= 1; K image views are positives of
            each other and of the captions).
        num_captions: Captions per instance (None: all of them, multifold).
        min_scale, hflip, color_jitter, jitter_prob, grayscale_prob: see
            :func:`cct_image_transform`.
        seed: Seed for caption choice.

    Example:
        >>> view = CCTView({"image": "image", "text": "text"}, num_views=5)
        >>> view.views_per_modality["image"]
        5
    """

    def __init__(
        self,
        modalities: Mapping[str, str],
        image_size: int = 32,
        *,
        num_views: int = 2,
        num_captions: int | None = 1,
        min_scale: float = 0.2,
        hflip: bool = False,
        color_jitter: float = 0.4,
        jitter_prob: float = 1.0,
        grayscale_prob: float = 0.2,
        seed: int | None = None,
        **kwargs: Any,
    ) -> None:
        if num_views < 1:
            raise ValueError(f"num_views must be >= 1, got {num_views}")
        if num_captions is not None and num_captions < 1:
            raise ValueError(f"num_captions must be >= 1 or None, got {num_captions}")
        image_transform = cct_image_transform(
            image_size,
            min_scale=min_scale,
            hflip=hflip,
            color_jitter=color_jitter,
            jitter_prob=jitter_prob,
            grayscale_prob=grayscale_prob,
        )
        per: dict[str, int | None] = {}
        for m, kind in modalities.items():
            per[m] = num_views if kind == "image" else num_captions if kind == "text" else 1
        super().__init__(
            modalities,
            views_per_modality=per,
            image_size=image_size,
            transforms={m: image_transform for m, k in modalities.items() if k == "image"},
            seed=seed,
            **kwargs,
        )
