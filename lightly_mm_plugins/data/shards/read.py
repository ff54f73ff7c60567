"""Reading WebDataset tar shards: the shard list, sample counts, decoding, and
:class:`ShardDataset` (see :mod:`lightly_mm_plugins.data.shards` for the format).

Example:
    >>> expand_shards("shards/{000..001}.tar", check=False)
    ['shards/000.tar', 'shards/001.tar']
"""

from __future__ import annotations

import io
import json
import tarfile
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

from torch.utils.data import IterableDataset, get_worker_info

from ...api import Sample
from ...errors import DataError
from ..records import BadRecordError

__all__ = [
    "ID_STRIDE",
    "IMAGE_EXTS",
    "SHUFFLE_BUFFER",
    "SIZES_FILE",
    "TEXT_EXTS",
    "ShardDataset",
    "decode_sample",
    "expand_shards",
    "is_shard_spec",
    "shard_sizes",
]

IMAGE_EXTS = ("jpg", "jpeg", "png", "webp")
TEXT_EXTS = ("txt", "json")
SIZES_FILE = "sizes.json"
#: Instance id = shard index * ID_STRIDE + position in the shard.
ID_STRIDE = 2**32
SHUFFLE_BUFFER = 1000


def is_shard_spec(spec: str) -> bool:
    """Whether ``spec`` names tar shards (``.tar`` after brace expansion)."""
    return spec.endswith(".tar") or spec.endswith(".tar}")


def expand_shards(spec: str, check: bool = True) -> list[str]:
    """The shard paths of ``spec`` (``{000..099}`` and ``{a,b}`` brace expansion).

    Raises:
        DataError: no shard, or (``check``) a shard that does not exist.
    """
    try:
        from braceexpand import braceexpand
    except ImportError as exc:  # pragma: no cover - the [shards] extra not installed
        raise DataError(
            "WebDataset shards need the 'shards' extra: pip install 'lightly-mm-plugins[shards]'"
        ) from exc

    paths = [p for part in spec.split("::") for p in braceexpand(part)]
    if not paths:
        raise DataError(f"{spec!r} names no shard; use e.g. 'shards/{{000000..000099}}.tar'")
    if check:
        missing = [p for p in paths if not Path(p).is_file()]
        if missing:
            more = f" (and {len(missing) - 1} more)" if len(missing) > 1 else ""
            raise DataError(
                f"shard {missing[0]!r} not found{more}: {spec!r} expands to {len(paths)} "
                "file(s); check the path and the brace range"
            )
    return paths


def shard_sizes(paths: Sequence[str]) -> list[int]:
    """Samples per shard: from ``sizes.json`` beside the shards, else the tar headers.

    Counting reads tar headers only (a seek per member), never image data.
    """
    sizes: dict[str, int] = {}
    for folder in {str(Path(p).parent) for p in paths}:
        f = Path(folder) / SIZES_FILE
        if f.is_file():
            try:
                sizes.update(
                    {str(Path(folder) / k): int(v) for k, v in json.loads(f.read_text()).items()}
                )
            except (ValueError, AttributeError) as exc:
                raise DataError(f"{f}: not a JSON object of shard name -> count ({exc})") from exc
    out = []
    for p in paths:
        key = str(Path(p))
        out.append(sizes[key] if key in sizes else _count_samples(p))
    return out


def _count_samples(path: str) -> int:
    keys = set()
    try:
        with tarfile.open(path) as tar:
            for member in tar:
                if member.isreg():
                    key, _, ext = member.name.rpartition(".")
                    if ext.lower() in IMAGE_EXTS:
                        keys.add(key)
    except (tarfile.TarError, OSError) as exc:
        raise DataError(f"{path}: not a readable tar file ({exc}); rewrite the shard") from exc
    return len(keys)


def _raw_samples(path: str) -> Iterator[dict[str, Any]]:
    """The members of one shard grouped by key (``webdataset``'s tar iterator)."""
    from webdataset.tariterators import group_by_keys, tar_file_iterator

    with open(path, "rb") as f:
        try:
            members = ({**m, "__url__": path} for m in tar_file_iterator(f))
            yield from group_by_keys(members)
        except (tarfile.TarError, OSError) as exc:
            raise DataError(
                f"{path}: truncated or not a tar file ({exc}); rewrite the shard"
            ) from exc


def decode_sample(raw: dict[str, Any], instance_id: int, where: str) -> Sample:
    """A raw shard sample (bytes per extension) as a :class:`Sample` with a decoded image.

    Raises:
        BadRecordError: no image or caption member, a bad JSON, or an image
            that does not decode; named ``shard.tar:key``.
    """
    from PIL import Image

    lower = {k.lower(): v for k, v in raw.items() if not k.startswith("__")}
    image_ext = next((e for e in IMAGE_EXTS if e in lower), None)
    if image_ext is None:
        raise BadRecordError(
            f"{where}: missing image: no {'/'.join(IMAGE_EXTS)} member for this key; "
            "write one image per key",
            where,
            "missing image",
        )
    label = None
    if "json" in lower:
        try:
            meta = json.loads(lower["json"])
            caps = meta.get("captions", meta.get("caption"))
            label = meta.get("label")
        except (ValueError, AttributeError) as exc:
            raise BadRecordError(
                f'{where}: bad JSON: {exc}; write {{"captions": [...], "label": ...}}',
                where,
                "bad JSON",
            ) from exc
    elif "txt" in lower:
        caps = lower["txt"].decode("utf-8", errors="replace")
    else:
        raise BadRecordError(
            f"{where}: no captions: no txt or json member for this key; add one",
            where,
            "no captions",
        )
    captions = [caps] if isinstance(caps, str) else caps
    if not isinstance(captions, list) or not all(isinstance(c, str) for c in captions):
        raise BadRecordError(
            f"{where}: no captions: captions must be strings", where, "no captions"
        )
    captions = [c.strip() for c in captions if c.strip()]
    if not captions:
        raise BadRecordError(f"{where}: no captions: all captions are empty", where, "no captions")
    if label is not None and (isinstance(label, bool) or not isinstance(label, int)):
        raise BadRecordError(f"{where}: bad label: {label!r} is not an integer", where, "bad label")
    try:
        with Image.open(io.BytesIO(lower[image_ext])) as img:
            img.load()
            image = img.convert("RGB")
    except Exception as exc:
        raise BadRecordError(
            f"{where}: unreadable image: the {image_ext} member cannot be decoded "
            f"({type(exc).__name__}: {exc}); rewrite the shard without it",
            where,
            "unreadable image",
        ) from exc
    return Sample(instance_id, {"image": [image], "text": captions}, label, {"source": where})


class ShardDataset(IterableDataset):  # type: ignore[type-arg]
    """Image-text samples streamed from tar shards (decoded where they are read).

    Iterating yields raw :class:`~lightly_mm_plugins.api.Sample` objects (all
    shards, in order, split over loader workers) for evaluation; training uses
    :meth:`batches` through :class:`ShardBatches`.

    Args:
        spec: Shard pattern, e.g. ``shards/{000000..000099}.tar``.
        on_error: ``raise`` or ``skip`` bad samples (see the module docs).
    """

    streaming = True

    def __init__(self, spec: str, on_error: str = "raise") -> None:
        self.spec = spec
        self.paths = expand_shards(spec)
        self.sizes = shard_sizes(self.paths)
        self.on_error = on_error
        self.modalities = {"image": "image", "text": "text"}
        self.name = Path(self.paths[0]).parent.name or "shards"
        self.default_image_size = 32
        self.loader = None

    def __len__(self) -> int:
        return int(sum(self.sizes))

    def raw(self, shard: int) -> Iterator[tuple[int, str, dict[str, Any]]]:
        """``(instance id, where, raw sample)`` of one shard, in tar order."""
        for pos, sample in enumerate(_raw_samples(self.paths[shard])):
            key = sample.get("__key__", str(pos))
            yield shard * ID_STRIDE + pos, f"{self.paths[shard]}:{key}", sample

    def __iter__(self) -> Iterator[Sample]:
        info = get_worker_info()
        wid, nw = (info.id, info.num_workers) if info is not None else (0, 1)
        for shard in range(wid, len(self.paths), nw):
            for iid, where, raw in self.raw(shard):
                try:
                    yield decode_sample(raw, iid, where)
                except BadRecordError:
                    if self.on_error != "skip":
                        raise
