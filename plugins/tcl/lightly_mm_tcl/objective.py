"""The ``tcl`` objective: projection heads, momentum heads, queues and :class:`TCLLoss`."""

from __future__ import annotations

import copy
from collections.abc import Mapping, Sequence

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
from lightly_mm_plugins.queue import FeatureQueue

from .loss import TCLLoss

__all__ = ["PAPER_QUEUE_SIZE", "TCLObjective"]

#: Queue size of the paper / ``configs/Pretrain.yaml`` (4M image-text pairs).
PAPER_QUEUE_SIZE = 65536
#: Default queue size here, sized for the CPU-scale embedded data (see README).
DEFAULT_QUEUE_SIZE = 4096


class TCLObjective(Objective):
    """Triple Contrastive Learning (Yang et al., CVPR 2022) on two modalities.

    Per modality ``m`` of the pair (official ``model_pretrain.py``):

    * online feature ``z_m = W_m e_m[:, 0]`` from the encoder embedding of view
      0 (``W_m``: projection head to ``embed_dim``, official ``vision_proj`` /
      ``text_proj``);
    * momentum feature ``z^_m = W^m_m e^m[:, k]`` from the momentum encoder's
      embedding ``batch.momentum[m]`` of the key view ``k``: view 1 for image
      modalities (the second augmented view, official ``image_aug``), view 1
      if a modality has two views (e.g. the clean caption when the view masks
      tokens) and view 0 otherwise (the same caption, as the official text
      branch). ``W^m_m`` is an EMA copy of ``W_m`` updated with
      :func:`lightly.models.utils.update_momentum` at the start of each
      training forward (decay ``momentum``, 0.995), like the encoders;
    * local features: the momentum encoder's locals
      ``batch.momentum_local[m][:, k]`` projected by ``W^m_m`` (official: the
      same momentum head applied to patch / token features) or, when the local
      size differs from the embedding size, by a separate local head (and its
      EMA copy). Image locals are pooled to ``local_pool_grid`` regions.

    Then :class:`~lightly_mm_tcl.loss.TCLLoss` (CMA + IMC + LMI) with queues
    of momentum features, enqueued *after* the loss (all-gathered under DDP).

    Args:
        embedding_dims: Encoder output size per modality.
        modalities: The two modalities to align (first two are used).
        embed_dim: Projection size (paper 256).
        projection_layers: 1 = linear (paper), 2 = MLP.
        head: A registered head name (``linear``, ``mlp`` or a plugin's; see
            ``lightly-mm plugins``) for the global and local heads, or None
            (default): ``projection_layers`` Linear layers.
        temperature: Initial temperature (paper 0.07).
        learnable_temperature: Learn it, clamped to ``temperature_bounds`` (paper).
        temperature_bounds: Clamp range (paper ``(0.001, 0.5)``).
        alpha: Momentum-distillation weight (paper 0.4).
        alpha_warmup_steps: Ramp ``alpha`` linearly from 0 over this many
            training steps (official: the first epoch, ``alpha * min(1, i /
            len(loader))``); 0 = no ramp. See also :meth:`set_alpha_scale`.
        queue_size: Queue length (paper :data:`PAPER_QUEUE_SIZE` = 65536; default
            4096 for the CPU-sized data, see README); 0 = no queue.
        momentum: EMA decay of momentum heads and (via ``requirements``) encoders.
        cross_modal_weight / intra_modal_weight / local_weight: Term weights
            (a zero weight switches the term off; ``local_weight=0`` also drops
            the need for local features).
        local_dims: Local feature size per modality when it differs from the
            embedding size (then a local projection head is added; with
            ``local_from_momentum`` it gets no gradient and stays a fixed random
            projection, see README).
        local_from_momentum: Take the locals from the momentum encoder (paper);
            ``False`` uses the online locals (with gradient).
        image_modalities: Modalities treated as images: they need two views and
            their locals form a square grid that is pooled.
        local_pool_grid: Region grid side for image locals (paper 4: 16x16
            patches -> 4x4 regions); ``None``: no pooling.
        instance_positives: Treat queue entries with the query's instance id as
            positives (official *retrieval* code, ``idx_queue``); ``False`` =
            official pre-training (one-hot targets, stale copies are negatives).
        gather_distributed: Compute every term over the global batch: the
            momentum keys (CMA, IMC) and the locals (LMI) of all ranks are
            candidates, and LMI's mean runs over all ranks' samples, so two
            ranks give exactly the loss and (DDP-averaged) gradients of one
            process on the whole batch. The queue is all-gathered either way.
        local_chunk_size: ``None``: dense local-MI scores; an int: stream LMI's
            ``(N, N*L)`` scores in row blocks of this size (memory linear in the
            batch, same values and gradients; see :class:`TCLLoss`).

    ``batch.pseudo_labels`` (``requirements.pseudo_labels``, e.g. MCL's stage
    scheduler): the negatives of CMA and IMC are restricted to the anchor's
    pseudo-label group in the (global) batch, and the queue is left out of the
    candidates because its entries carry no pseudo label (it is still filled,
    for later steps without pseudo labels). LMI is unchanged.

    Example:
        >>> import torch
        >>> from lightly_mm_plugins.api import EncodedBatch
        >>> obj = TCLObjective({"image": 16, "text": 8}, embed_dim=4, queue_size=8,
        ...                    local_weight=0.0)
        >>> emb = {"image": torch.randn(4, 2, 16), "text": torch.randn(4, 1, 8)}
        >>> batch = EncodedBatch.from_tensors(emb, momentum=emb)
        >>> obj(batch).loss.shape
        torch.Size([])
    """

    num_steps: Tensor

    requirements = Requirements(
        modalities=2,
        min_views={"image": 2},
        momentum=True,
        momentum_decay=0.995,
        local_features=True,
        pseudo_labels=True,
    )

    def __init__(
        self,
        embedding_dims: Mapping[str, int],
        modalities: Sequence[str] = ("image", "text"),
        embed_dim: int = 256,
        projection_layers: int = 1,
        head: str | None = None,
        temperature: float = 0.07,
        learnable_temperature: bool = True,
        temperature_bounds: tuple[float, float] = (0.001, 0.5),
        alpha: float = 0.4,
        alpha_warmup_steps: int = 0,
        queue_size: int = DEFAULT_QUEUE_SIZE,
        momentum: float = 0.995,
        cross_modal_weight: float = 1.0,
        intra_modal_weight: float = 1.0,
        local_weight: float = 1.0,
        local_dims: Mapping[str, int] | None = None,
        local_from_momentum: bool = True,
        image_modalities: Sequence[str] = ("image",),
        local_pool_grid: int | None = 4,
        instance_positives: bool = True,
        gather_distributed: bool = False,
        local_chunk_size: int | None = None,
    ) -> None:
        super().__init__(embedding_dims, modalities)
        if not 0.0 <= momentum <= 1.0:
            raise ValueError(f"momentum must be in [0, 1], got {momentum}")
        if queue_size < 0:
            raise ValueError(f"queue_size must be >= 0 (0 = no queue), got {queue_size}")
        if alpha_warmup_steps < 0:
            raise ValueError(f"alpha_warmup_steps must be >= 0, got {alpha_warmup_steps}")
        if embed_dim < 1:
            raise ValueError(f"embed_dim must be >= 1, got {embed_dim}")
        self.pair: tuple[str, str] = (self.modalities[0], self.modalities[1])
        self.embed_dim = embed_dim
        self.momentum = float(momentum)
        self.alpha_warmup_steps = int(alpha_warmup_steps)
        self.alpha_scale = 1.0
        self.local_from_momentum = local_from_momentum
        self.image_modalities = tuple(m for m in image_modalities if m in self.pair)
        self.instance_positives = instance_positives
        self.requirements = Requirements(
            modalities=2,
            min_views={m: 2 if m in self.image_modalities else 1 for m in self.pair},
            momentum=True,
            momentum_decay=self.momentum,
            local_features=local_weight > 0,
            pseudo_labels=True,
            distributed=DistributedKind.of_gather(gather_distributed),
        )

        self.heads = modality_heads(
            {m: self.embedding_dims[m] for m in self.pair},
            embed_dim,
            head=head,
            num_layers=projection_layers,
        )
        self.momentum_heads = _frozen_copy(self.heads)
        self.local_dims = {m: self.embedding_dims[m] for m in self.pair}
        for m, d in (local_dims or {}).items():
            if m in self.local_dims:
                self.local_dims[m] = int(d)
        self.local_heads = modality_heads(
            {
                m: self.local_dims[m]
                for m in self.pair
                if self.local_dims[m] != self.embedding_dims[m]
            },
            embed_dim,
            head=head,
            num_layers=projection_layers,
        )
        if local_from_momentum:
            # Only the momentum locals are projected, so no gradient ever reaches the
            # online local head: freeze it (a fixed random projection, like its EMA
            # copy) so optimizers skip it and DDP sees no unused trainable parameter.
            for p in self.local_heads.parameters():
                p.requires_grad_(False)
        self.momentum_local_heads = _frozen_copy(self.local_heads)

        self.queue_size = int(queue_size)
        self.queues = nn.ModuleDict(
            {m: FeatureQueue(queue_size, embed_dim) for m in self.pair} if queue_size else {}
        )
        self.register_buffer("num_steps", torch.zeros((), dtype=torch.long))
        self.loss_fn = TCLLoss(
            temperature=temperature,
            learnable_temperature=learnable_temperature,
            temperature_bounds=temperature_bounds,
            alpha=alpha,
            cross_modal_weight=cross_modal_weight,
            intra_modal_weight=intra_modal_weight,
            local_weight=local_weight,
            local_pool_grid=tuple(  # type: ignore[arg-type]
                local_pool_grid if m in self.image_modalities else None for m in self.pair
            ),
            gather_distributed=gather_distributed,
            local_chunk_size=local_chunk_size,
        )

    # ------------------------------------------------------------------ alpha

    def set_alpha_scale(self, scale: float) -> None:
        """Scale ``alpha`` by ``scale`` in [0, 1] (for an epoch-based warm-up driven outside)."""
        if not 0.0 <= scale <= 1.0:
            raise ValueError(f"alpha scale must be in [0, 1], got {scale}")
        self.alpha_scale = float(scale)

    def current_alpha(self) -> float:
        """``alpha * scale * min(1, steps / alpha_warmup_steps)`` (official epoch-0 ramp)."""
        ramp = 1.0
        if self.alpha_warmup_steps > 0:
            ramp = min(1.0, int(self.num_steps) / self.alpha_warmup_steps)
        return self.loss_fn.alpha * self.alpha_scale * ramp

    # --------------------------------------------------------------- momentum

    @torch.no_grad()
    def momentum_update(self) -> None:
        """EMA update of the momentum heads (``lightly.models.utils.update_momentum``)."""
        from lightly.models.utils import update_momentum

        for m in self.pair:
            update_momentum(self.heads[m], self.momentum_heads[m], self.momentum)
            if m in self.local_heads:
                update_momentum(self.local_heads[m], self.momentum_local_heads[m], self.momentum)

    # ------------------------------------------------------------------ views

    def key_view(self, batch: EncodedBatch, modality: str) -> int:
        """Index of the observation whose momentum encoding is the key of ``modality``."""
        return 1 if batch.num_views(modality) >= 2 else 0

    def validate_batch(self, batch: EncodedBatch) -> None:
        name = type(self).__name__
        for m in self.image_modalities:  # before the host's check: a message naming the fix
            emb = batch.embeddings.get(m)
            if emb is not None and emb.dim() == 3 and emb.shape[1] < 2:
                raise ValueError(
                    f"{name}: needs 2 views of image modality {m!r} (view 0 for the online "
                    f"encoder, view 1 for the momentum encoder), got {emb.shape[1]}. "
                    "Use the 'tcl' view, or pass image_modalities=() to use one view."
                )
        super().validate_batch(batch)
        if batch.pseudo_labels is not None and batch.pseudo_labels.shape != (batch.batch_size,):
            raise ValueError(
                f"{name}: pseudo_labels must have shape ({batch.batch_size},) (one group id per "
                f"instance), got {tuple(batch.pseudo_labels.shape)}"
            )
        for m in self.pair:
            if batch.momentum is None or m not in batch.momentum:
                raise ValueError(
                    f"{name}: batch.momentum has no {m!r}; the pipeline must run the "
                    "momentum encoders (requirements.momentum)"
                )
            if batch.momentum[m].shape != batch.embeddings[m].shape:
                raise ValueError(
                    f"{name}: momentum[{m!r}] has shape {tuple(batch.momentum[m].shape)}, "
                    f"embeddings[{m!r}] {tuple(batch.embeddings[m].shape)}; they must match"
                )
            if not bool(batch.masks[m][:, : self.key_view(batch, m) + 1].all()):
                raise ValueError(
                    f"{name}: the views of {m!r} that TCL uses are padded for some instances; "
                    "every instance needs them (use the 'tcl' view)"
                )
            if self.loss_fn.active("local"):
                source = batch.momentum_local if self.local_from_momentum else batch.local
                field = "momentum_local" if self.local_from_momentum else "local"
                if source is None or m not in source:
                    raise ValueError(
                        f"{name}: local_weight > 0 needs batch.{field}[{m!r}] (local features "
                        "of an encoder with supports_local); use such an encoder or set "
                        "local_weight=0"
                    )
                loc = source[m]
                if loc.dim() != 4 or loc.shape[:2] != batch.embeddings[m].shape[:2]:
                    raise ValueError(
                        f"{name}: batch.{field}[{m!r}] must have shape (N, V, L, D), got "
                        f"{tuple(loc.shape)}"
                    )
                if loc.shape[-1] != self.local_dims[m]:
                    raise ValueError(
                        f"{name}: local features of {m!r} have {loc.shape[-1]} features but "
                        f"the objective expects {self.local_dims[m]}; pass "
                        f"local_dims={{{m!r}: {loc.shape[-1]}}}"
                    )

    # ---------------------------------------------------------------- forward

    def _queue(self, modality: str) -> FeatureQueue:
        return self.queues[modality]  # type: ignore[return-value]

    def _project(self, heads: nn.ModuleDict, modality: str, x: Tensor) -> Tensor:
        return heads[modality](x)  # type: ignore[no-any-return]

    def _locals(self, batch: EncodedBatch, modality: str) -> tuple[Tensor, Tensor | None]:
        """Projected local features ``(N, L, embed_dim)`` of the key view and their mask."""
        view = self.key_view(batch, modality)
        if self.local_from_momentum:
            source, heads = batch.momentum_local, self.momentum_heads
            local_heads = self.momentum_local_heads
        else:
            source, heads, local_heads = batch.local, self.heads, self.local_heads
        assert source is not None
        x = source[modality][:, view]
        n, num, dim = x.shape
        head = local_heads[modality] if modality in local_heads else heads[modality]
        z = head(x.reshape(n * num, dim)).reshape(n, num, -1)
        mask = None
        if batch.local_masks is not None and modality in batch.local_masks:
            mask = batch.local_masks[modality][:, view]
        return z, mask

    def forward(self, batch: EncodedBatch) -> ObjectiveOutput:
        self.validate_batch(batch)
        a, b = self.pair
        if self.training:
            self.momentum_update()
        assert batch.momentum is not None
        za = self._project(self.heads, a, batch.embeddings[a][:, 0])
        zb = self._project(self.heads, b, batch.embeddings[b][:, 0])
        with torch.no_grad():
            ka = self._project(
                self.momentum_heads, a, batch.momentum[a][:, self.key_view(batch, a)]
            )
            kb = self._project(
                self.momentum_heads, b, batch.momentum[b][:, self.key_view(batch, b)]
            )
        locals_: dict[str, Tensor | None] = {}
        if self.loss_fn.active("local"):
            for i, m in enumerate(self.pair):
                if self.local_from_momentum:
                    with torch.no_grad():
                        z, mask = self._locals(batch, m)
                else:
                    z, mask = self._locals(batch, m)
                locals_[f"local{i}"], locals_[f"local_mask{i}"] = z, mask
        queue_a = queue_b = queue_ids = None
        # Queue entries carry no pseudo label: with pseudo labels, the in-batch keys of
        # the anchor's group are the only negatives (the queue is still updated).
        if self.queue_size and batch.pseudo_labels is None:
            queue_a, queue_ids = self._queue(a)()
            queue_b, _ = self._queue(b)()
        alpha = self.current_alpha()
        ids = batch.instance_ids if self.instance_positives else None
        terms = self.loss_fn.terms(
            za,
            zb,
            ka,
            kb,
            queue_a,
            queue_b,
            instance_ids=ids,
            queue_ids=queue_ids if self.instance_positives else None,
            alpha=alpha,
            pseudo_labels=batch.pseudo_labels,
            **locals_,  # type: ignore[arg-type]
        )
        loss = self.loss_fn.combine(terms)
        if self.training:
            with torch.no_grad():
                if self.queue_size:
                    self._queue(a).enqueue(F.normalize(ka, dim=1), batch.instance_ids)
                    self._queue(b).enqueue(F.normalize(kb, dim=1), batch.instance_ids)
                self.num_steps.add_(1)
        logs = {f"loss_{k}": v.detach() for k, v in terms.items()}
        logs["temperature"] = self.loss_fn.temperature_tensor().to(loss.dtype)
        logs["alpha"] = loss.new_full((), alpha)
        return ObjectiveOutput(loss=loss, logs=logs)


def _frozen_copy(module: nn.Module) -> nn.ModuleDict:
    """A deep copy whose parameters get no gradient (official ``copy_params``)."""
    frozen = copy.deepcopy(module)
    for p in frozen.parameters():
        p.requires_grad_(False)
    return frozen  # type: ignore[return-value]
