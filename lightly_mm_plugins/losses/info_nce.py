"""Cross-modal InfoNCE (CLIP) and the pseudo-label negative mask of MCL.

:func:`cross_modal_info_nce` is the symmetric loss of CLIP, dense or streaming
(through :func:`~lightly_mm_plugins.losses.streaming_lse.matmul_logsumexp`), with
optional gathering across ranks and pseudo-label groups (:func:`same_group_mask`).

Example:
    >>> import torch
    >>> from lightly_mm_plugins.losses.info_nce import cross_modal_info_nce
    >>> a, b = torch.randn(4, 8), torch.randn(4, 8)
    >>> cross_modal_info_nce(a, b, temperature=0.07).shape
    torch.Size([])
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

from .checks import check_chunk_size, check_labels, check_temperature
from .distributed import gather_cat, rank_offset, world_size
from .streaming_lse import matmul_logsumexp

__all__ = ["cross_modal_info_nce", "same_group_mask"]

_NEG_INF = float("-inf")


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
    chunk_size: int | None = None,
) -> Tensor:
    """Symmetric cross-modal InfoNCE (CLIP, Radford et al. 2021, Eq. in Fig. 3).

    With L2-normalised ``a_i``, ``b_j`` and logits ``s_ij = a_i . b_j / tau``::

        L = 1/2 [ 1/N sum_i -log softmax_j(s_ij)[i]  +  1/N sum_j -log softmax_i(s_ij)[j] ]

    Negatives come only from the *other* modality (unlike SimCLR's NT-Xent).
    With ``gather_distributed`` the keys of all ranks are negatives. With
    ``pseudo_labels`` ``(N,)`` keys of another pseudo-label group are masked.

    ``chunk_size`` switches to the streaming form of the same loss,
    ``-log softmax(s_i)[i] = lse_j(s_ij) - s_ii``: the log-sum-exps come from
    :func:`matmul_logsumexp` in blocks of ``chunk_size`` rows (rows for
    ``a -> b`` and, in the same pass, columns for ``b -> a``; with gathered
    keys one row pass per direction), the positives ``s_ii`` from a row-wise
    dot product. No ``(N, N)`` tensor is kept for the backward, so the extra
    memory is ``O(chunk_size * N)``; the backward recomputes the blocks (one
    more matmul). Same values and gradients as the dense path (to rounding).

    Args:
        a: ``(N, D)`` embeddings of modality A.
        b: ``(N, D)`` embeddings of modality B, row i paired with ``a[i]``.
        temperature: Softmax temperature ``tau`` (> 0).
        gather_distributed: Contrast against the embeddings of all ranks.
        pseudo_labels: Optional ``(N,)`` group ids restricting negatives.
        normalize: L2-normalise inputs first.
        chunk_size: ``None`` (default): dense ``(N, N)`` logits. An int: rows per
            block of the streaming path (e.g. 1024; memory linear in ``N``).

    Returns:
        Scalar loss.
    """
    check_temperature(temperature)
    chunk = check_chunk_size(chunk_size)
    if a.dim() != 2 or b.dim() != 2 or a.shape != b.shape:
        raise ValueError(
            f"expected two (N, D) tensors of equal shape, got {tuple(a.shape)} and {tuple(b.shape)}"
        )
    n = a.shape[0]
    check_labels("pseudo_labels", pseudo_labels, n)
    if n < 2 and not (gather_distributed and world_size() > 1):
        raise ValueError(
            f"cross_modal_info_nce needs at least 2 pairs (negatives), got N={n}; "
            "use a larger batch (and drop_last=True)"
        )
    if pseudo_labels is not None and _one_group(pseudo_labels, gather_distributed):
        pseudo_labels = None  # one group keeps every pair: no mask to build (MCL's stage 1)
    if normalize:
        a = F.normalize(a, dim=-1)
        b = F.normalize(b, dim=-1)
    if chunk is not None:
        return _chunked_info_nce(a, b, temperature, chunk, gather_distributed, pseudo_labels)
    a_all = gather_cat(a, gather_distributed)
    b_all = gather_cat(b, gather_distributed)
    offset = rank_offset(n, gather_distributed)
    targets = torch.arange(n, device=a.device) + offset
    # 1/tau scales the (N, D) operands, not the (N, N) logits.
    logits_ab = (a / temperature) @ b_all.T
    logits_ba = (b / temperature) @ a_all.T
    if pseudo_labels is not None:
        groups_all = gather_cat(pseudo_labels, gather_distributed)
        keep = same_group_mask(pseudo_labels, groups_all)
        logits_ab = logits_ab.masked_fill_(~keep, _NEG_INF)
        logits_ba = logits_ba.masked_fill_(~keep, _NEG_INF)
    return 0.5 * (F.cross_entropy(logits_ab, targets) + F.cross_entropy(logits_ba, targets))


def _one_group(labels: Tensor, gather_distributed: bool) -> bool:
    """Whether every pseudo label is the same, checked where that costs no device sync.

    Only CPU labels of a single process are looked at (an accelerator would have to
    wait for the device; gathered labels would need the other ranks'); elsewhere the
    answer is False and the (then no-op) mask is built.
    """
    if labels.device.type != "cpu" or labels.numel() == 0:
        return False
    if gather_distributed and world_size() > 1:
        return False
    return bool((labels == labels.reshape(-1)[0]).all())


def _chunked_info_nce(
    a: Tensor,
    b: Tensor,
    temperature: float,
    chunk: int,
    gather_distributed: bool,
    pseudo_labels: Tensor | None,
) -> Tensor:
    """The streaming path of :func:`cross_modal_info_nce` (``a``, ``b`` already normalised)."""
    a_scaled = a / temperature
    positive = (a_scaled * b).sum(dim=1)  # s_ii, the same logit in both directions
    if not gather_distributed or world_size() == 1:
        groups = None if pseudo_labels is None else (pseudo_labels, pseudo_labels)
        row, col = matmul_logsumexp(a_scaled, b, chunk, columns=True, groups=groups)
        return 0.5 * ((row - positive).mean() + (col - positive).mean())
    # Keys of all ranks: s = a @ b_all.T has this rank's rows only, so its columns are
    # not the b -> a_all direction; one row pass per direction.
    a_all = gather_cat(a, gather_distributed)
    b_all = gather_cat(b, gather_distributed)
    groups_ab = groups_ba = None
    if pseudo_labels is not None:
        groups_all = gather_cat(pseudo_labels, gather_distributed)
        groups_ab = groups_ba = (pseudo_labels, groups_all)
    row_ab = matmul_logsumexp(a_scaled, b_all, chunk, groups=groups_ab)
    row_ba = matmul_logsumexp(b / temperature, a_all, chunk, groups=groups_ba)
    assert isinstance(row_ab, Tensor) and isinstance(row_ba, Tensor)
    return 0.5 * ((row_ab - positive).mean() + (row_ba - positive).mean())
