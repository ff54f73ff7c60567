"""The baseline objective: per-modality projection heads + :class:`CLIPLoss`."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from torch import Tensor

from lightly_mm_plugins.api import (
    EncodedBatch,
    Objective,
    ObjectiveOutput,
    Requirements,
)
from lightly_mm_plugins.heads import modality_heads

from .loss import CLIPLoss


class CLIPObjective(Objective):
    """CLIP: project each modality, contrast the pair with symmetric InfoNCE.

    Uses the first observation of the first two ``modalities``. Honours
    ``batch.pseudo_labels`` (negatives restricted to the anchor's group), so
    it runs under MCL's stage scheduler.

    Args:
        embedding_dims: Encoder output size per modality.
        modalities: The two modalities to contrast.
        projection_dim: Output size of the projection heads.
        projection_layers: 1 = linear projection (CLIP), 2 = MLP.
        head: A registered head name (``linear``, ``mlp`` or a plugin's; see
            ``lightly-mm plugins``) for every modality, or None (default):
            ``projection_layers`` Linear layers.
        temperature: Initial softmax temperature (CLIP: 0.07).
        learnable_temperature: Learn the temperature (CLIP: yes).
        gather_distributed: Contrast against all ranks' embeddings.
        chunk_size: ``None``: dense logits; an int: streaming InfoNCE in blocks
            of that many rows (memory linear in the batch, see :class:`CLIPLoss`).

    Example:
        >>> import torch
        >>> from lightly_mm_plugins.api import EncodedBatch
        >>> obj = CLIPObjective({"image": 16, "text": 8}, projection_dim=4)
        >>> out = obj(EncodedBatch.from_tensors(
        ...     {"image": torch.randn(5, 16), "text": torch.randn(5, 8)}))
        >>> out.loss.shape
        torch.Size([])
    """

    requirements = Requirements(pseudo_labels=True)

    def __init__(
        self,
        embedding_dims: Mapping[str, int],
        modalities: Sequence[str] = ("image", "text"),
        projection_dim: int = 128,
        projection_layers: int = 1,
        head: str | None = None,
        temperature: float = 0.07,
        learnable_temperature: bool = True,
        gather_distributed: bool = False,
        chunk_size: int | None = None,
    ) -> None:
        super().__init__(embedding_dims, modalities)
        self.pair = self.modalities[:2]
        self.heads = modality_heads(
            {m: self.embedding_dims[m] for m in self.pair},
            projection_dim,
            head=head,
            num_layers=projection_layers,
        )
        self.loss_fn = CLIPLoss(
            temperature=temperature,
            learnable_temperature=learnable_temperature,
            gather_distributed=gather_distributed,
            chunk_size=chunk_size,
        )

    def project(self, modality: str, embedding: Tensor) -> Tensor:
        return self.heads[modality](embedding)

    def forward(self, batch: EncodedBatch) -> ObjectiveOutput:
        self.validate_batch(batch)
        a, b = self.pair
        za = self.project(a, batch.view(a))
        zb = self.project(b, batch.view(b))
        loss = self.loss_fn(za, zb, pseudo_labels=batch.pseudo_labels)
        return ObjectiveOutput(
            loss=loss,
            logs={"temperature": self.loss_fn.temperature_tensor(loss)},
        )
