"""Shared building blocks for contrastive objectives.

These are the pieces several plugins need in exactly the same form: gathering
embeddings across ranks with gradient, the "same pseudo-label" negative mask
of MCL, the cross-modal InfoNCE of CLIP, and the streaming log-sum-exp of a
similarity matrix (:func:`matmul_logsumexp`) that lets a contrastive loss run
with memory linear in the batch size. Plugins import them instead of
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

from typing import Any, NamedTuple

import torch
import torch.nn.functional as F
from torch import Tensor

__all__ = [
    "check_all",
    "check_chunk_size",
    "check_temperature",
    "cross_modal_info_nce",
    "gather_cat",
    "matmul_logsumexp",
    "rank_offset",
    "same_group_mask",
    "world_size",
]


def check_temperature(temperature: float, name: str = "temperature") -> float:
    """Return ``temperature`` as float or raise ``ValueError`` if it is not > 0."""
    value = float(temperature)
    if not value > 1e-8 or value != value:
        raise ValueError(f"{name} must be a positive number, got {temperature!r}")
    return value


def check_chunk_size(chunk_size: int | None, name: str = "chunk_size") -> int | None:
    """Return ``chunk_size`` (``None`` or an int >= 1) or raise ``ValueError``."""
    if chunk_size is None:
        return None
    if isinstance(chunk_size, bool) or not isinstance(chunk_size, int) or chunk_size < 1:
        raise ValueError(
            f"{name} must be None (dense) or an integer >= 1 (rows per block), got {chunk_size!r}"
        )
    return chunk_size


def check_all(condition: Tensor, message: str) -> None:
    """Raise ``ValueError(message)`` unless every element of ``condition`` is True.

    Why not just ``if not bool(condition.all())``: on an accelerator that line
    makes the host wait for the device (a host-device sync) in every training
    step. So only CPU tensors are checked on the host (free, and a
    ``ValueError``); on other devices the check is queued on the device with
    :func:`torch._assert_async` and a failure surfaces as a device-side
    assertion carrying ``message`` (it invalidates the CUDA context, which is
    acceptable for inputs that are a programming error anyway).

    Example:
        >>> import torch
        >>> check_all(torch.tensor([True, True]), "never raised")
    """
    if condition.device.type == "cpu":
        if not bool(condition.all()):
            raise ValueError(message)
        return
    torch._assert_async(condition.all(), message)


def check_gather_distributed(gather_distributed: bool) -> None:
    """Lightly's guard: gathering needs ``torch.distributed``."""
    if gather_distributed and not torch.distributed.is_available():
        raise ValueError(
            "gather_distributed is True but torch.distributed is not available. "
            "Please set gather_distributed=False or install a torch version with "
            "distributed support."
        )


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


def same_group_mask(query_groups: Tensor, key_groups: Tensor) -> Tensor:
    """``(Nq, Nk)`` bool mask, True where query and key share a pseudo label.

    MCL contrasts an anchor only against negatives of its own pseudo-label
    group (features learned in earlier stages cannot separate those). The
    positive pair always shares the group, so masking logits with
    ``~same_group_mask`` to ``-inf`` removes exactly the other-group negatives.
    """
    return query_groups.reshape(-1, 1) == key_groups.reshape(1, -1)


_NEG_INF = float("-inf")


def _finite_or_zero(x: Tensor) -> Tensor:
    """``x`` with ``-inf`` (a row or column without any kept entry) replaced by 0."""
    return torch.where(torch.isfinite(x), x, torch.zeros((), dtype=x.dtype, device=x.device))


def _stats_dtype(x: Tensor) -> torch.dtype:
    """Soft-max statistics of half-precision scores are kept in float32."""
    return torch.float32 if x.dtype in (torch.float16, torch.bfloat16) else x.dtype


class _Masks(NamedTuple):
    """Which pairs ``(i, j)`` of a score block are dropped (see :func:`matmul_logsumexp`)."""

    q_groups: Tensor | None = None
    k_groups: Tensor | None = None
    q_exclude: Tensor | None = None
    k_exclude: Tensor | None = None
    key_valid: Tensor | None = None
    span_start: Tensor | None = None
    span_width: int = 0


def _block_scores(
    q: Tensor, k: Tensor, start: int, stop: int, masks: _Masks, out: Tensor
) -> Tensor:
    """Rows ``start:stop`` of ``q @ k.T`` written into ``out``, dropped pairs set to ``-inf``.

    ``out`` is a ``(stop - start, M)`` buffer in the statistics dtype (float32 for
    half inputs), reused across blocks so that no large tensor is allocated per
    block. The masks of a block are built from the ``(rows,)`` / ``(cols,)`` label
    vectors, so no ``(N, M)`` mask ever exists outside a block; a span exclusion
    only writes the ``rows x width`` excluded entries.
    """
    if out.dtype == q.dtype:
        torch.mm(q[start:stop], k.T, out=out)
    else:
        out.copy_(q[start:stop] @ k.T)
    drop: Tensor | None = None
    if masks.q_groups is not None and masks.k_groups is not None:
        drop = masks.q_groups[start:stop, None] != masks.k_groups[None, :]
    if masks.q_exclude is not None and masks.k_exclude is not None:
        same = masks.q_exclude[start:stop, None] == masks.k_exclude[None, :]
        drop = same if drop is None else drop.logical_or_(same)
    if masks.key_valid is not None:
        invalid = ~masks.key_valid[None, :]
        drop = invalid if drop is None else drop.logical_or_(invalid)
    if drop is not None:
        out.masked_fill_(drop, _NEG_INF)
    if masks.span_start is not None:
        width = masks.span_width
        cols = masks.span_start[start:stop, None] * width + torch.arange(width, device=out.device)
        out.scatter_(1, cols, _NEG_INF)
    return out


def _autocast_off(device: torch.device) -> Any:
    return torch.autocast(device_type=device.type, enabled=False)


class _MatmulLogSumExp(torch.autograd.Function):
    """Row (and column) log-sum-exp of ``q @ k.T``, in row blocks; see :func:`matmul_logsumexp`.

    Forward keeps only the ``(N,)`` row statistics (and a running ``(M,)``
    column maximum and sum of exponentials, the online log-sum-exp). Backward
    recomputes each block's scores ``s`` and uses
    ``d lse_i / d s_ij = exp(s_ij - lse_i)`` (the softmax), so that

        dq_block = G @ k,   dk += G.T @ q_block,
        G_ij = g_row_i exp(s_ij - lse_row_i) + g_col_j exp(s_ij - lse_col_j).

    With ``chunk=None`` there is one block and nothing is recomputed: rows only
    keep the softmax ``exp(s - row)`` itself (computed in place over the scores),
    with columns the masked scores are kept. Block-sized temporaries live in
    buffers reused in place: on the CPU a fresh large tensor costs more in page
    faults than the arithmetic on it.
    """

    @staticmethod
    def forward(  # type: ignore[override]
        ctx: Any, q: Tensor, k: Tensor, chunk: int | None, columns: bool, masks: _Masks
    ) -> Tensor | tuple[Tensor, Tensor]:
        n, m = q.shape[0], k.shape[0]
        step = n if chunk is None else chunk
        dtype = _stats_dtype(q)
        device = q.device
        row = torch.empty(n, dtype=dtype, device=device)
        col_max = torch.full((m,), _NEG_INF, dtype=dtype, device=device)
        col_sum = torch.zeros(m, dtype=dtype, device=device)
        scores_buf = torch.empty(min(step, n), m, dtype=dtype, device=device)
        # rows only, one block: the exponentials overwrite the scores (kept as softmax)
        in_place = chunk is None and not columns
        work = None if in_place else torch.empty_like(scores_buf)
        with _autocast_off(device):
            for start in range(0, n, step):
                stop = min(start + step, n)
                scores = _block_scores(q, k, start, stop, masks, scores_buf[: stop - start])
                shift = _finite_or_zero(scores.amax(dim=1, keepdim=True))
                if in_place:
                    total = scores.sub_(shift).exp_().sum(dim=1, keepdim=True)
                    scores.div_(total.clamp(min=torch.finfo(dtype).tiny))
                else:
                    assert work is not None
                    buf = work[: stop - start]
                    total = torch.sub(scores, shift, out=buf).exp_().sum(dim=1, keepdim=True)
                row[start:stop] = total.log_().add_(shift).squeeze(1)
                if columns:  # online log-sum-exp over the row blocks seen so far
                    assert work is not None
                    new_max = torch.maximum(col_max, scores.amax(dim=0))
                    col_shift = _finite_or_zero(new_max)
                    col_sum.mul_(torch.exp(col_max - col_shift))
                    col_sum.add_(torch.sub(scores, col_shift, out=buf).exp_().sum(dim=0))
                    col_max = new_max
        col = torch.log(col_sum) + _finite_or_zero(col_max) if columns else None
        ctx.chunk, ctx.columns, ctx.masks, ctx.in_place = step, columns, masks, in_place
        kept = scores_buf if chunk is None else None
        ctx.save_for_backward(q, k, row, col, kept)
        if columns:
            assert col is not None
            return row, col
        return row

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx: Any, *grads: Tensor) -> tuple[Tensor | None, ...]:
        q, k, row, col, kept = ctx.saved_tensors
        masks: _Masks = ctx.masks
        need_q, need_k = ctx.needs_input_grad[0], ctx.needs_input_grad[1]
        g_row = grads[0]
        g_col = grads[1] if ctx.columns else None
        row = _finite_or_zero(row)
        col = _finite_or_zero(col) if col is not None else None
        grad_q = torch.empty_like(q) if need_q else None
        grad_k = torch.zeros(k.shape, dtype=_stats_dtype(k), device=k.device) if need_k else None
        n, m, step = q.shape[0], k.shape[0], ctx.chunk
        dtype = row.dtype
        columns = g_col is not None and col is not None
        weight_buf = (
            None if ctx.in_place else torch.empty(min(step, n), m, dtype=dtype, device=q.device)
        )
        other_buf = torch.empty_like(weight_buf) if columns and weight_buf is not None else None
        with _autocast_off(q.device):
            for start in range(0, n, step):
                stop = min(start + step, n)
                g = g_row[start:stop, None].to(dtype)
                other: Tensor | None = None
                if ctx.in_place:  # kept is the softmax P = exp(s - row) itself
                    weight = kept
                else:
                    assert weight_buf is not None
                    weight = weight_buf[: stop - start]
                    if kept is not None:  # masked scores of the single block
                        scores = kept
                        torch.sub(scores, row[start:stop, None], out=weight)
                    else:  # recompute the block (into the weight buffer)
                        scores = _block_scores(q, k, start, stop, masks, weight)
                    if columns and other_buf is not None and col is not None and g_col is not None:
                        # d col_j / d s_ij = exp(s_ij - col_j), before weight is overwritten
                        other = torch.sub(scores, col[None, :], out=other_buf[: stop - start])
                        other.exp_().mul_(g_col[None, :].to(dtype))
                    if kept is None:
                        weight.sub_(row[start:stop, None])
                    # d row_i / d s_ij = exp(s_ij - row_i), the softmax of row i
                    weight.exp_()
                    if other is not None:
                        weight.mul_(g).add_(other)
                operand = weight.to(q.dtype)
                q_block = q[start:stop]
                if other is None:
                    # G = diag(g) P: scale the (rows, D) operands, not the (rows, M) block
                    if grad_q is not None:
                        grad_q[start:stop] = ((operand @ k) * g).to(q.dtype)
                    if grad_k is not None:
                        grad_k += ((q_block * g.to(q.dtype)).T @ operand).T.to(grad_k.dtype)
                else:
                    if grad_q is not None:
                        grad_q[start:stop] = (operand @ k).to(q.dtype)
                    if grad_k is not None:
                        grad_k += (q_block.T @ operand).T.to(grad_k.dtype)
        if grad_k is not None:
            grad_k = grad_k.to(k.dtype)
        return grad_q, grad_k, None, None, None


def _check_labels(name: str, x: Tensor | None, size: int) -> None:
    if x is not None and tuple(x.shape) != (size,):
        raise ValueError(
            f"{name} must have shape ({size},) (one entry per row), got {tuple(x.shape)}"
        )


def matmul_logsumexp(
    q: Tensor,
    k: Tensor,
    chunk_size: int | None = None,
    *,
    columns: bool = False,
    groups: tuple[Tensor, Tensor] | None = None,
    exclude: tuple[Tensor, Tensor] | None = None,
    exclude_span: tuple[Tensor, int] | None = None,
    key_valid: Tensor | None = None,
) -> Tensor | tuple[Tensor, Tensor]:
    """Log-sum-exp over the rows (and columns) of ``S = q @ k.T`` without storing ``S``.

    The denominator of every InfoNCE-type loss::

        row_i = log sum_{j kept} exp(S_ij)        (N,)
        col_j = log sum_{i kept} exp(S_ij)        (M,)   with ``columns=True``

    With ``chunk_size`` the ``(N, M)`` matrix is processed in blocks of
    ``chunk_size`` rows: the forward keeps only the row results and, for the
    columns, a running maximum and sum per column (the online log-sum-exp of
    Milakov & Gimelshein 2018, as in FlashAttention); the backward recomputes
    each block and uses ``d row_i / d S_ij = softmax_j(S_i)_j = exp(S_ij -
    row_i)``. Extra memory is ``O(chunk_size * M + N + M)`` instead of
    ``O(N * M)``, at the price of one more ``q @ k.T`` matmul in the backward.
    ``chunk_size=None`` is one block that is kept for the backward (dense
    memory, no recomputation; fewer passes over ``S`` than autograd through
    :func:`torch.logsumexp`). Values and gradients equal
    ``torch.logsumexp(masked S, dim)`` (to rounding).

    Pairs can be dropped from every sum (each rule only where given):

    * ``groups=(q_groups (N,), k_groups (M,))``: keep ``(i, j)`` only if the
      groups are equal (MCL's pseudo-label negatives, :func:`same_group_mask`);
    * ``exclude=(q_ids (N,), k_ids (M,))``: drop ``(i, j)`` if the ids are equal;
    * ``exclude_span=(start (N,), width)``: drop columns ``start_i * width`` to
      ``start_i * width + width - 1`` of row ``i`` (e.g. the ``width`` locals of
      the anchor's own sample in TCL's local MI term; cheaper than ``exclude``);
    * ``key_valid`` ``(M,)`` bool: drop padded columns.

    A row (column) without any kept pair gets ``-inf`` and zero gradient.
    Scale (temperature) belongs in ``q``: ``matmul_logsumexp(q / tau, k)``
    touches ``N * D`` numbers instead of ``N * M``. Half-precision scores
    are reduced in float32; under autocast, ``q`` and ``k`` are cast to the
    autocast dtype first. Not twice differentiable.

    Args:
        q: ``(N, D)`` row vectors (queries / anchors).
        k: ``(M, D)`` column vectors (keys / candidates).
        chunk_size: Rows per block, or ``None`` for one block.
        columns: Also return the column log-sum-exp.
        groups, exclude, exclude_span, key_valid: Pair masks, see above.

    Returns:
        ``row`` ``(N,)``, or ``(row, col)`` with ``columns=True``.

    Example:
        >>> import torch
        >>> q, k = torch.randn(5, 3), torch.randn(7, 3)
        >>> row = matmul_logsumexp(q, k, chunk_size=2)
        >>> torch.allclose(row, torch.logsumexp(q @ k.T, dim=1), atol=1e-6)
        True
    """
    chunk = check_chunk_size(chunk_size)
    if q.dim() != 2 or k.dim() != 2 or q.shape[1] != k.shape[1]:
        raise ValueError(
            f"expected q (N, D) and k (M, D) with the same D, got {tuple(q.shape)} and "
            f"{tuple(k.shape)}"
        )
    n, m = q.shape[0], k.shape[0]
    if n == 0:
        raise ValueError("matmul_logsumexp needs at least one row in q")
    q_groups, k_groups = groups if groups is not None else (None, None)
    q_exclude, k_exclude = exclude if exclude is not None else (None, None)
    span_start, span_width = exclude_span if exclude_span is not None else (None, 0)
    _check_labels("groups[0]", q_groups, n)
    _check_labels("groups[1]", k_groups, m)
    _check_labels("exclude[0]", q_exclude, n)
    _check_labels("exclude[1]", k_exclude, m)
    _check_labels("exclude_span[0]", span_start, n)
    _check_labels("key_valid", key_valid, m)
    if key_valid is not None and key_valid.dtype != torch.bool:
        raise ValueError(
            f"key_valid must be a bool tensor (True = real key), got {key_valid.dtype}"
        )
    if exclude_span is not None and not 1 <= int(span_width) <= m:
        raise ValueError(f"exclude_span width must be in [1, {m}], got {span_width}")
    if torch.is_autocast_enabled(q.device.type):
        dtype = torch.get_autocast_dtype(q.device.type)
        q, k = q.to(dtype), k.to(dtype)
    elif k.dtype != q.dtype:
        k = k.to(q.dtype)
    device = q.device

    def on_device(x: Tensor | None) -> Tensor | None:
        return None if x is None else x.to(device)

    masks = _Masks(
        on_device(q_groups),
        on_device(k_groups),
        on_device(q_exclude),
        on_device(k_exclude),
        on_device(key_valid),
        None if span_start is None else span_start.to(device, torch.long),
        int(span_width),
    )
    return _MatmulLogSumExp.apply(q, k, chunk, columns, masks)  # type: ignore[no-any-return]


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
    _check_labels("pseudo_labels", pseudo_labels, n)
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
