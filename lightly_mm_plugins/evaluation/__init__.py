"""Evaluation of frozen features: linear probe, kNN, cross-modal retrieval.

Example:
    >>> import torch
    >>> x = torch.eye(4); ids = torch.arange(4)
    >>> retrieval_recall(x, ids, x, ids, ks=(1,))["a2b_R@1"]
    1.0
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor

__all__ = ["knn_accuracy", "linear_probe", "retrieval_recall"]


def linear_probe(
    train_x: Tensor,
    train_y: Tensor,
    test_x: Tensor,
    test_y: Tensor,
    max_iter: int = 1000,
    seed: int = 0,
) -> float:
    """Accuracy of a logistic regression on standardised frozen features.

    FactorCL's protocol (sklearn ``LogisticRegression`` on frozen features).
    """
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    if len(torch.unique(train_y)) < 2:
        raise ValueError("a linear probe needs at least two classes in the training labels")
    clf = make_pipeline(StandardScaler(), LogisticRegression(max_iter=max_iter, random_state=seed))
    clf.fit(train_x.double().numpy(), train_y.numpy())
    return float((clf.predict(test_x.double().numpy()) == test_y.numpy()).mean())


def knn_accuracy(
    train_x: Tensor,
    train_y: Tensor,
    test_x: Tensor,
    test_y: Tensor,
    k: int = 20,
    temperature: float = 0.1,
) -> float:
    """Weighted cosine kNN accuracy (InstDisc's vote, as ``lightly`` benchmarks use)."""
    from lightly.utils.benchmarking import knn_predict

    num_classes = int(max(train_y.max(), test_y.max())) + 1
    bank = F.normalize(train_x.float(), dim=1).T.contiguous()
    query = F.normalize(test_x.float(), dim=1)
    pred = knn_predict(query, bank, train_y.long(), num_classes, min(k, len(train_y)), temperature)
    return float((pred[:, 0] == test_y).float().mean())


def retrieval_recall(
    a_feats: Tensor,
    a_ids: Tensor,
    b_feats: Tensor,
    b_ids: Tensor,
    ks: Sequence[int] = (1, 5, 10),
    chunk_size: int = 1024,
) -> dict[str, float]:
    """Cross-modal recall@K in both directions; any correct observation is a hit.

    Queries are every observation of one modality; a query's retrieval is a
    hit at K if any of the top-K observations of the other modality has the
    query's instance id (several captions of one image all count). Cosine
    similarity, computed in chunks so memory stays bounded.
    """
    a = F.normalize(a_feats.float(), dim=1)
    b = F.normalize(b_feats.float(), dim=1)
    out: dict[str, float] = {}
    for name, q, q_ids, g, g_ids in (("a2b", a, a_ids, b, b_ids), ("b2a", b, b_ids, a, a_ids)):
        kmax = min(max(ks), len(g))
        hits = {k: 0 for k in ks}
        for start in range(0, len(q), chunk_size):
            sims = q[start : start + chunk_size] @ g.T
            top = sims.topk(kmax, dim=1).indices
            correct = g_ids[top] == q_ids[start : start + chunk_size, None]
            for k in ks:
                hits[k] += int(correct[:, : min(k, kmax)].any(dim=1).sum())
        for k in ks:
            out[f"{name}_R@{k}"] = hits[k] / max(1, len(q))
    return out
