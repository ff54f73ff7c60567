"""TCL's three alignment terms as ``lightly.loss``-style modules.

Triple Contrastive Learning (Yang et al., "Vision-Language Pre-Training with
Triple Contrastive Learning", CVPR 2022) trains with six InfoNCE-type terms
(official code: ``models/model_pretrain.py``, ``ALBEF.forward``), grouped here
in three modules, one per idea of the paper:

* :class:`CrossModalAlignmentLoss` (CMA, Eq. 3-5 with momentum distillation):
  ``L_i2t`` and ``L_t2i``.
* :class:`IntraModalContrastLoss` (IMC, Eq. 6-7): ``L_i2i`` or ``L_t2t`` for
  one modality.
* :class:`LocalMutualInfoLoss` (LMI, Eq. 8-9, ``in_batch_g2l_loss``): global
  summary vs local (patch / token) features of one modality.

:class:`TCLLoss` combines them with one shared (learnable, clamped) temperature
and per-term weights. Notation below: ``n(x) = x / ||x||``, ``tau`` the
temperature, ``B`` the batch, ``Q`` the queue of past momentum features.

Example:
    >>> import torch
    >>> loss_fn = TCLLoss(local_weight=0.0)
    >>> v, t = torch.randn(4, 8), torch.randn(4, 8)
    >>> loss = loss_fn(v, t, v + 0.1, t + 0.1)
    >>> loss.shape
    torch.Size([])
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from lightly_mm_plugins.losses import (
    check_all,
    check_chunk_size,
    check_gather_distributed,
    check_temperature,
    gather_cat,
    matmul_logsumexp,
    rank_offset,
    same_group_mask,
)
from lightly_mm_plugins.queue import NO_INSTANCE

__all__ = [
    "NO_INSTANCE",
    "CrossModalAlignmentLoss",
    "IntraModalContrastLoss",
    "LocalMutualInfoLoss",
    "TCLLoss",
    "grid_pool",
    "soft_cross_entropy",
    "tcl_targets",
]

TERMS: tuple[str, ...] = ("cross_modal", "intra_modal", "local")


def _tau(default: float, temperature: Tensor | float | None) -> Tensor | float:
    """The temperature to use: the override (e.g. a learnable one) or the default."""
    if temperature is None:
        return default
    if isinstance(temperature, Tensor):
        if temperature.numel() != 1:
            raise ValueError(
                f"temperature must be a positive scalar, got shape {temperature.shape}"
            )
        check_all(temperature.detach() > 0, "temperature must be a positive scalar")
        return temperature
    return check_temperature(temperature)


def _check_2d(name: str, x: Tensor, dim: int | None = None, n: int | None = None) -> None:
    if x.dim() != 2:
        raise ValueError(f"{name} must have shape (N, D), got {tuple(x.shape)}")
    if dim is not None and x.shape[1] != dim:
        raise ValueError(f"{name} has {x.shape[1]} features, expected {dim}")
    if n is not None and x.shape[0] != n:
        raise ValueError(f"{name} has {x.shape[0]} rows, expected {n} (one per query)")


def _check_queue(name: str, queue: Tensor | None, dim: int) -> None:
    if queue is None:
        return
    if queue.dim() != 2 or queue.shape[1] != dim:
        raise ValueError(
            f"{name} must have shape (Q, D={dim}) (one stored feature per row), got "
            f"{tuple(queue.shape)}"
        )


def _up(x: Tensor) -> Tensor:
    """Half-precision logits (mixed precision) are upcast to float32; others kept."""
    return x.float() if x.dtype in (torch.float16, torch.bfloat16) else x


def soft_cross_entropy(logits: Tensor, targets: Tensor, keep: Tensor | None = None) -> Tensor:
    """``-1/N sum_i sum_c targets[i, c] log softmax(logits[i])_c`` (rows of targets sum to 1).

    With a bool ``keep`` of the logits' shape, only the kept candidates enter
    the softmax (the others are masked to ``-inf``); ``targets`` must be 0
    outside ``keep``.
    """
    if keep is None:
        return -(targets * F.log_softmax(logits, dim=1)).sum(dim=1).mean()
    log_p = F.log_softmax(logits.masked_fill(~keep, float("-inf")), dim=1)
    return -(targets * log_p.masked_fill(~keep, 0.0)).sum(dim=1).mean()


class _MatmulSoftCrossEntropy(torch.autograd.Function):
    """Per-row ``lse_c(s_ic) - sum_c t_ic s_ic`` of ``s = q @ k.T``, keeping one ``(N, C)`` tensor.

    Forward computes the scores once, takes the target term ``sum_c t_ic s_ic`` and
    the log-sum-exp, then turns the score buffer in place into the gradient
    ``d/ds_ic = softmax(s_i)_c - t_ic``, the only tensor kept for the backward:
    ``dq = diag(g) (P - T) k`` and ``dk = (P - T)^T diag(g) q``. Against autograd
    through ``log_softmax`` this saves the log-probabilities, their product with
    the targets, and both of their backward passes over ``(N, C)``.
    """

    @staticmethod
    def forward(ctx: Any, q: Tensor, k: Tensor, targets: Tensor) -> Tensor:  # type: ignore[override]
        with torch.autocast(device_type=q.device.type, enabled=False):
            scores = _up(q @ k.T)
            target_term = torch.einsum("ij,ij->i", scores, targets.to(scores.dtype))
            shift = scores.amax(dim=1, keepdim=True)
            total = scores.sub_(shift).exp_().sum(dim=1, keepdim=True)
            grad_scores = scores.div_(total).sub_(targets.to(scores.dtype))  # P - T
            lse = total.log_().add_(shift).squeeze(1)
        ctx.save_for_backward(q, k, grad_scores)
        return lse - target_term

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx: Any, grad: Tensor) -> tuple[Tensor | None, ...]:
        q, k, grad_scores = ctx.saved_tensors
        g = grad[:, None]
        grad_q = grad_k = None
        with torch.autocast(device_type=q.device.type, enabled=False):
            operand = grad_scores.to(k.dtype)
            if ctx.needs_input_grad[0]:
                grad_q = ((operand @ k) * g.to(k.dtype)).to(q.dtype)
            if ctx.needs_input_grad[1]:
                grad_k = ((q * g.to(q.dtype)).to(k.dtype).T @ operand).T.to(k.dtype)
        return grad_q, grad_k, None


def _matmul_soft_cross_entropy(
    queries: Tensor, candidates: Tensor, targets: Tensor, keep: Tensor | None
) -> Tensor:
    """:func:`soft_cross_entropy` of the logits ``queries @ candidates.T`` (``1/tau`` in queries).

    Rows of ``targets`` sum to 1, so ``-sum_c t_ic log softmax(s_i)_c = lse_c(s_ic) -
    sum_c t_ic s_ic``, computed by :class:`_MatmulSoftCrossEntropy` with a single
    ``(N, C)`` tensor kept for the backward. With ``keep`` (pseudo-label groups)
    the dense masked form is used.
    """
    if keep is not None:
        return soft_cross_entropy(_up(queries @ candidates.T), targets, keep)
    if torch.is_autocast_enabled(queries.device.type):
        dtype = torch.get_autocast_dtype(queries.device.type)
        queries, candidates = queries.to(dtype), candidates.to(dtype)
    elif candidates.dtype != queries.dtype:
        candidates = candidates.to(queries.dtype)
    per_row = _MatmulSoftCrossEntropy.apply(queries, candidates, targets.detach())
    return per_row.mean()  # type: ignore[no-any-return]


def _check_pseudo_labels(pseudo_labels: Tensor | None, n: int, *queues: Tensor | None) -> None:
    if pseudo_labels is None:
        return
    if pseudo_labels.shape != (n,):
        raise ValueError(
            f"pseudo_labels must have shape ({n},) (one group id per query), got "
            f"{tuple(pseudo_labels.shape)}"
        )
    if any(q is not None and q.shape[0] > 0 for q in queues):
        raise ValueError(
            "pseudo_labels restrict negatives to the anchor's group, but queue entries have "
            "no pseudo label; pass queue=None together with pseudo_labels"
        )


def _group_keep(
    pseudo_labels: Tensor | None, targets: Tensor, gather_distributed: bool
) -> Tensor | None:
    """Candidates a query may see: keys of its pseudo-label group and its positives."""
    if pseudo_labels is None:
        return None
    groups = gather_cat(pseudo_labels.detach(), gather_distributed)
    return same_group_mask(pseudo_labels, groups).to(targets.device) | (targets > 0)


def tcl_targets(
    num_queries: int,
    num_keys: int,
    num_queue: int,
    *,
    offset: int = 0,
    instance_ids: Tensor | None = None,
    key_ids: Tensor | None = None,
    queue_ids: Tensor | None = None,
    device: torch.device | None = None,
    dtype: torch.dtype = torch.float32,
) -> Tensor:
    """Hard targets ``Y`` over the candidates ``[keys (num_keys), queue (num_queue)]``.

    Without ids (official pre-training, ``model_pretrain.py``): one-hot at
    column ``offset + i`` (the momentum key of the query's own pair). With
    ``instance_ids`` (official retrieval fine-tuning, ``model_retrieval.py``,
    ``idx_queue``): every candidate with the query's instance id is a positive
    and ``Y_ic = pos_ic / sum_c' pos_ic'``, so stale copies of the same instance
    in the queue are not pushed away as negatives.

    Returns:
        ``(num_queries, num_keys + num_queue)`` tensor whose rows sum to 1.
    """
    total = num_keys + num_queue
    if instance_ids is None:
        targets = torch.zeros(num_queries, total, device=device, dtype=dtype)
        rows = torch.arange(num_queries, device=device)
        targets[rows, rows + offset] = 1.0
        return targets
    if key_ids is None:
        raise ValueError("tcl_targets: instance_ids given without key_ids")
    ids = instance_ids.reshape(-1, 1)
    if queue_ids is None:
        queue_ids = torch.full((num_queue,), NO_INSTANCE, dtype=ids.dtype, device=ids.device)
    candidates = torch.cat([key_ids.reshape(-1), queue_ids.reshape(-1).to(ids.dtype)])
    if candidates.shape[0] != total:
        raise ValueError(f"tcl_targets: {candidates.shape[0]} candidate ids for {total} candidates")
    pos = (ids == candidates.reshape(1, -1)).to(dtype)
    count = pos.sum(dim=1, keepdim=True)
    check_all(count > 0, "tcl_targets: a query has no positive among the candidates")
    return pos.div_(count)


def _targets_and_support(
    queries: Tensor,
    num_keys: int,
    num_candidates: int,
    instance_ids: Tensor | None,
    queue_ids: Tensor | None,
    pseudo_labels: Tensor | None,
    gather_distributed: bool,
) -> tuple[Tensor, Tensor | None]:
    """Hard targets ``Y`` of the queries over ``[keys of all ranks, queue]`` and the
    softmax support (None: every candidate; else the pseudo-label group and positives).

    The part CMA and IMC share: the keys are this step's momentum features of all
    ranks (``num_keys`` rows), the rest of the ``num_candidates`` the queue.
    """
    n = queries.shape[0]
    key_ids = None if instance_ids is None else gather_cat(instance_ids, gather_distributed)
    targets = tcl_targets(
        n,
        num_keys,
        num_candidates - num_keys,
        offset=rank_offset(n, gather_distributed),
        instance_ids=instance_ids,
        key_ids=key_ids,
        queue_ids=queue_ids,
        device=queries.device,
        dtype=_up(queries).dtype,
    )
    return targets, _group_keep(pseudo_labels, targets, gather_distributed)


def _distilled(
    queries: Tensor, candidates: Tensor, targets: Tensor, keep: Tensor | None, alpha: float
) -> Tensor:
    """``alpha * softmax(queries @ candidates.T) + (1 - alpha) * targets`` (no grad, in place)."""
    sim = _up(queries @ candidates.T)
    if keep is not None:
        sim.masked_fill_(~keep, float("-inf"))
    soft = F.softmax(sim, dim=1)
    return soft.mul_(alpha).add_(targets, alpha=1.0 - alpha)


def _candidates(keys: Tensor, queue: Tensor | None) -> Tensor:
    if queue is None or queue.shape[0] == 0:
        return keys
    return torch.cat([keys, queue.detach().to(keys.dtype)], dim=0)


class CrossModalAlignmentLoss(nn.Module):
    """Cross-modal alignment with momentum distillation (TCL's CMA, ``L_i2t + L_t2i``).

    With online features ``v_i = n(out0_i)``, ``t_i = n(out1_i)``, momentum
    features ``v^_i = n(momentum0_i)``, ``t^_i = n(momentum1_i)`` (no gradient)
    and candidate sets ``I^ = [v^_1..v^_B, Q_0]``, ``T^ = [t^_1..t^_B, Q_1]``::

        L_i2t = -1/B sum_i sum_c [a softmax(v^_i.T^/tau)_c + (1-a) Y_ic] log softmax(v_i.T^/tau)_c
        L_t2i = -1/B sum_i sum_c [a softmax(t^_i.I^/tau)_c + (1-a) Y_ic] log softmax(t_i.I^/tau)_c
        L_cma = (L_i2t + L_t2i) / 2

    ``Y`` is the one-hot pair target (see :func:`tcl_targets`), ``a`` the
    distillation weight ``alpha`` (official ``sim_i2t_targets``). With
    ``alpha=0``, no queue and momentum features equal to the online ones this
    is CLIP's symmetric InfoNCE. Queue rows must already be L2-normalised.

    With ``pseudo_labels`` ``(N,)`` (MCL's stage scheduler, not in TCL) a
    query sees only the keys of its own pseudo-label group (and its
    positives): the other keys are masked to ``-inf`` in the logits *and* in
    the distillation softmax, so the soft targets stay inside the group. Queue
    entries carry no pseudo label, so the queue must be ``None`` then.

    Args:
        temperature: Default ``tau`` (paper init 0.07); ``forward`` can override.
        alpha: Default distillation weight (paper 0.4).
        gather_distributed: Use the momentum keys of all ranks as candidates
            (non-differentiable all-gather; they carry no gradient anyway). The
            official code contrasts within the rank's batch plus the queue.
            Each rank computes the loss of its own queries over the global
            keys; the rank mean of the losses (what DDP averages) equals the
            loss of one process on the whole batch.

    Shapes:
        ``forward(out0 (N, D), out1 (N, D), momentum0 (N, D), momentum1 (N, D),
        queue0 (Q, D) | None, queue1 (Q, D) | None, pseudo_labels (N,) | None) -> ()``

    Example:
        >>> import torch
        >>> loss_fn = CrossModalAlignmentLoss(alpha=0.4)
        >>> v, t = torch.randn(4, 8), torch.randn(4, 8)
        >>> loss = loss_fn(v, t, v.detach(), t.detach())
    """

    def __init__(
        self, temperature: float = 0.07, alpha: float = 0.4, gather_distributed: bool = False
    ) -> None:
        super().__init__()
        self.temperature = check_temperature(temperature)
        if not 0.0 <= alpha <= 1.0:
            raise ValueError(f"alpha must be in [0, 1], got {alpha}")
        check_gather_distributed(gather_distributed)
        self.alpha = float(alpha)
        self.gather_distributed = gather_distributed

    def forward(
        self,
        out0: Tensor,
        out1: Tensor,
        momentum0: Tensor,
        momentum1: Tensor,
        queue0: Tensor | None = None,
        queue1: Tensor | None = None,
        *,
        instance_ids: Tensor | None = None,
        queue_ids: Tensor | None = None,
        temperature: Tensor | float | None = None,
        alpha: float | None = None,
        pseudo_labels: Tensor | None = None,
    ) -> Tensor:
        tau = _tau(self.temperature, temperature)
        a = self.alpha if alpha is None else float(alpha)
        if not 0.0 <= a <= 1.0:
            raise ValueError(f"alpha must be in [0, 1], got {a}")
        _check_2d("out0", out0)
        n, dim = out0.shape
        _check_2d("out1", out1, dim, n)
        _check_2d("momentum0", momentum0, dim, n)
        _check_2d("momentum1", momentum1, dim, n)
        _check_queue("queue0", queue0, dim)
        _check_queue("queue1", queue1, dim)
        if (queue0 is None) != (queue1 is None) or (
            queue0 is not None and queue1 is not None and queue0.shape != queue1.shape
        ):
            raise ValueError("queue0 and queue1 must both be given with equal shapes, or both None")
        _check_pseudo_labels(pseudo_labels, n, queue0, queue1)

        v = F.normalize(out0, dim=1)
        t = F.normalize(out1, dim=1)
        with torch.no_grad():
            v_m = F.normalize(momentum0.detach(), dim=1)
            t_m = F.normalize(momentum1.detach(), dim=1)
            v_keys = gather_cat(v_m, self.gather_distributed)
            t_keys = gather_cat(t_m, self.gather_distributed)
            image_all = _candidates(v_keys, queue0)
            text_all = _candidates(t_keys, queue1)
            targets, keep = _targets_and_support(
                out0,
                v_keys.shape[0],
                image_all.shape[0],
                instance_ids,
                queue_ids,
                pseudo_labels,
                self.gather_distributed,
            )
            if a > 0:
                # 1/tau scales the (N, D) queries, not the (N, N+Q) similarities.
                tau_d = tau.detach() if isinstance(tau, Tensor) else tau
                targets_i2t = _distilled(v_m / tau_d, text_all, targets, keep, a)
                targets_t2i = _distilled(t_m / tau_d, image_all, targets, keep, a)
            else:
                targets_i2t = targets_t2i = targets
        loss_i2t = _matmul_soft_cross_entropy(v / tau, text_all, targets_i2t, keep)
        loss_t2i = _matmul_soft_cross_entropy(t / tau, image_all, targets_t2i, keep)
        return 0.5 * (loss_i2t + loss_t2i)


class IntraModalContrastLoss(nn.Module):
    """Intra-modal contrast of one modality (TCL's IMC, ``L_i2i`` or ``L_t2t``).

    The query is the online feature ``x_i = n(out_i)`` of one view, the
    positive the momentum feature ``x^_i = n(momentum_i)`` of the *other*
    augmented view (images) or of the same caption (text, official code), the
    negatives the other momentum keys and the queue of the same modality::

        L_x2x = -1/B sum_i sum_c Y_ic log softmax(x_i . [x^_1..x^_B, Q] / tau)_c

    Hard targets only (no distillation), as ``loss_i2i`` / ``loss_t2t`` in the
    official ``model_pretrain.py``. Queue rows must be L2-normalised.

    With ``pseudo_labels`` ``(N,)`` only the keys of the query's pseudo-label
    group are negatives (MCL); the queue must be ``None`` then (queue entries
    carry no pseudo label).

    Args:
        temperature: Default ``tau``; ``forward`` can override.
        gather_distributed: Use the momentum keys of all ranks as negatives.

    Shapes:
        ``forward(out (N, D), momentum (N, D), queue (Q, D) | None,
        pseudo_labels (N,) | None) -> ()``

    Example:
        >>> import torch
        >>> loss_fn = IntraModalContrastLoss()
        >>> x = torch.randn(4, 8)
        >>> loss = loss_fn(x, x.detach() + 0.1)
    """

    def __init__(self, temperature: float = 0.07, gather_distributed: bool = False) -> None:
        super().__init__()
        self.temperature = check_temperature(temperature)
        check_gather_distributed(gather_distributed)
        self.gather_distributed = gather_distributed

    def forward(
        self,
        out: Tensor,
        momentum: Tensor,
        queue: Tensor | None = None,
        *,
        instance_ids: Tensor | None = None,
        queue_ids: Tensor | None = None,
        temperature: Tensor | float | None = None,
        pseudo_labels: Tensor | None = None,
    ) -> Tensor:
        tau = _tau(self.temperature, temperature)
        _check_2d("out", out)
        n, dim = out.shape
        _check_2d("momentum", momentum, dim, n)
        _check_queue("queue", queue, dim)
        _check_pseudo_labels(pseudo_labels, n, queue)
        x = F.normalize(out, dim=1)
        with torch.no_grad():
            keys = gather_cat(F.normalize(momentum.detach(), dim=1), self.gather_distributed)
            candidates = _candidates(keys, queue)
            targets, keep = _targets_and_support(
                out,
                keys.shape[0],
                candidates.shape[0],
                instance_ids,
                queue_ids,
                pseudo_labels,
                self.gather_distributed,
            )
        return _matmul_soft_cross_entropy(x / tau, candidates, targets, keep)


def grid_pool(local: Tensor, grid: int) -> Tensor:
    """Average-pool square-grid local features to ``grid x grid`` regions.

    ``local`` ``(N, L, D)`` with ``L = s * s`` cells in row-major order (ViT
    patch tokens, flattened CNN feature maps). TCL's ``patch_pooling`` turns
    the 16x16 ViT-B/16 patch grid at 256 px into 4x4 regions (4x4 average
    pooling); ``grid=4`` does the same for a 16x16 grid and adapts to other
    sizes (adaptive average pooling). Grids with ``s <= grid`` are returned
    unchanged. Returns ``(N, min(s, grid)**2, D)``.
    """
    n, num, dim = local.shape
    side = math.isqrt(num)
    if side * side != num:
        raise ValueError(
            f"grid pooling needs a square grid of local features, got L={num}; set "
            "local_pool_grid=None (or take the modality out of the grid modalities)"
        )
    if grid < 1:
        raise ValueError(f"local_pool_grid must be >= 1, got {grid}")
    if side <= grid:
        return local
    x = local.reshape(n, side, side, dim).permute(0, 3, 1, 2)
    x = F.adaptive_avg_pool2d(x, grid)
    return x.permute(0, 2, 3, 1).reshape(n, grid * grid, dim)


def _gather_locals(loc: Tensor, valid: Tensor, enabled: bool) -> tuple[Tensor, Tensor]:
    """All ranks' locals ``(W*N, L_max, D)`` and validity ``(W*N, L_max)``, in rank order.

    Ranks may hold different numbers of locals (text padded to the longest
    caption of the rank's batch), so each rank first pads to the longest
    across ranks with invalid zeros. :func:`gather_cat` keeps the gradient
    for locals that need it and is a plain all-gather for momentum locals.
    """
    if not enabled:
        return loc, valid
    sizes = gather_cat(torch.tensor([loc.shape[1]], device=loc.device), enabled)
    pad = int(sizes.max()) - loc.shape[1]
    if pad > 0:
        loc = F.pad(loc, (0, 0, 0, pad))
        valid = F.pad(valid, (0, pad), value=False)
    loc_all = gather_cat(loc, enabled)
    valid_all = gather_cat(valid.to(torch.uint8), enabled).to(torch.bool)
    return loc_all, valid_all


class LocalMutualInfoLoss(nn.Module):
    """Local MI maximisation between a global summary and local features (TCL's LMI).

    For one modality with global features ``g_i = n(global_i)`` (online
    encoder, with gradient) and local features ``l_ik = n(local_ik)``
    (official: the *momentum* encoder's patch / token features, pooled into
    regions for images after normalising), every valid local ``(i, k)`` is an
    anchor whose positive is its own global summary and whose negatives are all
    valid locals of the *other* samples::

        s_ijk = g_i . l_jk / tau
        l_ik  = -log e^{s_iik} / (e^{s_iik} + sum_{j != i} sum_{k' valid} e^{s_ijk'})
        L_lmi = mean_i [ sum_{k valid} l_ik / #valid_i ]

    (``in_batch_g2l_loss`` in ``models/model_pretrain.py``; the other locals of
    sample ``i`` are not in the denominator, padded locals are neither anchors
    nor negatives; samples without any valid local are skipped).

    Args:
        temperature: Default ``tau``; ``forward`` can override.
        pool_grid: Pool a square grid of locals to ``pool_grid x pool_grid``
            regions first (:func:`grid_pool`; official 4 for the 16x16 grid).
            ``None``: no pooling (text tokens).
        normalize: L2-normalise globals and locals (locals before pooling, not
            after, as the official code).
        gather_distributed: The negatives ``j`` run over the samples of all
            ranks (locals all-gathered, with gradient if they carry one), and
            the mean over ``i`` is taken over all ranks' samples: each rank
            returns ``W / #samples_all * sum_{own i}``, so the rank mean equals
            one process on the whole batch. The official code is rank-local.
        chunk_size: The negatives' log-sum-exp over the ``(N, W*N*L)`` scores
            (:func:`~lightly_mm_plugins.losses.matmul_logsumexp`): ``None`` keeps
            them for the backward; an int streams them in blocks of that many
            globals (memory linear in ``N``, one more matmul). Same values.

    Shapes:
        ``forward(global_ (N, D), local (N, L, D), mask (N, L) bool | None) -> ()``

    Example:
        >>> import torch
        >>> loss_fn = LocalMutualInfoLoss(pool_grid=2)
        >>> loss = loss_fn(torch.randn(4, 8), torch.randn(4, 16, 8))
    """

    def __init__(
        self,
        temperature: float = 0.07,
        pool_grid: int | None = None,
        normalize: bool = True,
        gather_distributed: bool = False,
        chunk_size: int | None = None,
    ) -> None:
        super().__init__()
        self.temperature = check_temperature(temperature)
        if pool_grid is not None and pool_grid < 1:
            raise ValueError(f"pool_grid must be >= 1 or None, got {pool_grid}")
        check_gather_distributed(gather_distributed)
        self.chunk_size = check_chunk_size(chunk_size)
        self.pool_grid = pool_grid
        self.normalize = normalize
        self.gather_distributed = gather_distributed

    def forward(
        self,
        global_: Tensor,
        local: Tensor,
        mask: Tensor | None = None,
        *,
        temperature: Tensor | float | None = None,
    ) -> Tensor:
        tau = _tau(self.temperature, temperature)
        _check_2d("global_", global_)
        n, dim = global_.shape
        if local.dim() != 3 or local.shape[0] != n or local.shape[2] != dim:
            raise ValueError(f"local must have shape (N={n}, L, D={dim}), got {tuple(local.shape)}")
        if mask is not None:
            if mask.shape != local.shape[:2]:
                raise ValueError(
                    f"mask must have shape {tuple(local.shape[:2])}, got {tuple(mask.shape)}"
                )
            mask = mask.to(torch.bool)
        g = F.normalize(global_, dim=1) if self.normalize else global_
        loc = F.normalize(local, dim=2) if self.normalize else local
        if self.pool_grid is not None:
            if mask is not None:
                check_all(
                    mask,
                    "grid pooling needs all local features valid (a full patch grid); "
                    "the mask has padding. Use pool_grid=None for padded (token) locals.",
                )
            loc = grid_pool(loc, self.pool_grid)
            mask = None
        valid = (
            torch.ones(loc.shape[:2], dtype=torch.bool, device=loc.device)
            if mask is None
            else mask.to(loc.device)
        )
        loc_all, valid_all = _gather_locals(loc, valid, self.gather_distributed)
        total, width = loc_all.shape[:2]
        gathered = total != n
        own = torch.arange(n, device=loc.device) + rank_offset(n, self.gather_distributed)
        valid = valid_all[own]  # (N, L_max): own validity, padded like the gathered locals
        # s_ijk = g_i . l_jk / tau; 1/tau scales the (N, D) globals, not the scores.
        g_scaled = g / tau
        # Positives s_iik: each global against its own locals only, (N, L_max).
        positive = _up(torch.einsum("id,ikd->ik", g_scaled, loc_all[own]))
        # Negatives: log-sum-exp over the valid locals of all *other* samples, without
        # materialising (N, W*N, L_max) masks or keeping more than one score matrix.
        negative_lse = matmul_logsumexp(
            g_scaled,
            loc_all.reshape(total * width, dim),
            self.chunk_size,
            exclude_span=(own, width),  # columns own*width .. own*width + width - 1
            # all valid unless padded (a mask, or ranks with different numbers of locals)
            key_valid=None if mask is None and not gathered else valid_all.reshape(-1),
        )
        assert isinstance(negative_lse, Tensor)
        negative_lse = negative_lse.unsqueeze(1)  # (N, 1)
        per_local = torch.logaddexp(positive, negative_lse) - positive  # -log softmax
        per_local = per_local.masked_fill(~valid, 0.0)
        count = valid.sum(dim=1)
        has_any = count > 0
        # Samples with locals on all ranks: the mean runs over the global batch. Kept as
        # a tensor (no host sync); with no such sample anywhere the loss is 0.
        num_any = gather_cat(has_any.sum().reshape(1), self.gather_distributed).sum()
        per_sample = per_local.sum(dim=1) / count.clamp(min=1)
        kept = torch.where(has_any, per_sample, torch.zeros_like(per_sample))
        return kept.sum() * (total / n) / num_any.clamp(min=1)


class TCLLoss(nn.Module):
    """TCL's alignment loss ``L_ita``: CMA + IMC + LMI with one shared temperature.

    With per-pair means ``L_cma = (L_i2t + L_t2i)/2``, ``L_imc = (L_i2i + L_t2t)/2``,
    ``L_lmi = (L_i2i_l + L_t2t_l)/2`` and weights ``w``::

        L = (w_c L_cma + w_i L_imc + w_l L_lmi) / (w_c + w_i + w_l)

    With all weights 1 this is the official ``loss_ita`` (mean of the six
    terms); with only ``w_c > 0`` it has the scale of CLIP's symmetric InfoNCE.
    A zero weight switches a term off (it is not computed).

    The temperature is learnable by default, as in the official code: an
    ``nn.Parameter`` (init 0.07) clamped in place to ``temperature_bounds``
    (``[0.001, 0.5]``) at the start of every forward; all terms share it.

    Args:
        temperature: Initial (or fixed) ``tau``.
        learnable_temperature: Learn ``tau`` (official: yes).
        temperature_bounds: Clamp range of the learnable ``tau``.
        alpha: Momentum-distillation weight of the CMA soft targets (0.4).
        cross_modal_weight / intra_modal_weight / local_weight: Term weights.
        local_pool_grid: ``(grid of modality 0, grid of modality 1)`` for the LMI
            region pooling (official ``(4, None)``: image patches pooled, text
            tokens not).
        gather_distributed: Every term over the global batch: candidates from
            all ranks' momentum keys (CMA, IMC) and locals (LMI).
        local_chunk_size: Stream LMI's ``(N, N*L)`` scores in blocks of this
            many rows (:class:`LocalMutualInfoLoss`); ``None`` (default) keeps
            them. Same values and gradients.

    Shapes:
        ``forward(out0, out1, momentum0, momentum1 (N, D); queue0, queue1 (Q, D);
        local0, local1 (N, L, D); local_mask0, local_mask1 (N, L)) -> ()``

    Example:
        >>> import torch
        >>> loss_fn = TCLLoss(local_pool_grid=(None, None))
        >>> v, t = torch.randn(4, 8), torch.randn(4, 8)
        >>> loss = loss_fn(v, t, v.detach(), t.detach(),
        ...                local0=torch.randn(4, 3, 8), local1=torch.randn(4, 5, 8))
    """

    def __init__(
        self,
        temperature: float = 0.07,
        learnable_temperature: bool = True,
        temperature_bounds: tuple[float, float] = (0.001, 0.5),
        alpha: float = 0.4,
        cross_modal_weight: float = 1.0,
        intra_modal_weight: float = 1.0,
        local_weight: float = 1.0,
        local_pool_grid: tuple[int | None, int | None] = (4, None),
        gather_distributed: bool = False,
        local_chunk_size: int | None = None,
    ) -> None:
        super().__init__()
        check_temperature(temperature)
        low, high = (float(x) for x in temperature_bounds)
        if not 0 < low <= high:
            raise ValueError(
                f"temperature_bounds must be 0 < low <= high, got {temperature_bounds}"
            )
        if learnable_temperature and not low <= temperature <= high:
            raise ValueError(
                f"temperature {temperature} lies outside temperature_bounds {temperature_bounds}"
            )
        self.temperature_bounds = (low, high)
        self.learnable_temperature = learnable_temperature
        temp = torch.tensor(float(temperature))
        if learnable_temperature:
            self.temp = nn.Parameter(temp)
        else:
            self.register_buffer("temp", temp)
        self.weights = {
            "cross_modal": float(cross_modal_weight),
            "intra_modal": float(intra_modal_weight),
            "local": float(local_weight),
        }
        for name, w in self.weights.items():
            if not w >= 0 or math.isinf(w):
                raise ValueError(f"{name}_weight must be a finite number >= 0, got {w}")
        if sum(self.weights.values()) <= 0:
            raise ValueError(
                "all term weights are zero; set at least one of cross_modal_weight, "
                "intra_modal_weight, local_weight > 0"
            )
        if len(tuple(local_pool_grid)) != 2:
            raise ValueError(
                f"local_pool_grid needs one entry per modality (two), got {local_pool_grid}"
            )
        self.cross_modal = CrossModalAlignmentLoss(temperature, alpha, gather_distributed)
        self.intra_modal = IntraModalContrastLoss(temperature, gather_distributed)
        self.local = nn.ModuleList(
            [
                LocalMutualInfoLoss(
                    temperature,
                    pool_grid=g,
                    gather_distributed=gather_distributed,
                    chunk_size=local_chunk_size,
                )
                for g in local_pool_grid
            ]
        )

    @property
    def alpha(self) -> float:
        return self.cross_modal.alpha

    @property
    def temperature(self) -> float:
        """Current temperature as a float (for logging)."""
        return float(self.temp.detach())

    def temperature_tensor(self) -> Tensor:
        """The current temperature as a detached 0-d tensor (a copy: the optimizer
        changes the parameter in place); logging it needs no host sync."""
        return self.temp.detach().clone()

    def active(self, term: str) -> bool:
        """Whether ``term`` (``cross_modal``, ``intra_modal``, ``local``) has weight > 0."""
        return self.weights[term] > 0

    def current_temperature(self) -> Tensor:
        """Clamp the learnable temperature in place (official) and return it."""
        if self.learnable_temperature:
            with torch.no_grad():
                self.temp.clamp_(*self.temperature_bounds)
        return self.temp

    def terms(
        self,
        out0: Tensor,
        out1: Tensor,
        momentum0: Tensor,
        momentum1: Tensor,
        queue0: Tensor | None = None,
        queue1: Tensor | None = None,
        *,
        local0: Tensor | None = None,
        local1: Tensor | None = None,
        local_mask0: Tensor | None = None,
        local_mask1: Tensor | None = None,
        instance_ids: Tensor | None = None,
        queue_ids: Tensor | None = None,
        alpha: float | None = None,
        pseudo_labels: Tensor | None = None,
    ) -> dict[str, Tensor]:
        """The active terms (pair means), keyed ``cross_modal``, ``intra_modal``, ``local``.

        With ``pseudo_labels`` ``(N,)`` the CMA and IMC negatives are the keys of
        the anchor's group only and the queues are not used (their entries
        carry no pseudo label); LMI is unchanged.
        """
        tau = self.current_temperature()
        if pseudo_labels is not None:
            queue0 = queue1 = queue_ids = None
        out: dict[str, Tensor] = {}
        if self.active("cross_modal"):
            out["cross_modal"] = self.cross_modal(
                out0,
                out1,
                momentum0,
                momentum1,
                queue0,
                queue1,
                instance_ids=instance_ids,
                queue_ids=queue_ids,
                temperature=tau,
                alpha=alpha,
                pseudo_labels=pseudo_labels,
            )
        if self.active("intra_modal"):
            kwargs = {
                "instance_ids": instance_ids,
                "queue_ids": queue_ids,
                "temperature": tau,
                "pseudo_labels": pseudo_labels,
            }
            out["intra_modal"] = 0.5 * (
                self.intra_modal(out0, momentum0, queue0, **kwargs)
                + self.intra_modal(out1, momentum1, queue1, **kwargs)
            )
        if self.active("local"):
            if local0 is None or local1 is None:
                raise ValueError(
                    "local_weight > 0 needs local features of both modalities (local0, "
                    "local1); pass them or set local_weight=0"
                )
            out["local"] = 0.5 * (
                self.local[0](out0, local0, local_mask0, temperature=tau)
                + self.local[1](out1, local1, local_mask1, temperature=tau)
            )
        return out

    def combine(self, terms: Mapping[str, Tensor]) -> Tensor:
        """Weighted mean ``sum_k w_k L_k / sum_k w_k`` of the active terms."""
        total = sum(self.weights[k] for k in terms)
        loss = sum(self.weights[k] * v for k, v in terms.items())
        return loss / total  # type: ignore[return-value,operator]

    def forward(
        self,
        out0: Tensor,
        out1: Tensor,
        momentum0: Tensor,
        momentum1: Tensor,
        queue0: Tensor | None = None,
        queue1: Tensor | None = None,
        **kwargs: Tensor | float | None,
    ) -> Tensor:
        return self.combine(
            self.terms(out0, out1, momentum0, momentum1, queue0, queue1, **kwargs)  # type: ignore[arg-type]
        )
