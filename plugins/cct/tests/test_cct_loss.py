"""CCTLoss against hand computations and loop references written from the paper / official code.

References here loop over views, samples and candidates in plain Python (floats) or
per view pair with torch, the way the official ``our_loss1`` / ``our_loss2`` and the
MoCo builder do; the loss under test is the batched implementation.
"""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F
from lightly_mm_cct.loss import CCTLoss, conditional_weights

from lightly_mm_plugins.losses import same_group_mask

torch.set_num_threads(1)


# --------------------------------------------------------------------------- references


def _norm(v: list[float]) -> list[float]:
    s = math.sqrt(sum(x * x for x in v))
    return [x / s for x in v]


def _sq(a: list[float], b: list[float]) -> float:
    return sum((x - y) ** 2 for x, y in zip(a, b))


def _softmax(xs: list[float]) -> list[float]:
    top = max(xs)
    e = [math.exp(x - top) for x in xs]
    return [v / sum(e) for v in e]


def hand_cacr(
    views: list[list[list[float]]],
    tau_pos: float = 1.0,
    tau_neg: float = 0.9,
    alpha: float = 1.0,
    beta: float = 1.0,
    uniform_pos: bool = False,
    uniform_neg: bool = False,
    debiased: bool = False,
    tau_plus: float = 0.1,
    mask: list[list[bool]] | None = None,
) -> tuple[float, float]:
    """(L_CA, L_CR) with Python floats; ``views[x][i]`` is view x of sample i.

    Attraction: every query (i, x) vs its other views k != x, weights softmax(tau+ d).
    Repulsion: view pairs x < y, query z_i^x vs z_j^y (j != i), weights softmax(-tau- d).
    ``mask[i][x]`` False drops observation x of sample i; means run over valid rows.
    """
    k, n = len(views), len(views[0])
    z = [[_norm(v) for v in view] for view in views]
    ok = mask or [[True] * k for _ in range(n)]
    att_rows = []
    for x in range(k):
        for i in range(n):
            if not ok[i][x]:
                continue
            d = [_sq(z[x][i], z[v][i]) for v in range(k) if v != x and ok[i][v]]
            if not d:
                continue
            w = [1 / len(d)] * len(d) if uniform_pos else _softmax([tau_pos * c for c in d])
            att_rows.append(sum(wi * alpha * c for wi, c in zip(w, d)))
    rep_rows = []
    for x in range(k):
        for y in range(x + 1, k):
            for i in range(n):
                if not (ok[i][x] and ok[i][y]):
                    continue
                d = [_sq(z[x][i], z[y][j]) for j in range(n) if j != i and ok[j][y]]
                if not d:
                    continue
                w = [1 / len(d)] * len(d) if uniform_neg else _softmax([-tau_neg * c for c in d])
                row = sum(wi * (-beta * c) for wi, c in zip(w, d))
                if debiased:
                    row = (-tau_plus * _sq(z[x][i], z[y][i]) + row) / (1 - tau_plus)
                rep_rows.append(row)
    return sum(att_rows) / len(att_rows), sum(rep_rows) / len(rep_rows)


def official_style(
    zs: list[torch.Tensor],
    tau_pos: float,
    tau_neg: float,
    alpha: float,
    beta: float,
    detach: bool = False,
) -> tuple[torch.Tensor, torch.Tensor]:
    """The small-scale official structure: a Python loop over views / view pairs (torch)."""
    k = len(zs)
    stacked = torch.stack(zs)
    l1 = zs[0].new_zeros(())
    for x in range(k):
        others = stacked[[v for v in range(k) if v != x]]
        cost = (zs[x] - others).pow(2).sum(-1).T * alpha  # (N, K-1)
        w = torch.softmax((cost.detach() if detach else cost) * tau_pos / alpha, dim=1)
        l1 = l1 + (cost * w).sum(1).mean()
    l2, count = zs[0].new_zeros(()), 0
    for x in range(k):
        for y in range(x + 1, k):
            n = zs[x].shape[0]
            cost = -beta * (zs[x][:, None] - zs[y][None]).pow(2).sum(-1)
            cost = cost[~torch.eye(n, dtype=torch.bool)].view(n, n - 1)
            w = torch.softmax((cost.detach() if detach else cost) * tau_neg / beta, dim=1)
            l2 = l2 + (cost * w).sum(1).mean()
            count += 1
    return l1 / k, l2 / count


def moco_style(
    q: list[torch.Tensor],
    k: list[torch.Tensor],
    queue: torch.Tensor,
    tau_pos: float,
    tau_neg: float,
    alpha: float,
    beta: float,
    intra: bool = True,
    detach_intra: bool = False,
) -> tuple[torch.Tensor, torch.Tensor]:
    """The large-scale (MoCo) official structure; key / queue weights are constants."""
    views = len(q)
    stacked_k = torch.stack(k)
    l1 = q[0].new_zeros(())
    l2 = q[0].new_zeros(())
    for x in range(views):
        others = stacked_k[[v for v in range(views) if v != x]]
        cost = (q[x] - others).pow(2).sum(-1).T
        w = torch.softmax(cost.detach() * tau_pos, dim=1)
        l1 = l1 + alpha * (cost * w).sum(1).mean()
        d_cost = 2 - 2 * q[x] @ queue.T
        d_w = d_cost.detach()
        if intra:
            n = q[x].shape[0]
            db = (q[x][:, None] - q[x][None]).pow(2).sum(-1)
            db = db[~torch.eye(n, dtype=torch.bool)].view(n, n - 1)
            d_cost = torch.cat([d_cost, db], 1)
            d_w = torch.cat([d_w, db.detach() if detach_intra else db], 1)
        w2 = torch.softmax(-tau_neg * d_w, dim=1)
        l2 = l2 + beta * (-d_cost * w2).sum(1).mean()
    return l1 / views, l2 / views


def unit(*shape: int, seed: int = 0, dtype: torch.dtype = torch.float64) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return F.normalize(torch.randn(*shape, generator=g, dtype=dtype), dim=-1)


# ---------------------------------------------------- hand-computed: 3 samples, 2 views

# view 0: a0=(1,0), a1=(0,1), a2=(-1,0); view 1: b0=(0,1), b1=(0,1), b2=(0,-1)
A = [[1.0, 0.0], [0.0, 1.0], [-1.0, 0.0]]
B = [[0.0, 1.0], [0.0, 1.0], [0.0, -1.0]]


def _ab() -> torch.Tensor:
    return torch.tensor([A, B], dtype=torch.float64).transpose(0, 1)  # (3, 2, 2)


@pytest.mark.parametrize("tau_neg", [0.9, 2.0])
@pytest.mark.parametrize("beta", [1.0, 0.5])
def test_hand_computed_3_samples_2_views(tau_neg, beta):
    # Positive distances d(a_i, b_i) = 2, 0, 2; each query has one positive (weight 1):
    # L_CA = alpha * (2 + 0 + 2) / 3 for both directions.
    # Repulsion, pair (0, 1): a0 -> {b1: 2, b2: 2} -> -2 beta; a2 -> {b0: 2, b1: 2} -> -2 beta;
    # a1 -> {b0: 0, b2: 4}: weight of b2 = 1 / (1 + e^{4 tau-}) -> -4 beta / (1 + e^{4 tau-}).
    alpha = 0.7
    sigma = 1.0 / (1.0 + math.exp(4 * tau_neg))
    want_ca = alpha * 4 / 3
    want_cr = -beta * (2 + 2 + 4 * sigma) / 3
    t = CCTLoss(tau_pos=1.0, tau_neg=tau_neg, alpha=alpha, beta=beta).terms(_ab())
    assert t["attraction"].item() == pytest.approx(want_ca, rel=1e-12)
    assert t["repulsion"].item() == pytest.approx(want_cr, rel=1e-12)
    assert t["loss"].item() == pytest.approx(want_ca + want_cr, rel=1e-12)
    ref = hand_cacr([A, B], tau_neg=tau_neg, alpha=alpha, beta=beta)
    assert (t["attraction"].item(), t["repulsion"].item()) == pytest.approx(ref, rel=1e-12)


def test_hand_computed_uniform_and_debiased():
    z = _ab()
    uni = CCTLoss(weighting="uniform").terms(z)
    # uniform: a1 row = -(0 + 4) / 2 = -2, so every row is -2.
    assert uni["repulsion"].item() == pytest.approx(-2.0, rel=1e-12)
    assert uni["attraction"].item() == pytest.approx(4 / 3, rel=1e-12)
    tp, tau = 0.1, 0.9
    sigma = 1.0 / (1.0 + math.exp(4 * tau))
    rows = [-2.0, -4 * sigma, -2.0]
    own = [2.0, 0.0, 2.0]
    want = sum((-tp * o + r) / (1 - tp) for o, r in zip(own, rows)) / 3
    deb = CCTLoss(tau_neg=tau, debiased=True, tau_plus=tp).terms(z)
    assert deb["repulsion"].item() == pytest.approx(want, rel=1e-12)
    assert deb["attraction"].item() == pytest.approx(4 / 3, rel=1e-12)


# ------------------------------------------------------- loop references, K >= 2 views


@pytest.mark.parametrize("k", [2, 3, 5])
@pytest.mark.parametrize(
    "weighting,uni_pos,uni_neg",
    [
        ("cacr", False, False),
        ("uniform", True, True),
        ("uniform_attraction", True, False),
        ("uniform_repulsion", False, True),
    ],
)
def test_matches_python_reference(k, weighting, uni_pos, uni_neg):
    z = unit(5, k, 4, seed=k)
    kw = dict(tau_pos=1.3, tau_neg=2.0, alpha=0.8, beta=1.5)
    t = CCTLoss(weighting=weighting, **kw).terms(z)
    views = [z[:, x].tolist() for x in range(k)]
    ca, cr = hand_cacr(views, uniform_pos=uni_pos, uniform_neg=uni_neg, **kw)
    assert t["attraction"].item() == pytest.approx(ca, rel=1e-10)
    assert t["repulsion"].item() == pytest.approx(cr, rel=1e-10)


@pytest.mark.parametrize("k", [2, 4])
def test_debiased_matches_its_formula(k):
    z = unit(6, k, 3, seed=10 + k)
    t = CCTLoss(tau_neg=1.0, debiased=True, tau_plus=0.2).terms(z)
    _, cr = hand_cacr(
        [z[:, x].tolist() for x in range(k)], tau_neg=1.0, debiased=True, tau_plus=0.2
    )
    assert t["repulsion"].item() == pytest.approx(cr, rel=1e-10)
    plain = CCTLoss(tau_neg=1.0).terms(z)["repulsion"]
    assert t["repulsion"].item() != pytest.approx(plain.item())


@pytest.mark.parametrize("detach", [False, True])
def test_official_loop_structure_values_and_gradients(detach):
    k, n = 5, 7
    base = unit(n, k, 6, seed=3)
    kw = dict(tau_pos=1.0, tau_neg=0.9, alpha=1.0, beta=1.0)
    z1 = base.clone().requires_grad_(True)
    z2 = base.clone().requires_grad_(True)
    t = CCTLoss(detach_weights=detach, normalize=False, **kw).terms(z1)
    l1, l2 = official_style([z2[:, x] for x in range(k)], detach=detach, **kw)
    assert t["attraction"].item() == pytest.approx(l1.item(), rel=1e-10)
    assert t["repulsion"].item() == pytest.approx(l2.item(), rel=1e-10)
    t["loss"].backward()
    (l1 + l2).backward()
    torch.testing.assert_close(z1.grad, z2.grad, rtol=1e-9, atol=1e-12)


def test_detaching_keeps_the_value_but_changes_the_gradient():
    base = unit(6, 3, 5, seed=4)
    grads, values = [], []
    for detach in (False, True):
        z = base.clone().requires_grad_(True)
        loss = CCTLoss(detach_weights=detach)(z)
        loss.backward()
        grads.append(z.grad)
        values.append(loss.item())
    assert values[0] == pytest.approx(values[1], rel=1e-12)
    assert not torch.allclose(grads[0], grads[1])


@pytest.mark.parametrize("debiased", [False, True])
def test_gradcheck_through_the_weights(debiased):
    # With detach_weights=False the loss is a smooth function of the embeddings whose
    # full derivative (weights included) is what autograd returns. (Detached weights are
    # checked against the loop references above instead: there the analytic gradient is
    # by design not the derivative of the value.)
    z = unit(4, 3, 3, seed=5).requires_grad_(True)
    keys = unit(4, 3, 3, seed=6)
    queue = unit(5, 3, seed=7)
    loss = CCTLoss(tau_neg=2.0, debiased=debiased)
    assert torch.autograd.gradcheck(lambda x: loss(x), (z,))
    assert torch.autograd.gradcheck(lambda x: loss(x, keys=keys), (z,))
    if not debiased:
        assert torch.autograd.gradcheck(lambda x: loss(x, keys=keys, queue=queue), (z,))


# ------------------------------------------------------------------ MoCo / queue variant


@pytest.mark.parametrize("intra", [True, False])
@pytest.mark.parametrize("detach", ["momentum", True])
def test_queue_variant_matches_official_moco_structure(intra, detach):
    # The official builder normalises the encoder outputs (q = F.normalize(encoder(im)))
    # and uses 2 - 2 q.u for the queue; gradients are compared w.r.t. the raw outputs.
    k, n, q = 3, 5, 7
    g = torch.Generator().manual_seed(8)
    base = torch.randn(n, k, 4, generator=g, dtype=torch.float64) * 2.0
    keys = unit(n, k, 4, seed=9)
    queue = unit(q, 4, seed=10)
    kw = dict(tau_pos=1.0, tau_neg=2.0, alpha=1.5, beta=0.5)
    z1 = base.clone().requires_grad_(True)
    z2 = base.clone().requires_grad_(True)
    loss = CCTLoss(detach_weights=detach, intra_batch_negatives=intra, **kw)
    t = loss.terms(z1, keys=keys, queue=queue)
    l1, l2 = moco_style(
        [F.normalize(z2[:, x], dim=-1) for x in range(k)],
        [keys[:, x] for x in range(k)],
        queue,
        intra=intra,
        detach_intra=detach is True,
        **kw,
    )
    assert t["attraction"].item() == pytest.approx(l1.item(), rel=1e-10)
    assert t["repulsion"].item() == pytest.approx(l2.item(), rel=1e-10)
    t["loss"].backward()
    (l1 + l2).backward()
    torch.testing.assert_close(z1.grad, z2.grad, rtol=1e-9, atol=1e-12)


def test_queue_mask_removes_exactly_those_negatives():
    z = unit(4, 2, 3, seed=11)
    queue = unit(6, 3, seed=12)
    keep = torch.tensor([True, False, True, True, False, True])
    loss = CCTLoss(intra_batch_negatives=False, detach_weights="momentum")
    masked = loss.terms(z, queue=queue, queue_mask=keep)
    sub = loss.terms(z, queue=queue[keep])
    assert masked["repulsion"].item() == pytest.approx(sub["repulsion"].item(), rel=1e-12)
    per_row = keep.expand(4, 6).clone()
    assert loss.terms(z, queue=queue, queue_mask=per_row)["loss"].item() == pytest.approx(
        masked["loss"].item(), rel=1e-12
    )


# ------------------------------------------------------------------ weights, entropies


def test_farther_positive_and_closer_negative_get_larger_weights():
    # Sample 0: view 0 = e1, view 1 close to e1, view 2 far from e1.
    z = torch.zeros(3, 3, 3, dtype=torch.float64)
    z[0, 0] = torch.tensor([1.0, 0.0, 0.0])
    z[0, 1] = torch.tensor([0.9, 0.1, 0.0])
    z[0, 2] = torch.tensor([0.0, 1.0, 0.0])
    # Candidates for query z[0, 0] in pair (0, 1): z[1, 1] close, z[2, 1] far.
    z[1] = torch.tensor([0.8, 0.0, 0.2])
    z[2] = torch.tensor([-1.0, 0.0, 0.5])
    z = F.normalize(z, dim=-1)
    t = CCTLoss(tau_pos=1.0, tau_neg=1.0).terms(z, return_weights=True)
    w_pos = t["weights_pos"][0, 0]  # query view 0 of sample 0 over views (0, 1, 2)
    assert w_pos[0] == 0.0
    assert w_pos[2] > w_pos[1] > 0.0
    assert w_pos.sum().item() == pytest.approx(1.0)
    pairs = t["pairs"]
    p = int(((pairs[0] == 0) & (pairs[1] == 1)).nonzero())
    w_neg = t["weights_neg"][p, 0]  # query z[0, 0], candidates z[j, 1]
    assert w_neg[0] == 0.0  # the sample itself is not a negative
    assert w_neg[1] > w_neg[2] > 0.0
    # The weights are the softmaxes of the scaled distances.
    d = ((z[0, 0] - z[:, 1]) ** 2).sum(-1)
    torch.testing.assert_close(w_neg[1:], torch.softmax(-1.0 * d[1:], 0))


def test_uniform_weights_reduce_to_mean_costs_and_max_entropy():
    n, k = 6, 4
    z = unit(n, k, 5, seed=13)
    alpha, beta = 1.7, 0.6
    t = CCTLoss(weighting="uniform", alpha=alpha, beta=beta).terms(z)
    d_in = ((z[:, :, None] - z[:, None]) ** 2).sum(-1)  # (N, K, K)
    off = ~torch.eye(k, dtype=torch.bool)
    assert t["attraction"].item() == pytest.approx(alpha * d_in[:, off].mean().item(), rel=1e-12)
    costs = []
    for x in range(k):
        for y in range(x + 1, k):
            d = ((z[:, x][:, None] - z[:, y][None]) ** 2).sum(-1)
            costs.append(d[~torch.eye(n, dtype=torch.bool)])
    assert t["repulsion"].item() == pytest.approx(-beta * torch.cat(costs).mean().item(), rel=1e-12)
    assert t["entropy_pos"].item() == pytest.approx(math.log(k - 1), rel=1e-12)
    assert t["entropy_neg"].item() == pytest.approx(math.log(n - 1), rel=1e-12)
    # tau = 0 is the same as uniform weights.
    t0 = CCTLoss(tau_pos=0.0, tau_neg=0.0, alpha=alpha, beta=beta).terms(z)
    assert t0["loss"].item() == pytest.approx(t["loss"].item(), rel=1e-12)
    cacr = CCTLoss(tau_pos=3.0, tau_neg=3.0).terms(z)
    assert cacr["entropy_pos"] < t["entropy_pos"] and cacr["entropy_neg"] < t["entropy_neg"]


def test_conditional_weights_rows_without_candidates_are_zero():
    logits = torch.tensor([[1.0, 2.0], [3.0, 4.0]], requires_grad=True)
    valid = torch.tensor([[True, False], [False, False]])
    w = conditional_weights(logits, valid)
    assert w.tolist() == [[1.0, 0.0], [0.0, 0.0]]
    w.sum().backward()
    assert torch.isfinite(logits.grad).all()


# -------------------------------------------------------------- masks, groups, symmetry


def test_mask_matches_reference_and_ignores_padding():
    n, k = 5, 3
    z = unit(n, k, 4, seed=14)
    mask = torch.ones(n, k, dtype=torch.bool)
    mask[0, 2] = False
    mask[3, 1] = False
    padded = z.clone()
    padded[0, 2] = 123.0
    padded[3, 1] = -7.0
    t = CCTLoss().terms(padded, mask=mask)
    ca, cr = hand_cacr([z[:, x].tolist() for x in range(k)], mask=mask.tolist())
    assert t["attraction"].item() == pytest.approx(ca, rel=1e-10)
    assert t["repulsion"].item() == pytest.approx(cr, rel=1e-10)
    # A view padded for every sample is the same as not having it.
    mask_all = torch.ones(n, k, dtype=torch.bool)
    mask_all[:, 2] = False
    dropped = CCTLoss().terms(z, mask=mask_all)
    two = CCTLoss().terms(z[:, :2])
    assert dropped["loss"].item() == pytest.approx(two["loss"].item(), rel=1e-12)


def test_pseudo_labels_restrict_negatives_to_the_group():
    n, k = 7, 3
    z = unit(n, k, 4, seed=15)
    groups = torch.tensor([0, 1, 0, 1, 1, 0, 0])
    loss = CCTLoss(tau_neg=2.0)
    t = loss.terms(z, pseudo_labels=groups)
    total = 0.0
    for g in (0, 1):
        idx = (groups == g).nonzero().flatten()
        total += loss.terms(z[idx])["repulsion"].item() * len(idx)
    assert t["repulsion"].item() == pytest.approx(total / n, rel=1e-10)
    assert t["attraction"].item() == pytest.approx(loss.terms(z)["attraction"].item(), rel=1e-12)
    w = loss.terms(z, pseudo_labels=groups, return_weights=True)["weights_neg"]
    other = ~same_group_mask(groups, groups)
    assert (w[:, other] == 0).all()


def test_symmetric_repulsion_averages_both_directions():
    z = unit(5, 2, 3, seed=16)
    sym = CCTLoss(symmetric_repulsion=True).terms(z)["repulsion"]
    fwd = CCTLoss().terms(z)["repulsion"]
    bwd = CCTLoss().terms(z.flip(1))["repulsion"]
    assert sym.item() == pytest.approx(0.5 * (fwd + bwd).item(), rel=1e-12)
    assert fwd.item() != pytest.approx(bwd.item())


def test_invariances_and_list_input():
    z = unit(6, 3, 4, seed=17)
    loss = CCTLoss()
    ref = loss(z).item()
    rot, _ = torch.linalg.qr(torch.randn(4, 4, dtype=torch.float64))
    assert loss(z @ rot).item() == pytest.approx(ref, rel=1e-10)
    assert loss(z[torch.randperm(6)]).item() == pytest.approx(ref, rel=1e-10)
    assert loss(3.0 * z).item() == pytest.approx(ref, rel=1e-10)  # normalised inside
    assert loss([z[:, 0], z[:, 1], z[:, 2]]).item() == pytest.approx(ref, rel=1e-12)


def test_bad_input_is_rejected_with_a_clear_message():
    z = unit(4, 2, 3)
    with pytest.raises(ValueError, match="K >= 2"):
        CCTLoss()(z[:, :1])
    with pytest.raises(ValueError, match="at least 2 samples"):
        CCTLoss()(z[:1])
    with pytest.raises(ValueError, match=r"\(N, K, D\)"):
        CCTLoss()(z[:, 0])
    with pytest.raises(ValueError, match="keys"):
        CCTLoss()(z, keys=unit(4, 3, 3))
    with pytest.raises(ValueError, match="debiased"):
        CCTLoss(debiased=True)(z, queue=unit(5, 3))
    with pytest.raises(ValueError, match="queue"):
        CCTLoss()(z, queue=unit(5, 4))
    with pytest.raises(ValueError, match="mask"):
        CCTLoss()(z, mask=torch.ones(4, 3, dtype=torch.bool))
    for kwargs, word in [
        ({"weighting": "none"}, "weighting"),
        ({"detach_weights": "queue"}, "detach_weights"),
        ({"tau_plus": 1.0}, "tau_plus"),
        ({"tau_neg": -1.0}, "tau_neg"),
        ({"tau_pos": float("nan")}, "tau_pos"),
    ]:
        with pytest.raises(ValueError, match=word):
            CCTLoss(**kwargs)
