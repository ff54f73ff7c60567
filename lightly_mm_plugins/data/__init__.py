"""Multimodal data: data sets, real formats, embedded defaults, collation.

Example:
    >>> from lightly_mm_plugins.data import load_dataset
    >>> train = load_dataset("default", split="train")
    >>> train.modalities
    {'image': 'image', 'text': 'text'}
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from ..errors import DataError
from .collate import collate_samples
from .dataset import MultimodalDataset, ViewDataset, check_split, split_indices
from .embedded import generate_synthetic, load_digits_captions, load_synthetic
from .formats import LoadReport, load_coco, load_csv, load_image_text, load_jsonl

__all__ = [
    "LoadReport",
    "MultimodalDataset",
    "ViewDataset",
    "collate_samples",
    "generate_synthetic",
    "load_coco",
    "load_csv",
    "load_dataset",
    "load_digits_captions",
    "load_image_text",
    "load_jsonl",
    "load_synthetic",
    "split_indices",
]


def load_dataset(
    spec: str = "default",
    split: str = "train",
    on_error: str = "raise",
    seed: int = 0,
    **kwargs: Any,
) -> MultimodalDataset:
    """A data set by name or path, one split of a fixed seeded 70/15/15 split.

    ``spec``: ``default`` / ``digits`` (embedded digits + captions),
    ``synthetic`` or ``synthetic:<label>`` (FactorCL synthetic vectors, label
    ``all``/``shared``/``unique1``/``unique2``), or an annotation file
    (``.jsonl``, COCO ``.json``, ``.csv``).
    """
    check_split(split)
    if spec in ("default", "digits"):
        return load_digits_captions(split, seed=seed, **kwargs)
    if spec == "synthetic" or spec.startswith("synthetic:"):
        label = spec.partition(":")[2] or kwargs.pop("label", "all")
        return load_synthetic(split, seed=seed, label=label, **kwargs)
    path = Path(spec)
    if path.suffix.lower() in (".jsonl", ".ndjson", ".json", ".csv"):
        if not path.is_file():
            raise DataError(f"data file {spec!r} not found")
        ds, _ = load_image_text(path, on_error=on_error, **kwargs)
        if split == "all":
            return ds
        return ds.subset(split_indices(len(ds), seed)[split], name=f"{ds.name}-{split}")
    raise DataError(
        f"unknown data {spec!r}: use 'default', 'synthetic[:shared|unique1|unique2|all]', or "
        "a .jsonl / COCO .json / .csv annotation file"
    )
