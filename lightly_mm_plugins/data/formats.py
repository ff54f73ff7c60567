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

import csv
import io
import json
import logging
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import DataError
from .dataset import SPLITS, MultimodalDataset
from .records import ImageFileLoader, JSONLines, SampleTable, open_image

__all__ = [
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

logger = logging.getLogger(__name__)
IMAGE_TEXT = {"image": "image", "text": "text"}
ON_ERROR = ("raise", "skip")
SPLIT_ALIASES = {
    "train": "train",
    "restval": "train",
    "val": "val",
    "valid": "val",
    "validation": "val",
    "dev": "val",
    "test": "test",
}


@dataclass
class LoadReport:
    """What loading one annotation file kept and skipped.

    Attributes:
        source: The annotation file.
        loaded: Instances in the data set.
        skipped: Problem -> number of skipped items (records, images, or, for
            ``empty caption``, captions).
        examples: The first few full messages (file, line, problem, fix).
    """

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

    def summary(self) -> str:
        counts = ", ".join(f"{k}: {v}" for k, v in sorted(self.skipped.items()))
        text = f"{self.source}: loaded {self.loaded} instance(s), skipped {counts or 'nothing'}"
        if self.examples:
            text += f"; first: {self.examples[0]}"
        return text


class _Errors:
    """Raise (fail-fast) or count (skip) a problem found at ``where``."""

    def __init__(self, on_error: str, report: LoadReport) -> None:
        if on_error not in ON_ERROR:
            raise DataError(f"on_error must be 'raise' or 'skip', got {on_error!r}")
        self.on_error, self.report = on_error, report

    def __call__(self, problem: str, where: object, message: str, fix: str) -> None:
        text = f"{where}: {problem}: {message}; {fix}"
        if self.on_error == "raise":
            raise DataError(f"{text} (or load with on_error='skip' to skip and count)")
        self.report.add(problem, text)


# --------------------------------------------------------------------------
# Field checks shared by the formats
# --------------------------------------------------------------------------


def _clean_captions(raw: Any, where: object, err: _Errors) -> list[str]:
    """Non-empty stripped captions; an empty or non-string one is a problem."""
    if isinstance(raw, str):
        raw = [raw]
    if not isinstance(raw, list):
        err(
            "no captions",
            where,
            f"captions must be a string or a list of strings, got {type(raw).__name__}",
            'give "captions": ["...", ...]',
        )
        return []
    captions = []
    for c in raw:
        if not isinstance(c, str) or not c.strip():
            err("empty caption", where, f"empty or non-text caption {c!r}", "remove or fill it")
            continue
        captions.append(c.strip())
    return captions


def _label(raw: Any, where: object, err: _Errors) -> tuple[bool, int | None]:
    """``(ok, label)``: None for a missing label, an int, or a problem."""
    if raw is None or (isinstance(raw, str) and not raw.strip()):
        return True, None
    try:
        if isinstance(raw, bool):
            raise ValueError
        value = float(raw)
        if not value.is_integer():
            raise ValueError
        return True, int(value)
    except (TypeError, ValueError):
        err("bad label", where, f"label {raw!r} is not an integer", "use integer class ids")
        return False, None


def _split(raw: Any, where: object, err: _Errors) -> tuple[bool, str | None]:
    if raw is None or (isinstance(raw, str) and not raw.strip()):
        return True, None
    name = SPLIT_ALIASES.get(str(raw).strip().lower())
    if name is None:
        err("bad split", where, f"split {raw!r} is unknown", f"use one of {', '.join(SPLITS)}")
        return False, None
    return True, name


class _Records:
    """Groups records by image name: captions of one image become its folds.

    Nothing is checked on disk here; later records of an image add captions,
    and must agree on its label and split.
    """

    def __init__(self, err: _Errors) -> None:
        self.err = err
        self.index: dict[str, int] = {}
        self.images: list[str] = []
        self.captions: list[list[str]] = []
        self.labels: list[int | None] = []
        self.splits: list[str | None] = []
        self.positions: list[int] = []
        self.wheres: list[object] = []

    def add(
        self,
        image: str,
        captions: list[str],
        label: int | None,
        split: str | None,
        position: int,
        where: object,
    ) -> None:
        k = self.index.get(image)
        if k is None:
            self.index[image] = len(self.images)
            self.images.append(image)
            self.captions.append(list(captions))
            self.labels.append(label)
            self.splits.append(split)
            self.positions.append(position)
            self.wheres.append(where)
            return
        if label is not None and self.labels[k] is not None and label != self.labels[k]:
            self.err(
                "conflicting label",
                where,
                f"image {image!r} has label {label} here but {self.labels[k]} at {self.wheres[k]}",
                "give one label per image",
            )
            return
        if split is not None and self.splits[k] is not None and split != self.splits[k]:
            self.err(
                "bad split",
                where,
                f"image {image!r} is in split {split!r} here but {self.splits[k]!r} at "
                f"{self.wheres[k]}",
                "give one split per image",
            )
            return
        if self.labels[k] is None:
            self.labels[k] = label
        self.splits[k] = self.splits[k] or split
        self.captions[k].extend(captions)


def image_roots(path: Path, image_root: str | Path | None) -> list[Path]:
    """Where image names are looked up: ``image_root`` alone if given, else the
    annotation file's folder, then an ``images/`` folder beside it."""
    if image_root is not None:
        return [Path(image_root)]
    return [path.parent, path.parent / "images"]


def _finish(
    rec: _Records,
    source: Path,
    report: LoadReport,
    err: _Errors,
    roots: list[Path],
    line_kind: str = "line",
) -> tuple[MultimodalDataset, LoadReport]:
    """Drop images without captions, build the data set, log what was skipped."""
    keep = []
    for k, caps in enumerate(rec.captions):
        if not caps:
            err("no captions", rec.wheres[k], f"image {rec.images[k]!r} has no caption", "add one")
            continue
        keep.append(k)
    report.loaded = len(keep)
    if report.total_skipped:
        logger.warning("%s", report.summary())
    if not keep:
        raise DataError(f"{source}: no usable instances; {report.summary()}")
    if len(keep) < len(rec.images):
        rec.images = [rec.images[k] for k in keep]
        rec.captions = [rec.captions[k] for k in keep]
        rec.labels = [rec.labels[k] for k in keep]
        rec.splits = [rec.splits[k] for k in keep]
        rec.positions = [rec.positions[k] for k in keep]
        rec.wheres = [rec.wheres[k] for k in keep]
    splits = None
    if any(s is not None for s in rec.splits):
        missing = [w for w, s in zip(rec.wheres, rec.splits) if s is None]
        if missing:
            raise DataError(
                f"{missing[0]}: missing split: {len(missing)} record(s) name no split while "
                "others do; give every record a split or none"
            )
        splits = {s: [i for i, t in enumerate(rec.splits) if t == s] for s in SPLITS}
    table = SampleTable(
        rec.images,
        [tuple(c) for c in rec.captions],
        rec.labels,
        np.asarray(rec.positions, dtype=np.int64),
        str(source),
        line_kind,
    )
    ds = MultimodalDataset(
        table,
        IMAGE_TEXT,
        name=source.stem,
        loader=ImageFileLoader(roots),
        splits=splits,
        report=report,
    )
    return ds, report


def _read_text(path: Path) -> str:
    """The file decoded as UTF-8 (a BOM is dropped), or a DataError naming the line."""
    raw = path.read_bytes()
    try:
        return raw.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        line = raw.count(b"\n", 0, exc.start) + 1
        raise DataError(
            f"{path}:{line}: not UTF-8 text (byte {raw[exc.start : exc.start + 1]!r} at "
            f"offset {exc.start}); re-save the file as UTF-8"
        ) from exc


def _start(path: str | Path, on_error: str) -> tuple[Path, LoadReport, _Errors]:
    path = Path(path)
    report = LoadReport(str(path))
    err = _Errors(on_error, report)
    if not path.is_file():
        raise DataError(f"{path}: annotation file not found; check the path (cwd: {Path.cwd()})")
    return path, report, err


# --------------------------------------------------------------------------
# The formats
# --------------------------------------------------------------------------


def load_jsonl(
    path: str | Path, image_root: str | Path | None = None, on_error: str = "raise"
) -> tuple[MultimodalDataset, LoadReport]:
    """A JSON-lines file, one image with its captions (and optional label) per line."""
    path, report, err = _start(path, on_error)
    rec = _Records(err)
    loads, JSONDecodeError = json.loads, json.JSONDecodeError
    with io.StringIO(_read_text(path), newline=None) as f:
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
            captions = _clean_captions(record.get("captions", record.get("caption")), where, err)
            ok_label, label = _label(record.get("label"), where, err)
            ok_split, split = _split(record.get("split"), where, err)
            if not (ok_label and ok_split):
                continue
            rec.add(image.strip(), captions, label, split, lineno, where)
    return _finish(rec, path, report, err, image_roots(path, image_root))


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
    text = _read_text(path)
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
    path, report, err = _start(path, on_error)
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

    rec = _Records(err)
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
        ok_label, lab = _label(img.get("label"), where("images", k), err)
        ok_split, spl = _split(img.get("split"), where("images", k), err)
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
            rec.captions[row].extend(_clean_captions(cap, where("annotations", k), err))
    return _finish(rec, path, report, err, image_roots(path, image_root), "images")


def _karpathy(
    path: Path,
    text: str,
    data: dict[str, Any],
    report: LoadReport,
    err: _Errors,
    image_root: str | Path | None,
) -> tuple[MultimodalDataset, LoadReport]:
    lines = JSONLines(text)

    def where(k: int) -> _Where:
        return _Where(path, lines, "images", k)

    rec = _Records(err)
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
            captions = _clean_captions(raws, where(k), err)
        ok_split, split = _split(img.get("split"), where(k), err)
        ok_label, label = _label(img.get("label"), where(k), err)
        if not (ok_split and ok_label):
            continue
        if name.strip() in rec.index:
            err("duplicate id", where(k), f"image {name!r} is listed twice", "list it once")
            continue
        rec.add(name.strip(), captions, label, split, k, where(k))
    return _finish(rec, path, report, err, image_roots(path, image_root), "images")


def load_karpathy(
    path: str | Path, image_root: str | Path | None = None, on_error: str = "raise"
) -> tuple[MultimodalDataset, LoadReport]:
    """A Karpathy split JSON (``dataset_flickr30k.json`` / ``dataset_coco.json``).

    ``images[*]``: ``filename`` (under ``filepath`` when given, as in COCO's),
    ``sentences[*].raw`` (the captions, one fold each) and ``split``
    (``train``/``restval`` -> train, ``val``, ``test``), which the data set keeps.
    """
    path, report, err = _start(path, on_error)
    text, data = _read_json(path)
    if not _is_karpathy(data):
        raise DataError(
            f"{path}:1: missing key: a Karpathy split file needs a list 'images' whose entries "
            "have 'filename', 'sentences' and 'split'"
        )
    return _karpathy(path, text, data, report, err, image_root)


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
    path, report, err = _start(path, on_error)
    sep = separator if separator is not None else ("\t" if path.suffix.lower() == ".tsv" else ",")
    if len(sep) != 1:
        raise DataError(f"CSV separator must be one character, got {sep!r}")
    rec = _Records(err)
    with io.StringIO(_read_text(path), newline="") as f:
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
            captions = _clean_captions(row[caption_key], where, err)
            ok_label, label = _label(row.get("label"), where, err)
            ok_split, split = _split(row.get("split"), where, err)
            if not (captions and ok_label and ok_split):  # a row is one caption
                continue
            rec.add(name, captions, label, split, reader.line_num, where)
    return _finish(rec, path, report, err, image_roots(path, image_root))


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
