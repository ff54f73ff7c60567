"""CACR / Contrastive Conditional Transport loss as a ``lightly.loss``-style module.

Zheng et al., *Contrastive Attraction and Contrastive Repulsion for Representation
Learning* (arXiv 2105.03746, TMLR 2023; first titled *Contrastive Conditional
Transport*). Official code: ``github.com/JegZheng/CACR-SSL``,
``small_scale_experiments/losses/__init__.py`` (``our_loss1`` / ``our_loss2`` /
``forward_negative_loss``) and ``large_scale_shift_experiments/imagenet/ours/builder.py``
(MoCo-v2 variant with a momentum encoder and a queue).

The official code loops over views in Python; here every term is one batched
tensor expression over all queries, views and view pairs.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, NamedTuple

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from lightly_mm_plugins.losses import (
    check_chunk_size,
    check_gather_distributed,
    gather_cat,
    rank_offset,
    same_group_mask,
)

__all__ = ["DETACH_CHOICES", "WEIGHTINGS", "CCTLoss", "conditional_weights", "squared_distances"]

#: ``weighting`` values: CACR weights, or the paper's ablations with uniform weights
#: for both terms (official ``choice='none'``), only the attraction
#: (``'without_w1'``) or only the repulsion (``'without_w2'``).
WEIGHTINGS: tuple[str, ...] = ("cacr", "uniform", "uniform_attraction", "uniform_repulsion")
#: ``detach_weights`` values: ``False`` (small-scale code, gradients flow through the
#: weights), ``True`` (every weight is a constant), ``"momentum"`` (exactly the
#: official MoCo code: only weights computed from momentum keys or the queue are
#: constants, the intra-batch repulsion weights keep their gradient).
DETACH_CHOICES: tuple[Any, ...] = (False, True, "momentum")


def squared_distances(a: Tensor, b: Tensor) -> Tensor:
    """``‖a_i − b_j‖²`` for ``a`` ``(..., n, D)`` and ``b`` ``(..., m, D)`` -> ``(..., n, m)``.

    Expanded as ``‖a‖² + ‖b‖² − 2 a·b`` (no ``(n, m, D)`` intermediate) and clamped at 0
    against round-off. For unit vectors this is the official large-scale ``2 − 2 q·k``.
    """
    sq = a.pow(2).sum(-1).unsqueeze(-1) + b.pow(2).sum(-1).unsqueeze(-2)
    return (sq - 2.0 * a @ b.transpose(-1, -2)).clamp_min(0.0)


def conditional_weights(logits: Tensor, valid: Tensor, uniform: bool = False) -> Tensor:
    """Row-wise softmax of ``logits`` over the ``valid`` entries (0 elsewhere).

    ``uniform=True`` returns ``1 / #valid`` on valid entries (the paper's ablation
    without conditional weights). Rows without a valid entry are all zeros (no NaN,
    also in the backward pass).
    """
    if uniform:
        v = valid.to(logits.dtype)
        return v / v.sum(-1, keepdim=True).clamp_min(1.0)
    filled = logits.masked_fill(~valid, torch.finfo(logits.dtype).min)
    return filled.softmax(dim=-1) * valid.to(logits.dtype)


class _Candidates(NamedTuple):
    """Which candidates ``j`` a query ``i`` weighs in the repulsion (:func:`weighted_distances`).

    Columns ``[0, split)`` are a queue (``queue_keep`` ``(N, split)`` or None: all),
    columns ``[split, M)`` in-batch candidates; ``self_column`` ``(N,)``: the column
    (in the in-batch part) of the query's own sample, dropped; with groups, a pair
    of another pseudo label is dropped. ``row_ok`` ``(N,)`` / ``col_ok`` ``(M,)`` drop
    padded queries / candidates. Every rule only where given: no ``(N, M)`` mask is
    built for the plain in-batch case (the own sample is one scattered entry per row).
    """

    row_ok: Tensor | None = None
    col_ok: Tensor | None = None
    split: int = 0
    queue_keep: Tensor | None = None
    self_column: Tensor | None = None
    query_groups: Tensor | None = None
    key_groups: Tensor | None = None


_NEG_INF = float("-inf")


def _drop(c: _Candidates, logits: Tensor, start: int, stop: int) -> None:
    """Set the dropped pairs of one block of queries to ``-inf`` (in place)."""
    if c.col_ok is not None:
        logits.masked_fill_(~c.col_ok[None, :], _NEG_INF)
    if c.row_ok is not None:
        logits.masked_fill_(~c.row_ok[start:stop, None], _NEG_INF)
    if c.queue_keep is not None and c.split:
        logits[:, : c.split].masked_fill_(~c.queue_keep[start:stop], _NEG_INF)
    batch = logits[:, c.split :]
    if c.query_groups is not None and c.key_groups is not None:
        batch.masked_fill_(c.query_groups[start:stop, None] != c.key_groups[None, :], _NEG_INF)
    if c.self_column is not None:
        batch.scatter_(1, c.self_column[start:stop, None], _NEG_INF)


class _WeightedDistance(torch.autograd.Function):
    """Per query ``f_i = Σ_j w_ij d_ij`` with ``w_i = softmax_j(c · d_ij)`` over kept ``j``.

    ``d_ij = ‖q_i‖² + ‖k_j‖² − 2 q_i·k_j`` (clamped at 0; one matmul of the
    augmented operands ``[q, ‖q‖², 1]·[−2k, 1, ‖k‖²]``), ``c = −τ⁻`` (0: uniform
    weights). Returns ``f`` and the (non-differentiable) log-normaliser
    ``lse_i = log Σ_j exp(c d_ij)``, from which the weights' entropy is free:
    ``H_i = lse_i − c f_i``. Backward, with ``D_j = 1`` where the weights keep their
    gradient (``grad_weights``) and 0 where they are constants::

        ∂f_i/∂d_ij = w_ij (1 + c D_j (d_ij − f_i)) =: H_ij,   G = diag(g) H
        dq_i = 2 g_i (q_i Σ_j H_ij − (H k)_i),    dk_j = 2 (k_j Σ_i G_ij − (Gᵀ q)_j)

    (the sums come out of the matmuls with a column of ones; ``g`` scales the
    ``(N, D)`` operands, not the ``(N, M)`` block). In blocks of ``chunk`` queries
    (None: one block, kept for the backward; an int: recomputed, memory
    ``O(chunk · M)``).
    """

    @staticmethod
    def forward(  # type: ignore[override]
        ctx: Any,
        q: Tensor,
        k: Tensor,
        coef: float,
        grad_weights: Tensor | bool,
        cands: _Candidates,
        chunk: int | None,
    ) -> tuple[Tensor, Tensor]:
        n = q.shape[0]
        step = n if chunk is None else chunk
        ones_q = q.new_ones(n, 1)
        ones_k = k.new_ones(k.shape[0], 1)
        q_aug = torch.cat([q, q.pow(2).sum(1, keepdim=True), ones_q], dim=1)
        k_aug = torch.cat([-2.0 * k, ones_k, k.pow(2).sum(1, keepdim=True)], dim=1)
        f = torch.empty(n, dtype=q.dtype, device=q.device)
        lse = torch.empty(n, dtype=q.dtype, device=q.device)
        kept: tuple[Tensor, Tensor] | None = None
        for start in range(0, n, step):
            stop = min(start + step, n)
            d, w, block_lse = _WeightedDistance._block(q_aug, k_aug, coef, cands, start, stop)
            lse[start:stop] = block_lse
            f[start:stop] = torch.linalg.vecdot(w, d)
            if chunk is None:
                kept = (d, w)
        ctx.coef, ctx.cands, ctx.step, ctx.kept = coef, cands, step, kept
        ctx.grad_weights = grad_weights if isinstance(grad_weights, bool) else None
        saved_weights = grad_weights if isinstance(grad_weights, Tensor) else None
        ctx.save_for_backward(q, k, q_aug, k_aug, f, saved_weights)
        ctx.mark_non_differentiable(lse)
        return f, lse

    @staticmethod
    def _block(
        q_aug: Tensor, k_aug: Tensor, coef: float, cands: _Candidates, start: int, stop: int
    ) -> tuple[Tensor, Tensor, Tensor]:
        """Distances ``d``, weights ``w`` (0 where dropped) and ``lse`` of one block."""
        d = (q_aug[start:stop] @ k_aug.T).clamp_min_(0.0)
        w = torch.mul(d, coef)
        _drop(cands, w, start, stop)
        top = w.amax(dim=1, keepdim=True)
        top = torch.where(torch.isfinite(top), top, 0.0)
        total = w.sub_(top).exp_().sum(dim=1, keepdim=True)
        w.div_(total.clamp(min=torch.finfo(w.dtype).tiny))
        return d, w, total.log_().add_(top).squeeze(1)

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx: Any, g_f: Tensor, _: Tensor) -> tuple[Tensor | None, ...]:
        q, k, q_aug, k_aug, f, weight_cols = ctx.saved_tensors
        coef, cands, step = ctx.coef, ctx.cands, ctx.step
        n, dim = q.shape
        grad_q = torch.empty_like(q) if ctx.needs_input_grad[0] else None
        grad_k = torch.zeros_like(k) if ctx.needs_input_grad[1] else None
        for start in range(0, n, step):
            stop = min(start + step, n)
            if ctx.kept is not None:
                d, w = ctx.kept
            else:
                d, w, _ = _WeightedDistance._block(q_aug, k_aug, coef, cands, start, stop)
            g = g_f[start:stop, None]
            if coef == 0.0 or ctx.grad_weights is False:
                h = w  # constant weights: only the distances carry gradient
            elif weight_cols is None:  # H = w (1 + c (d - f)) = w (c d + 1 - c f)
                h = d.mul_(coef).add_(1.0 - coef * f[start:stop, None]).mul_(w)
            else:  # H = w (1 + c D (d - f)), D per column
                h = d.sub_(f[start:stop, None]).mul_(weight_cols[None, :] * coef)
                h.add_(1.0).mul_(w)
            q_block = q[start:stop]
            if grad_q is not None:
                # H @ k_aug = [-2 H k, Σ_j H_ij, ·]: H k and the row sums in one matmul
                hk = h @ k_aug[:, : dim + 1]
                grad_q[start:stop] = g * (2.0 * q_block * hk[:, dim:] + hk[:, :dim])
            if grad_k is not None:
                gq = torch.cat([q_block * g, g], dim=1)
                hq = h.T @ gq  # (M, D + 1): Gᵀ q and the column sums of G
                grad_k.addcmul_(k, hq[:, dim:], value=2.0).sub_(hq[:, :dim], alpha=2.0)
        ctx.kept = None
        return grad_q, grad_k, None, None, None, None


def weighted_distances(
    q: Tensor,
    k: Tensor,
    coef: float,
    candidates: _Candidates | None = None,
    *,
    grad_weights: Tensor | bool = True,
    chunk_size: int | None = None,
) -> tuple[Tensor, Tensor]:
    """``f_i = Σ_j softmax_j(coef · d_ij) d_ij`` and ``lse_i`` without keeping ``(N, M)``.

    The repulsion row of CACR for queries ``q`` ``(N, D)`` and candidates ``k``
    ``(M, D)``, ``d`` the squared distance; see :class:`_WeightedDistance`.
    ``grad_weights``: False makes every weight a constant, a ``(M,)`` bool tensor
    only the weights of the False columns (the official MoCo code's queue).
    """
    weights = grad_weights.to(q.dtype) if isinstance(grad_weights, Tensor) else grad_weights
    return _WeightedDistance.apply(  # type: ignore[no-any-return]
        q, k.to(q.dtype), float(coef), weights, candidates or _Candidates(), chunk_size
    )


def _entropy(weights: Tensor) -> Tensor:
    """Shannon entropy (nats) of each row of ``weights`` (rows sum to 1 or are 0)."""
    return -torch.xlogy(weights, weights).sum(-1)


def _masked_mean(values: Tensor, valid: Tensor) -> Tensor:
    """Mean of ``values`` over ``valid`` entries (0 when none is valid)."""
    v = valid.to(values.dtype)
    return (values * v).sum() / v.sum().clamp_min(1.0)


def _as_views(x: Tensor | Sequence[Tensor], name: str) -> Tensor:
    """``(N, K, D)`` from a stacked tensor or a list of K ``(N, D)`` tensors."""
    if isinstance(x, (list, tuple)):
        if not x:
            raise ValueError(f"{name} is an empty list; pass K >= 2 tensors of shape (N, D)")
        shapes = {tuple(t.shape) for t in x}
        if len(shapes) != 1 or x[0].dim() != 2:
            raise ValueError(
                f"{name} must be K tensors of one shape (N, D), got shapes {sorted(shapes)}"
            )
        return torch.stack(list(x), dim=1)
    if not isinstance(x, Tensor) or x.dim() != 3:
        shape = tuple(x.shape) if isinstance(x, Tensor) else type(x).__name__
        raise ValueError(
            f"{name} must have shape (N, K, D) (N samples, K views) or be a list of K "
            f"(N, D) tensors, got {shape}"
        )
    return x


def _check_nonneg(value: float, name: str) -> float:
    v = float(value)
    if not v >= 0.0 or v == float("inf"):
        raise ValueError(f"{name} must be a finite number >= 0, got {value!r}")
    return v


class CCTLoss(nn.Module):
    """Contrastive attraction + contrastive repulsion (CACR / CCT), batched.

    Notation: ``z_i^x`` is view (observation) ``x`` of sample ``i``, L2-normalised;
    ``d(a, b) = ‖a − b‖²`` is both the transport cost and the distance of the
    official code. For sample ``i`` and query view ``x``:

    **Attraction** (``our_loss1``; paper Eq. 4, positive conditional distribution
    ``π⁺(x⁺|x) ∝ exp(+τ⁺ d) p(x⁺|x)``, i.e. *farther positives weigh more*)::

        w⁺_{ixk} = softmax_{k ≠ x}( τ⁺ d(z_i^x, t_i^k) )
        L_CA     = mean_{i, x} Σ_{k ≠ x} w⁺_{ixk} · α d(z_i^x, t_i^k)

    with targets ``t = z`` (small-scale code) or ``t = keys`` (momentum keys, MoCo code).

    **Repulsion** (``our_loss2`` / ``forward_negative_loss``; ``π⁻(x⁻|x) ∝
    exp(−τ⁻ d) p(x⁻)``, i.e. *closer negatives weigh more*). Without a queue, as the
    small-scale code, one direction per view pair ``x < y`` (``symmetric_repulsion``:
    every ordered pair ``x ≠ y``), candidates ``z_j^y``, ``j ≠ i``::

        w⁻_{xy,ij} = softmax_{j ≠ i}( −τ⁻ d(z_i^x, z_j^y) )
        L_CR       = mean_{x<y, i} Σ_{j ≠ i} w⁻_{xy,ij} · (−β d(z_i^x, z_j^y))

    Debiased (``debiased=True``, official ``with_debiased``) replaces each row by
    ``(−τ₊ d(z_i^x, z_i^y) + Σ_j w⁻ (−β d)) / (1 − τ₊)`` exactly as the official code.

    With a ``queue`` (large-scale MoCo code) every view is a query once and its
    candidates are the queue entries ``u`` plus (``intra_batch_negatives``) the other
    samples' same view ``z_j^x``, ``j ≠ i``::

        w⁻ = softmax( −τ⁻ [d(z_i^x, u_1..u_Q), d(z_i^x, z_j^x)_{j≠i}] )
        L_CR = mean_{i, x} Σ w⁻ · (−β d)

    ``L = L_CA + L_CR``. With ``weighting="uniform"`` both weights are ``1/#candidates``
    and the terms reduce to ``α·mean d⁺`` and ``−β·mean d⁻``. Means run over valid rows
    (a row needs a valid query and at least one candidate), which for full masks equals
    the official ``1/K Σ_x mean_i`` and ``1/C(K,2) Σ_{x<y} mean_i``.

    Gradients: by default (small-scale code) they flow through the softmax weights too;
    ``detach_weights=True`` makes every weight a constant; ``"momentum"`` detaches only
    weights built from momentum keys or the queue, as the official MoCo builder.

    Args:
        tau_pos: ``τ⁺`` (>= 0) of the positive weights (official 1.0; 0 = uniform).
        tau_neg: ``τ⁻`` (>= 0) of the negative weights (official CIFAR-10 README 0.9,
            CIFAR-100 / STL-10 / ImageNet 2.0, argparse 1.0).
        alpha: Attraction weight ``α`` (official 1.0).
        beta: Repulsion weight ``β`` (official 1.0).
        weighting: One of :data:`WEIGHTINGS`.
        detach_weights: One of :data:`DETACH_CHOICES`.
        debiased: Debiased repulsion (in-batch only).
        tau_plus: Class prior ``τ₊`` in ``[0, 1)`` of the debiased variant (official 0.1).
        symmetric_repulsion: Use both directions of each view pair (default: one, official).
        intra_batch_negatives: With a queue, also repel the same view of the other
            samples (official ``unif_intra_batch=True``).
        normalize: L2-normalise views, keys and queue first (the official encoders end
            in an L2 normalisation; normalising twice changes nothing).
        gather_distributed: Use the in-batch candidates of all ranks as negatives.
        chunk_size: ``None`` (default): each repulsion's ``(N, M)`` distances are
            computed once and kept for the backward. An int: queries in blocks of
            that many rows, nothing quadratic kept (memory linear in the batch, one
            more matmul in the backward). Same values and gradients either way.

    Shapes:
        ``forward(views (N, K, D) | K x (N, D), mask (N, K) | None, keys (N, K, D) | None,
        queue (Q, D) | None, queue_mask (Q,) | (N, Q) | None, pseudo_labels (N,) | None)
        -> ()``. :meth:`terms` returns the terms, the weights' entropies and, on request,
        the weights themselves.

    Example:
        >>> import torch
        >>> loss_fn = CCTLoss()
        >>> z = torch.nn.functional.normalize(torch.randn(8, 3, 16), dim=-1)
        >>> loss = loss_fn(z)
        >>> sorted(loss_fn.terms(z))[:3]
        ['attraction', 'entropy_neg', 'entropy_pos']
    """

    def __init__(
        self,
        tau_pos: float = 1.0,
        tau_neg: float = 0.9,
        alpha: float = 1.0,
        beta: float = 1.0,
        weighting: str = "cacr",
        detach_weights: bool | str = False,
        debiased: bool = False,
        tau_plus: float = 0.1,
        symmetric_repulsion: bool = False,
        intra_batch_negatives: bool = True,
        normalize: bool = True,
        gather_distributed: bool = False,
        chunk_size: int | None = None,
    ) -> None:
        super().__init__()
        self.chunk_size = check_chunk_size(chunk_size)
        self.tau_pos = _check_nonneg(tau_pos, "tau_pos")
        self.tau_neg = _check_nonneg(tau_neg, "tau_neg")
        self.alpha = _check_nonneg(alpha, "alpha")
        self.beta = _check_nonneg(beta, "beta")
        if weighting not in WEIGHTINGS:
            raise ValueError(f"weighting must be one of {WEIGHTINGS}, got {weighting!r}")
        if detach_weights not in DETACH_CHOICES:
            raise ValueError(
                f"detach_weights must be False (small-scale code), True or 'momentum' "
                f"(official MoCo code), got {detach_weights!r}"
            )
        tau_plus = float(tau_plus)
        if not 0.0 <= tau_plus < 1.0:
            raise ValueError(f"tau_plus must be in [0, 1) (a class prior), got {tau_plus!r}")
        check_gather_distributed(gather_distributed)
        self.weighting = weighting
        self.detach_weights: bool | str = (
            detach_weights if isinstance(detach_weights, str) else bool(detach_weights)
        )
        self.debiased = bool(debiased)
        self.tau_plus = tau_plus
        self.symmetric_repulsion = bool(symmetric_repulsion)
        self.intra_batch_negatives = bool(intra_batch_negatives)
        self.normalize = bool(normalize)
        self.gather_distributed = bool(gather_distributed)

    # ------------------------------------------------------------------ helpers

    def _detach(self, momentum_side: bool) -> bool:
        """Whether weights are constants: always with True, for momentum/queue with 'momentum'."""
        if self.detach_weights is True:
            return True
        return momentum_side and self.detach_weights == "momentum"

    def view_pairs(self, num_views: int, device: torch.device | None = None) -> Tensor:
        """``(2, P)`` query / candidate view indices of the in-batch repulsion."""
        if self.symmetric_repulsion:
            idx = torch.arange(num_views, device=device)
            xs, ys = torch.meshgrid(idx, idx, indexing="ij")
            keep = xs != ys
            return torch.stack([xs[keep], ys[keep]])
        return torch.triu_indices(num_views, num_views, offset=1, device=device)

    def _fused_repulsion(
        self,
        z: Tensor,
        mask: Tensor,
        queue: Tensor | None,
        queue_mask: Tensor | None,
        pseudo_labels: Tensor | None,
        uniform: bool,
    ) -> tuple[Tensor, Tensor]:
        """``L_CR`` and the negative weights' mean entropy by :func:`weighted_distances`.

        Same values and gradients as the dense expressions of :meth:`terms` (used with
        ``return_weights=True``), without any ``(N, M)`` mask or weight tensor kept.
        """
        n, k, _ = z.shape
        gather = self.gather_distributed
        z_all = gather_cat(z, gather)
        mask_all = gather_cat(mask.long(), gather).bool()
        m = z_all.shape[0]
        ids = torch.arange(n, device=z.device) + rank_offset(n, gather)  # own columns
        all_valid = bool(mask_all.all()) if mask_all.device.type == "cpu" else False

        def row_ok(x: int) -> Tensor | None:
            return None if all_valid else mask[:, x]

        def col_ok_all(y: int) -> Tensor | None:
            return None if all_valid else mask_all[:, y]

        groups = groups_all = None
        if pseudo_labels is not None:
            groups, groups_all = pseudo_labels, gather_cat(pseudo_labels, gather)
        coef = 0.0 if uniform else -self.tau_neg
        # one unbind per tensor: its backward stacks the views' gradients once
        views = z.unbind(1)
        views_all = views if z_all is z else z_all.unbind(1)
        rows: list[Tensor] = []
        entropies: list[Tensor] = []
        row_valid: list[Tensor] = []
        if queue is None:
            pairs = self.view_pairs(k, z.device).tolist()
            for x, y in zip(pairs[0], pairs[1], strict=True):
                query_ok = None if all_valid else mask[:, x] & mask[:, y]
                cands = _Candidates(query_ok, col_ok_all(y), 0, None, ids, groups, groups_all)
                f, lse = weighted_distances(
                    views[x],
                    views_all[y],
                    coef,
                    cands,
                    grad_weights=not self._detach(False),
                    chunk_size=self.chunk_size,
                )
                row = -self.beta * f
                if self.debiased:
                    d_own = (views[x] - views[y]).pow(2).sum(-1)  # official `pos`
                    row = (-self.tau_plus * d_own + row) / (1.0 - self.tau_plus)
                rows.append(row)
                entropies.append(lse - coef * f.detach())
                row_valid.append(torch.isfinite(lse))
        else:
            q_size = queue.shape[0]
            queue = queue.detach().to(z.dtype)
            keep_q = None
            if queue_mask is not None:
                if queue_mask.shape not in ((q_size,), (n, q_size)):
                    raise ValueError(
                        f"queue_mask must have shape (Q,) or (N, Q) with Q={q_size}, "
                        f"N={n}; got {tuple(queue_mask.shape)}"
                    )
                keep_q = queue_mask.to(device=z.device, dtype=torch.bool).expand(n, q_size)
            queue_flag, batch_flag = not self._detach(True), not self._detach(False)
            grad_weights: Tensor | bool = queue_flag
            if self.intra_batch_negatives and queue_flag != batch_flag:
                grad_weights = torch.cat(
                    [
                        torch.full((q_size,), queue_flag, device=z.device),
                        torch.full((m,), batch_flag, device=z.device),
                    ]
                )
            for x in range(k):
                keys = queue
                col_ok = None
                if self.intra_batch_negatives:
                    keys = torch.cat([queue, views_all[x]])
                    if not all_valid:
                        col_ok = torch.cat(
                            [torch.ones(q_size, dtype=torch.bool, device=z.device), mask_all[:, x]]
                        )
                    cands = _Candidates(row_ok(x), col_ok, q_size, keep_q, ids, groups, groups_all)
                else:
                    cands = _Candidates(row_ok(x), None, q_size, keep_q)
                f, lse = weighted_distances(
                    views[x],
                    keys,
                    coef,
                    cands,
                    grad_weights=grad_weights,
                    chunk_size=self.chunk_size,
                )
                rows.append(-self.beta * f)
                entropies.append(lse - coef * f.detach())
                row_valid.append(torch.isfinite(lse))
        valid = torch.stack(row_valid)
        repulsion = _masked_mean(torch.where(valid, torch.stack(rows), 0.0), valid)
        entropy = _masked_mean(torch.where(valid, torch.stack(entropies), 0.0), valid)
        return repulsion, entropy

    # -------------------------------------------------------------------- terms

    def terms(
        self,
        views: Tensor | Sequence[Tensor],
        mask: Tensor | None = None,
        keys: Tensor | Sequence[Tensor] | None = None,
        queue: Tensor | None = None,
        queue_mask: Tensor | None = None,
        pseudo_labels: Tensor | None = None,
        return_weights: bool = False,
    ) -> dict[str, Tensor]:
        """``loss``, ``attraction``, ``repulsion``, ``entropy_pos``, ``entropy_neg``.

        Args:
            views: ``(N, K, D)`` (or K tensors ``(N, D)``), K >= 2 observations per
                sample; every observation of a sample is a positive of the others.
            mask: ``(N, K)`` bool, False for padded observations (ignored everywhere).
            keys: Optional ``(N, K, D)`` momentum keys; the attraction then pulls
                ``z_i^x`` towards ``keys_i^k`` (``k ≠ x``) as the official MoCo code.
            queue: Optional ``(Q, D)`` negatives (no gradient); switches the repulsion
                to the MoCo form (every view a query, queue + same-view batch).
            queue_mask: ``(Q,)`` or ``(N, Q)`` bool, False where a queue entry is not a
                negative (another pseudo-label group, the sample itself).
            pseudo_labels: ``(N,)``; in-batch negatives must share the query's label.
            return_weights: Also return ``weights_pos`` ``(N, K, K)`` (query view x,
                positive view k), ``weights_neg`` (``(P, N, M)`` for view pairs
                ``pairs`` ``(2, P)``, or ``(K, N, Q [+ M])`` with a queue) and
                ``valid_pos`` / ``valid_neg`` masks.
        """
        z = _as_views(views, "views")
        n, k, dim = z.shape
        if k < 2:
            raise ValueError(
                f"CCTLoss needs K >= 2 observations per sample (positives of each other), "
                f"got views of shape {tuple(z.shape)}; use a view with more augmentations "
                "or contrast two modalities"
            )
        if queue is None and n < 2:
            raise ValueError(
                f"CCTLoss needs at least 2 samples for in-batch negatives, got {n}; use a "
                "larger batch (drop_last=True) or a queue"
            )
        if mask is None:
            mask = torch.ones(n, k, dtype=torch.bool, device=z.device)
        if mask.shape != (n, k):
            raise ValueError(f"mask must have shape (N, K) = {(n, k)}, got {tuple(mask.shape)}")
        mask = mask.to(device=z.device, dtype=torch.bool)
        t = None
        if keys is not None:
            t = _as_views(keys, "keys")
            if t.shape != z.shape:
                raise ValueError(
                    f"keys must have the shape of views {tuple(z.shape)}, got {tuple(t.shape)}"
                )
        if pseudo_labels is not None and pseudo_labels.shape != (n,):
            raise ValueError(
                f"pseudo_labels must have shape (N,) = ({n},), got {tuple(pseudo_labels.shape)}"
            )
        if queue is not None:
            if self.debiased:
                raise ValueError(
                    "debiased=True is defined for the in-batch repulsion of the small-scale "
                    "code only; drop the queue (queue_size=0) or set debiased=False"
                )
            if queue.dim() != 2 or queue.shape[1] != dim:
                raise ValueError(f"queue must have shape (Q, {dim}), got {tuple(queue.shape)}")
        if self.normalize:
            z = F.normalize(z, dim=-1)
            t = None if t is None else F.normalize(t, dim=-1)
            queue = None if queue is None else F.normalize(queue, dim=-1)

        out: dict[str, Tensor] = {}
        # ---------------------------------------------------------- attraction
        target = z if t is None else t
        d_pos = squared_distances(z, target)  # (N, K, K), a batched matmul: no (N, K, K, D)
        eye = torch.eye(k, dtype=torch.bool, device=z.device)
        valid_pos = mask.unsqueeze(2) & mask.unsqueeze(1) & ~eye
        logits_pos = self.tau_pos * (d_pos.detach() if self._detach(t is not None) else d_pos)
        w_pos = conditional_weights(
            logits_pos, valid_pos, uniform=self.weighting in ("uniform", "uniform_attraction")
        )
        rows_pos = valid_pos.any(-1)
        attraction = self.alpha * _masked_mean((w_pos * d_pos).sum(-1), rows_pos)
        out["attraction"] = attraction
        out["entropy_pos"] = _masked_mean(_entropy(w_pos.detach()), rows_pos)

        # ----------------------------------------------------------- repulsion
        uniform_neg = self.weighting in ("uniform", "uniform_repulsion")
        if not return_weights:
            repulsion, entropy_neg = self._fused_repulsion(
                z, mask, queue, queue_mask, pseudo_labels, uniform_neg
            )
            out["repulsion"] = repulsion
            out["entropy_neg"] = entropy_neg
            out["loss"] = attraction + repulsion
            return out
        z_all = gather_cat(z, self.gather_distributed)
        mask_all = gather_cat(mask.long(), self.gather_distributed).bool()
        m = z_all.shape[0]
        offset = rank_offset(n, self.gather_distributed)
        not_self = torch.arange(m, device=z.device).unsqueeze(0) != (
            torch.arange(n, device=z.device) + offset
        ).unsqueeze(1)  # (N, M)
        if pseudo_labels is not None:
            groups_all = gather_cat(pseudo_labels, self.gather_distributed)
            not_self = not_self & same_group_mask(pseudo_labels, groups_all)
        if queue is None:
            pairs = self.view_pairs(k, z.device)
            xs, ys = pairs[0], pairs[1]
            zq = z[:, xs].transpose(0, 1)  # (P, N, D) queries: view x
            zc = z_all[:, ys].transpose(0, 1)  # (P, M, D) candidates: view y
            d_neg = squared_distances(zq, zc)  # (P, N, M)
            query_ok = (mask[:, xs] & mask[:, ys]).T  # (P, N): the pair exists for sample i
            valid_neg = (
                query_ok.unsqueeze(2) & mask_all[:, ys].T.unsqueeze(1) & not_self.unsqueeze(0)
            )
            logits_neg = -self.tau_neg * (d_neg.detach() if self._detach(False) else d_neg)
            w_neg = conditional_weights(logits_neg, valid_neg, uniform=uniform_neg)
            rows = -self.beta * (w_neg * d_neg).sum(-1)  # (P, N)
            if self.debiased:
                d_own = (z[:, xs] - z[:, ys]).pow(2).sum(-1).T  # (P, N) official `pos`
                rows = (-self.tau_plus * d_own + rows) / (1.0 - self.tau_plus)
            if return_weights:
                out["pairs"] = pairs
        else:
            queue = queue.detach().to(z.dtype)
            zq = z.transpose(0, 1)  # (K, N, D): every view is a query
            d_q = squared_distances(zq, queue.unsqueeze(0))  # (K, N, Q)
            q_ok = torch.ones(n, queue.shape[0], dtype=torch.bool, device=z.device)
            if queue_mask is not None:
                if queue_mask.shape not in ((queue.shape[0],), (n, queue.shape[0])):
                    raise ValueError(
                        f"queue_mask must have shape (Q,) or (N, Q) with Q={queue.shape[0]}, "
                        f"N={n}; got {tuple(queue_mask.shape)}"
                    )
                q_ok = q_ok & queue_mask.to(device=z.device, dtype=torch.bool)
            valid_q = mask.T.unsqueeze(2) & q_ok.unsqueeze(0)
            logit_d = [d_q.detach() if self._detach(True) else d_q]
            d_parts, valid_parts = [d_q], [valid_q]
            if self.intra_batch_negatives:
                d_b = squared_distances(zq, z_all.transpose(0, 1))  # (K, N, M)
                valid_b = mask.T.unsqueeze(2) & mask_all.T.unsqueeze(1) & not_self.unsqueeze(0)
                logit_d.append(d_b.detach() if self._detach(False) else d_b)
                d_parts.append(d_b)
                valid_parts.append(valid_b)
            d_neg = torch.cat(d_parts, dim=-1)
            valid_neg = torch.cat(valid_parts, dim=-1)
            logits_neg = -self.tau_neg * torch.cat(logit_d, dim=-1)
            w_neg = conditional_weights(logits_neg, valid_neg, uniform=uniform_neg)
            rows = -self.beta * (w_neg * d_neg).sum(-1)  # (K, N)
        rows_neg = valid_neg.any(-1)
        repulsion = _masked_mean(rows, rows_neg)
        out["repulsion"] = repulsion
        out["entropy_neg"] = _masked_mean(_entropy(w_neg.detach()), rows_neg)
        out["loss"] = attraction + repulsion
        if return_weights:
            out.update(
                weights_pos=w_pos, weights_neg=w_neg, valid_pos=valid_pos, valid_neg=valid_neg
            )
        return out

    def forward(
        self,
        views: Tensor | Sequence[Tensor],
        mask: Tensor | None = None,
        keys: Tensor | Sequence[Tensor] | None = None,
        queue: Tensor | None = None,
        queue_mask: Tensor | None = None,
        pseudo_labels: Tensor | None = None,
    ) -> Tensor:
        """Scalar ``L_CA + L_CR``; see :meth:`terms` for the arguments."""
        return self.terms(views, mask, keys, queue, queue_mask, pseudo_labels)["loss"]

    def extra_repr(self) -> str:
        return (
            f"tau_pos={self.tau_pos}, tau_neg={self.tau_neg}, alpha={self.alpha}, "
            f"beta={self.beta}, weighting={self.weighting!r}, "
            f"detach_weights={self.detach_weights!r}, debiased={self.debiased}"
        )
