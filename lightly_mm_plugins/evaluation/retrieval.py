"""Cross-modal retrieval recall@K, both directions, with the multifold any-hit rule.

Every observation of modality *a* queries all observations of modality *b*
(and the other way round) by cosine similarity. Observations carry the id of
the instance they belong to; several observations may share one (five
captions of one image: *multifold* data, MXM-CLR's setting). A query is a hit
at K when **any** of its K most similar gallery observations has the query's
instance id, the usual image-text retrieval protocol (CLIP, ALBEF/TCL: "an
image is retrieved correctly if any of its captions is in the top K"):

    R@K (a2b) = 1/|A| * sum_q [ exists j in topK_b(q) with id_b(j) = id_a(q) ]

Queries whose id has no observation in the gallery count as misses.
Similarities are computed block by block (``chunk_size`` queries against
``chunk_size`` gallery items, keeping a running top-K), so memory stays
``O(chunk_size * (chunk_size + K))`` however large the sets are; torchmetrics'
``RetrievalRecall`` would need the full ``Na x Nb`` score matrix. Ties at the
K-th place are broken by ``torch.topk``.

Example:
    >>> import torch
    >>> x = torch.eye(3)
    >>> retrieval_recall(x, torch.arange(3), x, torch.arange(3), ks=(1,))
    {'a2b_R@1': 1.0, 'b2a_R@1': 1.0}
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

__all__ = ["retrieval_recall"]


def _feats(x: Any, name: str) -> Tensor:
    t = x.detach() if isinstance(x, Tensor) else torch.as_tensor(np.asarray(x))
    if t.dim() != 2 or t.shape[0] == 0:
        raise ValueError(f"{name} must have shape (N, D) with N >= 1, got {tuple(t.shape)}")
    t = t.float()
    if not torch.isfinite(t).all():
        raise ValueError(f"{name} contains NaN or Inf; check the encoder that produced it")
    return t


def _ids(ids: Any, n: int, name: str, device: torch.device) -> Tensor:
    t = ids.detach() if isinstance(ids, Tensor) else torch.as_tensor(np.asarray(ids))
    if t.shape != (n,):
        raise ValueError(
            f"{name} must have shape ({n},) (one id per feature row), got {tuple(t.shape)}"
        )
    return t.to(device)


def _topk_ids(
    queries: Tensor, gallery: Tensor, gallery_ids: Tensor, k: int, chunk_size: int
) -> Tensor:
    """Ids ``(Q, k)`` of each query's ``k`` most similar gallery rows, best first."""
    best_sim = queries.new_full((queries.shape[0], 0), float("-inf"))
    best_ids = gallery_ids.new_empty((queries.shape[0], 0))
    for start in range(0, gallery.shape[0], chunk_size):
        sims = queries @ gallery[start : start + chunk_size].T
        ids = gallery_ids[start : start + chunk_size].expand(queries.shape[0], -1)
        sims, ids = torch.cat([best_sim, sims], 1), torch.cat([best_ids, ids], 1)
        best_sim, idx = sims.topk(min(k, sims.shape[1]), dim=1)
        best_ids = ids.gather(1, idx)
    return best_ids


def retrieval_recall(
    a_feats: Tensor,
    a_ids: Tensor,
    b_feats: Tensor,
    b_ids: Tensor,
    ks: Sequence[int] = (1, 5, 10),
    chunk_size: int = 1024,
) -> dict[str, float]:
    """Recall@K of retrieving *b* from *a* queries and *a* from *b* queries.

    Args:
        a_feats: ``(Na, D)`` features of every observation of modality *a*.
        a_ids: ``(Na,)`` instance id of each row of ``a_feats``.
        b_feats: ``(Nb, D)`` features of modality *b* (same space as *a*).
        b_ids: ``(Nb,)`` instance ids of ``b_feats``' rows.
        ks: Cut-offs K (a K beyond the gallery size counts the whole gallery).
        chunk_size: Rows per block of the similarity matrix (memory bound).

    Returns:
        ``{"a2b_R@K": ..., "b2a_R@K": ...}`` for every K in ``ks``, in ``[0, 1]``.
    """
    a = _feats(a_feats, "a_feats")
    b = _feats(b_feats, "b_feats").to(a.device)
    if a.shape[1] != b.shape[1]:
        raise ValueError(
            f"a_feats has {a.shape[1]} features but b_feats has {b.shape[1]}; retrieval needs "
            "both modalities in one space (e.g. the objective's joint embedding)"
        )
    ia = _ids(a_ids, a.shape[0], "a_ids", a.device)
    ib = _ids(b_ids, b.shape[0], "b_ids", a.device)
    ks = tuple(int(k) for k in ks)
    if not ks or min(ks) < 1:
        raise ValueError(f"ks must be positive cut-offs, got {ks}")
    if chunk_size < 1:
        raise ValueError(f"chunk_size must be positive, got {chunk_size}")
    a, b = F.normalize(a, dim=1), F.normalize(b, dim=1)
    out: dict[str, float] = {}
    for name, q, q_ids, g, g_ids in (("a2b", a, ia, b, ib), ("b2a", b, ib, a, ia)):
        kmax = min(max(ks), g.shape[0])
        hits = dict.fromkeys(ks, 0)
        for start in range(0, q.shape[0], chunk_size):
            top = _topk_ids(q[start : start + chunk_size], g, g_ids, kmax, chunk_size)
            correct = top == q_ids[start : start + chunk_size, None]
            for k in ks:
                hits[k] += int(correct[:, :k].any(dim=1).sum())
        for k in ks:
            out[f"{name}_R@{k}"] = hits[k] / q.shape[0]
    return out
