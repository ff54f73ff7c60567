"""Checks of an objective and of an :class:`~lightly_mm_plugins.api.EncodedBatch` against it.

:func:`validate_batch` is what ``Objective.validate_batch`` runs: it compares a
batch with the objective's declared modalities, embedding sizes and
:class:`~lightly_mm_plugins.api.Requirements`, and raises a ``ValueError``
naming the field, the shapes and the fix (instead of a shape error deep inside
a loss). :func:`joint_embedding_problem` says, before training, why the
objective's joint embedding (for retrieval) cannot be found. Both are
re-exported by :mod:`lightly_mm_plugins.api`.

Example:
    >>> import torch
    >>> from lightly_mm_plugins.api import EncodedBatch, Objective
    >>> objective = Objective(embedding_dims={"image": 8, "text": 8})
    >>> batch = EncodedBatch.from_tensors({"image": torch.randn(4, 8)})
    >>> validate_batch(objective, batch)
    Traceback (most recent call last):
    ...
    ValueError: Objective: modality 'text' missing from the batch (has ['image']); ...
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import torch
from torch import Tensor

if TYPE_CHECKING:
    from .api import EncodedBatch, Objective


def validate_batch(objective: Objective, batch: EncodedBatch) -> None:
    """Check a batch against an objective's declared modalities and requirements.

    Raises a ``ValueError`` naming the field, the shapes and the fix. Shape and
    dtype checks are free; the value checks (finite embeddings, at least one
    valid observation per instance) are reduced to one boolean, so a good
    batch costs a single host-device synchronisation.
    """
    name = type(objective).__name__
    req = objective.requirements
    ids = batch.instance_ids
    if not isinstance(ids, Tensor) or ids.dim() != 1:
        shape = tuple(ids.shape) if isinstance(ids, Tensor) else type(ids).__name__
        raise ValueError(
            f"{name}: instance_ids must be a 1-d tensor (one id per instance), got {shape}"
        )
    if ids.is_floating_point() or ids.is_complex() or ids.dtype == torch.bool:
        raise ValueError(
            f"{name}: instance_ids must be an integer tensor (data-set indices), got {ids.dtype}"
        )
    n = batch.batch_size
    if n < 2:
        raise ValueError(
            f"{name}: a contrastive batch needs at least 2 instances, got {n}. "
            "Use a larger batch size (and drop_last=True)."
        )
    flags: list[tuple[str, Tensor, Tensor]] = []
    for m in objective.modalities:
        if m not in batch.embeddings:
            raise ValueError(
                f"{name}: modality {m!r} missing from the batch (has "
                f"{sorted(batch.embeddings)}); the objective was built for modalities "
                f"{list(objective.modalities)}. Check the view and the data set."
            )
        emb = batch.embeddings[m]
        if emb.dim() != 3:
            raise ValueError(
                f"{name}: embeddings[{m!r}] must have shape (N={n}, V, D), got "
                f"{tuple(emb.shape)}; use EncodedBatch.from_tensors for (N, D) tensors"
            )
        if emb.shape[0] != n:
            raise ValueError(
                f"{name}: embeddings[{m!r}] hold {emb.shape[0]} instances but instance_ids "
                f"has {n} entries; give one id per instance"
            )
        expected = objective.embedding_dims.get(m)
        if expected is not None and emb.shape[-1] != expected:
            raise ValueError(
                f"{name}: embeddings[{m!r}] have {emb.shape[-1]} features but the "
                f"objective was built for {expected}; build it with the encoder's output "
                f"size (embedding_dims={{{m!r}: {emb.shape[-1]}}})"
            )
        if emb.shape[1] < req.views_needed(m):
            raise ValueError(
                f"{name}: needs {req.views_needed(m)} views of {m!r}, got {emb.shape[1]}. "
                "Use a view that produces them."
            )
        mask = batch.masks.get(m)
        if mask is None:
            raise ValueError(
                f"{name}: batch.masks has no entry for {m!r}; every modality needs an (N, V) "
                "bool validity mask (EncodedBatch.from_tensors makes all-valid ones)"
            )
        if tuple(mask.shape) != tuple(emb.shape[:2]):
            raise ValueError(
                f"{name}: masks[{m!r}] must have the shape (N, V) = {tuple(emb.shape[:2])} of "
                f"embeddings[{m!r}], got {tuple(mask.shape)}"
            )
        if mask.dtype != torch.bool:
            raise ValueError(
                f"{name}: masks[{m!r}] must be a bool tensor (True = real observation), "
                f"got {mask.dtype}"
            )
        flags.append((m, emb, mask))
    for field_name, value in (("labels", batch.labels), ("pseudo_labels", batch.pseudo_labels)):
        if value is not None and tuple(value.shape) != (n,):
            raise ValueError(
                f"{name}: {field_name} must have shape ({n},) (one per instance), got "
                f"{tuple(value.shape)}"
            )
    if req.momentum:
        if not batch.momentum:
            raise ValueError(f"{name}: needs momentum embeddings (batch.momentum is empty)")
        for m in objective.modalities:
            mom = batch.momentum.get(m)
            if mom is not None and mom.shape != batch.embeddings[m].shape:
                raise ValueError(
                    f"{name}: momentum[{m!r}] has shape {tuple(mom.shape)}, embeddings[{m!r}] "
                    f"{tuple(batch.embeddings[m].shape)}; they must match"
                )
    if req.local_features and not batch.local:
        raise ValueError(f"{name}: needs local features (batch.local is empty)")
    if req.labels and batch.labels is None:
        raise ValueError(f"{name}: needs labels; use a labelled data set")
    # One synchronisation for all value checks; find the culprit only on failure.
    checks = [torch.isfinite(emb).all() & mask.any(dim=1).all() for _, emb, mask in flags]
    if checks and not bool(torch.stack(checks).all()):
        for m, emb, mask in flags:
            if not bool(torch.isfinite(emb).all()):
                raise ValueError(
                    f"{name}: embeddings[{m!r}] contain NaN or Inf; check the encoder "
                    "(learning rate, mixed precision) and the input data."
                )
            if not bool(mask.any(dim=1).all()):
                empty = (~mask.any(dim=1)).nonzero().flatten()[:5].tolist()
                raise ValueError(
                    f"{name}: masks[{m!r}] mark every observation of some instances as padding "
                    f"(rows {empty}); each instance needs at least one real observation of "
                    "every modality. Check the collation and the data set."
                )


def joint_embedding_problem(objective: Objective) -> str | None:
    """Why the pipeline cannot find ``objective``'s joint embedding, or None if it can.

    With :attr:`Objective.joint_space` True, :meth:`Objective.joint_embedding`
    must map ``(2, D_m)`` embeddings of every contrasted modality to ``(2, P)``
    with the same ``P`` for all of them. Costs one tiny forward per modality.
    """
    if not objective.joint_space:
        return None
    name = type(objective).__name__
    sizes: dict[str, int] = {}
    param = next(objective.parameters(), None)
    device = param.device if param is not None else torch.device("cpu")
    dtype = param.dtype if param is not None and param.is_floating_point() else torch.float32
    was_training = objective.training
    objective.eval()
    try:
        with torch.no_grad():
            for m in objective.modalities:
                x = torch.zeros(2, objective.embedding_dims[m], device=device, dtype=dtype)
                try:
                    out = objective.joint_embedding(m, x)
                except NotImplementedError as exc:
                    return str(exc)
                if not isinstance(out, Tensor) or out.dim() != 2 or out.shape[0] != 2:
                    got = tuple(out.shape) if isinstance(out, Tensor) else repr(out)
                    return (
                        f"{name}.joint_embedding({m!r}, (2, D)) must return a (2, P) tensor, "
                        f"got {got}; return None only with joint_space = False"
                    )
                sizes[m] = int(out.shape[1])
    finally:
        objective.train(was_training)
    if len(set(sizes.values())) > 1:
        return f"{name}.joint_embedding gives different sizes per modality: {sizes}"
    return None
