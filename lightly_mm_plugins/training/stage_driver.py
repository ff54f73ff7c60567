"""Which stage an epoch belongs to, and what the stage scheduler decides for it.

One object, built from the registered stage scheduler and shared by the
training module and the data module, instead of each handing the other a
callable: the module asks it which stage an epoch is in (freezing, snapshots,
pseudo labels); the data module asks it for an epoch's batches (MCL draws each
batch from one cluster). Stage ``s`` covers the epochs
``[starts[s], starts[s + 1])`` of one Lightning ``Trainer``.

Example:
    >>> from lightly_mm_plugins.api import SingleStageScheduler
    >>> stages = StageDriver(SingleStageScheduler(epochs=3))
    >>> stages.starts, stages.total_epochs, stages.stage_of_epoch(2)
    ([0, 3], 3, 0)
"""

from __future__ import annotations

from collections.abc import Sequence

from torch import Tensor

from ..api import StageScheduler
from ..stages import stage_of_epoch, stage_starts


class StageDriver:
    """The stage scheduler together with the epoch range of each of its stages."""

    def __init__(self, scheduler: StageScheduler) -> None:
        self.scheduler = scheduler
        #: Stage ``s`` covers epochs ``[starts[s], starts[s + 1])``.
        self.starts = stage_starts(scheduler)

    @property
    def num_stages(self) -> int:
        return len(self.starts) - 1

    @property
    def total_epochs(self) -> int:
        return self.starts[-1]

    def stage_of_epoch(self, epoch: int) -> int:
        """The stage ``epoch`` belongs to (the last one for epochs past the end)."""
        return stage_of_epoch(self.starts, epoch)

    def batches(
        self,
        epoch: int,
        instance_ids: Tensor,
        batch_size: int,
        world_size: int,
        rank: int,
        seed: int,
    ) -> Sequence[list[int]] | None:
        """This rank's batches of ``epoch`` as the scheduler draws them, or None for the
        ordinary shuffled batches (see ``StageScheduler.batch_sampler``)."""
        return self.scheduler.batch_sampler(
            self.stage_of_epoch(epoch), instance_ids, batch_size, world_size, rank, seed, epoch
        )
