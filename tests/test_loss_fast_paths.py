"""Fast paths of the CLIP-family losses against straightforward dense references (float64)."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from lightly_mm_plugins.losses import cross_modal_info_nce


def _dense_clip(a, b, scale, groups=None):
    """CLIP's symmetric InfoNCE, written out: logits, group mask, two cross-entropies."""
    logits = scale * F.normalize(a, dim=-1) @ F.normalize(b, dim=-1).T
    if groups is not None:
        logits = logits.masked_fill(groups[:, None] != groups[None, :], float("-inf"))
    target = torch.arange(a.shape[0])
    return 0.5 * (F.cross_entropy(logits, target) + F.cross_entropy(logits.T, target))


def _inputs(n=10, d=6, seed=0):
    g = torch.Generator().manual_seed(seed)
    a = torch.randn(n, d, generator=g, dtype=torch.float64, requires_grad=True)
    b = torch.randn(n, d, generator=g, dtype=torch.float64, requires_grad=True)
    return a, b


@pytest.mark.parametrize("chunk", [None, 3])
@pytest.mark.parametrize("soft", [(0.0, None), (0.5, None), (1.0, 0.3)])
@pytest.mark.parametrize("labels", [None, "groups"])
def test_mxmclr_one_fold_equals_dense_clip(chunk, soft, labels) -> None:
    from lightly_mm_mxmclr.loss import MXMCLRLoss

    a, b = _inputs()
    groups = torch.tensor([0, 1, 0, 1, 2, 2, 0, 1, 2, 0]) if labels else None
    loss_fn = MXMCLRLoss(
        temperature=0.1,
        soft_weight=soft[0],
        soft_temperature=soft[1],
        learnable_temperature=True,
        chunk_size=chunk,
    ).double()
    terms = loss_fn.terms(a.unsqueeze(1), b, pseudo_labels=groups)  # (N, 1, D) and (N, D)
    want = _dense_clip(a, b, loss_fn.log_scale.exp(), groups)
    params = (a, b, loss_fn.log_scale)
    torch.testing.assert_close(terms.loss, want, rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(terms.hard, want, rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(terms.soft, want, rtol=1e-12, atol=1e-12)
    got_g = torch.autograd.grad(terms.loss, params)
    want_g = torch.autograd.grad(want, params)
    for got, ref in zip(got_g, want_g, strict=True):
        torch.testing.assert_close(got, ref, rtol=1e-10, atol=1e-12)


def test_mxmclr_one_fold_with_masks_or_ids_takes_the_general_path() -> None:
    from lightly_mm_mxmclr.loss import MXMCLRLoss

    a, b = _inputs()
    loss_fn = MXMCLRLoss(temperature=0.1).double()
    ids = torch.tensor([0, 1, 2, 3, 4, 5, 6, 7, 8, 0])  # two rows of one instance
    got = loss_fn(a.unsqueeze(1), b.unsqueeze(1), instance_ids=ids)
    assert not torch.allclose(got, _dense_clip(a, b, 10.0))  # multi-positive: not CLIP


@pytest.mark.parametrize("chunk", [None, 4])
def test_one_pseudo_label_group_equals_no_mask_and_dense(chunk) -> None:
    a, b = _inputs(seed=1)
    same = torch.full((10,), 3)
    got = cross_modal_info_nce(a, b, 0.2, pseudo_labels=same, chunk_size=chunk)
    want = _dense_clip(a, b, 5.0, same)
    torch.testing.assert_close(got, want, rtol=1e-12, atol=1e-12)
    got_g = torch.autograd.grad(got, (a, b))
    want_g = torch.autograd.grad(want, (a, b))
    for g1, g2 in zip(got_g, want_g, strict=True):
        torch.testing.assert_close(g1, g2, rtol=1e-10, atol=1e-12)
    mixed = same.clone()
    mixed[0] = 4  # two groups: masked
    torch.testing.assert_close(
        cross_modal_info_nce(a, b, 0.2, pseudo_labels=mixed, chunk_size=chunk),
        _dense_clip(a, b, 5.0, mixed),
        rtol=1e-12,
        atol=1e-12,
    )


def _dense_cacr_repulsion(z, tau_neg, beta=1.0):
    """The small-scale code's in-batch repulsion of views 0 -> 1, written out densely."""
    q, c = F.normalize(z[:, 0], dim=-1), F.normalize(z[:, 1], dim=-1)
    d = (q[:, None, :] - c[None, :, :]).pow(2).sum(-1)
    off = ~torch.eye(q.shape[0], dtype=torch.bool)
    w = torch.softmax((-tau_neg * d).masked_fill(~off, float("-inf")), dim=1)
    return (-beta * (w * d).sum(1)).mean()


@pytest.mark.parametrize("chunk", [None, 3])
def test_cct_fused_repulsion_equals_dense_reference(chunk) -> None:
    from lightly_mm_cct.loss import CCTLoss

    g = torch.Generator().manual_seed(2)
    z = torch.randn(9, 2, 5, generator=g, dtype=torch.float64, requires_grad=True)
    got = CCTLoss(tau_neg=1.3, chunk_size=chunk).terms(z)["repulsion"]
    want = _dense_cacr_repulsion(z, 1.3)
    torch.testing.assert_close(got, want, rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(
        torch.autograd.grad(got, z)[0], torch.autograd.grad(want, z)[0], rtol=1e-10, atol=1e-12
    )


_CCT_VARIANTS = [
    {},
    {"weighting": "uniform"},
    {"detach_weights": True},
    {"debiased": True},
    {"symmetric_repulsion": True},
    {"queue": True},
    {"queue": True, "detach_weights": "momentum", "mask": True, "labels": True},
    {"queue": True, "intra_batch_negatives": False},
]


@pytest.mark.parametrize("variant", _CCT_VARIANTS)
def test_cct_chunked_equals_dense_with_weights(variant) -> None:
    """``chunk_size`` vs the dense expressions (``return_weights=True`` takes them)."""
    from lightly_mm_cct.loss import CCTLoss

    variant = dict(variant)
    g = torch.Generator().manual_seed(3)
    n, k, d = 10, 3, 5
    z = torch.randn(n, k, d, generator=g, dtype=torch.float64, requires_grad=True)
    kw = {}
    if variant.pop("queue", False):
        kw["queue"] = torch.randn(7, d, generator=g, dtype=torch.float64)
        kw["keys"] = torch.randn(n, k, d, generator=g, dtype=torch.float64)
        kw["queue_mask"] = torch.rand(n, 7, generator=g) > 0.3
    if variant.pop("mask", False):
        kw["mask"] = torch.rand(n, k, generator=g) > 0.2
    if variant.pop("labels", False):
        kw["pseudo_labels"] = torch.tensor([0, 1, 0, 1, 2, 2, 0, 1, 2, 0])
    dense = CCTLoss(**variant).terms(z, return_weights=True, **kw)
    chunked = CCTLoss(chunk_size=4, **variant).terms(z, **kw)
    for name in ("loss", "repulsion", "entropy_neg"):
        torch.testing.assert_close(chunked[name], dense[name], rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(
        torch.autograd.grad(chunked["loss"], z)[0],
        torch.autograd.grad(dense["loss"], z)[0],
        rtol=1e-10,
        atol=1e-12,
    )


def _dense_mxmclr(a, b, scale, soft_weight, soft_factor, groups=None):
    """MXM-CLR's hybrid loss written out densely: every fold of an instance is a positive."""
    n, ma, _ = a.shape
    mb = b.shape[1]

    def direction(u, v, mu, mv):
        logits = (
            scale * F.normalize(u, dim=-1).flatten(0, 1) @ F.normalize(v, dim=-1).flatten(0, 1).T
        )
        inst_u = torch.arange(n).repeat_interleave(mu)
        inst_v = torch.arange(n).repeat_interleave(mv)
        pos = inst_u[:, None] == inst_v[None, :]
        if groups is not None:
            g_u, g_v = groups.repeat_interleave(mu), groups.repeat_interleave(mv)
            logits = logits.masked_fill((g_u[:, None] != g_v[None, :]) & ~pos, float("-inf"))
        log_p = torch.log_softmax(logits, dim=1)
        hard_t = pos.double() / pos.sum(1, keepdim=True)
        soft_t = torch.softmax(
            (soft_factor * logits.detach()).masked_fill(~pos, float("-inf")), dim=1
        )
        target = (1 - soft_weight) * hard_t + soft_weight * soft_t
        return -(target * log_p.masked_fill(~pos, 0.0)).sum(1).mean()

    return 0.5 * (direction(a, b, ma, mb) + direction(b, a, mb, ma))


@pytest.mark.parametrize("chunk", [None, 4])
@pytest.mark.parametrize("folds", [(3, 3), (2, 4)])
@pytest.mark.parametrize("soft", [(0.0, None), (0.5, None), (1.0, 0.3)])
@pytest.mark.parametrize("labels", [False, True])
def test_mxmclr_regular_folds_equal_dense_reference(chunk, folds, soft, labels) -> None:
    from lightly_mm_mxmclr.loss import MXMCLRLoss

    g = torch.Generator().manual_seed(5)
    n, d = 6, 5
    a = torch.randn(n, folds[0], d, generator=g, dtype=torch.float64, requires_grad=True)
    b = torch.randn(n, folds[1], d, generator=g, dtype=torch.float64, requires_grad=True)
    groups = torch.tensor([0, 1, 0, 1, 0, 1]) if labels else None
    loss_fn = MXMCLRLoss(
        temperature=0.2,
        soft_weight=soft[0],
        soft_temperature=soft[1],
        learnable_temperature=True,
        chunk_size=chunk,
    ).double()
    got = loss_fn(a, b, pseudo_labels=groups)
    scale = loss_fn.log_scale.exp()
    factor = 1.0 if soft[1] is None else 1.0 / (scale.detach() * soft[1])
    want = _dense_mxmclr(a, b, scale, soft[0], factor, groups)
    torch.testing.assert_close(got, want, rtol=1e-12, atol=1e-12)
    params = (a, b, loss_fn.log_scale)
    for g1, g2 in zip(
        torch.autograd.grad(got, params), torch.autograd.grad(want, params), strict=True
    ):
        torch.testing.assert_close(g1, g2, rtol=1e-10, atol=1e-12)
