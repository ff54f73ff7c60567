"""The ``mxm-clr`` objective: registration, heads, multifold batches, conformance."""

from __future__ import annotations

import pytest
import torch
from lightly_mm_mxmclr.loss import MXMCLRLoss
from lightly_mm_mxmclr.objective import MXMCLRObjective

import lightly_mm_plugins as lmm
from lightly_mm_plugins.api import EncodedBatch
from lightly_mm_plugins.testing import assert_plugin_conforms

torch.set_num_threads(1)


def test_plugin_conforms():
    results = assert_plugin_conforms("lightly-mm-mxmclr")
    assert any(r.kind == "objectives" and r.name == "mxm-clr" for r in results)
    assert any(r.kind == "views" and r.name == "multifold" for r in results)


def test_registered_with_its_view():
    assert "mxm-clr" in lmm.list_names("objectives")
    assert "multifold" in lmm.list_names("views")
    entry = lmm.get_host().registry("objectives").get("mxm-clr")
    assert entry.metadata["view"] == "multifold"
    obj = lmm.create_objective("mxm-clr", embedding_dims={"image": 6, "text": 4})
    assert isinstance(obj, MXMCLRObjective)
    assert obj.requirements.multifold and obj.requirements.pseudo_labels


def _batch(seed: int = 0) -> EncodedBatch:
    g = torch.Generator().manual_seed(seed)
    emb = {"image": torch.randn(4, 1, 6, generator=g), "text": torch.randn(4, 3, 4, generator=g)}
    masks = {
        "image": torch.ones(4, 1, dtype=torch.bool),
        "text": torch.tensor([[1, 1, 1], [1, 0, 0], [1, 1, 0], [1, 1, 1]]).bool(),
    }
    emb["text"][~masks["text"]] = 0
    return EncodedBatch(embeddings=emb, masks=masks, instance_ids=torch.tensor([5, 1, 8, 2]))


def test_objective_is_heads_then_loss():
    torch.manual_seed(0)
    obj = MXMCLRObjective({"image": 6, "text": 4}, projection_dim=3, soft_weight=0.25)
    batch = _batch()
    out = obj(batch)
    za = obj.heads["image"](batch.embeddings["image"].reshape(-1, 6)).reshape(4, 1, 3)
    zb = obj.heads["text"](batch.embeddings["text"].reshape(-1, 4)).reshape(4, 3, 3)
    expected = MXMCLRLoss(temperature=0.07, soft_weight=0.25)(
        za, zb, batch.masks["image"], batch.masks["text"], batch.instance_ids
    )
    torch.testing.assert_close(out.loss, expected)
    assert set(out.logs) == {"loss_hard", "loss_soft", "temperature"}
    torch.testing.assert_close(out.logs["temperature"], torch.tensor(0.07))
    torch.testing.assert_close(
        out.loss, 0.75 * out.logs["loss_hard"] + 0.25 * out.logs["loss_soft"]
    )


def test_uses_masks_ids_and_pseudo_labels():
    obj = MXMCLRObjective({"image": 6, "text": 4}, projection_dim=3)
    batch = _batch()
    base = obj(batch).loss
    # Padded text folds hold garbage: nothing changes.
    garbage = batch.replace(embeddings=dict(batch.embeddings))
    garbage.embeddings["text"] = batch.embeddings["text"].clone()
    garbage.embeddings["text"][~batch.masks["text"]] = 3.0
    torch.testing.assert_close(obj(garbage).loss, base)
    # Unmasking a padded fold changes the loss.
    unmasked = batch.replace(masks={**batch.masks, "text": torch.ones(4, 3, dtype=torch.bool)})
    assert not torch.allclose(obj(unmasked).loss, base)
    # Two instances sharing an id become one instance.
    shared = batch.replace(instance_ids=torch.tensor([5, 5, 8, 2]))
    assert not torch.allclose(obj(shared).loss, base)
    grouped = batch.replace(pseudo_labels=torch.tensor([0, 1, 0, 1]))
    assert not torch.allclose(obj(grouped).loss, base)


def test_options_reach_the_loss():
    obj = MXMCLRObjective(
        {"image": 6, "text": 4},
        projection_dim=5,
        projection_layers=2,
        temperature=0.2,
        learnable_temperature=False,
        soft_weight=0.0,
        soft_temperature=0.5,
    )
    assert obj.loss_fn.temperature == pytest.approx(0.2)
    assert obj.loss_fn.soft_weight == 0.0 and obj.loss_fn.soft_temperature == 0.5
    assert not list(obj.loss_fn.parameters())
    assert obj.project("text", torch.randn(2, 3, 4)).shape == (2, 3, 5)


def test_bad_batches_are_clear_errors():
    obj = MXMCLRObjective({"image": 6, "text": 4}, projection_dim=3)
    batch = _batch()
    with pytest.raises(ValueError, match="at least 2 instances"):
        obj(EncodedBatch.from_tensors({"image": torch.randn(1, 6), "text": torch.randn(1, 4)}))
    with pytest.raises(ValueError, match="masks has no entry"):
        obj(batch.replace(masks={"image": batch.masks["image"]}))
    with pytest.raises(ValueError, match="missing"):
        obj(EncodedBatch.from_tensors({"image": torch.randn(3, 6)}))
    with pytest.raises(ValueError, match="no embedding size"):
        MXMCLRObjective({"image": 6}, modalities=("image", "text"))
    with pytest.raises(ValueError, match="soft_weight"):
        MXMCLRObjective({"image": 6, "text": 4}, soft_weight=2.0)
