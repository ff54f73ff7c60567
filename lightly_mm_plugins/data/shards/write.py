"""Writing an annotation-file data set as WebDataset tar shards plus ``sizes.json``
(what ``lightly-mm data to-shards`` runs).

Example:
    >>> write_shards(load_dataset("c.json", split="all"), "shards")["pattern"]  # doctest: +SKIP
    'shards/{000000..000009}.tar'
"""

from __future__ import annotations

import io
import json
from pathlib import Path
from typing import Any

from ...errors import DataError
from .read import SIZES_FILE

__all__ = ["write_shards"]

#: Image file suffixes copied into shards as they are (others are re-encoded as PNG).
_COPY_SUFFIX = {".jpg": "jpg", ".jpeg": "jpg", ".png": "png", ".webp": "webp"}


def write_shards(
    dataset: Any,
    out_dir: str | Path,
    shard_size: int = 1000,
    on_error: str = "raise",
) -> dict[str, Any]:
    """Write an annotation-file data set as WebDataset shards, plus ``sizes.json``.

    Every instance becomes one key: its image file's bytes (``jpg``/``png``/
    ``webp`` copied, other formats re-encoded as ``png``), a ``json`` member
    ``{"captions": [...], "label": ...}`` (what this package reads) and a
    ``txt`` member with the first caption (for readers such as open_clip's
    that take ``txt`` only). Shards are
    ``out_dir/000000.tar``, ``000001.tar``, ... with ``shard_size`` samples.

    Args:
        dataset: A data set loaded from an annotation file
            (:func:`~lightly_mm_plugins.data.load_dataset` with ``split="all"``).
        out_dir: Folder to write (created; existing shards are replaced).
        shard_size: Samples per shard.
        on_error: A missing or undecodable image: ``raise`` (a ``file:line``
            error) or ``skip`` (left out and counted).

    Returns:
        ``{"shards": [paths], "samples": n, "skipped": [file:line: problem, ...],
        "pattern": "out_dir/{000000..000009}.tar"}``.
    """
    import webdataset as wds
    from PIL import Image

    from ..records import BadRecordError

    if shard_size < 1:
        raise DataError(f"shard size must be >= 1, got {shard_size}")
    table = getattr(dataset, "samples", None)
    loader = getattr(dataset, "loader", None)
    if table is None or not hasattr(table, "image_name") or loader is None:
        raise DataError("to-shards needs a data set loaded from an annotation file")
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    shards: list[str] = []
    sizes: dict[str, int] = {}
    skipped: list[str] = []
    writer: Any = None
    count = 0
    for i in range(len(table)):
        sample = table[i]
        where = sample.extras["source"]
        name = table.image_name(i)
        try:
            path = loader.locate(name, where)
            loader.decode(path, where)  # a broken file never goes into a shard
        except BadRecordError as exc:
            if on_error != "skip":
                raise
            skipped.append(str(exc).split("; ", 1)[0])
            continue
        ext = _COPY_SUFFIX.get(path.suffix.lower())
        if ext is not None:
            data = path.read_bytes()
        else:
            buf = io.BytesIO()
            with Image.open(path) as img:
                img.convert("RGB").save(buf, format="PNG")
            data, ext = buf.getvalue(), "png"
        if writer is None or sizes[shards[-1]] >= shard_size:
            if writer is not None:
                writer.close()
            shard = out / f"{len(shards):06d}.tar"
            shards.append(str(shard))
            sizes[str(shard)] = 0
            writer = wds.TarWriter(str(shard), encoder=False)
        meta = {"captions": sample.observations["text"]}
        if sample.label is not None:
            meta["label"] = sample.label
        writer.write(
            {
                "__key__": f"{count:09d}",
                ext: data,
                "json": json.dumps(meta).encode("utf-8"),
                # the first caption alone, for readers that take txt only (open_clip)
                "txt": sample.observations["text"][0].encode("utf-8"),
            }
        )
        sizes[shards[-1]] += 1
        count += 1
    if writer is not None:
        writer.close()
    if not shards:
        raise DataError(f"no readable instance to write; skipped: {skipped[:3]}")
    (out / SIZES_FILE).write_text(
        json.dumps({Path(k).name: v for k, v in sizes.items()}, indent=1) + "\n"
    )
    last = len(shards) - 1
    pattern = str(out / f"{{{0:06d}..{last:06d}}}.tar") if last else shards[0]
    return {"shards": shards, "samples": count, "skipped": skipped, "pattern": pattern}
