"""Registration, conformance kit and the ``cct`` view."""

from __future__ import annotations

import subprocess
import sys

import pytest
import torch
from lightly_mm_cct.objective import CCTObjective
from lightly_mm_cct.views import CCTView
from PIL import Image

import lightly_mm_plugins as lmm
from lightly_mm_plugins.api import Sample
from lightly_mm_plugins.testing import assert_plugin_conforms


def test_plugin_conforms():
    results = assert_plugin_conforms("lightly-mm-cct")
    assert any(r.kind == "objectives" and r.name == "cct" for r in results)
    assert any(r.kind == "views" and r.name == "cct" for r in results)


def test_registered_and_buildable_through_the_host():
    assert "cct" in lmm.list_names("objectives")
    assert "cct" in lmm.list_names("views")
    obj = lmm.create_objective(
        "cct", embedding_dims={"image": 16, "text": 8}, modalities=("image", "text")
    )
    assert isinstance(obj, CCTObjective)
    assert lmm.get_host().registry("objectives").get("cct").metadata["view"] == "cct"
    view = lmm.create_view("cct", modalities={"image": "image", "text": "text"}, image_size=16)
    assert isinstance(view, CCTView)


def test_plugin_module_imports_no_torch():
    code = (
        "import sys, lightly_mm_cct.plugin as p; "
        "assert p.LIGHTLY_MM_HOOKSPEC == '1.0'; "
        "assert 'torch' not in sys.modules, 'torch imported'"
    )
    subprocess.run([sys.executable, "-c", code], check=True)


def _sample() -> Sample:
    return Sample(
        instance_id=0,
        observations={
            "image": [Image.new("RGB", (20, 20), (200, 30, 90))],
            "text": ["a red square", "a square in red", "red"],
            "vec": [torch.randn(5)],
        },
    )


@pytest.mark.parametrize("k", [2, 5])
def test_view_emits_k_augmented_images_one_caption_one_vector(k):
    kinds = {"image": "image", "text": "text", "vec": "vector"}
    torch.manual_seed(0)
    view = CCTView(kinds, image_size=16, num_views=k, seed=0)
    assert view.views_per_modality == {"image": k, "text": 1, "vec": 1}
    out = view(_sample())
    assert len(out.observations["image"]) == k
    assert all(t.shape == (3, 16, 16) for t in out.observations["image"])
    # Independent augmentations of the single image differ.
    assert not torch.allclose(out.observations["image"][0], out.observations["image"][1])
    assert (
        len(out.observations["text"]) == 1
        and out.observations["text"][0] in _sample().observations["text"]
    )
    assert out.observations["vec"][0].shape == (5,)
    ev = view.eval_view(_sample())
    assert len(ev.observations["image"]) == 1 and len(ev.observations["text"]) == 3


def test_view_arguments_are_validated():
    kinds = {"image": "image", "text": "text"}
    with pytest.raises(ValueError, match="num_views"):
        CCTView(kinds, num_views=0)
    with pytest.raises(ValueError, match="num_captions"):
        CCTView(kinds, num_captions=0)
    with pytest.raises(ValueError, match="min_scale"):
        CCTView(kinds, min_scale=0.0)
    assert CCTView(kinds, num_captions=None).views_per_modality["text"] is None
