"""Real image-text data: JSON lines, COCO captions, Karpathy split JSON, CSV/TSV.

Every format groups the captions of one image into the folds (observations)
of one instance: ``observations = {"image": [image name], "text": [captions]}``.
Loading parses the records only: no image is opened before training starts
(see :mod:`lightly_mm_plugins.data.records`). An image name is looked up, when
the sample is read, in ``image_root`` if given, else relative to the
annotation file's folder, then in an ``images/`` folder beside it; a missing,
truncated or non-image file is then a ``file:line`` error naming every path
tried (or, in training with ``--on-error skip``, skipped and counted).

Formats:

* JSON lines (``.jsonl``), one object per image::

      {"image": "a.jpg", "captions": ["a dog", "a brown dog"], "label": 3}

  ``captions`` may be one string (also under ``caption``); ``label`` (int)
  and ``split`` (``train``/``val``/``test``) are optional. An image named on
  several lines gets the captions of all of them.
* COCO captions JSON (``.json``): ``{"images": [{"id", "file_name"}, ...],
  "annotations": [{"image_id", "caption"}, ...]}``; the annotations of one
  image are its folds. Image entries may carry ``label`` and ``split``.
* Karpathy split JSON (``.json``, e.g. ``dataset_flickr30k.json``):
  ``{"images": [{"filename", "sentences": [{"raw"}], "split"}]}`` (``filepath``
  is prepended when given); its ``split`` is used (``restval`` is train).
* CSV/TSV (``.csv``, ``.tsv``; the open_clip habit) with a header naming the
  image and caption columns (``image`` / ``caption`` unless told otherwise,
  optional ``label``, ``split``); rows of one image are its folds.

Problems in the annotation file are reported as ``"<file>:<line>: <problem>;
<fix>"`` (COCO/Karpathy: the line where the offending entry starts, plus its
index). ``on_error="raise"`` (the default) raises a
:class:`~lightly_mm_plugins.errors.DataError` at the first one;
``on_error="skip"`` skips the bad record (an empty caption: only that
caption), counts it per problem in a :class:`LoadReport`, and logs a warning
summary. Problems: ``empty caption``, ``no captions``, ``bad JSON line``,
``missing key``, ``bad label``, ``conflicting label``, ``bad split``, ``bad
row``, ``duplicate id``, ``bad id``. A file that is not UTF-8 text fails at
once, naming the first bad line.

If the records name splits, every record must name one; the data set then
carries them (:attr:`MultimodalDataset.splits`) and :func:`select_split`
uses them instead of the seeded split.

Example:
    >>> ds, report = load_image_text("captions.json", image_root="images/")  # doctest: +SKIP
    >>> ds[0].observations["image"][0].size  # doctest: +SKIP
    (640, 480)
"""

from __future__ import annotations

from pathlib import Path

from ...errors import DataError
from ..dataset import MultimodalDataset
from ..records import ImageFileLoader, open_image
from .coco import load_coco, load_karpathy
from .common import IMAGE_TEXT, ON_ERROR, SPLIT_ALIASES, LoadReport, image_roots
from .delimited import load_csv
from .jsonl import load_jsonl

__all__ = [
    "IMAGE_TEXT",
    "ON_ERROR",
    "SPLIT_ALIASES",
    "ImageFileLoader",
    "LoadReport",
    "image_roots",
    "load_coco",
    "load_csv",
    "load_image_text",
    "load_jsonl",
    "load_karpathy",
    "open_image",
]


def load_image_text(
    path: str | Path,
    image_root: str | Path | None = None,
    on_error: str = "raise",
    csv_img_key: str = "image",
    csv_caption_key: str = "caption",
    csv_separator: str | None = None,
) -> tuple[MultimodalDataset, LoadReport]:
    """Pick the loader by extension: ``.jsonl`` / ``.ndjson``, ``.json`` (COCO captions
    or Karpathy split), ``.csv`` / ``.tsv``."""
    suffix = Path(path).suffix.lower()
    if suffix in (".jsonl", ".ndjson"):
        return load_jsonl(path, image_root, on_error)
    if suffix == ".json":
        return load_coco(path, image_root, on_error)
    if suffix in (".csv", ".tsv"):
        return load_csv(path, image_root, on_error, csv_img_key, csv_caption_key, csv_separator)
    raise DataError(
        f"{path}: unknown format; use a .jsonl (image + captions per line), a COCO captions "
        "or Karpathy split .json, or a .csv / .tsv with image and caption columns"
    )
