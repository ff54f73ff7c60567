"""Decoupled contrastive learning, cross-modal (Yeh et al., ECCV 2022, Eq. 6).

DCL removes the positive pair from InfoNCE's denominator::

    L_i = -s_ii / tau + log sum_{j != i} exp(s_ij / tau)

for both directions (image->text, text->image), with ``s_ij`` the cosine
similarity of projected embeddings.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from lightly_mm_plugins.api import EncodedBatch, Objective, ObjectiveOutput, Requirements
from lightly_mm_plugins.heads import build_projection
from lightly_mm_plugins.losses import check_temperature, same_group_mask
from lightly_mm_plugins.views import ModalityView


def dcl_loss(a: Tensor, b: Tensor, temperature: float, groups: Tensor | None = None) -> Tensor:
    """Symmetric decoupled contrastive loss of paired ``(N, D)`` embeddings."""
    a, b = F.normalize(a, dim=-1), F.normalize(b, dim=-1)
    logits = a @ b.T / temperature
    eye = torch.eye(len(a), dtype=torch.bool, device=a.device)
    drop = eye if groups is None else eye | ~same_group_mask(groups, groups)
    positives = logits.diagonal()
    i2t = -positives + logits.masked_fill(drop, float("-inf")).logsumexp(dim=1)
    t2i = -positives + logits.T.masked_fill(drop, float("-inf")).logsumexp(dim=1)
    return 0.5 * (i2t.mean() + t2i.mean())


class DCLObjective(Objective):
    """Linear heads per modality + the decoupled loss.

    Example:
        >>> import torch
        >>> from lightly_mm_plugins.api import EncodedBatch
        >>> obj = DCLObjective({"image": 8, "text": 6})
        >>> obj(EncodedBatch.from_tensors({"image": torch.randn(4, 8),
        ...                                "text": torch.randn(4, 6)})).loss.shape
        torch.Size([])
    """

    requirements = Requirements(pseudo_labels=True)

    def __init__(
        self,
        embedding_dims: Mapping[str, int],
        modalities: Sequence[str] = ("image", "text"),
        projection_dim: int = 128,
        temperature: float = 0.1,
    ) -> None:
        super().__init__(embedding_dims, modalities)
        self.temperature = check_temperature(temperature)
        self.heads = nn.ModuleDict(
            {m: build_projection(embedding_dims[m], projection_dim) for m in self.modalities[:2]}
        )

    def forward(self, batch: EncodedBatch) -> ObjectiveOutput:
        self.validate_batch(batch)
        a, b = self.modalities[:2]
        za, zb = self.heads[a](batch.view(a)), self.heads[b](batch.view(b))
        loss = dcl_loss(za, zb, self.temperature, batch.pseudo_labels)
        return ObjectiveOutput(loss)


class DCLView(ModalityView):
    """One augmented observation of every modality."""

    def __init__(self, modalities: Mapping[str, str], image_size: int = 32, **kwargs) -> None:
        super().__init__(
            modalities,
            views_per_modality={m: 1 for m in modalities},
            image_size=image_size,
            **kwargs,
        )
