"""MXM-CLR's multifold-aware hybrid loss as a ``lightly.loss``-style module.

MXM-CLR (Wang, Jiang, Zou, Ma, "MXM-CLR: A Unified Framework for Contrastive
Learning of Multifold Cross-Modal Representations", arXiv 2303.10839) trains
on *multifold* data: every instance has several observations per modality
(several captions of one image, several rendered views of one shape). CLIP
treats one pair per instance as the positive and everything else, the
instance's other observations included, as negatives. MXM-CLR's
"multifold-aware hybrid loss considers multiple positive observations when
computing the hard and soft relationships for the cross-modal data pairs"
(abstract).

The official repository holds only a README and the paper's Section 3 could
not be read offline, so this module implements the reading the project's
issue prescribes (every unverified choice is listed in the plugin README):

Notation. ``u_p = n(a_p)`` for every valid observation ``p`` of modality A
(``N·M_a`` rows), ``v_q = n(b_q)`` for every valid observation of modality B,
``id(·)`` the instance id of an observation, ``τ`` the temperature, ``λ`` the
soft weight, ``sg`` stop-gradient::

    s_pq  = u_p · v_q / τ                                    logits over all N·M_b columns
    P(p)  = {q valid : id(q) = id(p)}                        positives: the instance's folds
    K(p)  = {q valid} (∩ same pseudo-label group ∪ P(p))     the softmax support
    ℓ_pq  = s_pq − log Σ_{q'∈K(p)} exp s_pq'                 log-probabilities

    hard  h_pq = 1[q ∈ P(p)] / |P(p)|                        binary multi-positive target
    soft  w_pq = exp(sg(u_p·v_q)/τ_s) / Σ_{q'∈P(p)} exp(sg(u_p·v_q')/τ_s),  q ∈ P(p)
    y_pq  = (1 − λ) h_pq + λ w_pq                            one target, one cross-entropy

    L_{A→B} = 1/|A⁺| Σ_{p∈A⁺} −Σ_q y_pq ℓ_pq                 A⁺: valid anchors with a positive
    L       = ½ (L_{A→B} + L_{B→A})

The hard target asks every observation of the instance to be matched (the
SupCon "mean over positives" form). The soft target spreads the positive mass
over the instance's folds by their current (detached) cross-modal similarity.
With ``τ_s = τ`` (the default) ``w_p·`` is the model's own softmax renormalised
over ``P(p)``, and the gradient of the soft term equals that of MIL-NCE,
``−log Σ_{q∈P(p)} softmax(s_p)_q`` ("match at least one fold"); its value
differs only by the entropy ``H(w_p·)``. Because cross-entropy is linear in
the target, ``L = (1−λ) L_hard + λ L_soft``; :meth:`MXMCLRLoss.terms` returns
both parts for logging.

With one fold per instance ``h = w = one-hot`` and ``L`` is exactly CLIP's
symmetric InfoNCE (:func:`lightly_mm_plugins.losses.cross_modal_info_nce`),
whatever ``λ``.

Everything is one ``(N·M_a) × (N·M_b)`` similarity matrix per direction; there
is no Python loop over instances or folds. Because cross-entropy is linear in
the target and the targets rows sum to 1, each anchor's terms need only the
log-sum-exp of its row and its positives' logits::

    hard_p = lse_K(p) − 1/|P(p)| Σ_{q∈P(p)} s_pq,    soft_p = lse_K(p) − Σ_{q∈P(p)} w_pq s_pq
    ∂/∂s_pq [(1−λ) hard_p + λ soft_p] = softmax_K(p)_q − y_pq

so a custom autograd function computes both from the scores of a block of
anchor rows and recomputes them in the backward (masks are built per block
from the id / validity / group vectors, never as ``(N·M)²`` tensors). With
``chunk_size`` the rows are processed in blocks of that size and nothing of
size ``(N·M_a) × (N·M_b)`` is kept (memory linear in the batch, one more
matmul in the backward), the streaming log-sum-exp of
:func:`lightly_mm_plugins.losses.matmul_logsumexp` extended by the positives.

Example:
    >>> import torch
    >>> loss_fn = MXMCLRLoss(temperature=0.1)
    >>> images, captions = torch.randn(4, 1, 8), torch.randn(4, 5, 8)
    >>> loss = loss_fn(images, captions)
    >>> loss.shape
    torch.Size([])
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from lightly_mm_plugins.losses import (
    check_all,
    check_chunk_size,
    check_gather_distributed,
    check_temperature,
    cross_modal_info_nce,
    gather_cat,
    rank_offset,
    world_size,
)
from lightly_mm_plugins.temperature import MAX_LOGIT_SCALE, LogitScale, LogitScaleMixin

__all__ = ["MAX_LOGIT_SCALE", "MXMCLRLoss", "MXMCLRTerms"]


@dataclass
class MXMCLRTerms:
    """The hybrid loss and its two parts: ``loss = (1−λ)·hard + λ·soft``."""

    loss: Tensor
    hard: Tensor
    soft: Tensor


def _as_folds(x: Tensor, name: str) -> Tensor:
    if x.dim() == 2:
        x = x.unsqueeze(1)
    if x.dim() != 3:
        raise ValueError(
            f"{name} must have shape (N, M, D) (N instances, M folds) or (N, D), "
            f"got {tuple(x.shape)}"
        )
    return x


def _as_mask(mask: Tensor | None, x: Tensor, name: str) -> Tensor:
    if mask is None:
        return torch.ones(x.shape[:2], dtype=torch.bool, device=x.device)
    if mask.dim() == 1 and x.shape[1] == 1:
        mask = mask.unsqueeze(1)
    if tuple(mask.shape) != tuple(x.shape[:2]):
        raise ValueError(
            f"{name} must have shape (N, M) = {tuple(x.shape[:2])} like its embeddings, "
            f"got {tuple(mask.shape)}"
        )
    if mask.dtype != torch.bool:
        raise ValueError(f"{name} must be a bool tensor (True = real fold), got {mask.dtype}")
    return mask


def _pad_folds(x: Tensor, mask: Tensor, folds: int) -> tuple[Tensor, Tensor]:
    """Pad ``x`` ``(N, M, D)`` and ``mask`` ``(N, M)`` with invalid folds up to ``folds``."""
    extra = folds - x.shape[1]
    if extra <= 0:
        return x, mask
    return F.pad(x, (0, 0, 0, extra)), F.pad(mask, (0, extra), value=False)


def _half_to_float(x: Tensor) -> Tensor:
    """Soft-max statistics under mixed precision are computed in float32."""
    return x.float() if x.dtype in (torch.float16, torch.bfloat16) else x


_Labels = tuple[Tensor, Tensor, Tensor, Tensor | None, Tensor | None]


def _block(u: Tensor, v: Tensor, start: int, stop: int, labels: _Labels) -> tuple[Tensor, Tensor]:
    """Logits of anchors ``start:stop`` with dropped candidates at ``-inf``, and the positives.

    ``labels = (ids_u, ids_v, valid_v, groups_u, groups_v)``. A candidate ``q`` of
    anchor ``p`` is a positive iff ``valid_v[q]`` and ``ids_u[p] == ids_v[q]``; it is
    kept in the softmax support iff it is valid and (no groups, same group, or a
    positive). Masks exist only for the block, ``(stop - start, Q)``. (``-inf``, not
    a huge finite number: CPU ``exp`` takes a slow path below about -87, and is only
    moderately slower on ``-inf``.)
    """
    ids_u, ids_v, valid_v, groups_u, groups_v = labels
    scores = _half_to_float(u[start:stop] @ v.T)
    lowest = float("-inf")
    positive = (ids_u[start:stop, None] == ids_v[None, :]).logical_and_(valid_v[None, :])
    if groups_u is not None and groups_v is not None:
        drop = groups_u[start:stop, None] != groups_v[None, :]
        drop.logical_and_(~positive).logical_or_(~valid_v[None, :])
        scores.masked_fill_(drop, lowest)
    else:
        scores.masked_fill_(~valid_v[None, :], lowest)
    return scores, positive


def _positive_counts(ids_u: Tensor, ids_v: Tensor, valid_v: Tensor) -> Tensor:
    """``|P(p)|`` for every anchor: valid candidates with its id, by sorting (no dense mask).

    Counting a dense bool mask converts it to integers first (a full-size copy);
    a sorted copy of the candidate ids and two binary searches per anchor give the
    same counts in ``O((P + Q) log Q)``.
    """
    sentinel = torch.iinfo(torch.long).min  # stands in for invalid candidates
    keys = torch.where(valid_v, ids_v, torch.full_like(ids_v, sentinel)).sort().values
    count = torch.searchsorted(keys, ids_u, right=True) - torch.searchsorted(keys, ids_u)
    invalid = (~valid_v).sum()
    return count - torch.where(ids_u == sentinel, invalid, torch.zeros_like(invalid))


def _positive_exp(
    scores: Tensor, positive: Tensor, factor: Tensor, out: Tensor, top: Tensor | None = None
) -> tuple[Tensor, Tensor]:
    """``exp(factor·(s_pq − top_p))`` on the positives, 0 elsewhere, into ``out``; and ``top``.

    ``top_p`` is the largest positive logit of row ``p`` (0 on rows without a
    positive, which come out all 0). Normalised over the row this is the soft
    target ``w``; shifting by the largest positive keeps it finite whatever the
    gap to the other candidates.
    """
    if top is None:
        torch.where(positive, scores, torch.full_like(out[:1, :1], float("-inf")), out=out)
        top = out.amax(dim=1, keepdim=True)
        top = torch.where(torch.isfinite(top), top, 0.0)
    # exp of the non-positives is computed at 0 and then zeroed: CPU exp is several
    # times slower on -inf (and on anything below about -87) than on ordinary inputs
    torch.where(positive, scores, top, out=out)
    out.sub_(top).mul_(factor).exp_()
    return torch.where(positive, out, torch.zeros_like(out[:1, :1]), out=out), top


class _MultifoldCrossEntropy(torch.autograd.Function):
    """Per-anchor hard and soft cross-entropies of one direction (module docstring).

    Inputs: ``u`` ``(P, D)`` anchors already multiplied by the logit scale, ``v``
    ``(Q, D)`` candidates, the label vectors of :func:`_block`, the detached soft
    factor ``f`` (``1`` or ``1/(scale·τ_s)``) and the block size (None: one block,
    whose scores are kept for the backward instead of recomputed). Returns
    ``hard``, ``soft`` ``(P,)`` and the (non-differentiable) positive counts.

    Per anchor, with ``e_pq = exp(f (s_pq − top_p))`` on the positives
    (``top_p`` their largest logit), ``A_p = Σ_q e_pq`` and ``w = e / A``::

        hard_p = lse_p − Σ_{q∈P} s_pq / |P(p)|,   soft_p = lse_p − Σ_q e_pq s_pq / A_p

    Backward: ``G_pq = (g_h + g_s)_p softmax_K(p)_q − g_s,p w_pq − g_h,p [q∈P(p)] / |P(p)|``,
    ``du = G v``, ``dv = Gᵀ u``. Block-sized temporaries live in one scratch buffer
    reused in place (and handed to the backward): on the CPU a fresh large tensor
    costs more in page faults than the arithmetic on it.
    """

    @staticmethod
    @torch.amp.custom_fwd(device_type="cuda")
    def forward(  # type: ignore[override]
        ctx: Any,
        u: Tensor,
        v: Tensor,
        ids_u: Tensor,
        ids_v: Tensor,
        valid_v: Tensor,
        groups_u: Tensor | None,
        groups_v: Tensor | None,
        factor: Tensor,
        chunk: int | None,
    ) -> tuple[Tensor, Tensor, Tensor]:
        labels = (ids_u, ids_v, valid_v, groups_u, groups_v)
        rows = u.shape[0]
        step = max(rows, 1) if chunk is None else chunk
        dtype = torch.float32 if u.dtype in (torch.float16, torch.bfloat16) else u.dtype
        lse = torch.empty(rows, dtype=dtype, device=u.device)
        top = torch.empty(rows, 1, dtype=dtype, device=u.device)
        norm = torch.empty(rows, 1, dtype=dtype, device=u.device)
        hard = torch.empty(rows, dtype=dtype, device=u.device)
        soft = torch.empty(rows, dtype=dtype, device=u.device)
        count = _positive_counts(ids_u, ids_v, valid_v)
        per_positive = 1.0 / count.clamp(min=1).to(dtype)
        work = torch.empty(min(step, rows), v.shape[0], dtype=dtype, device=u.device)
        zero = torch.zeros((), dtype=dtype, device=u.device)
        kept: Tensor | None = None
        kept_positive: Tensor | None = None
        for start in range(0, rows, step):
            stop = min(start + step, rows)
            scores, positive = _block(u, v, start, stop, labels)
            buf = work[: stop - start]
            shift = scores.amax(dim=1, keepdim=True)
            shift = torch.where(torch.isfinite(shift), shift, 0.0)
            block_lse = torch.sub(scores, shift, out=buf).exp_().sum(dim=1).log_()
            block_lse.add_(shift.squeeze(1))
            pos_sum = torch.where(positive, scores, zero, out=buf).sum(dim=1)
            e, block_top = _positive_exp(scores, positive, factor, buf)
            block_norm = e.sum(dim=1, keepdim=True).clamp_(min=torch.finfo(dtype).tiny)
            # sum_q e_pq s_pq; 0 · (-inf) on dropped non-positives is the only NaN source
            weighted = e.mul_(scores).nan_to_num_(nan=0.0).sum(dim=1, keepdim=True)
            lse[start:stop] = block_lse
            top[start:stop] = block_top
            norm[start:stop] = block_norm
            hard[start:stop] = block_lse - pos_sum * per_positive[start:stop]
            soft[start:stop] = block_lse - (weighted / block_norm).squeeze(1)
            if chunk is None:
                kept, kept_positive = scores, positive
        ctx.step, ctx.work = step, work
        ctx.save_for_backward(u, v, lse, top, norm, per_positive, kept, kept_positive, factor)
        ctx.labels = labels
        ctx.mark_non_differentiable(count)
        return hard, soft, count

    @staticmethod
    @torch.amp.custom_bwd(device_type="cuda")
    @torch.autograd.function.once_differentiable
    def backward(ctx: Any, g_hard: Tensor, g_soft: Tensor, _: Tensor) -> tuple[Tensor | None, ...]:
        u, v, lse, top, norm, per_positive, kept, kept_positive, factor = ctx.saved_tensors
        labels: _Labels = ctx.labels
        work: Tensor = ctx.work  # the forward's scratch buffer (pages already mapped)
        need_u, need_v = ctx.needs_input_grad[0], ctx.needs_input_grad[1]
        grad_u = torch.empty_like(u) if need_u else None
        grad_v = torch.zeros(v.shape, dtype=lse.dtype, device=v.device) if need_v else None
        rows, step = u.shape[0], ctx.step
        lse = torch.where(torch.isfinite(lse), lse, 0.0)  # rows without support: all -inf
        zero = torch.zeros((), dtype=lse.dtype, device=u.device)
        grad_buf = torch.empty_like(work)
        for start in range(0, rows, step):
            stop = min(start + step, rows)
            if kept is not None and kept_positive is not None:
                scores, positive = kept, kept_positive
            else:
                scores, positive = _block(u, v, start, stop, labels)
            grad, buf = grad_buf[: stop - start], work[: stop - start]
            gh = g_hard[start:stop, None].to(lse.dtype)
            gs = g_soft[start:stop, None].to(lse.dtype)
            # (g_h + g_s) softmax_K(p) (dropped entries: exp(-inf) = 0) ...
            torch.sub(scores, lse[start:stop, None], out=grad).exp_().mul_(gh + gs)
            # ... minus g_s w_pq ...
            e, _ = _positive_exp(scores, positive, factor, buf, top[start:stop])
            grad.sub_(e.mul_(gs / norm[start:stop]))
            # ... minus g_h / |P(p)| on the positives
            hard_target = gh * per_positive[start:stop, None]
            grad.sub_(torch.where(positive, hard_target, zero, out=buf))
            operand = grad.to(u.dtype)
            if grad_u is not None:
                grad_u[start:stop] = (operand @ v).to(u.dtype)
            if grad_v is not None:
                grad_v += (u[start:stop].T @ operand).T.to(grad_v.dtype)
        if grad_v is not None:
            grad_v = grad_v.to(v.dtype)
        return grad_u, grad_v, None, None, None, None, None, None, None


class _BlockPositives(torch.autograd.Function):
    """:class:`_MultifoldCrossEntropy` for the regular layout: every fold valid, one id
    per instance, no process group.

    Anchor row ``p`` belongs to instance ``p // m_u`` and its positives are the
    candidate columns ``[inst · m_v, (inst + 1) · m_v)``, a contiguous block. So no
    ``(rows, Q)`` positive mask exists: the positives' logits are gathered as a
    ``(rows, m_v)`` tensor from the score block viewed as ``(rows, N, m_v)``, the
    soft target lives on that small tensor, and the ``(rows, Q)`` passes are only
    those of CLIP (scores, log-sum-exp, and in the backward the softmax); the
    targets are subtracted on the gathered blocks. Same values and gradients as the
    general kernel.
    """

    @staticmethod
    @torch.amp.custom_fwd(device_type="cuda")
    def forward(  # type: ignore[override]
        ctx: Any,
        u: Tensor,
        v: Tensor,
        m_u: int,
        m_v: int,
        groups_u: Tensor | None,
        groups_v: Tensor | None,
        factor: Tensor,
        chunk: int | None,
    ) -> tuple[Tensor, Tensor]:
        rows, q = u.shape[0], v.shape[0]
        step = max(rows, 1) if chunk is None else chunk
        dtype = torch.float32 if u.dtype in (torch.float16, torch.bfloat16) else u.dtype
        lse = torch.empty(rows, dtype=dtype, device=u.device)
        weights = torch.empty(rows, m_v, dtype=dtype, device=u.device)
        hard = torch.empty(rows, dtype=dtype, device=u.device)
        soft = torch.empty(rows, dtype=dtype, device=u.device)
        inst = torch.arange(rows, device=u.device) // m_u
        work = torch.empty(min(step, rows), q, dtype=dtype, device=u.device)
        kept: Tensor | None = None
        for start in range(0, rows, step):
            stop = min(start + step, rows)
            scores = _BlockPositives._scores(u, v, groups_u, groups_v, start, stop)
            shift = scores.amax(dim=1, keepdim=True)
            buf = work[: stop - start]
            block_lse = torch.sub(scores, shift, out=buf).exp_().sum(dim=1).log_()
            block_lse.add_(shift.squeeze(1))
            pos = _BlockPositives._positives(scores, inst[start:stop], m_v)
            w = torch.softmax(pos * factor, dim=1)
            lse[start:stop] = block_lse
            weights[start:stop] = w
            hard[start:stop] = block_lse - pos.mean(dim=1)
            soft[start:stop] = block_lse - (w * pos).sum(dim=1)
            if chunk is None:
                kept = scores
        ctx.step, ctx.m_v, ctx.work = step, m_v, work
        ctx.save_for_backward(u, v, lse, weights, inst, groups_u, groups_v, kept)
        return hard, soft

    @staticmethod
    def _scores(
        u: Tensor,
        v: Tensor,
        groups_u: Tensor | None,
        groups_v: Tensor | None,
        start: int,
        stop: int,
    ) -> Tensor:
        scores = _half_to_float(u[start:stop] @ v.T)
        if groups_u is not None and groups_v is not None:  # positives share the group
            scores.masked_fill_(groups_u[start:stop, None] != groups_v[None, :], float("-inf"))
        return scores

    @staticmethod
    def _positives(scores: Tensor, inst: Tensor, m_v: int) -> Tensor:
        """``(rows, m_v)`` logits of each row's own instance block."""
        rows = scores.shape[0]
        return scores.view(rows, -1, m_v)[torch.arange(rows, device=scores.device), inst]

    @staticmethod
    @torch.amp.custom_bwd(device_type="cuda")
    @torch.autograd.function.once_differentiable
    def backward(ctx: Any, g_hard: Tensor, g_soft: Tensor) -> tuple[Tensor | None, ...]:
        u, v, lse, weights, inst, groups_u, groups_v, kept = ctx.saved_tensors
        step, m_v = ctx.step, ctx.m_v
        rows = u.shape[0]
        grad_u = torch.empty_like(u) if ctx.needs_input_grad[0] else None
        grad_v = (
            torch.zeros(v.shape, dtype=lse.dtype, device=v.device)
            if ctx.needs_input_grad[1]
            else None
        )
        for start in range(0, rows, step):
            stop = min(start + step, rows)
            if kept is not None:
                grad = kept
            else:
                grad = _BlockPositives._scores(u, v, groups_u, groups_v, start, stop)
            gh = g_hard[start:stop, None].to(lse.dtype)
            gs = g_soft[start:stop, None].to(lse.dtype)
            # (g_h + g_s) softmax_K(p), then minus g_s w + g_h / m_v on the own block
            grad.sub_(lse[start:stop, None]).exp_().mul_(gh + gs)
            n_rows = stop - start
            idx = torch.arange(n_rows, device=grad.device)
            block = grad.view(n_rows, -1, m_v)
            block[idx, inst[start:stop]] -= gs * weights[start:stop] + gh / m_v
            operand = grad.to(u.dtype)
            if grad_u is not None:
                grad_u[start:stop] = (operand @ v).to(u.dtype)
            if grad_v is not None:
                grad_v += (u[start:stop].T @ operand).T.to(grad_v.dtype)
        if grad_v is not None:
            grad_v = grad_v.to(v.dtype)
        return grad_u, grad_v, None, None, None, None, None, None


class MXMCLRLoss(LogitScaleMixin, nn.Module):
    """Multifold-aware hybrid (hard + soft) cross-modal contrastive loss (MXM-CLR).

    See the module docstring for the equations. Every observation pair of the
    same instance (same instance id) is a positive; only the other modality's
    observations are candidates (no intra-modal term), both directions, every
    valid observation is an anchor. Padded folds (``mask`` False) are neither
    anchors nor candidates and receive exactly zero gradient. Under mixed
    precision the softmax statistics are computed in float32.

    Args:
        temperature: Softmax temperature ``τ``, at least 0.01 (``1/τ ≤ 100``; a
            smaller one is an error). The paper's value could
            not be read; 0.07 is CLIP's initial value.
        soft_weight: ``λ`` in ``[0, 1]``, the weight of the soft target in the
            mixed target ``(1−λ)·hard + λ·soft``. 0 gives the pure multi-positive
            (hard) loss. Paper value not verified; 0.5 weighs both equally.
        soft_temperature: ``τ_s`` of the soft targets. None (default) uses the
            current ``τ`` (soft target = own detached softmax over the positives).
        learnable_temperature: Learn ``log(1/τ)`` as CLIP does; ``1/τ ≤ 100`` is
            applied to the parameter after each optimiser step (:meth:`clamp_`,
            called by the pipeline; call it after ``optimizer.step()`` in a script
            of your own), so the temperature keeps its gradient at the cap.
        gather_distributed: Gather observations, masks, instance ids and pseudo
            labels of all ranks as candidates (gradient-carrying). Positives are
            found by instance id, so an id seen on two ranks is one instance.
            Every rank needs the same N; fold counts are padded to the largest.
        normalize: L2-normalise embeddings first (cosine similarities).
        chunk_size: ``None`` (default): each direction's ``(N·M_a) × (N·M_b)``
            scores are computed once and kept for the backward. An int: anchors
            in blocks of that many rows, nothing quadratic kept (memory linear in
            the batch; the backward recomputes each block, one more matmul).
            Same values and gradients either way.

    Shapes:
        ``forward(a=(N, M_a, D), b=(N, M_b, D), mask_a=(N, M_a), mask_b=(N, M_b),
        instance_ids=(N,), pseudo_labels=(N,)) -> ()``. ``(N, D)`` inputs are one
        fold. Masks default to all-valid, ids to ``arange(N)`` (+ rank offset).

    Example:
        >>> import torch
        >>> loss_fn = MXMCLRLoss(temperature=0.1, soft_weight=0.5)
        >>> a, b = torch.randn(3, 2, 8), torch.randn(3, 4, 8)
        >>> mask_b = torch.tensor([[1, 1, 1, 1], [1, 1, 0, 0], [1, 0, 0, 0]]).bool()
        >>> loss = loss_fn(a, b, mask_b=mask_b, instance_ids=torch.tensor([7, 8, 9]))
    """

    def __init__(
        self,
        temperature: float = 0.07,
        soft_weight: float = 0.5,
        soft_temperature: float | None = None,
        learnable_temperature: bool = False,
        gather_distributed: bool = False,
        normalize: bool = True,
        chunk_size: int | None = None,
    ) -> None:
        super().__init__()
        self.chunk_size = check_chunk_size(chunk_size)
        if soft_temperature is not None:
            soft_temperature = check_temperature(soft_temperature, "soft_temperature")
        weight = float(soft_weight)
        if not 0.0 <= weight <= 1.0:
            raise ValueError(
                f"soft_weight must be in [0, 1] (0 = hard targets only), got {soft_weight!r}"
            )
        check_gather_distributed(gather_distributed)
        self.soft_weight = weight
        self.soft_temperature = soft_temperature
        self.gather_distributed = gather_distributed
        self.normalize = normalize
        self.logit_scale = LogitScale(temperature, learnable=learnable_temperature)
        self._register_load_state_dict_pre_hook(self.logit_scale.upgrade_old_state)

    def _direction(
        self,
        anchors: Tensor,
        candidates: Tensor,
        ids: Tensor,
        candidate_ids: Tensor,
        anchor_valid: Tensor,
        candidate_valid: Tensor,
        groups: Tensor | None,
        candidate_groups: Tensor | None,
        factor: Tensor,
    ) -> tuple[Tensor, Tensor, Tensor]:
        """Summed hard and soft terms of one direction over its used anchors, and their count.

        ``anchors`` ``(P, D)`` already carry the logit scale. An anchor is used if it
        is valid (not padding) and has a positive; the others get zero gradient.
        """
        hard, soft, count = _MultifoldCrossEntropy.apply(
            anchors,
            candidates.to(anchors.dtype),
            ids,
            candidate_ids,
            candidate_valid,
            groups,
            candidate_groups,
            factor,
            self.chunk_size,
        )
        used = anchor_valid & (count > 0)
        zero = hard.new_zeros(())
        return torch.where(used, hard, zero).sum(), torch.where(used, soft, zero).sum(), used.sum()

    def forward(
        self,
        a: Tensor,
        b: Tensor,
        mask_a: Tensor | None = None,
        mask_b: Tensor | None = None,
        instance_ids: Tensor | None = None,
        pseudo_labels: Tensor | None = None,
    ) -> Tensor:
        return self.terms(a, b, mask_a, mask_b, instance_ids, pseudo_labels).loss

    def terms(
        self,
        a: Tensor,
        b: Tensor,
        mask_a: Tensor | None = None,
        mask_b: Tensor | None = None,
        instance_ids: Tensor | None = None,
        pseudo_labels: Tensor | None = None,
    ) -> MXMCLRTerms:
        """The loss and its hard and soft parts (same arguments as :meth:`forward`)."""
        a = _as_folds(a, "a")
        b = _as_folds(b, "b")
        n = a.shape[0]
        if n < 2 and not (self.gather_distributed and world_size() > 1):
            raise ValueError(
                f"MXMCLRLoss needs at least 2 instances (negatives), got N={n}; "
                "use a larger batch (and drop_last=True)"
            )
        if b.shape[0] != n or a.shape[-1] != b.shape[-1]:
            raise ValueError(
                f"a and b must have the same number of instances N and features D, got "
                f"{tuple(a.shape)} and {tuple(b.shape)}"
            )
        # One fold per instance, all valid, one id per instance: every anchor has
        # exactly one positive, h = w = one-hot and the loss is CLIP's InfoNCE.
        one_to_one = (
            a.shape[1] == 1
            and b.shape[1] == 1
            and mask_a is None
            and mask_b is None
            and instance_ids is None
            and not (self.gather_distributed and world_size() > 1)
        )
        # Every fold valid and one id per instance: each anchor's positives are one
        # contiguous block of candidate columns (the fast kernel _BlockPositives).
        regular = (
            mask_a is None
            and mask_b is None
            and instance_ids is None
            and not (self.gather_distributed and world_size() > 1)
        )
        mask_a = _as_mask(mask_a, a, "mask_a")
        mask_b = _as_mask(mask_b, b, "mask_b")
        gather = self.gather_distributed
        if instance_ids is None:
            instance_ids = torch.arange(n, device=a.device) + rank_offset(n, gather)
        if tuple(instance_ids.shape) != (n,):
            raise ValueError(
                f"instance_ids must have shape (N,) = ({n},), got {tuple(instance_ids.shape)}"
            )
        if pseudo_labels is not None and tuple(pseudo_labels.shape) != (n,):
            raise ValueError(
                f"pseudo_labels must have shape (N,) = ({n},), got {tuple(pseudo_labels.shape)}"
            )
        instance_ids = instance_ids.long()

        if gather:
            sizes = gather_cat(torch.tensor([[n, a.shape[1], b.shape[1]]], device=a.device))
            if sizes.shape[0] > 1:
                if bool((sizes[:, 0] != n).any()):
                    raise ValueError(
                        f"gather_distributed needs the same batch size on every rank, got "
                        f"{sizes[:, 0].tolist()}; use drop_last=True"
                    )
                a, mask_a = _pad_folds(a, mask_a, int(sizes[:, 1].max()))
                b, mask_b = _pad_folds(b, mask_b, int(sizes[:, 2].max()))

        if self.normalize:
            a = F.normalize(a, dim=-1)
            b = F.normalize(b, dim=-1)
        if one_to_one:  # the same value and gradients by the fused CLIP kernel
            loss = cross_modal_info_nce(
                a[:, 0] * self.logit_scale(),
                b[:, 0],
                temperature=1.0,
                pseudo_labels=pseudo_labels,
                normalize=False,
                chunk_size=self.chunk_size,
            )
            return MXMCLRTerms(loss=loss, hard=loss, soft=loss)
        ma, mb, d = a.shape[1], b.shape[1], a.shape[-1]
        # One row per observation: (N·M, D), its instance id, validity and group.
        ua, ub = a.reshape(n * ma, d), b.reshape(n * mb, d)
        ids_a, ids_b = instance_ids.repeat_interleave(ma), instance_ids.repeat_interleave(mb)
        valid_a, valid_b = mask_a.reshape(-1), mask_b.reshape(-1)

        ua_all, ub_all = gather_cat(ua, gather), gather_cat(ub, gather)
        ids_a_all, ids_b_all = gather_cat(ids_a, gather), gather_cat(ids_b, gather)
        valid_a_all = gather_cat(valid_a.long(), gather).bool()
        valid_b_all = gather_cat(valid_b.long(), gather).bool()
        ga = gb = ga_all = gb_all = None
        if pseudo_labels is not None:
            groups = pseudo_labels.long()
            ga, gb = groups.repeat_interleave(ma), groups.repeat_interleave(mb)
            ga_all, gb_all = gather_cat(ga, gather), gather_cat(gb, gather)

        # The logit scale multiplies the (N·M, D) anchors, not the scores.
        scale = self.logit_scale()
        stats = _half_to_float(ua[:0]).dtype
        if self.soft_temperature is None:
            factor = torch.ones((), dtype=stats, device=ua.device)
        else:  # soft logits sim / τ_s = scores / (scale · τ_s), detached
            scale_d = torch.as_tensor(scale, dtype=stats, device=ua.device).detach()
            factor = 1.0 / (scale_d * self.soft_temperature)
        if regular:
            hard_ab, soft_ab = _BlockPositives.apply(
                ua * scale, ub, ma, mb, ga, gb, factor, self.chunk_size
            )
            hard_ba, soft_ba = _BlockPositives.apply(
                ub * scale, ua, mb, ma, gb, ga, factor, self.chunk_size
            )
            hard = 0.5 * (hard_ab.mean() + hard_ba.mean())
            soft = 0.5 * (soft_ab.mean() + soft_ba.mean())
            loss = (1.0 - self.soft_weight) * hard + self.soft_weight * soft
            return MXMCLRTerms(loss=loss, hard=hard, soft=soft)
        hard_ab, soft_ab, count_ab = self._direction(
            ua * scale, ub_all, ids_a, ids_b_all, valid_a, valid_b_all, ga, gb_all, factor
        )
        hard_ba, soft_ba, count_ba = self._direction(
            ub * scale, ua_all, ids_b, ids_a_all, valid_b, valid_a_all, gb, ga_all, factor
        )

        # Normalise by the anchor counts of the *global* batch, times the world
        # size: DDP's gradient average then equals one process on all ranks' data.
        counts = torch.stack([count_ab, count_ba]).reshape(1, 2)
        counts_all = gather_cat(counts, gather)
        world = counts_all.shape[0]
        total = counts_all.sum(dim=0).to(hard_ab.dtype)
        check_all(
            total > 0,
            "MXMCLRLoss: no valid observation has a positive of its instance in the other "
            "modality; every instance needs at least one unmasked fold in both modalities",
        )
        hard = 0.5 * world * (hard_ab / total[0] + hard_ba / total[1])
        soft = 0.5 * world * (soft_ab / total[0] + soft_ba / total[1])
        loss = (1.0 - self.soft_weight) * hard + self.soft_weight * soft
        return MXMCLRTerms(loss=loss, hard=hard, soft=soft)
