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

from .batches import ShardBatches
from .read import (
    ID_STRIDE,
    IMAGE_EXTS,
    SHUFFLE_BUFFER,
    SIZES_FILE,
    TEXT_EXTS,
    ShardDataset,
    decode_sample,
    expand_shards,
    is_shard_spec,
    shard_sizes,
)
from .write import write_shards

__all__ = [
    "ID_STRIDE",
    "IMAGE_EXTS",
    "SHUFFLE_BUFFER",
    "SIZES_FILE",
    "TEXT_EXTS",
    "ShardBatches",
    "ShardDataset",
    "decode_sample",
    "expand_shards",
    "is_shard_spec",
    "shard_sizes",
    "write_shards",
]
