"""Real image-text data: JSON-lines + image folder, COCO captions, CSV.

Every format groups the captions of one image into the folds (observations)
of one instance: ``observations = {"image": [PIL image], "text": [captions]}``.
Image paths are relative to the annotation file's folder (or to
``image_root``). Images are checked when the file is loaded (exists, opens,
``PIL.Image.verify``) and decoded lazily when a sample is read.

Formats:

* JSON lines (``.jsonl``), one object per image::

      {"image": "a.jpg", "captions": ["a dog", "a brown dog"], "label": 3}

  ``captions`` may be one string (also under ``caption``); ``label`` (int)
  and ``split`` (``train``/``val``/``test``) are optional. An image named on
  several lines gets the captions of all of them.
* COCO captions JSON (``.json``): ``{"images": [{"id", "file_name"}, ...],
  "annotations": [{"image_id", "caption"}, ...]}``; the annotations of one
  image are its folds. Image entries may carry ``label`` and ``split``.
* CSV (``.csv``, the open_clip habit) with a header naming ``image`` and
  ``caption`` (optional ``label``, ``split``); rows of one image are its folds.

Problems are reported as ``"<file>:<line>: <problem>; <fix>"`` (COCO: the line
where the offending entry starts, plus its index). ``on_error="raise"`` (the
default) raises a :class:`~lightly_mm_plugins.errors.DataError` at the first
one; ``on_error="skip"`` skips the bad record (an empty caption: only that
caption), counts it per problem in a :class:`LoadReport`, and logs a warning
summary. Problems: ``missing image``, ``unreadable image``, ``empty caption``,
``no captions``, ``bad JSON line``, ``missing key``, ``bad label``,
``conflicting label``, ``bad split``, ``bad row``, ``duplicate id``, ``bad id``.
A file that is not UTF-8 text fails at once, naming the first bad line.

If the records name splits, every record must name one; the data set then
carries them (:attr:`MultimodalDataset.splits`) and :func:`select_split`
uses them instead of the seeded 70/15/15 split.

Example:
    >>> ds, report = load_image_text("captions.jsonl", on_error="skip")  # doctest: +SKIP
    >>> report.skipped  # doctest: +SKIP
    Counter({'missing image': 2, 'empty caption': 1})
"""

from __future__ import annotations

import bisect
import csv
import io
import json
import logging
import re
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..api import Sample
from ..errors import DataError
from .dataset import SPLITS, MultimodalDataset

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

    def __call__(self, problem: str, where: str, message: str, fix: str) -> None:
        text = f"{where}: {problem}: {message}; {fix}"
        if self.on_error == "raise":
            raise DataError(f"{text} (or load with on_error='skip' to skip and count)")
        self.report.add(problem, text)


# --------------------------------------------------------------------------
# Images
# --------------------------------------------------------------------------


def open_image(path: str | Path) -> Any:
    """The image at ``path`` decoded as an RGB PIL image."""
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
            "replace the file or remove its record",
        )
        return False
    return True


class ImageFileLoader:
    """Opens the image paths of a sample (picklable, for loader worker processes).

    Samples of file data sets hold image *paths*; this turns them into RGB PIL
    images when the sample is read, naming the annotation line on failure.
    """

    def __init__(self, modality: str = "image") -> None:
        self.modality = modality

    def __call__(self, sample: Sample) -> Sample:
        images = []
        for p in sample.observations[self.modality]:
            try:
                images.append(open_image(p))
            except Exception as exc:
                where = sample.extras.get("source", "?")
                raise DataError(
                    f"{where}: unreadable image: {str(p)!r} cannot be decoded "
                    f"({type(exc).__name__}: {exc}); replace the file or remove its record"
                ) from exc
        observations = {**sample.observations, self.modality: images}
        return Sample(sample.instance_id, observations, sample.label, dict(sample.extras))


# --------------------------------------------------------------------------
# Field checks shared by the formats
# --------------------------------------------------------------------------


def _clean_captions(raw: Any, where: str, err: _Errors) -> list[str]:
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


def _label(raw: Any, where: str, err: _Errors) -> tuple[bool, int | None]:
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


def _split(raw: Any, where: str, err: _Errors) -> tuple[bool, str | None]:
    if raw is None or (isinstance(raw, str) and not raw.strip()):
        return True, None
    name = SPLIT_ALIASES.get(str(raw).strip().lower())
    if name is None:
        err("bad split", where, f"split {raw!r} is unknown", f"use one of {', '.join(SPLITS)}")
        return False, None
    return True, name


@dataclass
class _Item:
    """One image with its captions while a file is read."""

    image: Path
    where: str
    label: int | None
    split: str | None
    captions: list[str] = field(default_factory=list)
    checked: bool = False


class _Items:
    """Groups records by image: captions of one image become its folds.

    An image is checked the first time a record names it, so fail-fast errors
    come in line order; later records of a bad image are dropped quietly.
    """

    def __init__(self, err: _Errors) -> None:
        self.err = err
        self.items: dict[Path, _Item] = {}
        self.bad: set[Path] = set()

    def add(
        self, image: Path, captions: list[str], label: int | None, split: str | None, where: str
    ) -> None:
        if image in self.bad:
            return
        item = self.items.get(image)
        if item is None:
            if not _check_image(image, where, self.err):
                self.bad.add(image)
                return
            self.items[image] = _Item(image, where, label, split, list(captions), checked=True)
            return
        if label is not None and item.label is not None and label != item.label:
            self.err(
                "conflicting label",
                where,
                f"image {str(image)!r} has label {label} here but {item.label} at {item.where}",
                "give one label per image",
            )
            return
        if split is not None and item.split is not None and split != item.split:
            self.err(
                "bad split",
                where,
                f"image {str(image)!r} is in split {split!r} here but {item.split!r} at "
                f"{item.where}",
                "give one split per image",
            )
            return
        item.label = item.label if item.label is not None else label
        item.split = item.split or split
        item.captions.extend(captions)


def _finish(
    items: list[_Item], source: Path, report: LoadReport, err: _Errors
) -> tuple[MultimodalDataset, LoadReport]:
    """Check images and captions, build the data set, log what was skipped."""
    kept = []
    for item in items:
        if not item.captions:
            err("no captions", item.where, f"image {str(item.image)!r} has no caption", "add one")
            continue
        if item.checked or _check_image(item.image, item.where, err):
            kept.append(item)
    report.loaded = len(kept)
    if report.total_skipped:
        logger.warning("%s", report.summary())
    if not kept:
        raise DataError(f"{source}: no usable instances; {report.summary()}")
    samples = [
        Sample(
            i,
            {"image": [str(item.image)], "text": item.captions},
            item.label,
            {"source": item.where},
        )
        for i, item in enumerate(kept)
    ]
    splits = None
    named = [item.split for item in kept]
    if any(s is not None for s in named):
        missing = [item.where for item in kept if item.split is None]
        if missing:
            raise DataError(
                f"{missing[0]}: missing split: {len(missing)} record(s) name no split while "
                "others do; give every record a split or none"
            )
        splits = {s: [i for i, t in enumerate(named) if t == s] for s in SPLITS}
    ds = MultimodalDataset(
        samples,
        IMAGE_TEXT,
        name=source.stem,
        loader=ImageFileLoader(),
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
# The three formats
# --------------------------------------------------------------------------


def load_jsonl(
    path: str | Path, image_root: str | Path | None = None, on_error: str = "raise"
) -> tuple[MultimodalDataset, LoadReport]:
    """A JSON-lines file, one image with its captions (and optional label) per line."""
    path, report, err = _start(path, on_error)
    root = Path(image_root) if image_root is not None else path.parent
    items = _Items(err)
    with io.StringIO(_read_text(path), newline=None) as f:
        for lineno, line in enumerate(f, start=1):
            where = f"{path}:{lineno}"
            if not line.strip():
                continue
            try:
                record = json.loads(line)
            except json.JSONDecodeError as exc:
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
            items.add(root / image.strip(), captions, label, split, where)
    return _finish(list(items.items.values()), path, report, err)


class _JSONLines:
    """Line numbers of the elements of a COCO file's top-level arrays.

    ``json`` gives no positions, so the file is walked once more with
    ``JSONDecoder.raw_decode`` (the C scanner) when a problem must be located.
    """

    _ws = re.compile(r"\s*")

    def __init__(self, text: str) -> None:
        self.text = text
        self._starts: dict[str, list[int]] | None = None
        self._newlines: list[int] | None = None

    def _scan(self) -> dict[str, list[int]]:
        text, ws, dec = self.text, self._ws, json.JSONDecoder()
        out: dict[str, list[int]] = {}

        def skip(pos: int) -> int:
            m = ws.match(text, pos)
            return m.end() if m else pos

        pos = skip(0) + 1  # past "{"
        while True:
            pos = skip(pos)
            if text[pos : pos + 1] in ("}", ""):
                return out
            key, pos = dec.raw_decode(text, pos)
            pos = skip(skip(pos) + 1)  # past ":"
            if text[pos : pos + 1] == "[":
                starts: list[int] = []
                pos = skip(pos + 1)
                while text[pos : pos + 1] not in ("]", ""):
                    starts.append(pos)
                    _, pos = dec.raw_decode(text, pos)
                    pos = skip(pos)
                    if text[pos : pos + 1] == ",":
                        pos = skip(pos + 1)
                out[str(key)] = starts
                pos += 1
            else:
                _, pos = dec.raw_decode(text, pos)
            pos = skip(pos)
            if text[pos : pos + 1] == ",":
                pos += 1

    def line(self, array: str, index: int) -> int:
        if self._starts is None:
            try:
                self._starts = self._scan()
            except (ValueError, IndexError):  # pragma: no cover - json.loads accepted it
                self._starts = {}
            self._newlines = [m.start() for m in re.finditer("\n", self.text)]
        starts = self._starts.get(array, [])
        if index >= len(starts):
            return 1
        assert self._newlines is not None
        return bisect.bisect_left(self._newlines, starts[index]) + 1


def _good_id(value: Any) -> bool:
    return isinstance(value, (int, str)) and not isinstance(value, bool)


def load_coco(
    path: str | Path, image_root: str | Path | None = None, on_error: str = "raise"
) -> tuple[MultimodalDataset, LoadReport]:
    """A COCO captions JSON; all captions of an image are its folds."""
    path, report, err = _start(path, on_error)
    text = _read_text(path)
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        raise DataError(
            f"{path}:{exc.lineno}: bad JSON: {exc.msg} at column {exc.colno}; fix the file"
        ) from exc
    if not isinstance(data, dict) or not all(
        isinstance(data.get(k), list) for k in ("images", "annotations")
    ):
        raise DataError(
            f"{path}:1: missing key: a COCO captions file needs lists 'images' and "
            "'annotations'; use the COCO format or a .jsonl / .csv file"
        )
    root = Path(image_root) if image_root is not None else path.parent
    lines = _JSONLines(text)

    def where(array: str, k: int) -> str:
        return f"{path}:{lines.line(array, k)} ({array}[{k}])"

    images: dict[Any, _Item] = {}
    dropped: set[Any] = set()  # ids of images already reported; their captions go quietly
    for k, img in enumerate(data["images"]):
        if not isinstance(img, dict) or "id" not in img or "file_name" not in img:
            err("missing key", where("images", k), "needs 'id' and 'file_name'", "add them")
            if isinstance(img, dict) and "id" in img:
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
        if not isinstance(img["file_name"], str) or not img["file_name"].strip():
            err(
                "missing key",
                where("images", k),
                f"file_name {img['file_name']!r} is not a file name",
                "name the image file",
            )
            dropped.add(img["id"])
            continue
        if img["id"] in images:
            err(
                "duplicate id",
                where("images", k),
                f"image id {img['id']!r} is also at {images[img['id']].where}",
                "give every image its own id",
            )
            continue
        ok_label, label = _label(img.get("label"), where("images", k), err)
        ok_split, split = _split(img.get("split"), where("images", k), err)
        if ok_label and ok_split:
            images[img["id"]] = _Item(
                root / str(img["file_name"]), where("images", k), label, split
            )
        else:
            dropped.add(img["id"])
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
        item = images.get(ann["image_id"])
        if item is None and ann["image_id"] in dropped:
            continue
        if item is None:
            err(
                "missing key",
                where("annotations", k),
                f"image_id {ann['image_id']!r} is not in 'images'",
                "point it at a listed image",
            )
            continue
        item.captions.extend(_clean_captions(ann["caption"], where("annotations", k), err))
    return _finish(list(images.values()), path, report, err)


def load_csv(
    path: str | Path, image_root: str | Path | None = None, on_error: str = "raise"
) -> tuple[MultimodalDataset, LoadReport]:
    """A CSV of ``image,caption[,label][,split]`` rows; rows of one image become its folds."""
    path, report, err = _start(path, on_error)
    root = Path(image_root) if image_root is not None else path.parent
    items = _Items(err)
    with io.StringIO(_read_text(path), newline="") as f:
        reader = csv.DictReader(f)
        header = [h.strip() for h in (reader.fieldnames or [])]
        if "image" not in header or "caption" not in header:
            raise DataError(
                f"{path}:1: bad CSV header: columns {header} lack 'image' and/or 'caption'; "
                "start the file with a header line such as 'image,caption,label'"
            )
        reader.fieldnames = header
        for row in reader:
            where = f"{path}:{reader.line_num}"
            if None in row or any(v is None for v in row.values()):
                err(
                    "bad row",
                    where,
                    f"the row does not have the {len(header)} fields of the header",
                    "quote fields that contain commas",
                )
                continue
            name = row["image"].strip()
            if not name:
                err("missing key", where, "the image field is empty", "name the image file")
                continue
            captions = _clean_captions(row["caption"], where, err)
            ok_label, label = _label(row.get("label"), where, err)
            ok_split, split = _split(row.get("split"), where, err)
            if not (captions and ok_label and ok_split):  # a row is one caption
                continue
            items.add(root / name, captions, label, split, where)
    return _finish(list(items.items.values()), path, report, err)


def load_image_text(
    path: str | Path, image_root: str | Path | None = None, on_error: str = "raise"
) -> tuple[MultimodalDataset, LoadReport]:
    """Pick the loader by extension: ``.jsonl`` / ``.ndjson``, ``.json`` (COCO) or ``.csv``."""
    suffix = Path(path).suffix.lower()
    if suffix in (".jsonl", ".ndjson"):
        return load_jsonl(path, image_root, on_error)
    if suffix == ".json":
        return load_coco(path, image_root, on_error)
    if suffix == ".csv":
        return load_csv(path, image_root, on_error)
    raise DataError(
        f"{path}: unknown format; use a .jsonl (image + captions per line), "
        "a COCO captions .json, or a .csv with image,caption columns"
    )
