"""Parsed annotation records, kept as columns; images resolved and decoded on read.

Loading an annotation file only parses its text: no image is opened, stat'ed,
decoded or verified before training starts, so start-up does not grow with the
images' size or count beyond the parse itself. A :class:`SampleTable` keeps the
records as columns (image name, captions, label, source position) and makes a
:class:`~lightly_mm_plugins.api.Sample` when one is read; :class:`ImageFileLoader`
then finds and decodes the image, in the DataLoader worker that reads it.

A record whose image is missing, truncated or not an image is found when it is
read and raises a :class:`BadRecordError` naming ``file:line`` and every place
the image was looked for; the training loader either stops with it
(``on_error="raise"``) or skips and counts it (``on_error="skip"``, see
:mod:`lightly_mm_plugins.training.batches`).

Example:
    >>> table = SampleTable(
    ...     images=["a.png", "b.png"], captions=[("a cat",), ("a dog", "dog")],
    ...     labels=[None, None], positions=[1, 2], source="captions.jsonl",
    ... )
    >>> len(table), table[1].observations["text"], table.where(1)
    (2, ['a dog', 'dog'], 'captions.jsonl:2')
    >>> table.take([1]).instance_ids.tolist()
    [1]
"""

from __future__ import annotations

import bisect
import json
import re
from collections.abc import Iterator, Sequence
from functools import lru_cache
from pathlib import Path
from typing import Any

import numpy as np

from ..api import Sample
from ..errors import DataError


class BadRecordError(DataError):
    """A record that cannot be read (missing, truncated or non-image file).

    ``where`` is ``file:line``; ``problem`` is ``missing image`` or ``unreadable
    image``. Raised in a DataLoader worker, PyTorch re-raises it in the main
    process as ``BadRecordError("Caught ... Original Traceback ...")``; the
    message is cut back to the original one so a command prints one line.
    """

    def __init__(self, message: str, where: str = "", problem: str = "") -> None:
        if message.startswith("Caught ") and "Original Traceback" in message:
            tail = message.rstrip().splitlines()[-1]
            message = tail.split("BadRecordError: ", 1)[-1]
            parts = message.split(": ", 2)
            where = where or parts[0]
            problem = problem or (parts[1] if len(parts) > 2 else "")
        super().__init__(message)
        self.where, self.problem = where, problem

    def __reduce__(self) -> tuple[Any, ...]:
        return (type(self), (str(self), self.where, self.problem))


class SampleTable(Sequence[Sample]):
    """Records of an image-text file as columns; ``table[i]`` makes the sample.

    Args:
        images: Image file name of each instance, as written in the file.
        captions: Captions of each instance (its text folds).
        labels: Label of each instance (None where the file gives none).
        positions: Line of each record in ``source`` (``line_kind="line"``), or
            index in the JSON array ``line_kind`` (COCO ``images``, Karpathy
            ``images``), turned into a line only when an error is reported.
        source: The annotation file.
        line_kind: ``"line"`` or the name of the JSON array ``positions`` index.
        rows: Which records this table shows (a split); default all.
    """

    def __init__(
        self,
        images: Sequence[str],
        captions: Sequence[Sequence[str]],
        labels: Sequence[int | None],
        positions: Sequence[int] | np.ndarray,
        source: str,
        line_kind: str = "line",
        rows: np.ndarray | None = None,
    ) -> None:
        self._images, self._captions, self._labels = images, captions, labels
        self._positions = positions
        self.source, self.line_kind = source, line_kind
        self.rows = np.arange(len(images), dtype=np.int64) if rows is None else rows

    def __len__(self) -> int:
        return int(self.rows.shape[0])

    def __getitem__(self, index: int) -> Sample:  # type: ignore[override]
        r = int(self.rows[index])
        return Sample(
            r,
            {"image": [self._images[r]], "text": list(self._captions[r])},
            self._labels[r],
            {"source": Where(self.source, self.line_kind, int(self._positions[r]))},
        )

    def __iter__(self) -> Iterator[Sample]:
        return (self[i] for i in range(len(self)))

    def take(self, indices: Sequence[int]) -> SampleTable:
        """The records at ``indices`` of this table (instance ids are kept)."""
        idx = np.asarray(indices, dtype=np.int64)
        return SampleTable(
            self._images,
            self._captions,
            self._labels,
            self._positions,
            self.source,
            self.line_kind,
            self.rows[idx],
        )

    @property
    def instance_ids(self) -> np.ndarray:
        """Instance id of every row: the record's index in the file's table."""
        return self.rows

    @property
    def labels(self) -> list[int | None]:
        return [self._labels[int(r)] for r in self.rows]

    @property
    def fold_counts(self) -> np.ndarray:
        """Number of captions of every row (from the records, no image read)."""
        return np.array([len(self._captions[int(r)]) for r in self.rows], dtype=np.int64)

    def image_name(self, index: int) -> str:
        return self._images[int(self.rows[index])]

    def where(self, index: int) -> str:
        """``file:line`` of row ``index`` (COCO/Karpathy: plus the array index)."""
        return str(Where(self.source, self.line_kind, int(self._positions[int(self.rows[index])])))


class Where:
    """Where a record is, as ``file:line`` text made only when printed.

    A JSON array element's line needs a scan of the whole file, so a sample
    carries this small object and the scan happens only for an error message.
    """

    __slots__ = ("line_kind", "pos", "source")

    def __init__(self, source: str, line_kind: str, pos: int) -> None:
        self.source, self.line_kind, self.pos = source, line_kind, pos

    def __str__(self) -> str:
        if self.line_kind == "line":
            return f"{self.source}:{self.pos}"
        line = json_line(self.source, self.line_kind, self.pos)
        return f"{self.source}:{line} ({self.line_kind}[{self.pos}])"

    def __format__(self, spec: str) -> str:
        return format(str(self), spec)

    def __repr__(self) -> str:
        return repr(str(self))

    def __eq__(self, other: object) -> bool:
        return str(self) == str(other)

    def __hash__(self) -> int:
        return hash(str(self))

    def __reduce__(self) -> tuple[Any, ...]:
        return (Where, (self.source, self.line_kind, self.pos))


# --------------------------------------------------------------------------
# Line numbers of JSON array elements (only computed for error messages)
# --------------------------------------------------------------------------

_WS = re.compile(r"\s*")


def _array_starts(text: str) -> dict[str, list[int]]:
    """Character offset of every element of the top-level arrays of a JSON object."""
    dec = json.JSONDecoder()
    out: dict[str, list[int]] = {}

    def skip(pos: int) -> int:
        m = _WS.match(text, pos)
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


class JSONLines:
    """Line numbers of the elements of a JSON object's top-level arrays.

    ``json`` gives no positions, so the text is walked once more with
    ``JSONDecoder.raw_decode`` (the C scanner), only when a line is asked for.
    """

    def __init__(self, text: str) -> None:
        self.text = text
        self._starts: dict[str, list[int]] | None = None
        self._newlines: list[int] = []

    def line(self, array: str, index: int) -> int:
        if self._starts is None:
            try:
                self._starts = _array_starts(self.text)
            except (ValueError, IndexError):  # pragma: no cover - json.loads accepted it
                self._starts = {}
            self._newlines = [m.start() for m in re.finditer("\n", self.text)]
        starts = self._starts.get(array, [])
        if index >= len(starts):
            return 1
        return bisect.bisect_left(self._newlines, starts[index]) + 1


@lru_cache(maxsize=4)
def _lines_of(path: str, mtime: int) -> JSONLines:
    return JSONLines(Path(path).read_text(encoding="utf-8-sig"))


def json_line(path: str, array: str, index: int) -> int:
    """Line of element ``index`` of ``array`` in the JSON file ``path`` (1 if unknown)."""
    try:
        return _lines_of(path, Path(path).stat().st_mtime_ns).line(array, index)
    except (OSError, ValueError):
        return 1


# --------------------------------------------------------------------------
# Images
# --------------------------------------------------------------------------


def open_image(path: str | Path) -> Any:
    """The image at ``path`` fully decoded as an RGB PIL image.

    ``Image.load()`` decodes every byte, so a truncated file raises here
    (``verify()`` alone lets many truncated JPEGs through).
    """
    from PIL import Image

    with Image.open(path) as img:
        img.load()
        return img.convert("RGB")


class ImageFileLoader:
    """Finds and decodes the image of a sample (picklable, runs in loader workers).

    Args:
        roots: Folders an image name is looked up in, in order (an absolute
            name is used as it is). The first folder that has the file wins;
            the loader then tries that folder first for the next image.
        modality: The image modality's name.
        hint: The fix named when an image is found nowhere.

    A missing image raises :class:`BadRecordError` naming every path tried; a
    file that does not decode (truncated, not an image) names the decoder's
    error.
    """

    def __init__(
        self,
        roots: Sequence[str | Path] = (),
        modality: str = "image",
        hint: str = "pass --image-root DIR (image_root=) naming the folder of the images",
    ) -> None:
        self.roots = [Path(r) for r in roots]
        self.modality, self.hint = modality, hint
        self._last = 0

    def resolve(self, name: str | Path) -> tuple[Path | None, list[Path]]:
        """The existing file for ``name`` (or None) and every path tried."""
        p = Path(name)
        if p.is_absolute() or not self.roots:
            return (p if p.is_file() else None), [p]
        order = [self._last, *(i for i in range(len(self.roots)) if i != self._last)]
        tried = []
        for i in order:
            candidate = self.roots[i] / p
            tried.append(candidate)
            if candidate.is_file():
                self._last = i
                return candidate, tried
        return None, [self.roots[i] / p for i in range(len(self.roots))]

    def locate(self, name: str | Path, source: object) -> Path:
        """The file of image ``name``; :class:`BadRecordError` naming every path tried.

        ``source`` (the record's file:line, e.g. a lazy :class:`Where`) is turned into
        text only for the error message.
        """
        path, tried = self.resolve(name)
        if path is None:
            where = str(source)
            looked = ", ".join(repr(str(t)) for t in tried)
            raise BadRecordError(
                f"{where}: missing image: image file {str(name)!r} not found (looked at "
                f"{looked}); {self.hint}, or fix the record",
                where,
                "missing image",
            )
        return path

    @staticmethod
    def decode(path: Path, source: object) -> Any:
        """The decoded image at ``path``; :class:`BadRecordError` (naming ``source``) when
        it does not decode."""
        try:
            return open_image(path)
        except Exception as exc:
            where = str(source)
            raise BadRecordError(
                f"{where}: unreadable image: {str(path)!r} cannot be decoded "
                f"({type(exc).__name__}: {exc}); replace the file or remove its record",
                where,
                "unreadable image",
            ) from exc

    def __call__(self, sample: Sample) -> Sample:
        images = []
        source = sample.extras.get("source", "?")  # a Where: located only for an error
        for name in sample.observations[self.modality]:
            if not isinstance(name, (str, Path)):  # already an image
                images.append(name)
                continue
            images.append(self.decode(self.locate(name, source), source))
        observations = {**sample.observations, self.modality: images}
        return Sample(sample.instance_id, observations, sample.label, dict(sample.extras))
