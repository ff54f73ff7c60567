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
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from lightly_mm_plugins.losses import (
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
    ) -> None:
        super().__init__()
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
        d_pos = (z.unsqueeze(2) - target.unsqueeze(1)).pow(2).sum(-1)  # (N, K, K)
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
