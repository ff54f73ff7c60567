"""Every run setting checked before any work starts: one place, one rule per flag.

``lightly-mm train`` / ``compare`` and :func:`~lightly_mm_plugins.training.train`
call :func:`validate_config` first; a bad value is a
:class:`~lightly_mm_plugins.errors.ConfigError` whose one-line message names
the flag, the value and what is accepted (the CLI prints it and exits with
status 2, no traceback). Nothing is replaced by a default: ``--epochs 0`` is an
error, not 10 epochs.

Three kinds of checks:

* :data:`FIELD_RULES`: one rule per :class:`~.config.TrainConfig` field
  (``positive_int``, ``non_negative_float``, ``one_of(...)``, ``existing_path``,
  ...). A new flag adds its field to ``TrainConfig`` and one line here; a field
  without a rule is refused by a test, so no flag goes unchecked.
* :func:`~.arg_types.check_component_arguments`: ``--method-args`` / ``--view-args`` /
  ``--scheduler-args`` against the factory's signature: unknown names (with
  close matches) and values whose type does not match the annotation
  (``projection_dim=abc``: "expects int, got 'abc' (str)").
* :func:`check_devices`: ``--accelerator`` / ``--devices`` against this machine
  (``--accelerator gpu`` without a GPU, more GPUs than there are).

Example:
    >>> from lightly_mm_plugins.training.config import TrainConfig
    >>> validate_values(TrainConfig(epochs=0))
    Traceback (most recent call last):
    ...
    lightly_mm_plugins.errors.ConfigError: --epochs 0: must be a positive integer
"""

from __future__ import annotations

import inspect
import os
import typing
from collections.abc import Callable, Mapping
from dataclasses import fields
from pathlib import Path
from typing import Any

from ..errors import ConfigError
from .arg_types import check_component_arguments
from .config import MAY_CHANGE_ON_RESUME

#: A rule returns ``None`` when the value is fine, else what is accepted.
Rule = Callable[[Any], "str | None"]


def flag(name: str) -> str:
    """The command-line flag of a config field: ``batch_size`` -> ``--batch-size``."""
    return "--" + name.replace("_", "-")


def _is_int(v: Any) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def _is_number(v: Any) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool) and v == v  # not NaN


def int_at_least(low: int, what: str = "") -> Rule:
    def rule(v: Any) -> str | None:
        if _is_int(v) and v >= low:
            return None
        return what or (
            "must be a positive integer" if low == 1 else f"must be an integer >= {low}"
        )

    return rule


positive_int = int_at_least(1)
non_negative_int = int_at_least(0)


def positive_float(v: Any) -> str | None:
    return None if _is_number(v) and 0 < v < float("inf") else "must be a positive number"


def non_negative_float(v: Any) -> str | None:
    ok = _is_number(v) and 0 <= v < float("inf")
    return None if ok else "must be a number >= 0"


def flag_value(v: Any) -> str | None:
    return None if isinstance(v, bool) else "must be true or false"


def non_empty_str(v: Any) -> str | None:
    return None if isinstance(v, str) and v.strip() else "must be a non-empty string"


def mapping(v: Any) -> str | None:
    if isinstance(v, Mapping) and all(isinstance(k, str) for k in v):
        return None
    return "must be key=value pairs (a mapping of names to values)"


def one_of(*choices: Any) -> Rule:
    def rule(v: Any) -> str | None:
        return None if v in choices else "must be one of " + ", ".join(map(str, choices))

    return rule


def optional(inner: Rule) -> Rule:
    """``None`` (the documented default) or a value ``inner`` accepts."""

    def rule(v: Any) -> str | None:
        return None if v is None else inner(v)

    return rule


def existing_path(kind: str = "file or folder") -> Rule:
    """An existing path (``kind``: ``"file"``, ``"folder"`` or ``"file or folder"``)."""

    def rule(v: Any) -> str | None:
        if not isinstance(v, (str, os.PathLike)) or not str(v).strip():
            return f"must be the path of a {kind}"
        p = Path(v).expanduser()
        ok = p.is_file() if kind == "file" else p.is_dir() if kind == "folder" else p.exists()
        return None if ok else f"no such {kind}"

    return rule


def _precisions() -> tuple[str, ...]:
    try:
        from lightning_fabric.connector import _PRECISION_INPUT_STR

        return (*typing.get_args(_PRECISION_INPUT_STR), "16", "32", "64", "bf16")
    except ImportError:  # pragma: no cover - older Lightning
        return ("16-mixed", "bf16-mixed", "32-true", "64-true", "16", "32", "64", "bf16")


def precision(v: Any) -> str | None:
    choices = _precisions()
    return None if str(v) in choices else "must be one of " + ", ".join(choices)


def devices(v: Any) -> str | None:
    text = str(v).strip()
    if text == "auto" or text == "-1":
        return None
    if text.isdigit() and int(text) >= 1:
        return None
    ids = [p.strip() for p in text.strip("[]").split(",") if p.strip()]
    if "," in text and ids and all(i.isdigit() for i in ids):
        return None
    return "must be a positive number of devices, 'auto', -1 (all) or GPU indices such as 0,1"


def split_fractions(v: Any) -> str | None:
    ok = (
        isinstance(v, (list, tuple))
        and len(v) == 2
        and all(_is_number(x) for x in v)
        and 0 < v[0] <= 1
        and 0 <= v[1] <= 1
        and v[0] + v[1] <= 1
    )
    return None if ok else "must be TRAIN,VAL fractions, train > 0, val >= 0, sum <= 1"


def one_char(v: Any) -> str | None:
    return None if isinstance(v, str) and len(v) == 1 else "must be one character"


SEED_MAX = 2**32 - 1

#: One rule per ``TrainConfig`` field. New flags add a line here.
FIELD_RULES: dict[str, Rule] = {
    "method": non_empty_str,
    "method_args": mapping,
    "view": optional(non_empty_str),
    "view_args": mapping,
    "scheduler": optional(non_empty_str),
    "scheduler_args": mapping,
    "data": non_empty_str,
    "image_root": optional(existing_path("folder")),
    "csv_img_key": optional(non_empty_str),
    "csv_caption_key": optional(non_empty_str),
    "csv_separator": optional(one_char),
    "test_data": optional(non_empty_str),
    "split_fractions": split_fractions,
    "epochs": optional(positive_int),
    "batch_size": int_at_least(2, "must be an integer >= 2 (a contrastive batch needs negatives)"),
    "lr": positive_float,
    "weight_decay": non_negative_float,
    "warmup_epochs": non_negative_float,
    "image_size": optional(positive_int),
    "image_encoder": optional(non_empty_str),
    "image_weights": optional(existing_path("file")),
    "text_encoder": optional(non_empty_str),
    "text_weights": optional(existing_path("file")),
    "train_text": flag_value,
    "accelerator": one_of("auto", "cpu", "gpu", "cuda"),
    "devices": devices,
    "precision": optional(precision),
    "num_workers": optional(non_negative_int),
    "limit_train_samples": optional(positive_int),
    "on_error": one_of("raise", "skip"),
    "seed": int_at_least(0, f"must be an integer in [0, {SEED_MAX}]"),
    "out": non_empty_str,
    "resume": flag_value,
    "overwrite": flag_value,
    "allow_changed": lambda v: (
        None
        if isinstance(v, (list, tuple)) and all(_may_change(x) for x in v)
        else "may name only " + ", ".join(MAY_CHANGE_ON_RESUME)
    ),
    "quiet": flag_value,
    "eval_init": flag_value,
    "eval_final": flag_value,
    "checkpoint_every_n_steps": optional(non_negative_int),
    "stop_after_epochs": optional(positive_int),
    "stop_after_steps": optional(positive_int),
    "trace_batches": flag_value,
}


def _may_change(name: Any) -> bool:
    return isinstance(name, str) and name.lstrip("-").replace("-", "_") in MAY_CHANGE_ON_RESUME


def validate_values(cfg: Any) -> None:
    """Check every field of ``cfg`` (a ``TrainConfig``) against :data:`FIELD_RULES`.

    Raises:
        ConfigError: the first bad value, as ``"--flag value: what is accepted"``.
    """
    for f in fields(cfg):
        rule = FIELD_RULES.get(f.name)
        if rule is None:
            raise ConfigError(
                f"{flag(f.name)} has no validation rule; add one to "
                "lightly_mm_plugins.training.validation.FIELD_RULES"
            )
        value = getattr(cfg, f.name)
        problem = rule(value)
        if problem:
            raise ConfigError(f"{flag(f.name)} {_show(value)}: {problem}")
    if cfg.seed > SEED_MAX:
        raise ConfigError(f"--seed {cfg.seed}: must be an integer in [0, {SEED_MAX}]")
    if cfg.limit_train_samples is not None and cfg.limit_train_samples < cfg.batch_size:
        raise ConfigError(
            f"--limit-train-samples {cfg.limit_train_samples} is smaller than --batch-size "
            f"{cfg.batch_size}: not one full batch to train on; lower --batch-size or raise "
            "--limit-train-samples"
        )


def compare_seeds(text: str) -> list[int]:
    """The seeds of ``compare --seeds 0,1,2`` (ConfigError naming the bad one)."""
    parts = [s.strip() for s in str(text).split(",") if s.strip()]
    if not parts or not all(p.isdigit() for p in parts):
        raise ConfigError(f"--seeds {text!r}: must be comma-separated integers >= 0, e.g. 0,1,2")
    return [int(p) for p in parts]


def _show(value: Any) -> str:
    return value if isinstance(value, str) and value and " " not in value else repr(value)


# ----------------------------------------------------------------------- the machine
def check_devices(accelerator: str, devices_value: Any) -> None:
    """``--accelerator`` / ``--devices`` against this machine's GPUs.

    Raises:
        ConfigError: a GPU asked for where there is none, or more GPUs (or a
            higher GPU index) than this machine has.
    """
    import torch

    wants_gpu = accelerator in ("gpu", "cuda")
    have = torch.cuda.device_count() if torch.cuda.is_available() else 0
    if wants_gpu and have == 0:
        raise ConfigError(
            f"--accelerator {accelerator}: this machine has no usable GPU "
            "(torch.cuda.is_available() is False); use --accelerator cpu or auto"
        )
    on_gpu = wants_gpu or (accelerator == "auto" and have > 0)
    text = str(devices_value).strip()
    if not on_gpu or text in ("auto", "-1"):
        return
    if text.isdigit() and int(text) > have:
        raise ConfigError(
            f"--devices {text}: this machine has {have} GPU(s); use --devices {have} or fewer"
        )
    ids = [int(p) for p in text.strip("[]").split(",") if p.strip().isdigit()]
    if "," in text and any(i >= have for i in ids):
        raise ConfigError(
            f"--devices {text}: GPU indices must be below {have} (this machine's GPU count)"
        )


# ------------------------------------------------------------------------ all of it
def validate_config(cfg: Any, host: Any = None) -> None:
    """Everything about ``cfg`` that can be checked before data or models load.

    The values (:func:`validate_values`), the registered components and their
    ``--*-args`` (names and types), the ``--data`` spec, and the devices.

    Raises:
        ConfigError, ArgumentError, UnknownComponentError, DataError: one line
            naming the flag and the fix.
    """
    from ..manager import get_host
    from ..registry import KIND_SINGULAR

    validate_values(cfg)
    host = host or get_host()
    entry = host.registry("objectives").get(cfg.method)
    view = cfg.view or entry.metadata.get("view") or "paired"
    scheduler = cfg.scheduler or entry.metadata.get("scheduler") or "single"
    for kind, name, kwargs, option in (
        ("objectives", cfg.method, cfg.method_args, "--method-args"),
        ("views", view, cfg.view_args, "--view-args"),
        ("stage_schedulers", scheduler, cfg.scheduler_args, "--scheduler-args"),
    ):
        component = host.registry(kind).get(name)
        if kwargs:
            what = f"{option}: {KIND_SINGULAR[kind]} {component.name!r}"
            check_component_arguments(component.resolve(), kwargs, what)
            inner = _forwarded_to(component.resolve(), kwargs, host, kind)
            if inner is not None:
                rest = {k: v for k, v in kwargs.items() if k != "inner"}
                check_component_arguments(inner.resolve(), rest, f"{what} (via {inner.name!r})")
    check_encoders(cfg)
    check_data_options(cfg)
    check_devices(cfg.accelerator, cfg.devices)


def check_encoders(cfg: Any) -> None:
    """``--image-encoder`` / ``--text-encoder`` name registered encoders of that modality
    (a timm / open_clip name is checked by its family, without building the model)."""
    from ..encoders import resolve_encoder

    for kind in ("image", "text"):
        spec = getattr(cfg, f"{kind}_encoder", None)
        if spec:
            try:
                resolve_encoder(kind, spec)
            except (ValueError, ImportError) as exc:
                raise ConfigError(f"--{kind}-encoder {spec}: {exc}") from exc


def check_data_options(cfg: Any) -> None:
    """``--data`` / ``--test-data`` known specs or existing files; the file options
    (``--image-root``, ``--csv-*``) only with an annotation file (never dropped silently).

    Raises:
        DataError: an unknown spec or missing file.
        ConfigError: a file option without an annotation file.
    """
    from ..data import check_data_spec

    kinds = [check_data_spec(cfg.data)]
    if cfg.test_data is not None:
        kinds.append(check_data_spec(cfg.test_data))
    if kinds[0] == "shards" and cfg.test_data is None and (cfg.eval_init or cfg.eval_final):
        raise ConfigError(
            f"--data {_show(cfg.data)}: shards carry no held-out split to evaluate on; pass "
            "--test-data (an annotation file or shards) or --no-eval"
        )
    given = [
        name
        for name in ("image_root", "csv_img_key", "csv_caption_key", "csv_separator")
        if getattr(cfg, name) is not None
    ]
    if given and "file" not in kinds:
        raise ConfigError(
            f"{', '.join(flag(n) for n in given)}: only apply to an annotation file, but "
            f"--data is {_show(cfg.data)}; drop them or pass an annotation file"
        )


def _forwarded_to(factory: Any, kwargs: Mapping[str, Any], host: Any, kind: str) -> Any:
    """The component a wrapper (``inner=...``, ``**kwargs``) forwards its arguments to."""
    try:
        params = inspect.signature(factory).parameters
    except (TypeError, ValueError):
        return None
    if "inner" not in params or not any(p.kind is p.VAR_KEYWORD for p in params.values()):
        return None
    name = kwargs.get("inner", params["inner"].default)
    if not isinstance(name, str):
        return None
    return host.registry(kind).get(name)
