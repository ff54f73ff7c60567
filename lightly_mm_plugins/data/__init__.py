"""Multimodal data: data sets, real formats, embedded defaults, collation.

Example:
    >>> from lightly_mm_plugins.data import load_dataset
    >>> train = load_dataset("default", split="train")
    >>> train.modalities
    {'image': 'image', 'text': 'text'}
"""

from __future__ import annotations

import difflib
import inspect
from collections.abc import Callable
from functools import lru_cache
from pathlib import Path
from typing import Any

from ..errors import DataError
from .collate import collate_samples
from .dataset import (
    SPLIT_FRACTIONS,
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
    load_karpathy,
)
from .records import BadRecordError, SampleTable

__all__ = [
    "BadRecordError",
    "check_data_spec",
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
    "load_karpathy",
    "load_synthetic",
    "SampleTable",
    "select_split",
    "split_indices",
    "synthetic_factors",
]

FILE_SUFFIXES = (".jsonl", ".ndjson", ".json", ".csv", ".tsv")
#: Keyword arguments an annotation file accepts (see :func:`load_dataset`).
FILE_KWARGS = ("image_root", "csv_img_key", "csv_caption_key", "csv_separator")
NAMED = (
    "default",
    "digits",
    "synthetic",
    "synthetic:shared",
    "synthetic:unique1",
    "synthetic:unique2",
    "synthetic:all",
)
ACCEPTED = (
    "use 'default' (or 'digits': embedded digits + captions), "
    "'synthetic[:shared|unique1|unique2|all]' (FactorCL synthetic vectors), WebDataset "
    "shards ('shards/{000000..000099}.tar'), or the path of "
    "an annotation file: .jsonl (image + captions per line), COCO captions or Karpathy "
    "split .json, or .csv / .tsv with image and caption columns"
)


@lru_cache(maxsize=4)
def _load_file(
    path: str, stamp: tuple[int, int], on_error: str, options: tuple[tuple[str, Any], ...]
) -> MultimodalDataset:
    # ``stamp`` (mtime, size) makes an edited file load afresh; train and test
    # splits of one file share one parse.
    ds, _ = load_image_text(path, on_error=on_error, **dict(options))
    return ds


def load_dataset(
    spec: str = "default",
    split: str = "train",
    on_error: str = "raise",
    seed: int = 0,
    split_fractions: tuple[float, float] = SPLIT_FRACTIONS,
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
    kind = check_data_spec(spec)
    if kind == "digits":
        _check_kwargs(load_digits_captions, kwargs, spec)
        ds = load_digits_captions("all", seed=seed, **kwargs)
        return select_split(ds, split, seed, tuple(split_fractions))  # type: ignore[arg-type]
    if kind == "synthetic":
        label = spec.partition(":")[2] or kwargs.pop("label", "all")
        _check_kwargs(load_synthetic, kwargs, spec)
        ds = load_synthetic("all", seed=seed, label=label, **kwargs)
        return select_split(ds, split, seed, tuple(split_fractions))  # type: ignore[arg-type]
    if kind == "shards":
        from .shards import ShardDataset

        if kwargs:
            raise DataError(f"unexpected arguments {sorted(kwargs)} for shards {spec!r}")
        if split not in ("train", "all"):
            raise DataError(
                f"shards {spec!r} carry no held-out {split!r} split; evaluate on separate "
                "data (--test-data FILE or shards) or pass --no-eval"
            )
        return ShardDataset(spec, on_error=on_error)  # type: ignore[return-value]
    path = Path(spec)
    unknown = sorted(k for k in kwargs if k not in FILE_KWARGS)
    if unknown:
        raise DataError(
            f"unexpected arguments {unknown} for data file {spec!r}; it accepts {list(FILE_KWARGS)}"
        )
    options = {k: v for k, v in kwargs.items() if v is not None}
    if "image_root" in options:
        root = Path(options["image_root"])
        if not root.is_dir():
            raise DataError(
                f"image root {str(root)!r} is not a folder; pass the folder that holds the "
                "images named in the annotation file"
            )
        options["image_root"] = str(root.resolve())
    stat = path.stat()
    ds = _load_file(
        str(path.resolve()),
        (stat.st_mtime_ns, stat.st_size),
        on_error,
        tuple(sorted(options.items())),
    )
    return select_split(ds, split, seed, tuple(split_fractions))  # type: ignore[arg-type]


def check_data_spec(spec: str) -> str:
    """What ``spec`` names, without loading anything: ``digits``, ``synthetic``, ``file``
    or ``shards`` (a ``.tar`` pattern such as ``shards/{000..009}.tar``).

    Raises a :class:`DataError` for an unknown spec (with the closest name) or
    a missing annotation file, so a command can fail before it loads models.
    """
    if spec in ("default", "digits"):
        return "digits"
    from .shards import expand_shards, is_shard_spec

    if is_shard_spec(spec):
        expand_shards(spec)
        return "shards"
    if spec == "synthetic" or spec.startswith("synthetic:"):
        return "synthetic"
    path = Path(spec)
    if path.suffix.lower() in FILE_SUFFIXES:
        if not path.is_file():
            raise DataError(f"{spec}: annotation file not found; check the path or {ACCEPTED}")
        return "file"
    msg = f"unknown data {spec!r}: {ACCEPTED}"
    close = difflib.get_close_matches(spec, NAMED, n=1, cutoff=0.6)
    if close:
        msg += f"; did you mean {close[0]!r}?"
    raise DataError(msg)


def _check_kwargs(loader: Callable[..., Any], kwargs: dict[str, Any], spec: str) -> None:
    """A DataError naming the arguments ``loader`` does not take (not a bare TypeError)."""
    params = inspect.signature(loader).parameters
    accepted = [p for p in params if p not in ("split", "seed", "label")]
    unknown = sorted(k for k in kwargs if k not in accepted)
    if unknown:
        raise DataError(f"unexpected arguments {unknown} for data {spec!r}; it accepts {accepted}")
