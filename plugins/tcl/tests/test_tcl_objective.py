"""TCLObjective: wiring of views, momentum heads, queues and the reduction to InfoNCE."""

from __future__ import annotations

import copy
import io

import pytest
import torch
import torch.nn.functional as F
from lightly.models.utils import update_momentum
from lightly_mm_tcl.loss import TCLLoss
from lightly_mm_tcl.objective import PAPER_QUEUE_SIZE, TCLObjective

from lightly_mm_plugins.api import EncodedBatch
from lightly_mm_plugins.losses import cross_modal_info_nce

torch.set_num_threads(1)

DIMS = {"image": 12, "text": 8}


def make_batch(
    seed: int = 0,
    n: int = 4,
    image_views: int = 2,
    grid: int = 4,
    tokens: int = 5,
    ids: torch.Tensor | None = None,
) -> EncodedBatch:
    g = torch.Generator().manual_seed(seed)
    emb = {
        "image": torch.randn(n, image_views, DIMS["image"], generator=g),
        "text": torch.randn(n, 1, DIMS["text"], generator=g),
    }
    mom = {k: v + 0.3 * torch.randn(v.shape, generator=g) for k, v in emb.items()}
    local = {
        "image": torch.randn(n, image_views, grid * grid, DIMS["image"], generator=g),
        "text": torch.randn(n, 1, tokens, DIMS["text"], generator=g),
    }
    momentum_local = {k: v + 0.3 * torch.randn(v.shape, generator=g) for k, v in local.items()}
    lengths = torch.randint(1, tokens + 1, (n,), generator=g)
    text_mask = (torch.arange(tokens)[None] < lengths[:, None]).unsqueeze(1)
    masks = {
        "image": torch.ones(n, image_views, grid * grid, dtype=torch.bool),
        "text": text_mask,
    }
    return EncodedBatch.from_tensors(
        emb,
        instance_ids=ids,
        momentum=mom,
        local=local,
        momentum_local=momentum_local,
        local_masks=masks,
    )


def test_defaults_follow_the_paper_where_cpu_sized_data_allows() -> None:
    obj = TCLObjective(DIMS)
    assert obj.embed_dim == 256
    assert obj.loss_fn.temperature == pytest.approx(0.07)
    assert obj.loss_fn.temperature_bounds == (0.001, 0.5)
    assert obj.loss_fn.alpha == pytest.approx(0.4)
    assert obj.momentum == pytest.approx(0.995)
    assert obj.requirements.momentum and obj.requirements.momentum_decay == 0.995
    assert obj.requirements.local_features
    assert PAPER_QUEUE_SIZE == 65536 and obj.queue_size == 4096
    assert obj.queues["image"].features.shape == (4096, 256)


def test_reduces_to_baseline_info_nce() -> None:
    """No intra / local term, no queue, alpha=0, momentum = online: CLIP's InfoNCE."""
    obj = TCLObjective(
        DIMS, embed_dim=6, queue_size=0, alpha=0.0, intra_modal_weight=0.0, local_weight=0.0
    )
    obj.train()
    batch = make_batch(1)
    emb = batch.embeddings
    momentum = {
        "image": torch.stack([emb["image"][:, 1], emb["image"][:, 0]], dim=1),
        "text": emb["text"].clone(),
    }
    out = obj(batch.replace(momentum=momentum, local=None, momentum_local=None))
    with torch.no_grad():
        za = obj.heads["image"](emb["image"][:, 0])
        zb = obj.heads["text"](emb["text"][:, 0])
    expected = cross_modal_info_nce(za, zb, temperature=0.07)
    assert torch.allclose(out.loss, expected, atol=1e-6)
    assert set(out.logs) == {"loss_cross_modal", "temperature", "alpha"}


def test_full_loss_uses_view0_online_and_view1_momentum() -> None:
    obj = TCLObjective(DIMS, embed_dim=6, queue_size=8, local_pool_grid=2)
    obj.eval()  # no momentum update / enqueue: the forward is a pure function
    batch = make_batch(2)
    base = obj(batch).loss

    def changed(**kwargs) -> bool:
        return not torch.allclose(obj(batch.replace(**kwargs)).loss, base)

    def perturb(d: dict, modality: str, view: int) -> dict:
        d = {k: v.clone() for k, v in d.items()}
        d[modality][:, view] += 1.0
        return d

    assert not changed(embeddings=perturb(batch.embeddings, "image", 1))
    assert changed(embeddings=perturb(batch.embeddings, "image", 0))
    assert not changed(momentum=perturb(batch.momentum, "image", 0))
    assert changed(momentum=perturb(batch.momentum, "image", 1))
    assert changed(momentum=perturb(batch.momentum, "text", 0))
    # the local term uses the momentum encoder's locals of the key view (official)
    assert not changed(local=perturb(batch.local, "image", 1))
    assert not changed(momentum_local=perturb(batch.momentum_local, "image", 0))
    assert changed(momentum_local=perturb(batch.momentum_local, "image", 1))
    assert changed(momentum_local=perturb(batch.momentum_local, "text", 0))


def test_full_loss_equals_tcl_loss_on_projected_features() -> None:
    obj = TCLObjective(DIMS, embed_dim=6, queue_size=8, local_pool_grid=2, instance_positives=False)
    obj.eval()
    batch = make_batch(3)
    out = obj(batch)
    heads, mheads = obj.heads, obj.momentum_heads
    with torch.no_grad():
        za, zb = (
            heads["image"](batch.embeddings["image"][:, 0]),
            heads["text"](batch.embeddings["text"][:, 0]),
        )
        ka = mheads["image"](batch.momentum["image"][:, 1])
        kb = mheads["text"](batch.momentum["text"][:, 0])
        la = mheads["image"](batch.momentum_local["image"][:, 1])
        lb = mheads["text"](batch.momentum_local["text"][:, 0])
        ref = TCLLoss(local_pool_grid=(2, None))
        expected = ref(
            za,
            zb,
            ka,
            kb,
            obj.queues["image"].features,
            obj.queues["text"].features,
            local0=la,
            local1=lb,
            local_mask1=batch.local_masks["text"][:, 0],
        )
    assert torch.allclose(out.loss, expected, atol=1e-6)


def test_momentum_heads_follow_update_momentum() -> None:
    obj = TCLObjective(DIMS, embed_dim=6, queue_size=8, momentum=0.9)
    for a, b in zip(obj.heads.parameters(), obj.momentum_heads.parameters()):
        assert torch.equal(a, b) and not b.requires_grad  # initialised as a copy
    with torch.no_grad():  # as after an optimizer step
        for p in obj.heads.parameters():
            p.add_(torch.randn_like(p))
    expected = copy.deepcopy(obj.momentum_heads)
    for m in ("image", "text"):
        update_momentum(obj.heads[m], expected[m], m=0.9)
    obj.train()
    obj(make_batch(4))
    for a, b in zip(obj.momentum_heads.parameters(), expected.parameters()):
        assert torch.allclose(a, b)
    before = copy.deepcopy(obj.momentum_heads.state_dict())
    obj.eval()
    obj(make_batch(4))
    for k, v in obj.momentum_heads.state_dict().items():
        assert torch.equal(v, before[k])  # no update outside training


def test_queue_enqueued_after_loss_with_normalised_momentum_features() -> None:
    obj = TCLObjective(DIMS, embed_dim=6, queue_size=6, momentum=1.0)
    obj.train()
    batch = make_batch(5, ids=torch.tensor([10, 11, 12, 13]))
    before = copy.deepcopy(obj)
    out = obj(batch)
    # the loss of this step saw the queue before the enqueue (momentum=1: heads unchanged)
    assert torch.allclose(before.eval()(batch).loss, out.loss)
    assert not torch.allclose(copy.deepcopy(obj).eval()(batch).loss, out.loss)
    with torch.no_grad():
        kb = F.normalize(obj.momentum_heads["text"](batch.momentum["text"][:, 0]), dim=1)
        ka = F.normalize(obj.momentum_heads["image"](batch.momentum["image"][:, 1]), dim=1)
    assert torch.allclose(obj.queues["text"].features[:4], kb, atol=1e-6)
    assert torch.allclose(obj.queues["image"].features[:4], ka, atol=1e-6)
    assert obj.queues["text"].ids[:4].tolist() == [10, 11, 12, 13]
    assert int(obj.queues["image"].ptr) == 4
    out.loss.backward()
    for q in obj.queues.values():
        assert q.features.grad is None and not q.features.requires_grad
    for p in obj.momentum_heads.parameters():
        assert p.grad is None
    assert all(p.grad is not None for p in obj.heads.parameters())
    assert obj.loss_fn.temp.grad is not None
    # eval forwards leave the queue alone
    snapshot = obj.queues["image"].features.clone()
    obj.eval()
    obj(make_batch(6))
    assert torch.equal(obj.queues["image"].features, snapshot)


def test_instance_positives_use_queue_ids() -> None:
    obj = TCLObjective(DIMS, embed_dim=6, queue_size=8, local_weight=0.0, alpha=0.0)
    obj.train()
    obj(make_batch(7, ids=torch.arange(4)))  # queue: momentum features with ids 0..3
    obj.eval()
    batch = make_batch(8, ids=torch.arange(4))  # the same instances, other features
    with_ids = obj(batch).loss
    obj.instance_positives = False
    without = obj(batch).loss
    # the stale copies are positives with ids, negatives without: the loss differs
    assert not torch.allclose(with_ids, without)
    obj.instance_positives = True
    fresh = make_batch(8, ids=torch.arange(10, 14))  # no instance in the queue
    obj_ids = obj(fresh).loss
    obj.instance_positives = False
    assert torch.allclose(obj_ids, obj(fresh).loss)


def test_checkpoint_round_trip() -> None:
    obj = TCLObjective(DIMS, embed_dim=6, queue_size=8, alpha_warmup_steps=5)
    obj.train()
    for s in range(3):
        obj(make_batch(10 + s))
    buffer = io.BytesIO()
    torch.save(obj.state_dict(), buffer)
    buffer.seek(0)
    restored = TCLObjective(DIMS, embed_dim=6, queue_size=8, alpha_warmup_steps=5)
    restored.load_state_dict(torch.load(buffer))
    for name, tensor in obj.state_dict().items():
        assert torch.equal(tensor, restored.state_dict()[name]), name
    assert int(restored.num_steps) == 3
    assert restored.current_alpha() == pytest.approx(obj.current_alpha())
    obj.eval()
    restored.eval()
    batch = make_batch(20)
    assert torch.equal(obj(batch).loss, restored(batch).loss)


def test_alpha_warmup_and_scale() -> None:
    obj = TCLObjective(DIMS, embed_dim=6, queue_size=0, alpha_warmup_steps=4, local_weight=0.0)
    obj.train()
    alphas = [float(obj(make_batch(s)).logs["alpha"]) for s in range(6)]
    assert alphas == pytest.approx([0.0, 0.1, 0.2, 0.3, 0.4, 0.4])
    obj.set_alpha_scale(0.5)
    assert obj.current_alpha() == pytest.approx(0.2)
    with pytest.raises(ValueError, match="alpha scale"):
        obj.set_alpha_scale(2.0)


def test_local_weight_zero_drops_local_requirement() -> None:
    obj = TCLObjective(DIMS, embed_dim=6, queue_size=8, local_weight=0.0)
    assert not obj.requirements.local_features
    out = obj(make_batch(8).replace(local=None, momentum_local=None, local_masks=None))
    assert "loss_local" not in out.logs and torch.isfinite(out.loss)


def test_separate_local_heads_for_other_local_sizes() -> None:
    obj = TCLObjective(DIMS, embed_dim=6, queue_size=8, local_dims={"image": 5})
    assert set(obj.local_heads) == {"image"} and set(obj.momentum_local_heads) == {"image"}
    # no gradient can reach it from momentum locals: frozen (no unused DDP parameter)
    assert not any(p.requires_grad for p in obj.local_heads.parameters())
    trainable = TCLObjective(DIMS, local_dims={"image": 5}, local_from_momentum=False)
    assert all(p.requires_grad for p in trainable.local_heads.parameters())
    batch = make_batch(9)
    ml = dict(batch.momentum_local)
    ml["image"] = torch.randn(4, 2, 16, 5)
    out = obj(batch.replace(momentum_local=ml))
    assert torch.isfinite(out.loss)
    other = TCLObjective(DIMS, embed_dim=6, queue_size=8)
    with pytest.raises(ValueError, match="local_dims"):
        other(batch.replace(momentum_local=ml))


def test_online_locals_option_carries_gradient() -> None:
    obj = TCLObjective(DIMS, embed_dim=6, queue_size=0, local_from_momentum=False)
    batch = make_batch(11)
    local = {k: v.clone().requires_grad_(True) for k, v in batch.local.items()}
    obj(batch.replace(local=local, momentum_local=None)).loss.backward()
    assert local["image"].grad is not None and local["image"].grad[:, 1].abs().sum() > 0


def test_validation_errors_name_the_fix() -> None:
    obj = TCLObjective(DIMS, embed_dim=6, queue_size=8)
    with pytest.raises(ValueError, match="'tcl' view"):
        obj(make_batch(12, image_views=1))
    with pytest.raises(ValueError, match="momentum_local"):
        obj(make_batch(12).replace(momentum_local=None))
    with pytest.raises(ValueError, match="momentum"):
        obj(make_batch(12).replace(momentum=None))
    with pytest.raises(ValueError, match="queue_size"):
        TCLObjective(DIMS, queue_size=-1)
    with pytest.raises(ValueError, match="image"):
        TCLObjective({"text": 8}, modalities=("image", "text"))
    one_view = TCLObjective(DIMS, embed_dim=6, queue_size=8, image_modalities=(), local_weight=0)
    assert torch.isfinite(one_view(make_batch(12, image_views=1)).loss)


def test_trains_for_a_few_steps_with_queue_wrap_around() -> None:
    obj = TCLObjective(DIMS, embed_dim=6, queue_size=6, local_pool_grid=2)
    opt = torch.optim.SGD([p for p in obj.parameters() if p.requires_grad], lr=0.1)
    obj.train()
    for s in range(5):
        out = obj(make_batch(30 + s))
        opt.zero_grad()
        out.loss.backward()
        opt.step()
        assert torch.isfinite(out.loss)
    assert int(obj.queues["image"].ptr) == (5 * 4) % 6


def test_requirements_views_per_modality_and_pseudo_labels() -> None:
    req = TCLObjective(DIMS, embed_dim=6, queue_size=0).requirements
    assert req.views_needed("image") == 2 and req.views_needed("text") == 1
    assert req.pseudo_labels
    one_view = TCLObjective(DIMS, embed_dim=6, queue_size=0, image_modalities=()).requirements
    assert one_view.views_needed("image") == 1
    assert TCLObjective.requirements.views_needed("image") == 2


def test_pseudo_labels_restrict_negatives_and_bypass_the_queue() -> None:
    """All labels equal: the loss of the same objective without a queue (the queue has no
    pseudo labels); the queue is still filled. Groups: CMA / IMC change, LMI does not."""
    torch.manual_seed(0)
    with_queue = TCLObjective(DIMS, embed_dim=6, queue_size=8, local_pool_grid=2)
    torch.manual_seed(0)
    no_queue = TCLObjective(DIMS, embed_dim=6, queue_size=0, local_pool_grid=2)
    with_queue.train()
    no_queue.train()
    batch = make_batch(20)
    same = torch.zeros(4, dtype=torch.long)
    out = with_queue(batch.replace(pseudo_labels=same))
    ref = no_queue(batch)
    assert torch.allclose(out.loss, ref.loss, atol=1e-6)
    assert int(with_queue.queues["image"].ptr) == 4  # enqueued all the same
    assert torch.equal(with_queue.queues["text"].ids[:4], batch.instance_ids)

    no_queue.eval()
    base = no_queue(batch).logs
    grouped = no_queue(batch.replace(pseudo_labels=torch.tensor([0, 1, 0, 1]))).logs
    assert not torch.allclose(grouped["loss_cross_modal"], base["loss_cross_modal"])
    assert not torch.allclose(grouped["loss_intra_modal"], base["loss_intra_modal"])
    assert torch.equal(grouped["loss_local"], base["loss_local"])
    with pytest.raises(ValueError, match="pseudo_labels must have shape"):
        no_queue(batch.replace(pseudo_labels=torch.zeros(3, dtype=torch.long)))


def test_local_chunk_size_streams_lmi_with_the_same_loss_and_gradients() -> None:
    """``TCLObjective(local_chunk_size=k)`` reaches ``TCLLoss``: same loss and gradients
    as the dense local-MI path (float64), and a bad size is refused."""
    torch.manual_seed(0)
    dense = TCLObjective(DIMS, embed_dim=6, queue_size=8, local_pool_grid=2).double().eval()
    chunked = TCLObjective(
        DIMS, embed_dim=6, queue_size=8, local_pool_grid=2, local_chunk_size=2
    ).double()
    chunked.load_state_dict(dense.state_dict())
    chunked.eval()
    batch = make_batch(5)
    batch = batch.replace(
        embeddings={k: v.double() for k, v in batch.embeddings.items()},
        momentum={k: v.double() for k, v in batch.momentum.items()},
        momentum_local={k: v.double() for k, v in batch.momentum_local.items()},
    )
    out_dense, out_chunked = dense(batch), chunked(batch)
    torch.testing.assert_close(out_chunked.loss, out_dense.loss, rtol=1e-10, atol=1e-10)
    out_dense.loss.backward()
    out_chunked.loss.backward()
    for (name, p), q in zip(dense.named_parameters(), chunked.parameters()):
        if p.grad is not None:
            torch.testing.assert_close(q.grad, p.grad, rtol=1e-9, atol=1e-10, msg=name)
    with pytest.raises(ValueError, match="chunk_size"):
        TCLObjective(DIMS, local_chunk_size=0)
