"""The main job: train, evaluate, and write checkpoint, metrics and plots.

:func:`train` is the programmatic entry point behind ``lightly-mm train``::

    from lightly_mm_plugins.training import TrainConfig, train
    results = train(TrainConfig(method="clip", epochs=2, out="runs/clip"))
    print(results["trained"]["retrieval/image2text_R@1"])
"""

from __future__ import annotations

import argparse
import functools
import importlib
import inspect
import json
import os
import time
import types
from dataclasses import asdict
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from ..errors import LightlyMMError
from .checkpointing import (
    atomic_torch_save,
    atomic_write_text,
    load_checkpoint_file,
    remove_stale_tmp_files,
)
from .config import TrainConfig, config_from_args
from .validation import validate_config

__all__ = ["TrainConfig", "evaluate", "train"]


def _check_out_dir(out: Path) -> None:
    try:
        out.mkdir(parents=True, exist_ok=True)
        probe = out / ".write-test"
        probe.write_text("ok")
        probe.unlink()
    except OSError as exc:
        raise LightlyMMError(
            f"cannot write to output directory {str(out)!r} ({exc.strerror or exc}); "
            "pass a writable --out"
        ) from exc


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
    train_set: Any = load_dataset(
        cfg.data, split="all" if shards else "train", **common, **file_options(cfg.data)
    )
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
        scheduler=scheduler,
        stage_of_epoch=module.stage_of_epoch,
        on_error=cfg.on_error,
    )
    # A bound method, not a lambda: ddp_spawn pickles the module.
    module.embed_loader_fn = functools.partial(dm.eval_loader, "train")
    return {
        "module": module,
        "datamodule": dm,
        "kinds": kinds,
        "view_name": view_name,
        "scheduler_name": sched_name,
        "epochs": epochs,
    }


@torch.no_grad()
def collect_features(module: Any, loader: Any) -> dict[str, Any]:
    """Per modality: features of every valid observation, their instance ids; labels."""
    from .module import _to_device

    was_training = module.training
    module.eval()
    feats: dict[str, list[Tensor]] = {m: [] for m in module.objective.modalities}
    joint: dict[str, list[Tensor]] = {m: [] for m in module.objective.modalities}
    ids: dict[str, list[Tensor]] = {m: [] for m in module.objective.modalities}
    labels: dict[int, int] = {}
    extra_labels: dict[str, dict[int, int]] = {}
    for batch in loader:
        batch = _to_device(batch, module.device)
        for m in module.objective.modalities:
            mask = batch.masks[m]
            f = module.features(batch, m, final=True)
            assert f is not None
            feats[m].append(f.float().cpu())
            j = module.features(batch, m, final=True, joint=True)
            if j is not None:
                joint[m].append(j.float().cpu())
            ids[m].append(batch.instance_ids.repeat_interleave(mask.sum(1)).cpu())
        if batch.labels is not None:
            for i, y in zip(batch.instance_ids.tolist(), batch.labels.tolist()):
                labels[i] = y
        for name, values in batch.extras.get("labels", {}).items():
            table = extra_labels.setdefault(name, {})
            for i, y in zip(batch.instance_ids.tolist(), values.tolist()):
                table[i] = y
    module.train(was_training)
    return {
        "features": {m: torch.cat(v) for m, v in feats.items()},
        "joint": {m: torch.cat(v) for m, v in joint.items() if v},
        "ids": {m: torch.cat(v) for m, v in ids.items()},
        "labels": labels,
        "extra_labels": extra_labels,
    }


def _per_instance(feats: Tensor, ids: Tensor) -> tuple[Tensor, Tensor]:
    """Mean feature of each instance's observations, and the sorted unique ids."""
    uniq, inverse = torch.unique(ids, return_inverse=True)
    out = torch.zeros(len(uniq), feats.shape[1])
    out.index_add_(0, inverse, feats)
    counts = torch.bincount(inverse, minlength=len(uniq)).clamp(min=1).unsqueeze(1)
    return out / counts, uniq


def evaluate(module: Any, dm: Any, seed: int = 0) -> dict[str, float]:
    """Linear probe, kNN and cross-modal retrieval on the test split."""
    from ..evaluation import knn_accuracy, linear_probe, retrieval_recall

    train = collect_features(module, dm.eval_loader("train"))
    test = collect_features(module, dm.eval_loader("test"))
    results: dict[str, float] = {}
    modalities = list(module.objective.modalities)
    have_labels = bool(train["labels"]) and bool(test["labels"])
    joint_train, joint_test = [], []
    for m in modalities:
        tr_x, tr_ids = _per_instance(train["features"][m], train["ids"][m])
        te_x, te_ids = _per_instance(test["features"][m], test["ids"][m])
        joint_train.append(tr_x)
        joint_test.append(te_x)
        if have_labels:
            tr_y = torch.tensor([train["labels"][int(i)] for i in tr_ids])
            te_y = torch.tensor([test["labels"][int(i)] for i in te_ids])
            results[f"linear_probe/{m}"] = float(linear_probe(tr_x, tr_y, te_x, te_y))
            results[f"knn/{m}"] = float(knn_accuracy(tr_x, tr_y, te_x, te_y))
    if have_labels and len(modalities) > 1:
        results["linear_probe/joint"] = float(
            linear_probe(torch.cat(joint_train, 1), tr_y, torch.cat(joint_test, 1), te_y)
        )
    # Every extra label set (e.g. shared / unique parts of the synthetic data), per
    # modality and joint: what each modality's features learned.
    for name, table in sorted(train["extra_labels"].items()):
        test_table = test["extra_labels"].get(name, {})
        if not test_table or len(set(table.values())) < 2:
            continue
        tr_y = torch.tensor([table[int(i)] for i in tr_ids])
        te_y = torch.tensor([test_table[int(i)] for i in te_ids])
        for m, tr_x, te_x in zip(modalities, joint_train, joint_test):
            results[f"linear_probe/{m}[{name}]"] = float(linear_probe(tr_x, tr_y, te_x, te_y))
        if len(modalities) > 1:
            results[f"linear_probe/joint[{name}]"] = float(
                linear_probe(torch.cat(joint_train, 1), tr_y, torch.cat(joint_test, 1), te_y)
            )
    if len(modalities) > 1:
        a, b = modalities[:2]
        if a in test["joint"] and b in test["joint"]:
            fa, fb = test["joint"][a], test["joint"][b]
            ks = retrieval_ks(int(torch.unique(test["ids"][a]).numel()))
            rec = retrieval_recall(fa, test["ids"][a], fb, test["ids"][b], ks=ks) if ks else {}
            for key, value in rec.items():
                key = key.replace("a2b", f"{a}_to_{b}").replace("b2a", f"{b}_to_{a}")
                results[f"retrieval/{key}"] = float(value)
    return results


#: Ks of the retrieval recall that is reported (those below the gallery size).
RETRIEVAL_KS = (1, 5, 10)
#: Fewer test instances than this: a warning that R@K is coarse.
SMALL_GALLERY = 100


def retrieval_ks(gallery: int, ks: tuple[int, ...] = RETRIEVAL_KS) -> tuple[int, ...]:
    """The Ks below ``gallery`` (test instances): R@K with K >= gallery is 1.0 by
    construction (every instance is in the top K), so it is not reported.

    Warns when the gallery has fewer than :data:`SMALL_GALLERY` instances.

    Example:
        >>> retrieval_ks(1000), retrieval_ks(8)  # doctest: +SKIP
        ((1, 5, 10), (1, 5))
    """
    import warnings

    kept = tuple(k for k in ks if k < gallery)
    if gallery < SMALL_GALLERY:
        dropped = [k for k in ks if k >= gallery]
        warnings.warn(
            f"the test gallery has only {gallery} instance(s): retrieval R@K is coarse "
            f"(one instance = {100 / max(gallery, 1):.0f} points)"
            + (f" and R@{', R@'.join(map(str, dropped))} is not reported" if dropped else "")
            + "; evaluate on more data (--test-data, --split-fractions)",
            UserWarning,
            stacklevel=2,
        )
    return kept


def _retrieval_features_note(results: dict[str, float]) -> str:
    if any(k.startswith("retrieval/") for k in results):
        return ""
    return "(no cross-modal retrieval: this objective has no joint embedding space)"


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


def _resume_checkpoint(cfg: TrainConfig, module: Any, last: Path) -> str | None:
    """The checkpoint ``--resume`` continues, checked before anything starts.

    Read here (``weights_only=True``), in the main process, so that a truncated,
    unsafe or foreign checkpoint is a clear :class:`CheckpointError` also
    under ``ddp_spawn`` (where Lightning loads it again in every worker).
    """
    if not (cfg.resume and last.exists()):
        return None
    module.check_checkpoint(load_checkpoint_file(last), source=f"checkpoint {str(last)!r}")
    return str(last)


def train(cfg: TrainConfig) -> dict[str, Any]:
    """Train ``cfg.method``, evaluate it, and write everything into ``cfg.out``.

    ``checkpoints/last.ckpt`` is written atomically at every epoch end and every
    ``cfg.checkpoint_every_n_steps`` batches; with ``cfg.resume`` a run killed
    anywhere continues from it to the weights an uninterrupted run reaches.
    """
    import pytorch_lightning as pl
    from pytorch_lightning.loggers import CSVLogger, TensorBoardLogger

    from .. import get_host
    from .callbacks import (
        AtomicCheckpointIO,
        BatchTrace,
        CrashAfterSteps,
        RunCheckpoint,
        SimulatedCrash,
        StopAfterEpochs,
    )
    from .datamodule import SkippedRecordsReport
    from .plots import plot_loss_curve, plot_results

    t0 = time.time()
    validate_config(cfg)
    out = Path(cfg.out)
    _check_out_dir(out)
    pl.seed_everything(cfg.seed, workers=True, verbose=False)
    parts = build_components(cfg)
    module, dm = parts["module"], parts["datamodule"]

    accelerator = "gpu" if cfg.accelerator == "cuda" else cfg.accelerator
    on_gpu = accelerator == "gpu" or (accelerator == "auto" and torch.cuda.is_available())
    precision = cfg.precision or ("bf16-mixed" if on_gpu else "32-true")
    devices: Any = int(cfg.devices) if str(cfg.devices).isdigit() else cfg.devices
    multi = isinstance(devices, int) and devices > 1
    strategy: Any = "auto"
    if multi:
        strategy = "ddp_spawn" if accelerator == "cpu" else "ddp"
    if strategy == "ddp_spawn":
        _pickle_modules_by_name()

    ckpt_dir = out / "checkpoints"
    last = ckpt_dir / "last.ckpt"
    if os.environ.get("LOCAL_RANK", "0") == "0" and os.environ.get("NODE_RANK", "0") == "0":
        remove_stale_tmp_files(ckpt_dir)  # left by a run killed while writing
    ckpt_path = _resume_checkpoint(cfg, module, last)

    results: dict[str, Any] = {"config": asdict(cfg)}
    if cfg.eval_init and ckpt_path is None:
        results["init"] = evaluate(module, dm, seed=cfg.seed)

    skipped_report = SkippedRecordsReport()
    callbacks: list[Any] = [
        RunCheckpoint(last, every_n_steps=cfg.checkpoint_every_n_steps),
        skipped_report,
    ]
    if cfg.stop_after_epochs is not None:
        callbacks.append(StopAfterEpochs(cfg.stop_after_epochs))
    if cfg.stop_after_steps is not None:
        callbacks.append(CrashAfterSteps(cfg.stop_after_steps))
    if cfg.trace_batches:
        callbacks.append(BatchTrace(out / "batch_trace"))
    loggers = [
        CSVLogger(str(out), name="logs"),
        TensorBoardLogger(str(out), name="tensorboard", version=""),
    ]
    trainer = pl.Trainer(
        max_epochs=module.total_epochs,
        accelerator=accelerator,
        devices=devices,
        strategy=strategy,
        precision=precision,  # type: ignore[arg-type]
        logger=loggers,
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
    try:
        trainer.fit(module, datamodule=dm, ckpt_path=ckpt_path)
    except SimulatedCrash as crash:
        print(f"Stopped after step {crash.steps}; continue with --resume --out {cfg.out}")
        results["stopped_at_step"] = crash.steps
        results["module"] = module
        return results
    if not trainer.is_global_zero:
        return results
    if strategy == "ddp_spawn" and last.exists():
        # The workers trained; this process only got rank 0's weights back. The
        # last checkpoint (written at the final epoch end) has the whole state:
        # stage snapshots, stage, scheduler state and the epoch count.
        module.restore_from_checkpoint(load_checkpoint_file(last))
    if module.epochs_done < module.total_epochs:
        print(
            f"Stopped after epoch {module.epochs_done} of {module.total_epochs}; "
            f"continue with --resume --out {cfg.out}"
        )
        results["stopped_at_epoch"] = module.epochs_done
        results["module"] = module
        return results

    if skipped_report.skipped:
        results["skipped_records"] = dict(skipped_report.skipped)
    if cfg.eval_final:
        results["trained"] = evaluate(module, dm, seed=cfg.seed)
    results["plugins"] = [
        f"{p.distribution}=={p.version}" for p in get_host().plugins() if p.status == "active"
    ]
    results["wall_time_s"] = round(time.time() - t0, 1)
    results["stages"] = module.scheduler.num_stages()
    results["view"], results["scheduler"] = parts["view_name"], parts["scheduler_name"]
    results["module"] = module

    atomic_torch_save(
        {
            "encoders": {m: e.state_dict() for m, e in module.encoders.items()},
            "objective": module.objective.state_dict(),
            "method": cfg.method,
            "kinds": parts["kinds"],
            "image_encoder": cfg.image_encoder,
            "image_weights": cfg.image_weights,
            "text_encoder": cfg.text_encoder,
            "text_weights": cfg.text_weights,
        },
        out / "encoders.pt",
    )
    serialisable = {k: v for k, v in results.items() if k != "module"}
    atomic_write_text(json.dumps(serialisable, indent=2, default=str), out / "metrics.json")
    plot_loss_curve(
        sorted((out / "logs").glob("version_*/metrics.csv")),
        module.stage_starts,
        out / "loss_curve.png",
    )
    if "trained" in results:
        plot_results(results, out / "results.png", title=f"{cfg.method} on {cfg.data}")
    print(format_results_table(results, cfg))
    return results


def format_results_table(results: dict[str, Any], cfg: TrainConfig) -> str:
    trained = results.get("trained", {})
    init = results.get("init", {})
    lines = [
        "",
        f"Results: method={cfg.method} data={cfg.data} seed={cfg.seed} "
        f"({results.get('wall_time_s', '?')} s)",
        f"{'metric':32s} {'random init':>12s} {'trained':>10s}",
    ]
    for key in sorted(trained):
        before = f"{init[key]:.3f}" if key in init else "-"
        lines.append(f"{key:32s} {before:>12s} {trained[key]:>10.3f}")
    note = _retrieval_features_note(trained) if trained else "(evaluation skipped)"
    if note:
        lines.append(note)
    lines.append(f"Written to {cfg.out}: encoders.pt, metrics.json, checkpoints/, logs/, *.png")
    return "\n".join(lines)


def train_from_args(args: argparse.Namespace) -> dict[str, Any]:
    return train(config_from_args(args))


def compare_from_args(args: argparse.Namespace) -> dict[str, Any]:
    from .plots import plot_compare

    methods = [m.strip() for m in args.methods.split(",") if m.strip()]
    from ..cli import compare_seeds

    seeds = compare_seeds(args.seeds)
    table: dict[str, list[dict[str, float]]] = {}
    for method in methods:
        for seed in seeds:
            cfg = config_from_args(
                args,
                method=method,
                seed=seed,
                out=str(Path(args.out) / f"{method}-seed{seed}"),
                eval_init=False,
            )
            table.setdefault(method, []).append(train(cfg).get("trained", {}))
    summary = summarize(table)
    text = format_compare_table(summary, seeds)
    print(text)
    out = Path(args.out)
    (out / "compare.md").write_text(text + "\n")
    (out / "compare.json").write_text(json.dumps(summary, indent=2))
    plot_compare(summary, out / "compare.png")
    return summary


def summarize(table: dict[str, list[dict[str, float]]]) -> dict[str, dict[str, list[float]]]:
    """method -> metric -> [mean, std] over seeds."""
    out: dict[str, dict[str, list[float]]] = {}
    for method, runs in table.items():
        keys = sorted(set().union(*[r.keys() for r in runs])) if runs else []
        out[method] = {}
        for k in keys:
            vals = torch.tensor([r[k] for r in runs if k in r], dtype=torch.float64)
            std = float(vals.std()) if len(vals) > 1 else 0.0
            out[method][k] = [float(vals.mean()), std]
    return out


def format_compare_table(summary: dict[str, dict[str, list[float]]], seeds: list[int]) -> str:
    metrics = sorted(set().union(*[m.keys() for m in summary.values()])) if summary else []
    header = "| method | " + " | ".join(metrics) + " |"
    sep = "|---|" + "---|" * len(metrics)
    rows = [f"Mean ± std over seeds {seeds}", "", header, sep]
    for method, vals in summary.items():
        cells = [f"{vals[k][0]:.3f} ± {vals[k][1]:.3f}" if k in vals else "-" for k in metrics]
        rows.append(f"| {method} | " + " | ".join(cells) + " |")
    return "\n".join(rows)
