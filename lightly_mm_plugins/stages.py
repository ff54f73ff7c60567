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


# --------------------------------------------------------------------------
# Running the stages: shared by the pipeline and by stage callbacks in scripts
# --------------------------------------------------------------------------


def stage_starts(scheduler: StageScheduler) -> list[int]:
    """Epoch offsets of the stages: stage ``s`` covers epochs ``[starts[s], starts[s+1])``.

    Example:
        >>> stage_starts(SingleStageScheduler(epochs=3))
        [0, 3]
    """
    starts = [0]
    for s in range(scheduler.num_stages()):
        starts.append(starts[-1] + scheduler.plan(s).epochs)
    return starts


def stage_of_epoch(starts: Sequence[int], epoch: int) -> int:
    """The stage that epoch ``epoch`` belongs to (the last stage after the end)."""
    for s in range(len(starts) - 1):
        if epoch < starts[s + 1]:
            return s
    return len(starts) - 2


def apply_stage_freeze(plan: StagePlan, encoders: Any) -> None:
    """Freeze the encoders of the modalities ``plan.freeze`` names, unfreeze the others.

    ``encoders``: modality name -> module (a dict or ``nn.ModuleDict``). An encoder
    with ``trainable = False`` (a frozen text model) stays frozen.
    """
    frozen = set(plan.freeze)
    for name, enc in encoders.items():
        trainable = name not in frozen and getattr(enc, "trainable", True)
        for p in enc.parameters():
            p.requires_grad_(trainable)


def end_stage(
    scheduler: StageScheduler,
    stage: int,
    embed_training_set: Callable[[], tuple[Tensor, Tensor]],
    device: torch.device,
    encoders: Any,
    stage0_encoders: Mapping[str, Any] | None,
) -> None:
    """What happens when stage ``stage`` ends: the scheduler acts (MCL embeds and clusters
    the training set), then the encoders restart from stage 0's weights if the next
    stage's plan says so (``stage0_encoders``: their state dict at the end of stage 0)."""
    scheduler.on_stage_end(
        StageContext(stage=stage, embed_training_set=embed_training_set, device=device)
    )
    if scheduler.plan(stage + 1).reinit_from_stage0 and stage0_encoders is not None:
        encoders.load_state_dict(stage0_encoders)
