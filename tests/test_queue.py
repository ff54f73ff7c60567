"""FeatureQueue: FIFO order, size, wrap-around, checkpoints, no gradient."""

from __future__ import annotations

import io

import pytest
import torch

from lightly_mm_plugins.queue import NO_GROUP, NO_INSTANCE, FeatureQueue

torch.set_num_threads(1)


def test_initial_state_is_random_unit_rows_without_ids() -> None:
    q = FeatureQueue(size=6, dim=3)
    assert q.features.shape == (6, 3)
    assert torch.allclose(q.features.norm(dim=1), torch.ones(6), atol=1e-6)
    assert torch.equal(q.ids, torch.full((6,), NO_INSTANCE))
    assert int(q.ptr) == 0
    assert not q.features.requires_grad


def test_enqueue_order_and_wrap_around() -> None:
    q = FeatureQueue(size=5, dim=2)
    first = torch.arange(6.0).reshape(3, 2)
    q.enqueue(first, torch.tensor([0, 1, 2]))
    assert torch.equal(q.features[:3], first)
    assert torch.equal(q.ids[:3], torch.tensor([0, 1, 2]))
    assert int(q.ptr) == 3
    second = 10 + torch.arange(6.0).reshape(3, 2)
    q.enqueue(second, torch.tensor([3, 4, 5]))
    # rows 3, 4 then wrap to row 0: the oldest entry (id 0) is dequeued first
    assert torch.equal(q.features[3], second[0])
    assert torch.equal(q.features[4], second[1])
    assert torch.equal(q.features[0], second[2])
    assert torch.equal(q.features[1:3], first[1:])
    assert torch.equal(q.ids, torch.tensor([5, 1, 2, 3, 4]))
    assert int(q.ptr) == 1
    assert q.features.shape == (5, 2)  # the size never changes


def test_batch_larger_than_queue_keeps_newest_rows() -> None:
    q = FeatureQueue(size=3, dim=1)
    q.enqueue(torch.arange(7.0).reshape(7, 1), torch.arange(7))
    assert sorted(q.ids.tolist()) == [4, 5, 6]
    assert sorted(q.features.flatten().tolist()) == [4.0, 5.0, 6.0]


def test_queue_is_a_detached_copy_and_never_carries_gradient() -> None:
    q = FeatureQueue(size=4, dim=2)
    x = torch.randn(2, 2, requires_grad=True)
    q.enqueue(x * 2)
    feats, _ = q()
    assert not q.features.requires_grad and q.features.grad_fn is None
    assert not feats.requires_grad
    feats.add_(1.0)  # the copy does not alias the buffer
    assert torch.allclose(q.features[:2], (x * 2).detach())


def test_state_dict_round_trip() -> None:
    q = FeatureQueue(size=4, dim=2)
    q.enqueue(torch.randn(3, 2), torch.tensor([7, 8, 9]))
    buffer = io.BytesIO()
    torch.save(q.state_dict(), buffer)
    buffer.seek(0)
    restored = FeatureQueue(size=4, dim=2)
    restored.load_state_dict(torch.load(buffer))
    for name in ("features", "ids", "ptr"):
        assert torch.equal(getattr(restored, name), getattr(q, name))
    # and it continues where the original stopped
    x = torch.randn(2, 2)
    q.enqueue(x)
    restored.enqueue(x)
    assert torch.equal(q.features, restored.features) and int(restored.ptr) == 1


def test_enqueue_rejects_wrong_shapes() -> None:
    q = FeatureQueue(size=4, dim=2)
    with pytest.raises(ValueError, match="shape"):
        q.enqueue(torch.randn(2, 3))
    with pytest.raises(ValueError, match="ids"):
        q.enqueue(torch.randn(2, 2), torch.arange(3))
    with pytest.raises(ValueError, match="size"):
        FeatureQueue(0, 2)


def test_groups_and_negatives() -> None:
    q = FeatureQueue(size=4, dim=2, gather_distributed=False, track_groups=True)
    assert torch.equal(q.groups, torch.full((4,), NO_GROUP))
    q.enqueue(torch.eye(2)[[0, 1, 0]], torch.tensor([5, 6, 7]), torch.tensor([0, 1, 0]))
    q.enqueue(torch.eye(2)[[1]], torch.tensor([8]))  # written without a group
    assert q.groups.tolist() == [0, 1, 0, NO_GROUP]
    assert q.negatives() is None
    got = q.negatives(ids=torch.tensor([5, 6]), groups=torch.tensor([0, 0]))
    assert got.tolist() == [[False, False, True, False], [True, False, True, False]]
    assert "groups" in q.state_dict()
    assert "groups" not in FeatureQueue(size=2, dim=2).state_dict()
    with pytest.raises(ValueError, match="track_groups"):
        FeatureQueue(size=2, dim=2).negatives(groups=torch.tensor([0]))
