"""The main job: train, evaluate, and write checkpoint, metrics and plots.

:func:`train` is the programmatic entry point behind ``lightly-mm train``::

    from lightly_mm_plugins.training import TrainConfig, train
    results = train(TrainConfig(method="clip", epochs=2, out="runs/clip"))
    print(results["trained"]["retrieval/image2text_R@1"])
"""

from __future__ import annotations

import argparse
import time
from dataclasses import asdict
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from ..errors import ResumeMismatchError
from .build import build_components, data_file_options
from .checkpointing import atomic_write_text, load_checkpoint_file
from .config import (
    CONFIG_KEY,
    TrainConfig,
    config_file_values,
    config_from_args,
    describe_differences,
    resume_differences,
)
from .outdir import RunFolder, claim_run_folder, is_launched_worker
from .report import write_outputs
from .trainer import Hardware, make_trainer, resolve_hardware, run_output
from .validation import validate_config

__all__ = ["TrainConfig", "build_components", "data_file_options", "evaluate", "train"]


def _per_instance(feats: Tensor, ids: Tensor) -> tuple[Tensor, Tensor]:
    """Mean feature of each instance's observations, and the sorted unique ids."""
    uniq, inverse = torch.unique(ids, return_inverse=True)
    out = torch.zeros(len(uniq), feats.shape[1])
    out.index_add_(0, inverse, feats)
    counts = torch.bincount(inverse, minlength=len(uniq)).clamp(min=1).unsqueeze(1)
    return out / counts, uniq


def evaluate(
    module: Any, dm: Any, seed: int = 0, aliases: dict[str, str] | None = None
) -> dict[str, float]:
    """Linear probe, kNN and cross-modal retrieval on the test split.

    Each probe is fitted once: an extra label set equal to the data set's labels
    (the digits' ``digit``, synthetic ``all``) reports the main probe's numbers
    under its own keys too, and ``aliases`` (if given) gets ``alias -> key``.
    """
    from ..evaluation import knn_accuracy, linear_probe, retrieval_recall
    from .features import collect_features

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
        if have_labels and table == train["labels"] and test_table == test["labels"]:
            for key in [k for k in results if k.startswith("linear_probe/")]:
                results[f"{key}[{name}]"] = results[key]
                if aliases is not None:
                    aliases[f"{key}[{name}]"] = key
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


def resolved_config(cfg: TrainConfig, parts: dict[str, Any], hw: Hardware) -> dict[str, Any]:
    """``cfg`` with every default filled in as this run uses it (``metrics.json``)."""
    values = asdict(cfg)
    values.update(
        epochs=parts["epochs"],
        image_size=parts["image_size"],
        view=parts["view_name"],
        scheduler=parts["scheduler_name"],
        precision=hw.precision,
        accelerator=hw.accelerator,
        train_samples=len(parts["datamodule"].train_set),
        modalities=dict(parts["kinds"]),
    )
    return values


def _resume_checkpoint(
    cfg: TrainConfig, module: Any, folder: RunFolder, resolved: dict[str, Any]
) -> str | None:
    """The checkpoint ``--resume`` continues, checked before anything starts.

    Read here (``weights_only=True``), in the main process, so that a truncated,
    unsafe or foreign checkpoint is a clear :class:`CheckpointError` also
    under ``ddp_spawn`` (where Lightning loads it again in every worker). The
    run's settings must equal the checkpoint's (:func:`~.config.resume_differences`;
    ``--allow-changed`` lets some differ): a :class:`ResumeMismatchError` names
    each one that does not.
    """
    if folder.fresh:
        return None
    last = folder.last_checkpoint
    checkpoint = load_checkpoint_file(last)
    module.check_checkpoint(checkpoint, source=f"checkpoint {str(last)!r}")
    saved = checkpoint.get(CONFIG_KEY)
    if isinstance(saved, dict):
        diffs = resume_differences(saved, resolved, cfg.allow_changed)
        if diffs:
            raise ResumeMismatchError(describe_differences(diffs, str(last)))
    return str(last)


def write_config_file(cfg: TrainConfig, resolved: dict[str, Any], path: Path) -> None:
    """``OUT/config.yaml``: the run as a ``--config`` file (:func:`~.config.config_file_values`)."""
    import yaml

    from ..cli import train_settings

    values = asdict(cfg)
    values.update({k: resolved[k] for k in ("epochs", "image_size", "view", "scheduler")})
    text = yaml.safe_dump(config_file_values(values, train_settings()), sort_keys=False)
    atomic_write_text(text, path)


def _announce_schedule(cfg: TrainConfig, module: Any, parts: dict[str, Any]) -> None:
    """Say how many epochs the stages add up to (``--epochs`` may count per stage)."""
    stages = module.scheduler.num_stages()
    if stages < 2 or cfg.quiet:
        return
    per_stage = [module.scheduler.plan(s).epochs for s in range(stages)]
    if len(set(per_stage)) == 1:
        sizes = f"{stages} x {per_stage[0]}"
    else:
        sizes = "+".join(map(str, per_stage))
    note = " (--epochs counts per stage)" if set(per_stage) == {parts["epochs"]} else ""
    print(
        f"{parts['scheduler_name']!r} schedule: {stages} stages, {sizes} = "
        f"{module.total_epochs} epochs in all{note}"
    )


def fit(
    cfg: TrainConfig, trainer: Any, module: Any, dm: Any, ckpt_path: str | None, spawned: bool
) -> dict[str, Any]:
    """``trainer.fit``; what stopped it early (``stopped_at_step`` / ``_epoch``), if anything.

    ``spawned``: the workers ran in spawned processes (``ddp_spawn``), so this
    process reloads the final state from the last checkpoint.
    """
    from .callbacks import SimulatedCrash

    try:
        trainer.fit(module, datamodule=dm, ckpt_path=ckpt_path)
    except SimulatedCrash as crash:
        print(f"Stopped after step {crash.steps}; continue with --resume --out {cfg.out}")
        return {"stopped_at_step": crash.steps}
    if not trainer.is_global_zero:
        return {}
    last = Path(cfg.out) / "checkpoints" / "last.ckpt"
    if spawned and last.exists():
        # The workers trained; this process only got rank 0's weights back. The
        # last checkpoint (written at the final epoch end) has the whole state:
        # stage snapshots, stage, scheduler state and the epoch count.
        module.restore_from_checkpoint(load_checkpoint_file(last))
    if module.epochs_done < module.total_epochs:
        print(
            f"Stopped after epoch {module.epochs_done} of {module.total_epochs}; "
            f"continue with --resume --out {cfg.out}"
        )
        return {"stopped_at_epoch": module.epochs_done}
    return {}


def train(cfg: TrainConfig) -> dict[str, Any]:
    """Train ``cfg.method``, evaluate it, and write everything into ``cfg.out``.

    The steps: check every setting (:func:`~.validation.validate_config`),
    claim the run folder (:func:`~.outdir.claim_run_folder`: lock, refuse a
    folder holding another run), build the components, evaluate the random
    initialisation, fit, evaluate the trained model, write the outputs.

    ``checkpoints/last.ckpt`` is written atomically at every epoch end and every
    ``cfg.checkpoint_every_n_steps`` batches; with ``cfg.resume`` a run killed
    anywhere continues from it to the weights an uninterrupted run reaches.
    """
    t0 = time.time()
    validate_config(cfg)
    claim = claim_run_folder(cfg.out, resume=cfg.resume, overwrite=cfg.overwrite, quiet=cfg.quiet)
    with run_output(), claim as folder:
        return _train_in(cfg, folder, t0)


def _train_in(cfg: TrainConfig, folder: RunFolder, t0: float) -> dict[str, Any]:
    import pytorch_lightning as pl

    from .. import get_host

    pl.seed_everything(cfg.seed, workers=True, verbose=False)
    parts = build_components(cfg)
    module, dm = parts["module"], parts["datamodule"]
    hw = resolve_hardware(cfg)
    results: dict[str, Any] = {"config": asdict(cfg)}
    results["resolved"] = resolved_config(cfg, parts, hw)
    aliases: dict[str, str] = results.setdefault("metric_aliases", {})
    ckpt_path = _resume_checkpoint(cfg, module, folder, results["resolved"])
    if not is_launched_worker():
        write_config_file(cfg, results["resolved"], folder.path / "config.yaml")
    _announce_schedule(cfg, module, parts)
    if cfg.eval_init and ckpt_path is None:
        results["init"] = evaluate(module, dm, seed=cfg.seed, aliases=aliases)

    trainer = make_trainer(cfg, module, hw, folder.path, results["resolved"])
    stopped = fit(cfg, trainer, module, dm, ckpt_path, spawned=hw.strategy == "ddp_spawn")
    results["module"] = module
    if stopped or not trainer.is_global_zero:
        return {**results, **stopped}

    from .batches import SkippedRecordsReport

    for callback in trainer.callbacks:
        if isinstance(callback, SkippedRecordsReport) and callback.skipped:
            results["skipped_records"] = dict(callback.skipped)
    if cfg.eval_final:
        results["trained"] = evaluate(module, dm, seed=cfg.seed, aliases=aliases)
    results["plugins"] = [
        f"{p.distribution}=={p.version}" for p in get_host().plugins() if p.status == "active"
    ]
    results["wall_time_s"] = round(time.time() - t0, 1)
    results["stages"] = module.scheduler.num_stages()
    results["view"], results["scheduler"] = parts["view_name"], parts["scheduler_name"]
    write_outputs(cfg, results, parts)
    return results


def train_from_args(args: argparse.Namespace) -> dict[str, Any]:
    return train(config_from_args(args))
