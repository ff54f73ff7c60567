"""Multimodal data sets of raw :class:`~lightly_mm_plugins.api.Sample` objects.

A :class:`MultimodalDataset` holds instances whose observations are *raw*:
PIL images (in memory, or file paths opened lazily by a loader), strings, and
1-d float tensors. A :class:`ViewDataset` runs a view over it, giving the
model-ready samples that :func:`~lightly_mm_plugins.data.collate_samples`
stacks. Splits are fixed lists of indices: :func:`split_indices` draws a
seeded 70/15/15 permutation, :func:`select_split` prefers splits a file gave.

Example:
    >>> from lightly_mm_plugins.api import Sample
    >>> ds = MultimodalDataset(
    ...     [Sample(i, {"text": [f"caption {i}"]}, label=i % 2) for i in range(10)],
    ...     {"text": "text"},
    ... )
    >>> len(ds), ds[3].observations["text"], ds.labels.tolist()[:4]
    (10, ['caption 3'], [0, 1, 0, 1])
    >>> train = select_split(ds, "train", seed=0)
    >>> len(train), len(select_split(ds, "val")), len(select_split(ds, "test"))
    (7, 2, 1)
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any

import torch
from torch import Tensor
from torch.utils.data import Dataset

from ..api import MODALITY_KINDS, Sample, View
from ..errors import DataError

SPLITS = ("train", "val", "test")
#: Default split fractions (train, val); test gets the rest.
SPLIT_FRACTIONS = (0.7, 0.15)


class MultimodalDataset(Dataset[Sample]):
    """Raw samples of one or more modalities.

    Args:
        samples: The instances. Their ``instance_id`` must be unique; it is
            kept by :meth:`subset`, so ids stay unique across splits.
        modalities: Modality name -> kind (``image``, ``text``, ``vector``).
        name: Shown in messages and metrics.
        default_image_size: Side length the view should produce (small for
            tiny images such as the 8x8 digits).
        loader: Optional ``Sample -> Sample`` run by :meth:`__getitem__`,
            e.g. to open image files lazily (must be picklable for worker
            processes: a module-level function or class instance).
        splits: Optional split name -> indices given by the source (a file
            with a ``split`` column); :func:`select_split` prefers them.
        report: What loading skipped (:class:`~lightly_mm_plugins.data.LoadReport`).
    """

    def __init__(
        self,
        samples: Sequence[Sample],
        modalities: Mapping[str, str],
        name: str = "data",
        default_image_size: int = 32,
        loader: Callable[[Sample], Sample] | None = None,
        splits: Mapping[str, Sequence[int]] | None = None,
        report: Any = None,
    ) -> None:
        bad = {m: k for m, k in modalities.items() if k not in MODALITY_KINDS}
        if bad:
            raise DataError(f"unknown modality kinds {bad}; use one of {', '.join(MODALITY_KINDS)}")
        # A record table (file data) stays lazy: its samples are made on access.
        self.samples: Sequence[Sample] = samples if hasattr(samples, "take") else list(samples)
        self.modalities = dict(modalities)
        self.name = name
        self.default_image_size = default_image_size
        self.loader = loader
        self.splits = {k: list(v) for k, v in splits.items()} if splits is not None else None
        self.report = report

    def __len__(self) -> int:
        return len(self.samples)

    def __getitem__(self, index: int) -> Sample:
        sample = self.samples[index]
        return self.loader(sample) if self.loader is not None else sample

    @property
    def labels(self) -> Tensor | None:
        """``(N,)`` long tensor of the instances' labels, or None if any is missing."""
        table_labels = getattr(self.samples, "labels", None)
        labels = list(table_labels) if table_labels is not None else [s.label for s in self.samples]
        if not labels or any(y is None for y in labels):
            return None
        return torch.tensor([int(y) for y in labels], dtype=torch.long)  # type: ignore[arg-type]

    @property
    def instance_ids(self) -> Tensor:
        """``(N,)`` long tensor of instance ids, without loading any observation."""
        table_ids = getattr(self.samples, "instance_ids", None)
        if table_ids is not None:
            return torch.as_tensor(table_ids, dtype=torch.long)
        return torch.tensor([s.instance_id for s in self.samples], dtype=torch.long)

    def subset(self, indices: Sequence[int], name: str | None = None) -> MultimodalDataset:
        """A data set of the instances at ``indices`` (instance ids are kept)."""
        n = len(self.samples)
        bad = [i for i in indices if not 0 <= int(i) < n]
        if bad:
            raise DataError(f"subset indices {bad[:5]} out of range for {n} instances")
        take = getattr(self.samples, "take", None)
        return MultimodalDataset(
            take(indices) if take is not None else [self.samples[int(i)] for i in indices],
            self.modalities,
            name or self.name,
            self.default_image_size,
            self.loader,
            report=self.report,
        )

    def __repr__(self) -> str:
        return f"MultimodalDataset(name={self.name!r}, n={len(self)}, modalities={self.modalities})"


class ViewDataset(Dataset[Sample]):
    """Applies ``view(sample)`` (``train=True``) or ``view.eval_view(sample)``.

    Example:
        >>> from lightly_mm_plugins.api import Sample
        >>> from lightly_mm_plugins.views import ModalityView
        >>> raw = MultimodalDataset([Sample(0, {"x": [[1.0, 2.0]]})], {"x": "vector"})
        >>> ViewDataset(raw, ModalityView({"x": "vector"}), train=False)[0].observations["x"]
        [tensor([1., 2.])]
    """

    def __init__(self, dataset: Any, view: View, train: bool = True) -> None:
        self.dataset, self.view, self.train = dataset, view, train
        self.modalities = dict(dataset.modalities)
        self.name = getattr(dataset, "name", "data")

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitem__(self, index: int) -> Sample:
        sample = self.dataset[index]
        return self.view(sample) if self.train else self.view.eval_view(sample)


def split_indices(
    n: int, seed: int = 0, fractions: tuple[float, float] = SPLIT_FRACTIONS
) -> dict[str, list[int]]:
    """A fixed, seeded train/val/test split of ``range(n)`` (70/15/15 by default).

    ``train`` gets ``round(0.7 n)`` indices of a ``numpy.random.default_rng(seed)``
    permutation, ``val`` the next ``round(0.15 n)``, ``test`` the rest; each
    list is sorted. The same ``(n, seed)`` always gives the same split.
    """
    import numpy as np

    train_frac, val_frac = fractions
    if train_frac < 0 or val_frac < 0 or train_frac + val_frac > 1:
        raise ValueError(f"split fractions must be >= 0 and sum to <= 1, got {fractions}")
    order = np.random.default_rng(seed).permutation(n).tolist()
    n_train = round(train_frac * n)
    n_val = min(round(val_frac * n), n - n_train)
    return {
        "train": sorted(order[:n_train]),
        "val": sorted(order[n_train : n_train + n_val]),
        "test": sorted(order[n_train + n_val :]),
    }


def check_split(split: str) -> str:
    """``split`` if it is ``train``, ``val``, ``test`` or ``all``; else a DataError."""
    if split not in (*SPLITS, "all"):
        raise DataError(f"unknown split {split!r}; use one of train, val, test, all")
    return split


def select_split(
    dataset: MultimodalDataset,
    split: str,
    seed: int = 0,
    fractions: tuple[float, float] = SPLIT_FRACTIONS,
) -> MultimodalDataset:
    """One split of ``dataset``: the source's own splits if it has them, else a seeded
    split of instances with ``fractions`` (train, val; test gets the rest)."""
    check_split(split)
    if split == "all":
        return dataset
    splits = (
        dataset.splits
        if dataset.splits is not None
        else split_indices(len(dataset), seed, fractions)
    )
    return dataset.subset(splits.get(split, []), name=f"{dataset.name}-{split}")
