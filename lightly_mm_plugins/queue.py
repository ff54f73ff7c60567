"""A FIFO queue of momentum features with instance ids, kept as persistent buffers.

MoCo-style objectives (TCL like ALBEF, CACR's large-scale MoCo-v2 code) contrast
against a queue of past momentum features (official TCL: ``image_queue`` /
``text_queue`` / ``queue_ptr`` and ``_dequeue_and_enqueue`` in
``models/model_pretrain.py``; the retrieval code adds an ``idx_queue`` of instance
ids; CACR's ``builder.py``). Lightly's ``MemoryBankModule`` is not used because its
buffers are not persistent (a checkpoint would lose the queue) and it drops the
part of a batch that does not fit before the end instead of wrapping around; this
queue keeps ids (and, on request, MCL pseudo-label groups) next to the features,
so a resumed run continues with exactly the queue it stopped with.

Example:
    >>> import torch
    >>> queue = FeatureQueue(size=8, dim=4)
    >>> queue.enqueue(torch.nn.functional.normalize(torch.randn(3, 4), dim=1),
    ...               torch.arange(3))
    >>> int(queue.ptr)
    3
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from .losses import gather_cat

__all__ = ["NO_GROUP", "NO_INSTANCE", "FeatureQueue"]

#: Instance id of a queue row that holds no real feature yet (random init).
NO_INSTANCE: int = torch.iinfo(torch.int64).min
#: Pseudo-label group of a row never written, or written without pseudo labels.
NO_GROUP: int = torch.iinfo(torch.int64).min


class FeatureQueue(nn.Module):
    """``size`` L2-normalised feature rows plus their instance ids, first in first out.

    Buffers (all persistent, so they are checkpointed and DDP broadcasts them):

    * ``features`` ``(size, dim)``: random unit vectors at start (official init).
    * ``ids`` ``(size,)`` long: instance id of each row, :data:`NO_INSTANCE`
      for rows never written.
    * ``groups`` ``(size,)`` long (only with ``track_groups=True``): the MCL
      pseudo-label group a row was written with, :data:`NO_GROUP` if none.
    * ``ptr`` ``(1,)`` long: the next row to overwrite.

    :meth:`enqueue` writes a batch at ``ptr`` (wrapping around the end) and
    moves ``ptr``; with several ranks it first all-gathers the batch
    (non-differentiable), as the official ``concat_all_gather``, so every rank
    holds the same queue. :meth:`negatives` says which rows a query may use.

    Args:
        size: Number of rows (official 65536); must be >= 1.
        dim: Feature size.
        gather_distributed: All-gather batches before enqueueing when a process
            group is running (official: always).
        track_groups: Also keep the pseudo-label group of every row.
    """

    features: Tensor
    ids: Tensor
    groups: Tensor | None
    ptr: Tensor

    def __init__(
        self, size: int, dim: int, gather_distributed: bool = True, track_groups: bool = False
    ) -> None:
        super().__init__()
        if size < 1 or dim < 1:
            raise ValueError(f"queue size and dim must be >= 1, got size={size}, dim={dim}")
        self.size = int(size)
        self.dim = int(dim)
        self.gather_distributed = gather_distributed
        self.register_buffer("features", F.normalize(torch.randn(size, dim), dim=1))
        self.register_buffer("ids", torch.full((size,), NO_INSTANCE, dtype=torch.long))
        groups = torch.full((size,), NO_GROUP, dtype=torch.long) if track_groups else None
        self.register_buffer("groups", groups)
        self.register_buffer("ptr", torch.zeros(1, dtype=torch.long))

    def forward(self) -> tuple[Tensor, Tensor]:
        """A detached copy ``(features (size, dim), ids (size,))`` of the queue."""
        return self.features.detach().clone(), self.ids.detach().clone()

    @torch.no_grad()
    def enqueue(
        self, features: Tensor, ids: Tensor | None = None, groups: Tensor | None = None
    ) -> None:
        """Overwrite the oldest rows with ``features`` ``(B, dim)`` (and their ``ids``,
        ``groups``; missing ones are stored as :data:`NO_INSTANCE` / :data:`NO_GROUP`)."""
        if features.dim() != 2 or features.shape[1] != self.dim:
            raise ValueError(
                f"enqueue expects features of shape (B, {self.dim}), got {tuple(features.shape)}"
            )
        b = features.shape[0]
        for name, labels in (("ids", ids), ("groups", groups)):
            if labels is not None and labels.shape != (b,):
                raise ValueError(
                    f"enqueue expects {name} of shape ({b},), got {tuple(labels.shape)}"
                )
        if ids is None:
            ids = torch.full((b,), NO_INSTANCE, dtype=torch.long, device=features.device)
        features = gather_cat(features.detach(), self.gather_distributed)
        ids = gather_cat(ids.detach().long(), self.gather_distributed)
        if self.groups is not None:
            if groups is None:
                groups = torch.full((b,), NO_GROUP, dtype=torch.long, device=features.device)
            groups = gather_cat(groups.detach().long(), self.gather_distributed)
        if features.shape[0] > self.size:  # only the newest rows fit
            features, ids = features[-self.size :], ids[-self.size :]
            groups = None if groups is None else groups[-self.size :]
        n = features.shape[0]
        # The pointer stays on the device: no host-device sync per step.
        rows = (torch.arange(n, device=self.features.device) + self.ptr) % self.size
        self.features[rows] = features.to(self.features.dtype)
        self.ids[rows] = ids.to(self.ids.device)
        if self.groups is not None and groups is not None:
            self.groups[rows] = groups.to(self.groups.device)
        self.ptr.add_(n).remainder_(self.size)

    def negatives(self, ids: Tensor | None = None, groups: Tensor | None = None) -> Tensor | None:
        """``(N, size)`` bool: rows that are negatives of each query, or None (all are).

        ``ids`` ``(N,)``: rows holding the query's own instance are not negatives.
        ``groups`` ``(N,)`` (needs ``track_groups``): only rows written with the
        query's pseudo-label group are (rows without a group are skipped).
        """
        ok: Tensor | None = None
        if groups is not None:
            if self.groups is None:
                raise ValueError("negatives by group need FeatureQueue(track_groups=True)")
            ok = self.groups[None, :] == groups.to(self.groups.device).reshape(-1, 1)
        if ids is not None:
            other = self.ids[None, :] != ids.to(self.ids.device).reshape(-1, 1)
            ok = other if ok is None else ok.logical_and_(other)
        return ok

    def extra_repr(self) -> str:
        return f"size={self.size}, dim={self.dim}"
