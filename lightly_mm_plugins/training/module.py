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
(:func:`step_seed`), so a run resumed inside an epoch draws exactly the random
numbers an uninterrupted one does.
"""

from __future__ import annotations

import copy
import math
from collections.abc import Mapping
from typing import Any

import pytorch_lightning as pl
import torch
from torch import Tensor, nn

from ..api import (
    CollatedBatch,
    EncodedBatch,
    Encoder,
    Objective,
    StageScheduler,
)
from ..stages import apply_stage_freeze, end_stage, stage_of_epoch, stage_starts
from .datamodule import seed_cpu_generators


def step_seed(seed: int, epoch: int, batch_idx: int) -> int:
    """The seed of training batch ``batch_idx`` of ``epoch`` (a 32-bit hash of the three)."""
    import numpy as np

    return int(np.random.SeedSequence([seed, epoch, batch_idx, 0x5EED]).generate_state(1)[0])


def _seed_generators(seed: int) -> None:
    """Seed Python's, NumPy's and torch's (CPU and CUDA) global generators.

    CUDA's generators are seeded only once CUDA is initialised (a GPU run has
    moved the model there before its first step): ``torch.manual_seed`` would
    otherwise queue a lazy CUDA seed and format a stack trace each call.
    """
    seed_cpu_generators(seed)
    if torch.cuda.is_initialized():
        torch.cuda.manual_seed_all(seed)


class MultimodalModule(pl.LightningModule):
    """Encoders + objective + stage scheduler.

    Args:
        encoders: Modality name -> :class:`~lightly_mm_plugins.api.Encoder`.
        objective: A built objective.
        scheduler: A built stage scheduler.
        kinds: Modality name -> kind.
        lr, weight_decay, warmup_epochs: AdamW with linear warm-up then cosine.
        embed_loader_fn: Callable returning a DataLoader over the training set
            with the evaluation view (used at stage boundaries).
        seed: Seed of the per-step random generators (see :func:`step_seed`).
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
        embed_loader_fn: Any = None,
        seed: int = 0,
        diagnostics_every_n_steps: int = 10,
    ) -> None:
        super().__init__()
        if diagnostics_every_n_steps < 1:
            raise ValueError(
                f"diagnostics_every_n_steps must be >= 1, got {diagnostics_every_n_steps}"
            )
        self.seed = seed
        self.diagnostics_every_n_steps = int(diagnostics_every_n_steps)
        self.encoders = nn.ModuleDict(dict(encoders))
        self.objective = objective
        self.scheduler = scheduler
        self.kinds = dict(kinds)
        self.lr = lr
        self.weight_decay = weight_decay
        self.warmup_epochs = warmup_epochs
        self.embed_loader_fn = embed_loader_fn
        req = objective.requirements
        self.momentum_encoders: nn.ModuleDict | None = None
        if req.momentum:
            self.momentum_encoders = copy.deepcopy(self.encoders)
            for p in self.momentum_encoders.parameters():
                p.requires_grad_(False)
        self.stage_snapshots = nn.ModuleList()
        self.aux_params = list(objective.auxiliary_parameters())
        self.automatic_optimization = not self.aux_params
        # Stage boundaries as epoch offsets: stage s covers [start[s], start[s+1]).
        self.stage_starts = stage_starts(scheduler)
        self.current_stage = 0
        #: Epochs finished (kept in checkpoints; after ``ddp_spawn`` the main
        #: process reads it from the last checkpoint).
        self.epochs_done = 0

    # ----------------------------------------------------------------- stages
    @property
    def total_epochs(self) -> int:
        return self.stage_starts[-1]

    def stage_of_epoch(self, epoch: int) -> int:
        return stage_of_epoch(self.stage_starts, epoch)

    def on_train_start(self) -> None:
        # Runs on every fit, also one resumed inside an epoch (which skips
        # on_train_epoch_start): requires_grad is not part of a checkpoint.
        self._apply_freeze(self.stage_of_epoch(self.current_epoch))

    def on_train_batch_start(self, batch: Any, batch_idx: int) -> None:
        # Random draws of a training step depend only on (seed, epoch, batch):
        # identical after a resume from any batch, on every rank.
        _seed_generators(step_seed(self.seed, self.current_epoch, batch_idx))

    def on_train_epoch_start(self) -> None:
        # Augmentations of epoch e depend only on (seed, e): a resumed run sees
        # exactly the views an uninterrupted one would.
        pl.seed_everything(self.seed * 100_003 + self.current_epoch, workers=True, verbose=False)
        stage = self.stage_of_epoch(self.current_epoch)
        while self.current_stage < stage:
            self._finish_stage(self.current_stage)
            self.current_stage += 1
        self._apply_freeze(stage)

    def on_train_epoch_end(self) -> None:
        # Finish a stage at its last epoch, before the checkpoint callback runs and
        # before Lightning builds the next epoch's loader (which may need the new
        # stage's batches); on_train_epoch_start still catches up after a resume.
        nxt = self.current_stage + 1
        if nxt < len(self.stage_starts) - 1 and self.current_epoch + 1 >= self.stage_starts[nxt]:
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
        """Features ``(M, D)`` of the training set (eval view) and instance ids ``(M,)``."""
        if self.embed_loader_fn is None:
            raise RuntimeError("the module was built without a loader for stage boundaries")
        return embed_loader(self, self.embed_loader_fn())

    # ---------------------------------------------------------------- encoding
    def encode(self, batch: CollatedBatch) -> EncodedBatch:
        """Encode every observation of every modality into an :class:`EncodedBatch`."""
        req = self.objective.requirements
        embeddings: dict[str, Tensor] = {}
        local: dict[str, Tensor] = {}
        local_masks: dict[str, Tensor] = {}
        momentum: dict[str, Tensor] = {}
        momentum_local: dict[str, Tensor] = {}
        for m in self.objective.modalities:
            if m not in batch.observations:
                raise ValueError(
                    f"modality {m!r} missing from the batch (has {sorted(batch.observations)})"
                )
            obs, mask = batch.observations[m], batch.masks[m]
            emb, loc, lmask = encode_observations(self.encoders[m], obs, mask, req.local_features)
            embeddings[m] = emb
            if loc is not None and lmask is not None:
                local[m], local_masks[m] = loc, lmask
            if self.momentum_encoders is not None:
                with torch.no_grad():
                    mout = encode_observations(
                        self.momentum_encoders[m], obs, mask, req.local_features
                    )
                momentum[m] = mout[0]
                if mout[1] is not None:
                    momentum_local[m] = mout[1]
        pseudo = self.scheduler.pseudo_labels(self.current_stage, batch.instance_ids.cpu())
        return EncodedBatch(
            embeddings=embeddings,
            masks={m: batch.masks[m] for m in embeddings},
            instance_ids=batch.instance_ids,
            labels=batch.labels,
            momentum=momentum or None,
            local=local or None,
            local_masks=local_masks or None,
            momentum_local=momentum_local or None,
            pseudo_labels=None if pseudo is None else pseudo.to(self.device),
            extras=dict(batch.extras),
        )

    def transfer_batch_to_device(
        self, batch: Any, device: torch.device, dataloader_idx: int
    ) -> Any:
        if isinstance(batch, CollatedBatch):
            return _to_device(batch, device)
        return super().transfer_batch_to_device(batch, device, dataloader_idx)

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
        opt = torch.optim.AdamW(params, lr=self.lr, weight_decay=self.weight_decay)
        total = self._total_steps()
        steps_per_epoch = max(1, total // max(1, self.total_epochs))
        warmup = int(self.warmup_epochs * steps_per_epoch)

        def lr_lambda(step: int) -> float:
            if step < warmup:
                return (step + 1) / max(1, warmup)
            progress = (step - warmup) / max(1, total - warmup)
            return 0.5 * (1.0 + math.cos(math.pi * min(1.0, progress)))

        sched = torch.optim.lr_scheduler.LambdaLR(opt, lr_lambda)
        main = {"optimizer": opt, "lr_scheduler": {"scheduler": sched, "interval": "step"}}
        if self.automatic_optimization:
            return main
        aux_opt = torch.optim.Adam(self.aux_params, lr=self.objective.auxiliary_lr)
        return [opt, aux_opt], [{"scheduler": sched, "interval": "step"}]

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


def _class_path(obj: object) -> str:
    return f"{type(obj).__module__}.{type(obj).__qualname__}"


def encode_observations(
    encoder: nn.Module, obs: Any, mask: Tensor, want_local: bool
) -> tuple[Tensor, Tensor | None, Tensor | None]:
    """Encode the valid observations ``(N, V, ...)`` into ``(N, V, D)`` (zeros at padding)."""
    n, v = mask.shape
    flat_mask = mask.reshape(-1)
    flat: Any
    if isinstance(obs, Tensor):
        flat = obs.reshape(n * v, *obs.shape[2:])[flat_mask]
    else:
        strings = [s for row in obs for s in row]
        flat = [s for s, keep in zip(strings, flat_mask.tolist()) if keep]
    loc: Tensor | None
    lmask: Tensor | None
    if want_local:
        g, loc, lmask = encoder.forward_local(flat)  # type: ignore[operator]
    else:
        g, loc, lmask = encoder(flat), None, None
    out = g.new_zeros(n * v, g.shape[-1])
    out[flat_mask] = g
    emb = out.reshape(n, v, -1)
    if loc is None or lmask is None:
        return emb, None, None
    full_loc = loc.new_zeros(n * v, *loc.shape[1:])
    full_loc[flat_mask] = loc
    full_lmask = lmask.new_zeros(n * v, lmask.shape[1])
    full_lmask[flat_mask] = lmask
    return emb, full_loc.reshape(n, v, *loc.shape[1:]), full_lmask.reshape(n, v, -1)


@torch.no_grad()
def embed_loader(module: MultimodalModule, loader: Any) -> tuple[Tensor, Tensor]:
    """Per instance, the concatenated current features of each contrasted modality's
    first observation, with the instance ids (what a stage scheduler clusters).

    Per-modality features of every observation, for evaluation, come from
    :func:`lightly_mm_plugins.training.run.collect_features`.
    """
    from tqdm.auto import tqdm

    was_training = module.training
    module.eval()
    feats: list[Tensor] = []
    ids: list[Tensor] = []
    for batch in tqdm(loader, desc="embedding", leave=False, disable=None):
        batch = _to_device(batch, module.device)
        per_mod = []
        for m in module.objective.modalities:
            feats_m = module.features(_first_observation(batch, m), m, final=False)
            assert feats_m is not None
            per_mod.append(feats_m)
        feats.append(torch.cat(per_mod, dim=-1).float().cpu())
        ids.append(batch.instance_ids.cpu())
    module.train(was_training)
    return torch.cat(feats), torch.cat(ids)


def _first_observation(batch: CollatedBatch, modality: str) -> CollatedBatch:
    obs = batch.observations[modality]
    first = obs[:, :1] if isinstance(obs, Tensor) else [row[:1] for row in obs]
    return CollatedBatch(
        observations={modality: first},
        masks={modality: batch.masks[modality][:, :1]},
        kinds=batch.kinds,
        instance_ids=batch.instance_ids,
        labels=batch.labels,
    )


def _to_device(batch: CollatedBatch, device: torch.device) -> CollatedBatch:
    return CollatedBatch(
        observations={
            k: v.to(device) if isinstance(v, Tensor) else v for k, v in batch.observations.items()
        },
        masks={k: v.to(device) for k, v in batch.masks.items()},
        kinds=batch.kinds,
        instance_ids=batch.instance_ids.to(device),
        labels=None if batch.labels is None else batch.labels.to(device),
        extras=batch.extras,
    )
