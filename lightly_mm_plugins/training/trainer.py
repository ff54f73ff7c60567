"""The Lightning Trainer of a run: hardware, loggers, checkpoint callbacks.

Example:
    >>> from lightly_mm_plugins.training.config import TrainConfig
    >>> resolve_hardware(TrainConfig(accelerator="cpu", devices="2")).strategy
    'ddp_spawn'
"""

from __future__ import annotations

import contextlib
import importlib
import types
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from pytorch_lightning.callbacks import RichProgressBar, TQDMProgressBar

from .config import CONFIG_KEY, TrainConfig


def _reduce_module(module: types.ModuleType) -> tuple[Any, tuple[str]]:
    return importlib.import_module, (module.__name__,)


def _pickle_modules_by_name() -> None:
    """Let ``ddp_spawn`` send objects that hold a reference to a Python module.

    ``ModalityView(seed=None)`` keeps Python's ``random`` module as its
    generator, and pickle refuses modules, so the spawn launcher could not
    send the data module to its workers. A module is sent by name and
    imported again in the worker, which is what such a reference means there.
    Registered on multiprocessing's pickler only (not ``pickle`` itself).
    """
    from multiprocessing.reduction import ForkingPickler

    ForkingPickler.register(types.ModuleType, _reduce_module)


@dataclass
class Hardware:
    """How Lightning runs: accelerator, devices, strategy, precision (resolved)."""

    accelerator: str
    devices: Any
    strategy: Any
    precision: str


def resolve_hardware(cfg: TrainConfig) -> Hardware:
    """``--accelerator`` / ``--devices`` / ``--precision`` as the Trainer takes them:
    DDP for several devices (``ddp_spawn`` on a CPU), bf16-mixed on a GPU by default."""
    on_gpu = cfg.accelerator in ("gpu", "cuda") or (
        cfg.accelerator == "auto" and torch.cuda.is_available()
    )
    accelerator = "gpu" if on_gpu else "cpu"
    precision = cfg.precision if cfg.precision is not None else "32-true"
    if cfg.precision is None and on_gpu:
        precision = "bf16-mixed"
    devices: Any = int(cfg.devices) if str(cfg.devices).isdigit() else cfg.devices
    strategy: Any = "auto"
    if isinstance(devices, int) and devices > 1:
        strategy = "ddp_spawn" if accelerator == "cpu" else "ddp"
    return Hardware(accelerator, devices, strategy, precision)


def make_trainer(
    cfg: TrainConfig, module: Any, hw: Hardware, out: Path, resolved: dict[str, Any]
) -> Any:
    """The Lightning Trainer: atomic checkpoints that carry the run's ``resolved``
    settings, CSV + TensorBoard logs, test hooks."""
    import pytorch_lightning as pl
    from pytorch_lightning.loggers import CSVLogger, TensorBoardLogger

    from .batches import SkippedRecordsReport
    from .callbacks import (
        AtomicCheckpointIO,
        BatchTrace,
        CrashAfterSteps,
        RescheduleAfterResume,
        RunCheckpoint,
        RunConfigInCheckpoint,
        StopAfterEpochs,
    )

    last = out / "checkpoints" / "last.ckpt"
    callbacks: list[Any] = [
        RunConfigInCheckpoint(CONFIG_KEY, resolved),
        RunCheckpoint(last, every_n_steps=cfg.checkpoint_every_n_steps),
        SkippedRecordsReport(),  # records --on-error skip left out (metrics.json)
    ]
    if cfg.resume and "epochs" in {a.lstrip("-").replace("-", "_") for a in cfg.allow_changed}:
        callbacks.append(RescheduleAfterResume())
    if cfg.stop_after_epochs is not None:
        callbacks.append(StopAfterEpochs(cfg.stop_after_epochs))
    if cfg.stop_after_steps is not None:
        callbacks.append(CrashAfterSteps(cfg.stop_after_steps))
    if cfg.trace_batches:
        callbacks.append(BatchTrace(out / "batch_trace"))
    if not cfg.quiet:
        callbacks.append(progress_bar())
    if hw.strategy == "ddp_spawn":
        _pickle_modules_by_name()
    trainer = pl.Trainer(
        max_epochs=module.total_epochs,
        accelerator=hw.accelerator,
        devices=hw.devices,
        strategy=hw.strategy,
        precision=hw.precision,  # type: ignore[arg-type]
        logger=[
            CSVLogger(str(out), name="logs"),
            TensorBoardLogger(str(out), name="tensorboard", version=""),
        ],
        callbacks=callbacks,
        plugins=[AtomicCheckpointIO()],
        enable_checkpointing=True,  # RunCheckpoint (a Checkpoint) replaces ModelCheckpoint
        enable_progress_bar=not cfg.quiet,
        enable_model_summary=False,
        log_every_n_steps=1,
        use_distributed_sampler=False,
        reload_dataloaders_every_n_epochs=1,
        deterministic=False,
        gradient_clip_val=1.0 if module.automatic_optimization else None,
        num_sanity_val_steps=0,
    )
    for logger in trainer.loggers:  # rank zero only; Lightning adds the module's own
        logger.log_hyperparams(resolved)
    return trainer


# ------------------------------------------------------------------------------ output
#: Lightning warnings a run cannot act on, each filtered by its message.
LIGHTNING_NOISE = (
    # pytorch_lightning/utilities/_pytree.py calls torch's deprecated
    # isinstance(treespec, LeafSpec) on every batch transfer: Lightning's code, not
    # ours, fixed in Lightning releases newer than the pinned range's floor.
    (FutureWarning, r".*isinstance\(treespec, LeafSpec\)"),
    # The frozen text encoder (its weights never change) and the finished stages'
    # snapshots are in eval mode on purpose: dropout stays off in what is frozen.
    (UserWarning, r"Found \d+ module\(s\) in eval mode at the start of training"),
    # WebDataset shards: the loader splits shards by rank and worker itself and every
    # worker yields the same number of full batches, so the length it reports is exact
    # (tests/test_data_shards.py); Lightning cannot see that and warns with workers.
    (UserWarning, r"Your `IterableDataset` has `__len__` defined"),
)


@contextlib.contextmanager
def run_output() -> Iterator[None]:
    """While a run works: the progress bars and our own lines, nothing else.

    Lightning's info lines ("GPU available: ...", the litlogger tip, "Trainer.fit
    stopped: ...") are raised to warnings-only for the run; the warnings in
    :data:`LIGHTNING_NOISE` are filtered one by one; the weight-loading bar of
    Hugging Face models is off. Everything is restored afterwards.
    """
    import logging
    import warnings

    lightning_log = logging.getLogger("pytorch_lightning.utilities.rank_zero")
    level = lightning_log.level
    lightning_log.setLevel(logging.WARNING)
    hf_bars = _hf_progress_bars(False)
    try:
        with warnings.catch_warnings():
            for category, message in LIGHTNING_NOISE:
                warnings.filterwarnings("ignore", message=message, category=category)
            yield
    finally:
        lightning_log.setLevel(level)
        _hf_progress_bars(hf_bars)


def _hf_progress_bars(enabled: bool) -> bool:
    """Turn the ``transformers`` loading bars on or off; returns the previous state."""
    try:
        from transformers.utils import logging as hf_logging
    except ImportError:  # pragma: no cover - no text encoder installed
        return enabled
    before = bool(hf_logging.is_progress_bar_enabled())
    hf_logging.enable_progress_bar() if enabled else hf_logging.disable_progress_bar()
    return before


def _without_version(metrics: dict[str, Any]) -> dict[str, Any]:
    metrics.pop("v_num", None)  # "0_": CSV version 0 + TensorBoard's empty version
    return metrics


class TQDMBar(TQDMProgressBar):
    """Lightning's bar without ``v_num`` (the run folder is the version)."""

    def get_metrics(self, trainer: Any, pl_module: Any) -> dict[str, Any]:
        return _without_version(dict(super().get_metrics(trainer, pl_module)))


class RichBar(RichProgressBar):
    """Lightning's rich bar without ``v_num`` (the run folder is the version)."""

    def get_metrics(self, trainer: Any, pl_module: Any) -> dict[str, Any]:
        return _without_version(dict(super().get_metrics(trainer, pl_module)))


def progress_bar() -> Any:
    """The bar Lightning would pick (rich when installed), without ``v_num``."""
    from pytorch_lightning.utilities.imports import _RICH_AVAILABLE

    return RichBar() if _RICH_AVAILABLE else TQDMBar()
