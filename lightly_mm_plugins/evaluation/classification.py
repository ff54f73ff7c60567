"""Classification on frozen features: linear probe and weighted kNN.

* :func:`linear_probe`: logistic regression on standardised frozen features.
  FactorCL evaluates its representations this way (official code: sklearn
  ``LogisticRegression`` on ``cat[e1(x1), e2(x2)]``); we standardise the
  features and allow 1000 iterations so the solver converges on raw,
  unnormalised encoder outputs.
* :func:`knn_accuracy`: the weighted cosine kNN of InstDisc (Wu et al. 2018),
  the classifier Lightly's benchmarks monitor with; it reuses
  :func:`lightly.utils.benchmarking.knn_predict`.

Features may be tensors or numpy arrays, ``(N, D)``; labels any integers ``(N,)``.

Example:
    >>> import torch
    >>> x = torch.tensor([[0.0, 1.0], [0.1, 1.0], [1.0, 0.0], [1.0, 0.1]])
    >>> y = torch.tensor([0, 0, 1, 1])
    >>> linear_probe(x, y, x, y), knn_accuracy(x, y, x, y, k=1)
    (1.0, 1.0)
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

from ..losses import check_temperature

__all__ = ["knn_accuracy", "linear_probe"]


def _as_tensor(x: Any) -> Tensor:
    if isinstance(x, Tensor):
        return x.detach()
    return torch.as_tensor(np.asarray(x))


def _check_split(x: Any, y: Any, split: str) -> tuple[Tensor, Tensor]:
    xt, yt = _as_tensor(x), _as_tensor(y)
    if xt.dim() != 2:
        raise ValueError(f"{split}_x must have shape (N, D), got {tuple(xt.shape)}")
    if yt.dim() != 1 or yt.shape[0] != xt.shape[0]:
        raise ValueError(
            f"{split}_y must have shape ({xt.shape[0]},) to match {split}_x, got {tuple(yt.shape)}"
        )
    if xt.shape[0] == 0:
        raise ValueError(f"{split}_x is empty; evaluation needs at least one {split} sample")
    if xt.is_floating_point() and not torch.isfinite(xt).all():
        raise ValueError(f"{split}_x contains NaN or Inf; check the encoder that produced it")
    if yt.is_floating_point() or yt.dtype == torch.bool:
        if yt.is_floating_point() and not torch.equal(yt, yt.round()):
            raise ValueError(f"{split}_y must hold integer class labels")
        yt = yt.long()
    return xt, yt


def _check_pair(train_x: Any, train_y: Any, test_x: Any, test_y: Any) -> tuple[Tensor, ...]:
    trx, try_ = _check_split(train_x, train_y, "train")
    tex, tey = _check_split(test_x, test_y, "test")
    if trx.shape[1] != tex.shape[1]:
        raise ValueError(
            f"train_x has {trx.shape[1]} features but test_x has {tex.shape[1]}; "
            "embed both with the same encoder"
        )
    return trx, try_, tex, tey


def linear_probe(
    train_x: Tensor,
    train_y: Tensor,
    test_x: Tensor,
    test_y: Tensor,
    max_iter: int = 1000,
    C: float = 1.0,
    seed: int = 0,
) -> float:
    """Test accuracy of a logistic regression trained on frozen features.

    ``StandardScaler`` (statistics of the training features) followed by
    sklearn ``LogisticRegression(C=C, max_iter=max_iter)`` (multinomial,
    L-BFGS), fitted on ``(train_x, train_y)`` and scored on ``(test_x, test_y)``.

    Args:
        train_x, test_x: Features ``(N, D)`` / ``(M, D)``.
        train_y, test_y: Integer labels ``(N,)`` / ``(M,)``.
        max_iter: Solver iterations (FactorCL's code uses sklearn's 200 on
            its synthetic data; 1000 lets unnormalised features converge).
        C: Inverse L2 regularisation strength.
        seed: ``random_state`` of the classifier.

    Returns:
        Accuracy in ``[0, 1]``.
    """
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    trx, try_, tex, tey = _check_pair(train_x, train_y, test_x, test_y)
    if len(torch.unique(try_)) < 2:
        raise ValueError(
            "a linear probe needs at least two classes in train_y; got only "
            f"{torch.unique(try_).tolist()}"
        )
    clf = make_pipeline(
        StandardScaler(), LogisticRegression(C=C, max_iter=max_iter, random_state=seed)
    )
    clf.fit(trx.cpu().double().numpy(), try_.cpu().numpy())
    pred = clf.predict(tex.cpu().double().numpy())
    return float((pred == tey.cpu().numpy()).mean())


def knn_accuracy(
    train_x: Tensor,
    train_y: Tensor,
    test_x: Tensor,
    test_y: Tensor,
    k: int = 20,
    temperature: float = 0.1,
    chunk_size: int = 1024,
) -> float:
    """Accuracy of the weighted cosine kNN classifier.

    For a test feature ``q`` the ``k`` training features ``x_i`` with the
    highest cosine similarity ``s_i = <q/|q|, x_i/|x_i|>`` vote with weight
    ``exp(s_i / temperature)``; the predicted class maximises
    ``sum_i exp(s_i / t) [y_i = c]`` (InstDisc, Wu et al. 2018, eq. 8;
    :func:`lightly.utils.benchmarking.knn_predict`).

    Args:
        train_x, test_x: Features ``(N, D)`` / ``(M, D)`` (normalised here).
        train_y, test_y: Integer labels (any values; remapped to ``0..C-1``).
        k: Neighbours (clipped to ``N``).
        temperature: Vote temperature (> 0).
        chunk_size: Test features per step (memory ``chunk_size * (N + k * C)``).

    Returns:
        Accuracy in ``[0, 1]``.
    """
    from lightly.utils.benchmarking import knn_predict

    trx, try_, tex, tey = _check_pair(train_x, train_y, test_x, test_y)
    temperature = check_temperature(temperature)
    if k < 1:
        raise ValueError(f"k must be a positive number of neighbours, got {k}")
    if chunk_size < 1:
        raise ValueError(f"chunk_size must be positive, got {chunk_size}")
    device = trx.device
    classes = torch.unique(torch.cat([try_.to(device), tey.to(device)]))
    train_c = torch.searchsorted(classes, try_.to(device))
    test_c = torch.searchsorted(classes, tey.to(device))
    bank = F.normalize(trx.float(), dim=1).T.contiguous()
    query = F.normalize(tex.float(), dim=1)
    k = min(int(k), trx.shape[0])
    correct = 0
    for start in range(0, query.shape[0], chunk_size):
        pred = knn_predict(
            query[start : start + chunk_size], bank, train_c, len(classes), k, temperature
        )
        correct += int((pred[:, 0] == test_c[start : start + chunk_size]).sum())
    return correct / query.shape[0]
