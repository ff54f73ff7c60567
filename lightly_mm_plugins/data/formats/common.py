"""What every annotation format shares: the load report, the error policy,
field checks, grouping captions by image, and building the data set.

A format's loader (:mod:`.jsonl`, :mod:`.coco`, :mod:`.delimited`) opens the
file with :func:`start_loading`, checks each record's fields with
:func:`clean_captions` / :func:`parse_label` / :func:`parse_split`, adds it to
a :class:`CaptionRecords` and ends with :func:`finish_dataset`. A problem goes
through :class:`ErrorPolicy`: raised as ``"<file>:<line>: <problem>: ...; <fix>"``
or (``on_error="skip"``) counted in the :class:`LoadReport`.

Example:
    >>> report = LoadReport("a.jsonl")
    >>> err = ErrorPolicy("skip", report)
    >>> clean_captions(["a dog", " "], "a.jsonl:1", err), dict(report.skipped)
    (['a dog'], {'empty caption': 1})
"""

from __future__ import annotations

import logging
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from ...errors import DataError
from ..dataset import SPLITS, MultimodalDataset
from ..records import ImageFileLoader, SampleTable

__all__ = [
    "IMAGE_TEXT",
    "ON_ERROR",
    "SPLIT_ALIASES",
    "CaptionRecords",
    "ErrorPolicy",
    "LoadReport",
    "clean_captions",
    "finish_dataset",
    "image_roots",
    "parse_label",
    "parse_split",
    "read_text",
    "start_loading",
]

#: The skip summary is logged under the public module's name (as before the split).
logger = logging.getLogger(__package__ or __name__)
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


class ErrorPolicy:
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


def clean_captions(raw: Any, where: object, err: ErrorPolicy) -> list[str]:
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


def parse_label(raw: Any, where: object, err: ErrorPolicy) -> tuple[bool, int | None]:
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


def parse_split(raw: Any, where: object, err: ErrorPolicy) -> tuple[bool, str | None]:
    """``(ok, split)``: None for a missing split, a canonical split name, or a problem."""
    if raw is None or (isinstance(raw, str) and not raw.strip()):
        return True, None
    name = SPLIT_ALIASES.get(str(raw).strip().lower())
    if name is None:
        err("bad split", where, f"split {raw!r} is unknown", f"use one of {', '.join(SPLITS)}")
        return False, None
    return True, name


class CaptionRecords:
    """Groups records by image name: captions of one image become its folds.

    Nothing is checked on disk here; later records of an image add captions,
    and must agree on its label and split.
    """

    def __init__(self, err: ErrorPolicy) -> None:
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


def finish_dataset(
    rec: CaptionRecords,
    source: Path,
    report: LoadReport,
    err: ErrorPolicy,
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


def read_text(path: Path) -> str:
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


def start_loading(path: str | Path, on_error: str) -> tuple[Path, LoadReport, ErrorPolicy]:
    """The annotation file as a Path with a fresh report and error policy (it must exist)."""
    path = Path(path)
    report = LoadReport(str(path))
    err = ErrorPolicy(on_error, report)
    if not path.is_file():
        raise DataError(f"{path}: annotation file not found; check the path (cwd: {Path.cwd()})")
    return path, report, err
