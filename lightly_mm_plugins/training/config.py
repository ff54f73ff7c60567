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
    #: Delete the outputs of the run already in ``out`` and start a new one
    #: (without it, a folder holding anything is refused).
    overwrite: bool = False
    #: Settings (flag names, e.g. ``["epochs"]``) that ``resume`` may change from
    #: the checkpoint's run; only those in :data:`MAY_CHANGE_ON_RESUME`.
    allow_changed: list[str] = field(default_factory=list)
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


#: Where a checkpoint keeps the resolved settings of the run that wrote it.
CONFIG_KEY = "lightly_mm_config"

#: Settings that do not change what a run computes: never compared on resume.
NOT_COMPARED = frozenset(
    {
        "out",
        "resume",
        "overwrite",
        "allow_changed",
        "quiet",
        "eval_init",
        "eval_final",
        "checkpoint_every_n_steps",
        "stop_after_epochs",
        "stop_after_steps",
        "trace_batches",
        "num_workers",  # per-sample seeds: the batches do not depend on the workers
    }
)

#: Settings that change the result but leave the checkpoint usable: a resume may
#: change them when named in ``--allow-changed`` (more epochs; other hardware).
MAY_CHANGE_ON_RESUME = ("epochs", "accelerator", "devices", "precision")

#: Labels of the resolved values that are not flags.
_LABELS = {"train_samples": "training instances"}


def _label(name: str) -> str:
    return _LABELS.get(name, "--" + name.replace("_", "-"))


def resume_differences(
    saved: dict[str, Any], current: dict[str, Any], allow: list[str] | tuple[str, ...] = ()
) -> list[tuple[str, Any, Any]]:
    """``(name, saved value, current value)`` of every compared setting that differs.

    Both are resolved configs (defaults filled in, see
    :func:`~lightly_mm_plugins.training.run.resolved_config`); names in
    ``allow`` (from :data:`MAY_CHANGE_ON_RESUME`) are not reported.

    Example:
        >>> resume_differences({"seed": 0, "quiet": 0}, {"seed": 1, "quiet": 1})
        [('seed', 0, 1)]
    """
    allowed = {a.lstrip("-").replace("-", "_") for a in allow}
    out = []
    for name in sorted(set(saved) | set(current)):
        if name in NOT_COMPARED or name in allowed:
            continue
        a, b = saved.get(name), current.get(name)
        if not _same(a, b):
            out.append((name, a, b))
    return out


def _same(a: Any, b: Any) -> bool:
    if {type(a), type(b)} <= {str, int}:  # --devices 1 == "1"
        return str(a) == str(b)
    return bool(a == b)


def describe_differences(diffs: list[tuple[str, Any, Any]], source: str) -> str:
    """The ``--resume`` refusal naming each changed setting (and the way to allow some)."""
    changes = ", ".join(f"{_label(n)} {a!r} -> {b!r}" for n, a, b in diffs)
    msg = (
        f"--resume: this run differs from the one that wrote {source}: {changes}. Resume "
        "with the checkpoint's settings, or start a new run with --overwrite or another --out"
    )
    names = [n for n, _, _ in diffs]
    if all(n in MAY_CHANGE_ON_RESUME for n in names):
        msg += f"; to continue anyway, pass --allow-changed {','.join(names)}"
    return msg


def config_file_values(resolved: dict[str, Any], keys: list[str]) -> dict[str, Any]:
    """The ``--config`` file of a run: ``keys`` (the ``train`` flags) from its
    ``resolved`` settings, so that ``lightly-mm train --config OUT/config.yaml``
    repeats the run (with another ``--out``, or ``--resume``).

    Defaults the run filled in from the data (epochs, image size, view,
    scheduler) are written as used; hardware settings as given, so the file
    also runs on another machine. ``--resume`` / ``--overwrite`` are off.
    """
    values: dict[str, Any] = {}
    for key in keys:
        if key == "no_eval":
            values[key] = not resolved.get("eval_final", True)
        elif key in ("resume", "overwrite"):
            values[key] = False
        elif key in resolved:
            values[key] = resolved[key]
    return values
