"""World size, all-gather with gradient and this rank's offset, for losses that gather.

Every loss that contrasts against the embeddings of all ranks (or normalises by
the number of ranks) asks ``torch.distributed`` through these three functions, so
that single-process runs (no process group) take the same code path.

Example:
    >>> from lightly_mm_plugins.losses.distributed import rank_offset, world_size
    >>> world_size(), rank_offset(8)
    (1, 0)
"""

from __future__ import annotations

import torch
from torch import Tensor

__all__ = ["gather_cat", "rank_offset", "world_size"]


def world_size() -> int:
    """Number of ranks of the running process group (1 without one).

    The one place that asks ``torch.distributed``: every loss that gathers or
    normalises by the world size uses it.

    Example:
        >>> world_size()
        1
    """
    import torch.distributed as tdist

    if tdist.is_available() and tdist.is_initialized():
        return tdist.get_world_size()
    return 1


def gather_cat(x: Tensor, enabled: bool = True) -> Tensor:
    """Concatenate ``x`` from all ranks along dim 0, keeping the gradient.

    Uses :func:`lightly.utils.dist.gather` (an all-gather whose backward sums
    the incoming gradients), so every rank's negatives carry gradient to the
    rank that produced them. Returns ``x`` unchanged without a process group or
    when ``enabled`` is False. Every rank must pass the same shape.
    """
    if not enabled or world_size() == 1:
        return x
    if not x.requires_grad:
        import torch.distributed as tdist

        parts = [torch.empty_like(x) for _ in range(world_size())]
        tdist.all_gather(parts, x.contiguous())
        return torch.cat(parts, dim=0)
    from lightly.utils import dist as ldist

    return torch.cat(ldist.gather(x), dim=0)


def rank_offset(batch_size: int, enabled: bool = True) -> int:
    """Index of this rank's first row in a :func:`gather_cat` result."""
    if not enabled or world_size() == 1:
        return 0
    import torch.distributed as tdist

    return tdist.get_rank() * batch_size
