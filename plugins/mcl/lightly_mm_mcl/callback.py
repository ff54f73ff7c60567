"""MCL's stages as a Lightning callback, for your own Lightly-style training script.

``lightly-mm train`` runs MCL's stages itself. In your own script, add
:class:`MCLStages` to the ``Trainer``: it drives the same
:class:`~lightly_mm_mcl.scheduler.MCLScheduler` with the same host functions
the pipeline uses (:func:`lightly_mm_plugins.stages.end_stage`,
:func:`~lightly_mm_plugins.stages.apply_stage_freeze`,
:func:`~lightly_mm_plugins.stages.stage_of_epoch`), so clustering, the
mixed-radix pseudo labels, the stage-0 restart and the frozen text encoder are
the pipeline's code, not a copy:

* at the end of each stage's last epoch it embeds the training set with your
  function, k-means clusters it (``MCLScheduler.on_stage_end``), keeps the
  encoders' weights, and restarts them from stage 0's weights;
* at every epoch it freezes the modalities the stage's plan names and tells
  every :class:`~lightly_mm_plugins.api.Objective` in your module the stage
  (``set_stage``), so ``MCLObjective`` knows the stages are running;
* :meth:`MCLStages.pseudo_labels` gives the pseudo labels of a batch's
  instances for ``EncodedBatch(..., pseudo_labels=...)`` (None in stage 0).

Negatives are restricted inside each batch (``sampler="mask"``); the official
one-group-per-batch sampler needs the pipeline's data module (``lightly-mm
train --scheduler-args sampler=group``).

Example::

    stages = MCLStages(embed_training_set=embed, encoders="backbones",
                       epochs_per_stage=2, num_stages=3, num_clusters=10)
    trainer = pl.Trainer(max_epochs=stages.total_epochs, callbacks=[stages])
    # in training_step:
    batch = EncodedBatch.from_tensors(embs, instance_ids=ids,
                                      pseudo_labels=stages.pseudo_labels(ids))
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

import pytorch_lightning as pl
import torch
from torch import Tensor, nn

from lightly_mm_plugins.api import Objective
from lightly_mm_plugins.stages import apply_stage_freeze, end_stage, stage_of_epoch, stage_starts

from .scheduler import MCLScheduler

__all__ = ["MCLStages"]


class MCLStages(pl.Callback):
    """Run MCL's stages inside a plain ``pl.Trainer`` (see the module docstring).

    Args:
        embed_training_set: ``fn(pl_module) -> (features (M, D), instance_ids (M,))``
            over the whole training set without augmentation; called at stage
            ends under ``torch.no_grad`` with the module in eval mode.
        encoders: The attribute of your module holding the encoders as a
            mapping modality name -> module (e.g. an ``nn.ModuleDict``
            ``{"image": ..., "text": ...}``), or a function ``fn(pl_module)``
            returning it. Frozen and restarted from stage 0 per the plan.
        scheduler: An :class:`MCLScheduler`; built from ``epochs_per_stage`` and
            ``**scheduler_kwargs`` when None.
        epochs_per_stage: Epochs of each stage.
        **scheduler_kwargs: :class:`MCLScheduler` arguments (``num_stages``,
            ``num_clusters``, ``freeze``, ``kmeans``, ``seed`` ...).
    """

    def __init__(
        self,
        embed_training_set: Callable[[Any], tuple[Tensor, Tensor]],
        encoders: str | Callable[[Any], Mapping[str, nn.Module]] = "backbones",
        scheduler: MCLScheduler | None = None,
        epochs_per_stage: int = 1,
        **scheduler_kwargs: Any,
    ) -> None:
        super().__init__()
        scheduler_kwargs.setdefault("sampler", "mask")
        self.scheduler = scheduler or MCLScheduler(epochs=epochs_per_stage, **scheduler_kwargs)
        if self.scheduler.sampler != "mask":
            raise ValueError(
                "MCLStages restricts negatives inside ordinary batches (sampler='mask'); the "
                "one-group-per-batch sampler needs lightly-mm train's data module"
            )
        self.embed_fn = embed_training_set
        self.encoders_of = encoders
        self.starts = stage_starts(self.scheduler)
        self.current_stage = 0
        #: Encoder weights at the end of each finished stage (stage 0 first).
        self.stage_states: list[dict[str, Tensor]] = []

    @property
    def total_epochs(self) -> int:
        """Epochs of all stages: the Trainer's ``max_epochs``."""
        return self.starts[-1]

    def _encoders(self, pl_module: Any) -> Any:
        if isinstance(self.encoders_of, str):
            found = getattr(pl_module, self.encoders_of, None)
            if not isinstance(found, Mapping) and not isinstance(found, nn.ModuleDict):
                raise AttributeError(
                    f"MCLStages: the module has no mapping {self.encoders_of!r} of modality "
                    "encoders; pass encoders=<attribute name> or a function returning them"
                )
            return found
        return self.encoders_of(pl_module)

    def _enter(self, pl_module: Any, stage: int) -> None:
        apply_stage_freeze(self.scheduler.plan(stage), self._encoders(pl_module))
        for module in pl_module.modules():
            if isinstance(module, Objective):
                module.set_stage(stage)

    def _embed(self, pl_module: Any) -> tuple[Tensor, Tensor]:
        was_training = pl_module.training
        pl_module.eval()
        try:
            with torch.no_grad():
                return self.embed_fn(pl_module)
        finally:
            pl_module.train(was_training)

    # ----------------------------------------------------------- Lightning hooks
    def on_train_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if trainer.max_epochs is not None and trainer.max_epochs < self.total_epochs:
            raise ValueError(
                f"MCLStages: {self.scheduler.num_stages()} stages need max_epochs="
                f"{self.total_epochs}, the Trainer has {trainer.max_epochs}; use "
                "pl.Trainer(max_epochs=stages.total_epochs)"
            )
        self._enter(pl_module, stage_of_epoch(self.starts, trainer.current_epoch))

    def on_train_epoch_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self._enter(pl_module, self.current_stage)

    def on_train_epoch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        nxt = self.current_stage + 1
        if nxt >= len(self.starts) - 1 or trainer.current_epoch + 1 < self.starts[nxt]:
            return
        encoders = self._encoders(pl_module)
        state = {k: v.detach().clone() for k, v in encoders.state_dict().items()}
        self.stage_states.append(state)
        end_stage(
            self.scheduler,
            self.current_stage,
            lambda: self._embed(pl_module),
            pl_module.device,
            encoders,
            self.stage_states[0],
        )
        self.current_stage = nxt
        self._enter(pl_module, nxt)

    # ---------------------------------------------------------------- for scripts
    def pseudo_labels(self, instance_ids: Tensor) -> Tensor | None:
        """Pseudo labels ``(N,)`` of the batch's instances in the current stage (None in 0)."""
        labels = self.scheduler.pseudo_labels(self.current_stage, instance_ids.detach().cpu())
        return None if labels is None else labels.to(instance_ids.device)

    def state_dict(self) -> dict[str, Any]:
        return {
            "current_stage": self.current_stage,
            "scheduler": self.scheduler.state_dict(),
            "stage_states": self.stage_states,
        }

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        self.current_stage = int(state_dict["current_stage"])
        self.scheduler.load_state_dict(state_dict["scheduler"])
        self.stage_states = list(state_dict["stage_states"])
