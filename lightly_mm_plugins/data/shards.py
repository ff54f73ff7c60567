"""WebDataset tar shards: streaming image-text data that does not fit a folder.

``--data 'shards/{000000..000099}.tar'`` (brace expansion, the open_clip
convention) names tar files whose members are grouped by key
(``webdataset``'s convention: ``0001.jpg`` + ``0001.txt`` is one sample):

* an image: ``jpg`` / ``jpeg`` / ``png`` / ``webp``;
* a caption: ``txt`` (one caption), or ``json`` with
  ``{"captions": [...], "label": 3}`` (``caption`` also accepted; ``label``
  optional).

Shards are read with the ``webdataset`` package's tar iterator and split by
shard: each epoch the shard list is shuffled with ``(seed, epoch)`` (the same
on every rank), rank ``r`` of ``R`` takes shards ``r, r+R, ...`` and its loader
worker ``w`` of ``W`` takes every ``W``-th of those; a worker shuffles its
samples in a seeded buffer. Every sample of the epoch's shards is thus read
by exactly one (rank, worker). So that all ranks take the same number of
equally sized batches (DDP gathers need equal shapes), every worker yields
the same number of batches, ``min`` over all (rank, worker) of
``floor(samples / batch)``; the samples beyond that are left out of that
epoch (none when shards are equal and their count is a multiple of ``R x W``,
except each worker's last partial batch). Sample counts come from the
``sizes.json`` that ``lightly-mm data to-shards`` writes beside the shards
(open_clip reads the same file), else from the tar headers (no image is read).

Resume inside an epoch: the position is the number of batches the training
loop took; worker ``w`` then drops its first ``len(range(w, done, W))``
batches' worth of raw samples (undecoded) and continues, the loader's first
worker taking the part of worker ``done % W``. Exact (the same
batches and augmentations as an uninterrupted run) with the same seed, shards,
batch size, devices and ``--num-workers``, and when no record in the dropped
part was bad; a bad record skipped there (``--on-error skip``) had pulled one
more sample into its batch, so after resume that worker's batches start one
sample earlier per such record: those samples are seen twice, none is
skipped. Instance ids are ``shard index * 2**32 + position in the shard``.

Example:
    >>> expand_shards("shards/{000..002}.tar", check=False)
    ['shards/000.tar', 'shards/001.tar', 'shards/002.tar']
"""

from __future__ import annotations

import io
import json
import random
import tarfile
import zlib
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch.utils.data import IterableDataset, get_worker_info

from ..api import Sample
from ..errors import DataError
from .records import BadRecordError

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


class ShardBatches(IterableDataset):  # type: ignore[type-arg]
    """One epoch of training batches from shards, split by rank and loader worker.

    Each worker yields exactly :attr:`per_worker` batches (lists of viewed
    samples); the DataLoader hands them out round-robin (worker ``k % W`` has
    batch ``k``), so a resumed run can tell every worker how many to drop
    (:attr:`skip_batches`). See the module docs for the guarantees.

    Args:
        shards: The data.
        view: The training view (random draws seeded per sample from
            ``(seed, epoch, instance id)``).
        batch_size: Per rank.
        seed, epoch, world_size, rank: Which epoch and which share.
        num_workers: The DataLoader's worker count (the split depends on it).
    """

    def __init__(
        self,
        shards: ShardDataset,
        view: Any,
        batch_size: int,
        seed: int,
        epoch: int,
        world_size: int = 1,
        rank: int = 0,
        num_workers: int = 0,
    ) -> None:
        self.shards, self.view, self.batch_size = shards, view, batch_size
        self.seed, self.epoch, self.world_size, self.rank = seed, epoch, world_size, rank
        #: DataLoader workers (0: the main process) and split slots per rank.
        self.num_workers, self.workers = num_workers, max(1, num_workers)
        self.skip_batches = 0
        n_slots = world_size * self.workers
        if len(shards.paths) < n_slots:
            raise DataError(
                f"{len(shards.paths)} shard(s) cannot feed {world_size} device(s) x "
                f"{self.workers} loader worker(s) (every worker reads whole shards); write "
                "more, smaller shards (lightly-mm data to-shards --shard-size) or lower "
                "--num-workers"
            )
        counts = [
            sum(shards.sizes[s] for s in self.assignment(r, w)) // batch_size
            for r in range(world_size)
            for w in range(self.workers)
        ]
        self.per_worker = min(counts)
        if self.per_worker == 0:
            raise DataError(
                f"a loader worker's shards hold fewer than --batch-size {batch_size} samples "
                f"({world_size} device(s) x {self.workers} worker(s), {len(shards)} samples in "
                f"{len(shards.paths)} shard(s)); lower --batch-size or --num-workers"
            )

    def order(self) -> list[int]:
        """This epoch's shard order (the same on every rank)."""
        g = random.Random(self.seed * 100_003 + self.epoch)
        order = list(range(len(self.shards.paths)))
        g.shuffle(order)
        return order

    def assignment(self, rank: int, worker: int) -> list[int]:
        """The shards (rank ``rank``, worker ``worker``) reads this epoch."""
        mine = self.order()[rank :: self.world_size]
        return mine[worker :: self.workers]

    def __len__(self) -> int:
        return self.per_worker * self.workers

    def stream(self, worker: int) -> Iterator[tuple[int, str, dict[str, Any]]]:
        """This rank's worker's raw samples, shuffled in a seeded buffer."""
        rng = random.Random(zlib.crc32(f"{self.seed}:{self.epoch}:{self.rank}:{worker}".encode()))
        buf: list[tuple[int, str, dict[str, Any]]] = []
        for shard in self.assignment(self.rank, worker):
            for item in self.shards.raw(shard):
                if len(buf) < SHUFFLE_BUFFER:
                    buf.append(item)
                    continue
                i = rng.randrange(len(buf))
                buf[i], item = item, buf[i]
                yield item
        rng.shuffle(buf)
        yield from buf

    def _view(self, raw: tuple[int, str, dict[str, Any]]) -> Any:
        from ..training.seeding import seed_cpu_generators

        iid, where, sample = raw
        decoded = decode_sample(sample, iid, where)
        seed = zlib.crc32(f"{self.seed}:{self.epoch}:{iid}".encode())
        py, np_state = random.getstate(), np.random.get_state()
        with torch.random.fork_rng(devices=[]):
            try:
                seed_cpu_generators(seed)
                return self.view(decoded)
            finally:
                random.setstate(py)
                np.random.set_state(np_state)

    def __iter__(self) -> Iterator[Any]:
        info = get_worker_info()
        workers = info.num_workers if info is not None else 1
        if workers != self.workers:
            raise DataError(  # pragma: no cover - the data module builds both from one number
                f"ShardBatches was split for {self.workers} worker(s) but runs in {workers}"
            )
        # A DataLoader hands out its worker 0's batch first; after resuming past
        # ``skip_batches`` the next batch is logical worker ``skip_batches % W``'s.
        worker = info.id if info is not None else 0
        yield from self._batches((worker + self.skip_batches) % self.workers)

    def _batches(self, worker: int) -> Iterator[Any]:
        """Worker ``worker``'s :attr:`per_worker` batches (minus those resumed past).

        A bad record is raised, or skipped and its place taken by the next
        sample; should bad records use up the worker's spare samples, its
        stream starts again (those samples are seen twice), so every worker
        still yields the same number of full batches.
        """
        from ..training.datamodule import MAX_BAD_IN_A_ROW, SampleBatch

        skip = len(range(worker, self.skip_batches, self.workers))  # taken before resume
        stream = self.stream(worker)
        for _ in range(skip * self.batch_size):  # raw samples only: nothing decoded
            next(stream, None)
        bad = 0
        for _ in range(skip, self.per_worker):
            batch = SampleBatch()
            while len(batch) < self.batch_size:
                raw = next(stream, None)
                if raw is None:
                    stream = self.stream(worker)
                    continue
                try:
                    batch.append(self._view(raw))
                    bad = 0
                except BadRecordError as exc:
                    if self.shards.on_error != "skip":
                        raise
                    batch.skipped.append(str(exc).split("; ", 1)[0])
                    bad += 1
                    if bad >= MAX_BAD_IN_A_ROW:
                        raise DataError(
                            f"{bad} unreadable samples in a row (last: {exc}); check the shards"
                        ) from exc
            yield batch


# --------------------------------------------------------------------------
# Writing shards
# --------------------------------------------------------------------------

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

    from .records import BadRecordError, open_image

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
        path, tried = loader.resolve(name)
        try:
            if path is None:
                looked = ", ".join(repr(str(t)) for t in tried)
                raise BadRecordError(
                    f"{where}: missing image: image file {name!r} not found (looked at "
                    f"{looked}); pass --image-root DIR",
                    where,
                    "missing image",
                )
            open_image(path)  # decodes: a broken file never goes into a shard
        except BadRecordError as exc:
            if on_error != "skip":
                raise
            skipped.append(str(exc).split("; ", 1)[0])
            continue
        except Exception as exc:
            err = BadRecordError(
                f"{where}: unreadable image: {str(path)!r} cannot be decoded "
                f"({type(exc).__name__}: {exc}); replace the file or remove its record",
                where,
                "unreadable image",
            )
            if on_error != "skip":
                raise err from exc
            skipped.append(str(err).split("; ", 1)[0])
            continue
        assert path is not None
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
