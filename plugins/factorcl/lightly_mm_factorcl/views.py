"""FactorCL's multimodal views: a clean observation and its augmentation per modality.

FactorCL-SSL replaces the unknown task ``Y`` by augmentations (paper Sec. 3):
``I(Xi;Y) -> I(Xi;Xi')`` and ``I(X1;X2|Y) -> I(X1;X2|X1',X2')``. The view
emits, for every modality, ``[x, x']``: view 0 the clean observation (what the
``I(X1;X2)`` terms and the downstream representation see), view 1 an augmented
copy (what the ``I(Xi;Xi')`` targets and the ``|X1',X2'`` conditions see).

Augmentations (official ``Synthetic/dataset.py`` / ``multibench_model.py``
``augment_single``: per sample one operation drawn uniformly from four
families)::

    family  vector (official synthetic)  text (word level)             image (conditioned mode)
    0 order swap the two halves          permute the words             RandomResizedCrop
    1 noise + N(0, 0.01^2)               replace 20% of the words by   colour jitter + grayscale
                                         other words of the caption
    2 drop  zero 10% of the features     replace 20% of the words by   RandomErasing (~10% area)
                                         the mask token ("[MASK]")
    3 id    identity                     identity                      identity

Images in the default (independent) mode get the host's SimCLR-style
``torchvision.transforms.v2`` augmentation
(:func:`lightly_mm_plugins.views.image_train_transform`) instead.

``conditioned=False`` (default, the official code): every modality draws its
own family. ``conditioned=True`` (the paper's "x2 augmented conditioned on x1",
approximated mechanically): one draw per sample, made for the first modality,
is reused for every other modality: the **same family**, and, where sizes
agree (vectors of equal length, captions of equal word count), the **same
positions** are zeroed / masked / replaced; Gaussian noise and the replacement
words stay independent. Images use the family column above in this mode. This
keeps the two augmented modalities consistent (both views are perturbed in the
same way), which is our reading of the paper; the official code has no
conditioned variant.

Example:
    >>> import torch
    >>> from lightly_mm_plugins.api import Sample
    >>> view = FactorCLView(modalities={"x1": "vector", "x2": "vector"}, seed=0)
    >>> out = view(Sample(0, {"x1": [torch.arange(10.0)], "x2": [torch.ones(4)]}))
    >>> [len(out.observations[m]) for m in ("x1", "x2")]
    [2, 2]
"""

from __future__ import annotations

import random
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor

from lightly_mm_plugins.api import Sample
from lightly_mm_plugins.errors import DataError
from lightly_mm_plugins.views import IMAGENET_MEAN, IMAGENET_STD, ModalityView, to_vector

__all__ = [
    "FAMILIES",
    "FactorCLCleanView",
    "FactorCLView",
    "augment_text",
    "augment_vector",
]

#: Augmentation families, in the order of the official ``transforms`` list.
FAMILIES = ("order", "noise", "drop", "identity")


@dataclass(frozen=True)
class _Draw:
    """One augmentation draw: the family and a seed for the positions it touches."""

    family: int
    positions_seed: int


def _positions(rng: random.Random, size: int, count: int) -> list[int]:
    return sorted(rng.sample(range(size), count)) if count > 0 else []


def augment_vector(
    x: Tensor,
    family: int,
    positions_seed: int,
    noise_std: float = 0.01,
    drop_fraction: float = 0.1,
    generator: torch.Generator | None = None,
) -> Tensor:
    """One official synthetic augmentation of a 1-d vector.

    ``0`` swap halves ``[x[D//2:], x[:D//2]]``; ``1`` add ``N(0, noise_std^2)``;
    ``2`` zero ``floor(drop_fraction * D)`` features chosen by ``positions_seed``;
    ``3`` identity. Returns a new tensor.
    """
    if family == 0:
        mid = x.shape[0] // 2
        return torch.cat([x[mid:], x[:mid]])
    if family == 1:
        return x + noise_std * torch.randn(x.shape, generator=generator, dtype=x.dtype)
    if family == 2:
        out = x.clone()
        idx = _positions(random.Random(positions_seed), x.shape[0], int(x.shape[0] * drop_fraction))
        if idx:
            out[torch.tensor(idx)] = 0.0
        return out
    if family == 3:
        return x.clone()
    raise ValueError(f"family must be in 0..3 {FAMILIES}, got {family}")


def augment_text(
    text: str,
    family: int,
    positions_seed: int,
    fraction: float = 0.2,
    mask_token: str = "[MASK]",
    rng: Any = None,
) -> str:
    """One word-level augmentation of a caption (whitespace tokenisation).

    ``0`` permute the words; ``1`` replace ``max(1, floor(fraction * n))``
    words by words drawn from the same caption; ``2`` replace as many words by
    ``mask_token``; ``3`` identity. Positions come from ``positions_seed``, the
    permutation and replacement words from ``rng``. Captions of one word are
    only masked, never replaced or permuted.
    """
    rng = rng or random.Random()
    words = text.split()
    n = len(words)
    if family == 3 or n == 0:
        return text
    if family == 0:
        rng.shuffle(words)
        return " ".join(words)
    count = max(1, int(n * fraction)) if n > 1 else (1 if family == 2 else 0)
    idx = _positions(random.Random(positions_seed), n, count)
    if family == 1:
        pool = list(words)
        for i in idx:
            words[i] = rng.choice(pool)
    elif family == 2:
        for i in idx:
            words[i] = mask_token
    else:
        raise ValueError(f"family must be in 0..3 {FAMILIES}, got {family}")
    return " ".join(words)


def _image_family_transforms(image_size: int) -> list[Callable[[Any], Tensor]]:
    """Image operation per family (conditioned mode), each ending in normalise."""
    from torchvision.transforms import v2

    def pipeline(*ops: Any, after: tuple[Any, ...] = ()) -> Callable[[Any], Tensor]:
        head = [v2.ToImage(), v2.RGB(), *ops]
        tail = [v2.ToDtype(torch.float32, scale=True), v2.Normalize(IMAGENET_MEAN, IMAGENET_STD)]
        return v2.Compose([*head, *tail, *after])  # type: ignore[no-any-return]

    resize = v2.Resize((image_size, image_size), antialias=True)
    return [
        pipeline(v2.RandomResizedCrop(image_size, scale=(0.5, 1.0), antialias=True)),
        pipeline(resize, v2.ColorJitter(0.4, 0.4, 0.4, 0.1), v2.RandomGrayscale(p=0.2)),
        pipeline(resize, after=(v2.RandomErasing(p=1.0, scale=(0.1, 0.1), value=0.0),)),
        pipeline(resize),
    ]


class FactorCLView(ModalityView):
    """Two observations per modality: ``[clean x, augmented x']``.

    One observation is picked per modality (a random caption when there are
    several); view 0 is its evaluation transform (images resized and
    normalised, text and vectors unchanged), view 1 its augmentation (see the
    module docstring for the families and ``conditioned``).

    Args:
        modalities: Modality name -> kind (``image``, ``text``, ``vector``).
        image_size: Output image side length.
        conditioned: Reuse the first modality's draw for the others (paper's
            conditioned augmentation, approximated); False: independent (official).
        noise_std: Vector noise standard deviation (official synthetic: 0.01).
        drop_fraction: Fraction of vector features zeroed (official: 0.1).
        text_fraction: Fraction of words replaced or masked (MultiBench drops 20%).
        mask_token: Token for masked words (the MiniLM/BERT vocabulary's ``[MASK]``).
        seed: Seed of the view's random draws (None: global RNGs). Images in
            independent mode use torchvision's global RNG.

    Example:
        >>> view = FactorCLView(modalities={"image": "image", "text": "text"},
        ...                     conditioned=True)
    """

    def __init__(
        self,
        modalities: Mapping[str, str],
        image_size: int = 32,
        conditioned: bool = False,
        noise_std: float = 0.01,
        drop_fraction: float = 0.1,
        text_fraction: float = 0.2,
        mask_token: str = "[MASK]",
        seed: int | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(
            modalities,
            views_per_modality={m: 1 for m in modalities},
            image_size=image_size,
            seed=seed,
            **kwargs,
        )
        if noise_std < 0:
            raise ValueError(f"noise_std must be >= 0, got {noise_std}")
        for name, value in (("drop_fraction", drop_fraction), ("text_fraction", text_fraction)):
            if not 0.0 <= value <= 1.0:
                raise ValueError(f"{name} must lie in [0, 1], got {value}")
        self.views_per_modality = {m: 2 for m in self.modalities}
        self.conditioned = conditioned
        self.noise_std = noise_std
        self.drop_fraction = drop_fraction
        self.text_fraction = text_fraction
        self.mask_token = mask_token
        self._torch_gen: torch.Generator | None = None
        if seed is not None:
            self._torch_gen = torch.Generator().manual_seed(seed)
        self._image_families: list[Callable[[Any], Tensor]] | None = None
        if conditioned and "image" in self.modalities.values():
            self._image_families = _image_family_transforms(image_size)

    def _draw(self) -> _Draw:
        return _Draw(self._rng.randrange(len(FAMILIES)), self._rng.getrandbits(32))

    def augment(self, modality: str, observation: Any, draw: _Draw | None) -> Any:
        """The augmented view of one raw observation (``draw``: conditioned mode)."""
        kind = self.modalities[modality]
        if kind == "image":
            if draw is None:
                return self.train_transforms[modality](observation)
            assert self._image_families is not None
            return self._image_families[draw.family](observation)
        d = draw or self._draw()
        if kind == "vector":
            return augment_vector(
                to_vector(observation),
                d.family,
                d.positions_seed,
                self.noise_std,
                self.drop_fraction,
                self._torch_gen,
            )
        if kind == "text":
            return augment_text(
                str(observation),
                d.family,
                d.positions_seed,
                self.text_fraction,
                self.mask_token,
                self._rng,
            )
        raise ValueError(f"unknown modality kind {kind!r}; use image, text or vector")

    def __call__(self, sample: Sample) -> Sample:
        draw = self._draw() if self.conditioned else None
        out: dict[str, list[Any]] = {}
        for m in self.modalities:
            obs = self._observations(sample, m)
            chosen = self.pick(m, obs, 1)[0]
            out[m] = [self.eval_transforms[m](chosen), self.augment(m, chosen, draw)]
        return Sample(sample.instance_id, out, sample.label, dict(sample.extras))

    @staticmethod
    def _observations(sample: Sample, modality: str) -> list[Any]:
        if modality not in sample.observations:
            raise DataError(
                f"instance {sample.instance_id} has no modality {modality!r} (has "
                f"{sorted(sample.observations)})"
            )
        return list(sample.observations[modality])


class FactorCLCleanView(ModalityView):
    """One clean (un-augmented) observation per modality, for FactorCL-SUP.

    The official supervised variant trains on the raw inputs; this view picks
    one observation per modality (a random caption when there are several) and
    applies only the evaluation transform (images resized and normalised).

    Example:
        >>> view = FactorCLCleanView(modalities={"x1": "vector", "x2": "vector"})
    """

    def __init__(self, modalities: Mapping[str, str], image_size: int = 32, **kwargs: Any) -> None:
        super().__init__(
            modalities,
            views_per_modality={m: 1 for m in modalities},
            image_size=image_size,
            **kwargs,
        )

    def __call__(self, sample: Sample) -> Sample:
        out: dict[str, list[Any]] = {}
        for m in self.modalities:
            obs = FactorCLView._observations(sample, m)
            out[m] = [self.eval_transforms[m](self.pick(m, obs, 1)[0])]
        return Sample(sample.instance_id, out, sample.label, dict(sample.extras))
