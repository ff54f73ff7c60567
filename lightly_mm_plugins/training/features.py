"""Evaluation features of a whole data set: ``trainer.predict`` over the eval view.

:meth:`MultimodalModule.predict_step
<lightly_mm_plugins.training.module.MultimodalModule.predict_step>` gives one
batch's features; :func:`collect_features` runs Lightning's predict loop over a
loader (device placement, progress bar, inference mode) and concatenates them:

* ``features[m]``: ``(M_m, D)`` final features of every valid observation of
  modality ``m`` (every stage's snapshot combined by the stage scheduler);
* ``joint[m]``: the same observations in the objective's cross-modal space
  (absent when it has none);
* ``ids[m]``: ``(M_m,)`` the instance id of each row;
* ``labels``, ``extra_labels``: instance id -> class label (per label set).

Example:
    >>> feats = collect_features(module, datamodule.eval_loader("test"))  # doctest: +SKIP
    >>> feats["features"]["image"].shape  # doctest: +SKIP
    torch.Size([500, 128])
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch


def collect_features(module: Any, loader: Any, progress: bool | None = None) -> dict[str, Any]:
    """Per modality: features of every valid observation and their instance ids; labels.

    One device (the accelerator Lightning picks), 32-bit precision; the module's
    train/eval mode is restored afterwards. ``progress``: show Lightning's progress
    bar (default: when stderr is a terminal). Lightning's device summary is not
    printed again for this loop.
    """
    import logging
    import sys

    import pytorch_lightning as pl

    if progress is None:
        progress = sys.stderr.isatty()
    info = logging.getLogger("pytorch_lightning.utilities.rank_zero")
    level = info.level
    info.setLevel(logging.WARNING)
    try:
        trainer = pl.Trainer(
            accelerator="auto",
            devices=1,
            logger=False,
            enable_checkpointing=False,
            enable_progress_bar=progress,
            enable_model_summary=False,
        )
        was_training = module.training
        outputs = trainer.predict(module, dataloaders=loader)
        module.train(was_training)
    finally:
        info.setLevel(level)
    return merge_batches(outputs or [])


def merge_batches(outputs: Sequence[Any]) -> dict[str, Any]:
    """Concatenate the per-batch dictionaries of ``predict_step``."""
    features: dict[str, list[torch.Tensor]] = {}
    joint: dict[str, list[torch.Tensor]] = {}
    ids: dict[str, list[torch.Tensor]] = {}
    labels: dict[int, int] = {}
    extra_labels: dict[str, dict[int, int]] = {}
    for out in outputs:
        for m, f in out["features"].items():
            features.setdefault(m, []).append(f)
            ids.setdefault(m, []).append(out["ids"][m])
        for m, j in out["joint"].items():
            joint.setdefault(m, []).append(j)
        instances = out["instance_ids"].tolist()
        if out["labels"] is not None:
            labels.update(zip(instances, out["labels"].tolist()))
        for name, values in out["extra_labels"].items():
            extra_labels.setdefault(name, {}).update(zip(instances, values.tolist()))
    return {
        "features": {m: torch.cat(v) for m, v in features.items()},
        "joint": {m: torch.cat(v) for m, v in joint.items()},
        "ids": {m: torch.cat(v) for m, v in ids.items()},
        "labels": labels,
        "extra_labels": extra_labels,
    }
