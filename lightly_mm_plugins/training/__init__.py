"""Training: the LightningModule, data module, stage driver and the main job."""

from __future__ import annotations

from ..lazy import lazy_getattr

__all__ = [
    "MultimodalDataModule",
    "MultimodalModule",
    "TrainConfig",
    "evaluate",
    "load_exported",
    "train",
]


# lazy: importing this package imports no Lightning
__getattr__ = lazy_getattr(
    __name__,
    {
        "TrainConfig": "run",
        "train": "run",
        "evaluate": "run",
        "load_exported": "checkpointing",
        "MultimodalModule": "module",
        "MultimodalDataModule": "datamodule",
    },
)
