"""Streaming log-sum-exp of a similarity matrix ``q @ k.T`` (:func:`matmul_logsumexp`).

The denominator of every InfoNCE-type loss, computed in row blocks with an online
log-sum-exp (Milakov & Gimelshein 2018) and a backward that recomputes each block,
so that a contrastive loss runs with memory linear in the batch size.

Example:
    >>> import torch
    >>> from lightly_mm_plugins.losses.streaming_lse import matmul_logsumexp
    >>> q, k = torch.randn(5, 3), torch.randn(7, 3)
    >>> matmul_logsumexp(q, k, chunk_size=2).shape
    torch.Size([5])
"""

from __future__ import annotations

from typing import Any, NamedTuple

import torch
from torch import Tensor

from .checks import check_chunk_size, check_labels

__all__ = ["matmul_logsumexp"]

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
      groups are equal (MCL's pseudo-label negatives,
      :func:`~lightly_mm_plugins.losses.same_group_mask`);
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
    check_labels("groups[0]", q_groups, n)
    check_labels("groups[1]", k_groups, m)
    check_labels("exclude[0]", q_exclude, n)
    check_labels("exclude[1]", k_exclude, m)
    check_labels("exclude_span[0]", span_start, n)
    check_labels("key_valid", key_valid, m)
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
