"""JSON-lines annotation files (``.jsonl`` / ``.ndjson``): one image per line.

Example:
    >>> ds, report = load_jsonl("captions.jsonl", image_root="images/")  # doctest: +SKIP
"""

from __future__ import annotations

import io
import json
from pathlib import Path

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

__all__ = ["load_jsonl"]


def load_jsonl(
    path: str | Path, image_root: str | Path | None = None, on_error: str = "raise"
) -> tuple[MultimodalDataset, LoadReport]:
    """A JSON-lines file, one image with its captions (and optional label) per line."""
    path, report, err = start_loading(path, on_error)
    rec = CaptionRecords(err)
    loads, JSONDecodeError = json.loads, json.JSONDecodeError
    with io.StringIO(read_text(path), newline=None) as f:
        for lineno, line in enumerate(f, start=1):
            if not line.strip():
                continue
            where = f"{path}:{lineno}"
            try:
                record = loads(line)
            except JSONDecodeError as exc:
                err(
                    "bad JSON line",
                    where,
                    f"invalid JSON ({exc.msg} at column {exc.colno})",
                    "write one JSON object per line",
                )
                continue
            if not isinstance(record, dict):
                err(
                    "bad JSON line",
                    where,
                    f"expected a JSON object, got {type(record).__name__}",
                    'write {"image": ..., "captions": [...]}',
                )
                continue
            image = record.get("image")
            if not isinstance(image, str) or not image.strip():
                err("missing key", where, 'no "image" file name', 'add "image": "<file>"')
                continue
            if "captions" not in record and "caption" not in record:
                err("missing key", where, 'no "captions"', 'add "captions": ["...", ...]')
                continue
            captions = clean_captions(record.get("captions", record.get("caption")), where, err)
            ok_label, label = parse_label(record.get("label"), where, err)
            ok_split, split = parse_split(record.get("split"), where, err)
            if not (ok_label and ok_split):
                continue
            rec.add(image.strip(), captions, label, split, lineno, where)
    return finish_dataset(rec, path, report, err, image_roots(path, image_root))
