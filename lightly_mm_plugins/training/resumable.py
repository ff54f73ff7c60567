"""Mid-epoch resume of the training loader.

Batches depend only on ``(seed, epoch, rank)`` and views only on
``(seed, epoch, index)`` (:mod:`~lightly_mm_plugins.training.batches`), so the
position in an epoch is one number. The training loader is a
:class:`ResumableDataLoader` (or, over tar shards, a
:class:`ResumableShardLoader`) whose ``state_dict()`` (saved by Lightning in
every checkpoint) is that number, and whose ``load_state_dict()`` makes its
batch sampler skip that many batches (:class:`SkipBatches`): index lists only,
no data is loaded for them.

Example:
    >>> from lightly_mm_plugins.training.batches import FixedBatches
    >>> loader = ResumableDataLoader(list(range(8)), FixedBatches([[0, 1], [2, 3]]), epoch=0)
    >>> loader.load_state_dict({"epoch": 0, "batches_done": 1, "num_batches": 2})
    >>> [b.tolist() for b in loader]
    [[2, 3]]
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Iterator
from typing import Any

from torch.utils.data import DataLoader, Sampler

from ..errors import CheckpointError


def loader_state(loader: Any, done: int) -> dict[str, int]:
    """What a resumable loader saves: its epoch, the batches taken, the epoch's length."""
    return {"epoch": int(loader.epoch), "batches_done": int(done), "num_batches": len(loader)}


def batches_done(loader: Any, state: dict[str, Any], settings: str) -> int:
    """The batches of ``loader``'s epoch that ``state`` says were taken, checked against it.

    Raises :class:`CheckpointError` naming ``settings`` (what must match) when the
    saved epoch or its length differ from the loader's, or the position lies outside it.
    """
    epoch, done = int(state["epoch"]), int(state["batches_done"])
    total = int(state.get("num_batches", len(loader)))
    if epoch != loader.epoch or total != len(loader) or not 0 <= done <= total:
        raise CheckpointError(
            f"the checkpoint stopped after batch {done} of {total} of epoch {epoch}, but "
            f"this run's epoch {loader.epoch} has {len(loader)} batches: {settings} differ "
            "from the run that wrote it; resume with the same settings, or start a new run "
            "(another --out)"
        )
    return done


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
        return loader_state(self, done)

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.skipper.skip = batches_done(
            self, state, "the data, --batch-size, --devices or --limit-train-samples"
        )


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
        return loader_state(self, self.progress() if self.progress is not None else 0)

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.batches.skip_batches = batches_done(
            self, state, "the shards, --batch-size, --devices or --num-workers"
        )
