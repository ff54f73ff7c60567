"""Evaluation metrics on hand-made cases with known answers and numpy references."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from lightly_mm_plugins.evaluation import knn_accuracy, linear_probe, retrieval_recall


def _at_angles(degrees: list[float]) -> torch.Tensor:
    """Unit vectors in the plane: cosine similarity = cos(angle difference)."""
    rad = torch.tensor(degrees, dtype=torch.float64) * math.pi / 180
    return torch.stack([rad.cos(), rad.sin()], dim=1)


# ---------------------------------------------------------------------------
# Linear probe
# ---------------------------------------------------------------------------


def test_linear_probe_is_perfect_on_separable_data_of_any_scale():
    g = torch.Generator().manual_seed(0)
    y = torch.arange(60) % 3
    x = torch.randn(60, 6, generator=g) + 10 * torch.nn.functional.one_hot(y, 6).float()
    assert linear_probe(x[:45], y[:45], x[45:], y[45:]) == 1.0
    # Standardisation: a huge scale and offset change nothing.
    assert linear_probe(1e6 * x[:45] + 3e6, y[:45], 1e6 * x[45:] + 3e6, y[45:]) == 1.0
    # Arbitrary label values and numpy inputs.
    assert (
        linear_probe(x[:45].numpy(), 7 + 5 * y[:45].numpy(), x[45:].numpy(), 7 + 5 * y[45:]) == 1.0
    )


def test_linear_probe_matches_a_direct_sklearn_pipeline():
    from sklearn.linear_model import LogisticRegression
    from sklearn.preprocessing import StandardScaler

    rng = np.random.default_rng(1)
    x = rng.normal(size=(120, 5))
    y = (x[:, 0] + 0.8 * rng.normal(size=120) > 0).astype(int)
    scaler = StandardScaler().fit(x[:80])
    clf = LogisticRegression(max_iter=1000).fit(scaler.transform(x[:80]), y[:80])
    want = float((clf.predict(scaler.transform(x[80:])) == y[80:]).mean())
    got = linear_probe(torch.from_numpy(x[:80]), torch.from_numpy(y[:80]), x[80:], y[80:])
    assert got == want
    assert 0.5 < got < 1.0  # a noisy case: the probe is not trivially perfect


def test_linear_probe_rejects_bad_input():
    x, y = torch.randn(10, 3), torch.arange(10) % 2
    with pytest.raises(ValueError, match="two classes"):
        linear_probe(x, torch.zeros(10, dtype=torch.long), x, y)
    with pytest.raises(ValueError, match="features"):
        linear_probe(x, y, torch.randn(10, 4), y)
    with pytest.raises(ValueError, match=r"train_y must have shape \(10,\)"):
        linear_probe(x, y[:9], x, y)
    with pytest.raises(ValueError, match="NaN"):
        linear_probe(x, y, torch.full((10, 3), float("nan")), y)


# ---------------------------------------------------------------------------
# kNN
# ---------------------------------------------------------------------------


def _knn_reference(train_x, train_y, test_x, k, t):
    """InstDisc's weighted vote with explicit loops (numpy)."""
    tr = train_x / np.linalg.norm(train_x, axis=1, keepdims=True)
    te = test_x / np.linalg.norm(test_x, axis=1, keepdims=True)
    preds = []
    for q in te:
        sims = tr @ q
        votes: dict[int, float] = {}
        for j in np.argsort(-sims)[:k]:
            votes[int(train_y[j])] = votes.get(int(train_y[j]), 0.0) + math.exp(sims[j] / t)
        preds.append(max(votes, key=votes.get))
    return np.array(preds)


def test_knn_weighted_vote_beats_the_majority_by_hand():
    # Query at 0 degrees. Neighbours: one of class 1 at 5 degrees (cos 0.996),
    # two of class 0 at 60 degrees (cos 0.5). t = 0.1: exp(9.96) = 21,200 for
    # class 1 against 2 * exp(5) = 297 for class 0, so class 1 wins although
    # class 0 has the majority; with t = 10 the weights are nearly equal
    # (1.105 vs 2 * 1.051) and the majority wins.
    train = _at_angles([5, 60, -60]).float()
    labels = torch.tensor([1, 0, 0])
    query = _at_angles([0]).float()
    assert knn_accuracy(train, labels, query, torch.tensor([1]), k=3, temperature=0.1) == 1.0
    assert knn_accuracy(train, labels, query, torch.tensor([0]), k=3, temperature=10.0) == 1.0
    # k = 1 is the nearest neighbour; k beyond N is clipped to N.
    assert knn_accuracy(train, labels, query, torch.tensor([1]), k=1) == 1.0
    assert knn_accuracy(train, labels, query, torch.tensor([1]), k=50) == 1.0


def test_knn_matches_the_reference_and_separable_data():
    rng = np.random.default_rng(0)
    tr_x, te_x = rng.normal(size=(80, 6)), rng.normal(size=(37, 6))
    tr_y, te_y = rng.integers(0, 4, 80) * 10 + 3, rng.integers(0, 4, 37) * 10 + 3
    want = float((_knn_reference(tr_x, tr_y, te_x, 7, 0.2) == te_y).mean())
    for chunk in (5, 1024):
        got = knn_accuracy(
            torch.from_numpy(tr_x), torch.from_numpy(tr_y), te_x, te_y, 7, 0.2, chunk_size=chunk
        )
        assert got == pytest.approx(want)
    # Separable clusters -> 1.0.
    y = torch.arange(40) % 2
    x = torch.randn(40, 5) + 8 * y[:, None].float() - 4
    assert knn_accuracy(x[:30], y[:30], x[30:], y[30:], k=5) == 1.0


def test_knn_rejects_bad_arguments():
    x, y = torch.randn(6, 2), torch.arange(6) % 2
    with pytest.raises(ValueError, match="temperature"):
        knn_accuracy(x, y, x, y, temperature=0.0)
    with pytest.raises(ValueError, match="k must be"):
        knn_accuracy(x, y, x, y, k=0)


# ---------------------------------------------------------------------------
# Retrieval
# ---------------------------------------------------------------------------


def _recall_reference(a, ia, b, ib, k):
    """Brute force: full cosine matrix, sort every row, any-hit in the top k."""
    a = a / np.linalg.norm(a, axis=1, keepdims=True)
    b = b / np.linalg.norm(b, axis=1, keepdims=True)
    sims = a @ b.T
    hits = [any(ib[j] == ia[i] for j in np.argsort(-sims[i])[:k]) for i in range(len(a))]
    return float(np.mean(hits))


def test_retrieval_on_identity_features_is_perfect():
    x = torch.randn(30, 16)
    ids = torch.arange(30)
    rec = retrieval_recall(x, ids, x.clone(), ids)
    assert rec == {f"{d}_R@{k}": 1.0 for d in ("a2b", "b2a") for k in (1, 5, 10)}


def test_retrieval_hand_computed_half_recall_at_one():
    # Planar unit vectors; cosine = cos(angle difference).
    #   a (ids 0..3) at   0,  40, 100, 200 degrees
    #   b (ids 0..3) at   5,  65, 145, 260 degrees
    # a2b nearest: a0->b0 (5) hit, a1->b1 (25) hit, a2->b1 (35 < 45) miss,
    #   a3->b2 (55 < 60) miss: R@1 = 2/4; second nearest: a2->b2, a3->b3: R@2 = 1.
    # b2a nearest: b0->a0 (5), b1->a1 (25), b2->a2 (45 < 55), b3->a3 (60 < 100): R@1 = 1.
    a = _at_angles([0, 40, 100, 200])
    b = _at_angles([5, 65, 145, 260])
    ids = torch.arange(4)
    rec = retrieval_recall(a, ids, b, ids, ks=(1, 2))
    assert rec == {"a2b_R@1": 0.5, "a2b_R@2": 1.0, "b2a_R@1": 1.0, "b2a_R@2": 1.0}


def test_retrieval_multifold_any_correct_observation_is_a_hit():
    # Two images (ids 0, 1) at 0 and 90 degrees; four captions, two per image:
    #   caption ids 0, 0, 1, 1 at 60, 10, 30, 100 degrees.
    # Image 0's nearest caption is its *second* caption (10 deg): a hit.
    # Image 1's nearest is caption 3 (100 deg): a hit. a2b R@1 = 1.
    # Captions: c0 (60) -> image 1 (30 < 60) miss, c1 -> image 0 hit,
    #   c2 (30) -> image 0 miss, c3 -> image 1 hit: b2a R@1 = 0.5.
    images = _at_angles([0, 90])
    captions = _at_angles([60, 10, 30, 100])
    rec = retrieval_recall(
        images, torch.tensor([0, 1]), captions, torch.tensor([0, 0, 1, 1]), ks=(1, 2, 3)
    )
    assert rec["a2b_R@1"] == 1.0 and rec["b2a_R@1"] == 0.5
    # Recall counts queries, not matches: two correct captions in the top 3 count once.
    assert rec["a2b_R@3"] == 1.0
    # K beyond the gallery (2 images) counts the whole gallery.
    assert rec["b2a_R@2"] == rec["b2a_R@3"] == 1.0
    # Ids need not be contiguous; a query whose id is absent from the gallery misses.
    rec = retrieval_recall(images, [100, 205], captions, [100, 100, 205, 7], ks=(4,))
    assert rec == {"a2b_R@4": 1.0, "b2a_R@4": 0.75}


def test_retrieval_chunked_equals_unchunked_and_the_reference():
    g = torch.Generator().manual_seed(1)
    a, b = torch.randn(50, 8, generator=g), torch.randn(70, 8, generator=g)
    ia, ib = torch.randint(0, 20, (50,), generator=g), torch.randint(0, 20, (70,), generator=g)
    full = retrieval_recall(a, ia, b, ib, ks=(1, 3, 5, 10))
    for chunk in (1, 7, 64):
        assert retrieval_recall(a, ia, b, ib, ks=(1, 3, 5, 10), chunk_size=chunk) == full
    for k in (1, 3, 5, 10):
        assert full[f"a2b_R@{k}"] == pytest.approx(
            _recall_reference(a.numpy(), ia.numpy(), b.numpy(), ib.numpy(), k)
        )
        assert full[f"b2a_R@{k}"] == pytest.approx(
            _recall_reference(b.numpy(), ib.numpy(), a.numpy(), ia.numpy(), k)
        )
    assert 0.0 < full["a2b_R@1"] < full["a2b_R@10"] < 1.0  # not a degenerate case


def test_retrieval_rejects_bad_input():
    x, ids = torch.randn(4, 3), torch.arange(4)
    with pytest.raises(ValueError, match="one space"):
        retrieval_recall(x, ids, torch.randn(4, 5), ids)
    with pytest.raises(ValueError, match=r"b_ids must have shape \(4,\)"):
        retrieval_recall(x, ids, x, ids[:3])
    with pytest.raises(ValueError, match="ks"):
        retrieval_recall(x, ids, x, ids, ks=(0,))
    with pytest.raises(ValueError, match="NaN"):
        retrieval_recall(x, ids, torch.full((4, 3), float("inf")), ids)
