"""Evaluation of frozen features: linear probe, kNN accuracy, cross-modal retrieval.

* :func:`linear_probe` (FactorCL's protocol: logistic regression on frozen features),
* :func:`knn_accuracy` (weighted cosine kNN, Lightly's ``knn_predict``),
* :func:`retrieval_recall` (recall@K both directions, any correct observation
  of a multifold instance is a hit; chunked).

Example:
    >>> import torch
    >>> x = torch.eye(4); ids = torch.arange(4)
    >>> retrieval_recall(x, ids, x, ids, ks=(1,))["a2b_R@1"]
    1.0
"""

from __future__ import annotations

from .classification import knn_accuracy, linear_probe
from .retrieval import retrieval_recall

__all__ = ["knn_accuracy", "linear_probe", "retrieval_recall"]
