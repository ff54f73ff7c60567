"""MXMCLRLoss against hand-computed values, a loop reference, InfoNCE limits and invariances."""

from __future__ import annotations

import math

import pytest
import torch
from lightly_mm_mxmclr.loss import MXMCLRLoss

from lightly_mm_plugins.losses import cross_modal_info_nce

torch.set_num_threads(1)

E = math.e


def reference(
    a: list[list[list[float]]],
    b: list[list[list[float]]],
    tau: float,
    lam: float,
    *,
    mask_a: list[list[bool]] | None = None,
    mask_b: list[list[bool]] | None = None,
    ids: list[int] | None = None,
    groups: list[int] | None = None,
    tau_s: float | None = None,
) -> float:
    """The hybrid loss written out with Python floats and loops, straight from the formula."""
    n = len(a)
    ids = ids if ids is not None else list(range(n))

    def norm(v: list[float]) -> list[float]:
        s = math.sqrt(sum(x * x for x in v))
        return [x / s for x in v] if s > 0 else v

    def rows(x, mask):
        out = []
        for i, inst in enumerate(x):
            for k, v in enumerate(inst):
                valid = True if mask is None else mask[i][k]
                g = None if groups is None else groups[i]
                out.append((norm(v), ids[i], valid, g))
        return out

    def dot(u, v):
        return sum(x * y for x, y in zip(u, v))

    def direction(queries, keys):
        total, count = 0.0, 0
        for u, iq, valid, gq in queries:
            if not valid:
                continue
            pos = [j for j, (_, ik, vk, _) in enumerate(keys) if vk and ik == iq]
            if not pos:
                continue
            support = [
                j
                for j, (_, _, vk, gk) in enumerate(keys)
                if vk and (groups is None or gk == gq or j in pos)
            ]
            s = {j: dot(u, keys[j][0]) / tau for j in support}
            lse = math.log(sum(math.exp(s[j]) for j in support))
            logp = {j: s[j] - lse for j in support}
            hard = -sum(logp[j] for j in pos) / len(pos)
            ts = tau if tau_s is None else tau_s
            w = {j: math.exp(dot(u, keys[j][0]) / ts) for j in pos}
            z = sum(w.values())
            soft = -sum(w[j] / z * logp[j] for j in pos)
            total += (1 - lam) * hard + lam * soft
            count += 1
        return total / count

    ra, rb = rows(a, mask_a), rows(b, mask_b)
    return 0.5 * (direction(ra, rb) + direction(rb, ra))


def t(x) -> torch.Tensor:
    return torch.tensor(x, dtype=torch.float64)


E1, E2 = [1.0, 0.0], [0.0, 1.0]


@pytest.mark.parametrize("lam", [0.0, 0.3, 1.0])
def test_hand_computed_two_instances_two_folds(lam):
    # Instance 0: A folds (e1, e2), B folds (e1, e2); instance 1: all folds e2. tau = 1.
    # Anchor e1 of instance 0 sees logits (1, 0, 0, 0), positives the first two:
    #   hard = log(e+3) - 1/2, soft (weights e/(1+e), 1/(1+e)) = log(e+3) - e/(1+e).
    # Anchor e2 of instance 0 sees (0, 1, 1, 1), positives (0, 1):
    #   hard = log(1+3e) - 1/2, soft = log(1+3e) - e/(1+e).
    # Anchors of instance 1 see (0, 1, 1, 1), positives (1, 1): hard = soft = log(1+3e) - 1.
    # The case is symmetric, so B->A equals A->B and L = A->B.
    a = [[E1, E2], [E2, E2]]
    b = [[E1, E2], [E2, E2]]
    hard0 = math.log(E + 3) - 0.5
    soft0 = math.log(E + 3) - E / (1 + E)
    hard1 = math.log(1 + 3 * E) - 0.5
    soft1 = math.log(1 + 3 * E) - E / (1 + E)
    other = math.log(1 + 3 * E) - 1
    expected = ((1 - lam) * (hard0 + hard1) + lam * (soft0 + soft1) + 2 * other) / 4
    got = MXMCLRLoss(temperature=1.0, soft_weight=lam)(t(a), t(b)).item()
    assert got == pytest.approx(expected, rel=1e-12)
    assert got == pytest.approx(reference(a, b, 1.0, lam), rel=1e-12)


def test_hand_computed_uneven_folds():
    # A: one fold per instance (e1 | e2); B: (e1, e2) | (e2, e2). tau = 1, lambda = 1/2.
    # A->B: anchor e1: hard log(e+3) - 1/2, soft log(e+3) - e/(e+1); anchor e2: log(1+3e) - 1.
    # B->A: b=e1 of inst 0: log(1+e) - 1; b=e2 of inst 0: log(1+e); inst 1: 2 x (log(1+e) - 1).
    a = [[E1], [E2]]
    b = [[E1, E2], [E2, E2]]
    ab = 0.5 * (
        0.5 * (math.log(E + 3) - 0.5)
        + 0.5 * (math.log(E + 3) - E / (E + 1))
        + math.log(1 + 3 * E)
        - 1
    )
    ba = math.log(1 + E) - 0.75
    got = MXMCLRLoss(temperature=1.0, soft_weight=0.5)(t(a), t(b)).item()
    assert got == pytest.approx(0.5 * (ab + ba), rel=1e-12)


@pytest.mark.parametrize("tau,lam,tau_s", [(0.1, 0.5, None), (0.5, 0.2, 0.3), (1.0, 1.0, 2.0)])
def test_matches_loop_reference_with_padding_and_groups(tau, lam, tau_s):
    g = torch.Generator().manual_seed(0)
    a = torch.randn(4, 2, 3, generator=g, dtype=torch.float64)
    b = torch.randn(4, 3, 3, generator=g, dtype=torch.float64)
    mask_a = torch.tensor([[1, 1], [1, 0], [1, 1], [1, 1]]).bool()
    mask_b = torch.tensor([[1, 1, 1], [1, 0, 0], [1, 1, 0], [1, 0, 1]]).bool()
    ids = torch.tensor([10, 3, 7, 5])
    groups = torch.tensor([0, 1, 0, 0])
    loss_fn = MXMCLRLoss(temperature=tau, soft_weight=lam, soft_temperature=tau_s)
    got = loss_fn(a, b, mask_a, mask_b, instance_ids=ids, pseudo_labels=groups).item()
    ref = reference(
        a.tolist(),
        b.tolist(),
        tau,
        lam,
        mask_a=mask_a.tolist(),
        mask_b=mask_b.tolist(),
        ids=ids.tolist(),
        groups=groups.tolist(),
        tau_s=tau_s,
    )
    assert got == pytest.approx(ref, rel=1e-10)


@pytest.mark.parametrize("lam", [0.0, 0.5, 1.0])
def test_one_fold_is_clip_infonce(lam):
    g = torch.Generator().manual_seed(1)
    a, b = torch.randn(6, 5, generator=g), torch.randn(6, 5, generator=g)
    expected = cross_modal_info_nce(a, b, temperature=0.2)
    got = MXMCLRLoss(temperature=0.2, soft_weight=lam)(a.unsqueeze(1), b.unsqueeze(1))
    torch.testing.assert_close(got, expected, rtol=1e-6, atol=1e-7)
    # With pseudo labels it is CLIP with restricted negatives too.
    groups = torch.tensor([0, 1, 1, 0, 1, 0])
    expected = cross_modal_info_nce(a, b, temperature=0.2, pseudo_labels=groups)
    got = MXMCLRLoss(temperature=0.2, soft_weight=lam)(a, b, pseudo_labels=groups)
    torch.testing.assert_close(got, expected, rtol=1e-6, atol=1e-7)


def test_identical_folds_add_log_m_to_infonce():
    # M identical copies of every observation: every positive gets 1/M of CLIP's
    # probability, the soft target is uniform (= hard), so L = InfoNCE + log M.
    g = torch.Generator().manual_seed(2)
    a, b = torch.randn(5, 4, generator=g), torch.randn(5, 4, generator=g)
    m = 3
    a_m, b_m = a.unsqueeze(1).expand(5, m, 4), b.unsqueeze(1).expand(5, m, 4)
    for lam in (0.0, 0.7):
        got = MXMCLRLoss(temperature=0.3, soft_weight=lam)(a_m, b_m)
        expected = cross_modal_info_nce(a, b, temperature=0.3) + math.log(m)
        torch.testing.assert_close(got, expected, rtol=1e-6, atol=1e-6)


def _random_case(seed: int = 3):
    g = torch.Generator().manual_seed(seed)
    a = torch.randn(5, 2, 4, generator=g, dtype=torch.float64)
    b = torch.randn(5, 4, 4, generator=g, dtype=torch.float64)
    mask_a = torch.ones(5, 2, dtype=torch.bool)
    mask_a[1, 1] = False
    mask_b = torch.tensor(
        [[1, 1, 1, 1], [1, 0, 0, 0], [1, 1, 0, 0], [1, 1, 1, 0], [1, 0, 1, 1]]
    ).bool()
    ids = torch.tensor([4, 0, 9, 2, 6])
    groups = torch.tensor([1, 0, 1, 1, 0])
    return a, b, mask_a, mask_b, ids, groups


def test_invariant_to_permuting_instances():
    a, b, ma, mb, ids, groups = _random_case()
    loss_fn = MXMCLRLoss(temperature=0.2, soft_weight=0.4)
    base = loss_fn(a, b, ma, mb, ids, groups)
    perm = torch.tensor([3, 0, 4, 2, 1])
    permuted = loss_fn(a[perm], b[perm], ma[perm], mb[perm], ids[perm], groups[perm])
    torch.testing.assert_close(permuted, base, rtol=1e-12, atol=1e-12)


def test_invariant_to_permuting_folds_inside_each_instance():
    a, b, ma, mb, ids, groups = _random_case()
    loss_fn = MXMCLRLoss(temperature=0.2, soft_weight=0.4)
    base = loss_fn(a, b, ma, mb, ids, groups)
    g = torch.Generator().manual_seed(5)
    pa = torch.stack([torch.randperm(2, generator=g) for _ in range(5)])  # per instance
    pb = torch.stack([torch.randperm(4, generator=g) for _ in range(5)])
    a2 = a.gather(1, pa[..., None].expand(-1, -1, 4))
    b2 = b.gather(1, pb[..., None].expand(-1, -1, 4))
    permuted = loss_fn(a2, b2, ma.gather(1, pa), mb.gather(1, pb), ids, groups)
    torch.testing.assert_close(permuted, base, rtol=1e-12, atol=1e-12)


def test_padded_folds_contribute_nothing():
    a, b, ma, mb, ids, groups = _random_case()
    loss_fn = MXMCLRLoss(temperature=0.2, soft_weight=0.6)
    base = loss_fn(a, b, ma, mb, ids, groups)
    # Garbage in the padded slots, plus two extra all-padding folds.
    a2, b2 = a.clone(), b.clone()
    a2[~ma] = 50.0
    b2[~mb] = -7.0
    b3 = torch.cat([b2, torch.randn(5, 2, 4, dtype=torch.float64)], dim=1)
    mb3 = torch.cat([mb, torch.zeros(5, 2, dtype=torch.bool)], dim=1)
    a2.requires_grad_(True)
    b3.requires_grad_(True)
    padded = loss_fn(a2, b3, ma, mb3, ids, groups)
    torch.testing.assert_close(padded, base, rtol=1e-12, atol=1e-12)
    padded.backward()
    assert torch.all(a2.grad[~ma] == 0)
    assert torch.all(b3.grad[~mb3] == 0)
    assert b3.grad[mb3].abs().sum() > 0


def test_duplicated_ids_are_one_instance():
    # Two rows with the same instance id behave exactly like one instance holding
    # the union of their folds (what happens when one id sits on two ranks).
    g = torch.Generator().manual_seed(6)
    a = torch.randn(3, 2, 4, generator=g, dtype=torch.float64)
    b = torch.randn(3, 2, 4, generator=g, dtype=torch.float64)
    loss_fn = MXMCLRLoss(temperature=0.5, soft_weight=0.5)
    merged = loss_fn(a, b, instance_ids=torch.tensor([0, 1, 2]))
    # Split instance 0 into two rows of one fold each, both with id 0.
    a_split = torch.stack([a[0, :1], a[0, 1:], a[1, :1], a[1, 1:], a[2, :1], a[2, 1:]])
    b_split = torch.stack([b[0, :1], b[0, 1:], b[1, :1], b[1, 1:], b[2, :1], b[2, 1:]])
    split = loss_fn(a_split, b_split, instance_ids=torch.tensor([0, 0, 1, 1, 2, 2]))
    torch.testing.assert_close(split, merged, rtol=1e-12, atol=1e-12)


def test_gradcheck_float64_hard_term():
    # The hard term has no stop-gradient: finite differences must match exactly.
    a, b, ma, mb, ids, groups = _random_case(7)
    a = a[:3, :, :3].clone().requires_grad_(True)
    b = b[:3, :3, :3].clone().requires_grad_(True)
    ma, mb, ids, groups = ma[:3], mb[:3, :3], ids[:3], groups[:3]
    loss_fn = MXMCLRLoss(temperature=0.3, soft_weight=0.0)
    assert torch.autograd.gradcheck(lambda x, y: loss_fn(x, y, ma, mb, ids, groups), (a, b))


def test_soft_targets_are_constants_of_the_gradient():
    # The soft targets carry no gradient: the loss's gradient is the finite-difference
    # gradient of the same cross-entropy with the targets frozen at the current point.
    g = torch.Generator().manual_seed(11)
    a0 = torch.randn(3, 2, 3, generator=g, dtype=torch.float64)
    b0 = torch.randn(3, 2, 3, generator=g, dtype=torch.float64)
    tau, tau_s = 0.3, 0.4
    ids = torch.arange(3).repeat_interleave(2)
    pos = ids[:, None] == ids[None, :]

    def frozen(x, y):
        ux = torch.nn.functional.normalize(x, dim=-1).reshape(6, 3)
        uy = torch.nn.functional.normalize(y, dim=-1).reshape(6, 3)
        tx = torch.nn.functional.normalize(a0, dim=-1).reshape(6, 3)
        ty = torch.nn.functional.normalize(b0, dim=-1).reshape(6, 3)
        total = 0.0
        for q, k, tq, tk in ((ux, uy, tx, ty), (uy, ux, ty, tx)):
            logp = torch.log_softmax(q @ k.T / tau, dim=1)
            w = torch.softmax((tq @ tk.T / tau_s).masked_fill(~pos, float("-inf")), dim=1)
            total = total + 0.5 * (-(w * logp.masked_fill(~pos, 0)).sum(1).mean())
        return total

    a = a0.clone().requires_grad_(True)
    b = b0.clone().requires_grad_(True)
    MXMCLRLoss(temperature=tau, soft_weight=1.0, soft_temperature=tau_s)(a, b).backward()
    assert torch.autograd.gradcheck(frozen, (a0.clone().requires_grad_(True), b0.clone()))
    x, y = a0.clone().requires_grad_(True), b0.clone().requires_grad_(True)
    frozen(x, y).backward()
    torch.testing.assert_close(a.grad, x.grad, rtol=1e-10, atol=1e-12)
    torch.testing.assert_close(b.grad, y.grad, rtol=1e-10, atol=1e-12)


def test_soft_term_has_the_gradient_of_mil_nce():
    # With tau_s = tau the soft target is the model's own detached softmax over the
    # positives, so d L_soft = d [-log sum_{q in P(p)} softmax(s_p)_q] (MIL-NCE).
    a, b, ma, mb, ids, _ = _random_case(8)
    a.requires_grad_(True)
    b.requires_grad_(True)
    MXMCLRLoss(temperature=0.25, soft_weight=1.0)(a, b, ma, mb, ids).backward()
    ga, gb = a.grad.clone(), b.grad.clone()

    a2, b2 = a.detach().clone().requires_grad_(True), b.detach().clone().requires_grad_(True)
    ua = torch.nn.functional.normalize(a2, dim=-1).reshape(-1, 4)
    ub = torch.nn.functional.normalize(b2, dim=-1).reshape(-1, 4)
    va, vb = ma.reshape(-1), mb.reshape(-1)
    ida, idb = ids.repeat_interleave(2), ids.repeat_interleave(4)

    def mil_nce(q, k, vq, vk, iq, ik):
        logits = (q @ k.T / 0.25).masked_fill(~vk[None, :], float("-inf"))
        pos = (iq[:, None] == ik[None, :]) & vk[None, :]
        num = torch.logsumexp(logits.masked_fill(~pos, float("-inf")), dim=1)
        per = torch.logsumexp(logits, dim=1) - num
        return per[vq].mean()

    (0.5 * (mil_nce(ua, ub, va, vb, ida, idb) + mil_nce(ub, ua, vb, va, idb, ida))).backward()
    torch.testing.assert_close(ga, a2.grad, rtol=1e-9, atol=1e-12)
    torch.testing.assert_close(gb, b2.grad, rtol=1e-9, atol=1e-12)


def test_terms_combine_linearly_and_soft_weight_matters():
    a, b, ma, mb, ids, groups = _random_case(9)
    terms = MXMCLRLoss(temperature=0.2, soft_weight=0.3).terms(a, b, ma, mb, ids, groups)
    torch.testing.assert_close(terms.loss, 0.7 * terms.hard + 0.3 * terms.soft)
    hard = MXMCLRLoss(temperature=0.2, soft_weight=0.0)(a, b, ma, mb, ids, groups)
    soft = MXMCLRLoss(temperature=0.2, soft_weight=1.0)(a, b, ma, mb, ids, groups)
    torch.testing.assert_close(hard, terms.hard)
    torch.testing.assert_close(soft, terms.soft)
    assert abs(hard.item() - soft.item()) > 1e-3


def test_pseudo_labels_restrict_negatives_exactly():
    # Per group, the loss on the group alone; anchors average over the whole batch.
    a, b, ma, mb, ids, groups = _random_case(10)
    loss_fn = MXMCLRLoss(temperature=0.2, soft_weight=0.5)
    masked = loss_fn(a, b, ma, mb, ids, groups).item()
    ref = reference(
        a.tolist(),
        b.tolist(),
        0.2,
        0.5,
        mask_a=ma.tolist(),
        mask_b=mb.tolist(),
        ids=ids.tolist(),
        groups=groups.tolist(),
    )
    assert masked == pytest.approx(ref, rel=1e-10)
    assert masked != pytest.approx(loss_fn(a, b, ma, mb, ids).item(), rel=1e-3)


def test_learnable_temperature_gets_gradient_and_is_clamped():
    loss_fn = MXMCLRLoss(temperature=0.07, learnable_temperature=True)
    a, b = torch.randn(4, 2, 3), torch.randn(4, 3, 3)
    loss_fn(a, b).backward()
    assert loss_fn.log_scale.grad is not None and loss_fn.log_scale.grad.abs() > 0
    assert loss_fn.temperature == pytest.approx(0.07, rel=1e-5)
    # a temperature below CLIP's cap 1/100 is an error, not silently raised to 0.01
    with pytest.raises(ValueError, match=r"temperature >= 0\.01"):
        MXMCLRLoss(temperature=0.001)


def test_bad_input_is_a_clear_error():
    for bad in (0.0, -1.0, float("nan")):
        with pytest.raises(ValueError, match="temperature"):
            MXMCLRLoss(temperature=bad)
        with pytest.raises(ValueError, match="soft_temperature"):
            MXMCLRLoss(soft_temperature=bad)
    for bad in (-0.1, 1.5):
        with pytest.raises(ValueError, match="soft_weight"):
            MXMCLRLoss(soft_weight=bad)
    loss_fn = MXMCLRLoss()
    a, b = torch.randn(3, 2, 4), torch.randn(3, 2, 4)
    with pytest.raises(ValueError, match="same number of instances"):
        loss_fn(a, torch.randn(4, 2, 4))
    with pytest.raises(ValueError, match="features D"):
        loss_fn(a, torch.randn(3, 2, 5))
    with pytest.raises(ValueError, match=r"\(N, M, D\)"):
        loss_fn(torch.randn(3, 2, 2, 4), b)
    with pytest.raises(ValueError, match="mask_b must have shape"):
        loss_fn(a, b, mask_b=torch.ones(3, 3, dtype=torch.bool))
    with pytest.raises(ValueError, match="bool"):
        loss_fn(a, b, mask_a=torch.ones(3, 2))
    with pytest.raises(ValueError, match="instance_ids"):
        loss_fn(a, b, instance_ids=torch.arange(4))
    with pytest.raises(ValueError, match="pseudo_labels"):
        loss_fn(a, b, pseudo_labels=torch.zeros(2, dtype=torch.long))
    with pytest.raises(ValueError, match="at least one unmasked fold"):
        loss_fn(a, b, mask_b=torch.zeros(3, 2, dtype=torch.bool))


# ------------------------------------------------------------ chunked (streaming)


@pytest.mark.parametrize("chunk", [1, 3, 7, 64])
@pytest.mark.parametrize("tau_s,learn", [(None, False), (0.4, True)])
def test_chunked_equals_dense_with_padding_groups_and_duplicate_ids(chunk, tau_s, learn):
    a, b, ma, mb, ids, groups = _random_case(8)
    ids = torch.tensor([4, 0, 9, 4, 6])  # instances 0 and 3 share an id
    a.requires_grad_(True)
    b.requires_grad_(True)
    dense_fn = MXMCLRLoss(0.2, 0.4, soft_temperature=tau_s, learnable_temperature=learn)
    chunk_fn = MXMCLRLoss(
        0.2, 0.4, soft_temperature=tau_s, learnable_temperature=learn, chunk_size=chunk
    )
    dense_fn, chunk_fn = dense_fn.double(), chunk_fn.double()
    for labels in (None, groups):
        dense = dense_fn.terms(a, b, ma, mb, ids, labels)
        chunked = chunk_fn.terms(a, b, ma, mb, ids, labels)
        for x, y in ((chunked.loss, dense.loss), (chunked.hard, dense.hard)):
            torch.testing.assert_close(x, y, rtol=1e-12, atol=1e-12)
        torch.testing.assert_close(chunked.soft, dense.soft, rtol=1e-12, atol=1e-12)
        params = [a, b] + ([dense_fn.log_scale] if learn else [])
        want = torch.autograd.grad(dense.loss, params)
        params = [a, b] + ([chunk_fn.log_scale] if learn else [])
        got = torch.autograd.grad(chunked.loss, params)
        for x, y in zip(got, want):
            torch.testing.assert_close(x, y, rtol=1e-10, atol=1e-12)
        # and both equal the loop reference
        ref = reference(
            a.tolist(),
            b.tolist(),
            0.2,
            0.4,
            mask_a=ma.tolist(),
            mask_b=mb.tolist(),
            ids=ids.tolist(),
            groups=None if labels is None else labels.tolist(),
            tau_s=tau_s,
        )
        # (a learnable log-scale is a float32 parameter before .double(): 1e-7 off)
        assert float(chunked.loss.detach()) == pytest.approx(ref, rel=1e-6 if learn else 1e-10)


def test_chunked_gradcheck_hard_term_and_padding_gets_zero_gradient():
    a, b, ma, mb, ids, groups = _random_case(9)
    a = a[:, :, :3].clone().requires_grad_(True)
    b = b[:, :3, :3].clone().requires_grad_(True)
    mb = mb[:, :3]
    loss_fn = MXMCLRLoss(temperature=0.3, soft_weight=0.0, chunk_size=4)
    assert torch.autograd.gradcheck(lambda x, y: loss_fn(x, y, ma, mb, ids, groups), (a, b))
    MXMCLRLoss(temperature=0.3, soft_weight=0.7, chunk_size=4)(a, b, ma, mb, ids).backward()
    assert torch.all(a.grad[~ma] == 0) and torch.all(b.grad[~mb] == 0)


def test_chunked_keeps_nothing_quadratic_for_backward():
    n, folds, d = 16, 3, 4
    g = torch.Generator().manual_seed(10)
    a = torch.randn(n, folds, d, generator=g, requires_grad=True)
    b = torch.randn(n, folds, d, generator=g, requires_grad=True)
    rows = n * folds
    sizes: dict[str, list[int]] = {"dense": [], "chunked": []}
    for name, chunk in (("dense", None), ("chunked", 8)):
        with torch.autograd.graph.saved_tensors_hooks(
            lambda t, key=name: sizes[key].append(t.numel()) or t, lambda t: t
        ):
            MXMCLRLoss(chunk_size=chunk)(a, b)
    assert max(sizes["dense"]) >= rows * rows  # the test can fail
    assert max(sizes["chunked"]) <= rows * d


def test_soft_weights_stay_finite_far_below_the_best_negative():
    # float32, logit scale 100: a positive pair at cosine -1 and negatives at +1 put the
    # positives 200 below the row maximum (exp underflows relative to it).
    a = torch.tensor([[[1.0, 0.0]], [[0.0, 1.0]]])
    b = torch.tensor([[[-1.0, 0.0], [-1.0, 0.1]], [[1.0, 0.0], [1.0, 0.05]]])
    loss_fn = MXMCLRLoss(temperature=0.01, soft_weight=1.0)
    got = loss_fn(a, b)
    assert torch.isfinite(got)
    want = reference(a.tolist(), b.tolist(), 0.01, 1.0)
    assert float(got) == pytest.approx(want, rel=1e-5)
    assert float(MXMCLRLoss(temperature=0.01, soft_weight=1.0, chunk_size=1)(a, b)) == (
        pytest.approx(want, rel=1e-5)
    )


def test_objective_passes_chunk_size():
    from lightly_mm_mxmclr.objective import MXMCLRObjective

    from lightly_mm_plugins.api import EncodedBatch

    obj = MXMCLRObjective({"image": 6, "text": 4}, projection_dim=3, chunk_size=4)
    assert obj.loss_fn.chunk_size == 4
    dense = MXMCLRObjective({"image": 6, "text": 4}, projection_dim=3)
    dense.load_state_dict(obj.state_dict())
    batch = EncodedBatch.from_tensors({"image": torch.randn(5, 1, 6), "text": torch.randn(5, 3, 4)})
    torch.testing.assert_close(obj(batch).loss, dense(batch).loss, rtol=1e-5, atol=1e-6)
