"""A FIFO queue of momentum features kept as persistent buffers.

TCL (like ALBEF and MoCo) contrasts against a queue of past momentum features
(official ``image_queue`` / ``text_queue`` / ``queue_ptr`` buffers and
``_dequeue_and_enqueue`` in ``models/model_pretrain.py``; the retrieval code
adds an ``idx_queue`` of instance ids). Lightly's ``MemoryBankModule`` is not
used because its buffers are not persistent (a checkpoint would lose the
queue) and it drops the part of a batch that does not fit before the end
instead of wrapping around; this queue keeps ids next to the features.

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

from lightly_mm_plugins.losses import gather_cat

from .loss import NO_INSTANCE

__all__ = ["FeatureQueue"]


class FeatureQueue(nn.Module):
    """``size`` L2-normalised feature rows plus their instance ids, first in first out.

    Buffers (all persistent, so they are checkpointed and DDP broadcasts them):

    * ``features`` ``(size, dim)``: random unit vectors at start (official init).
    * ``ids`` ``(size,)`` long: instance id of each row, :data:`NO_INSTANCE`
      for rows never written.
    * ``ptr`` ``(1,)`` long: the next row to overwrite.

    :meth:`enqueue` writes a batch at ``ptr`` (wrapping around the end) and
    moves ``ptr``; with several ranks it first all-gathers the batch
    (non-differentiable), as the official ``concat_all_gather``, so every rank
    holds the same queue.

    Args:
        size: Number of rows (official 65536); must be >= 1.
        dim: Feature size.
        gather_distributed: All-gather batches before enqueueing when a process
            group is running (official: always).
    """

    features: Tensor
    ids: Tensor
    ptr: Tensor

    def __init__(self, size: int, dim: int, gather_distributed: bool = True) -> None:
        super().__init__()
        if size < 1 or dim < 1:
            raise ValueError(f"queue size and dim must be >= 1, got size={size}, dim={dim}")
        self.size = int(size)
        self.dim = int(dim)
        self.gather_distributed = gather_distributed
        self.register_buffer("features", F.normalize(torch.randn(size, dim), dim=1))
        self.register_buffer("ids", torch.full((size,), NO_INSTANCE, dtype=torch.long))
        self.register_buffer("ptr", torch.zeros(1, dtype=torch.long))

    def forward(self) -> tuple[Tensor, Tensor]:
        """A detached copy ``(features (size, dim), ids (size,))`` of the queue."""
        return self.features.detach().clone(), self.ids.detach().clone()

    @torch.no_grad()
    def enqueue(self, features: Tensor, ids: Tensor | None = None) -> None:
        """Overwrite the oldest rows with ``features`` ``(B, dim)`` (and their ``ids``)."""
        if features.dim() != 2 or features.shape[1] != self.dim:
            raise ValueError(
                f"enqueue expects features of shape (B, {self.dim}), got {tuple(features.shape)}"
            )
        if ids is None:
            ids = torch.full(
                (features.shape[0],), NO_INSTANCE, dtype=torch.long, device=features.device
            )
        if ids.shape != (features.shape[0],):
            raise ValueError(
                f"enqueue expects ids of shape ({features.shape[0]},), got {tuple(ids.shape)}"
            )
        features = gather_cat(features.detach(), self.gather_distributed)
        ids = gather_cat(ids.detach(), self.gather_distributed)
        if features.shape[0] > self.size:  # only the newest rows fit
            features = features[-self.size :]
            ids = ids[-self.size :]
        n = features.shape[0]
        # The pointer stays on the device: no host-device sync per step.
        rows = (torch.arange(n, device=self.features.device) + self.ptr) % self.size
        self.features[rows] = features.to(self.features.dtype)
        self.ids[rows] = ids.to(self.ids.device, torch.long)
        self.ptr.add_(n).remainder_(self.size)

    def extra_repr(self) -> str:
        return f"size={self.size}, dim={self.dim}"
