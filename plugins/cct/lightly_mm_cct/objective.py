"""The ``cct`` objective: per-modality heads, optional momentum heads + queue, :class:`CCTLoss`."""

from __future__ import annotations

import copy
from collections.abc import Mapping, Sequence
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from lightly_mm_plugins.api import (
    DistributedKind,
    EncodedBatch,
    Objective,
    ObjectiveOutput,
    Requirements,
)
from lightly_mm_plugins.heads import modality_heads
from lightly_mm_plugins.queue import NO_GROUP, NO_INSTANCE, FeatureQueue

from .loss import CCTLoss

__all__ = ["NO_GROUP", "NO_INSTANCE", "PAPER_QUEUE_SIZE", "CCTObjective"]

#: Queue size of the official large-scale (MoCo-v2) code, ``--moco-k``.
PAPER_QUEUE_SIZE = 65536


def _upgrade_old_queue_keys(state_dict: dict[str, Any], prefix: str, *args: Any) -> None:
    """Checkpoints written before the shared :class:`FeatureQueue` kept its buffers as
    ``queue``, ``queue_ids``, ``queue_groups``, ``queue_ptr`` on the objective."""
    for old, new in (
        ("queue", "features"),
        ("queue_ids", "ids"),
        ("queue_groups", "groups"),
        ("queue_ptr", "ptr"),
    ):
        if prefix + old in state_dict:
            state_dict[prefix + "memory." + new] = state_dict.pop(prefix + old)


class CCTObjective(Objective):
    """CACR / Contrastive Conditional Transport across modalities and views.

    Every observation of every contrasted modality is projected by its modality's
    head (``heads[m]``, shared embedding size ``projection_dim``) and all of them are
    stacked into ``(N, K, P)`` with ``K = Σ_m V_m`` (e.g. 2 image views + 1 caption =
    3). Every observation of an instance is a positive of every other one: image ↔
    caption (cross-modal) and image view ↔ image view (intra-modal). The
    observations of the other instances are the negatives. Padded observations
    (``batch.masks``) are ignored. :class:`~lightly_mm_cct.loss.CCTLoss` does the rest.

    Two regimes:

    * ``queue_size=0`` (default, the official small-scale code): attraction within
      the online views, in-batch repulsion over view pairs ``x < y``; gradients flow
      through the conditional weights (``detach_weights=None`` -> ``False``).
    * ``queue_size>0`` (the official large-scale MoCo-v2 code): ``requirements.momentum``
      is set, so the pipeline adds momentum-encoder embeddings ``batch.momentum``;
      this objective projects them with EMA copies of its heads (``momentum_heads``,
      :func:`lightly.models.utils.update_momentum` with ``momentum`` at every training
      forward, before the keys are computed, as ``_momentum_update_key_encoder``).
      The attraction pulls each online observation towards the momentum keys of the
      instance's other observations, the repulsion uses a FIFO queue of past momentum
      keys plus the same observation slot of the other instances; weights built from
      keys / queue are constants (``detach_weights=None`` -> ``"momentum"``). After
      the loss, the momentum key of the last valid observation of every modality is
      enqueued (official: the last view's key), all-gathered under DDP.

    ``batch.pseudo_labels`` (MCL's stage scheduler) restricts in-batch and queue
    negatives to the query's group (queue rows remember the group they were written
    with; rows without one are skipped while pseudo labels are in use).

    Args:
        embedding_dims: Encoder output size per modality.
        modalities: Modalities to contrast (one is enough with K >= 2 views).
        projection_dim: Shared embedding size (official ``feat_dim`` / ``moco-dim`` 128).
        projection_layers: 2 = MLP head (official large-scale ``--mlp``), 1 = linear.
        hidden_dim: Hidden size of the MLP head (default: the input size, as MoCo-v2).
        head: A registered head name (``linear``, ``mlp`` or a plugin's; see
            ``lightly-mm plugins``) for every modality, or None (default):
            ``projection_layers`` Linear layers.
        tau_pos, tau_neg, alpha, beta, weighting, debiased, tau_plus,
            symmetric_repulsion, intra_batch_negatives: see :class:`CCTLoss`
            (defaults: official CIFAR-10 README, see README).
        detach_weights: ``None`` = ``False`` without a queue (small-scale code) and
            ``"momentum"`` with one (MoCo code); or any of ``False``, ``True``,
            ``"momentum"``.
        queue_size: Number of queued momentum keys; 0 = no queue, no momentum
            (official large-scale: :data:`PAPER_QUEUE_SIZE`).
        momentum: EMA decay of momentum heads and encoders (official ``moco-m`` 0.999).
        exclude_own_instance: Queue rows holding a key of the query's own instance are
            not negatives (the official code keeps them; on small data sets they are
            frequent, see README).
        gather_distributed: Use the in-batch observations of all ranks as negatives.
        chunk_size: ``None``: dense repulsion; an int: streamed in blocks of that many
            queries (memory linear in the batch, same values, see :class:`CCTLoss`).

    Example:
        >>> import torch
        >>> from lightly_mm_plugins.api import EncodedBatch
        >>> obj = CCTObjective({"image": 16, "text": 8}, projection_dim=4)
        >>> batch = EncodedBatch.from_tensors(
        ...     {"image": torch.randn(6, 2, 16), "text": torch.randn(6, 1, 8)})
        >>> out = obj(batch)
        >>> sorted(out.logs)
        ['attraction', 'entropy_neg', 'entropy_pos', 'repulsion']
    """

    memory: FeatureQueue

    requirements = Requirements(modalities=1, min_views=1, pseudo_labels=True)

    def __init__(
        self,
        embedding_dims: Mapping[str, int],
        modalities: Sequence[str] = ("image", "text"),
        projection_dim: int = 128,
        projection_layers: int = 2,
        hidden_dim: int | None = None,
        head: str | None = None,
        tau_pos: float = 1.0,
        tau_neg: float = 0.9,
        alpha: float = 1.0,
        beta: float = 1.0,
        weighting: str = "cacr",
        detach_weights: bool | str | None = None,
        debiased: bool = False,
        tau_plus: float = 0.1,
        symmetric_repulsion: bool = False,
        intra_batch_negatives: bool = True,
        queue_size: int = 0,
        momentum: float = 0.999,
        exclude_own_instance: bool = True,
        gather_distributed: bool = False,
        chunk_size: int | None = None,
    ) -> None:
        super().__init__(embedding_dims, modalities)
        if queue_size < 0:
            raise ValueError(f"queue_size must be >= 0 (0 = no queue), got {queue_size}")
        if not 0.0 <= momentum <= 1.0:
            raise ValueError(f"momentum must be in [0, 1], got {momentum}")
        if projection_dim < 1:
            raise ValueError(f"projection_dim must be >= 1, got {projection_dim}")
        if queue_size > 0 and debiased:
            raise ValueError(
                "debiased=True is defined for the in-batch repulsion of the small-scale code "
                "only; use queue_size=0 or debiased=False"
            )
        self.queue_size = int(queue_size)
        self.momentum = float(momentum)
        self.exclude_own_instance = bool(exclude_own_instance)
        self.projection_dim = int(projection_dim)
        if isinstance(detach_weights, str) and detach_weights.lower() in ("true", "false", "none"):
            # Command-line spellings (``--method-args detach_weights=True``).
            detach_weights = {"true": True, "false": False, "none": None}[detach_weights.lower()]
        if detach_weights is None:
            detach_weights = "momentum" if self.queue_size else False
        self.requirements = Requirements(
            modalities=1,
            # With one modality the K >= 2 positives must be views of it.
            min_views=1 if len(self.modalities) > 1 else 2,
            momentum=self.queue_size > 0,
            momentum_decay=self.momentum,
            pseudo_labels=True,
            distributed=DistributedKind.of_gather(gather_distributed),
        )
        self.heads = modality_heads(
            {m: self.embedding_dims[m] for m in self.modalities},
            projection_dim,
            head=head,
            num_layers=projection_layers,
            hidden_dim=hidden_dim,
        )
        self.momentum_heads: nn.ModuleDict | None = None
        if self.queue_size:
            self.momentum_heads = copy.deepcopy(self.heads)
            for p in self.momentum_heads.parameters():
                p.requires_grad_(False)
            # Official init: random unit vectors (``F.normalize(torch.randn(dim, K))``).
            self.memory = FeatureQueue(
                self.queue_size,
                projection_dim,
                gather_distributed=gather_distributed,
                track_groups=True,
            )
            self._register_load_state_dict_pre_hook(_upgrade_old_queue_keys)
        self.loss_fn = CCTLoss(
            tau_pos=tau_pos,
            tau_neg=tau_neg,
            alpha=alpha,
            beta=beta,
            weighting=weighting,
            detach_weights=detach_weights,
            debiased=debiased,
            tau_plus=tau_plus,
            symmetric_repulsion=symmetric_repulsion,
            intra_batch_negatives=intra_batch_negatives,
            normalize=True,
            gather_distributed=gather_distributed,
            chunk_size=chunk_size,
        )

    # ------------------------------------------------------------- projection

    @staticmethod
    def _project(heads: nn.ModuleDict, modality: str, emb: Tensor) -> Tensor:
        """``(N, V, D)`` encoder embeddings -> ``(N, V, P)`` through ``heads[modality]``."""
        n, v, d = emb.shape
        return heads[modality](emb.reshape(n * v, d)).reshape(n, v, -1)

    def stack(
        self, heads: nn.ModuleDict, embeddings: Mapping[str, Tensor], batch: EncodedBatch
    ) -> tuple[Tensor, Tensor]:
        """All observations of all modalities projected and stacked: ``(N, K, P)``, ``(N, K)``."""
        zs = [self._project(heads, m, embeddings[m]) for m in self.modalities]
        masks = [batch.masks[m].to(torch.bool) for m in self.modalities]
        return torch.cat(zs, dim=1), torch.cat(masks, dim=1)

    # --------------------------------------------------------------- momentum

    @torch.no_grad()
    def momentum_update(self) -> None:
        """EMA update of the momentum heads (``lightly.models.utils.update_momentum``)."""
        from lightly.models.utils import update_momentum

        if self.momentum_heads is None:
            return
        for m in self.modalities:
            update_momentum(self.heads[m], self.momentum_heads[m], self.momentum)

    @property
    def queue(self) -> Tensor:
        """The queued keys ``(Q, P)`` (:attr:`memory`'s ``features`` buffer)."""
        return self.memory.features

    @property
    def queue_ids(self) -> Tensor:
        return self.memory.ids

    @property
    def queue_groups(self) -> Tensor:
        assert self.memory.groups is not None
        return self.memory.groups

    @property
    def queue_ptr(self) -> Tensor:
        return self.memory.ptr

    def _queue_negatives(self, batch: EncodedBatch) -> Tensor | None:
        """``(N, Q)`` bool: queue rows that are negatives of each instance; None: all."""
        return self.memory.negatives(
            ids=batch.instance_ids if self.exclude_own_instance else None,
            groups=batch.pseudo_labels,
        )

    def queue_mask(self, batch: EncodedBatch) -> Tensor:
        """``(N, Q)`` bool: queue rows that are negatives of each instance."""
        ok = self._queue_negatives(batch)
        if ok is None:
            return torch.ones(
                batch.batch_size, self.queue_size, dtype=torch.bool, device=self.queue.device
            )
        return ok

    def enqueue(self, keys: Tensor, ids: Tensor, groups: Tensor | None) -> None:
        """Write the L2-normalised ``keys`` ``(B, P)`` (with ids / groups) into the queue."""
        self.memory.enqueue(F.normalize(keys.detach(), dim=1), ids, groups)

    def _keys_to_enqueue(
        self, keys: Tensor, mask: Tensor, batch: EncodedBatch
    ) -> tuple[Tensor, Tensor, Tensor | None]:
        """Momentum key of the last valid observation of every modality, per instance."""
        n = batch.batch_size
        out, start = [], 0
        for m in self.modalities:
            v = batch.embeddings[m].shape[1]
            block_mask = mask[:, start : start + v]
            order = torch.arange(1, v + 1, device=mask.device)
            last = (block_mask.long() * order).argmax(dim=1)  # last valid column
            out.append(keys[torch.arange(n, device=keys.device), start + last])
            start += v
        stacked = torch.stack(out, dim=1).reshape(n * len(self.modalities), -1)
        reps = len(self.modalities)
        ids = batch.instance_ids.repeat_interleave(reps)
        groups = (
            None if batch.pseudo_labels is None else batch.pseudo_labels.repeat_interleave(reps)
        )
        return stacked, ids, groups

    # ---------------------------------------------------------------- forward

    def forward(self, batch: EncodedBatch) -> ObjectiveOutput:
        self.validate_batch(batch)
        z, mask = self.stack(self.heads, batch.embeddings, batch)
        if z.shape[1] < 2:
            raise ValueError(
                f"CCTObjective needs >= 2 observations per instance in total, got {z.shape[1]} "
                f"over modalities {self.modalities}; use the 'cct' view (K image views)"
            )
        keys = queue = queue_mask = None
        if self.queue_size:
            assert batch.momentum is not None and self.momentum_heads is not None
            if self.training:
                self.momentum_update()
            with torch.no_grad():
                keys, _ = self.stack(self.momentum_heads, batch.momentum, batch)
            queue = self.queue.detach().clone()
            queue_mask = self._queue_negatives(batch)
        terms = self.loss_fn.terms(
            z,
            mask=mask,
            keys=keys,
            queue=queue,
            queue_mask=queue_mask,
            pseudo_labels=batch.pseudo_labels,
        )
        if self.queue_size and self.training:
            assert keys is not None
            self.enqueue(*self._keys_to_enqueue(keys, mask, batch))
        logs = {
            name: terms[name].detach()
            for name in ("attraction", "repulsion", "entropy_pos", "entropy_neg")
        }
        return ObjectiveOutput(loss=terms["loss"], logs=logs)
