"""Multimodal data: data sets, real formats, embedded defaults, collation.

Example:
    >>> from lightly_mm_plugins.data import load_dataset
    >>> train = load_dataset("default", split="train")
    >>> train.modalities
    {'image': 'image', 'text': 'text'}
"""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path
from typing import Any

from ..errors import DataError
from .collate import collate_samples
from .dataset import (
    MultimodalDataset,
    ViewDataset,
    check_split,
    select_split,
    split_indices,
)
from .embedded import (
    generate_synthetic,
    load_digits_captions,
    load_synthetic,
    synthetic_factors,
)
from .formats import (
    ImageFileLoader,
    LoadReport,
    load_coco,
    load_csv,
    load_image_text,
    load_jsonl,
)

__all__ = [
    "ImageFileLoader",
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
    "select_split",
    "split_indices",
    "synthetic_factors",
]

FILE_SUFFIXES = (".jsonl", ".ndjson", ".json", ".csv")
ACCEPTED = (
    "use 'default' (or 'digits': embedded digits + captions), "
    "'synthetic[:shared|unique1|unique2|all]' (FactorCL synthetic vectors), or the path of "
    "an annotation file: .jsonl (image + captions per line), COCO captions .json, or "
    ".csv with image,caption columns"
)


@lru_cache(maxsize=4)
def _load_file(
    path: str, stamp: tuple[int, int], image_root: str | None, on_error: str
) -> MultimodalDataset:
    # ``stamp`` (mtime, size) makes an edited file load afresh; train and test
    # splits of one file share one parse and one image check.
    ds, _ = load_image_text(path, image_root, on_error)
    return ds


def load_dataset(
    spec: str = "default",
    split: str = "train",
    on_error: str = "raise",
    seed: int = 0,
    **kwargs: Any,
) -> MultimodalDataset:
    """A data set by name or path: one split of it.

    Args:
        spec: ``default`` / ``digits`` (embedded digits + captions),
            ``synthetic`` or ``synthetic:<label>`` (FactorCL synthetic vectors,
            label ``all``/``shared``/``unique1``/``unique2``), or an annotation
            file (``.jsonl``, COCO ``.json``, ``.csv``; see
            :mod:`lightly_mm_plugins.data.formats`).
        split: ``train``, ``val``, ``test`` or ``all``. Files are split by a
            fixed seeded 70/15/15 split of instances unless they name splits.
        on_error: Files only: ``raise`` (fail fast) or ``skip`` (skip bad
            records, count them in ``dataset.report``, log a summary).
        seed: Seed of the split (and of the embedded data's generation).
        **kwargs: Passed on: ``degrade_fraction`` (digits); ``num_data``,
            ``label``, ``feature_dims``, ``label_dims``, ``transform_dim``
            (synthetic); ``image_root`` (files).

    Raises:
        DataError: an unknown spec or split, a missing file, or bad records
            (``on_error="raise"``).

    Example:
        >>> test = load_dataset("synthetic:shared", split="test", num_data=100)
        >>> len(test), test[0].extras["labels"]["shared"] == test[0].label
        (15, True)
    """
    check_split(split)
    if on_error not in ("raise", "skip"):
        raise DataError(f"on_error must be 'raise' or 'skip', got {on_error!r}")
    if spec in ("default", "digits"):
        return load_digits_captions(split, seed=seed, **kwargs)
    if spec == "synthetic" or spec.startswith("synthetic:"):
        label = spec.partition(":")[2] or kwargs.pop("label", "all")
        return load_synthetic(split, seed=seed, label=label, **kwargs)
    path = Path(spec)
    if path.suffix.lower() in FILE_SUFFIXES:
        if not path.is_file():
            raise DataError(f"{spec}: annotation file not found; check the path or {ACCEPTED}")
        image_root = kwargs.pop("image_root", None)
        if kwargs:
            raise DataError(f"unexpected arguments {sorted(kwargs)} for data file {spec!r}")
        stat = path.stat()
        ds = _load_file(
            str(path.resolve()),
            (stat.st_mtime_ns, stat.st_size),
            None if image_root is None else str(Path(image_root).resolve()),
            on_error,
        )
        return select_split(ds, split, seed)
    raise DataError(f"unknown data {spec!r}: {ACCEPTED}")
