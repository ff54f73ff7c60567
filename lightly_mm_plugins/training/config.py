"""What a run is: :class:`TrainConfig`, and what of it changes the result.

``lightly-mm train`` builds a :class:`TrainConfig` from its flags (or a
``--config`` YAML file); :func:`~lightly_mm_plugins.training.train` takes one
directly. :func:`~.validation.validate_config` checks it before any work
starts.

Example:
    >>> cfg = TrainConfig(method="clip", epochs=2, out="runs/clip")
    >>> cfg.batch_size
    128
"""

from __future__ import annotations

import argparse
from dataclasses import dataclass, field
from typing import Any


@dataclass
class TrainConfig:
    """Everything ``lightly-mm train`` accepts (see ``lightly-mm train --help``).

    ``None`` means "the documented default" (resolved when the run starts and
    recorded in ``metrics.json`` and ``config.yaml``); an explicit value is
    never replaced by a default.
    """

    method: str = "clip"
    method_args: dict[str, Any] = field(default_factory=dict)
    view: str | None = None
    view_args: dict[str, Any] = field(default_factory=dict)
    scheduler: str | None = None
    scheduler_args: dict[str, Any] = field(default_factory=dict)
    data: str = "default"
    #: Folder the annotation file's image names are relative to (default: the
    #: annotation file's folder, then ``images/`` beside it).
    image_root: str | None = None
    #: CSV/TSV column names and separator (default ``image``, ``caption``, and
    #: a tab for ``.tsv`` files, ``,`` otherwise).
    csv_img_key: str | None = None
    csv_caption_key: str | None = None
    csv_separator: str | None = None
    #: A separate annotation file to evaluate on, all of it (default: the test
    #: split of ``data``).
    test_data: str | None = None
    #: ``(train, val)`` fractions of the seeded split of ``data`` (test gets the
    #: rest); a file whose records name their split uses those.
    split_fractions: tuple[float, float] = (0.7, 0.15)
    epochs: int | None = None
    batch_size: int = 128
    lr: float = 1e-3
    weight_decay: float = 1e-4
    warmup_epochs: float = 0.5
    image_size: int | None = None
    image_encoder: str | None = None
    #: Weights file of the image / text encoder (safetensors or a state dict).
    image_weights: str | None = None
    text_encoder: str | None = None
    text_weights: str | None = None
    train_text: bool = False
    accelerator: str = "auto"
    devices: str | int = 1
    precision: str | None = None
    #: DataLoader worker processes; None: 0 for in-memory data, ``min(4, cores - 1)``
    #: for files (see :func:`~lightly_mm_plugins.training.datamodule.default_num_workers`).
    num_workers: int | None = None
    limit_train_samples: int | None = None
    on_error: str = "raise"
    seed: int = 0
    out: str = "lightly_mm_runs/run"
    resume: bool = False
    quiet: bool = False
    eval_init: bool = True
    #: Evaluate after training (linear probe, kNN, retrieval); off for quick
    #: runs that only need the weights.
    eval_final: bool = True
    #: Also write ``checkpoints/last.ckpt`` every this many training batches
    #: inside an epoch (it is always written at epoch ends); 0 or None: only
    #: at epoch ends. ``--resume`` continues from inside the epoch.
    checkpoint_every_n_steps: int | None = 500
    #: Stop (with a checkpoint) after this many epochs, as if interrupted;
    #: ``--resume`` continues the same schedule.
    stop_after_epochs: int | None = None
    #: Die right after this many training batches, as if killed (no extra
    #: checkpoint; a resume continues from the last one). For tests.
    stop_after_steps: int | None = None
    #: Append the instance ids of every training batch to
    #: ``OUT/batch_trace/rank<R>.jsonl`` (checks sharding and resume).
    trace_batches: bool = False


def config_from_args(args: argparse.Namespace, **overrides: Any) -> TrainConfig:
    """The :class:`TrainConfig` of parsed ``train`` / ``compare`` flags (``--no-eval``
    turns off both evaluations), with ``overrides`` applied."""
    fields = TrainConfig.__dataclass_fields__
    values = {k: v for k, v in vars(args).items() if k in fields}
    if getattr(args, "no_eval", False):
        values.update(eval_init=False, eval_final=False)
    values.update(overrides)
    return TrainConfig(**values)
