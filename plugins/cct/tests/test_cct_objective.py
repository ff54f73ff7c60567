"""CCTObjective: cross- and intra-modal positives, pseudo labels, momentum heads and the queue."""

from __future__ import annotations

import copy
import io

import pytest
import torch
import torch.nn.functional as F
from lightly_mm_cct.loss import CCTLoss
from lightly_mm_cct.objective import NO_GROUP, NO_INSTANCE, CCTObjective

from lightly_mm_plugins.api import DistributedKind, EncodedBatch

torch.set_num_threads(1)

DIMS = {"image": 12, "text": 8}


def batch(n: int = 6, views: int = 2, captions: int = 1, seed: int = 0, momentum: bool = False):
    g = torch.Generator().manual_seed(seed)
    emb = {
        "image": torch.randn(n, views, DIMS["image"], generator=g),
        "text": torch.randn(n, captions, DIMS["text"], generator=g),
    }
    mom = None
    if momentum:
        mom = {m: e + 0.1 * torch.randn(e.shape, generator=g) for m, e in emb.items()}
    return EncodedBatch.from_tensors(emb, momentum=mom, instance_ids=torch.arange(n) + 100)


def test_positives_are_every_observation_of_the_instance():
    torch.manual_seed(0)
    obj = CCTObjective(DIMS, projection_dim=5, tau_neg=2.0)
    b = batch(views=2, captions=1)
    out = obj(b)
    zi = obj.heads["image"](b.embeddings["image"].reshape(-1, 12)).reshape(6, 2, 5)
    zt = obj.heads["text"](b.embeddings["text"].reshape(-1, 8)).reshape(6, 1, 5)
    z = torch.cat([zi, zt], dim=1)  # image view 0, image view 1, caption
    ref = CCTLoss(tau_neg=2.0).terms(z, return_weights=True)
    assert out.loss.item() == pytest.approx(ref["loss"].item(), rel=1e-6)
    for key in ("attraction", "repulsion", "entropy_pos", "entropy_neg"):
        assert out.logs[key].item() == pytest.approx(ref[key].item(), rel=1e-6)
    # Each image view attracts the other image view (intra-modal) and the caption
    # (cross-modal); the caption attracts both image views.
    w = ref["weights_pos"]
    assert (w[:, 0, 1] > 0).all() and (w[:, 0, 2] > 0).all() and (w[:, 2, :2] > 0).all()
    # The repulsion covers image-image and image-text view pairs.
    assert ref["pairs"].T.tolist() == [[0, 1], [0, 2], [1, 2]]


def test_cross_modal_only_with_one_view_each_and_single_modality_with_two_views():
    obj = CCTObjective(DIMS, projection_dim=4)
    out = obj(batch(views=1, captions=1))
    assert torch.isfinite(out.loss)
    out.loss.backward()
    assert all(p.grad is not None for p in obj.heads.parameters())
    solo = CCTObjective({"image": 12}, modalities=("image",), projection_dim=4)
    assert solo.requirements.views_needed("image") == 2
    emb = torch.randn(5, 5, 12)  # official small-scale: Ny + 1 = 5 views
    assert torch.isfinite(solo(EncodedBatch.from_tensors({"image": emb})).loss)
    with pytest.raises(ValueError, match="needs 2 views"):
        solo(EncodedBatch.from_tensors({"image": torch.randn(5, 1, 12)}))


def test_padded_captions_are_ignored():
    torch.manual_seed(1)
    obj = CCTObjective(DIMS, projection_dim=4)
    b = batch(captions=3)
    b.masks["text"][:, 2] = False
    b.embeddings["text"][:, 2] = 5.0
    short = EncodedBatch.from_tensors(
        {"image": b.embeddings["image"], "text": b.embeddings["text"][:, :2]},
        instance_ids=b.instance_ids,
    )
    assert obj(b).loss.item() == pytest.approx(obj(short).loss.item(), rel=1e-6)


def test_pseudo_labels_are_honoured():
    torch.manual_seed(2)
    obj = CCTObjective(DIMS, projection_dim=4)
    assert obj.requirements.pseudo_labels
    b = batch(n=8)
    groups = torch.tensor([0, 1, 0, 1, 0, 1, 0, 1])
    with_groups = obj(b.replace(pseudo_labels=groups)).loss
    zi = obj.heads["image"](b.embeddings["image"].reshape(-1, 12)).reshape(8, 2, 4)
    zt = obj.heads["text"](b.embeddings["text"].reshape(-1, 8)).reshape(8, 1, 4)
    ref = obj.loss_fn(torch.cat([zi, zt], 1), pseudo_labels=groups)
    assert with_groups.item() == pytest.approx(ref.item(), rel=1e-6)
    assert with_groups.item() != pytest.approx(obj(b).loss.item())


def test_defaults_are_the_small_scale_code():
    obj = CCTObjective(DIMS)
    lf = obj.loss_fn
    assert (lf.tau_pos, lf.tau_neg, lf.alpha, lf.beta) == (1.0, 0.9, 1.0, 1.0)
    assert lf.detach_weights is False and lf.weighting == "cacr" and not lf.debiased
    assert not obj.requirements.momentum and obj.momentum_heads is None
    assert obj.requirements.distributed == DistributedKind.RANK_LOCAL
    assert not [n for n, _ in obj.named_buffers()]
    gathered = CCTObjective(DIMS, gather_distributed=True)
    assert gathered.requirements.distributed == DistributedKind.GATHER_FOR_NEGATIVES
    queued = CCTObjective(DIMS, queue_size=16)
    assert queued.loss_fn.detach_weights == "momentum"
    assert queued.requirements.momentum and queued.requirements.momentum_decay == 0.999
    assert CCTObjective(DIMS, queue_size=16, detach_weights="True").loss_fn.detach_weights is True
    assert CCTObjective(DIMS, detach_weights="momentum").loss_fn.detach_weights == "momentum"
    with pytest.raises(ValueError, match="detach_weights"):
        CCTObjective(DIMS, detach_weights="yes")
    with pytest.raises(ValueError, match="debiased"):
        CCTObjective(DIMS, queue_size=16, debiased=True)
    with pytest.raises(ValueError, match="queue_size"):
        CCTObjective(DIMS, queue_size=-1)


# -------------------------------------------------------------------------- queue mode


def test_queue_mode_uses_momentum_keys_and_the_queue():
    torch.manual_seed(3)
    obj = CCTObjective(DIMS, projection_dim=4, queue_size=10, momentum=0.9)
    b = batch(n=4, momentum=True)
    with pytest.raises(ValueError, match="momentum"):
        obj(batch(n=4))
    online_before = copy.deepcopy(obj.heads)
    momentum_before = copy.deepcopy(obj.momentum_heads)
    # Make the online heads differ from the momentum copies so the EMA is visible.
    with torch.no_grad():
        for p in obj.heads.parameters():
            p.add_(0.5)
    queue_before = obj.queue.clone()
    obj.train()
    out = obj(b)
    out.loss.backward()
    # EMA: momentum = 0.9 * old momentum + 0.1 * online, before the keys are computed.
    for (name, p_m), p_old, p_on in zip(
        obj.momentum_heads.named_parameters(),
        momentum_before.parameters(),
        online_before.parameters(),
    ):
        torch.testing.assert_close(p_m, 0.9 * p_old + 0.1 * (p_on + 0.5), msg=name)
        assert p_m.grad is None and not p_m.requires_grad
    assert all(p.grad is not None for p in obj.heads.parameters())
    # Enqueued: one key per modality per instance (last valid observation), ids attached.
    assert int(obj.queue_ptr) == 8
    assert obj.queue_ids[:8].tolist() == [100, 100, 101, 101, 102, 102, 103, 103]
    assert (obj.queue_ids[8:] == NO_INSTANCE).all()
    assert (obj.queue_groups == NO_GROUP).all()
    torch.testing.assert_close(obj.queue[8:], queue_before[8:])
    with torch.no_grad():
        key_img = F.normalize(obj.momentum_heads["image"](b.momentum["image"][:, 1]), dim=-1)
        key_txt = F.normalize(obj.momentum_heads["text"](b.momentum["text"][:, 0]), dim=-1)
    torch.testing.assert_close(obj.queue[0:8:2], key_img)
    torch.testing.assert_close(obj.queue[1:8:2], key_txt)
    # The queue wraps around.
    obj(batch(n=4, momentum=True, seed=1))
    assert int(obj.queue_ptr) == 6
    # Eval mode neither updates the momentum heads nor enqueues.
    obj.eval()
    ptr, state = int(obj.queue_ptr), copy.deepcopy(obj.state_dict())
    obj(b)
    assert int(obj.queue_ptr) == ptr
    for key, value in obj.state_dict().items():
        torch.testing.assert_close(value, state[key], msg=key)


def test_queue_mode_loss_matches_the_loss_module_and_uses_the_momentum():
    torch.manual_seed(4)
    obj = CCTObjective(DIMS, projection_dim=4, queue_size=6, exclude_own_instance=False)
    obj.eval()
    b = batch(n=4, momentum=True)
    out = obj(b)
    with torch.no_grad():
        z, mask = obj.stack(obj.heads, b.embeddings, b)
        keys, _ = obj.stack(obj.momentum_heads, b.momentum, b)
    ref = obj.loss_fn.terms(z, mask=mask, keys=keys, queue=obj.queue)
    assert out.loss.item() == pytest.approx(ref["loss"].item(), rel=1e-6)
    flipped = b.replace(momentum={m: t.flip(0) for m, t in b.momentum.items()})
    assert obj(flipped).loss.item() != pytest.approx(out.loss.item())


def test_queue_negatives_skip_own_instance_and_other_groups():
    obj = CCTObjective(DIMS, projection_dim=4, queue_size=6)
    obj.queue_ids.copy_(torch.tensor([100, 101, 102, 100, NO_INSTANCE, 103]))
    obj.queue_groups.copy_(torch.tensor([0, 1, 0, 1, NO_GROUP, 0]))
    b = batch(n=2, momentum=True)  # ids 100, 101
    ok = obj.queue_mask(b)
    assert ok.tolist() == [
        [False, True, True, False, True, True],
        [True, False, True, True, True, True],
    ]
    ok = obj.queue_mask(b.replace(pseudo_labels=torch.tensor([0, 1])))
    assert ok.tolist() == [
        [False, False, True, False, False, True],
        [False, False, False, True, False, False],
    ]
    loose = CCTObjective(DIMS, projection_dim=4, queue_size=6, exclude_own_instance=False)
    assert loose.queue_mask(b).all()


def test_queue_state_is_checkpointed():
    torch.manual_seed(5)
    a = CCTObjective(DIMS, projection_dim=4, queue_size=8)
    a(batch(n=3, momentum=True))
    b = CCTObjective(DIMS, projection_dim=4, queue_size=8)
    buf = io.BytesIO()
    torch.save(a.state_dict(), buf)
    buf.seek(0)
    b.load_state_dict(torch.load(buf, weights_only=True))
    for name in ("queue", "queue_ids", "queue_groups", "queue_ptr"):
        torch.testing.assert_close(getattr(a, name), getattr(b, name))
    a.eval()
    b.eval()
    x = batch(n=3, momentum=True, seed=2)
    assert a(x).loss.item() == pytest.approx(b(x).loss.item(), rel=1e-6)


def test_queue_mode_pseudo_labels_are_stored():
    torch.manual_seed(6)
    obj = CCTObjective(DIMS, projection_dim=4, queue_size=8)
    b = batch(n=4, momentum=True).replace(pseudo_labels=torch.tensor([1, 0, 1, 0]))
    obj(b)
    assert obj.queue_groups[:8].tolist() == [1, 1, 0, 0, 1, 1, 0, 0]
