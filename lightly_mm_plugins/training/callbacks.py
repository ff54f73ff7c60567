"""Lightning pieces of the main job: checkpoint writer and I/O, stop / crash / trace hooks.

Module-level classes (not closures) so that ``ddp_spawn`` can pickle the
Trainer that holds them.

Example:
    >>> import pytorch_lightning as pl
    >>> trainer = pl.Trainer(  # doctest: +SKIP
    ...     plugins=[AtomicCheckpointIO()],
    ...     callbacks=[RunCheckpoint("run/checkpoints/last.ckpt", every_n_steps=500)],
    ... )
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from lightning_fabric.plugins import TorchCheckpointIO
from pytorch_lightning.callbacks import Callback, Checkpoint

from ..errors import CheckpointError
from .checkpointing import atomic_torch_save, load_checkpoint_file
from .loop_state import batches_started as batches_done


class AtomicCheckpointIO(TorchCheckpointIO):
    """Saves with :func:`~.checkpointing.atomic_torch_save` (temporary file in the
    same folder, fsync, ``os.replace``); loads with ``torch.load(weights_only=True)``
    through :func:`~.checkpointing.load_checkpoint_file` whatever the caller asks.
    A failed write (disk full) or a truncated, unsafe or foreign file is a
    :class:`~lightly_mm_plugins.errors.CheckpointError` naming the file and the fix.
    """

    def save_checkpoint(
        self, checkpoint: dict[str, Any], path: Any, storage_options: Any | None = None
    ) -> None:
        if storage_options is not None:
            raise TypeError("lightly-mm checkpoints take no storage_options")
        try:
            atomic_torch_save(checkpoint, path)
        except OSError as exc:
            raise CheckpointError(
                f"could not write checkpoint {str(path)!r} ({exc.strerror or exc}); the "
                "previous one there is intact: free disk space or fix the folder's "
                "permissions, then continue with --resume"
            ) from exc

    def load_checkpoint(
        self, path: Any, map_location: Any | None = None, weights_only: bool | None = None
    ) -> dict[str, Any]:
        del weights_only  # always True: loading a checkpoint never runs code from it
        location = map_location if map_location is not None else "cpu"
        return load_checkpoint_file(path, map_location=location)  # type: ignore[no-any-return]


class RunCheckpoint(Checkpoint):
    """Write ``path`` (``last.ckpt``) at every epoch end and every ``every_n_steps`` batches.

    The epoch-end save runs after the LightningModule's ``on_train_epoch_end``
    (Lightning calls ``Checkpoint`` callbacks last), so it holds a finished
    stage's snapshot and scheduler state. A step save that falls on an epoch's
    last batch is skipped: the epoch-end save follows immediately, and a
    checkpoint taken between the last batch and the epoch-end hooks would skip
    those hooks on resume.
    """

    def __init__(self, path: str | os.PathLike[str], every_n_steps: int | None = None) -> None:
        if every_n_steps is not None and every_n_steps < 0:
            raise ValueError(f"every_n_steps must be >= 0 or None, got {every_n_steps}")
        self.path = str(path)
        self.every_n_steps = every_n_steps or 0

    def on_train_batch_end(
        self, trainer: Any, pl_module: Any, outputs: Any, batch: Any, batch_idx: int
    ) -> None:
        n = self.every_n_steps
        if n <= 0 or batches_done(trainer) % n != 0:
            return
        if batch_idx + 1 >= trainer.num_training_batches:
            return
        trainer.save_checkpoint(self.path, weights_only=False)

    def on_train_epoch_end(self, trainer: Any, pl_module: Any) -> None:
        trainer.save_checkpoint(self.path, weights_only=False)


class RunConfigInCheckpoint(Callback):
    """Store the run's resolved settings (plain data) in every checkpoint under ``key``,
    so that ``--resume`` can refuse a run whose settings differ."""

    def __init__(self, key: str, config: dict[str, Any]) -> None:
        self.key = key
        self.config = dict(config)

    def on_save_checkpoint(self, trainer: Any, pl_module: Any, checkpoint: dict[str, Any]) -> None:
        checkpoint[self.key] = dict(self.config)


class RescheduleAfterResume(Callback):
    """Fit the LR schedule to the run's length after a resume that changed ``--epochs``.

    A resumed scheduler gets its state (``max_epochs`` included) from the
    checkpoint, so with ``--allow-changed epochs`` it would keep the old
    length and run past its end. At train start (after the restore) every
    scheduler that the module's ``lr_schedule(total)`` describes gets the new
    length: the cosine is stretched from the current step on.
    """

    def on_train_start(self, trainer: Any, pl_module: Any) -> None:
        schedule = getattr(pl_module, "lr_schedule", None)
        total = getattr(pl_module, "_total_steps", None)
        if schedule is None or total is None:
            return
        for config in trainer.lr_scheduler_configs:
            for key, value in schedule(total()).items():
                if hasattr(config.scheduler, key):
                    setattr(config.scheduler, key, value)


class StopAfterEpochs(Callback):
    """Stop training (after the epoch-end checkpoint) once ``epochs`` epochs are done."""

    def __init__(self, epochs: int) -> None:
        self.epochs = epochs

    def on_train_epoch_end(self, trainer: Any, pl_module: Any) -> None:
        if trainer.current_epoch + 1 >= self.epochs:
            trainer.should_stop = True


class SimulatedCrash(RuntimeError):
    """Raised by :class:`CrashAfterSteps`: the run died, as if killed."""

    def __init__(self, steps: int) -> None:
        super().__init__(f"simulated crash after {steps} training steps")
        self.steps = steps


class CrashAfterSteps(Callback):
    """Abort the run right after ``steps`` training batches, like ``kill -9`` would.

    Raised at the start of batch ``steps + 1``: everything batch ``steps``
    did (its checkpoint, if one was due) is done, nothing after it runs, and
    no extra checkpoint is written, so a resume continues from the last
    periodic checkpoint, possibly several batches back. Unlike
    ``trainer.should_stop`` this does not end the epoch (which would run the
    epoch-end hooks and save an "epoch finished" checkpoint mid-epoch).
    """

    def __init__(self, steps: int) -> None:
        if steps < 1:
            raise ValueError(f"stop_after_steps must be >= 1, got {steps}")
        self.steps = steps

    def on_train_batch_start(
        self, trainer: Any, pl_module: Any, batch: Any, batch_idx: int
    ) -> None:
        if batches_done(trainer) > self.steps:
            raise SimulatedCrash(self.steps)


class BatchTrace(Callback):
    """Append every training batch's instance ids to ``folder/rank<R>.jsonl``.

    One JSON object per line: ``step`` (0-based over the run), ``epoch``,
    ``batch`` (index in the epoch), ``rank`` and ``ids``. For checking data
    sharding across ranks and that a resumed run sees exactly the batches an
    uninterrupted one does.
    """

    def __init__(self, folder: str | os.PathLike[str]) -> None:
        self.folder = str(folder)

    def on_train_batch_start(
        self, trainer: Any, pl_module: Any, batch: Any, batch_idx: int
    ) -> None:
        rank = int(trainer.global_rank)
        record = {
            "step": batches_done(trainer) - 1,
            "epoch": int(trainer.current_epoch),
            "batch": int(batch_idx),
            "rank": rank,
            "ids": [int(i) for i in batch.instance_ids.tolist()],
        }
        folder = Path(self.folder)
        folder.mkdir(parents=True, exist_ok=True)
        with open(folder / f"rank{rank}.jsonl", "a", encoding="utf-8") as f:
            f.write(json.dumps(record) + "\n")
