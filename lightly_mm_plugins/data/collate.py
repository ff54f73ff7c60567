"""Collation of viewed samples into a :class:`~lightly_mm_plugins.api.CollatedBatch`."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import torch
from torch import Tensor

from ..api import CollatedBatch, Sample
from ..errors import DataError


def collate_samples(samples: Sequence[Sample], kinds: Mapping[str, str]) -> CollatedBatch:
    """Stack viewed samples; pad instances with fewer observations and mask them.

    Images become ``(N, V, C, H, W)``, vectors ``(N, V, D)`` (zeros at padding),
    text a list of N lists of V strings (``""`` at padding); ``masks[m]`` is
    ``(N, V)`` bool. Instance ids and labels are kept so objectives can find
    every observation of an instance.
    """
    if not samples:
        raise DataError("cannot collate an empty batch")
    observations: dict[str, Any] = {}
    masks: dict[str, Tensor] = {}
    for m, kind in kinds.items():
        rows = []
        for s in samples:
            if m not in s.observations or not s.observations[m]:
                raise DataError(f"instance {s.instance_id} has no observation of modality {m!r}")
            rows.append(s.observations[m])
        v = max(len(r) for r in rows)
        mask = torch.zeros(len(rows), v, dtype=torch.bool)
        for i, r in enumerate(rows):
            mask[i, : len(r)] = True
        masks[m] = mask
        if kind == "text":
            observations[m] = [list(r) + [""] * (v - len(r)) for r in rows]
            continue
        first = rows[0][0]
        if not isinstance(first, Tensor):
            raise DataError(
                f"modality {m!r} ({kind}) must be tensors after the view, got "
                f"{type(first).__name__}; the view must transform raw {kind}s"
            )
        shape = tuple(first.shape)
        out = first.new_zeros(len(rows), v, *shape)
        for i, r in enumerate(rows):
            for j, o in enumerate(r):
                if tuple(o.shape) != shape:
                    raise DataError(
                        f"modality {m!r}: observation of instance {samples[i].instance_id} "
                        f"has shape {tuple(o.shape)}, expected {shape} (resize in the view)"
                    )
                out[i, j] = o
        observations[m] = out
    labels = None
    if all(s.label is not None for s in samples):
        labels = torch.tensor([int(s.label) for s in samples])  # type: ignore[arg-type]
    extras: dict[str, Any] = {}
    extra_labels = [s.extras.get("labels") for s in samples]
    if all(isinstance(e, dict) for e in extra_labels):
        keys = set.intersection(*(set(e) for e in extra_labels))  # type: ignore[arg-type]
        extras["labels"] = {
            k: torch.tensor([int(e[k]) for e in extra_labels])  # type: ignore[index]
            for k in sorted(keys)
        }
    return CollatedBatch(
        observations=observations,
        masks=masks,
        kinds=dict(kinds),
        instance_ids=torch.tensor([s.instance_id for s in samples], dtype=torch.long),
        labels=labels,
        extras=extras,
    )
