"""The ``tcl`` view: two augmented image views and one (optionally masked) caption.

Official augmentation (``dataset/__init__.py``, ``pretrain_transform``; drawn
twice independently for ``image`` and ``image_aug``):
RandomResizedCrop(scale 0.2-1, bicubic), ColorJitter(0.4, 0.4, 0.4, 0.1) with
p=0.8, RandomGrayscale(p=0.2), GaussianBlur(sigma 0.1-2) with p=0.5,
RandomHorizontalFlip, RandomAugment(2, 7) over ten operations, then
normalisation. The official code does not augment text; ``text_mask_prob``
adds word masking as an option.

Example:
    >>> view = TCLView(modalities={"image": "image", "text": "text"}, image_size=32)
    >>> view.views_per_modality
    {'image': 2, 'text': 1}
"""

from __future__ import annotations

import math
import random
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import torch
from torch import Tensor

from lightly_mm_plugins.api import Sample
from lightly_mm_plugins.errors import DataError
from lightly_mm_plugins.views import IMAGENET_MEAN, IMAGENET_STD, ModalityView

__all__ = ["TCLRandomAugment", "TCLView", "mask_words", "tcl_image_transform"]

#: Operations of the official ``RandomAugment(2, 7, augs=[...])`` call.
RANDAUG_OPS: tuple[str, ...] = (
    "Identity",
    "AutoContrast",
    "Equalize",
    "Brightness",
    "Sharpness",
    "ShearX",
    "ShearY",
    "TranslateX",
    "TranslateY",
    "Rotate",
)


class TCLRandomAugment:
    """The official ``RandomAugment(N=2, M=7)`` (``dataset/randaugment.py``) on uint8 tensors.

    Draws ``num_ops`` operations (with replacement) from :data:`RANDAUG_OPS`;
    each is applied with probability 0.5 at level ``magnitude / 10``:
    brightness / sharpness factor ``level * 1.8 + 0.1``; shear ``level * 0.3``;
    rotation ``level * 30`` degrees; translation ``level * translate`` of the
    image side (official: 10 px at 256 px, i.e. ``translate = 10 / 256``);
    geometric ones with a random sign and grey (128) fill.

    Args:
        num_ops: Operations per image (official 2).
        magnitude: Level out of 10 (official 7).
        translate: Maximum translation as a fraction of the image side.
    """

    def __init__(self, num_ops: int = 2, magnitude: float = 7, translate: float = 10 / 256) -> None:
        if num_ops < 0 or not 0 <= magnitude <= 10:
            raise ValueError(
                f"num_ops must be >= 0 and magnitude in [0, 10], got {num_ops}, {magnitude}"
            )
        self.num_ops = num_ops
        self.level = magnitude / 10.0
        self.translate = translate

    def __call__(self, image: Tensor) -> Tensor:
        from torchvision.transforms.v2 import functional as TF

        fill = [128.0] * int(image.shape[-3])
        for _ in range(self.num_ops):
            op = RANDAUG_OPS[int(torch.randint(len(RANDAUG_OPS), ()))]
            if float(torch.rand(())) > 0.5:
                continue
            sign = 1.0 if float(torch.rand(())) < 0.5 else -1.0
            if op == "AutoContrast":
                image = TF.autocontrast(image)
            elif op == "Equalize":
                image = TF.equalize(image)
            elif op == "Brightness":
                image = TF.adjust_brightness(image, self.level * 1.8 + 0.1)
            elif op == "Sharpness":
                image = TF.adjust_sharpness(image, self.level * 1.8 + 0.1)
            elif op in ("ShearX", "ShearY"):
                deg = math.degrees(math.atan(sign * self.level * 0.3))
                shear = [deg, 0.0] if op == "ShearX" else [0.0, deg]
                image = TF.affine(
                    image, angle=0.0, translate=[0, 0], scale=1.0, shear=shear, fill=fill
                )
            elif op in ("TranslateX", "TranslateY"):
                side = image.shape[-1] if op == "TranslateX" else image.shape[-2]
                shift = round(sign * self.level * self.translate * side)
                offset = [shift, 0] if op == "TranslateX" else [0, shift]
                image = TF.affine(
                    image, angle=0.0, translate=offset, scale=1.0, shear=[0.0, 0.0], fill=fill
                )
            elif op == "Rotate":
                image = TF.rotate(image, sign * self.level * 30.0, fill=fill)
        return image


def tcl_image_transform(
    image_size: int = 32,
    *,
    min_scale: float = 0.2,
    hflip: bool = False,
    blur_sigma: tuple[float, float] = (0.1, 2.0),
    randaugment: bool = True,
    mean: Sequence[float] = IMAGENET_MEAN,
    std: Sequence[float] = IMAGENET_STD,
) -> Callable[[Any], Tensor]:
    """TCL's pre-training image augmentation with ``torchvision.transforms.v2``.

    See the module docstring for the pipeline. ``hflip`` defaults to False
    here (digits and text in images are not mirror-symmetric; the paper flips).
    Normalisation uses the host's ImageNet statistics so that training and the
    host's evaluation transform agree (the official code uses CLIP's).
    """
    from torchvision.transforms import InterpolationMode, v2

    if not 0 < min_scale <= 1:
        raise ValueError(f"min_scale must be in (0, 1], got {min_scale}")
    sigma_max = max(blur_sigma)
    kernel = min(2 * math.ceil(3 * sigma_max) + 1, image_size - (1 - image_size % 2))
    kernel = max(kernel, 3)
    ops: list[Any] = [
        v2.ToImage(),
        v2.RGB(),
        v2.RandomResizedCrop(
            image_size,
            scale=(min_scale, 1.0),
            interpolation=InterpolationMode.BICUBIC,
            antialias=True,
        ),
        v2.RandomApply([v2.ColorJitter(0.4, 0.4, 0.4, 0.1)], p=0.8),
        v2.RandomGrayscale(p=0.2),
        v2.RandomApply([v2.GaussianBlur(kernel, sigma=blur_sigma)], p=0.5),
    ]
    if hflip:
        ops.append(v2.RandomHorizontalFlip())
    if randaugment:
        ops.append(TCLRandomAugment(2, 7))
    ops += [v2.ToDtype(torch.float32, scale=True), v2.Normalize(list(mean), list(std))]
    return v2.Compose(ops)  # type: ignore[no-any-return]


def mask_words(
    caption: str,
    prob: float,
    mask_token: str | None = "[MASK]",
    rng: random.Random | Any = random,
) -> str:
    """Replace each whitespace-separated word with ``mask_token`` with probability ``prob``.

    ``mask_token=None`` drops the word instead. At least one word is kept.
    ``[MASK]`` is a special token of the BERT-style tokenizer of the default
    sentence-transformers model, so it is tokenised as one mask token.
    """
    words = caption.split()
    if prob <= 0 or not words:
        return caption
    hit = [rng.random() < prob for _ in words]
    if all(hit):
        hit[rng.randrange(len(words))] = False
    if mask_token is None:
        return " ".join(w for w, h in zip(words, hit) if not h)
    return " ".join(mask_token if h else w for w, h in zip(words, hit))


class TCLView(ModalityView):
    """Two augmented views of every image modality and one caption per text modality.

    * image modalities: two independent draws of :func:`tcl_image_transform`
      (view 0 goes through the online encoder, view 1 through the momentum one);
    * text modalities: one randomly chosen caption; with ``text_mask_prob > 0``
      two observations ``[masked caption, caption]`` so that the online
      encoder sees the masked and the momentum encoder the clean caption;
    * vector modalities: one observation (momentum key on the same one).

    Args:
        modalities: Modality name -> kind.
        image_size: Output side length.
        min_scale: RandomResizedCrop lower scale (paper 0.2).
        hflip: Horizontal flips (paper: yes; default off for digits / text).
        blur_sigma: Gaussian blur sigma range in pixels (paper ``(0.1, 2.0)``).
        randaugment: Apply the official RandomAugment(2, 7).
        text_mask_prob: Word-masking probability for the online caption (0 = off, paper).
        mask_token: Replacement word; ``None`` drops masked words.
        seed: Seed for caption choice and word masking.

    Example:
        >>> view = TCLView({"image": "image", "text": "text"}, text_mask_prob=0.15)
        >>> view.views_per_modality["text"]
        2
    """

    def __init__(
        self,
        modalities: Mapping[str, str],
        image_size: int = 32,
        *,
        min_scale: float = 0.2,
        hflip: bool = False,
        blur_sigma: tuple[float, float] = (0.1, 2.0),
        randaugment: bool = True,
        text_mask_prob: float = 0.0,
        mask_token: str | None = "[MASK]",
        seed: int | None = None,
        **kwargs: Any,
    ) -> None:
        if not 0.0 <= text_mask_prob < 1.0:
            raise ValueError(f"text_mask_prob must be in [0, 1), got {text_mask_prob}")
        image_transform = tcl_image_transform(
            image_size,
            min_scale=min_scale,
            hflip=hflip,
            blur_sigma=tuple(blur_sigma),  # type: ignore[arg-type]
            randaugment=randaugment,
        )
        transforms = {m: image_transform for m, k in modalities.items() if k == "image"}
        super().__init__(
            modalities,
            views_per_modality={m: 2 if k == "image" else 1 for m, k in modalities.items()},
            image_size=image_size,
            transforms=transforms,
            seed=seed,
            **kwargs,
        )
        self.text_mask_prob = float(text_mask_prob)
        self.mask_token = mask_token
        self._picks = dict(self.views_per_modality)
        if self.text_mask_prob > 0:
            self.views_per_modality = {
                m: 2 if self.modalities[m] == "text" else k for m, k in self._picks.items()
            }

    def __call__(self, sample: Sample) -> Sample:
        out: dict[str, list[Any]] = {}
        for m, kind in self.modalities.items():
            if m not in sample.observations:
                raise DataError(
                    f"instance {sample.instance_id} has no modality {m!r} (has "
                    f"{sorted(sample.observations)})"
                )
            chosen = self.pick(m, sample.observations[m], self._picks[m])
            obs = [self.train_transforms[m](o) for o in chosen]
            if kind == "text" and self.text_mask_prob > 0:
                obs = [mask_words(obs[0], self.text_mask_prob, self.mask_token, self._rng), obs[0]]
            out[m] = obs
        return Sample(sample.instance_id, out, sample.label, dict(sample.extras))
