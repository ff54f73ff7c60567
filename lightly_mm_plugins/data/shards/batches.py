"""Training batches from shards, split by epoch, rank and loader worker, resumable
inside an epoch (the guarantees are in :mod:`lightly_mm_plugins.data.shards`).

Example:
    >>> shards = ShardDataset("s/{0..3}.tar")  # doctest: +SKIP
    >>> batches = ShardBatches(shards, view, 32, seed=0, epoch=0)  # doctest: +SKIP
    >>> len(batches) == batches.per_worker  # doctest: +SKIP
    True
"""

from __future__ import annotations

import random
import zlib
from collections.abc import Iterator
from typing import Any

import numpy as np
import torch
from torch.utils.data import IterableDataset, get_worker_info

from ...errors import DataError
from ..records import BadRecordError
from .read import SHUFFLE_BUFFER, ShardDataset, decode_sample

__all__ = ["ShardBatches"]


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
        from ...training.seeding import seed_cpu_generators

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
        from ...training.datamodule import MAX_BAD_IN_A_ROW, SampleBatch

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
