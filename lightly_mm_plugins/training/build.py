"""The components of a run: data sets, view, encoders, objective, stage scheduler,
LightningModule and data module, built from a :class:`~.config.TrainConfig`.

Example:
    >>> from lightly_mm_plugins.training.config import TrainConfig
    >>> parts = build_components(TrainConfig(data="synthetic", epochs=1))  # doctest: +SKIP
    >>> parts["module"].total_epochs, parts["view_name"]  # doctest: +SKIP
    (1, 'clip')
"""

from __future__ import annotations

import inspect
from typing import Any

from ..errors import LightlyMMError
from .config import TrainConfig


def data_file_options(cfg: TrainConfig) -> Any:
    """``spec -> load_dataset keyword arguments``: the file options set in ``cfg``,
    for annotation files only (the embedded data sets take none)."""
    from ..data import check_data_spec

    options = {
        "image_root": cfg.image_root,
        "csv_img_key": cfg.csv_img_key,
        "csv_caption_key": cfg.csv_caption_key,
        "csv_separator": cfg.csv_separator,
    }
    given = {k: v for k, v in options.items() if v is not None}

    def for_spec(spec: str) -> dict[str, Any]:
        if check_data_spec(spec) != "file":
            return {}
        return given

    return for_spec


def build_components(cfg: TrainConfig) -> dict[str, Any]:
    """Data sets, view, encoders, objective, scheduler and module for ``cfg``."""
    from .. import get_host
    from ..data import load_dataset
    from ..encoders import build_encoder
    from .datamodule import MultimodalDataModule
    from .module import MultimodalModule

    host = get_host()
    obj_entry = host.registry("objectives").get(cfg.method)
    from ..data import check_data_spec

    file_options = data_file_options(cfg)
    shards = check_data_spec(cfg.data) == "shards"
    common: dict[str, Any] = {"on_error": cfg.on_error, "seed": 0}
    if cfg.test_data is None and not shards:
        common["split_fractions"] = tuple(cfg.split_fractions)
    # With a separate --test-data, all of --data trains (its own train split if its
    # records name splits); else the train split of --data.
    whole = shards or cfg.test_data is not None
    train_set: Any = load_dataset(
        cfg.data, split="all" if whole else "train", **common, **file_options(cfg.data)
    )
    if whole and getattr(train_set, "splits", None):
        from ..data import select_split

        train_set = select_split(train_set, "train")
    if cfg.test_data is not None:
        test_set = load_dataset(
            cfg.test_data, split="all", on_error=cfg.on_error, **file_options(cfg.test_data)
        )
    elif shards and not (cfg.eval_init or cfg.eval_final):
        test_set = train_set  # never read: no evaluation
    else:
        test_set = load_dataset(cfg.data, split="test", **common, **file_options(cfg.data))
    if shards and cfg.limit_train_samples is not None:
        raise LightlyMMError(
            "--limit-train-samples needs an annotation file; with shards, name fewer shards "
            "(e.g. 'shards/{000..001}.tar')"
        )
    if cfg.limit_train_samples is not None:
        keep = range(min(cfg.limit_train_samples, len(train_set)))
        train_set = train_set.subset(list(keep))
    kinds: dict[str, str] = dict(train_set.modalities)
    image_size = cfg.image_size
    if image_size is None:
        image_size = getattr(train_set, "default_image_size", 32)

    encoders = {}
    for m, kind in kinds.items():
        if kind == "image":
            encoders[m] = build_encoder(
                "image", cfg.image_encoder, image_size=image_size, weights_path=cfg.image_weights
            )
        elif kind == "text":
            encoders[m] = build_encoder(
                "text", cfg.text_encoder, trainable=cfg.train_text, weights_path=cfg.text_weights
            )
        else:
            dim = int(train_set[0].observations[m][0].shape[-1])
            encoders[m] = build_encoder("vector", None, input_dim=dim)
    embedding_dims = {m: int(e.feature_dim) for m, e in encoders.items()}
    extra: dict[str, Any] = {}
    if "local_dims" in inspect.signature(obj_entry.resolve()).parameters:
        extra["local_dims"] = {m: int(e.local_dim or e.feature_dim) for m, e in encoders.items()}
    objective = obj_entry.create(
        embedding_dims=embedding_dims, modalities=tuple(kinds), **extra, **cfg.method_args
    )
    # Retrieval is evaluated in the objective's joint space: find it now, not after training.
    from ..api import joint_embedding_problem

    problem = joint_embedding_problem(objective)
    if problem:
        raise LightlyMMError(f"objective {cfg.method!r}: {problem}")
    view_name = cfg.view or obj_entry.metadata.get("view") or "paired"
    view = host.registry("views").create(
        view_name, modalities=kinds, image_size=image_size, **cfg.view_args
    )
    epochs = cfg.epochs
    if epochs is None:
        epochs = 3 if cfg.data in ("default", "digits") else 10
    sched_name = cfg.scheduler or obj_entry.metadata.get("scheduler") or "single"
    scheduler = host.registry("stage_schedulers").create(
        sched_name, epochs=epochs, **cfg.scheduler_args
    )
    own_sched = obj_entry.metadata.get("scheduler")
    if own_sched and sched_name != own_sched and scheduler.num_stages() < 2:
        # An objective registered with its own multi-stage scheduler (MCL) is, in one
        # stage, exactly its per-stage objective: say so instead of training that silently.
        raise LightlyMMError(
            f"objective {cfg.method!r} is trained by its stage scheduler {own_sched!r}; with "
            f"--scheduler {sched_name} ({scheduler.num_stages()} stage) it would be a plain "
            f"single-stage run of the objective it wraps. Drop --scheduler, or train that "
            "objective by its own name"
        )
    if shards and scheduler.num_stages() > 1:
        raise LightlyMMError(
            f"stage scheduler {sched_name!r} draws its own batches from all instances, which "
            "streamed shards cannot give; use an annotation file, or --scheduler single"
        )
    if scheduler.num_stages() > 1 and not objective.requirements.pseudo_labels:
        if getattr(scheduler, "needs_pseudo_labels", True):
            raise LightlyMMError(
                f"stage scheduler {sched_name!r} restricts negatives with pseudo labels, but "
                f"objective {cfg.method!r} does not support them (requirements.pseudo_labels)"
            )
    module = MultimodalModule(
        encoders,
        objective,
        scheduler,
        kinds,
        lr=cfg.lr,
        weight_decay=cfg.weight_decay,
        warmup_epochs=cfg.warmup_epochs,
        seed=cfg.seed,
    )
    dm = MultimodalDataModule(
        train_set,
        test_set,
        view,
        batch_size=cfg.batch_size,
        num_workers=cfg.num_workers,
        seed=cfg.seed,
        stages=module.stages,
        on_error=cfg.on_error,
    )
    return {
        "module": module,
        "datamodule": dm,
        "kinds": kinds,
        "view_name": view_name,
        "scheduler_name": sched_name,
        "epochs": epochs,
        "image_size": image_size,
    }
