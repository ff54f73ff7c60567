"""The ``multifold`` view: K folds per modality, all folds, and clear errors."""

from __future__ import annotations

import pytest
import torch
from lightly_mm_mxmclr.views import MultifoldView
from PIL import Image

import lightly_mm_plugins as lmm
from lightly_mm_plugins.api import Sample
from lightly_mm_plugins.errors import DataError

KINDS = {"image": "image", "text": "text"}


def sample(images: int = 1, captions: int = 5, instance_id: int = 7) -> Sample:
    return Sample(
        instance_id=instance_id,
        observations={
            "image": [Image.new("RGB", (20, 20), (30 * i, 90, 160)) for i in range(images)],
            "text": [f"caption {i}" for i in range(captions)],
        },
        label=1,
    )


def test_default_is_one_image_and_every_caption():
    view = lmm.create_view("multifold", modalities=dict(KINDS), image_size=16)
    assert isinstance(view, MultifoldView)
    assert view.views_per_modality == {"image": 1, "text": None}
    out = view(sample(captions=5))
    assert out.observations["text"] == [f"caption {i}" for i in range(5)]
    assert len(out.observations["image"]) == 1
    assert out.observations["image"][0].shape == (3, 16, 16)
    assert len(view(sample(captions=2)).observations["text"]) == 2  # variable folds
    assert out.instance_id == 7 and out.label == 1


def test_k_folds_are_sampled_without_replacement():
    view = MultifoldView(KINDS, image_size=16, folds=3, seed=0)
    assert view.views_per_modality == {"image": 1, "text": 3}
    seen = set()
    for _ in range(20):
        caps = view(sample(captions=5)).observations["text"]
        assert len(caps) == 3 and len(set(caps)) == 3
        assert set(caps) <= {f"caption {i}" for i in range(5)}
        seen.update(caps)
    assert len(seen) == 5  # every caption gets drawn over a few steps


def test_per_modality_mapping_and_image_folds():
    view = MultifoldView(KINDS, image_size=16, folds={"image": 2, "text": None})
    out = view(sample(images=3, captions=4))
    assert len(out.observations["image"]) == 2 and len(out.observations["text"]) == 4
    assert all(isinstance(o, torch.Tensor) for o in out.observations["image"])


def test_too_few_observations_is_a_clear_error():
    view = MultifoldView(KINDS, image_size=16, folds=3)
    with pytest.raises(DataError, match=r"needs 3 observations of 'text'.*instance 42 has only 2"):
        view(sample(captions=2, instance_id=42))
    images = MultifoldView(KINDS, image_size=16, folds={"image": 2})
    with pytest.raises(DataError, match="repeat_to_fill"):
        images(sample(images=1))
    with pytest.raises(ValueError, match="no observation of modality 'text'"):
        view(sample(captions=0))


def test_repeat_to_fill_reaugments_images_but_never_text():
    view = MultifoldView(KINDS, image_size=16, folds={"image": 2, "text": 3}, repeat_to_fill=True)
    out = view(sample(images=1, captions=3))
    assert len(out.observations["image"]) == 2
    with pytest.raises(DataError, match="'text'"):
        view(sample(images=1, captions=2))


def test_eval_view_is_deterministic_one_image_all_captions():
    view = MultifoldView(KINDS, image_size=16, folds=2)
    ev1, ev2 = view.eval_view(sample(captions=4)), view.eval_view(sample(captions=4))
    assert len(ev1.observations["image"]) == 1 and len(ev1.observations["text"]) == 4
    torch.testing.assert_close(ev1.observations["image"][0], ev2.observations["image"][0])


def test_bad_arguments():
    with pytest.raises(ValueError, match="unknown modalities"):
        MultifoldView(KINDS, folds={"audio": 2})
    for bad in (0, -1, 1.5, True):
        with pytest.raises(ValueError, match="positive int or None"):
            MultifoldView(KINDS, folds={"text": bad})
