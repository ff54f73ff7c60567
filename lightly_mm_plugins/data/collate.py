"""Collation of viewed samples into a :class:`~lightly_mm_plugins.api.CollatedBatch`.

Instances may have a different number of observations per modality (multifold
data: 3 captions here, 5 there). With ``V = max`` over the batch, observation
``j`` of instance ``i`` goes to row ``[i, j]`` and ``masks[m][i, j]`` says
whether it is real (True) or padding (False). Padding is zeros for tensors and
``""`` for text. ``instance_ids`` keep the data set's ids, so an objective can
find all positives of an instance in the (gathered) batch.

Example:
    >>> import torch
    >>> from lightly_mm_plugins.api import Sample
    >>> batch = collate_samples(
    ...     [Sample(7, {"text": ["a", "b"], "x": [torch.ones(3)]}, label=1),
    ...      Sample(9, {"text": ["c"], "x": [torch.zeros(3)]}, label=0)],
    ...     {"text": "text", "x": "vector"},
    ... )
    >>> batch.observations["text"], batch.masks["text"].tolist()
    ([['a', 'b'], ['c', '']], [[True, True], [True, False]])
    >>> tuple(batch.observations["x"].shape), batch.instance_ids.tolist()
    ((2, 1, 3), [7, 9])
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import torch
from torch import Tensor

from ..api import MODALITY_KINDS, CollatedBatch, Sample
from ..errors import DataError


def _as_int(value: Any, what: str, instance_id: int) -> int:
    if type(value) is int:
        return value
    if isinstance(value, Tensor):
        if value.numel() != 1:
            raise DataError(
                f"{what} of instance {instance_id} must be one integer, got shape "
                f"{tuple(value.shape)}"
            )
        value = value.item()
    if isinstance(value, bool) or not float(value).is_integer():
        raise DataError(f"{what} of instance {instance_id} must be an integer, got {value!r}")
    return int(value)


def _stack(m: str, kind: str, samples: Sequence[Sample], rows: list[list[Any]], v: int) -> Tensor:
    first = rows[0][0]
    if not isinstance(first, Tensor):
        raise DataError(
            f"modality {m!r} ({kind}) must hold tensors after the view, got "
            f"{type(first).__name__}; the view must turn raw {kind}s into tensors"
        )
    expected_dim = 3 if kind == "image" else 1
    if first.dim() != expected_dim:
        want = "(C, H, W)" if kind == "image" else "(D,)"
        raise DataError(
            f"modality {m!r} ({kind}): an observation must have shape {want}, got "
            f"{tuple(first.shape)} (instance {samples[0].instance_id})"
        )
    shape, dtype = tuple(first.shape), first.dtype
    for i, row in enumerate(rows):
        for j, obs in enumerate(row):
            if not isinstance(obs, Tensor) or tuple(obs.shape) != shape or obs.dtype != dtype:
                got = (
                    f"shape {tuple(obs.shape)} {obs.dtype}"
                    if isinstance(obs, Tensor)
                    else type(obs).__name__
                )
                raise DataError(
                    f"modality {m!r}: observation {j} of instance {samples[i].instance_id} "
                    f"has {got}, expected shape {shape} {dtype} like instance "
                    f"{samples[0].instance_id}; make the view emit one size "
                    "(resize images, fixed-length vectors)"
                )
    if all(len(row) == v for row in rows):  # no padding: one stack
        return torch.stack([obs for row in rows for obs in row]).view(len(rows), v, *shape)
    out = first.new_zeros(len(rows), v, *shape)
    for i, row in enumerate(rows):
        for j, obs in enumerate(row):
            out[i, j] = obs
    return out


def collate_samples(samples: Sequence[Sample], kinds: Mapping[str, str]) -> CollatedBatch:
    """Stack viewed samples; pad instances with fewer observations and mask them.

    Args:
        samples: Viewed samples (images ``(C, H, W)`` and vectors ``(D,)``
            tensors, text strings).
        kinds: Modality name -> kind for the modalities to collate.

    Returns:
        A :class:`~lightly_mm_plugins.api.CollatedBatch`: images
        ``(N, V, C, H, W)``, vectors ``(N, V, D)`` (zeros at padding), text a
        list of N lists of V strings (``""`` at padding), ``masks[m]`` ``(N, V)``
        bool, ``instance_ids`` ``(N,)`` long, ``labels`` ``(N,)`` long or None
        (None when any sample has no label), and ``extras["labels"]``: name ->
        ``(N,)`` long for the extra labels every sample has in
        ``extras["labels"]``.

    Raises:
        DataError: empty batch, a missing modality, an instance without
            observations, an empty caption, or observations of inconsistent
            shape / type.
    """
    if not samples:
        raise DataError("cannot collate an empty batch")
    observations: dict[str, Any] = {}
    masks: dict[str, Tensor] = {}
    for m, kind in kinds.items():
        if kind not in MODALITY_KINDS:
            raise DataError(
                f"modality {m!r} has unknown kind {kind!r}; use one of {', '.join(MODALITY_KINDS)}"
            )
        rows: list[list[Any]] = []
        for s in samples:
            obs = s.observations.get(m)
            if not obs:
                raise DataError(
                    f"instance {s.instance_id} has no observation of modality {m!r} (has "
                    f"{sorted(k for k, v in s.observations.items() if v)}); check the data "
                    "set and the view"
                )
            rows.append(list(obs))
        v = max(len(r) for r in rows)
        lengths = torch.tensor([len(r) for r in rows])
        masks[m] = torch.arange(v) < lengths[:, None]
        if kind == "text":
            for i, r in enumerate(rows):
                bad = [type(o).__name__ for o in r if not isinstance(o, str)]
                if bad:
                    raise DataError(
                        f"modality {m!r} (text): instance {samples[i].instance_id} has "
                        f"non-string observations ({', '.join(bad)}); text must be str"
                    )
                if not all(o.strip() for o in r):
                    j = next(j for j, o in enumerate(r) if not o.strip())
                    raise DataError(
                        f"modality {m!r} (text): observation {j} of instance "
                        f"{samples[i].instance_id} is an empty caption; empty strings mark "
                        "padding, so remove or fill it in the data set"
                    )
            observations[m] = [r + [""] * (v - len(r)) for r in rows]
        else:
            observations[m] = _stack(m, kind, samples, rows, v)

    labels = None
    if all(s.label is not None for s in samples):
        labels = torch.tensor(
            [_as_int(s.label, "label", s.instance_id) for s in samples], dtype=torch.long
        )
    extras: dict[str, Any] = {}
    extra_labels = [s.extras.get("labels") for s in samples]
    if all(isinstance(e, Mapping) for e in extra_labels):
        keys = set.intersection(*(set(e) for e in extra_labels))  # type: ignore[arg-type]
        extras["labels"] = {
            k: torch.tensor(
                [
                    _as_int(e[k], f"extras['labels'][{k!r}]", s.instance_id)  # type: ignore[index]
                    for e, s in zip(extra_labels, samples)
                ],
                dtype=torch.long,
            )
            for k in sorted(keys)
        }
    return CollatedBatch(
        observations=observations,
        masks=masks,
        kinds=dict(kinds),
        instance_ids=torch.tensor(
            [_as_int(s.instance_id, "instance_id", s.instance_id) for s in samples],
            dtype=torch.long,
        ),
        labels=labels,
        extras=extras,
    )
