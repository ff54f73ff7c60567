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
the digit identity the image alone carries (and vice versa). ``extras["labels"]``
holds ``digit``, ``parity`` and ``large`` for evaluation. Splits are a fixed
70/15/15 permutation (seed 0).

``synthetic``: FactorCL's synthetic generator (Liang et al. 2023,
``Synthetic/dataset.py``) with controllable shared and unique task-relevant
information, as two vector modalities ``x1`` and ``x2``:

1. ``T_m ~ U(0, 1)^{(d_12 + d_m) x D}`` for m = 1, 2;
2. per instance, latents ``w_k ~ N(0, 0.5 I_{d_k})`` for k in (12, 1, 2);
3. ``x1 = [w_12, w_1] T_1`` and ``x2 = [w_12, w_2] T_2`` (noiseless);
4. a label is ``1[sum_k sum_{t < l_k} w_k[t] >= 0]`` for the label dims ``l_k``.

Labels ``shared`` (only w_12), ``unique1`` (only w_1), ``unique2`` (only w_2)
and ``all`` (all three) are all in ``extras["labels"]``; ``label=`` picks the
main one.
"""

from __future__ import annotations

from functools import lru_cache

import numpy as np
import torch

from ..api import Sample
from .dataset import MultimodalDataset, check_split, split_indices

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


def image_attributes(arr: np.ndarray, blank: str | None, thresholds: tuple[float, ...]) -> list[str]:
    """Phrases read off the image itself: ink, slant, and a blanked half."""
    ink = float(arr.sum())
    lo, hi = thresholds
    phrases = [
        "with thin strokes" if ink < lo else "with thick strokes" if ink > hi else "with even strokes"
    ]
    cols = arr.sum(axis=0)
    center = float((cols * np.arange(arr.shape[1])).sum() / max(cols.sum(), 1.0))
    phrases.append(
        "leaning left" if center < 3.3 else "leaning right" if center > 3.9 else "well centred"
    )
    phrases.append(f"with the {blank} half blank" if blank else "fully visible")
    return phrases


def digit_captions(
    digit: int, attributes: list[str], rng: np.random.Generator
) -> list[str]:
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
        image = Image.fromarray(arr, mode="L").convert("RGB")
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
    """The embedded digits + captions data set (see the module docstring)."""
    split = check_split(split)
    samples = _digits_samples(seed, degrade_fraction)
    ds = MultimodalDataset(
        samples, {"image": "image", "text": "text"}, name="digits", default_image_size=16
    )
    if split == "all":
        return ds
    return ds.subset(split_indices(len(samples), seed)[split], name=f"digits-{split}")


SYNTHETIC_LABELS = {
    "shared": {"12": 10},
    "unique1": {"1": 6},
    "unique2": {"2": 6},
    "all": {"12": 10, "1": 6, "2": 6},
}


def generate_synthetic(
    num_data: int = 6000,
    feature_dims: dict[str, int] | None = None,
    transform_dim: int = 100,
    seed: int = 0,
    label_dims: dict[str, dict[str, int]] | None = None,
) -> tuple[np.ndarray, np.ndarray, dict[str, np.ndarray]]:
    """FactorCL's synthetic generator: ``(x1, x2, labels)`` with labels per variant."""
    feature_dims = feature_dims or {"12": 10, "1": 6, "2": 6}
    label_dims = label_dims or SYNTHETIC_LABELS
    for variant, dims in label_dims.items():
        for key, d in dims.items():
            if key not in feature_dims or d > feature_dims[key]:
                raise ValueError(
                    f"label variant {variant!r} uses {d} dims of latent {key!r}, which has "
                    f"{feature_dims.get(key, 0)}"
                )
    rng = np.random.default_rng(seed)
    transforms = {}
    for m in ("1", "2"):
        rows = sum(d for k, d in feature_dims.items() if m in k)
        transforms[m] = rng.uniform(0.0, 1.0, size=(rows, transform_dim))
    latents = {
        k: rng.normal(0.0, np.sqrt(0.5), size=(num_data, d)) for k, d in feature_dims.items()
    }
    xs = {}
    for m in ("1", "2"):
        w = np.concatenate([latents[k] for k in feature_dims if m in k], axis=1)
        xs[m] = (w @ transforms[m]).astype(np.float32)
    labels = {
        variant: (sum(latents[k][:, :d].sum(axis=1) for k, d in dims.items()) >= 0).astype(np.int64)
        for variant, dims in label_dims.items()
    }
    return xs["1"], xs["2"], labels


@lru_cache(maxsize=4)
def _synthetic_samples(num_data: int, seed: int, label: str) -> tuple[Sample, ...]:
    x1, x2, labels = generate_synthetic(num_data, seed=seed)
    if label not in labels:
        raise ValueError(f"unknown synthetic label {label!r}; use one of {sorted(labels)}")
    return tuple(
        Sample(
            i,
            {"x1": [torch.from_numpy(x1[i])], "x2": [torch.from_numpy(x2[i])]},
            int(labels[label][i]),
            {"labels": {k: int(v[i]) for k, v in labels.items()}},
        )
        for i in range(num_data)
    )


def load_synthetic(
    split: str = "train", seed: int = 0, num_data: int = 6000, label: str = "all"
) -> MultimodalDataset:
    """The synthetic shared/unique data set (see the module docstring)."""
    split = check_split(split)
    samples = _synthetic_samples(num_data, seed, label)
    ds = MultimodalDataset(samples, {"x1": "vector", "x2": "vector"}, name=f"synthetic-{label}")
    if split == "all":
        return ds
    return ds.subset(split_indices(num_data, seed)[split], name=f"synthetic-{label}-{split}")
