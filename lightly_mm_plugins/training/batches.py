"""One training batch: its indices and their seeded views, bad records skipped.

The training loader always uses an explicit batch sampler from here
(:class:`EpochBatchSampler`, or a stage scheduler's :class:`FixedBatches`), so
that batches are a deterministic function of ``(seed, epoch, rank)``: resuming a
run reproduces the same batches, every rank gets the same number of equally
sized batches (``drop_last``; gathering needs equal shapes), and a stage
scheduler (MCL) can supply its own batches. Views depend only on
``(seed, epoch, index)`` (:class:`SeededViews`), so the position in an epoch is
one number (see :mod:`~lightly_mm_plugins.training.resumable`).

Bad records (a missing, truncated or non-image file, found when a worker reads
it): with ``on_error="raise"`` the first one stops training with its
``file:line``; with ``on_error="skip"`` it is left out and its batch filled
with the next readable records (this rank's share of the next batches, so no
two ranks take the same one; else index ``i+1, i+2, ...`` not already in the
batch), so every rank still gets full, equally sized batches whatever the
worker count; each skip travels with its batch
(``batch.extras["skipped_records"]``) to :class:`SkippedRecordsReport`, which
prints them with ``file:line`` when training ends. No bad record reaches the
model.

Example:
    >>> sampler = EpochBatchSampler(num_samples=10, batch_size=4, seed=0, epoch=0)
    >>> len(sampler), [len(b) for b in sampler]
    (2, [4, 4])
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Iterator, Sequence
from typing import Any

import pytorch_lightning as pl
import torch
from torch.utils.data import Dataset, Sampler

from ..api import View
from ..errors import DataError
from .seeding import epoch_seed, sample_seeds, seed_cpu_generators

#: Consecutive unreadable records after which skipping gives up (a wrong image root).
MAX_BAD_IN_A_ROW = 256


class SampleBatch(list):  # type: ignore[type-arg]
    """The samples of a batch and the bad records left out of it (``file:line: problem``)."""

    def __init__(self, samples: Sequence[Any] = (), skipped: Sequence[str] = ()) -> None:
        super().__init__(samples)
        self.skipped = list(skipped)


class RankBatch(list):  # type: ignore[type-arg]
    """This rank's indices of one batch, and ``spare``: its share of the next global
    batches, from which bad records are replaced (disjoint from every rank's batch)."""

    def __init__(self, indices: Sequence[int] = (), spare: Sequence[int] = ()) -> None:
        super().__init__(indices)
        self.spare = list(spare)


def read_skipping(
    read: Callable[[int], Any],
    indices: Sequence[int],
    n: int,
    on_error: str,
    fill: bool,
    spare: Sequence[int] = (),
) -> SampleBatch:
    """``read(i)`` for every index; a :class:`~lightly_mm_plugins.data.BadRecordError`
    is raised (``on_error="raise"``) or skipped and, with ``fill``, replaced by the next
    readable index not already in the batch: first from ``spare`` (this rank's share of
    the following batches, so no two ranks pick the same one), then ``i+1, i+2, ...``."""
    from ..data import BadRecordError

    out = SampleBatch()
    taken = set(int(i) for i in indices)
    spares = iter(int(i) for i in spare)

    def replacement(j: int) -> int:
        for k in spares:
            if k not in taken:
                return k
        for _ in range(n):
            j = (j + 1) % n
            if j not in taken:
                break
        return j

    for index in indices:
        j, bad = int(index), 0
        while True:
            try:
                out.append(read(j))
                break
            except BadRecordError as exc:
                if on_error != "skip":
                    raise
                out.skipped.append(str(exc).split("; ", 1)[0])
                if not fill:
                    break
                bad += 1
                if bad >= min(MAX_BAD_IN_A_ROW, n):
                    raise DataError(
                        f"{bad} unreadable records in a row (last: {exc}); the images are "
                        "probably not where the records say: check --image-root"
                    ) from exc
                j = replacement(j)
                taken.add(j)
    return out


class EpochBatchSampler(Sampler[list[int]]):
    """Shuffled, rank-sharded, equal-size batches for one epoch.

    The global permutation depends on ``seed + epoch``; rank ``r`` of ``W``
    takes global batch ``b``'s slice ``[r*B, (r+1)*B)``. Leftovers are dropped.
    """

    def __init__(
        self,
        num_samples: int,
        batch_size: int,
        seed: int,
        epoch: int,
        world_size: int = 1,
        rank: int = 0,
        shuffle: bool = True,
    ) -> None:
        if batch_size < 2:
            raise ValueError(f"batch_size must be >= 2 for contrastive learning, got {batch_size}")
        global_bs = batch_size * world_size
        if num_samples < global_bs:
            raise ValueError(
                f"the training set has {num_samples} instances, fewer than one global batch "
                f"({batch_size} x {world_size} devices); lower --batch-size"
            )
        self.num_samples, self.batch_size = num_samples, batch_size
        self.seed, self.epoch, self.world_size, self.rank = seed, epoch, world_size, rank
        self.shuffle = shuffle

    def _batches(self) -> list[list[int]]:
        if self.shuffle:
            g = torch.Generator().manual_seed(epoch_seed(self.seed, self.epoch))
            order = torch.randperm(self.num_samples, generator=g).tolist()
        else:
            order = list(range(self.num_samples))
        gbs = self.batch_size * self.world_size
        starts = list(range(0, self.num_samples - gbs + 1, gbs))
        lo = self.rank * self.batch_size
        out: list[list[int]] = []
        for b, start in enumerate(starts):
            # spare: this rank's slices of the next two global batches (bad-record fill)
            nxt = [starts[(b + k) % len(starts)] + lo for k in (1, 2)]
            spare = [i for s in nxt for i in order[s : s + self.batch_size]]
            out.append(RankBatch(order[start + lo : start + lo + self.batch_size], spare))
        return out

    def __iter__(self) -> Iterator[list[int]]:
        return iter(self._batches())

    def __len__(self) -> int:
        return self.num_samples // (self.batch_size * self.world_size)


class FixedBatches(Sampler[list[int]]):
    """Batches given as lists of indices (from a stage scheduler)."""

    def __init__(self, batches: Sequence[list[int]]) -> None:
        self.batches = [list(b) for b in batches]

    def __iter__(self) -> Iterator[list[int]]:
        return iter(self.batches)

    def __len__(self) -> int:
        return len(self.batches)


class SeededViews(Dataset[Any]):
    """Training views whose random draws depend only on ``(seed, epoch, index)``.

    Augmentations then do not depend on worker count, prefetching, or where an
    interrupted run resumed. Set :attr:`epoch` before each epoch.
    """

    def __init__(self, views: Any, seed: int, on_error: str = "raise") -> None:
        self.views, self.seed, self.epoch = views, seed, 0
        self.on_error = on_error
        self.modalities = dict(views.modalities)
        self._seeds: tuple[int, list[int]] | None = None

    def sample_seeds(self) -> list[int]:
        """This epoch's per-sample seeds (:func:`~.seeding.sample_seeds`), drawn once
        per epoch."""
        if self._seeds is None or self._seeds[0] != self.epoch:
            self._seeds = (self.epoch, sample_seeds(self.seed, self.epoch, len(self.views)))
        return self._seeds[1]

    def __len__(self) -> int:
        return len(self.views)

    def __getitem__(self, index: int) -> Any:
        return self.__getitems__([index])[0]

    def __getitems__(self, indices: list[int]) -> list[Any]:
        """The views of a batch (the DataLoader's batched fetch).

        Python's, NumPy's and torch's CPU generators are seeded per sample and
        restored once per batch (saving NumPy's state costs ~0.1 ms). A bad
        record is raised, or skipped and replaced (see :func:`read_skipping`).
        """
        import random

        import numpy as np

        seeds = self.sample_seeds()

        def read(index: int) -> Any:
            seed_cpu_generators(seeds[index])  # views run on the CPU
            return self.views[index]

        py_state, np_state = random.getstate(), np.random.get_state()
        with torch.random.fork_rng(devices=[]):
            try:
                spare = getattr(indices, "spare", ())
                return read_skipping(read, indices, len(self.views), self.on_error, True, spare)
            finally:
                random.setstate(py_state)
                np.random.set_state(np_state)


class EvalViews(Dataset[Any]):
    """Evaluation views of a data set; a bad record is raised or left out of its batch."""

    def __init__(self, views: Any, on_error: str = "raise") -> None:
        self.views, self.on_error = views, on_error
        self.modalities = dict(views.modalities)

    def __len__(self) -> int:
        return len(self.views)

    def __getitem__(self, index: int) -> Any:
        return self.views[index]

    def __getitems__(self, indices: list[int]) -> list[Any]:
        out = read_skipping(self.views.__getitem__, indices, len(self), self.on_error, False)
        if not out and indices:  # every record of the batch bad: keep one readable instance
            filled = read_skipping(self.views.__getitem__, indices[:1], len(self), "skip", True)
            out.extend(filled)
        return out


class SkippedRecordsReport(pl.Callback):
    """Counts the bad records skipped in training and reports them at the end.

    Takes ``batch.extras["skipped_records"]`` off every training batch (so it
    never reaches the model), gathers the counts of all ranks when training
    ends, and prints each record's ``file:line: problem`` and how often it was
    met (once per epoch it was drawn in). :attr:`skipped` holds the counts.
    """

    def __init__(self) -> None:
        self.skipped: Counter[str] = Counter()

    def on_train_batch_start(
        self, trainer: Any, pl_module: Any, batch: Any, batch_idx: int
    ) -> None:
        extras = getattr(batch, "extras", None)
        if isinstance(extras, dict):
            self.skipped.update(extras.pop("skipped_records", []))

    def on_train_end(self, trainer: Any, pl_module: Any) -> None:
        import torch.distributed as dist

        total = Counter(self.skipped)
        if dist.is_available() and dist.is_initialized():
            parts: list[Any] = [None] * dist.get_world_size()
            dist.all_gather_object(parts, dict(self.skipped))
            total = Counter()
            for part in parts:
                total.update(part or {})
        self.skipped = total
        if total and trainer.is_global_zero:
            print(self.summary())

    def summary(self) -> str:
        lines = [
            f"Skipped {sum(self.skipped.values())} bad record(s) while training "
            f"(--on-error skip; {len(self.skipped)} distinct):"
        ]
        for text, count in sorted(self.skipped.items()):
            lines.append(f"  {text} (x{count})")
        return "\n".join(lines)


class ShardEvalViews(torch.utils.data.IterableDataset):  # type: ignore[type-arg]
    """Evaluation views of every sample of tar shards (split over loader workers by shard)."""

    streaming = True

    def __init__(self, shards: Any, view: View) -> None:
        self.shards, self.view = shards, view
        self.modalities = dict(shards.modalities)

    def __len__(self) -> int:
        return len(self.shards)

    def __iter__(self) -> Iterator[Any]:
        for sample in self.shards:
            yield self.view.eval_view(sample)


def eval_views(dataset: Any, view: View, on_error: str) -> Any:
    """Evaluation views of ``dataset``: :class:`ShardEvalViews` for tar shards, else
    :class:`EvalViews` (a bad record raised or left out of its batch)."""
    from ..data import ViewDataset

    if getattr(dataset, "streaming", False):
        return ShardEvalViews(dataset, view)
    return EvalViews(ViewDataset(dataset, view, train=False), on_error)
