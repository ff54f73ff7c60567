"""Shared building blocks for contrastive objectives.

These are the pieces several plugins need in exactly the same form: gathering
embeddings across ranks with gradient, the "same pseudo-label" negative mask
of MCL, and the cross-modal InfoNCE of CLIP. Plugins import them instead of
re-implementing them, so a fix lands everywhere at once.

Example:
    >>> import torch
    >>> from lightly_mm_plugins.losses import cross_modal_info_nce
    >>> a, b = torch.randn(4, 8), torch.randn(4, 8)
    >>> loss = cross_modal_info_nce(a, b, temperature=0.07)
    >>> loss.shape
    torch.Size([])
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

__all__ = [
    "check_temperature",
    "cross_modal_info_nce",
    "gather_cat",
    "rank_offset",
    "same_group_mask",
]


def check_temperature(temperature: float, name: str = "temperature") -> float:
    """Return ``temperature`` as float or raise ``ValueError`` if it is not > 0."""
    value = float(temperature)
    if not value > 1e-8 or value != value:
        raise ValueError(f"{name} must be a positive number, got {temperature!r}")
    return value


def check_gather_distributed(gather_distributed: bool) -> None:
    """Lightly's guard: gathering needs ``torch.distributed``."""
    if gather_distributed and not torch.distributed.is_available():
        raise ValueError(
            "gather_distributed is True but torch.distributed is not available. "
            "Please set gather_distributed=False or install a torch version with "
            "distributed support."
        )


def _world_size() -> int:
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
    if not enabled or _world_size() == 1:
        return x
    if not x.requires_grad:
        import torch.distributed as tdist

        parts = [torch.empty_like(x) for _ in range(_world_size())]
        tdist.all_gather(parts, x.contiguous())
        return torch.cat(parts, dim=0)
    from lightly.utils import dist as ldist

    return torch.cat(ldist.gather(x), dim=0)


def rank_offset(batch_size: int, enabled: bool = True) -> int:
    """Index of this rank's first row in a :func:`gather_cat` result."""
    if not enabled or _world_size() == 1:
        return 0
    import torch.distributed as tdist

    return tdist.get_rank() * batch_size


def same_group_mask(query_groups: Tensor, key_groups: Tensor) -> Tensor:
    """``(Nq, Nk)`` bool mask, True where query and key share a pseudo label.

    MCL contrasts an anchor only against negatives of its own pseudo-label
    group (features learned in earlier stages cannot separate those). The
    positive pair always shares the group, so masking logits with
    ``~same_group_mask`` to ``-inf`` removes exactly the other-group negatives.
    """
    return query_groups.reshape(-1, 1) == key_groups.reshape(1, -1)


def cross_modal_info_nce(
    a: Tensor,
    b: Tensor,
    temperature: float = 0.07,
    *,
    gather_distributed: bool = False,
    pseudo_labels: Tensor | None = None,
    normalize: bool = True,
) -> Tensor:
    """Symmetric cross-modal InfoNCE (CLIP, Radford et al. 2021, Eq. in Fig. 3).

    With L2-normalised ``a_i``, ``b_j`` and logits ``s_ij = a_i . b_j / tau``::

        L = 1/2 [ 1/N sum_i -log softmax_j(s_ij)[i]  +  1/N sum_j -log softmax_i(s_ij)[j] ]

    Negatives come only from the *other* modality (unlike SimCLR's NT-Xent).
    With ``gather_distributed`` the keys of all ranks are negatives. With
    ``pseudo_labels`` ``(N,)`` keys of another pseudo-label group are masked.

    Args:
        a: ``(N, D)`` embeddings of modality A.
        b: ``(N, D)`` embeddings of modality B, row i paired with ``a[i]``.
        temperature: Softmax temperature ``tau`` (> 0).
        gather_distributed: Contrast against the embeddings of all ranks.
        pseudo_labels: Optional ``(N,)`` group ids restricting negatives.
        normalize: L2-normalise inputs first.

    Returns:
        Scalar loss.
    """
    check_temperature(temperature)
    if a.dim() != 2 or b.dim() != 2 or a.shape != b.shape:
        raise ValueError(
            f"expected two (N, D) tensors of equal shape, got {tuple(a.shape)} and {tuple(b.shape)}"
        )
    if normalize:
        a = F.normalize(a, dim=-1)
        b = F.normalize(b, dim=-1)
    n = a.shape[0]
    a_all = gather_cat(a, gather_distributed)
    b_all = gather_cat(b, gather_distributed)
    offset = rank_offset(n, gather_distributed)
    targets = torch.arange(n, device=a.device) + offset
    logits_ab = a @ b_all.T / temperature
    logits_ba = b @ a_all.T / temperature
    if pseudo_labels is not None:
        groups_all = gather_cat(pseudo_labels, gather_distributed)
        keep = same_group_mask(pseudo_labels, groups_all)
        logits_ab = logits_ab.masked_fill(~keep, float("-inf"))
        logits_ba = logits_ba.masked_fill(~keep, float("-inf"))
    return 0.5 * (F.cross_entropy(logits_ab, targets) + F.cross_entropy(logits_ba, targets))
