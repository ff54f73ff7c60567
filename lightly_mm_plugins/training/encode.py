"""Encoding: a :class:`~lightly_mm_plugins.api.CollatedBatch` through the modality
encoders into the :class:`~lightly_mm_plugins.api.EncodedBatch` an objective reads.

Observations arrive as ``(N, V, ...)`` with an ``(N, V)`` validity mask; only
the valid ones are encoded (one encoder call per modality on the flattened
valid observations) and the result is scattered back to ``(N, V, D)`` with
zeros at padding. What else the objective declares it needs
(:class:`~lightly_mm_plugins.api.Requirements`) is filled in: momentum-encoder
embeddings, local features, the stage scheduler's pseudo labels.

Example:
    >>> encoded = encode_batch(batch, objective, encoders)  # doctest: +SKIP
    >>> encoded.embeddings["image"].shape  # doctest: +SKIP
    torch.Size([128, 2, 512])
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torch
from torch import Tensor, nn

from ..api import CollatedBatch, EncodedBatch, Objective


def encode_observations(
    encoder: nn.Module, obs: Any, mask: Tensor, want_local: bool
) -> tuple[Tensor, Tensor | None, Tensor | None]:
    """Encode the valid observations ``(N, V, ...)`` into ``(N, V, D)`` (zeros at padding);
    with ``want_local`` also the local features ``(N, V, L, D_l)`` and their mask."""
    n, v = mask.shape
    flat_mask = mask.reshape(-1)
    flat: Any
    if isinstance(obs, Tensor):
        flat = obs.reshape(n * v, *obs.shape[2:])[flat_mask]
    else:
        strings = [s for row in obs for s in row]
        flat = [s for s, keep in zip(strings, flat_mask.tolist()) if keep]
    loc: Tensor | None
    lmask: Tensor | None
    if want_local:
        g, loc, lmask = encoder.forward_local(flat)  # type: ignore[operator]
    else:
        g, loc, lmask = encoder(flat), None, None
    out = g.new_zeros(n * v, g.shape[-1])
    out[flat_mask] = g
    emb = out.reshape(n, v, -1)
    if loc is None or lmask is None:
        return emb, None, None
    full_loc = loc.new_zeros(n * v, *loc.shape[1:])
    full_loc[flat_mask] = loc
    full_lmask = lmask.new_zeros(n * v, lmask.shape[1])
    full_lmask[flat_mask] = lmask
    return emb, full_loc.reshape(n, v, *loc.shape[1:]), full_lmask.reshape(n, v, -1)


def encode_batch(
    batch: CollatedBatch,
    objective: Objective,
    encoders: nn.ModuleDict | Mapping[str, nn.Module],
    momentum_encoders: nn.ModuleDict | Mapping[str, nn.Module] | None = None,
    pseudo_labels: Tensor | None = None,
) -> EncodedBatch:
    """Every observation of every modality the objective contrasts, encoded."""
    req = objective.requirements
    embeddings: dict[str, Tensor] = {}
    local: dict[str, Tensor] = {}
    local_masks: dict[str, Tensor] = {}
    momentum: dict[str, Tensor] = {}
    momentum_local: dict[str, Tensor] = {}
    for m in objective.modalities:
        if m not in batch.observations:
            raise ValueError(
                f"modality {m!r} missing from the batch (has {sorted(batch.observations)})"
            )
        obs, mask = batch.observations[m], batch.masks[m]
        emb, loc, lmask = encode_observations(encoders[m], obs, mask, req.local_features)
        embeddings[m] = emb
        if loc is not None and lmask is not None:
            local[m], local_masks[m] = loc, lmask
        if momentum_encoders is not None:
            with torch.no_grad():
                mout = encode_observations(momentum_encoders[m], obs, mask, req.local_features)
            momentum[m] = mout[0]
            if mout[1] is not None:
                momentum_local[m] = mout[1]
    return EncodedBatch(
        embeddings=embeddings,
        masks={m: batch.masks[m] for m in embeddings},
        instance_ids=batch.instance_ids,
        labels=batch.labels,
        momentum=momentum or None,
        local=local or None,
        local_masks=local_masks or None,
        momentum_local=momentum_local or None,
        pseudo_labels=pseudo_labels,
        extras=dict(batch.extras),
    )


def first_observation(batch: CollatedBatch, modality: str) -> CollatedBatch:
    """The batch reduced to the first observation of ``modality`` (one per instance)."""
    obs = batch.observations[modality]
    first = obs[:, :1] if isinstance(obs, Tensor) else [row[:1] for row in obs]
    return CollatedBatch(
        observations={modality: first},
        masks={modality: batch.masks[modality][:, :1]},
        kinds=batch.kinds,
        instance_ids=batch.instance_ids,
        labels=batch.labels,
    )
