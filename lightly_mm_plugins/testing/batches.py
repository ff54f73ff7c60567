"""Random inputs for the conformance checks: batches and objectives built like the pipeline.

:func:`random_batch` fills an :class:`~lightly_mm_plugins.api.EncodedBatch` with
everything an objective's ``Requirements`` declare (and can leave parts out, to check
that the objective notices); :func:`build_objective` calls a registered factory with
the arguments the pipeline passes (:func:`objective_kwargs`).

Example:
    >>> from lightly_mm_plugins.testing.batches import EMBEDDING_DIMS
    >>> sorted(EMBEDDING_DIMS)
    ['image', 'text']
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor

from ..api import EncodedBatch, Objective
from ..registry import Entry

__all__ = ["EMBEDDING_DIMS", "NUM_LOCAL", "build_objective", "objective_kwargs", "random_batch"]

#: Embedding sizes the kit builds objectives for.
EMBEDDING_DIMS: dict[str, int] = {"image": 24, "text": 16}
#: Local features per observation (a 4x4 grid of cells / 16 tokens).
NUM_LOCAL = 16


def random_batch(
    objective: Objective,
    batch_size: int = 8,
    seed: int = 0,
    dtype: torch.dtype = torch.float32,
    drop: tuple[str, ...] = (),
) -> EncodedBatch:
    """A random :class:`EncodedBatch` with everything ``objective`` declares.

    ``drop`` names parts to leave out (``momentum``, ``local``, ``labels``) to
    check that the objective notices.
    """
    req = objective.requirements
    g = torch.Generator().manual_seed(seed)

    def randn(*shape: int) -> Tensor:
        return torch.randn(*shape, generator=g).to(dtype)

    emb = {
        m: randn(
            batch_size,
            max(req.views_needed(m), 3 if req.multifold else 1),
            objective.embedding_dims[m],
        )
        for m in objective.modalities
    }
    masks = {m: torch.ones(e.shape[:2], dtype=torch.bool) for m, e in emb.items()}
    if req.multifold:
        for m in masks:
            masks[m][0, -1] = False  # one padded fold
            emb[m][0, -1] = 0
    momentum = local = local_masks = momentum_local = None
    if req.momentum and "momentum" not in drop:
        momentum = {m: randn(*e.shape) for m, e in emb.items()}
    if req.local_features and "local" not in drop:
        local = {m: randn(*e.shape[:2], NUM_LOCAL, e.shape[-1]) for m, e in emb.items()}
        local_masks = {
            m: torch.ones(*e.shape[:2], NUM_LOCAL, dtype=torch.bool) for m, e in emb.items()
        }
        momentum_local = {m: randn(*t.shape) for m, t in local.items()}
    labels = None
    if "labels" not in drop:
        labels = torch.randint(0, 3, (batch_size,), generator=g)
    return EncodedBatch(
        embeddings=emb,
        masks=masks,
        instance_ids=torch.arange(batch_size),
        labels=labels,
        momentum=momentum,
        local=local,
        local_masks=local_masks,
        momentum_local=momentum_local,
        pseudo_labels=torch.tensor([i % 2 for i in range(batch_size)])
        if req.pseudo_labels
        else None,
    )


def objective_kwargs(entry: Entry) -> dict[str, Any]:
    """What the pipeline passes a factory: sizes, modalities, and local sizes if accepted."""
    import inspect

    kwargs: dict[str, Any] = {
        "embedding_dims": dict(EMBEDDING_DIMS),
        "modalities": tuple(EMBEDDING_DIMS),
    }
    try:
        params = inspect.signature(entry.resolve()).parameters
    except (TypeError, ValueError):
        params = {}  # type: ignore[assignment]
    if "local_dims" in params:
        kwargs["local_dims"] = dict(EMBEDDING_DIMS)
    return kwargs


def build_objective(entry: Entry, seed: int = 0) -> Objective:
    """Seed torch with ``seed`` and build ``entry`` with :func:`objective_kwargs`."""
    torch.manual_seed(seed)
    obj = entry.create(**objective_kwargs(entry))
    if not isinstance(obj, Objective):
        raise TypeError(f"factory returned {type(obj).__name__}, not an api.Objective")
    return obj
