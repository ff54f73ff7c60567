"""COCO captions and Karpathy split JSON annotation files (``.json``).

A ``.json`` file is read as COCO captions unless it is a Karpathy split file
(``images[*].sentences``, no ``annotations``); problems name the line where the
offending array entry starts, plus its index.

Example:
    >>> ds, report = load_coco("captions_train2017.json", image_root="train2017/")  # doctest: +SKIP
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from ...errors import DataError
from ..dataset import MultimodalDataset
from ..records import JSONLines
from .common import (
    CaptionRecords,
    ErrorPolicy,
    LoadReport,
    clean_captions,
    finish_dataset,
    image_roots,
    parse_label,
    parse_split,
    read_text,
    start_loading,
)

__all__ = ["load_coco", "load_karpathy"]


class _Where:
    """``file:line (array[k])`` of a JSON array element, located only when printed."""

    def __init__(self, path: Path, lines: JSONLines, array: str, k: int) -> None:
        self.path, self.lines, self.array, self.k = path, lines, array, k

    def __str__(self) -> str:
        return f"{self.path}:{self.lines.line(self.array, self.k)} ({self.array}[{self.k}])"

    def __format__(self, spec: str) -> str:
        return format(str(self), spec)


def _good_id(value: Any) -> bool:
    return isinstance(value, (int, str)) and not isinstance(value, bool)


def _read_json(path: Path) -> tuple[str, Any]:
    text = read_text(path)
    try:
        return text, json.loads(text)
    except json.JSONDecodeError as exc:
        raise DataError(
            f"{path}:{exc.lineno}: bad JSON: {exc.msg} at column {exc.colno}; fix the file"
        ) from exc


def _is_karpathy(data: Any) -> bool:
    """A Karpathy split file: ``images`` entries with ``sentences``, no ``annotations``."""
    return (
        isinstance(data, dict)
        and isinstance(data.get("images"), list)
        and "annotations" not in data
        and any(isinstance(i, dict) and "sentences" in i for i in data["images"][:10])
    )


def load_coco(
    path: str | Path, image_root: str | Path | None = None, on_error: str = "raise"
) -> tuple[MultimodalDataset, LoadReport]:
    """A COCO captions JSON; all captions of an image are its folds.

    A Karpathy split file (``images[*].sentences``) is read by :func:`load_karpathy`.
    """
    path, report, err = start_loading(path, on_error)
    text, data = _read_json(path)
    if _is_karpathy(data):
        return _karpathy(path, text, data, report, err, image_root)
    if not isinstance(data, dict) or not all(
        isinstance(data.get(k), list) for k in ("images", "annotations")
    ):
        raise DataError(
            f"{path}:1: missing key: a COCO captions file needs lists 'images' and "
            "'annotations' (a Karpathy split file: 'images' with 'sentences'); use one of "
            "them or a .jsonl / .csv file"
        )
    lines = JSONLines(text)

    def where(array: str, k: int) -> _Where:
        return _Where(path, lines, array, k)

    rec = CaptionRecords(err)
    slot: dict[Any, int] = {}  # image id -> row in rec
    dropped: set[Any] = set()  # ids of images already reported; their captions go quietly
    for k, img in enumerate(data["images"]):
        if not isinstance(img, dict) or "id" not in img or "file_name" not in img:
            err("missing key", where("images", k), "needs 'id' and 'file_name'", "add them")
            if isinstance(img, dict) and "id" in img and _good_id(img["id"]):
                dropped.add(img["id"])
            continue
        if not _good_id(img["id"]):
            err(
                "bad id",
                where("images", k),
                f"image id {img['id']!r} is not an integer or string",
                "give every image an integer id",
            )
            continue
        name = img["file_name"]
        if not isinstance(name, str) or not name.strip():
            err(
                "missing key",
                where("images", k),
                f"file_name {name!r} is not a file name",
                "name the image file",
            )
            dropped.add(img["id"])
            continue
        if img["id"] in slot:
            first = int(rec.positions[slot[img["id"]]])
            err(
                "duplicate id",
                where("images", k),
                f"image id {img['id']!r} is also at {where('images', first)}",
                "give every image its own id",
            )
            continue
        ok_label, lab = parse_label(img.get("label"), where("images", k), err)
        ok_split, spl = parse_split(img.get("split"), where("images", k), err)
        if not (ok_label and ok_split):
            dropped.add(img["id"])
            continue
        slot[img["id"]] = len(rec.images)
        rec.images.append(name.strip())
        rec.captions.append([])
        rec.labels.append(lab)
        rec.splits.append(spl)
        rec.positions.append(k)
        rec.wheres.append(where("images", k))
    for k, ann in enumerate(data["annotations"]):
        if not isinstance(ann, dict) or "image_id" not in ann or "caption" not in ann:
            err(
                "missing key", where("annotations", k), "needs 'image_id' and 'caption'", "add them"
            )
            continue
        if not _good_id(ann["image_id"]):
            err(
                "bad id",
                where("annotations", k),
                f"image_id {ann['image_id']!r} is not an integer or string",
                "use the id of a listed image",
            )
            continue
        row = slot.get(ann["image_id"])
        if row is None:
            if ann["image_id"] not in dropped:
                err(
                    "missing key",
                    where("annotations", k),
                    f"image_id {ann['image_id']!r} is not in 'images'",
                    "point it at a listed image",
                )
            continue
        cap = ann["caption"]
        if isinstance(cap, str) and cap.strip():
            rec.captions[row].append(cap.strip())
        else:
            rec.captions[row].extend(clean_captions(cap, where("annotations", k), err))
    return finish_dataset(rec, path, report, err, image_roots(path, image_root), "images")


def _karpathy(
    path: Path,
    text: str,
    data: dict[str, Any],
    report: LoadReport,
    err: ErrorPolicy,
    image_root: str | Path | None,
) -> tuple[MultimodalDataset, LoadReport]:
    lines = JSONLines(text)

    def where(k: int) -> _Where:
        return _Where(path, lines, "images", k)

    rec = CaptionRecords(err)
    for k, img in enumerate(data["images"]):
        if not isinstance(img, dict) or "filename" not in img or "sentences" not in img:
            err("missing key", where(k), "needs 'filename' and 'sentences'", "add them")
            continue
        name = img["filename"]
        if not isinstance(name, str) or not name.strip():
            err("missing key", where(k), f"filename {name!r} is not a file name", "name it")
            continue
        folder = img.get("filepath")
        if isinstance(folder, str) and folder.strip():
            name = f"{folder.strip()}/{name.strip()}"
        sentences = img["sentences"]
        if not isinstance(sentences, list):
            err("no captions", where(k), "'sentences' is not a list", 'give [{"raw": "..."}]')
            continue
        raws = [s.get("raw") if isinstance(s, dict) else s for s in sentences]
        if all(isinstance(r, str) and r.strip() for r in raws):
            captions = [str(r).strip() for r in raws]
        else:
            captions = clean_captions(raws, where(k), err)
        ok_split, split = parse_split(img.get("split"), where(k), err)
        ok_label, label = parse_label(img.get("label"), where(k), err)
        if not (ok_split and ok_label):
            continue
        if name.strip() in rec.index:
            err("duplicate id", where(k), f"image {name!r} is listed twice", "list it once")
            continue
        rec.add(name.strip(), captions, label, split, k, where(k))
    return finish_dataset(rec, path, report, err, image_roots(path, image_root), "images")


def load_karpathy(
    path: str | Path, image_root: str | Path | None = None, on_error: str = "raise"
) -> tuple[MultimodalDataset, LoadReport]:
    """A Karpathy split JSON (``dataset_flickr30k.json`` / ``dataset_coco.json``).

    ``images[*]``: ``filename`` (under ``filepath`` when given, as in COCO's),
    ``sentences[*].raw`` (the captions, one fold each) and ``split``
    (``train``/``restval`` -> train, ``val``, ``test``), which the data set keeps.
    """
    path, report, err = start_loading(path, on_error)
    text, data = _read_json(path)
    if not _is_karpathy(data):
        raise DataError(
            f"{path}:1: missing key: a Karpathy split file needs a list 'images' whose entries "
            "have 'filename', 'sentences' and 'split'"
        )
    return _karpathy(path, text, data, report, err, image_root)
