"""Embedded data: the digits with generated captions, and FactorCL's synthetic generator."""

from __future__ import annotations

import re
from collections import Counter

import numpy as np
import pytest
import torch
from threadpoolctl import threadpool_limits

from lightly_mm_plugins.data import (
    MultimodalDataset,
    generate_synthetic,
    load_dataset,
    load_digits_captions,
    load_synthetic,
    split_indices,
    synthetic_factors,
)
from lightly_mm_plugins.data.embedded import _digits_samples
from lightly_mm_plugins.errors import DataError

DIGIT_WORDS = "zero one two three four five six seven eight nine".split()


def words(text: str) -> set[str]:
    return set(re.findall(r"[a-z]+", text.lower()))


def pixels(sample) -> np.ndarray:
    return np.asarray(sample.observations["image"][0].convert("L"), dtype=float)


# --------------------------------------------------------------------------
# Digits
# --------------------------------------------------------------------------


@pytest.fixture(scope="module")
def digits() -> MultimodalDataset:
    return load_digits_captions("all")


def test_digits_are_all_sklearn_digits_with_labels(digits):
    from sklearn.datasets import load_digits

    ref = load_digits()
    assert len(digits) == 1797
    assert digits.modalities == {"image": "image", "text": "text"}
    assert digits.labels.tolist() == ref.target.tolist()
    assert digits.instance_ids.tolist() == list(range(1797))
    s = digits[10]
    (image,) = s.observations["image"]
    assert image.mode == "RGB" and image.size == (8, 8)
    if not s.extras["degraded"]:  # an intact image is the sklearn digit, scaled to 0..255
        assert np.allclose(pixels(s), ref.images[10] / 16 * 255, atol=1)
    assert s.extras["labels"] == {
        "digit": s.label,
        "parity": s.label % 2,
        "large": int(s.label >= 5),
    }


def test_digits_have_3_to_5_captions_with_parity_and_size_never_the_digit(digits):
    counts = Counter(len(s.observations["text"]) for s in digits)
    assert set(counts) == {3, 4, 5} and min(counts.values()) > 400
    for s in digits:
        parity = "even" if s.label % 2 == 0 else "odd"
        size = "small" if s.label < 5 else "large"
        text = " ".join(s.observations["text"])
        assert len(set(s.observations["text"])) == len(s.observations["text"])
        assert not words(text) & set(DIGIT_WORDS) and not re.search(r"\d", text)
        assert ({"even", "odd"} - {parity}).isdisjoint(words(text))
        assert ({"small", "large"} - {size}).isdisjoint(words(text))
        assert parity in words(text) or size in words(text)
        assert all(isinstance(c, str) and c for c in s.observations["text"])


def test_degraded_digits_have_a_blank_half_that_the_captions_mention(digits):
    degraded = [s for s in digits if s.extras["degraded"]]
    assert 0.35 < len(degraded) / len(digits) < 0.45
    for s in degraded:
        text = " ".join(s.observations["text"])
        side = re.search(r"the (top|bottom|left|right) half blank", text)
        if side is None:  # the phrase is one of three attributes; not every caption set has it
            continue
        half = {
            "top": np.s_[:4],
            "bottom": np.s_[4:],
            "left": np.s_[:, :4],
            "right": np.s_[:, 4:],
        }[side.group(1)]
        assert pixels(s)[half].max() == 0
    intact = [s for s in digits if not s.extras["degraded"]]
    assert all("half blank" not in " ".join(s.observations["text"]) for s in intact)


def test_digits_are_deterministic_and_seeded():
    _digits_samples.cache_clear()
    a = load_digits_captions("all", seed=0)
    _digits_samples.cache_clear()
    b = load_digits_captions("all", seed=0)
    assert a.samples is not b.samples
    for i in (0, 17, 900, 1796):
        assert a[i].observations["text"] == b[i].observations["text"]
        assert np.array_equal(pixels(a[i]), pixels(b[i]))
    c = load_digits_captions("all", seed=1)
    assert any(a[i].observations["text"] != c[i].observations["text"] for i in range(20))


def test_digits_splits_are_fixed_disjoint_and_cover_everything():
    splits = {s: load_dataset("default", split=s) for s in ("train", "val", "test")}
    ids = {s: d.instance_ids.tolist() for s, d in splits.items()}
    assert {s: len(v) for s, v in ids.items()} == {"train": 1258, "val": 270, "test": 269}
    assert sorted(ids["train"] + ids["val"] + ids["test"]) == list(range(1797))
    # pinned: the split is a fixed function of (n, seed), the same on every machine
    assert ids["test"][:5] == [1, 3, 4, 6, 7] and sum(ids["test"]) == 228712
    assert ids == {s: v for s, v in split_indices(1797, 0).items()}
    assert load_dataset("digits", split="test").instance_ids.tolist() == ids["test"]
    assert splits["test"].name == "digits-test"
    for s in splits["val"]:
        assert s.instance_id in ids["val"]


def test_digits_modalities_are_complementary_for_the_digit():
    """Pixels miss blanked halves, captions name only parity and size: both beat either."""
    from sklearn.linear_model import LogisticRegression

    vocab = ("even", "odd", "small", "large")

    def features(split: str) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        ds = load_dataset("default", split=split)
        x = np.stack([pixels(s).ravel() / 255 for s in ds])
        t = np.array(
            [[w in words(" ".join(s.observations["text"])) for w in vocab] for s in ds],
            dtype=float,
        )
        return x, t, ds.labels.numpy()

    xa, ta, ya = features("train")
    xb, tb, yb = features("test")

    def probe(a: np.ndarray, b: np.ndarray) -> float:
        with threadpool_limits(1):  # BLAS threads on a busy 2-core machine: 30x slower
            return LogisticRegression(max_iter=300).fit(a, ya).score(b, yb)

    image, text = probe(xa, xb), probe(ta, tb)
    both = probe(np.hstack([xa, ta]), np.hstack([xb, tb]))
    assert text < 0.45  # parity x size: at most 4 groups of 2-3 digits
    assert 0.8 < image < both - 0.03


def test_digits_bad_arguments():
    with pytest.raises(DataError, match="degrade_fraction"):
        load_digits_captions(degrade_fraction=1.5)
    with pytest.raises(DataError, match="unknown split"):
        load_digits_captions("holdout")


# --------------------------------------------------------------------------
# Synthetic (FactorCL Synthetic/dataset.py)
# --------------------------------------------------------------------------


def test_synthetic_shapes_and_the_generator_steps():
    dims = {"12": 10, "1": 6, "2": 6}
    x1, x2, labels = generate_synthetic(500, seed=3)
    assert x1.shape == x2.shape == (500, 100) and x1.dtype == np.float32
    assert set(labels) == {"shared", "unique1", "unique2", "all"}
    transforms, latents = synthetic_factors(500, dims, 100, seed=3)
    assert transforms["1"].shape == (16, 100) and transforms["2"].shape == (16, 100)
    assert transforms["1"].min() >= 0 and transforms["1"].max() <= 1
    assert {k: v.shape for k, v in latents.items()} == {
        "12": (500, 10),
        "1": (500, 6),
        "2": (500, 6),
    }
    w = np.concatenate([v.ravel() for v in latents.values()])
    assert abs(w.mean()) < 0.03 and abs(w.var() - 0.5) < 0.03  # N(0, 0.5 I)
    # x_m = [w_12, w_m] T_m, noiseless
    np.testing.assert_allclose(
        x1, np.hstack([latents["12"], latents["1"]]) @ transforms["1"], rtol=1e-5, atol=1e-5
    )
    np.testing.assert_allclose(
        x2, np.hstack([latents["12"], latents["2"]]) @ transforms["2"], rtol=1e-5, atol=1e-5
    )
    # y = 1[sigmoid(mean of the label dims) >= 0.5] = 1[sum >= 0], written per instance
    for i in range(0, 500, 37):
        chosen = {
            "shared": latents["12"][i, :10],
            "unique1": latents["1"][i, :6],
            "unique2": latents["2"][i, :6],
            "all": np.concatenate([latents["12"][i], latents["1"][i], latents["2"][i]]),
        }
        for variant, values in chosen.items():
            expected = int(1 / (1 + np.exp(-values.mean())) >= 0.5)
            assert labels[variant][i] == expected, (variant, i)
    assert 0.4 < labels["all"].mean() < 0.6


def test_synthetic_label_dims_and_feature_dims_are_controllable():
    dims = {"12": 4, "1": 3, "2": 8}
    x1, x2, labels = generate_synthetic(
        200, dims, transform_dim=20, seed=0, label_dims={"first2": {"12": 2, "2": 1}}
    )
    assert x1.shape == (200, 20) and x2.shape == (200, 20)
    t, lat = synthetic_factors(200, dims, 20, seed=0)
    assert t["1"].shape == (7, 20) and t["2"].shape == (12, 20)
    expected = (lat["12"][:, :2].sum(1) + lat["2"][:, :1].sum(1) >= 0).astype(np.int64)
    assert np.array_equal(labels["first2"], expected)
    with pytest.raises(DataError, match="latent '1'"):
        generate_synthetic(10, dims, label_dims={"bad": {"1": 5}})
    with pytest.raises(DataError, match="no latent feeds x2"):
        generate_synthetic(10, {"12": 0, "1": 3})


def test_synthetic_is_reproducible_with_a_seed():
    a = generate_synthetic(300, seed=5)
    b = generate_synthetic(300, seed=5)
    c = generate_synthetic(300, seed=6)
    assert np.array_equal(a[0], b[0]) and np.array_equal(a[1], b[1])
    assert all(np.array_equal(a[2][k], b[2][k]) for k in a[2])
    assert not np.allclose(a[0], c[0])


def test_synthetic_raw_inputs_are_linearly_separable():
    from sklearn.linear_model import LogisticRegression

    x1, x2, labels = generate_synthetic(1000, seed=0)
    x = np.hstack([x1, x2])
    for variant in ("shared", "unique1", "unique2", "all"):
        y = labels[variant]
        with threadpool_limits(1):
            clf = LogisticRegression(max_iter=1000).fit(x[:700], y[:700])
        assert clf.score(x[700:], y[700:]) > 0.9, variant


def test_synthetic_dataset_samples_splits_and_label_choice():
    train = load_synthetic("train", num_data=400, label="unique1")
    test = load_dataset("synthetic:unique1", split="test", num_data=400)
    assert train.modalities == {"x1": "vector", "x2": "vector"}
    assert (len(train), len(test)) == (280, 60)
    assert not set(train.instance_ids.tolist()) & set(test.instance_ids.tolist())
    _, _, labels = generate_synthetic(400, seed=0)
    x1, _, _ = generate_synthetic(400, seed=0)
    for s in list(train)[:20] + list(test)[:20]:
        (v,) = s.observations["x1"]
        assert v.dtype == torch.float32 and v.shape == (100,)
        assert torch.equal(v, torch.from_numpy(x1[s.instance_id]))
        assert s.label == s.extras["labels"]["unique1"] == labels["unique1"][s.instance_id]
        assert set(s.extras["labels"]) == {"shared", "unique1", "unique2", "all"}
    default = load_dataset("synthetic", split="train", num_data=400)
    assert default.name == "synthetic-all-train"
    assert default[0].label == default[0].extras["labels"]["all"]
    kw = load_dataset("synthetic", split="train", num_data=400, label="shared")
    assert kw[0].label == kw[0].extras["labels"]["shared"]
    with pytest.raises(DataError, match="unknown synthetic label"):
        load_dataset("synthetic:both", num_data=100)
