"""Real image-text data: JSON-lines + image folder, COCO captions, CSV.

Every format groups the captions of one image into folds of one instance.
Problems are reported with file and line (COCO: annotation index) as a
:class:`~lightly_mm_plugins.errors.DataError`; with ``on_error="skip"`` bad
records are skipped and counted in a :class:`LoadReport` instead.

Formats (image paths are relative to the annotation file's folder, or to
``image_root``):

* JSON lines: ``{"image": "a.jpg", "captions": ["...", "..."], "label": 3}``
* COCO captions JSON: ``{"images": [{"id", "file_name"}], "annotations":
  [{"image_id", "caption"}]}``
* CSV with a header containing ``image`` and ``caption`` (and optionally
  ``label``); rows of the same image become folds.

Example:
    >>> ds, report = load_image_text("captions.jsonl")  # doctest: +SKIP
"""

from __future__ import annotations

import csv
import json
import logging
import warnings
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..api import Sample
from ..errors import DataError
from .dataset import MultimodalDataset

logger = logging.getLogger(__name__)
IMAGE_TEXT = {"image": "image", "text": "text"}


@dataclass
class LoadReport:
    """What was skipped while loading (``on_error="skip"``)."""

    source: str
    loaded: int = 0
    skipped: Counter[str] = field(default_factory=Counter)
    examples: list[str] = field(default_factory=list)

    def add(self, problem: str, message: str) -> None:
        self.skipped[problem] += 1
        if len(self.examples) < 5:
            self.examples.append(message)

    @property
    def total_skipped(self) -> int:
        return sum(self.skipped.values())


class _Errors:
    def __init__(self, on_error: str, report: LoadReport) -> None:
        if on_error not in ("raise", "skip"):
            raise ValueError(f"on_error must be 'raise' or 'skip', got {on_error!r}")
        self.on_error, self.report = on_error, report

    def __call__(self, problem: str, where: str, message: str, fix: str) -> None:
        text = f"{where}: {message}; {fix}"
        if self.on_error == "raise":
            raise DataError(text + " (or use on_error='skip' / --on-error skip)")
        self.report.add(problem, text)


def _load_image(path: Path) -> Any:
    from PIL import Image

    with Image.open(path) as img:
        img.load()
        return img.convert("RGB")


def _check_image(path: Path, where: str, err: _Errors) -> bool:
    if not path.is_file():
        err("missing image", where, f"image file {str(path)!r} not found", "fix the path")
        return False
    try:
        from PIL import Image

        with Image.open(path) as img:
            img.verify()
    except Exception as exc:
        err(
            "unreadable image",
            where,
            f"image {str(path)!r} cannot be read ({type(exc).__name__}: {exc})",
            "replace or remove the file",
        )
        return False
    return True


def _clean_captions(raw: Any, where: str, err: _Errors) -> list[str] | None:
    if isinstance(raw, str):
        raw = [raw]
    if not isinstance(raw, list) or not raw:
        err("no captions", where, "no captions given", 'give "captions": ["...", ...]')
        return None
    captions = []
    for c in raw:
        if not isinstance(c, str) or not c.strip():
            err("empty caption", where, f"empty or non-text caption {c!r}", "remove it")
            return None
        captions.append(c.strip())
    return captions


def _label(raw: Any, where: str, err: _Errors) -> tuple[bool, int | None]:
    if raw is None or raw == "":
        return True, None
    try:
        return True, int(raw)
    except (TypeError, ValueError):
        err("bad label", where, f"label {raw!r} is not an integer", "use integer class ids")
        return False, None


def _finish(
    items: list[tuple[Path, list[str], int | None]], source: Path, report: LoadReport
) -> tuple[MultimodalDataset, LoadReport]:
    samples = [
        Sample(i, {"image": [str(p)], "text": caps}, label)
        for i, (p, caps, label) in enumerate(items)
    ]
    report.loaded = len(samples)
    if report.total_skipped:
        msg = (
            f"{source}: skipped {report.total_skipped} bad record(s) "
            f"({dict(report.skipped)}); first: {report.examples[0]}"
        )
        warnings.warn(msg, stacklevel=3)
        logger.warning(msg)
    if not samples:
        raise DataError(f"{source}: no usable instances were found")

    def load(sample: Sample) -> Sample:
        images = [_load_image(Path(p)) for p in sample.observations["image"]]
        return Sample(sample.instance_id, {**sample.observations, "image": images}, sample.label)

    return MultimodalDataset(samples, IMAGE_TEXT, name=source.name, loader=load), report


def load_jsonl(
    path: str | Path, image_root: str | Path | None = None, on_error: str = "raise"
) -> tuple[MultimodalDataset, LoadReport]:
    """A JSON-lines file, one image with its captions (and optional label) per line."""
    path = Path(path)
    if not path.is_file():
        raise DataError(f"annotation file {str(path)!r} not found")
    root = Path(image_root) if image_root else path.parent
    report = LoadReport(str(path))
    err = _Errors(on_error, report)
    items: list[tuple[Path, list[str], int | None]] = []
    with path.open(encoding="utf-8") as f:
        for lineno, line in enumerate(f, start=1):
            where = f"{path}:{lineno}"
            if not line.strip():
                continue
            try:
                record = json.loads(line)
            except json.JSONDecodeError as exc:
                err("bad JSON line", where, f"invalid JSON ({exc.msg})", "fix the line")
                continue
            if not isinstance(record, dict) or "image" not in record:
                err(
                    "missing key", where, 'no "image" key', 'give {"image": ..., "captions": [...]}'
                )
                continue
            captions = _clean_captions(record.get("captions", record.get("caption")), where, err)
            ok, label = _label(record.get("label"), where, err)
            if captions is None or not ok:
                continue
            image = root / str(record["image"])
            if _check_image(image, where, err):
                items.append((image, captions, label))
    return _finish(items, path, report)


def load_coco(
    path: str | Path, image_root: str | Path | None = None, on_error: str = "raise"
) -> tuple[MultimodalDataset, LoadReport]:
    """A COCO captions JSON; all captions of an image are its folds."""
    path = Path(path)
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError as exc:
        raise DataError(f"annotation file {str(path)!r} not found") from exc
    except json.JSONDecodeError as exc:
        raise DataError(f"{path}:{exc.lineno}: invalid JSON ({exc.msg})") from exc
    if not isinstance(data, dict) or "images" not in data or "annotations" not in data:
        raise DataError(f"{path}: a COCO captions file needs 'images' and 'annotations'")
    root = Path(image_root) if image_root else path.parent
    report = LoadReport(str(path))
    err = _Errors(on_error, report)
    files: dict[Any, str] = {}
    for k, img in enumerate(data["images"]):
        if not isinstance(img, dict) or "id" not in img or "file_name" not in img:
            err("missing key", f"{path}: images[{k}]", "needs 'id' and 'file_name'", "fix it")
            continue
        files[img["id"]] = img["file_name"]
    captions: dict[Any, list[str]] = {}
    for k, ann in enumerate(data["annotations"]):
        where = f"{path}: annotations[{k}]"
        if not isinstance(ann, dict) or ann.get("image_id") not in files:
            err("missing key", where, "unknown or missing image_id", "point it at an image")
            continue
        caps = _clean_captions(ann.get("caption"), where, err)
        if caps is not None:
            captions.setdefault(ann["image_id"], []).extend(caps)
    items: list[tuple[Path, list[str], int | None]] = []
    for image_id, file_name in files.items():
        if image_id not in captions:
            continue
        image = root / file_name
        if _check_image(image, f"{path}: image id {image_id}", err):
            items.append((image, captions[image_id], None))
    return _finish(items, path, report)


def load_csv(
    path: str | Path, image_root: str | Path | None = None, on_error: str = "raise"
) -> tuple[MultimodalDataset, LoadReport]:
    """A CSV of ``image,caption[,label]`` rows; rows of one image become its folds."""
    path = Path(path)
    if not path.is_file():
        raise DataError(f"annotation file {str(path)!r} not found")
    root = Path(image_root) if image_root else path.parent
    report = LoadReport(str(path))
    err = _Errors(on_error, report)
    grouped: dict[str, tuple[list[str], int | None, str]] = {}
    with path.open(newline="", encoding="utf-8") as f:
        reader = csv.DictReader(f)
        header = reader.fieldnames or []
        if "image" not in header or "caption" not in header:
            raise DataError(
                f"{path}:1: the header must name columns 'image' and 'caption', got {header}"
            )
        for row in reader:
            where = f"{path}:{reader.line_num}"
            caps = _clean_captions(row.get("caption"), where, err)
            ok, label = _label(row.get("label"), where, err)
            if caps is None or not ok:
                continue
            name = (row.get("image") or "").strip()
            entry = grouped.setdefault(name, ([], label, where))
            entry[0].extend(caps)
    items = []
    for name, (caps, label, where) in grouped.items():
        image = root / name
        if _check_image(image, where, err):
            items.append((image, caps, label))
    return _finish(items, path, report)


def load_image_text(
    path: str | Path, image_root: str | Path | None = None, on_error: str = "raise"
) -> tuple[MultimodalDataset, LoadReport]:
    """Pick the loader by extension: ``.jsonl``, ``.json`` (COCO) or ``.csv``."""
    suffix = Path(path).suffix.lower()
    if suffix in (".jsonl", ".ndjson"):
        return load_jsonl(path, image_root, on_error)
    if suffix == ".json":
        return load_coco(path, image_root, on_error)
    if suffix == ".csv":
        return load_csv(path, image_root, on_error)
    raise DataError(
        f"cannot tell the format of {str(path)!r}: use a .jsonl (image + captions per line), "
        "a COCO captions .json, or a .csv with image,caption columns"
    )
