"""FactorCL's synthetic benchmark with controllable shared and unique information.

The generator of the official ``Synthetic/dataset.py`` (``generate_data`` +
``get_labels``), step by step, with its own ``numpy.random.Generator``:

1. Latent blocks are named by the modalities that see them: ``"12"`` (shared by
   x1 and x2), ``"1"`` (unique to x1), ``"2"`` (unique to x2); ``feature_dims``
   gives each block's size ``d_k`` (official notebook ``{"12": 10, "1": 6, "2": 6}``).
2. One transform per modality, drawn first (modality 1, then 2):
   ``T_m ~ U(0, 1)^{(sum of d_k over blocks k containing m) x 100}``.
3. Per sample and block: ``w_k ~ N(0, 0.5 I_{d_k})`` (covariance ``0.5 I``).
4. ``x_m = [w_k for blocks k containing str(m), in dict order] @ T_m`` (100-d,
   noiseless): ``x1 = [w_12, w_1] T_1``, ``x2 = [w_12, w_2] T_2``.
5. Label: ``y = 1[sigmoid(mean(cat_k w_k[:l_k])) >= 0.5]`` with
   ``l_k = label_dims[k]`` (``get_labels``); which blocks enter ``label_dims``
   sets where the task-relevant information lives.

Label variants (same latents, different ``label_dims``): ``"shared"`` uses only
``"12"``; ``"unique1"`` / ``"unique2"`` only ``"1"`` / ``"2"``; ``"unique"`` both
unique blocks; ``"both"`` all blocks (the notebook's setting).

Because each ``x_m`` is an injective linear map of its latents, every label is
linearly separable from the raw ``[x1, x2]`` (a logistic regression reaches
~99%): the benchmark measures how much task information an *embedding* keeps.

Deviation from upstream: the random stream. Upstream draws from the global
``np.random`` one sample at a time (``multivariate_normal`` per block); here
each block is drawn for all samples at once from ``Generator.normal`` with
standard deviation ``sqrt(0.5)``: the same distribution, not the same numbers.

Example:
    >>> data = generate_data(100, seed=0)
    >>> data.x1.shape, data.x2.shape, data.labels.shape
    ((100, 100), (100, 100), (100,))
    >>> sorted(data.label_variants)
    ['both', 'shared', 'unique', 'unique1', 'unique2']
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:
    from lightly_mm_plugins.api import Sample

__all__ = [
    "DEFAULT_FEATURE_DIMS",
    "LABEL_VARIANTS",
    "SyntheticData",
    "generate_data",
    "labels_from_latents",
    "synthetic_samples",
    "variant_label_dims",
]

#: The official notebook's latent block sizes.
DEFAULT_FEATURE_DIMS: dict[str, int] = {"12": 10, "1": 6, "2": 6}
#: Standard deviation of the latents (upstream covariance ``0.5 I``).
LATENT_STD = float(np.sqrt(0.5))
#: Output size of every modality (upstream ``default_transform_dim``).
TRANSFORM_DIM = 100
#: Names of the label variants and the latent blocks each uses.
LABEL_VARIANTS: dict[str, tuple[str, ...]] = {
    "shared": ("12",),
    "unique1": ("1",),
    "unique2": ("2",),
    "unique": ("1", "2"),
    "both": ("12", "1", "2"),
}


@dataclass
class SyntheticData:
    """Generated arrays.

    Attributes:
        xs: One ``(n, 100)`` float array per modality (``xs[0]`` is x1).
        labels: ``(n,)`` int labels from ``label_dims``.
        latents: Block name -> ``(n, d_k)`` latent array ``w_k``.
        transforms: One ``(d_m, 100)`` matrix ``T_m`` per modality.
        label_variants: Variant name -> ``(n,)`` int labels (see ``LABEL_VARIANTS``).
        feature_dims: The block sizes used.
        label_dims: The label dims used for ``labels``.
    """

    xs: list[np.ndarray]
    labels: np.ndarray
    latents: dict[str, np.ndarray]
    transforms: list[np.ndarray]
    label_variants: dict[str, np.ndarray] = field(default_factory=dict)
    feature_dims: dict[str, int] = field(default_factory=dict)
    label_dims: dict[str, int] = field(default_factory=dict)

    @property
    def x1(self) -> np.ndarray:
        return self.xs[0]

    @property
    def x2(self) -> np.ndarray:
        return self.xs[1]


def _check_dims(feature_dims: Mapping[str, int], num_modalities: int) -> None:
    if not feature_dims:
        raise ValueError("feature_dims is empty; give latent block sizes like {'12': 10}")
    for key, d in feature_dims.items():
        if not key or not all(c.isdigit() and 1 <= int(c) <= num_modalities for c in key):
            raise ValueError(
                f"feature_dims key {key!r} must name modalities 1..{num_modalities} "
                "(e.g. '12' shared, '1' unique to x1)"
            )
        if int(d) < 1:
            raise ValueError(f"feature_dims[{key!r}] must be >= 1, got {d}")
    for m in range(1, num_modalities + 1):
        if not any(str(m) in key for key in feature_dims):
            raise ValueError(f"no latent block feeds modality {m}; add a key containing {m!r}")


def labels_from_latents(
    latents: Mapping[str, np.ndarray], label_dims: Mapping[str, int]
) -> np.ndarray:
    """Upstream ``get_labels``: ``1[sigmoid(mean(cat_k w_k[:, :l_k])) >= 0.5]`` as ``(n,)`` int."""
    if not label_dims:
        raise ValueError("label_dims is empty; name at least one latent block")
    parts = []
    for key, d in label_dims.items():
        if key not in latents:
            raise ValueError(f"label_dims names block {key!r}; latents have {sorted(latents)}")
        width = latents[key].shape[1]
        if not 1 <= int(d) <= width:
            raise ValueError(f"label_dims[{key!r}] must lie in [1, {width}], got {d}")
        parts.append(latents[key][:, : int(d)])
    mean = np.concatenate(parts, axis=1).mean(axis=1)
    prob = 1.0 / (1.0 + np.exp(-mean))
    return (prob >= 0.5).astype(np.int64)


def variant_label_dims(
    variant: str, feature_dims: Mapping[str, int], label_dims: Mapping[str, int] | None = None
) -> dict[str, int]:
    """``label_dims`` of a named variant (sizes from ``label_dims``, else ``feature_dims``)."""
    if variant not in LABEL_VARIANTS:
        raise ValueError(f"unknown label variant {variant!r}; use one of {sorted(LABEL_VARIANTS)}")
    sizes = dict(label_dims or feature_dims)
    keys = [k for k in LABEL_VARIANTS[variant] if k in feature_dims]
    if not keys:
        raise ValueError(f"variant {variant!r} needs blocks {LABEL_VARIANTS[variant]}, none exist")
    return {k: int(sizes.get(k, feature_dims[k])) for k in keys}


def generate_data(
    num_data: int,
    feature_dims: Mapping[str, int] | None = None,
    label_dims: Mapping[str, int] | None = None,
    num_modalities: int = 2,
    transform_dim: int = TRANSFORM_DIM,
    seed: int | None = 0,
    rng: np.random.Generator | None = None,
) -> SyntheticData:
    """The official generator (``Synthetic/dataset.py``), see the module docstring.

    Args:
        num_data: Number of samples ``n``.
        feature_dims: Latent block sizes (default ``{"12": 10, "1": 6, "2": 6}``).
        label_dims: Label dims per block (default: ``feature_dims``, the notebook).
        num_modalities: Number of modalities (blocks are named by digits).
        transform_dim: Output size of every modality (upstream 100).
        seed: Seed of a fresh ``numpy.random.default_rng`` (ignored when ``rng``).
        rng: A generator to draw from instead.

    Returns:
        :class:`SyntheticData` with ``x1``, ``x2``, ``labels`` and all variants
        (variants whose blocks are missing are left out).
    """
    if num_data < 1:
        raise ValueError(f"num_data must be >= 1, got {num_data}")
    feature_dims = dict(feature_dims or DEFAULT_FEATURE_DIMS)
    _check_dims(feature_dims, num_modalities)
    label_dims = dict(label_dims or feature_dims)
    gen = rng if rng is not None else np.random.default_rng(seed)
    # 2. transforms first, modality by modality
    modality_keys = [[k for k in feature_dims if str(m) in k] for m in range(1, num_modalities + 1)]
    transforms = [
        gen.uniform(0.0, 1.0, (sum(feature_dims[k] for k in keys), transform_dim))
        for keys in modality_keys
    ]
    # 3. latents, block by block in dict order
    latents = {k: gen.normal(0.0, LATENT_STD, (num_data, int(d))) for k, d in feature_dims.items()}
    # 4. observations
    xs = [
        np.concatenate([latents[k] for k in keys], axis=1) @ t
        for keys, t in zip(modality_keys, transforms)
    ]
    # 5. labels
    labels = labels_from_latents(latents, label_dims)
    variants = {}
    for name, keys in LABEL_VARIANTS.items():
        if all(k in feature_dims for k in keys):
            variants[name] = labels_from_latents(
                latents, variant_label_dims(name, feature_dims, label_dims)
            )
    return SyntheticData(
        xs=xs,
        labels=labels,
        latents=latents,
        transforms=transforms,
        label_variants=variants,
        feature_dims=feature_dims,
        label_dims=label_dims,
    )


def synthetic_samples(
    n: int,
    seed: int = 0,
    feature_dims: Mapping[str, int] | None = None,
    label_dims: Mapping[str, int] | None = None,
    label_variant: str | None = None,
    modality_names: tuple[str, ...] = ("x1", "x2"),
) -> list[Sample]:
    """The synthetic data as :class:`lightly_mm_plugins.api.Sample` objects.

    Each sample has observations ``{"x1": [vec], "x2": [vec]}`` (float32
    tensors ``(100,)``), ``label`` from ``label_variant`` (None: from
    ``label_dims``, default all blocks = ``"both"``), and every variant's label
    in ``extras["labels"]``.

    Example:
        >>> samples = synthetic_samples(4, seed=1)
        >>> samples[0].observations["x1"][0].shape, sorted(samples[0].extras["labels"])[:2]
        (torch.Size([100]), ['both', 'shared'])
    """
    import torch

    from lightly_mm_plugins.api import Sample

    data = generate_data(n, feature_dims, label_dims, num_modalities=len(modality_names), seed=seed)
    labels = data.labels if label_variant is None else _variant(data, label_variant)
    xs = [torch.from_numpy(x.astype(np.float32)) for x in data.xs]
    out = []
    for i in range(n):
        extras: dict[str, Any] = {
            "labels": {name: int(v[i]) for name, v in data.label_variants.items()}
        }
        obs = {name: [x[i].clone()] for name, x in zip(modality_names, xs)}
        out.append(Sample(instance_id=i, observations=obs, label=int(labels[i]), extras=extras))
    return out


def _variant(data: SyntheticData, name: str) -> np.ndarray:
    if name not in data.label_variants:
        raise ValueError(
            f"unknown label variant {name!r}; available: {sorted(data.label_variants)}"
        )
    return data.label_variants[name]
