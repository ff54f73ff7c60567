"""Multimodal data sets of raw :class:`~lightly_mm_plugins.api.Sample` objects."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

from torch.utils.data import Dataset

from ..api import Sample, View

SPLITS = ("train", "val", "test")


class MultimodalDataset(Dataset[Sample]):
    """Raw samples of one or more modalities.

    Args:
        samples: The instances, or a callable ``i -> Sample`` with ``length``.
        modalities: Modality name -> kind (``image``, ``text``, ``vector``).
        name: Shown in messages and metrics.
        default_image_size: Side length the view should produce (small for
            tiny images such as 8x8 digits).

    Example:
        >>> from lightly_mm_plugins.api import Sample
        >>> ds = MultimodalDataset([Sample(0, {"text": ["a"]})], {"text": "text"})
        >>> len(ds), ds[0].observations["text"]
        (1, ['a'])
    """

    def __init__(
        self,
        samples: Sequence[Sample],
        modalities: dict[str, str],
        name: str = "data",
        default_image_size: int = 32,
        loader: Callable[[Sample], Sample] | None = None,
    ) -> None:
        self.samples = list(samples)
        self.modalities = dict(modalities)
        self.name = name
        self.default_image_size = default_image_size
        self.loader = loader

    def __len__(self) -> int:
        return len(self.samples)

    def __getitem__(self, index: int) -> Sample:
        sample = self.samples[index]
        return self.loader(sample) if self.loader is not None else sample

    @property
    def labels(self) -> list[int | None]:
        return [s.label for s in self.samples]

    def subset(self, indices: Sequence[int], name: str | None = None) -> MultimodalDataset:
        """A data set of the given instances (ids are kept)."""
        return MultimodalDataset(
            [self.samples[i] for i in indices],
            self.modalities,
            name or self.name,
            self.default_image_size,
            self.loader,
        )


class ViewDataset(Dataset[Sample]):
    """Applies a view (training) or its ``eval_view`` (evaluation) to each sample."""

    def __init__(self, dataset: Any, view: View, train: bool = True) -> None:
        self.dataset, self.view, self.train = dataset, view, train
        self.modalities = dict(dataset.modalities)

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitem__(self, index: int) -> Sample:
        sample = self.dataset[index]
        return self.view(sample) if self.train else self.view.eval_view(sample)


def split_indices(
    n: int, seed: int = 0, fractions: tuple[float, float] = (0.7, 0.15)
) -> dict[str, list[int]]:
    """A fixed, seeded train/val/test split of ``range(n)`` (70/15/15 by default)."""
    import numpy as np

    order = np.random.default_rng(seed).permutation(n).tolist()
    n_train = round(fractions[0] * n)
    n_val = round(fractions[1] * n)
    return {
        "train": sorted(order[:n_train]),
        "val": sorted(order[n_train : n_train + n_val]),
        "test": sorted(order[n_train + n_val :]),
    }


def check_split(split: str) -> str:
    if split not in (*SPLITS, "all"):
        from ..errors import DataError

        raise DataError(f"unknown split {split!r}; use one of train, val, test, all")
    return split
