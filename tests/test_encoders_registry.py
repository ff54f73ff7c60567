"""Encoders as a registered kind: timm, open_clip towers, local HF folders, plugin encoders,
user weights (safetensors / weights_only state dicts) and the frozen text helper."""

from __future__ import annotations

import json
import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import pytest
import torch
from fakes import fake_entry_points
from torch import nn

from lightly_mm_plugins import reset_host
from lightly_mm_plugins.cli import main
from lightly_mm_plugins.encoders import build_encoder, encoder_names
from lightly_mm_plugins.manager import PluginHost

TINY_CLIP = "lmm-test-tiny-clip"


# One intra-op thread per test module (conftest.one_thread).
pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def tiny_clip(tmp_path_factory):
    """A tiny open_clip architecture (ViT 1 layer, width 32; text 1 layer) registered in-test."""
    open_clip = pytest.importorskip("open_clip")
    from open_clip import factory

    path = tmp_path_factory.mktemp("oc") / f"{TINY_CLIP}.json"
    path.write_text(
        json.dumps(
            {
                "embed_dim": 24,
                "vision_cfg": {
                    "image_size": 16,
                    "layers": 1,
                    "width": 32,
                    "patch_size": 8,
                    "head_width": 16,
                },
                "text_cfg": {
                    "context_length": 16,
                    "vocab_size": 49408,
                    "width": 32,
                    "heads": 2,
                    "layers": 1,
                },
            }
        )
    )
    open_clip.add_model_config(path)
    yield TINY_CLIP
    factory._MODEL_CONFIGS.pop(TINY_CLIP, None)


@pytest.fixture(scope="module")
def tiny_bert(tmp_path_factory):
    """A random-init 1-layer BERT saved as a plain Hugging Face transformers folder."""
    transformers = pytest.importorskip("transformers")
    folder = tmp_path_factory.mktemp("bert")
    words = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", "a", "cat", "dog", "digit", "small"]
    (folder / "vocab.txt").write_text("\n".join(words) + "\n")
    config = transformers.BertConfig(
        vocab_size=len(words),
        hidden_size=16,
        num_hidden_layers=1,
        num_attention_heads=2,
        intermediate_size=32,
        max_position_embeddings=64,
    )
    torch.manual_seed(0)
    transformers.BertModel(config).save_pretrained(folder)
    transformers.BertTokenizer(str(folder / "vocab.txt")).save_pretrained(folder)
    return folder


def _check_local(enc, x, n: int = 2) -> None:
    enc.eval()
    with torch.no_grad():
        glob = enc(x)
        g2, local, mask = enc.forward_local(x)
    assert glob.shape == (n, enc.feature_dim)
    assert torch.allclose(glob, g2, atol=1e-5)
    assert local.dim() == 3 and local.shape[0] == n and local.shape[-1] == enc.local_dim
    assert mask.shape == local.shape[:2] and mask.dtype == torch.bool


# ---------------------------------------------------------------------------
# registry
# ---------------------------------------------------------------------------


def test_builtins_are_registered_per_kind():
    assert encoder_names("image")[:4] == ["small-resnet", "resnet18", "resnet50", "vit"]
    assert {"timm:<model>", "open_clip:<model>"} <= set(encoder_names("image"))
    assert {"minilm", "hf:<model>", "open_clip:<model>"} <= set(encoder_names("text"))
    with pytest.raises(ValueError, match="encodes image, not text"):
        build_encoder("text", "timm:test_resnet")
    with pytest.raises(ValueError, match="needs a model name"):
        build_encoder("image", "timm")


@pytest.mark.slow
def test_a_plugin_encoder_is_discovered_and_used_by_name(tmp_path, fake_plugin_path):
    from lightly_mm_plugins.training import TrainConfig, train

    host = PluginHost(entry_points=fake_entry_points("lmm_encoder"))
    assert "tiny-cnn" in host.registry("encoders")
    reset_host(host)
    try:
        assert "tiny-cnn" in encoder_names("image")
        enc = build_encoder("image", "tiny-cnn", image_size=16)
        _check_local(enc, torch.randn(2, 3, 16, 16))
        cfg = TrainConfig(method="clip", image_encoder="tiny-cnn", **_ONE_STEP, out=str(tmp_path))
        # The plugin host has no objectives of its own: add the installed clip plugin.
        import lightly_mm_clip.plugin as clip_plugin

        host.register_plugin(clip_plugin, name="lightly-mm-clip")
        train(cfg)
        saved = torch.load(tmp_path / "encoders.pt", weights_only=True)
        assert saved["image_encoder"] == "tiny-cnn"
    finally:
        reset_host()


# ---------------------------------------------------------------------------
# timm
# ---------------------------------------------------------------------------


@pytest.mark.parametrize("name", ["test_resnet", "test_vit"])
def test_timm_global_and_local_features(name):
    pytest.importorskip("timm")
    enc = build_encoder("image", f"timm:{name}", image_size=32)
    _check_local(enc, torch.randn(2, 3, 32, 32))
    if name == "test_vit":  # rebuilt for 32 px: (32 / 16)^2 patches, class token dropped
        assert enc.forward_local(torch.randn(2, 3, 32, 32))[1].shape[1] == 4


def test_timm_weights_load_and_a_wrong_file_is_a_clear_error(tmp_path):
    pytest.importorskip("timm")
    import timm
    from safetensors.torch import save_file

    source = timm.create_model("test_resnet", pretrained=False)  # with its classifier
    save_file(source.state_dict(), str(tmp_path / "w.safetensors"))
    torch.save({"state_dict": source.state_dict()}, tmp_path / "w.pt")
    x = torch.randn(2, 3, 32, 32)
    for path in (tmp_path / "w.safetensors", tmp_path / "w.pt"):
        enc = build_encoder("image", "timm:test_resnet", image_size=32, weights_path=path).eval()
        source.reset_classifier(0)
        assert torch.allclose(enc(x), source.eval()(x), atol=1e-5)
        source = timm.create_model("test_resnet", pretrained=False)
        source.load_state_dict(torch.load(tmp_path / "w.pt", weights_only=True)["state_dict"])
    with pytest.raises(ValueError, match=r"do not fit timm model .test_convnext.*missing keys"):
        build_encoder("image", "timm:test_convnext", weights_path=tmp_path / "w.pt")
    torch.save(nn.Linear(2, 2), tmp_path / "pickled.pt")  # a whole module, not a state dict
    with pytest.raises(ValueError, match="weights_only"):
        build_encoder("image", "timm:test_resnet", weights_path=tmp_path / "pickled.pt")
    (tmp_path / "bad.safetensors").write_bytes(b"not safetensors")
    with pytest.raises(ValueError, match="cannot read safetensors"):
        build_encoder("image", "timm:test_resnet", weights_path=tmp_path / "bad.safetensors")


def test_timm_names_that_need_a_download_or_do_not_exist_say_so():
    pytest.importorskip("timm")
    with pytest.raises(ValueError, match="would be downloaded"):
        build_encoder("image", "timm:hf-hub:timm/resnet18.a1_in1k")
    with pytest.raises(ValueError, match="did you mean resnet18"):
        build_encoder("image", "timm:resnt18")


# ---------------------------------------------------------------------------
# open_clip
# ---------------------------------------------------------------------------


def test_open_clip_towers_global_and_local(tiny_clip):
    image = build_encoder("image", f"open_clip:{tiny_clip}", image_size=16)
    assert image.feature_dim == 24 and image.local_dim == 32
    _check_local(image, torch.randn(2, 3, 16, 16))
    text = build_encoder("text", f"open_clip:{tiny_clip}", trainable=True)
    _check_local(text, ["a cat", "a small dog on a mat"])
    _, _, mask = text.forward_local(["a cat", "a small dog on a mat"])
    assert mask.sum(1).tolist() == [4, 8]  # start + words + end, padding False
    head = nn.Linear(24, 4)
    head(text(["a cat", "a dog"])).sum().backward()
    assert all(p.grad is not None for p in text.parameters() if p.requires_grad)


def test_open_clip_weights_from_a_whole_clip_checkpoint(tmp_path, tiny_clip):
    import open_clip

    torch.manual_seed(1)
    full = open_clip.create_model(tiny_clip, force_image_size=16).eval()
    torch.save(full.state_dict(), tmp_path / "clip.pt")  # standard CLIP layout, both towers
    image = build_encoder(
        "image", f"open_clip:{tiny_clip}", image_size=16, weights_path=tmp_path / "clip.pt"
    ).eval()
    x = torch.randn(2, 3, 16, 16)
    assert torch.allclose(image(x), full.encode_image(x), atol=1e-5)
    text = build_encoder("text", f"open_clip:{tiny_clip}", weights_path=tmp_path / "clip.pt")
    ids = open_clip.get_tokenizer(tiny_clip)(["a cat"])
    assert torch.allclose(text(["a cat"]), full.encode_text(ids), atol=1e-5)
    with pytest.raises(ValueError, match=r"not a model|unknown open_clip model"):
        build_encoder("image", "open_clip:ViT-B-32-laion2b_s34b_b79k")
    with pytest.raises(ValueError, match="names downloadable weights"):
        build_encoder("text", "open_clip:hf-hub:laion/CLIP-ViT-B-32")


# ---------------------------------------------------------------------------
# Hugging Face / sentence-transformers folders
# ---------------------------------------------------------------------------


def test_a_local_transformers_folder_is_a_text_encoder(tiny_bert, tmp_path):
    from safetensors.torch import save_file
    from transformers import BertModel

    for spec in (f"hf:{tiny_bert}", str(tiny_bert)):
        enc = build_encoder("text", spec)
        assert enc.feature_dim == 16
        _check_local(enc, ["a cat", "a small dog"])
    torch.manual_seed(3)
    other = BertModel.from_pretrained(tiny_bert)
    for p in other.parameters():
        p.data.normal_()
    save_file(other.state_dict(), str(tmp_path / "bert.safetensors"))
    loaded = build_encoder("text", f"hf:{tiny_bert}", weights_path=tmp_path / "bert.safetensors")
    assert torch.equal(
        loaded.transformer.auto_model.embeddings.word_embeddings.weight,
        other.embeddings.word_embeddings.weight,
    )
    with pytest.raises(ValueError, match="do not fit"):
        build_encoder("text", f"hf:{tiny_bert}", weights_path=_linear_weights(tmp_path))
    with pytest.raises(ValueError, match="Hugging Face Hub id"):
        build_encoder("text", "sentence-transformers/all-mpnet-base-v2")


def _linear_weights(tmp_path):
    path = tmp_path / "linear.pt"
    torch.save(nn.Linear(3, 3).state_dict(), path)
    return path


# ---------------------------------------------------------------------------
# frozen text helper: no inference-tensor trap
# ---------------------------------------------------------------------------


def test_frozen_text_encoder_trains_a_head_even_after_inference_mode():
    from sentence_transformers import SentenceTransformer

    from lightly_mm_plugins.encoders import frozen_text_encoder
    from lightly_mm_plugins.encoders.text import default_model_path

    st = SentenceTransformer(str(default_model_path()), device="cpu")
    with pytest.raises(RuntimeError, match="Inference tensors"):  # the trap itself
        nn.Linear(384, 2)(st.encode(["a cat"], convert_to_tensor=True)).sum().backward()
    for text in (frozen_text_encoder(), frozen_text_encoder(st)):
        with torch.inference_mode():  # e.g. Lightning's validation fills the caption cache
            text(["a cat", "a dog"])
        head = nn.Linear(text.feature_dim, 2)
        head(text(["a cat", "a dog"])).sum().backward()
        assert head.weight.grad is not None
        assert not any(p.requires_grad for p in text.parameters())


# ---------------------------------------------------------------------------
# through lightly-mm train
# ---------------------------------------------------------------------------

_ONE_STEP = dict(
    epochs=1,
    batch_size=16,
    limit_train_samples=16,
    quiet=True,
    eval_init=False,
    eval_final=False,
    checkpoint_every_n_steps=0,
)


@pytest.mark.slow
def test_train_one_step_with_timm_and_open_clip(tmp_path, tiny_clip):
    from lightly_mm_plugins.training import TrainConfig, train

    torch.save(
        build_encoder("image", "timm:test_vit", image_size=16).backbone.state_dict(),
        tmp_path / "vit.pt",
    )
    for method, image, text, weights in (
        ("clip", "timm:test_vit", None, tmp_path / "vit.pt"),
        ("tcl", f"open_clip:{tiny_clip}", f"open_clip:{tiny_clip}", None),
    ):
        out = tmp_path / method
        train(
            TrainConfig(
                method=method,
                image_encoder=image,
                text_encoder=text,
                image_weights=None if weights is None else str(weights),
                out=str(out),
                **_ONE_STEP,
            )
        )
        saved = torch.load(out / "encoders.pt", weights_only=True)
        assert saved["image_encoder"] == image
        assert any(k.startswith(("backbone.", "tower.")) for k in saved["encoders"]["image"])


def test_cli_names_bad_encoders_and_weights_before_loading_anything(tmp_path, capsys):
    for args, needle in (
        (["--image-encoder", "timm:resnt18"], "did you mean resnet18"),
        (["--image-encoder", "open_clip"], "needs a model name"),
        (["--text-encoder", "bert-base-uncased"], "unknown text encoder"),
        (["--image-weights", str(tmp_path / "absent.pt")], "--image-weights"),
    ):
        assert main(["train", "--method", "clip", "--out", str(tmp_path), *args]) == 2
        err = capsys.readouterr().err
        assert needle in err and "Traceback" not in err
