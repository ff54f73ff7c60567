"""Tests of FactorCL's multimodal views (clean + augmented observation per modality)."""

from __future__ import annotations

import collections
import random

import numpy as np
import pytest
import torch
from lightly_mm_factorcl.views import (
    FactorCLCleanView,
    FactorCLView,
    augment_text,
    augment_vector,
)

from lightly_mm_plugins.api import Sample

torch.set_num_threads(1)


def _family_of_vector(clean: torch.Tensor, aug: torch.Tensor) -> str:
    """Which official augmentation produced ``aug`` from ``clean``."""
    mid = clean.shape[0] // 2
    if torch.equal(aug, clean):
        return "identity"
    if torch.equal(aug, torch.cat([clean[mid:], clean[:mid]])):
        return "order"
    zeros = (aug == 0) & (clean != 0)
    if int(zeros.sum()) == clean.shape[0] // 10 and torch.equal(aug[~zeros], clean[~zeros]):
        return "drop"
    diff = (aug - clean).abs()
    if float(diff.max()) < 0.06 and float(diff.min()) > 0:
        return "noise"
    raise AssertionError(f"unrecognised augmentation: {aug - clean}")


def _vector_sample(i: int = 0) -> Sample:
    gen = torch.Generator().manual_seed(i)
    return Sample(
        i,
        {"x1": [torch.rand(20, generator=gen) + 1], "x2": [torch.rand(20, generator=gen) + 1]},
        label=1,
    )


def test_vector_view_emits_clean_then_one_of_four_official_augmentations() -> None:
    view = FactorCLView(modalities={"x1": "vector", "x2": "vector"}, seed=0)
    assert view.views_per_modality == {"x1": 2, "x2": 2}
    sample = _vector_sample()
    counts: collections.Counter[str] = collections.Counter()
    for _ in range(400):
        out = view(sample)
        assert out.label == 1 and out.instance_id == 0
        for m in ("x1", "x2"):
            clean, aug = out.observations[m]
            torch.testing.assert_close(clean, sample.observations[m][0], rtol=0, atol=0)
            counts[_family_of_vector(clean, aug)] += 1
    assert set(counts) == {"order", "noise", "drop", "identity"}
    for family, count in counts.items():  # uniform: 200 expected of 800
        assert 140 < count < 260, (family, count)


def test_vector_noise_has_the_official_scale() -> None:
    x = torch.zeros(20000)
    noisy = augment_vector(x, 1, 0, generator=torch.Generator().manual_seed(0))
    assert float(noisy.std()) == pytest.approx(0.01, rel=0.05)
    dropped = augment_vector(torch.ones(25), 2, 7)
    assert int((dropped == 0).sum()) == 2  # floor(25 / 10), as upstream random_drop
    assert torch.equal(augment_vector(torch.arange(5.0), 0, 0), torch.tensor([2.0, 3, 4, 0, 1]))


def test_independent_vs_conditioned_draws() -> None:
    sample = _vector_sample(3)
    independent = FactorCLView(modalities={"x1": "vector", "x2": "vector"}, seed=1)
    conditioned = FactorCLView(
        modalities={"x1": "vector", "x2": "vector"}, seed=1, conditioned=True
    )
    agree_ind = 0
    for _ in range(200):
        out = independent(sample)
        f1 = _family_of_vector(*out.observations["x1"])
        f2 = _family_of_vector(*out.observations["x2"])
        agree_ind += f1 == f2
        out = conditioned(sample)
        g1 = _family_of_vector(*out.observations["x1"])
        g2 = _family_of_vector(*out.observations["x2"])
        assert g1 == g2
        if g1 == "drop":  # same positions for vectors of the same size
            zero1 = out.observations["x1"][1] == 0
            zero2 = out.observations["x2"][1] == 0
            assert torch.equal(zero1, zero2)
    assert 20 < agree_ind < 90  # about 1/4 of 200 by chance


def test_seeded_views_are_reproducible() -> None:
    sample = _vector_sample(5)
    a = FactorCLView(modalities={"x1": "vector", "x2": "vector"}, seed=11)
    b = FactorCLView(modalities={"x1": "vector", "x2": "vector"}, seed=11)
    for _ in range(20):
        oa, ob = a(sample), b(sample)
        for m in ("x1", "x2"):
            torch.testing.assert_close(oa.observations[m][1], ob.observations[m][1])


def test_text_augmentations_are_word_level() -> None:
    caption = "a small black digit seven on a white square background"
    words = caption.split()
    masked = augment_text(caption, 2, positions_seed=3).split()
    assert len(masked) == len(words) and masked.count("[MASK]") == 2  # 20% of 10
    assert all(m in ("[MASK]", w) for m, w in zip(masked, words))
    replaced = augment_text(caption, 1, positions_seed=3, rng=random.Random(0)).split()
    assert len(replaced) == len(words) and set(replaced) <= set(words)
    assert sum(r != w for r, w in zip(replaced, words)) <= 2
    permuted = augment_text(caption, 0, positions_seed=0).split()
    assert sorted(permuted) == sorted(words)
    assert augment_text(caption, 3, positions_seed=0) == caption
    assert augment_text("seven", 2, positions_seed=0) == "[MASK]"
    with pytest.raises(ValueError, match="family"):
        augment_text(caption, 5, positions_seed=0)


def test_text_view_uses_one_caption_for_both_views_and_conditioned_masks_align() -> None:
    captions = ["one two three four five", "six seven eight nine ten"]
    view = FactorCLView(modalities={"a": "text", "b": "text"}, seed=0, conditioned=True)
    for _ in range(50):
        out = view(Sample(0, {"a": captions, "b": ["alpha beta gamma delta epsilon"]}))
        clean, aug = out.observations["a"]
        assert clean in captions
        assert set(aug.split()) <= set(clean.split()) | {"[MASK]"}
        masks_a = [w == "[MASK]" for w in aug.split()]
        masks_b = [w == "[MASK]" for w in out.observations["b"][1].split()]
        assert masks_a == masks_b  # same family and positions (equal word counts)


def _image(seed: int) -> object:
    from PIL import Image

    rng = np.random.default_rng(seed)
    return Image.fromarray(rng.integers(0, 255, (24, 24, 3), dtype=np.uint8))


@pytest.mark.parametrize("conditioned", [False, True])
def test_image_and_text_view(conditioned: bool) -> None:
    view = FactorCLView(
        modalities={"image": "image", "text": "text"}, image_size=16, conditioned=conditioned
    )
    img = _image(0)
    out = view(Sample(0, {"image": [img], "text": ["a noisy square"]}))
    clean, aug = out.observations["image"]
    assert clean.shape == aug.shape == (3, 16, 16)
    torch.testing.assert_close(clean, view.eval_transforms["image"](img))
    assert isinstance(out.observations["text"][1], str)
    ev = view.eval_view(Sample(0, {"image": [img], "text": ["a noisy square"]}))
    assert len(ev.observations["image"]) == 1


def test_clean_view_and_bad_arguments() -> None:
    view = FactorCLCleanView(modalities={"x1": "vector", "x2": "vector"})
    sample = _vector_sample()
    out = view(sample)
    assert [len(out.observations[m]) for m in ("x1", "x2")] == [1, 1]
    torch.testing.assert_close(out.observations["x1"][0], sample.observations["x1"][0])
    with pytest.raises(ValueError, match="drop_fraction"):
        FactorCLView(modalities={"x1": "vector"}, drop_fraction=1.5)
    with pytest.raises(ValueError, match="no modality"):
        FactorCLView(modalities={"x1": "vector", "x3": "vector"})(sample)


def test_registered_view_is_built_by_the_host() -> None:
    import lightly_mm_plugins as lmm

    view = lmm.create_view(
        "factorcl-multimodal", modalities={"x1": "vector", "x2": "vector"}, image_size=32
    )
    assert isinstance(view, FactorCLView)
    assert len(view(_vector_sample()).observations["x2"]) == 2
