"""Tests of FactorCL's synthetic data generator (official ``Synthetic/dataset.py``)."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from lightly_mm_factorcl.synthetic import (
    generate_data,
    labels_from_latents,
    synthetic_samples,
    variant_label_dims,
)


def test_shapes_and_construction_follow_the_official_generator() -> None:
    data = generate_data(500, seed=0)
    assert data.x1.shape == (500, 100) and data.x2.shape == (500, 100)
    assert data.labels.shape == (500,) and data.labels.dtype == np.int64
    assert [t.shape for t in data.transforms] == [(16, 100), (16, 100)]
    assert all(float(t.min()) >= 0 and float(t.max()) < 1 for t in data.transforms)
    assert {k: v.shape for k, v in data.latents.items()} == {
        "12": (500, 10),
        "1": (500, 6),
        "2": (500, 6),
    }
    # x1 = [w12, w1] T1 and x2 = [w12, w2] T2 (dict order of the blocks)
    w = data.latents
    np.testing.assert_allclose(data.x1, np.hstack([w["12"], w["1"]]) @ data.transforms[0])
    np.testing.assert_allclose(data.x2, np.hstack([w["12"], w["2"]]) @ data.transforms[1])
    # latents ~ N(0, 0.5 I)
    all_latents = np.hstack(list(w.values()))
    assert all_latents.var() == pytest.approx(0.5, rel=0.05)
    assert abs(all_latents.mean()) < 0.02


def test_labels_match_the_per_sample_sigmoid_rule() -> None:
    data = generate_data(200, feature_dims={"12": 4, "1": 3, "2": 5}, label_dims={"12": 2, "2": 4})
    for i in range(200):
        vector = list(data.latents["12"][i, :2]) + list(data.latents["2"][i, :4])
        prob = 1 / (1 + math.exp(-sum(vector) / len(vector)))
        assert data.labels[i] == int(prob >= 0.5)
    assert data.feature_dims == {"12": 4, "1": 3, "2": 5}
    assert variant_label_dims("unique2", data.feature_dims, data.label_dims) == {"2": 4}
    assert variant_label_dims("unique1", data.feature_dims, data.label_dims) == {"1": 3}
    np.testing.assert_array_equal(
        data.label_variants["shared"], labels_from_latents(data.latents, {"12": 2})
    )


def test_seeding() -> None:
    a, b, c = generate_data(50, seed=3), generate_data(50, seed=3), generate_data(50, seed=4)
    np.testing.assert_array_equal(a.x1, b.x1)
    np.testing.assert_array_equal(a.labels, b.labels)
    assert not np.allclose(a.x1, c.x1)
    rng = np.random.default_rng(3)
    np.testing.assert_array_equal(generate_data(50, rng=rng).x2, a.x2)


def _probe(
    train_x: np.ndarray, train_y: np.ndarray, test_x: np.ndarray, test_y: np.ndarray
) -> float:
    from sklearn.linear_model import LogisticRegression
    from sklearn.preprocessing import StandardScaler

    scaler = StandardScaler().fit(train_x)
    clf = LogisticRegression(max_iter=2000).fit(scaler.transform(train_x), train_y)
    return float(clf.score(scaler.transform(test_x), test_y))


def test_linear_separability_and_where_the_information_lives() -> None:
    data = generate_data(3000, seed=0)
    tr, te = slice(0, 2400), slice(2400, 3000)
    both = np.hstack([data.x1, data.x2])

    def acc(x: np.ndarray, variant: str) -> float:
        y = data.label_variants[variant]
        return _probe(x[tr], y[tr], x[te], y[te])

    assert acc(both, "both") > 0.95  # raw inputs: (nearly) linearly separable
    assert acc(data.x1, "shared") > 0.95 and acc(data.x2, "shared") > 0.95
    assert acc(data.x1, "unique1") > 0.95
    assert acc(data.x2, "unique1") < 0.62  # x2 carries no information on w1
    assert acc(data.x1, "unique2") < 0.62
    for labels in data.label_variants.values():
        assert 0.4 < labels.mean() < 0.6  # balanced


def test_synthetic_samples_are_host_samples() -> None:
    samples = synthetic_samples(6, seed=2, label_variant="unique1")
    data = generate_data(6, seed=2)
    assert [s.instance_id for s in samples] == list(range(6))
    first = samples[0]
    assert set(first.observations) == {"x1", "x2"}
    assert first.observations["x1"][0].dtype == torch.float32
    np.testing.assert_allclose(first.observations["x2"][0].numpy(), data.x2[0], rtol=1e-6)
    assert [s.label for s in samples] == data.label_variants["unique1"].tolist()
    assert set(first.extras["labels"]) == {"shared", "unique1", "unique2", "unique", "both"}
    default = synthetic_samples(6, seed=2)
    assert [s.label for s in default] == data.labels.tolist()


def test_bad_arguments() -> None:
    with pytest.raises(ValueError, match="must name modalities"):
        generate_data(10, feature_dims={"13": 2, "1": 2, "2": 2})
    with pytest.raises(ValueError, match="no latent block feeds modality 2"):
        generate_data(10, feature_dims={"1": 2})
    with pytest.raises(ValueError, match=r"label_dims\['1'\]"):
        generate_data(10, label_dims={"1": 9})
    with pytest.raises(ValueError, match="unknown label variant"):
        synthetic_samples(3, label_variant="nope")
