"""The ``mxm-clr`` objective: per-modality projection heads + :class:`MXMCLRLoss`."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from torch import Tensor

from lightly_mm_plugins.api import EncodedBatch, Objective, ObjectiveOutput, Requirements
from lightly_mm_plugins.heads import modality_heads

from .loss import MXMCLRLoss

__all__ = ["MXMCLRObjective"]


class MXMCLRObjective(Objective):
    """MXM-CLR: project every observation of both modalities, contrast all folds at once.

    Every observation of ``batch.embeddings[m]`` ``(N, V, D)`` (padding given by
    ``batch.masks[m]``) goes through the modality's projection head; the loss
    treats every cross-modal pair of the same ``batch.instance_ids`` as a
    positive (:class:`MXMCLRLoss`). Honours ``batch.pseudo_labels`` (negatives
    restricted to the anchor's group), so it runs under MCL's stage scheduler.
    Downstream features are the encoder embeddings (the default
    :meth:`~lightly_mm_plugins.api.Objective.representation`).

    Defaults other than the loss's follow the project's CLIP baseline (linear
    head to 128, learnable temperature from 0.07), so that a comparison with
    ``clip`` isolates the multifold loss.

    Args:
        embedding_dims: Encoder output size per modality.
        modalities: The two modalities to contrast (the first two are used).
        projection_dim: Output size of the projection heads.
        projection_layers: 1 = linear projection, 2 = MLP.
        head: A registered head name (``linear``, ``mlp`` or a plugin's; see
            ``lightly-mm plugins``) for every modality, or None (default):
            ``projection_layers`` Linear layers.
        temperature: Initial softmax temperature ``τ``.
        learnable_temperature: Learn the temperature (clamped to ``1/τ ≤ 100``).
        soft_weight: ``λ``, weight of the soft targets in the hybrid target.
        soft_temperature: ``τ_s`` of the soft targets (None: the current ``τ``).
        gather_distributed: Contrast against the observations of all ranks.
        chunk_size: ``None``: dense scores; an int: the loss streams blocks of
            that many anchor rows (memory linear in the batch, see :class:`MXMCLRLoss`).

    Example:
        >>> import torch
        >>> from lightly_mm_plugins.api import EncodedBatch
        >>> obj = MXMCLRObjective({"image": 16, "text": 8}, projection_dim=4)
        >>> batch = EncodedBatch.from_tensors(
        ...     {"image": torch.randn(5, 1, 16), "text": torch.randn(5, 3, 8)})
        >>> out = obj(batch)
        >>> sorted(out.logs)
        ['loss_hard', 'loss_soft', 'temperature']
    """

    requirements = Requirements(multifold=True, pseudo_labels=True)

    def __init__(
        self,
        embedding_dims: Mapping[str, int],
        modalities: Sequence[str] = ("image", "text"),
        projection_dim: int = 128,
        projection_layers: int = 1,
        head: str | None = None,
        temperature: float = 0.07,
        learnable_temperature: bool = True,
        soft_weight: float = 0.5,
        soft_temperature: float | None = None,
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
        self.loss_fn = MXMCLRLoss(
            temperature=temperature,
            soft_weight=soft_weight,
            soft_temperature=soft_temperature,
            learnable_temperature=learnable_temperature,
            gather_distributed=gather_distributed,
            chunk_size=chunk_size,
        )

    def project(self, modality: str, embedding: Tensor) -> Tensor:
        """Project ``(..., D)`` embeddings of ``modality`` (any leading shape)."""
        lead = embedding.shape[:-1]
        out = self.heads[modality](embedding.reshape(-1, embedding.shape[-1]))
        return out.reshape(*lead, out.shape[-1])

    def forward(self, batch: EncodedBatch) -> ObjectiveOutput:
        self.validate_batch(batch)
        a, b = self.pair
        for m in self.pair:
            if m not in batch.masks:
                raise ValueError(
                    f"{type(self).__name__}: batch.masks has no entry for {m!r}; a multifold "
                    "batch needs an (N, V) validity mask per modality"
                )
        terms = self.loss_fn.terms(
            self.project(a, batch.embeddings[a]),
            self.project(b, batch.embeddings[b]),
            mask_a=batch.masks[a],
            mask_b=batch.masks[b],
            instance_ids=batch.instance_ids,
            pseudo_labels=batch.pseudo_labels,
        )
        return ObjectiveOutput(
            loss=terms.loss,
            logs={
                "loss_hard": terms.hard.detach(),
                "loss_soft": terms.soft.detach(),
                "temperature": self.loss_fn.temperature_tensor(terms.loss),
            },
        )
