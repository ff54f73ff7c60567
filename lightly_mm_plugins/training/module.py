"""The LightningModule that trains any registered objective on any encoders.

:class:`MultimodalModule` composes modality encoders, a registered objective
and a stage scheduler. Everything the five methods need is read from the
objective's :class:`~lightly_mm_plugins.api.Requirements`, never from its
name:

* ``momentum``: EMA copies of the encoders (``lightly.models.utils``), updated
  before each forward, encode every view into ``batch.momentum``;
* ``local_features``: ``Encoder.forward_local`` fills ``batch.local``;
* ``pseudo_labels``: the stage scheduler's labels for the batch's instances;
* auxiliary parameters: Lightning manual optimisation with a second optimizer
  stepping only them for ``auxiliary_steps`` inner iterations per batch.

Stages run inside one Trainer: stage ``s`` covers a contiguous range of epochs,
so Lightning's checkpointing and resume cover multi-stage runs too. At a stage
boundary the module snapshots the encoders (for the scheduler's combined final
representation) and calls ``scheduler.on_stage_end``.

Resuming anywhere: everything a run's future depends on is in the checkpoint
(weights, momentum encoders, objective buffers such as queues, stage
snapshots, optimizer and LR-scheduler state, ``current_stage`` and the stage
scheduler's state) or is a function of ``(seed, epoch, batch)``: the global
random generators are re-seeded before every training batch
(:func:`~lightly_mm_plugins.training.seeding.step_seed`), so a run resumed
inside an epoch draws exactly the random numbers an uninterrupted one does.

Lightning does the rest: the default batch transfer (a
:class:`~lightly_mm_plugins.api.CollatedBatch` has ``.to()``), lightly's
``CosineWarmupScheduler`` and ``save_hyperparameters``.
"""

from __future__ import annotations

import copy
from collections.abc import Mapping
from typing import Any

import pytorch_lightning as pl
import torch
from torch import Tensor, nn

from ..api import (
    CollatedBatch,
    DistributedKind,
    EncodedBatch,
    Encoder,
    Objective,
    StageScheduler,
)
from ..stages import apply_stage_freeze, end_stage
from .encode import encode_batch, encode_observations, first_observation
from .seeding import seed_step_generators, step_seed
from .stage_driver import StageDriver


class MultimodalModule(pl.LightningModule):
    """Encoders + objective + stage scheduler.

    Args:
        encoders: Modality name -> :class:`~lightly_mm_plugins.api.Encoder`.
        objective: A built objective.
        scheduler: A built stage scheduler.
        kinds: Modality name -> kind.
        lr, weight_decay, warmup_epochs: AdamW with linear warm-up then cosine
            decay to 0 (lightly's ``CosineWarmupScheduler``, stepped per batch).
        seed: Seed of the per-step random generators (see
            :func:`~lightly_mm_plugins.training.seeding.step_seed`).
        diagnostics_every_n_steps: Log the objective's diagnostics
            (``ObjectiveOutput.logs``, the per-stage loss, the auxiliary loss)
            at every this many-th batch of an epoch, as epoch means of those
            batches; the training loss at every batch. Each
            ``self.log`` call costs Lightning about a millisecond of Python on a
            CPU, so logging everything every step slowed small models' steps.
    """

    def __init__(
        self,
        encoders: Mapping[str, Encoder],
        objective: Objective,
        scheduler: StageScheduler,
        kinds: Mapping[str, str],
        lr: float = 1e-3,
        weight_decay: float = 1e-4,
        warmup_epochs: float = 0.5,
        seed: int = 0,
        diagnostics_every_n_steps: int = 10,
    ) -> None:
        super().__init__()
        if diagnostics_every_n_steps < 1:
            raise ValueError(
                f"diagnostics_every_n_steps must be >= 1, got {diagnostics_every_n_steps}"
            )
        # lr, weight_decay, warmup_epochs, seed, kinds, ... -> self.hparams and checkpoints
        self.save_hyperparameters(ignore=["encoders", "objective", "scheduler"])
        self.seed = seed
        self.diagnostics_every_n_steps = int(diagnostics_every_n_steps)
        self.encoders = nn.ModuleDict(dict(encoders))
        self.objective = objective
        self.scheduler = scheduler
        self.kinds = dict(kinds)
        #: Epoch ranges of the stages; shared with the data module (its batches).
        self.stages = StageDriver(scheduler)
        req = objective.requirements
        self.momentum_encoders: nn.ModuleDict | None = None
        if req.momentum:
            self.momentum_encoders = copy.deepcopy(self.encoders)
            for p in self.momentum_encoders.parameters():
                p.requires_grad_(False)
        self.stage_snapshots = nn.ModuleList()
        self.aux_params = list(objective.auxiliary_parameters())
        self.automatic_optimization = not self.aux_params
        self.current_stage = 0
        #: Epochs finished (kept in checkpoints; after ``ddp_spawn`` the main
        #: process reads it from the last checkpoint).
        self.epochs_done = 0

    # ----------------------------------------------------------------- stages
    @property
    def total_epochs(self) -> int:
        return self.stages.total_epochs

    @property
    def stage_starts(self) -> list[int]:
        """Stage ``s`` covers epochs ``[stage_starts[s], stage_starts[s + 1])``."""
        return self.stages.starts

    def on_fit_start(self) -> None:
        world = self.trainer.world_size
        if world > 1 and self.objective.requirements.distributed == DistributedKind.RANK_LOCAL:
            from pytorch_lightning.utilities import rank_zero_warn

            rank_zero_warn(
                f"{type(self.objective).__name__} contrasts each device's batch on its own "
                f"(requirements.distributed = rank_local): on {world} devices its negatives "
                "come from one device's batch; pass gather_distributed=True in --method-args "
                "if the method accepts it"
            )

    def on_train_start(self) -> None:
        # Runs on every fit, also one resumed inside an epoch (which skips
        # on_train_epoch_start): requires_grad is not part of a checkpoint.
        self._apply_freeze(self.stages.stage_of_epoch(self.current_epoch))

    def on_train_batch_start(self, batch: Any, batch_idx: int) -> None:
        # Random draws of a training step depend only on (seed, epoch, batch):
        # identical after a resume from any batch, on every rank. (Views are
        # seeded per sample in the loader: SeededViews.)
        seed_step_generators(step_seed(self.seed, self.current_epoch, batch_idx))

    def on_train_epoch_start(self) -> None:
        stage = self.stages.stage_of_epoch(self.current_epoch)
        while self.current_stage < stage:
            self._finish_stage(self.current_stage)
            self.current_stage += 1
        self._apply_freeze(stage)

    def on_train_epoch_end(self) -> None:
        # Finish a stage at its last epoch, before the checkpoint callback runs and
        # before Lightning builds the next epoch's loader (which may need the new
        # stage's batches); on_train_epoch_start still catches up after a resume.
        nxt = self.current_stage + 1
        if nxt < self.stages.num_stages and self.current_epoch + 1 >= self.stage_starts[nxt]:
            self._finish_stage(self.current_stage)
            self.current_stage = nxt
        self.epochs_done = self.current_epoch + 1

    def _apply_freeze(self, stage: int) -> None:
        apply_stage_freeze(self.scheduler.plan(stage), self.encoders)
        self.objective.set_stage(stage)

    def _append_snapshot(self) -> None:
        """Keep a frozen copy of the encoders and objective (a finished stage's model)."""
        snap = copy.deepcopy(
            nn.ModuleDict({"encoders": self.encoders, "objective": self.objective})
        )
        for p in snap.parameters():
            p.requires_grad_(False)
        self.stage_snapshots.append(snap.eval())

    def _finish_stage(self, stage: int) -> None:
        """Snapshot encoders and let the scheduler act (e.g. MCL clustering)."""
        if len(self.stage_snapshots) <= stage:
            self._append_snapshot()
        first: Any = self.stage_snapshots[0] if len(self.stage_snapshots) else None
        end_stage(
            self.scheduler,
            stage,
            self.embed_training_set,
            self.device,
            self.encoders,
            None if first is None else first["encoders"].state_dict(),
        )

    @torch.no_grad()
    def embed_training_set(self) -> tuple[Tensor, Tensor]:
        """Per instance of the training set (eval view, from the Trainer's data module),
        the concatenated current features of each contrasted modality's first
        observation ``(M, D)``, and the instance ids ``(M,)``: what a stage scheduler
        clusters at a stage boundary.

        This runs inside ``trainer.fit``, where Lightning cannot start a predict loop,
        so it iterates the loader itself (with a progress bar).
        """
        from tqdm.auto import tqdm

        datamodule = getattr(self.trainer, "datamodule", None)
        if datamodule is None:
            raise RuntimeError("embedding the training set needs trainer.fit(datamodule=...)")
        was_training = self.training
        self.eval()
        feats: list[Tensor] = []
        ids: list[Tensor] = []
        loader = datamodule.eval_loader("train")
        for batch in tqdm(loader, desc="embedding", leave=False, disable=None):
            batch = batch.to(self.device)
            per_mod = []
            for m in self.objective.modalities:
                feats_m = self.features(first_observation(batch, m), m, final=False)
                assert feats_m is not None
                per_mod.append(feats_m)
            feats.append(torch.cat(per_mod, dim=-1).float().cpu())
            ids.append(batch.instance_ids.cpu())
        self.train(was_training)
        return torch.cat(feats), torch.cat(ids)

    # ---------------------------------------------------------------- encoding
    def encode(self, batch: CollatedBatch) -> EncodedBatch:
        """Encode every observation of every modality into an :class:`EncodedBatch`
        (:func:`~lightly_mm_plugins.training.encode.encode_batch`)."""
        pseudo = self.scheduler.pseudo_labels(self.current_stage, batch.instance_ids.cpu())
        return encode_batch(
            batch,
            self.objective,
            self.encoders,
            self.momentum_encoders,
            None if pseudo is None else pseudo.to(self.device),
        )

    # ---------------------------------------------------------------- training
    def training_step(self, batch: CollatedBatch, batch_idx: int) -> Tensor | None:
        if self.momentum_encoders is not None:
            from lightly.models.utils import update_momentum

            for m in self.encoders:
                update_momentum(
                    self.encoders[m],
                    self.momentum_encoders[m],
                    m=self.objective.requirements.momentum_decay,
                )
        encoded = self.encode(batch)
        output = self.objective(encoded)
        loss = output.loss
        if not torch.isfinite(loss):
            raise FloatingPointError(
                f"loss is {loss.item()} at epoch {self.current_epoch}, step {self.global_step}; "
                "lower the learning rate or use --precision 32"
            )
        n = batch.batch_size
        diagnostics = batch_idx % self.diagnostics_every_n_steps == 0
        self.log("train_loss", loss, prog_bar=True, sync_dist=True, batch_size=n)
        if diagnostics:
            # Epoch means over the sampled batches: logged at some steps only, an
            # on-step value would be repeated by Lightning at the steps in between.
            kw: dict[str, Any] = dict(on_step=False, on_epoch=True, sync_dist=True, batch_size=n)
            self.log(f"stage{self.current_stage}/train_loss", loss, **kw)
            for key, value in output.logs.items():
                self.log(f"train/{key}", value.detach().float(), **kw)
        if self.automatic_optimization:
            return loss
        self._manual_step(loss, encoded, diagnostics)
        return None

    def on_train_batch_end(self, outputs: Any, batch: Any, batch_idx: int) -> None:
        # after the optimiser step: e.g. cap learnable temperatures (open_clip's clamp)
        self.objective.on_after_optimizer_step()

    def _manual_step(self, loss: Tensor, encoded: EncodedBatch, diagnostics: bool) -> None:
        opt_main, opt_aux = self.optimizers()  # type: ignore[misc,attr-defined]
        sched = self.lr_schedulers()
        opt_main.zero_grad()
        self.manual_backward(loss)
        opt_main.step()
        if sched is not None:
            sched.step()  # type: ignore[union-attr]
        detached = encoded.replace(
            embeddings={k: v.detach() for k, v in encoded.embeddings.items()}
        )
        for _ in range(max(1, self.objective.auxiliary_steps)):
            opt_aux.zero_grad()
            aux = self.objective.auxiliary_loss(detached)
            self.manual_backward(aux)
            opt_aux.step()
        if diagnostics:
            self.log(
                "train/auxiliary_loss",
                aux.detach(),
                on_step=False,
                on_epoch=True,
                batch_size=encoded.batch_size,
            )

    def configure_optimizers(self) -> Any:
        aux_ids = {id(p) for p in self.aux_params}
        params = [
            p
            for p in list(self.encoders.parameters()) + list(self.objective.parameters())
            if id(p) not in aux_ids
        ]
        from lightly.utils.scheduler import CosineWarmupScheduler

        opt = torch.optim.AdamW(
            params, lr=self.hparams["lr"], weight_decay=self.hparams["weight_decay"]
        )
        sched = CosineWarmupScheduler(opt, **self.lr_schedule(self._total_steps()))
        main = {"optimizer": opt, "lr_scheduler": {"scheduler": sched, "interval": "step"}}
        if self.automatic_optimization:
            return main
        aux_opt = torch.optim.Adam(self.aux_params, lr=self.objective.auxiliary_lr)
        return [opt, aux_opt], [{"scheduler": sched, "interval": "step"}]

    def lr_schedule(self, total: int) -> dict[str, Any]:
        """Arguments of lightly's ``CosineWarmupScheduler`` for ``total`` steps: the factor
        of the learning rate is ``(t + 1) / W`` for steps ``t < W`` (warm-up), then
        ``(1 + cos(pi * (t - W) / (total - W))) / 2`` down to 0 at ``total``.

        ``W = int(warmup_epochs * steps_per_epoch)``. Lightly's cosine runs over
        ``max_epochs - W - 1`` steps, so ``max_epochs`` is ``total + 1`` (and at
        least ``W + 1``: a warm-up longer than the run stays linear).
        """
        steps_per_epoch = max(1, total // max(1, self.total_epochs))
        warmup = int(self.hparams["warmup_epochs"] * steps_per_epoch)
        return {
            "warmup_epochs": warmup,
            "max_epochs": max(total, warmup) + 1,
            "end_value": 0.0,
        }

    def _total_steps(self) -> int:
        """Length of the LR schedule: epoch 0's batches times the number of epochs.

        What Lightning's ``estimated_stepping_batches`` gives, computed from the
        data module's samplers instead: that property builds the training
        loader before a checkpoint's loop state is restored, and the loader
        built then would serve a run resumed inside epoch 0 unpositioned.
        """
        datamodule = getattr(self.trainer, "datamodule", None)
        per_epoch = getattr(datamodule, "batches_per_epoch", None)
        if per_epoch is None:
            return max(1, int(self.trainer.estimated_stepping_batches))
        return max(1, int(per_epoch(0)) * max(1, self.total_epochs))

    # ----------------------------------------------------------- checkpoints
    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        checkpoint["lightly_mm"] = {
            "current_stage": self.current_stage,
            "num_snapshots": len(self.stage_snapshots),
            "scheduler": self.scheduler.state_dict(),
            "objective_class": _class_path(self.objective),
            "epochs_done": self.epochs_done,
        }

    def check_checkpoint(self, checkpoint: Mapping[str, Any], source: str = "checkpoint") -> None:
        """Raise :class:`~lightly_mm_plugins.errors.CheckpointError` unless this run
        can continue ``checkpoint`` (written by ``lightly-mm train``, same objective)."""
        from ..errors import CheckpointError

        state = checkpoint.get("lightly_mm")
        if not isinstance(state, Mapping) or "objective_class" not in state:
            raise CheckpointError(
                f"{source} was not written by lightly-mm train; start a new run "
                "without --resume or point --out elsewhere"
            )
        mine = _class_path(self.objective)
        if state["objective_class"] != mine:
            raise CheckpointError(
                f"{source} is from objective {state['objective_class']}, this run uses "
                f"{mine}; use the same --method or another --out"
            )

    def on_load_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        self.check_checkpoint(checkpoint)
        state = checkpoint["lightly_mm"]
        while len(self.stage_snapshots) < state["num_snapshots"]:
            self._append_snapshot()
        self.current_stage = state["current_stage"]
        # Checkpoints before epochs_done was kept were all written at epoch ends.
        self.epochs_done = int(state.get("epochs_done", int(checkpoint.get("epoch", -1)) + 1))
        self.scheduler.load_state_dict(state["scheduler"])

    def restore_from_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        """Load a whole checkpoint into this module outside a Trainer (weights,
        stage snapshots, stage and scheduler state; not the optimizer)."""
        self.on_load_checkpoint(checkpoint)
        self.load_state_dict(checkpoint["state_dict"])

    # ------------------------------------------------------------ features
    @torch.no_grad()
    def features(
        self, batch: CollatedBatch, modality: str, final: bool = True, joint: bool = False
    ) -> Tensor | None:
        """Downstream features ``(N*V_valid, D)`` of one modality of a batch.

        ``joint`` gives the objective's cross-modal space (for retrieval; None
        when the objective has none). With ``final`` and several stages, the
        scheduler combines the snapshot of every finished stage with the
        current model.
        """
        obs, mask = batch.observations[modality], batch.masks[modality]
        pairs: list[tuple[Any, Any]] = [
            (snap["encoders"], snap["objective"])  # type: ignore[index]
            for snap in (self.stage_snapshots if final else [])
        ]
        pairs.append((self.encoders, self.objective))
        parts = []
        for encoders, objective in pairs:
            emb = encode_observations(encoders[modality], obs, mask, False)[0][mask]
            if joint:
                out = objective.joint_embedding(modality, emb)
                if out is None:
                    return None
                parts.append(out)
            else:
                parts.append(objective.representation(modality, emb))
        if len(parts) == 1:
            return parts[0]
        return self.scheduler.combine(parts)

    def predict_step(self, batch: CollatedBatch, batch_idx: int, dataloader_idx: int = 0) -> Any:
        """Evaluation features of one batch, for ``trainer.predict``
        (:func:`~lightly_mm_plugins.training.features.collect_features` concatenates them).

        Per contrasted modality: the final features of every valid observation, their
        embedding in the objective's joint space (missing when it has none) and their
        instance ids; the batch's instance ids, labels and extra label sets, on the CPU.
        """
        out: dict[str, Any] = {"features": {}, "joint": {}, "ids": {}}
        for m in self.objective.modalities:
            feats = self.features(batch, m, final=True)
            assert feats is not None
            out["features"][m] = feats.float().cpu()
            joint = self.features(batch, m, final=True, joint=True)
            if joint is not None:
                out["joint"][m] = joint.float().cpu()
            out["ids"][m] = batch.instance_ids.repeat_interleave(batch.masks[m].sum(1)).cpu()
        out["instance_ids"] = batch.instance_ids.cpu()
        out["labels"] = None if batch.labels is None else batch.labels.cpu()
        out["extra_labels"] = {k: v.cpu() for k, v in batch.extras.get("labels", {}).items()}
        return out


def _class_path(obj: object) -> str:
    return f"{type(obj).__module__}.{type(obj).__qualname__}"
