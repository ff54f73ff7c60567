"""Shared building blocks for contrastive objectives.

These are the pieces several plugins need in exactly the same form: gathering
embeddings across ranks with gradient, the "same pseudo-label" negative mask
of MCL, the cross-modal InfoNCE of CLIP, and the streaming log-sum-exp of a
similarity matrix (:func:`matmul_logsumexp`) that lets a contrastive loss run
with memory linear in the batch size. Plugins import them instead of
re-implementing them, so a fix lands everywhere at once.

The pieces live in one module per job and are all re-exported here, the public
import path: :mod:`.checks` (argument checks), :mod:`.distributed` (world size,
gather with gradient, rank offset), :mod:`.streaming_lse` (the streaming
log-sum-exp kernel) and :mod:`.info_nce` (InfoNCE and the pseudo-label mask).

Example:
    >>> import torch
    >>> from lightly_mm_plugins.losses import cross_modal_info_nce
    >>> a, b = torch.randn(4, 8), torch.randn(4, 8)
    >>> loss = cross_modal_info_nce(a, b, temperature=0.07)
    >>> loss.shape
    torch.Size([])
"""

from __future__ import annotations

from .checks import check_all, check_chunk_size, check_gather_distributed, check_temperature
from .distributed import gather_cat, rank_offset, world_size
from .info_nce import cross_modal_info_nce, same_group_mask
from .streaming_lse import matmul_logsumexp

__all__ = [
    "check_all",
    "check_chunk_size",
    "check_gather_distributed",
    "check_temperature",
    "cross_modal_info_nce",
    "gather_cat",
    "matmul_logsumexp",
    "rank_offset",
    "same_group_mask",
    "world_size",
]
