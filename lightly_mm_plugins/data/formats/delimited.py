"""CSV/TSV annotation files (``.csv`` / ``.tsv``, the open_clip habit).

Example:
    >>> ds, _ = load_csv("c.tsv", img_key="filepath", caption_key="title")  # doctest: +SKIP
"""

from __future__ import annotations

import csv
import io
from pathlib import Path

from ...errors import DataError
from ..dataset import MultimodalDataset
from .common import (
    CaptionRecords,
    LoadReport,
    clean_captions,
    finish_dataset,
    image_roots,
    parse_label,
    parse_split,
    read_text,
    start_loading,
)

__all__ = ["load_csv"]


def load_csv(
    path: str | Path,
    image_root: str | Path | None = None,
    on_error: str = "raise",
    img_key: str = "image",
    caption_key: str = "caption",
    separator: str | None = None,
) -> tuple[MultimodalDataset, LoadReport]:
    """A CSV/TSV of image and caption columns (optional ``label``, ``split``).

    Rows of one image become its folds. ``img_key`` / ``caption_key`` name the
    columns (open_clip's ``--csv-img-key`` / ``--csv-caption-key``);
    ``separator`` defaults to a tab for ``.tsv`` files and ``,`` otherwise.
    """
    path, report, err = start_loading(path, on_error)
    sep = separator if separator is not None else ("\t" if path.suffix.lower() == ".tsv" else ",")
    if len(sep) != 1:
        raise DataError(f"CSV separator must be one character, got {sep!r}")
    rec = CaptionRecords(err)
    with io.StringIO(read_text(path), newline="") as f:
        reader = csv.DictReader(f, delimiter=sep)
        header = [h.strip() for h in (reader.fieldnames or [])]
        if img_key not in header or caption_key not in header:
            raise DataError(
                f"{path}:1: bad CSV header: columns {header} lack {img_key!r} and/or "
                f"{caption_key!r}; start the file with a header line such as "
                f"'{img_key}{sep}{caption_key}{sep}label' or name the columns with "
                "--csv-img-key / --csv-caption-key"
            )
        reader.fieldnames = header
        for row in reader:
            where = f"{path}:{reader.line_num}"
            if None in row or any(v is None for v in row.values()):
                err(
                    "bad row",
                    where,
                    f"the row does not have the {len(header)} fields of the header",
                    "quote fields that contain the separator",
                )
                continue
            name = row[img_key].strip()
            if not name:
                err("missing key", where, "the image field is empty", "name the image file")
                continue
            captions = clean_captions(row[caption_key], where, err)
            ok_label, label = parse_label(row.get("label"), where, err)
            ok_split, split = parse_split(row.get("split"), where, err)
            if not (captions and ok_label and ok_split):  # a row is one caption
                continue
            rec.add(name, captions, label, split, reader.line_num, where)
    return finish_dataset(rec, path, report, err, image_roots(path, image_root))
