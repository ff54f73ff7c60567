"""Training: the LightningModule, data module, stage driver and the main job."""

from __future__ import annotations

from typing import Any

__all__ = [
    "MultimodalDataModule",
    "MultimodalModule",
    "TrainConfig",
    "evaluate",
    "load_exported",
    "train",
]


def __getattr__(name: str) -> Any:  # lazy: importing this package imports no Lightning
    if name in ("TrainConfig", "train", "evaluate"):
        from . import run

        return getattr(run, name)
    if name == "load_exported":
        from .checkpointing import load_exported

        return load_exported
    if name == "MultimodalModule":
        from .module import MultimodalModule

        return MultimodalModule
    if name == "MultimodalDataModule":
        from .datamodule import MultimodalDataModule

        return MultimodalDataModule
    raise AttributeError(name)
