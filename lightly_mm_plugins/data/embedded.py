"""Embedded default data: nothing to download.

``digits``: the 1,797 handwritten 8x8 digits that scikit-learn ships, each an
image paired with 3 to 5 generated captions (multifold). The label is the
digit. The two modalities are built to be *complementary*:

* captions state coarse, label-relevant attributes the image may lack —
  parity ("even"/"odd") and magnitude ("small" 0-4 / "large" 5-9) — and
  label-irrelevant attributes read off the image itself (stroke thickness,
  slant, which half is blank), which make a caption point at its own image
  for retrieval; they never name the digit, so text alone can reach at most
  the 4 parity x magnitude groups;
* images carry the digit's shape, but 40 % of them have a random half blanked
  out, so for those the caption's attributes are needed to tell similar
  shapes apart.

A method that keeps only information shared by both modalities therefore loses
the digit identity the image alone carries (and vice versa). Measured with a
logistic regression on the test split (seed 0) for the digit: raw pixels
92.2 % (86.7 % on blanked images), caption bag-of-words 45.0 %, both
concatenated 98.1 %. ``extras["labels"]`` holds ``digit``, ``parity`` and
``large`` for evaluation, ``extras["degraded"]`` whether half the image is
blank. Images are 8x8 RGB PIL images (the view resizes; the data set suggests
``default_image_size=16``). Everything is a deterministic function of ``seed``
(default 0): blanking, captions, and the 70/15/15 split.

``synthetic``: FactorCL's synthetic generator (Liang et al. 2023,
``Synthetic/dataset.py``) with controllable shared and unique task-relevant
information, as two vector modalities ``x1`` and ``x2``:

1. ``T_m ~ U(0, 1)^{(d_12 + d_m) x D}`` for m = 1, 2;
2. per instance, latents ``w_k ~ N(0, 0.5 I_{d_k})`` for k in (12, 1, 2);
3. ``x1 = [w_12, w_1] T_1`` and ``x2 = [w_12, w_2] T_2`` (noiseless);
4. a label is ``1[sum_k sum_{t < l_k} w_k[t] >= 0]`` for the label dims ``l_k``.

Labels ``shared`` (only w_12), ``unique1`` (only w_1), ``unique2`` (only w_2)
and ``all`` (all three, the notebook's setting) are all in ``extras["labels"]``;
``label=`` picks the main one; ``feature_dims`` / ``label_dims`` change the
latent and label sizes. Upstream draws from numpy's global RNG, one instance at
a time (``multivariate_normal``); here one ``numpy.random.default_rng(seed)``
draws each latent block for all instances at once: the same distribution, not
the same numbers. As ``x_m`` is an injective linear map of the latents, every
label is linearly separable from ``[x1, x2]``.
"""

from __future__ import annotations

from functools import lru_cache
from typing import Any

import numpy as np
import torch

from ..api import Sample
from ..errors import DataError
from .dataset import MultimodalDataset, check_split, select_split

BLANK_SIDES = ("top", "bottom", "left", "right")
TEMPLATES = (
    "a {size} {parity} digit {a}",
    "handwritten, {size} and {parity}, {a}",
    "this digit is {parity} and {size}; {a}",
    "{parity} {size} numeral {a}, {b}",
    "a {size} {parity} number {a} and {b}",
    "{a}, {b}: a {parity} digit",
    "{a}; the value is {size}",
)


def image_attributes(
    arr: np.ndarray, blank: str | None, thresholds: tuple[float, ...]
) -> list[str]:
    """Phrases read off the image itself: ink, slant, and a blanked half."""
    ink = float(arr.sum())
    lo, hi = thresholds
    phrases = [
        "with thin strokes"
        if ink < lo
        else "with thick strokes"
        if ink > hi
        else "with medium strokes"
    ]
    cols = arr.sum(axis=0)
    center = float((cols * np.arange(arr.shape[1])).sum() / max(cols.sum(), 1.0))
    phrases.append(
        "leaning left" if center < 3.3 else "leaning right" if center > 3.9 else "well centred"
    )
    phrases.append(f"with the {blank} half blank" if blank else "fully visible")
    return phrases


def digit_captions(digit: int, attributes: list[str], rng: np.random.Generator) -> list[str]:
    """3 to 5 captions: parity and magnitude (never the digit) plus image attributes."""
    parity = "even" if digit % 2 == 0 else "odd"
    size = "small" if digit < 5 else "large"
    k = int(rng.integers(3, 6))
    captions = []
    for t in rng.choice(len(TEMPLATES), size=k, replace=False):
        a, b = rng.choice(attributes, size=2, replace=False)
        text = TEMPLATES[int(t)].format(size=size, parity=parity, a=a, b=b)
        captions.append(text.replace("a odd", "an odd").replace("a even", "an even"))
    return captions


@lru_cache(maxsize=4)
def _digits_samples(seed: int, degrade_fraction: float) -> tuple[Sample, ...]:
    from PIL import Image
    from sklearn.datasets import load_digits

    digits = load_digits()
    rng = np.random.default_rng(seed)
    images = (digits.images / 16.0 * 255.0).astype(np.uint8)
    blanks: list[str | None] = []
    for arr in images:
        blank = BLANK_SIDES[int(rng.integers(4))] if rng.random() < degrade_fraction else None
        if blank == "top":
            arr[:4] = 0
        elif blank == "bottom":
            arr[4:] = 0
        elif blank == "left":
            arr[:, :4] = 0
        elif blank == "right":
            arr[:, 4:] = 0
        blanks.append(blank)
    ink = images.reshape(len(images), -1).sum(axis=1)
    thresholds = (float(np.quantile(ink, 1 / 3)), float(np.quantile(ink, 2 / 3)))
    samples = []
    for i, (arr, y) in enumerate(zip(images, digits.target)):
        y = int(y)
        attributes = image_attributes(arr, blanks[i], thresholds)
        image = Image.fromarray(arr).convert("RGB")
        samples.append(
            Sample(
                instance_id=i,
                observations={"image": [image], "text": digit_captions(y, attributes, rng)},
                label=y,
                extras={
                    "labels": {"digit": y, "parity": y % 2, "large": int(y >= 5)},
                    "degraded": blanks[i] is not None,
                },
            )
        )
    return tuple(samples)


def load_digits_captions(
    split: str = "train", seed: int = 0, degrade_fraction: float = 0.4
) -> MultimodalDataset:
    """The embedded digits + captions data set (see the module docstring).

    Example:
        >>> ds = load_digits_captions("train")
        >>> len(ds), ds.modalities, ds[0].observations["image"][0].size
        (1258, {'image': 'image', 'text': 'text'}, (8, 8))
    """
    split = check_split(split)
    if not 0.0 <= degrade_fraction <= 1.0:
        raise DataError(f"degrade_fraction must be in [0, 1], got {degrade_fraction}")
    samples = _digits_samples(seed, float(degrade_fraction))
    ds = MultimodalDataset(
        samples, {"image": "image", "text": "text"}, name="digits", default_image_size=16
    )
    return select_split(ds, split, seed)


#: Default latent sizes ``d_k`` (FactorCL notebook: ``{'12': 10, '1': 6, '2': 6}``).
SYNTHETIC_FEATURES: dict[str, int] = {"12": 10, "1": 6, "2": 6}
#: Label variants: variant -> {latent key: number of leading dims summed}.
SYNTHETIC_LABELS: dict[str, dict[str, int]] = {
    "shared": {"12": 10},
    "unique1": {"1": 6},
    "unique2": {"2": 6},
    "all": {"12": 10, "1": 6, "2": 6},
}


def synthetic_factors(
    num_data: int = 6000,
    feature_dims: dict[str, int] | None = None,
    transform_dim: int = 100,
    seed: int = 0,
) -> tuple[dict[str, np.ndarray], dict[str, np.ndarray]]:
    """The random factors of :func:`generate_synthetic`: ``(transforms, latents)``.

    ``transforms["1"]``, ``transforms["2"]``: ``T_m ~ U(0, 1)`` of shape
    ``(sum of d_k over keys containing m, transform_dim)``, drawn first;
    ``latents[k]``: ``w_k ~ N(0, 0.5 I)`` of shape ``(num_data, d_k)``, in the
    dict order of ``feature_dims``. Same seed, same factors.
    """
    feature_dims = dict(feature_dims or SYNTHETIC_FEATURES)
    rng = np.random.default_rng(seed)
    transforms = {}
    for m in ("1", "2"):
        rows = sum(d for k, d in feature_dims.items() if m in k)
        transforms[m] = rng.uniform(0.0, 1.0, size=(rows, transform_dim))
    latents = {
        k: rng.normal(0.0, np.sqrt(0.5), size=(num_data, d)) for k, d in feature_dims.items()
    }
    return transforms, latents


def generate_synthetic(
    num_data: int = 6000,
    feature_dims: dict[str, int] | None = None,
    transform_dim: int = 100,
    seed: int = 0,
    label_dims: dict[str, dict[str, int]] | None = None,
) -> tuple[np.ndarray, np.ndarray, dict[str, np.ndarray]]:
    """FactorCL's synthetic generator (``Synthetic/dataset.py``): ``(x1, x2, labels)``.

    Steps (module docstring): ``T_1`` then ``T_2`` ``~ U(0, 1)`` of shape
    ``(sum of d_k over keys containing m, transform_dim)``; latents
    ``w_k ~ N(0, 0.5 I)`` of shape ``(num_data, d_k)`` for each key in dict
    order; ``x_m = [w_k for keys containing "m"] @ T_m`` (float32, no noise);
    ``labels[v] = 1[sum_k sum_{t < l_k} w_k[:, t] >= 0]`` (int64) for every
    variant ``v`` of ``label_dims``. Everything comes from one
    ``numpy.random.default_rng(seed)``.

    Args:
        num_data: Instances N.
        feature_dims: Latent key -> size; keys name the modalities that see
            the latent (``"12"`` shared, ``"1"`` only x1, ``"2"`` only x2).
        transform_dim: Size of each modality's vector (100 upstream).
        seed: Seed of the generator.
        label_dims: Variant -> {latent key: leading dims in the label sum};
            default :data:`SYNTHETIC_LABELS`.

    Returns:
        ``x1`` ``(N, transform_dim)``, ``x2`` ``(N, transform_dim)`` float32,
        and variant -> ``(N,)`` int64 labels.

    Example:
        >>> x1, x2, y = generate_synthetic(100, seed=0)
        >>> x1.shape, x2.shape, sorted(y)
        ((100, 100), (100, 100), ['all', 'shared', 'unique1', 'unique2'])
    """
    feature_dims = dict(feature_dims or SYNTHETIC_FEATURES)
    label_dims = label_dims or SYNTHETIC_LABELS
    if num_data < 1 or transform_dim < 1:
        raise DataError(
            f"num_data and transform_dim must be >= 1, got {num_data} and {transform_dim}"
        )
    for m in ("1", "2"):
        if not any(m in k and d > 0 for k, d in feature_dims.items()):
            raise DataError(
                f"no latent feeds x{m}: feature_dims {feature_dims} needs a key containing {m!r}"
            )
    for variant, dims in label_dims.items():
        for key, d in dims.items():
            if key not in feature_dims or not 0 < d <= feature_dims[key]:
                raise DataError(
                    f"label variant {variant!r} sums {d} dims of latent {key!r}, which has "
                    f"{feature_dims.get(key, 0)}; use 1..{feature_dims.get(key, 0)} dims of a "
                    f"key of feature_dims {sorted(feature_dims)}"
                )
    transforms, latents = synthetic_factors(num_data, feature_dims, transform_dim, seed)
    xs = {}
    for m in ("1", "2"):
        w = np.concatenate([latents[k] for k in feature_dims if m in k], axis=1)
        xs[m] = (w @ transforms[m]).astype(np.float32)
    labels = {
        variant: (sum(latents[k][:, :d].sum(axis=1) for k, d in dims.items()) >= 0).astype(np.int64)
        for variant, dims in label_dims.items()
    }
    return xs["1"], xs["2"], labels


def _frozen(d: dict[str, Any]) -> tuple[tuple[str, Any], ...]:
    return tuple((k, _frozen(v) if isinstance(v, dict) else v) for k, v in d.items())


def _thawed(t: tuple[tuple[str, Any], ...]) -> dict[str, Any]:
    return {k: _thawed(v) if isinstance(v, tuple) else v for k, v in t}


@lru_cache(maxsize=4)
def _synthetic_samples(
    num_data: int,
    seed: int,
    label: str,
    feature_dims: tuple[tuple[str, Any], ...],
    label_dims: tuple[tuple[str, Any], ...],
    transform_dim: int,
) -> tuple[Sample, ...]:
    x1, x2, labels = generate_synthetic(
        num_data, _thawed(feature_dims), transform_dim, seed, _thawed(label_dims)
    )
    t1, t2 = torch.from_numpy(x1), torch.from_numpy(x2)
    return tuple(
        Sample(
            i,
            {"x1": [t1[i]], "x2": [t2[i]]},
            int(labels[label][i]),
            {"labels": {k: int(v[i]) for k, v in labels.items()}},
        )
        for i in range(num_data)
    )


def load_synthetic(
    split: str = "train",
    seed: int = 0,
    num_data: int = 6000,
    label: str = "all",
    feature_dims: dict[str, int] | None = None,
    label_dims: dict[str, dict[str, int]] | None = None,
    transform_dim: int = 100,
) -> MultimodalDataset:
    """The synthetic shared/unique data set: modalities ``x1``, ``x2`` (vectors).

    ``label`` picks the main label among the variants of ``label_dims``
    (default ``shared``, ``unique1``, ``unique2``, ``all``); all variants are
    in ``extras["labels"]``. ``split``: a fixed seeded 70/15/15 split.

    Example:
        >>> ds = load_synthetic("train", num_data=200, label="shared")
        >>> len(ds), ds.modalities, tuple(ds[0].observations["x1"][0].shape)
        (140, {'x1': 'vector', 'x2': 'vector'}, (100,))
    """
    split = check_split(split)
    label_dims = label_dims or SYNTHETIC_LABELS
    if label not in label_dims:
        raise DataError(f"unknown synthetic label {label!r}; use one of {sorted(label_dims)}")
    samples = _synthetic_samples(
        num_data,
        seed,
        label,
        _frozen(dict(feature_dims or SYNTHETIC_FEATURES)),
        _frozen(dict(label_dims)),
        transform_dim,
    )
    ds = MultimodalDataset(samples, {"x1": "vector", "x2": "vector"}, name=f"synthetic-{label}")
    return select_split(ds, split, seed)
