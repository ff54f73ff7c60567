"""Encoders (offline, no downloads) and the evaluation metrics on known answers."""

from __future__ import annotations

import os

import pytest
import torch

from lightly_mm_plugins.encoders import build_encoder
from lightly_mm_plugins.evaluation import knn_accuracy, linear_probe, retrieval_recall


@pytest.mark.parametrize("name", ["small-resnet", "resnet18", "vit"])
def test_image_encoders_shapes_and_local_features(name):
    enc = build_encoder("image", name, image_size=16)
    x = torch.randn(2, 3, 16, 16)
    assert enc(x).shape == (2, enc.feature_dim)
    g, local, mask = enc.forward_local(x)
    assert g.shape == (2, enc.feature_dim)
    assert local.shape[0] == 2 and local.shape[2] == enc.local_dim
    assert mask.shape == local.shape[:2] and mask.all()


def test_image_weights_round_trip_and_mismatch(tmp_path):
    enc = build_encoder("image", "small-resnet", image_size=16)
    path = tmp_path / "w.pt"
    torch.save(enc.backbone.state_dict(), path)
    other = build_encoder("image", "small-resnet", image_size=16, weights_path=path)
    x = torch.randn(2, 3, 16, 16)
    enc.eval(), other.eval()
    torch.testing.assert_close(enc(x), other(x))
    torch.save({"nope": torch.zeros(1)}, path)
    with pytest.raises(ValueError, match="do not fit"):
        build_encoder("image", "small-resnet", weights_path=path)


def test_unknown_encoders_list_alternatives():
    with pytest.raises(ValueError, match="small-resnet"):
        build_encoder("image", "resnet9000")
    with pytest.raises(ValueError, match="kind"):
        build_encoder("audio")


@pytest.fixture(scope="module")
def text_encoder():
    assert os.environ.get("HF_HUB_OFFLINE") == "1"
    return build_encoder("text")


def test_text_encoder_loads_offline_from_the_package(text_encoder):
    emb = text_encoder(["a small even digit", "a large odd digit", "a small even digit"])
    assert emb.shape == (3, 384) and not emb.requires_grad
    torch.testing.assert_close(emb[0], emb[2])
    assert not torch.allclose(emb[0], emb[1])
    _g, tokens, mask = text_encoder.forward_local(["one two three", "one"])
    assert tokens.shape[:2] == mask.shape and mask[0].sum() > mask[1].sum()
    with pytest.raises(ValueError, match="empty"):
        text_encoder([])


def test_vector_encoder():
    enc = build_encoder("vector", input_dim=7)
    assert enc(torch.randn(3, 7)).shape == (3, 128)


def test_linear_probe_and_knn_on_separable_data():
    torch.manual_seed(0)
    y = torch.arange(40) % 2
    x = torch.randn(40, 5) + 8 * y[:, None].float() - 4
    assert linear_probe(x[:30], y[:30], x[30:], y[30:]) == 1.0
    assert knn_accuracy(x[:30], y[:30], x[30:], y[30:], k=5) == 1.0


def test_retrieval_recall_known_cases():
    eye = torch.eye(4)
    ids = torch.arange(4)
    assert retrieval_recall(eye, ids, eye, ids, ks=(1,)) == {"a2b_R@1": 1.0, "b2a_R@1": 1.0}
    # Two queries right, two wrong at R@1 -> 0.5.
    b = torch.eye(4)[[0, 1, 3, 2]]
    rec = retrieval_recall(eye, ids, b, ids, ks=(1, 2))
    assert rec["a2b_R@1"] == 0.5
    # Multifold: two captions of instance 0; a hit is any correct observation.
    a = torch.tensor([[1.0, 0.0], [0.0, 1.0]])
    texts = torch.tensor([[1.0, 0.1], [0.9, 0.0], [0.0, 1.0]])
    rec = retrieval_recall(a, torch.tensor([0, 1]), texts, torch.tensor([0, 0, 1]), ks=(1,))
    assert rec == {"a2b_R@1": 1.0, "b2a_R@1": 1.0}


def test_retrieval_chunking_does_not_change_results():
    torch.manual_seed(1)
    a, b = torch.randn(50, 8), torch.randn(70, 8)
    ia, ib = torch.randint(0, 20, (50,)), torch.randint(0, 20, (70,))
    assert retrieval_recall(a, ia, b, ib, chunk_size=7) == retrieval_recall(a, ia, b, ib)
