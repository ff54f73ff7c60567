"""Building blocks for views: per-modality transforms and fold sampling.

A *view* (:class:`lightly_mm_plugins.api.View`) turns one raw sample into the
observations an objective needs. :class:`ModalityView` covers the common case:
for every modality pick ``k`` observations (``None``: all of them, multifold)
and run each through the transform of its kind. Plugins subclass or configure
it instead of writing their own sampling and image pipelines.

Example:
    >>> from lightly_mm_plugins.views import ModalityView
    >>> view = ModalityView(modalities={"image": "image", "text": "text"},
    ...                     views_per_modality={"image": 2, "text": 1})
"""

from __future__ import annotations

import random
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from .api import Sample, View
from .errors import DataError

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


def image_train_transform(
    image_size: int = 32,
    *,
    min_scale: float = 0.5,
    color_jitter: float = 0.4,
    hflip: bool = False,
    grayscale_prob: float = 0.2,
) -> Callable[[Any], Tensor]:
    """SimCLR-style augmentation with ``torchvision.transforms.v2``.

    RandomResizedCrop, colour jitter (p=0.8), random grayscale, optional
    horizontal flip (off by default: digits and text in images are not
    mirror-symmetric), then float tensor normalised with ImageNet statistics.
    """
    from torchvision.transforms import v2

    ops: list[Any] = [
        v2.ToImage(),
        v2.RGB(),
        v2.RandomResizedCrop(image_size, scale=(min_scale, 1.0), antialias=True),
    ]
    if hflip:
        ops.append(v2.RandomHorizontalFlip())
    if color_jitter > 0:
        cj = color_jitter
        ops.append(v2.RandomApply([v2.ColorJitter(cj, cj, cj, cj / 4)], p=0.8))
    if grayscale_prob > 0:
        ops.append(v2.RandomGrayscale(p=grayscale_prob))
    ops += [v2.ToDtype(torch.float32, scale=True), v2.Normalize(IMAGENET_MEAN, IMAGENET_STD)]
    return v2.Compose(ops)  # type: ignore[no-any-return]


def image_eval_transform(image_size: int = 32) -> Callable[[Any], Tensor]:
    """Resize + normalise, no augmentation (evaluation and clustering)."""
    from torchvision.transforms import v2

    return v2.Compose(  # type: ignore[no-any-return]
        [
            v2.ToImage(),
            v2.RGB(),
            v2.Resize((image_size, image_size), antialias=True),
            v2.ToDtype(torch.float32, scale=True),
            v2.Normalize(IMAGENET_MEAN, IMAGENET_STD),
        ]
    )


def to_vector(x: Any) -> Tensor:
    """A 1-d float tensor from a tensor, array or list."""
    t = torch.as_tensor(x, dtype=torch.float32)
    if t.dim() != 1:
        raise DataError(f"a vector observation must be 1-d, got shape {tuple(t.shape)}")
    return t


def identity(x: Any) -> Any:
    return x


class ModalityView(View):
    """Pick ``k`` observations per modality and transform each by its kind.

    Args:
        modalities: Modality name -> kind (``image``, ``text``, ``vector``).
        views_per_modality: Modality name -> number of observations to emit
            (``None`` = every observation the instance has). Missing names
            default to 1. When ``k`` exceeds what an instance has, images and
            vectors are re-augmented from the available ones (two augmented
            crops of one image), text folds raise a ``DataError``.
        image_size: Output image side length.
        transforms: Optional per-modality override of the train transform.
        seed: Seed for fold sampling (None: Python's global RNG).
    """

    def __init__(
        self,
        modalities: Mapping[str, str],
        views_per_modality: Mapping[str, int | None] | None = None,
        image_size: int = 32,
        transforms: Mapping[str, Callable[[Any], Any]] | None = None,
        seed: int | None = None,
        **kwargs: Any,
    ) -> None:
        if kwargs:
            raise TypeError(f"{type(self).__name__}: unexpected arguments {sorted(kwargs)}")
        self.modalities = dict(modalities)
        vpm = dict(views_per_modality or {})
        unknown = set(vpm) - set(self.modalities)
        if unknown:
            raise ValueError(
                f"views_per_modality names unknown modalities {sorted(unknown)}; the data "
                f"has {sorted(self.modalities)}"
            )
        self.views_per_modality = {m: vpm.get(m, 1) for m in self.modalities}
        for m, k in self.views_per_modality.items():
            if k is not None and k < 1:
                raise ValueError(f"views_per_modality[{m!r}] must be >= 1 or None, got {k}")
        self.image_size = image_size
        self._rng = random.Random(seed) if seed is not None else random
        self.train_transforms: dict[str, Callable[[Any], Any]] = {}
        self.eval_transforms: dict[str, Callable[[Any], Any]] = {}
        for m, kind in self.modalities.items():
            self.train_transforms[m] = self.default_transform(kind, train=True)
            self.eval_transforms[m] = self.default_transform(kind, train=False)
        for m, t in (transforms or {}).items():
            self.train_transforms[m] = t

    def default_transform(self, kind: str, train: bool) -> Callable[[Any], Any]:
        if kind == "image":
            if train:
                return image_train_transform(self.image_size)
            return image_eval_transform(self.image_size)
        if kind == "vector":
            return to_vector
        if kind == "text":
            return identity
        raise ValueError(f"unknown modality kind {kind!r}; use image, text or vector")

    def pick(self, modality: str, observations: list[Any], k: int | None) -> list[Any]:
        """Choose ``k`` of an instance's observations (all of them for ``None``)."""
        if not observations:
            raise DataError(f"an instance has no observation of modality {modality!r}")
        if k is None or k == len(observations):
            return list(observations)
        if k < len(observations):
            return self._rng.sample(list(observations), k)
        if self.modalities[modality] == "text":
            raise DataError(
                f"the view needs {k} observations of {modality!r} but an instance has "
                f"only {len(observations)}; lower the number of folds or filter the data"
            )
        return [observations[i % len(observations)] for i in range(k)]

    def __call__(self, sample: Sample) -> Sample:
        return self._apply(sample, self.train_transforms, train=True)

    def eval_view(self, sample: Sample) -> Sample:
        return self._apply(sample, self.eval_transforms, train=False)

    def _apply(
        self, sample: Sample, transforms: Mapping[str, Callable[[Any], Any]], train: bool
    ) -> Sample:
        out: dict[str, list[Any]] = {}
        for m in self.modalities:
            if m not in sample.observations:
                raise DataError(
                    f"instance {sample.instance_id} has no modality {m!r} (has "
                    f"{sorted(sample.observations)})"
                )
            obs = sample.observations[m]
            k = (
                self.views_per_modality[m]
                if train
                else (None if self.modalities[m] == "text" else 1)
            )
            chosen = self.pick(m, obs, k)
            if self.modalities[m] == "image":
                paths = [o for o in chosen if isinstance(o, (str, Path))]
                if paths:
                    raise DataError(
                        f"instance {sample.instance_id}: image observation of {m!r} is the path "
                        f"{str(paths[0])!r}, not an image; open files before the view "
                        "(MultimodalDataset(..., loader=ImageFileLoader()), as the file formats "
                        "do)"
                    )
            out[m] = [transforms[m](o) for o in chosen]
        return Sample(sample.instance_id, out, sample.label, dict(sample.extras))
