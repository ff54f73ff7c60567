"""MCL as a wrapper: any registered objective that honours pseudo labels is the per-stage loss.

MCL changes *which negatives* an anchor sees, not the loss (the official code
trains with open_clip's unchanged ``ClipLoss``). So instead of copying each
loss, :class:`MCLObjective` builds the objective named ``inner`` through the
host and forwards every batch to it; the stage scheduler ``mcl`` supplies
``batch.pseudo_labels`` and the inner objective restricts its negatives to the
anchor's group (e.g. ``cross_modal_info_nce(..., pseudo_labels=...)`` masks the
logits of other-group keys to ``-inf``). An objective whose
``requirements.pseudo_labels`` is False cannot restrict negatives and is
rejected.

Example:
    >>> import torch
    >>> from lightly_mm_plugins.api import EncodedBatch
    >>> obj = MCLObjective({"image": 16, "text": 8}, inner="clip",
    ...                    inner_kwargs={"projection_dim": 4})  # doctest: +SKIP
    >>> batch = EncodedBatch.from_tensors(
    ...     {"image": torch.randn(6, 16), "text": torch.randn(6, 8)},
    ...     pseudo_labels=torch.tensor([0, 0, 0, 1, 1, 1]))
    >>> obj(batch).loss.shape  # doctest: +SKIP
    torch.Size([])
"""

from __future__ import annotations

import inspect
from collections.abc import Mapping, Sequence
from typing import Any

from torch import Tensor, nn

from lightly_mm_plugins.api import EncodedBatch, Objective, ObjectiveOutput, Requirements


class MCLObjective(Objective):
    """Forward to the registered objective ``inner``, which must honour pseudo labels.

    ``requirements`` are the inner objective's (they already declare
    ``pseudo_labels=True``); ``representation``, ``joint_embedding``, the
    auxiliary step and ``validate_batch`` delegate to it. The inner objective is the submodule
    ``inner``, so state dicts hold its parameters and buffers as ``inner.*``.

    Args:
        embedding_dims: Encoder output size per modality (passed to ``inner``).
        modalities: Modalities to contrast (passed to ``inner``).
        inner: Name of a registered objective (``clip``, ``cct``, ``mxmclr``, ...).
        inner_kwargs: Keyword arguments of the inner objective.
        local_dims: Local feature sizes; forwarded only if ``inner`` accepts them.
        gather_distributed: Forwarded to ``inner`` when given (None: its default).
        **kwargs: Further inner keyword arguments (merged over ``inner_kwargs``),
            so ``--method-args temperature=0.1`` reaches the inner objective.

    Raises:
        ValueError: ``inner`` is unknown, is ``mcl`` itself, or does not declare
            ``requirements.pseudo_labels``.
    """

    # Permissive class default so that the base class does not reject a
    # one-modality inner objective (CCT); the instance takes the inner's.
    requirements = Requirements(modalities=1, pseudo_labels=True)

    def __init__(
        self,
        embedding_dims: Mapping[str, int],
        modalities: Sequence[str] = ("image", "text"),
        inner: str = "clip",
        inner_kwargs: Mapping[str, Any] | None = None,
        local_dims: Mapping[str, int] | None = None,
        gather_distributed: bool | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(embedding_dims, modalities)
        from lightly_mm_plugins import get_host
        from lightly_mm_plugins.errors import UnknownComponentError

        if not isinstance(inner, str) or not inner:
            raise ValueError(f"inner must be the name of a registered objective, got {inner!r}")
        if inner.strip().lower() == "mcl":
            raise ValueError("inner='mcl' would wrap MCL in itself; name the per-stage objective")
        registry = get_host().registry("objectives")
        try:
            entry = registry.get(inner)
        except UnknownComponentError as exc:
            raise ValueError(
                f"MCLObjective: inner objective {inner!r} is not registered ({exc}). Install the "
                "plugin that provides it (the default 'clip' comes from lightly-mm-clip) or pass "
                "inner=<name>."
            ) from exc
        args: dict[str, Any] = {**dict(inner_kwargs or {}), **kwargs}
        if gather_distributed is not None:
            args["gather_distributed"] = gather_distributed
        if local_dims is not None and "local_dims" not in args:
            try:
                params = inspect.signature(entry.resolve()).parameters
            except (TypeError, ValueError):
                params = {}  # type: ignore[assignment]
            if "local_dims" in params:
                args["local_dims"] = dict(local_dims)
        built = entry.create(
            embedding_dims=dict(embedding_dims), modalities=tuple(self.modalities), **args
        )
        if not isinstance(built, Objective):
            raise ValueError(
                f"MCLObjective: objective {inner!r} built a {type(built).__name__}, not an "
                "lightly_mm_plugins.api.Objective"
            )
        if not built.requirements.pseudo_labels:
            raise ValueError(
                f"MCLObjective: objective {inner!r} does not declare requirements.pseudo_labels, "
                "so it cannot restrict its negatives to the anchor's pseudo-label group. Use an "
                "objective that honours batch.pseudo_labels (clip, cct, ...), or run it with "
                "--scheduler mcl --scheduler-args sampler=group (single-group batches) instead "
                "of this wrapper."
            )
        self.inner_name = inner
        self.inner: Objective = built
        self.requirements = built.requirements
        self.joint_space = built.joint_space
        self.auxiliary_steps = built.auxiliary_steps
        self.auxiliary_lr = built.auxiliary_lr
        self.embedding_dims = dict(built.embedding_dims)
        self.modalities = tuple(built.modalities)

    def forward(self, batch: EncodedBatch) -> ObjectiveOutput:
        """The inner objective's output on ``batch`` (negatives restricted by its pseudo labels).

        Raises ``RuntimeError`` when training without pseudo labels and without a
        stage driver: MCL without its stages is exactly the inner objective
        (plain CLIP by default), which would otherwise go unnoticed for a whole run.
        """
        if self.training and batch.pseudo_labels is None and self.stage is None:
            self.inner.validate_batch(batch)  # a malformed batch is named first
            raise RuntimeError(
                "MCLObjective got a training batch without pseudo labels and no stage driver "
                "announced a stage: without MCL's stages this is plain "
                f"{self.inner_name!r}. In your own Lightning script add the callback "
                "lightly_mm_mcl.MCLStages (it clusters at stage ends and gives each batch its "
                "pseudo labels: EncodedBatch(..., pseudo_labels=stages.pseudo_labels(ids))); "
                "lightly-mm train does this for you. To train the plain objective, create "
                f"{self.inner_name!r} instead."
            )
        return self.inner(batch)

    def set_stage(self, stage: int) -> None:
        super().set_stage(stage)
        self.inner.set_stage(stage)

    def representation(self, modality: str, embedding: Tensor) -> Tensor:
        return self.inner.representation(modality, embedding)

    def joint_embedding(self, modality: str, embedding: Tensor) -> Tensor | None:
        return self.inner.joint_embedding(modality, embedding)

    def auxiliary_parameters(self) -> list[nn.Parameter]:
        return self.inner.auxiliary_parameters()

    def auxiliary_loss(self, batch: EncodedBatch) -> Tensor:
        return self.inner.auxiliary_loss(batch)

    def validate_batch(self, batch: EncodedBatch) -> None:
        self.inner.validate_batch(batch)

    def extra_repr(self) -> str:
        return f"inner={self.inner_name!r}"
