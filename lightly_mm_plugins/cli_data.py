"""``lightly-mm data ...``: data set tools (no heavy imports at parser build time).

This module lives outside :mod:`lightly_mm_plugins.data` because importing any
module of that package runs its ``__init__``, which imports torch; the parser
of every ``lightly-mm`` command is built from here, so ``lightly-mm plugins``
stays torch-free. The data package is imported only when ``data to-shards``
runs (:func:`to_shards_from_args`); :mod:`lightly_mm_plugins.data.commands`
re-exports these names.

* ``lightly-mm data to-shards ANNOTATIONS OUT_DIR [--shard-size N]``: write an
  annotation file (any supported format) as WebDataset tar shards plus
  ``sizes.json``, ready for ``lightly-mm train --data 'OUT_DIR/{000000..N}.tar'``.

Example:
    >>> import argparse
    >>> p = argparse.ArgumentParser(prog="lightly-mm")
    >>> add_data_arguments(p.add_subparsers(dest="command"))
    >>> p.parse_args(["data", "to-shards", "c.json", "shards"]).shard_size
    1000
"""

from __future__ import annotations

import argparse
from typing import Any


def add_data_arguments(sub: Any) -> None:
    d = sub.add_parser("data", help="data set tools (to-shards)")
    dsub = d.add_subparsers(dest="data_command", required=True)
    s = dsub.add_parser(
        "to-shards",
        help="write an annotation file as WebDataset tar shards",
        description="Write an annotation file (.jsonl, COCO/Karpathy .json, .csv/.tsv) as "
        "WebDataset tar shards (image + json {captions, label} per key) and sizes.json.",
    )
    add_to_shards_arguments(s)
    s.set_defaults(func=to_shards_from_args)


def add_to_shards_arguments(s: Any) -> None:
    """The arguments of ``data to-shards`` (an argparse or jsonargparse parser)."""
    s.add_argument("annotations", help="the annotation file")
    s.add_argument("out_dir", help="folder for the shards (created)")
    s.add_argument("--shard-size", type=int, default=1000, help="samples per shard (1000)")
    s.add_argument("--image-root", default=None, metavar="DIR")
    s.add_argument("--csv-img-key", default=None, metavar="COLUMN")
    s.add_argument("--csv-caption-key", default=None, metavar="COLUMN")
    s.add_argument("--csv-separator", default=None, metavar="CHAR")
    s.add_argument(
        "--on-error",
        choices=["raise", "skip"],
        default="raise",
        help="a missing or undecodable image: fail (default) or leave it out and count it",
    )


def to_shards_from_args(args: argparse.Namespace) -> int:
    from .data import check_data_spec, load_dataset
    from .data.shards import write_shards
    from .errors import DataError

    if check_data_spec(args.annotations) != "file":
        raise DataError(f"{args.annotations!r} is not an annotation file; name a .jsonl/.json/.csv")
    if args.shard_size < 1:
        raise DataError(f"--shard-size {args.shard_size}: must be a positive integer")
    options = {
        k: getattr(args, k)
        for k in ("image_root", "csv_img_key", "csv_caption_key", "csv_separator")
        if getattr(args, k) is not None
    }
    ds = load_dataset(args.annotations, split="all", on_error=args.on_error, **options)
    result = write_shards(ds, args.out_dir, args.shard_size, args.on_error)
    for text in result["skipped"]:
        print(f"skipped: {text}")
    print(
        f"wrote {result['samples']} samples in {len(result['shards'])} shard(s); train with "
        f"--data '{result['pattern']}'"
    )
    return 0
