"""CLIP's symmetric cross-modal InfoNCE as a ``lightly.loss``-style module."""

from __future__ import annotations

import math

from torch import Tensor, nn

from lightly_mm_plugins.losses import (
    check_chunk_size,
    check_gather_distributed,
    cross_modal_info_nce,
)
from lightly_mm_plugins.temperature import LogitScale, LogitScaleMixin


class CLIPLoss(LogitScaleMixin, nn.Module):
    """Symmetric cross-modal InfoNCE (Radford et al., 2021).

    For L2-normalised embeddings ``a_i`` (e.g. images) and ``b_j`` (texts) and
    logits ``s_ij = a_i . b_j / tau``::

        L = 1/2 [ CE(s, diag) + CE(s^T, diag) ]

    Only the other modality's embeddings are negatives; lightly's
    ``NTXentLoss`` also contrasts within a modality (SimCLR), which is why it is
    not used here. Use it wherever you would use ``lightly.loss.NTXentLoss``.

    Args:
        temperature: Softmax temperature ``tau`` (CLIP initialises 0.07); at least
            0.01 (``1/tau <= 100``), a smaller one is an error.
        learnable_temperature: Learn ``log(1/tau)`` as CLIP does. The cap
            ``1/tau <= 100`` is applied to the parameter after each optimiser
            step, as open_clip: the pipeline calls :meth:`clamp_` (through
            ``Objective.on_after_optimizer_step``); a script of your own calls
            ``loss_fn.clamp_()`` after ``optimizer.step()``. Inside ``forward``
            nothing is clamped, so the temperature keeps its gradient at the cap.
        gather_distributed: Gather embeddings of all ranks as negatives.
        chunk_size: ``None`` (default): dense ``(N, N)`` logits. An int: the
            streaming path of :func:`~lightly_mm_plugins.losses.cross_modal_info_nce`
            in blocks of that many rows: same loss and gradients, extra memory
            linear in ``N`` (one more matmul in the backward). Use it when the
            ``(N, N)`` logits of a large (gathered) batch do not fit.

    Shapes:
        ``forward(image=(N, D), text=(N, D), pseudo_labels=(N,) | None) -> ()``

    Example:
        >>> import torch
        >>> loss_fn = CLIPLoss(temperature=0.1)
        >>> loss = loss_fn(torch.randn(8, 32), torch.randn(8, 32))
        >>> streaming = CLIPLoss(temperature=0.1, chunk_size=4)
    """

    def __init__(
        self,
        temperature: float = 0.07,
        learnable_temperature: bool = False,
        gather_distributed: bool = False,
        chunk_size: int | None = None,
    ) -> None:
        super().__init__()
        check_gather_distributed(gather_distributed)
        self.gather_distributed = gather_distributed
        self.chunk_size = check_chunk_size(chunk_size)
        self.logit_scale = LogitScale(temperature, learnable=learnable_temperature)
        self._register_load_state_dict_pre_hook(self.logit_scale.upgrade_old_state)

    def forward(self, out0: Tensor, out1: Tensor, pseudo_labels: Tensor | None = None) -> Tensor:
        scale = self.logit_scale()
        # Scaling the inputs by sqrt(scale) keeps the temperature differentiable
        # while reusing the shared, tested InfoNCE.
        root = scale.sqrt() if isinstance(scale, Tensor) else math.sqrt(scale)
        a = nn.functional.normalize(out0, dim=-1) * root
        b = nn.functional.normalize(out1, dim=-1) * root
        return cross_modal_info_nce(
            a,
            b,
            temperature=1.0,
            gather_distributed=self.gather_distributed,
            pseudo_labels=pseudo_labels,
            normalize=False,
            chunk_size=self.chunk_size,
        )
