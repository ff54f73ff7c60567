"""Data loading for training: views, collation and (stage-aware) batch sampling.

The training loader always uses an explicit batch sampler built here, so that
batches are a deterministic function of ``(seed, epoch, rank)``: resuming a run
reproduces the same batches, every rank gets the same number of equally sized
batches (``drop_last``; gathering needs equal shapes), and a stage scheduler
(MCL) can supply its own batches.

Mid-epoch resume: batches depend only on ``(seed, epoch, rank)`` and views
only on ``(seed, epoch, index)`` (:class:`SeededViews`), so the position in an
epoch is one number. The training loader is a :class:`ResumableDataLoader`
whose ``state_dict()`` (saved by Lightning in every checkpoint) is that
number, and whose ``load_state_dict()`` makes its batch sampler skip that many
batches: index lists only, no data is loaded for them.

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
"""

from __future__ import annotations

import itertools
import logging
import os
from collections import Counter
from collections.abc import Callable, Iterator, Sequence
from typing import Any

import pytorch_lightning as pl
import torch
from torch.utils.data import DataLoader, Dataset, Sampler

from ..api import View
from ..errors import CheckpointError, DataError
from .loop_state import batches_started_this_epoch
from .seeding import epoch_seed, sample_seeds, seed_cpu_generators
from .stage_driver import StageDriver

logger = logging.getLogger(__name__)
#: Consecutive unreadable records after which skipping gives up (a wrong image root).
MAX_BAD_IN_A_ROW = 256


def default_num_workers(dataset: Any) -> int:
    """Loader worker processes when ``--num-workers`` is not given.

    In-memory data (the embedded digits, synthetic vectors: no loader) reads
    in the main process (0: starting workers costs more than it saves). Data
    read from files decodes and augments in ``min(4, cores - 1)`` workers, so
    one core stays free for the training step (1 on a 2-core machine, 0 on one
    core).
    """
    if getattr(dataset, "loader", None) is None and not getattr(dataset, "streaming", False):
        return 0
    try:
        cores = len(os.sched_getaffinity(0))
    except AttributeError:  # pragma: no cover - not Linux
        cores = os.cpu_count() or 1
    return max(0, min(4, cores - 1))


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


class SkipBatches(Sampler[list[int]]):
    """A batch sampler that leaves out the first :attr:`skip` batches of ``inner``.

    ``len()`` stays the full epoch's: Lightning counts a resumed epoch's
    batches from where it stopped, so it expects ``len(inner) - skip`` more.
    """

    def __init__(self, inner: Sampler[list[int]]) -> None:
        self.inner = inner
        self.skip = 0
        #: Position of the last batch handed out (skipped ones included).
        self.position = 0

    def __iter__(self) -> Iterator[list[int]]:
        self.position = self.skip
        for batch in itertools.islice(iter(self.inner), self.skip, None):
            self.position += 1
            yield batch

    def __len__(self) -> int:
        return len(self.inner)  # type: ignore[arg-type]


class ResumableDataLoader(DataLoader):
    """The training loader of one epoch, resumable from inside it.

    Lightning saves :meth:`state_dict` in every checkpoint (its
    ``CombinedLoader`` asks every loader that has one) and, when it restarts
    inside an epoch, calls :meth:`load_state_dict` before iterating.

    Args:
        dataset: The training views.
        batch_sampler: This epoch's batches (this rank's share).
        epoch: The epoch the loader serves (checked on load).
        progress: Returns how many of this epoch's batches the training loop has
            taken (Lightning's ``batch_progress.current.ready``); without it,
            the number the sampler has handed out (which counts batches the
            loader prefetched, too: pass ``progress`` under a Trainer).
        **kwargs: Further :class:`~torch.utils.data.DataLoader` arguments.
    """

    def __init__(
        self,
        dataset: Any,
        batch_sampler: Sampler[list[int]],
        epoch: int,
        progress: Callable[[], int] | None = None,
        **kwargs: Any,
    ) -> None:
        skipper = SkipBatches(batch_sampler)
        super().__init__(dataset, batch_sampler=skipper, **kwargs)
        self.skipper = skipper
        self.epoch = epoch
        self.progress = progress

    def state_dict(self) -> dict[str, int]:
        done = self.progress() if self.progress is not None else self.skipper.position
        return {"epoch": int(self.epoch), "batches_done": int(done), "num_batches": len(self)}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        epoch, done = int(state["epoch"]), int(state["batches_done"])
        total = int(state.get("num_batches", len(self)))
        if epoch != self.epoch or total != len(self) or not 0 <= done <= total:
            raise CheckpointError(
                f"the checkpoint stopped after batch {done} of {total} of epoch {epoch}, but "
                f"this run's epoch {self.epoch} has {len(self)} batches: the data, "
                "--batch-size, --devices or --limit-train-samples differ from the run that "
                "wrote it; resume with the same settings, or start a new run (another --out)"
            )
        self.skipper.skip = done


class ResumableShardLoader(DataLoader):
    """The training loader of one epoch over tar shards, resumable from inside it.

    The same ``state_dict`` / ``load_state_dict`` protocol as
    :class:`ResumableDataLoader`; on load, every worker is told how many of its
    batches the run had taken (:attr:`~lightly_mm_plugins.data.shards.ShardBatches.skip_batches`).
    """

    def __init__(
        self,
        batches: Any,
        epoch: int,
        progress: Callable[[], int] | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(batches, batch_size=None, **kwargs)
        self.batches, self.epoch, self.progress = batches, epoch, progress

    def state_dict(self) -> dict[str, int]:
        done = self.progress() if self.progress is not None else 0
        return {"epoch": int(self.epoch), "batches_done": int(done), "num_batches": len(self)}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        epoch, done = int(state["epoch"]), int(state["batches_done"])
        total = int(state.get("num_batches", len(self)))
        if epoch != self.epoch or total != len(self) or not 0 <= done <= total:
            raise CheckpointError(
                f"the checkpoint stopped after batch {done} of {total} of epoch {epoch}, but "
                f"this run's epoch {self.epoch} has {len(self)} batches: the shards, "
                "--batch-size, --devices or --num-workers differ from the run that wrote it; "
                "resume with the same settings, or start a new run (another --out)"
            )
        self.batches.skip_batches = done


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


class MultimodalDataModule(pl.LightningDataModule):
    """Train / val / test loaders over :class:`~lightly_mm_plugins.data` data sets.

    Nothing here reads a sample: instance ids (for a stage scheduler) come from
    the data set's records (``train_set.instance_ids``).
    """

    def __init__(
        self,
        train_set: Any,
        test_set: Any,
        view: View,
        batch_size: int = 128,
        num_workers: int | None = 0,
        seed: int = 0,
        stages: StageDriver | None = None,
        on_error: str = "raise",
    ) -> None:
        super().__init__()
        from ..data import ViewDataset

        self.train_set, self.test_set, self.view = train_set, test_set, view
        self.kinds = dict(train_set.modalities)
        #: --num-workers not given: the default, lowered for shards to what they can feed.
        self.auto_workers = num_workers is None
        if num_workers is None:
            num_workers = default_num_workers(train_set)
        self.batch_size, self.num_workers, self.seed = batch_size, num_workers, seed
        self.on_error = on_error
        #: The stages (shared with the module): a scheduler may choose an epoch's batches.
        self.stages = stages
        self.streaming = bool(getattr(train_set, "streaming", False))
        self.train_views = (
            None
            if self.streaming
            else SeededViews(ViewDataset(train_set, view, train=True), seed, on_error)
        )
        self.train_eval_views = _eval_views(train_set, view, on_error)
        self.test_eval_views = _eval_views(test_set, view, on_error)
        self._instance_ids = (
            _instance_ids(train_set) if stages is not None and not self.streaming else None
        )

    def collate(self, samples: list[Any]) -> Any:
        from ..data import collate_samples

        batch = collate_samples(samples, self.kinds)
        skipped = getattr(samples, "skipped", None)
        if skipped:
            batch.extras["skipped_records"] = list(skipped)
        return batch

    def eval_collate(self, samples: list[Any]) -> Any:
        from ..data import collate_samples

        for text in getattr(samples, "skipped", None) or ():
            logger.warning("skipped a bad record in evaluation (--on-error skip): %s", text)
        return collate_samples(samples, self.kinds)

    def _world(self) -> tuple[int, int]:
        trainer = getattr(self, "trainer", None)
        if trainer is None:
            return 1, 0
        return trainer.world_size, trainer.global_rank

    def shard_batches(self, epoch: int) -> Any:
        """This rank's batches of ``epoch`` from tar shards (:mod:`~.data.shards`)."""
        from ..data.shards import ShardBatches

        world, rank = self._world()
        workers = self.num_workers
        if self.auto_workers:
            workers = min(workers, len(self.train_set.paths) // world)
        return ShardBatches(
            self.train_set, self.view, self.batch_size, self.seed, epoch, world, rank, workers
        )

    def train_sampler(self, epoch: int) -> Sampler[list[int]]:
        """This rank's batches of ``epoch`` (the stage scheduler's, else shuffled)."""
        world, rank = self._world()
        if self.stages is not None:
            assert self._instance_ids is not None
            batches = self.stages.batches(
                epoch, self._instance_ids, self.batch_size, world, rank, self.seed
            )
            if batches is not None:
                return FixedBatches(batches)
        return EpochBatchSampler(
            len(self.train_set), self.batch_size, self.seed, epoch, world, rank
        )

    def batches_per_epoch(self, epoch: int = 0) -> int:
        """Number of training batches of ``epoch`` on this rank (without loading data).

        The LR schedule's length uses this instead of Lightning's
        ``estimated_stepping_batches``, which builds the training loader before
        a checkpoint's loop state is restored and so kept an epoch-0 loader
        from being positioned when a run resumes inside epoch 0.
        """
        if self.streaming:
            return len(self.shard_batches(epoch))
        return len(self.train_sampler(epoch))  # type: ignore[arg-type]

    def train_dataloader(self) -> DataLoader:
        trainer = getattr(self, "trainer", None)
        epoch = trainer.current_epoch if trainer is not None else 0
        if self.streaming:
            batches = self.shard_batches(epoch)
            return ResumableShardLoader(
                batches,
                epoch,
                progress=self._batches_taken if trainer is not None else None,
                collate_fn=self.collate,
                num_workers=batches.num_workers,
            )
        assert self.train_views is not None
        self.train_views.epoch = epoch
        return ResumableDataLoader(
            self.train_views,
            self.train_sampler(epoch),
            epoch,
            progress=self._batches_taken if trainer is not None else None,
            collate_fn=self.collate,
            num_workers=self.num_workers,
            persistent_workers=False,
        )

    def _batches_taken(self) -> int:
        """Batches of the current epoch the training loop has started."""
        assert self.trainer is not None
        return batches_started_this_epoch(self.trainer)

    def eval_loader(self, which: str = "test", batch_size: int | None = None) -> DataLoader:
        ds = self.test_eval_views if which == "test" else self.train_eval_views
        workers = self.num_workers
        if getattr(ds, "streaming", False):  # whole shards per worker
            workers = min(workers, len(ds.shards.paths))
        return DataLoader(
            ds,
            batch_size=batch_size or max(self.batch_size, 256),
            shuffle=False,
            collate_fn=self.eval_collate,
            num_workers=workers,
        )


def _instance_ids(dataset: Any) -> torch.Tensor:
    """Instance ids from the records (no sample is read), else by reading every sample."""
    ids = getattr(dataset, "instance_ids", None)
    if ids is not None:
        return torch.as_tensor(ids, dtype=torch.long)
    return torch.tensor([dataset[i].instance_id for i in range(len(dataset))])


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


def _eval_views(dataset: Any, view: View, on_error: str) -> Any:
    from ..data import ViewDataset

    if getattr(dataset, "streaming", False):
        return ShardEvalViews(dataset, view)
    return EvalViews(ViewDataset(dataset, view, train=False), on_error)
