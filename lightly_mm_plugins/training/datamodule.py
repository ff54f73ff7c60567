"""The training data module: train / eval loaders over the data sets.

:class:`MultimodalDataModule` wires a data set and a view into loaders: the
training loader is a resumable loader
(:mod:`~lightly_mm_plugins.training.resumable`) over this epoch's batches and
seeded views (:mod:`~lightly_mm_plugins.training.batches`, where determinism
and bad-record handling are described); the evaluation loaders read every
sample once, in order. The samplers, views and loaders are re-exported here.
"""

from __future__ import annotations

import logging
import os
from typing import Any

import pytorch_lightning as pl
import torch
from torch.utils.data import DataLoader, Sampler

from ..api import View
from .batches import (
    MAX_BAD_IN_A_ROW,
    EpochBatchSampler,
    EvalViews,
    FixedBatches,
    RankBatch,
    SampleBatch,
    SeededViews,
    ShardEvalViews,
    SkippedRecordsReport,
    eval_views,
    read_skipping,
)
from .loop_state import batches_started_this_epoch
from .resumable import ResumableDataLoader, ResumableShardLoader, SkipBatches
from .stage_driver import StageDriver

__all__ = [
    "MAX_BAD_IN_A_ROW",
    "EpochBatchSampler",
    "EvalViews",
    "FixedBatches",
    "MultimodalDataModule",
    "RankBatch",
    "ResumableDataLoader",
    "ResumableShardLoader",
    "SampleBatch",
    "SeededViews",
    "ShardEvalViews",
    "SkipBatches",
    "SkippedRecordsReport",
    "default_num_workers",
    "eval_views",
    "read_skipping",
]

logger = logging.getLogger(__name__)


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
        self.train_eval_views = eval_views(train_set, view, on_error)
        self.test_eval_views = eval_views(test_set, view, on_error)
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
