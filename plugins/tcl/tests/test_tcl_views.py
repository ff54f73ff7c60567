"""The ``tcl`` view: two augmented images, one (optionally masked) caption."""

from __future__ import annotations

import random

import numpy as np
import pytest
import torch
from lightly_mm_tcl.views import TCLRandomAugment, TCLView, mask_words, tcl_image_transform
from PIL import Image

from lightly_mm_plugins.api import Sample

torch.set_num_threads(1)

MODALITIES = {"image": "image", "text": "text"}


def digit_sample(seed: int = 0) -> Sample:
    rng = np.random.default_rng(seed)
    img = Image.fromarray(rng.integers(0, 255, (8, 8), dtype=np.uint8), mode="L")
    captions = ["a handwritten digit three", "the number 3", "three written by hand"]
    return Sample(instance_id=seed, observations={"image": [img], "text": captions}, label=3)


def test_two_image_views_and_one_caption() -> None:
    view = TCLView(MODALITIES, image_size=32, seed=0)
    assert view.views_per_modality == {"image": 2, "text": 1}
    torch.manual_seed(0)
    out = view(digit_sample())
    a, b = out.observations["image"]
    assert a.shape == b.shape == (3, 32, 32) and a.dtype == torch.float32
    assert not torch.allclose(a, b)  # two independent augmentations
    assert len(out.observations["text"]) == 1
    assert out.observations["text"][0] in digit_sample().observations["text"]
    assert out.label == 3 and out.instance_id == 0


def test_text_masking_gives_masked_online_and_clean_momentum_caption() -> None:
    view = TCLView(MODALITIES, image_size=16, text_mask_prob=0.5, seed=1)
    assert view.views_per_modality["text"] == 2
    for s in range(5):
        masked, clean = view(digit_sample(s)).observations["text"]
        assert clean in digit_sample().observations["text"]
        words, masked_words = clean.split(), masked.split()
        assert len(words) == len(masked_words)
        assert all(m in (w, "[MASK]") for w, m in zip(words, masked_words))
        assert any(m != "[MASK]" for m in masked_words)


def test_mask_words() -> None:
    rng = random.Random(0)
    caption = "one two three four five six seven eight"
    masked = [mask_words(caption, 0.5, rng=rng) for _ in range(200)]
    fraction = np.mean([w == "[MASK]" for m in masked for w in m.split()])
    assert 0.4 < fraction < 0.6
    assert mask_words(caption, 0.0) == caption
    assert mask_words("single", 0.99, rng=rng) == "single"  # at least one word kept
    dropped = mask_words(caption, 0.5, mask_token=None, rng=random.Random(3))
    assert set(dropped.split()) < set(caption.split())
    with pytest.raises(ValueError, match="text_mask_prob"):
        TCLView(MODALITIES, text_mask_prob=1.0)


def test_eval_view_is_deterministic() -> None:
    view = TCLView(MODALITIES, image_size=32)
    a = view.eval_view(digit_sample())
    b = view.eval_view(digit_sample())
    assert len(a.observations["image"]) == 1
    assert torch.equal(a.observations["image"][0], b.observations["image"][0])
    assert a.observations["text"] == digit_sample().observations["text"]


def test_image_transform_options() -> None:
    from torchvision.transforms import v2

    def op_types(t) -> list[type]:
        return [type(o) for o in t.transforms]

    default = tcl_image_transform(32)
    assert v2.RandomHorizontalFlip not in op_types(default)
    assert TCLRandomAugment in op_types(default)
    crop = next(o for o in default.transforms if isinstance(o, v2.RandomResizedCrop))
    assert crop.scale == (0.2, 1.0)
    flipped = tcl_image_transform(32, hflip=True, randaugment=False)
    assert v2.RandomHorizontalFlip in op_types(flipped)
    assert TCLRandomAugment not in op_types(flipped)
    with pytest.raises(ValueError, match="min_scale"):
        tcl_image_transform(32, min_scale=0.0)


@pytest.mark.parametrize("seed", range(4))
def test_random_augment_keeps_shape_and_dtype(seed: int) -> None:
    torch.manual_seed(seed)
    image = torch.randint(0, 256, (3, 24, 24), dtype=torch.uint8)
    aug = TCLRandomAugment(num_ops=6, magnitude=7)
    for _ in range(10):
        out = aug(image)
        assert out.shape == image.shape and out.dtype == torch.uint8
    assert torch.equal(TCLRandomAugment(num_ops=0)(image), image)
    with pytest.raises(ValueError, match="magnitude"):
        TCLRandomAugment(2, 11)
