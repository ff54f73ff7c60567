"""The baseline CLIP loss against a hand-computed symmetric cross-modal InfoNCE."""

from __future__ import annotations

import math

import pytest
import torch
from lightly_mm_clip.loss import CLIPLoss
from lightly_mm_clip.objective import CLIPObjective

from lightly_mm_plugins.api import EncodedBatch
from lightly_mm_plugins.losses import cross_modal_info_nce


def hand_clip(a: list[list[float]], b: list[list[float]], tau: float) -> float:
    """Symmetric InfoNCE written out with Python floats (no torch)."""

    def norm(v: list[float]) -> list[float]:
        n = math.sqrt(sum(x * x for x in v))
        return [x / n for x in v]

    a, b = [norm(v) for v in a], [norm(v) for v in b]
    n = len(a)
    s = [[sum(x * y for x, y in zip(a[i], b[j])) / tau for j in range(n)] for i in range(n)]
    i2t = sum(-s[i][i] + math.log(sum(math.exp(s[i][j]) for j in range(n))) for i in range(n)) / n
    t2i = sum(-s[j][j] + math.log(sum(math.exp(s[i][j]) for i in range(n))) for j in range(n)) / n
    return 0.5 * (i2t + t2i)


A = [[1.0, 0.0], [0.6, 0.8], [-1.0, 0.5]]
B = [[0.9, 0.1], [0.0, 1.0], [-0.5, -0.5]]


@pytest.mark.parametrize("tau", [0.07, 0.5, 1.0])
def test_matches_hand_computed_3x2(tau):
    loss = CLIPLoss(temperature=tau)(torch.tensor(A), torch.tensor(B))
    assert loss.item() == pytest.approx(hand_clip(A, B, tau), rel=1e-5)


def test_hand_value_is_what_we_think():
    # Independent check of the reference at tau=1 with a closed form for row 0.
    value = hand_clip(A, B, 1.0)
    assert 0.0 < value < math.log(3) + 2.0


def test_temperature_is_respected_and_validated():
    a, b = torch.tensor(A), torch.tensor(B)
    assert CLIPLoss(temperature=0.1)(a, b).item() != pytest.approx(
        CLIPLoss(temperature=1.0)(a, b).item()
    )
    for bad in (0.0, -0.1, float("nan")):
        with pytest.raises(ValueError, match="temperature"):
            CLIPLoss(temperature=bad)


def test_negatives_only_from_other_modality():
    # Making two images identical must not change the loss through an image-image term.
    a = torch.tensor(A)
    b = torch.tensor(B)
    a2 = a.clone()
    a2[2] = a2[1]
    ref = hand_clip(a2.tolist(), B, 0.5)
    assert CLIPLoss(temperature=0.5)(a2, b).item() == pytest.approx(ref, rel=1e-5)


def test_gradients_flow_and_match_finite_differences():
    a = torch.tensor(A, dtype=torch.float64, requires_grad=True)
    b = torch.tensor(B, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(lambda x, y: cross_modal_info_nce(x, y, 0.3), (a, b))
    loss = CLIPLoss(temperature=0.3, learnable_temperature=True).double()
    out = loss(a, b)
    out.backward()
    assert a.grad is not None and b.grad is not None
    assert loss.log_scale.grad is not None


def test_perfect_alignment_limit():
    # Orthogonal, perfectly paired embeddings at low temperature: loss -> 0.
    e = torch.eye(4)
    assert CLIPLoss(temperature=0.01)(e, e).item() < 1e-6
    # Constant embeddings carry no information: loss = log N.
    c = torch.ones(4, 3)
    assert CLIPLoss(temperature=0.5)(c, c).item() == pytest.approx(math.log(4), rel=1e-6)


def test_pseudo_labels_restrict_negatives_exactly():
    torch.manual_seed(0)
    a, b = torch.randn(6, 5), torch.randn(6, 5)
    groups = torch.tensor([0, 1, 0, 1, 1, 0])
    masked = CLIPLoss(temperature=0.2)(a, b, pseudo_labels=groups)
    # Per group, the loss on the group alone; rows average over the whole batch.
    total = 0.0
    for g in (0, 1):
        idx = (groups == g).nonzero().flatten()
        total += CLIPLoss(temperature=0.2)(a[idx], b[idx]).item() * len(idx)
    assert masked.item() == pytest.approx(total / 6, rel=1e-5)


def test_shape_errors_are_clear():
    with pytest.raises(ValueError, match="equal shape"):
        CLIPLoss()(torch.randn(3, 2), torch.randn(4, 2))


def test_objective_validates_batch():
    obj = CLIPObjective({"image": 4, "text": 3}, projection_dim=2)
    good = EncodedBatch.from_tensors({"image": torch.randn(3, 4), "text": torch.randn(3, 3)})
    assert torch.isfinite(obj(good).loss)
    with pytest.raises(ValueError, match="at least 2 instances"):
        obj(EncodedBatch.from_tensors({"image": torch.randn(1, 4), "text": torch.randn(1, 3)}))
    with pytest.raises(ValueError, match="missing"):
        obj(EncodedBatch.from_tensors({"image": torch.randn(3, 4)}))
    with pytest.raises(ValueError, match="features"):
        obj(EncodedBatch.from_tensors({"image": torch.randn(3, 5), "text": torch.randn(3, 3)}))
    bad = torch.randn(3, 4)
    bad[0, 0] = float("nan")
    with pytest.raises(ValueError, match="NaN"):
        obj(EncodedBatch.from_tensors({"image": bad, "text": torch.randn(3, 3)}))
    with pytest.raises(ValueError, match="no embedding size"):
        CLIPObjective({"image": 4}, modalities=("image", "text"))


# ------------------------------------------------------------ chunked (streaming)


@pytest.mark.parametrize("chunk", [1, 3, 16])
def test_chunked_clip_loss_equals_dense_with_learnable_temperature(chunk):
    g = torch.Generator().manual_seed(11)
    a = torch.randn(7, 5, generator=g, dtype=torch.float64, requires_grad=True)
    b = torch.randn(7, 5, generator=g, dtype=torch.float64, requires_grad=True)
    groups = torch.tensor([0, 1, 0, 1, 1, 0, 0])
    dense_fn = CLIPLoss(0.1, learnable_temperature=True).double()
    chunk_fn = CLIPLoss(0.1, learnable_temperature=True, chunk_size=chunk).double()
    for labels in (None, groups):
        dense = dense_fn(a, b, pseudo_labels=labels)
        chunked = chunk_fn(a, b, pseudo_labels=labels)
        torch.testing.assert_close(chunked, dense, rtol=1e-12, atol=1e-12)
        want = torch.autograd.grad(dense, (a, b, dense_fn.log_scale))
        got = torch.autograd.grad(chunked, (a, b, chunk_fn.log_scale))
        for x, y in zip(got, want):
            torch.testing.assert_close(x, y, rtol=1e-10, atol=1e-12)
    assert float(chunk_fn(torch.tensor(A), torch.tensor(B)).detach()) == pytest.approx(
        hand_clip(A, B, 0.1), rel=1e-5
    )


def test_objective_passes_chunk_size_and_rejects_a_bad_one():
    obj = CLIPObjective({"image": 6, "text": 4}, projection_dim=3, chunk_size=2)
    assert obj.loss_fn.chunk_size == 2
    batch = EncodedBatch.from_tensors({"image": torch.randn(5, 6), "text": torch.randn(5, 4)})
    dense = CLIPObjective({"image": 6, "text": 4}, projection_dim=3)
    dense.load_state_dict(obj.state_dict())
    torch.testing.assert_close(obj(batch).loss, dense(batch).loss, rtol=1e-5, atol=1e-6)
    with pytest.raises(ValueError, match="chunk_size"):
        CLIPLoss(chunk_size=0)


def test_temperature_is_logged_as_a_tensor_without_host_sync():
    """The objective logs ``temperature_tensor()`` (a 0-d tensor), equal to the float."""
    import torch
    from lightly_mm_clip import CLIPObjective

    from lightly_mm_plugins.api import EncodedBatch

    obj = CLIPObjective({"image": 6, "text": 4}, projection_dim=3, temperature=0.2)
    out = obj(EncodedBatch.from_tensors({"image": torch.randn(4, 6), "text": torch.randn(4, 4)}))
    logged = out.logs["temperature"]
    assert isinstance(logged, torch.Tensor) and logged.dim() == 0
    assert not logged.requires_grad
    assert abs(float(logged) - obj.loss_fn.temperature) < 1e-7
    assert abs(obj.loss_fn.temperature - 0.2) < 1e-6
