"""The stage contract: how many stages training has and what carries between them.

A :class:`StageScheduler` splits training into stages (ranges of epochs inside
one Lightning ``Trainer``); at a boundary it may re-embed the training set
(:class:`StageContext`), hand pseudo labels to the objective and choose the
batches of the next stage (MCL clusters the training set and draws each batch
from one cluster). :class:`SingleStageScheduler` is ordinary training.
Re-exported by :mod:`lightly_mm_plugins.api`, the module plugins import.

Example:
    >>> from lightly_mm_plugins.api import SingleStageScheduler
    >>> SingleStageScheduler(epochs=3).plan(0)
    StagePlan(epochs=3, reinit_from_stage0=False, freeze=())
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import Tensor


@dataclass(frozen=True)
class StagePlan:
    """What one stage trains.

    Attributes:
        epochs: Epochs in this stage.
        reinit_from_stage0: Start the stage's encoders from the weights at the
            end of stage 0 (True; MCL trains every later stage from the stage-0
            model) or continue from the previous stage (False).
        freeze: Modality names whose encoders are frozen in this stage.
    """

    epochs: int
    reinit_from_stage0: bool = False
    freeze: tuple[str, ...] = ()


@dataclass
class StageContext:
    """What the pipeline offers a scheduler at a stage boundary.

    Attributes:
        stage: Index of the stage that just ended.
        embed_training_set: Callable returning ``(features, instance_ids)`` for
            the whole training set with the current model (eval view, batched,
            on the training device, with a progress bar): features ``(M, D)``.
        device: The training device.
    """

    stage: int
    embed_training_set: Callable[[], tuple[Tensor, Tensor]]
    device: torch.device = field(default_factory=lambda: torch.device("cpu"))


class StageScheduler:
    """How many stages training has and what carries over between them.

    The default (:class:`SingleStageScheduler`) has one stage. A scheduler is
    built as ``factory(epochs=<user epochs>, **user_kwargs)``. Its state (e.g.
    cluster labels) is saved in checkpoints through :meth:`state_dict`.
    """

    def num_stages(self) -> int:
        raise NotImplementedError

    def plan(self, stage: int) -> StagePlan:
        raise NotImplementedError

    def on_stage_end(self, context: StageContext) -> None:
        """Called after stage ``context.stage`` finished (not after the last)."""

    def pseudo_labels(self, stage: int, instance_ids: Tensor) -> Tensor | None:
        """Pseudo labels ``(N,)`` of the batch's instances in ``stage``, or None."""
        return None

    def batch_sampler(
        self,
        stage: int,
        instance_ids: Tensor,
        batch_size: int,
        world_size: int,
        rank: int,
        seed: int,
        epoch: int,
    ) -> Sequence[list[int]] | None:
        """Optional: the batches (lists of dataset indices) of this rank for one epoch.

        ``instance_ids[i]`` is the instance id of dataset index ``i``. Return
        None to use the ordinary shuffled loader (MCL returns batches drawn
        from one pseudo-label group each).
        """
        return None

    def combine(self, stage_features: Sequence[Tensor]) -> Tensor:
        """The final representation from each stage's features ``(N, D_s)``."""
        return stage_features[-1]

    def state_dict(self) -> dict[str, Any]:
        return {}

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        return None


class SingleStageScheduler(StageScheduler):
    """One stage of ``epochs`` epochs: ordinary training."""

    def __init__(self, epochs: int = 1) -> None:
        if epochs < 1:
            raise ValueError(f"epochs must be >= 1, got {epochs}")
        self.epochs = epochs

    def num_stages(self) -> int:
        return 1

    def plan(self, stage: int) -> StagePlan:
        return StagePlan(epochs=self.epochs)
