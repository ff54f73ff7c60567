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

Everything is one ``(N·M_a) × (N·M_b)`` similarity matrix with masks; there is
no Python loop over instances or folds.

Example:
    >>> import torch
    >>> loss_fn = MXMCLRLoss(temperature=0.1)
    >>> images, captions = torch.randn(4, 1, 8), torch.randn(4, 5, 8)
    >>> loss = loss_fn(images, captions)
    >>> loss.shape
    torch.Size([])
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from lightly_mm_plugins.losses import (
    check_gather_distributed,
    check_temperature,
    gather_cat,
    rank_offset,
)

__all__ = ["MAX_LOGIT_SCALE", "MXMCLRLoss", "MXMCLRTerms"]

#: Upper bound of the learnable logit scale ``1/τ`` (CLIP's clamp).
MAX_LOGIT_SCALE = 100.0


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


def _direction(
    sim: Tensor,
    scale: Tensor | float,
    soft_temperature: float | None,
    positives: Tensor,
    keep: Tensor,
    anchor_valid: Tensor,
) -> tuple[Tensor, Tensor, Tensor]:
    """Summed per-anchor hard and soft cross-entropies of one direction, and the anchor count.

    Args:
        sim: ``(P, Q)`` cosine similarities of anchors (rows) and candidates (columns).
        scale: Logit scale ``1/τ`` (a float, or a scalar tensor carrying gradient).
        soft_temperature: ``τ_s`` of the soft targets; None uses the logits themselves.
        positives: ``(P, Q)`` bool, valid candidates of the anchor's instance.
        keep: ``(P, Q)`` bool, the softmax support ``K(p)``.
        anchor_valid: ``(P,)`` bool, real (not padded) anchors.
    """
    if sim.dtype in (torch.float16, torch.bfloat16):
        sim = sim.float()  # softmax statistics in float32 under mixed precision
    logits = sim * scale
    has_pos = positives.any(dim=1)
    # An anchor whose row keeps nothing is excluded below; give it a finite row so
    # that no NaN can travel back through log_softmax.
    keep = keep | ~keep.any(dim=1, keepdim=True)
    log_prob = F.log_softmax(logits.masked_fill(~keep, float("-inf")), dim=1)
    log_prob_pos = log_prob.masked_fill(~positives, 0.0)
    num_pos = positives.sum(dim=1).clamp(min=1)
    hard = -log_prob_pos.sum(dim=1) / num_pos
    with torch.no_grad():
        soft_logits = logits.detach() if soft_temperature is None else sim / soft_temperature
        soft_logits = soft_logits.masked_fill(~positives, float("-inf"))
        soft_logits = soft_logits.masked_fill(~has_pos.unsqueeze(1), 0.0)
        soft_target = F.softmax(soft_logits, dim=1) * positives
    soft = -(soft_target * log_prob_pos).sum(dim=1)
    used = anchor_valid & has_pos
    zero = hard.new_zeros(())
    return (
        torch.where(used, hard, zero).sum(),
        torch.where(used, soft, zero).sum(),
        used.sum(),
    )


class MXMCLRLoss(nn.Module):
    """Multifold-aware hybrid (hard + soft) cross-modal contrastive loss (MXM-CLR).

    See the module docstring for the equations. Every observation pair of the
    same instance (same instance id) is a positive; only the other modality's
    observations are candidates (no intra-modal term), both directions, every
    valid observation is an anchor. Padded folds (``mask`` False) are neither
    anchors nor candidates and receive exactly zero gradient. Under mixed
    precision the softmax statistics are computed in float32.

    Args:
        temperature: Softmax temperature ``τ`` (> 0). The paper's value could
            not be read; 0.07 is CLIP's initial value.
        soft_weight: ``λ`` in ``[0, 1]``, the weight of the soft target in the
            mixed target ``(1−λ)·hard + λ·soft``. 0 gives the pure multi-positive
            (hard) loss. Paper value not verified; 0.5 weighs both equally.
        soft_temperature: ``τ_s`` of the soft targets. None (default) uses the
            current ``τ`` (soft target = own detached softmax over the positives).
        learnable_temperature: Learn ``log(1/τ)`` as CLIP does (``1/τ ≤ 100``).
        gather_distributed: Gather observations, masks, instance ids and pseudo
            labels of all ranks as candidates (gradient-carrying). Positives are
            found by instance id, so an id seen on two ranks is one instance.
            Every rank needs the same N; fold counts are padded to the largest.
        normalize: L2-normalise embeddings first (cosine similarities).

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
    ) -> None:
        super().__init__()
        check_temperature(temperature)
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
        # A fixed temperature stays a Python float: exact in float64 (no float32
        # rounding of log(1/τ)); a learnable one is CLIP's log-scale parameter.
        self.log_scale: nn.Parameter | None = None
        self._fixed_scale = min(1.0 / float(temperature), MAX_LOGIT_SCALE)
        if learnable_temperature:
            self.log_scale = nn.Parameter(torch.tensor(math.log(1.0 / temperature)))

    @property
    def temperature(self) -> float:
        """The current temperature ``τ`` (after the clamp ``1/τ ≤ 100``)."""
        if self.log_scale is None:
            return 1.0 / self._fixed_scale
        return float(1.0 / self.log_scale.detach().exp().clamp(max=MAX_LOGIT_SCALE))

    def _scale(self) -> Tensor | float:
        if self.log_scale is None:
            return self._fixed_scale
        return self.log_scale.exp().clamp(max=MAX_LOGIT_SCALE)

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
        if b.shape[0] != n or a.shape[-1] != b.shape[-1]:
            raise ValueError(
                f"a and b must have the same number of instances N and features D, got "
                f"{tuple(a.shape)} and {tuple(b.shape)}"
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
        ma, mb, d = a.shape[1], b.shape[1], a.shape[-1]
        # One row per observation: (N·M, D), its instance id, validity and group.
        ua, ub = a.reshape(n * ma, d), b.reshape(n * mb, d)
        ids_a, ids_b = instance_ids.repeat_interleave(ma), instance_ids.repeat_interleave(mb)
        valid_a, valid_b = mask_a.reshape(-1), mask_b.reshape(-1)

        ua_all, ub_all = gather_cat(ua, gather), gather_cat(ub, gather)
        ids_a_all, ids_b_all = gather_cat(ids_a, gather), gather_cat(ids_b, gather)
        valid_a_all = gather_cat(valid_a.long(), gather).bool()
        valid_b_all = gather_cat(valid_b.long(), gather).bool()

        pos_ab = (ids_a[:, None] == ids_b_all[None, :]) & valid_b_all[None, :]
        pos_ba = (ids_b[:, None] == ids_a_all[None, :]) & valid_a_all[None, :]
        keep_ab = valid_b_all[None, :].expand_as(pos_ab)
        keep_ba = valid_a_all[None, :].expand_as(pos_ba)
        if pseudo_labels is not None:
            groups = pseudo_labels.long()
            ga, gb = groups.repeat_interleave(ma), groups.repeat_interleave(mb)
            ga_all, gb_all = gather_cat(ga, gather), gather_cat(gb, gather)
            keep_ab = keep_ab & ((ga[:, None] == gb_all[None, :]) | pos_ab)
            keep_ba = keep_ba & ((gb[:, None] == ga_all[None, :]) | pos_ba)

        scale = self._scale()
        hard_ab, soft_ab, count_ab = _direction(
            ua @ ub_all.T, scale, self.soft_temperature, pos_ab, keep_ab, valid_a
        )
        hard_ba, soft_ba, count_ba = _direction(
            ub @ ua_all.T, scale, self.soft_temperature, pos_ba, keep_ba, valid_b
        )

        # Normalise by the anchor counts of the *global* batch, times the world
        # size: DDP's gradient average then equals one process on all ranks' data.
        counts = torch.stack([count_ab, count_ba]).reshape(1, 2)
        counts_all = gather_cat(counts, gather)
        world = counts_all.shape[0]
        total = counts_all.sum(dim=0).to(hard_ab.dtype)
        if bool((total == 0).any()):
            raise ValueError(
                "MXMCLRLoss: no valid observation has a positive of its instance in the other "
                "modality; every instance needs at least one unmasked fold in both modalities"
            )
        hard = 0.5 * world * (hard_ab / total[0] + hard_ba / total[1])
        soft = 0.5 * world * (soft_ab / total[0] + soft_ba / total[1])
        loss = (1.0 - self.soft_weight) * hard + self.soft_weight * soft
        return MXMCLRTerms(loss=loss, hard=hard, soft=soft)
