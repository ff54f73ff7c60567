"""TCL's loss terms against explicit-loop references written from the paper / official code."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F
from lightly_mm_tcl.loss import (
    NO_INSTANCE,
    CrossModalAlignmentLoss,
    IntraModalContrastLoss,
    LocalMutualInfoLoss,
    TCLLoss,
    grid_pool,
    tcl_targets,
)

from lightly_mm_plugins.losses import cross_modal_info_nce

torch.set_num_threads(1)


# ----------------------------------------------------------------- references


def unit(x: list[float]) -> list[float]:
    norm = math.sqrt(sum(v * v for v in x))
    return [v / norm for v in x]


def dot(a: list[float], b: list[float]) -> float:
    return sum(x * y for x, y in zip(a, b))


def log_softmax(xs: list[float]) -> list[float]:
    m = max(xs)
    lse = m + math.log(sum(math.exp(x - m) for x in xs))
    return [x - lse for x in xs]


def softmax(xs: list[float]) -> list[float]:
    return [math.exp(x) for x in log_softmax(xs)]


def rows(t: torch.Tensor) -> list[list[float]]:
    return [[float(v) for v in r] for r in t]


def ref_directional(
    queries, teacher, candidates, tau, alpha, positives
) -> float:  # one CMA / IMC direction
    """-1/B sum_i sum_c [a softmax(teacher_i.C/tau) + (1-a) Y_ic] log softmax(q_i.C/tau)_c."""
    total = 0.0
    for i, q in enumerate(queries):
        logp = log_softmax([dot(unit(q), c) / tau for c in candidates])
        pos = positives[i]
        hard = [p / sum(pos) for p in pos]
        if alpha > 0:
            soft = softmax([dot(unit(teacher[i]), c) / tau for c in candidates])
            target = [alpha * s + (1 - alpha) * h for s, h in zip(soft, hard)]
        else:
            target = hard
        total += -sum(t * lp for t, lp in zip(target, logp))
    return total / len(queries)


def one_hot_positives(n: int, total: int) -> list[list[int]]:
    return [[1 if c == i else 0 for c in range(total)] for i in range(n)]


def ref_local(g, local, mask, tau) -> float:
    """Official in_batch_g2l_loss semantics with explicit loops."""
    n = len(g)
    per_sample = []
    for i in range(n):
        gi = unit(g[i])
        terms = []
        for k in range(len(local[i])):
            if not mask[i][k]:
                continue
            pos = dot(gi, local[i][k]) / tau
            neg = [
                dot(gi, local[j][kk]) / tau
                for j in range(n)
                if j != i
                for kk in range(len(local[j]))
                if mask[j][kk]
            ]
            terms.append(-log_softmax([pos, *neg])[0])
        if terms:
            per_sample.append(sum(terms) / len(terms))
    return sum(per_sample) / len(per_sample)


def normalized(t: torch.Tensor) -> torch.Tensor:
    return F.normalize(t, dim=-1)


# -------------------------------------------------------------------- targets


def test_targets_one_hot_with_offset() -> None:
    t = tcl_targets(2, 4, 3, offset=2)
    expected = torch.zeros(2, 7)
    expected[0, 2] = expected[1, 3] = 1
    assert torch.equal(t, expected)


def test_targets_instance_positives_split_mass() -> None:
    ids = torch.tensor([5, 7])
    queue_ids = torch.tensor([7, NO_INSTANCE, 5, 7])
    t = tcl_targets(2, 2, 4, instance_ids=ids, key_ids=ids, queue_ids=queue_ids)
    expected = torch.tensor(
        [[0.5, 0, 0, 0, 0.5, 0], [0, 1 / 3, 1 / 3, 0, 0, 1 / 3]], dtype=torch.float32
    )
    assert torch.allclose(t, expected)


# ------------------------------------------------------------------------ CMA


@pytest.mark.parametrize("alpha", [0.0, 0.4])
def test_cross_modal_matches_loops(alpha: float) -> None:
    g = torch.Generator().manual_seed(0)
    n, d, q, tau = 3, 4, 2, 0.3
    v, t = torch.randn(n, d, generator=g), torch.randn(n, d, generator=g)
    vm, tm = torch.randn(n, d, generator=g), torch.randn(n, d, generator=g)
    qv, qt = normalized(torch.randn(q, d, generator=g)), normalized(torch.randn(q, d, generator=g))
    loss = CrossModalAlignmentLoss(temperature=tau, alpha=alpha)(v, t, vm, tm, qv, qt)

    image_all = [unit(r) for r in rows(vm)] + rows(qv)
    text_all = [unit(r) for r in rows(tm)] + rows(qt)
    pos = one_hot_positives(n, n + q)
    i2t = ref_directional(rows(v), rows(vm), text_all, tau, alpha, pos)
    t2i = ref_directional(rows(t), rows(tm), image_all, tau, alpha, pos)
    assert loss.item() == pytest.approx(0.5 * (i2t + t2i), rel=1e-5)


def test_cross_modal_instance_positives_matches_loops() -> None:
    g = torch.Generator().manual_seed(1)
    n, d, tau, alpha = 3, 4, 0.2, 0.4
    v, t, vm, tm = (torch.randn(n, d, generator=g) for _ in range(4))
    qv, qt = normalized(torch.randn(3, d, generator=g)), normalized(torch.randn(3, d, generator=g))
    ids, qids = torch.tensor([0, 1, 2]), torch.tensor([2, NO_INSTANCE, 0])
    loss = CrossModalAlignmentLoss(tau, alpha)(
        v, t, vm, tm, qv, qt, instance_ids=ids, queue_ids=qids
    )
    cand_ids = [0, 1, 2, 2, None, 0]
    pos = [[1 if c == i else 0 for c in cand_ids] for i in range(n)]
    image_all = [unit(r) for r in rows(vm)] + rows(qv)
    text_all = [unit(r) for r in rows(tm)] + rows(qt)
    i2t = ref_directional(rows(v), rows(vm), text_all, tau, alpha, pos)
    t2i = ref_directional(rows(t), rows(tm), image_all, tau, alpha, pos)
    assert loss.item() == pytest.approx(0.5 * (i2t + t2i), rel=1e-5)


def test_cross_modal_reduces_to_info_nce() -> None:
    g = torch.Generator().manual_seed(2)
    v, t = torch.randn(6, 5, generator=g), torch.randn(6, 5, generator=g)
    loss = CrossModalAlignmentLoss(temperature=0.1, alpha=0.0)(v, t, v, t)
    expected = cross_modal_info_nce(v, t, temperature=0.1)
    assert torch.allclose(loss, expected, atol=1e-6)


def test_cross_modal_gradient_only_through_online_queries() -> None:
    v = torch.randn(4, 3, requires_grad=True)
    t = torch.randn(4, 3, requires_grad=True)
    vm = torch.randn(4, 3, requires_grad=True)
    tm = torch.randn(4, 3, requires_grad=True)
    CrossModalAlignmentLoss(alpha=0.4)(v, t, vm, tm).backward()
    assert v.grad is not None and t.grad is not None
    assert vm.grad is None and tm.grad is None


def test_cross_modal_gradcheck() -> None:
    g = torch.Generator().manual_seed(3)
    v = torch.randn(3, 4, generator=g, dtype=torch.float64, requires_grad=True)
    t = torch.randn(3, 4, generator=g, dtype=torch.float64, requires_grad=True)
    vm, tm = (
        torch.randn(3, 4, generator=g, dtype=torch.float64),
        torch.randn(3, 4, generator=g, dtype=torch.float64),
    )
    q = normalized(torch.randn(2, 4, generator=g, dtype=torch.float64))
    tau = torch.tensor(0.2, dtype=torch.float64, requires_grad=True)
    distilled = CrossModalAlignmentLoss(alpha=0.4)
    # the soft targets are a stop-gradient function of tau, so tau is checked with alpha=0
    assert torch.autograd.gradcheck(
        lambda a, b: distilled(a, b, vm, tm, q, q, temperature=0.2), (v, t)
    )
    hard = CrossModalAlignmentLoss(alpha=0.0)
    assert torch.autograd.gradcheck(
        lambda a, b, s: hard(a, b, vm, tm, q, q, temperature=s), (v, t, tau)
    )


def test_cross_modal_rejects_bad_input() -> None:
    loss_fn = CrossModalAlignmentLoss()
    x = torch.randn(4, 3)
    with pytest.raises(ValueError, match="momentum0"):
        loss_fn(x, x, torch.randn(3, 3), x)
    with pytest.raises(ValueError, match="queue0"):
        loss_fn(x, x, x, x, torch.randn(5, 2), torch.randn(5, 2))
    with pytest.raises(ValueError, match="both"):
        loss_fn(x, x, x, x, torch.randn(5, 3), None)
    with pytest.raises(ValueError, match="alpha"):
        CrossModalAlignmentLoss(alpha=1.5)
    with pytest.raises(ValueError, match="temperature"):
        CrossModalAlignmentLoss(temperature=0.0)


# ------------------------------------------------------------------------ IMC


def test_intra_modal_matches_loops() -> None:
    g = torch.Generator().manual_seed(4)
    n, d, tau = 4, 3, 0.25
    x, xm = torch.randn(n, d, generator=g), torch.randn(n, d, generator=g)
    queue = normalized(torch.randn(3, d, generator=g))
    loss = IntraModalContrastLoss(temperature=tau)(x, xm, queue)
    candidates = [unit(r) for r in rows(xm)] + rows(queue)
    expected = ref_directional(rows(x), None, candidates, tau, 0.0, one_hot_positives(n, n + 3))
    assert loss.item() == pytest.approx(expected, rel=1e-5)


def test_intra_modal_gradcheck() -> None:
    g = torch.Generator().manual_seed(5)
    x = torch.randn(3, 4, generator=g, dtype=torch.float64, requires_grad=True)
    xm = torch.randn(3, 4, generator=g, dtype=torch.float64)
    q = normalized(torch.randn(2, 4, generator=g, dtype=torch.float64))
    loss_fn = IntraModalContrastLoss(temperature=0.3)
    assert torch.autograd.gradcheck(lambda a: loss_fn(a, xm, q).double(), (x,))


# ------------------------------------------------------------------------ LMI


def test_local_mi_matches_loops_with_padding() -> None:
    g = torch.Generator().manual_seed(6)
    n, num, d, tau = 3, 4, 5, 0.3
    glob = torch.randn(n, d, generator=g)
    local = torch.randn(n, num, d, generator=g)
    mask = torch.tensor([[1, 1, 1, 0], [1, 1, 0, 0], [1, 1, 1, 1]], dtype=torch.bool)
    loss = LocalMutualInfoLoss(temperature=tau)(glob, local, mask)
    loc = [[unit(r) for r in rows(local[i])] for i in range(n)]
    expected = ref_local(rows(glob), loc, mask.tolist(), tau)
    assert loss.item() == pytest.approx(expected, rel=1e-5)


def test_local_mi_matches_official_masking_trick() -> None:
    """The official +-1e4 shifts give the same value as exact masking."""
    g = torch.Generator().manual_seed(7)
    n, num, d, tau = 4, 3, 6, 0.1
    glob = normalized(torch.randn(n, d, generator=g))
    local = normalized(torch.randn(n, num, d, generator=g))
    mask = torch.tensor([[1, 1, 0], [1, 1, 1], [1, 0, 0], [1, 1, 0]], dtype=torch.bool)
    # Value of the official formulation, rebuilt from its description: positives of
    # padded anchors shifted up by 1e4, masked negatives shifted down by 1e4,
    # then sum over all anchors divided by the number of valid ones.
    m = mask.float()
    pos = torch.einsum("nkd,nd->nk", local, glob) / tau
    pos = pos * m + 1e4 * (1 - m)
    neg = torch.einsum("id,jkd->ijk", glob, local) / tau
    self_mask = torch.eye(n)[:, :, None]
    neg = neg * (1 - self_mask) - 1e4 * self_mask
    neg = neg * m[None] - 1e4 * (1 - m[None])
    logits = torch.cat([pos[:, :, None], neg.reshape(n, 1, -1).expand(n, num, -1)], dim=2)
    official = ((-F.log_softmax(logits, dim=2)[:, :, 0]).sum(1) / m.sum(1)).mean()
    loss = LocalMutualInfoLoss(temperature=tau, normalize=False)(glob, local, mask)
    assert torch.allclose(loss, official, atol=1e-5)


def test_local_mi_pools_image_grid_before_loss() -> None:
    g = torch.Generator().manual_seed(8)
    n, side, d, tau = 3, 4, 5, 0.2
    glob = torch.randn(n, d, generator=g)
    local = torch.randn(n, side * side, d, generator=g)
    loss = LocalMutualInfoLoss(temperature=tau, pool_grid=2)(glob, local)
    # explicit pooling: normalise every cell, then average 2x2 blocks (not re-normalised)
    loc = []
    for i in range(n):
        cells = [unit(r) for r in rows(local[i])]
        regions = []
        for by in range(2):
            for bx in range(2):
                members = [
                    cells[(2 * by + dy) * side + 2 * bx + dx] for dy in (0, 1) for dx in (0, 1)
                ]
                regions.append([sum(c[k] for c in members) / 4 for k in range(d)])
        loc.append(regions)
    expected = ref_local(rows(glob), loc, [[True] * 4] * n, tau)
    assert loss.item() == pytest.approx(expected, rel=1e-5)


def test_grid_pool_is_official_patch_pooling_for_16x16() -> None:
    x = torch.randn(2, 256, 3)
    pooled = grid_pool(x, 4)
    grid = x.reshape(2, 16, 16, 3)
    expected = torch.stack(
        [
            grid[:, 4 * r : 4 * r + 4, 4 * c : 4 * c + 4].mean(dim=(1, 2))
            for r in range(4)
            for c in range(4)
        ],
        dim=1,
    )
    assert pooled.shape == (2, 16, 3)
    assert torch.allclose(pooled, expected, atol=1e-6)
    small = torch.randn(2, 9, 3)
    assert grid_pool(small, 4) is small
    with pytest.raises(ValueError, match="square"):
        grid_pool(torch.randn(2, 10, 3), 2)


def test_local_mi_pooling_rejects_padding() -> None:
    with pytest.raises(ValueError, match="pool_grid=None"):
        LocalMutualInfoLoss(pool_grid=2)(
            torch.randn(2, 3),
            torch.randn(2, 4, 3),
            torch.tensor([[1, 1, 1, 0], [1, 1, 1, 1]]).bool(),
        )


def test_local_mi_gradcheck_and_no_grad_to_momentum_locals() -> None:
    g = torch.Generator().manual_seed(9)
    glob = torch.randn(3, 4, generator=g, dtype=torch.float64, requires_grad=True)
    local = torch.randn(3, 2, 4, generator=g, dtype=torch.float64)
    mask = torch.tensor([[1, 0], [1, 1], [1, 1]], dtype=torch.bool)
    loss_fn = LocalMutualInfoLoss(temperature=0.3)
    assert torch.autograd.gradcheck(lambda x: loss_fn(x, local, mask).double(), (glob,))


def test_local_mi_skips_samples_without_locals() -> None:
    glob, local = torch.randn(3, 4), torch.randn(3, 2, 4)
    mask = torch.tensor([[1, 1], [0, 0], [1, 0]], dtype=torch.bool)
    full = LocalMutualInfoLoss()(glob, local, mask)
    loc = [[unit(r) for r in rows(local[i])] for i in range(3)]
    assert full.item() == pytest.approx(ref_local(rows(glob), loc, mask.tolist(), 0.07), rel=1e-5)
    assert torch.isfinite(full)


# ---------------------------------------------------------------------- TCLLoss


def make_inputs(seed: int, n: int = 4, d: int = 6):
    g = torch.Generator().manual_seed(seed)
    v, t, vm, tm = (torch.randn(n, d, generator=g) for _ in range(4))
    lv = torch.randn(n, 4, d, generator=g)
    lt = torch.randn(n, 3, d, generator=g)
    mt = torch.tensor([[1, 1, 0], [1, 1, 1], [1, 0, 0], [1, 1, 1]], dtype=torch.bool)[:n]
    qv = normalized(torch.randn(5, d, generator=g))
    qt = normalized(torch.randn(5, d, generator=g))
    return v, t, vm, tm, lv, lt, mt, qv, qt


def test_tcl_loss_is_mean_of_six_terms_by_default() -> None:
    v, t, vm, tm, lv, lt, mt, qv, qt = make_inputs(10)
    tau, alpha = 0.1, 0.4
    loss_fn = TCLLoss(temperature=tau, alpha=alpha, local_pool_grid=(None, None))
    loss = loss_fn(v, t, vm, tm, qv, qt, local0=lv, local1=lt, local_mask1=mt)
    n = v.shape[0]
    pos = one_hot_positives(n, n + 5)
    image_all = [unit(r) for r in rows(vm)] + rows(qv)
    text_all = [unit(r) for r in rows(tm)] + rows(qt)
    six = [
        ref_directional(rows(v), rows(vm), text_all, tau, alpha, pos),
        ref_directional(rows(t), rows(tm), image_all, tau, alpha, pos),
        ref_directional(rows(v), None, image_all, tau, 0.0, pos),
        ref_directional(rows(t), None, text_all, tau, 0.0, pos),
        ref_local(rows(v), [[unit(r) for r in rows(lv[i])] for i in range(n)], [[1] * 4] * n, tau),
        ref_local(rows(t), [[unit(r) for r in rows(lt[i])] for i in range(n)], mt.tolist(), tau),
    ]
    assert loss.item() == pytest.approx(sum(six) / 6, rel=1e-5)


def test_tcl_loss_weights_and_switches() -> None:
    v, t, vm, tm, lv, lt, mt, qv, qt = make_inputs(11)
    kw = {"local0": lv, "local1": lt, "local_mask1": mt}
    full = TCLLoss(temperature=0.1, local_pool_grid=(None, None))
    terms = full.terms(v, t, vm, tm, qv, qt, **kw)
    assert set(terms) == {"cross_modal", "intra_modal", "local"}
    weighted = TCLLoss(
        temperature=0.1,
        cross_modal_weight=2.0,
        intra_modal_weight=0.0,
        local_weight=1.0,
        local_pool_grid=(None, None),
    )
    only = weighted.terms(v, t, vm, tm, qv, qt, **kw)
    assert set(only) == {"cross_modal", "local"}
    expected = (2 * terms["cross_modal"] + terms["local"]) / 3
    assert torch.allclose(weighted.combine(only), expected, atol=1e-6)
    # the local term is not computed (and its inputs not needed) when switched off
    no_local = TCLLoss(temperature=0.1, local_weight=0.0)
    assert torch.allclose(
        no_local(v, t, vm, tm, qv, qt),
        (terms["cross_modal"] + terms["intra_modal"]) / 2,
        atol=1e-6,
    )
    with pytest.raises(ValueError, match="local features"):
        full(v, t, vm, tm)
    with pytest.raises(ValueError, match="all term weights are zero"):
        TCLLoss(cross_modal_weight=0, intra_modal_weight=0, local_weight=0)


def test_tcl_loss_cross_modal_only_equals_info_nce() -> None:
    v, t, *_ = make_inputs(12)
    loss_fn = TCLLoss(temperature=0.07, alpha=0.0, intra_modal_weight=0.0, local_weight=0.0)
    loss = loss_fn(v, t, v.detach(), t.detach())
    assert torch.allclose(loss, cross_modal_info_nce(v, t, temperature=0.07), atol=1e-6)


def test_learnable_temperature_is_clamped_and_trained() -> None:
    v, t, vm, tm, *_ = make_inputs(13)
    loss_fn = TCLLoss(local_weight=0.0)
    assert isinstance(loss_fn.temp, torch.nn.Parameter)
    with torch.no_grad():
        loss_fn.temp.fill_(2.0)
    loss = loss_fn(v, t, vm, tm)
    assert loss_fn.temperature == pytest.approx(0.5)
    loss.backward()
    assert loss_fn.temp.grad is not None and loss_fn.temp.grad.abs() > 0
    with torch.no_grad():
        loss_fn.temp.fill_(1e-5)
    loss_fn(v, t, vm, tm)
    assert loss_fn.temperature == pytest.approx(0.001)
    fixed = TCLLoss(temperature=0.7, learnable_temperature=False, local_weight=0.0)
    assert "temp" in dict(fixed.named_buffers())
    fixed(v, t, vm, tm)
    assert fixed.temperature == pytest.approx(0.7)  # a fixed one is not clamped
    with pytest.raises(ValueError, match="outside"):
        TCLLoss(temperature=0.9)


# ---------------------------------------------------------------- pseudo labels


def ref_grouped(queries, teacher, keys, groups, tau, alpha) -> float:
    """One CMA / IMC direction where row i sees only the keys j with groups[j] == groups[i]."""
    total = 0.0
    for i in range(len(queries)):
        members = [j for j in range(len(keys)) if groups[j] == groups[i]]
        candidates = [unit(keys[j]) for j in members]
        pos = [[1 if j == i else 0 for j in members]]
        t = None if teacher is None else [teacher[i]]
        total += ref_directional([queries[i]], t, candidates, tau, alpha, pos)
    return total / len(queries)


def test_pseudo_label_groups_match_loops() -> None:
    """A row's negatives are the keys of its group only, in the logits and the soft targets."""
    v, t, vm, tm, *_ = make_inputs(14, n=5)
    groups = torch.tensor([0, 1, 0, 2, 1])  # group 2 is a singleton: no negative at all
    tau, alpha = 0.2, 0.4
    cma = CrossModalAlignmentLoss(tau, alpha)(v, t, vm, tm, pseudo_labels=groups)
    g = groups.tolist()
    expected = 0.5 * (
        ref_grouped(rows(v), rows(vm), rows(tm), g, tau, alpha)
        + ref_grouped(rows(t), rows(tm), rows(vm), g, tau, alpha)
    )
    assert cma.item() == pytest.approx(expected, rel=1e-5)
    imc = IntraModalContrastLoss(tau)(v, vm, pseudo_labels=groups)
    assert imc.item() == pytest.approx(ref_grouped(rows(v), None, rows(vm), g, tau, 0), rel=1e-5)


def test_pseudo_label_groups_split_the_loss_exactly() -> None:
    """With groups, the loss is the size-weighted mean of the per-group losses, and a row's
    term does not depend on other-group keys at all."""
    v, t, vm, tm, *_ = make_inputs(15, n=4)
    groups = torch.tensor([1, 0, 1, 0])
    loss_fn = TCLLoss(temperature=0.1, local_weight=0.0)
    ids = torch.tensor([10, 11, 12, 13])
    grouped = loss_fn(v, t, vm, tm, pseudo_labels=groups, instance_ids=ids)
    expected = 0.0
    for label in (0, 1):
        sel = groups == label
        part = loss_fn(v[sel], t[sel], vm[sel], tm[sel], instance_ids=ids[sel])
        expected = expected + part * int(sel.sum()) / 4
    assert torch.allclose(grouped, expected, atol=1e-6)
    # per row: a query's gradient (its own term) ignores the keys of other groups
    moved_vm, moved_tm = vm.clone(), tm.clone()
    moved_vm[groups == 0] += 3.0
    moved_tm[groups == 0] -= 2.0

    def query_grads(keys_v: torch.Tensor, keys_t: torch.Tensor) -> torch.Tensor:
        q = v.clone().requires_grad_(True)
        loss_fn(q, t, keys_v, keys_t, pseudo_labels=groups).backward()
        return q.grad

    before, after = query_grads(vm, tm), query_grads(moved_vm, moved_tm)
    assert torch.allclose(before[groups == 1], after[groups == 1], atol=1e-7)
    assert not torch.allclose(before[groups == 0], after[groups == 0], atol=1e-3)


def test_pseudo_labels_all_equal_change_nothing_and_drop_the_queue() -> None:
    v, t, vm, tm, lv, lt, mt, qv, qt = make_inputs(16)
    same = torch.zeros(4, dtype=torch.long)
    kw = {"local0": lv, "local1": lt, "local_mask1": mt, "instance_ids": torch.arange(4)}
    loss_fn = TCLLoss(temperature=0.1, local_pool_grid=(2, None))
    without = loss_fn(v, t, vm, tm, **kw)
    with_labels = loss_fn(v, t, vm, tm, pseudo_labels=same, **kw)
    assert torch.equal(with_labels, without)
    # queue entries have no pseudo label: with pseudo labels the queue is not used
    with_queue = loss_fn(v, t, vm, tm, qv, qt, pseudo_labels=same, **kw)
    assert torch.equal(with_queue, without)
    assert not torch.allclose(loss_fn(v, t, vm, tm, qv, qt, **kw), without)


def test_pseudo_labels_gradcheck_and_errors() -> None:
    g = torch.Generator().manual_seed(17)
    v = torch.randn(4, 3, generator=g, dtype=torch.float64, requires_grad=True)
    t = torch.randn(4, 3, generator=g, dtype=torch.float64, requires_grad=True)
    vm, tm = (torch.randn(4, 3, generator=g, dtype=torch.float64) for _ in range(2))
    groups = torch.tensor([0, 1, 0, 2])  # a singleton group must not give NaN gradients
    cma = CrossModalAlignmentLoss(0.3, alpha=0.4)
    assert torch.autograd.gradcheck(lambda a, b: cma(a, b, vm, tm, pseudo_labels=groups), (v, t))
    imc = IntraModalContrastLoss(0.3)
    assert torch.autograd.gradcheck(lambda a: imc(a, vm, pseudo_labels=groups), (v,))
    q = normalized(torch.randn(2, 3, dtype=torch.float64))
    with pytest.raises(ValueError, match="queue"):
        cma(v, t, vm, tm, q, q, pseudo_labels=groups)
    with pytest.raises(ValueError, match="queue"):
        imc(v, vm, q, pseudo_labels=groups)
    with pytest.raises(ValueError, match="pseudo_labels must have shape"):
        imc(v, vm, pseudo_labels=groups[:3])


# ------------------------------------------------------ streaming log-sum-exp


@pytest.mark.parametrize("chunk", [1, 2, 8])
def test_local_mi_chunked_equals_dense_with_padding_and_online_locals(chunk):
    g = torch.Generator().manual_seed(21)
    glob = torch.randn(5, 4, generator=g, dtype=torch.float64, requires_grad=True)
    local = torch.randn(5, 3, 4, generator=g, dtype=torch.float64, requires_grad=True)
    mask = torch.tensor([[1, 1, 0], [1, 1, 1], [0, 0, 0], [1, 0, 0], [1, 1, 1]]).bool()
    dense = LocalMutualInfoLoss(temperature=0.2)(glob, local, mask)
    chunked = LocalMutualInfoLoss(temperature=0.2, chunk_size=chunk)(glob, local, mask)
    torch.testing.assert_close(chunked, dense, rtol=1e-12, atol=1e-12)
    want = torch.autograd.grad(dense, (glob, local))
    got = torch.autograd.grad(chunked, (glob, local))
    for x, y in zip(got, want):
        torch.testing.assert_close(x, y, rtol=1e-10, atol=1e-12)
    assert torch.all(got[1][~mask] == 0)  # padded locals get no gradient
    loc = [[unit(r) for r in rows(local.detach()[i])] for i in range(5)]
    ref = ref_local(rows(glob.detach()), loc, mask.tolist(), 0.2)
    assert float(chunked.detach()) == pytest.approx(ref, rel=1e-10)
    with pytest.raises(ValueError, match="chunk_size"):
        LocalMutualInfoLoss(chunk_size=0)


def test_tcl_loss_local_chunk_size_changes_nothing():
    v, t, vm, tm, lv, lt, mt, qv, qt = make_inputs(12)
    kwargs = {"local0": lv, "local1": lt, "local_mask1": mt}
    dense = TCLLoss(temperature=0.1, local_pool_grid=(None, None))
    chunked = TCLLoss(temperature=0.1, local_pool_grid=(None, None), local_chunk_size=3)
    v.requires_grad_(True)
    a = dense(v, t, vm, tm, qv, qt, **kwargs)
    b = chunked(v, t, vm, tm, qv, qt, **kwargs)
    torch.testing.assert_close(b, a, rtol=1e-6, atol=1e-7)
    (ga,) = torch.autograd.grad(a, v)
    (gb,) = torch.autograd.grad(b, v)
    torch.testing.assert_close(gb, ga, rtol=1e-5, atol=1e-7)
