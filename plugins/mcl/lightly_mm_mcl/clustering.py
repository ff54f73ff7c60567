"""k-means for MCL's stage boundaries: scikit-learn (official) or batched torch on the device.

The official ``cluster.py`` (github.com/MajorDavidZhang/MCL) L2-normalises the
image features of the whole training set and runs
``sklearn.cluster.MiniBatchKMeans(n_clusters=10, batch_size=1_000_000,
max_iter=100, tol=1e-5)`` (scikit-learn 1.3.2, so ``n_init=3``; no
``random_state``), then ``predict`` on the same features. ``backend="sklearn"``
does exactly that with a fixed ``random_state``. ``backend="torch"`` is Lloyd's
algorithm with k-means++ seeding on the features' own device, distances
computed in chunks, for training sets too large to copy to the CPU comfortably.

Example:
    >>> import torch
    >>> x = torch.cat([torch.randn(20, 3) * 0.1 + 5, torch.randn(20, 3) * 0.1 - 5])
    >>> labels = kmeans_labels(x, 2, backend="torch", seed=0)
    >>> labels.shape, int(labels[:20].unique().numel()), bool(labels[0] != labels[-1])
    (torch.Size([40]), 1, True)
"""

from __future__ import annotations

import logging

import torch
from torch import Tensor

__all__ = ["KMEANS_BACKENDS", "kmeans_labels"]

logger = logging.getLogger(__name__)

#: Supported clustering back ends.
KMEANS_BACKENDS: tuple[str, ...] = ("sklearn", "torch")


def kmeans_labels(
    features: Tensor,
    num_clusters: int,
    *,
    backend: str = "sklearn",
    seed: int = 0,
    max_iter: int = 100,
    tol: float = 1e-5,
    batch_size: int = 1_000_000,
    n_init: int = 3,
    chunk_size: int = 65_536,
) -> Tensor:
    """Cluster the rows of ``features`` ``(M, D)`` into ``num_clusters`` groups.

    Args:
        features: ``(M, D)`` float features (MCL passes them L2-normalised).
        num_clusters: ``K`` (official default 10); must not exceed ``M``.
        backend: ``"sklearn"`` (``MiniBatchKMeans`` as the official code) or
            ``"torch"`` (Lloyd + k-means++ on ``features.device``).
        seed: ``random_state`` / generator seed: the same input gives the same labels.
        max_iter: Iterations per run (official 100).
        tol: Relative tolerance (official 1e-5). For ``torch``, Lloyd stops when
            the squared centre shift is below ``tol`` times the mean feature
            variance (scikit-learn's convention for ``KMeans``).
        batch_size: ``MiniBatchKMeans`` batch size (official 1e6, i.e. the
            whole set for any training set up to a million instances).
        n_init: Runs with different seeding; the lowest inertia wins.
        chunk_size: Rows per distance computation for ``torch``.

    Returns:
        ``(M,)`` long tensor on the CPU with values in ``[0, num_clusters)``.
    """
    if features.dim() != 2:
        raise ValueError(f"features must have shape (M, D), got {tuple(features.shape)}")
    m = features.shape[0]
    if not 1 <= num_clusters <= m:
        raise ValueError(
            f"num_clusters must be between 1 and the number of instances ({m}), "
            f"got {num_clusters}; lower num_clusters"
        )
    if not torch.isfinite(features).all():
        raise ValueError(
            "features to cluster contain NaN or Inf; the model diverged in the previous stage "
            "(lower the learning rate)"
        )
    if backend == "sklearn":
        return _sklearn_kmeans(features, num_clusters, seed, max_iter, tol, batch_size, n_init)
    if backend == "torch":
        return _torch_kmeans(features, num_clusters, seed, max_iter, tol, n_init, chunk_size)
    raise ValueError(f"unknown k-means backend {backend!r}; use one of {KMEANS_BACKENDS}")


def _sklearn_kmeans(
    features: Tensor,
    k: int,
    seed: int,
    max_iter: int,
    tol: float,
    batch_size: int,
    n_init: int,
) -> Tensor:
    from sklearn.cluster import MiniBatchKMeans

    x = features.detach().float().cpu().numpy()
    km = MiniBatchKMeans(
        n_clusters=k,
        batch_size=batch_size,
        max_iter=max_iter,
        tol=tol,
        n_init=n_init,
        random_state=seed,
    )
    km.fit(x)
    return torch.as_tensor(km.predict(x), dtype=torch.long)


def _assign(x: Tensor, centres: Tensor, chunk: int) -> tuple[Tensor, Tensor]:
    """Nearest centre and squared distance of every row, ``chunk`` rows at a time."""
    c_sq = (centres * centres).sum(1)
    labels, dists = [], []
    for start in range(0, x.shape[0], chunk):
        xs = x[start : start + chunk]
        d = (xs * xs).sum(1, keepdim=True) - 2.0 * xs @ centres.T + c_sq
        best, idx = d.min(dim=1)
        labels.append(idx)
        dists.append(best.clamp_min(0.0))
    return torch.cat(labels), torch.cat(dists)


def _kmeans_pp(x: Tensor, k: int, gen: torch.Generator, chunk: int) -> Tensor:
    """k-means++ seeding (Arthur & Vassilvitskii 2007): next centre drawn with p ~ D(x)^2."""
    m = x.shape[0]
    first = int(torch.randint(m, (1,), generator=gen))
    centres = [x[first]]
    d2 = _assign(x, x[first : first + 1], chunk)[1]
    for _ in range(1, k):
        weights = d2.double().cpu()
        if float(weights.sum()) <= 0:  # all points coincide with a centre
            idx = int(torch.randint(m, (1,), generator=gen))
        else:
            idx = int(torch.multinomial(weights, 1, generator=gen))
        centres.append(x[idx])
        d2 = torch.minimum(d2, _assign(x, x[idx : idx + 1], chunk)[1])
    return torch.stack(centres)


@torch.no_grad()
def _torch_kmeans(
    features: Tensor,
    k: int,
    seed: int,
    max_iter: int,
    tol: float,
    n_init: int,
    chunk: int,
) -> Tensor:
    x = features.detach().float()
    gen = torch.Generator().manual_seed(seed)
    tol_abs = tol * float(x.var(dim=0, unbiased=False).mean())
    best_labels: Tensor | None = None
    best_inertia = float("inf")
    for run in range(max(1, n_init)):
        centres = _kmeans_pp(x, k, gen, chunk)
        for _ in range(max_iter):
            labels, d2 = _assign(x, centres, chunk)
            counts = torch.bincount(labels, minlength=k)
            sums = torch.zeros_like(centres).index_add_(0, labels, x)
            new = sums / counts.clamp_min(1).unsqueeze(1).to(x.dtype)
            empty = (counts == 0).nonzero().flatten()
            if empty.numel():  # re-seed empty clusters at the farthest points
                far = d2.topk(int(empty.numel())).indices
                new[empty] = x[far]
            shift = float(((new - centres) ** 2).sum())
            centres = new
            if shift <= tol_abs:
                break
        labels, d2 = _assign(x, centres, chunk)
        inertia = float(d2.sum())
        logger.debug("torch k-means run %d: inertia %.6g", run, inertia)
        if inertia < best_inertia:
            best_inertia, best_labels = inertia, labels
    assert best_labels is not None
    return best_labels.cpu().long()
