"""Streaming (chunked) log-sum-exp and InfoNCE against their dense definitions.

``matmul_logsumexp`` is checked against ``torch.logsumexp`` of the explicitly
masked ``q @ k.T`` (values and autograd gradients, float64), by
``torch.autograd.gradcheck``, and on the edge cases of the blocking: one row per
block, a last block that is not full, a block larger than the matrix. The
chunked ``cross_modal_info_nce`` must equal the dense one (values and gradients
to 1e-10 in float64, both directions, with pseudo-label masking, and across two
gloo ranks with ``gather_distributed``), and must not keep any ``(N, N)``
tensor for the backward (checked with saved-tensor hooks, which see what
autograd stores).
"""

from __future__ import annotations

import math
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F

from lightly_mm_plugins.losses import (
    check_all,
    check_chunk_size,
    cross_modal_info_nce,
    matmul_logsumexp,
)

torch.set_num_threads(1)

HERE = Path(__file__).resolve().parent
NEG = float("-inf")


def randn(*shape: int, seed: int = 0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return torch.randn(*shape, generator=g, dtype=torch.float64)


def dense_lse(q, k, *, groups=None, exclude=None, span=None, key_valid=None, dim=1):
    """The definition: mask ``q @ k.T`` explicitly, then ``torch.logsumexp``."""
    s = q @ k.T
    drop = torch.zeros_like(s, dtype=torch.bool)
    if groups is not None:
        drop |= groups[0][:, None] != groups[1][None, :]
    if exclude is not None:
        drop |= exclude[0][:, None] == exclude[1][None, :]
    if span is not None:
        start, width = span
        for i in range(s.shape[0]):
            drop[i, int(start[i]) * width : int(start[i]) * width + width] = True
    if key_valid is not None:
        drop |= ~key_valid[None, :]
    return torch.logsumexp(s.masked_fill(drop, NEG), dim=dim)


# 7 rows: chunk 1 (one row per block), 3 (last block has 1 row), 7 (one block), 16 (> N).
CHUNKS = [None, 1, 3, 7, 16]


@pytest.mark.parametrize("chunk", CHUNKS)
def test_rows_and_columns_match_dense_logsumexp(chunk):
    q = randn(7, 4, seed=1).requires_grad_(True)
    k = randn(9, 4, seed=2).requires_grad_(True)
    row, col = matmul_logsumexp(q * 2.0, k, chunk, columns=True)
    torch.testing.assert_close(row, dense_lse(q * 2.0, k), rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(col, dense_lse(q * 2.0, k, dim=0), rtol=1e-12, atol=1e-12)
    w_row, w_col = randn(7, seed=3), randn(9, seed=4)
    got = torch.autograd.grad((row * w_row).sum() + (col * w_col).sum(), (q, k))
    want = torch.autograd.grad(
        (dense_lse(q * 2.0, k) * w_row).sum() + (dense_lse(q * 2.0, k, dim=0) * w_col).sum(),
        (q, k),
    )
    for g, w in zip(got, want):
        torch.testing.assert_close(g, w, rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize("chunk", CHUNKS)
def test_masks_match_dense_logsumexp(chunk):
    q = randn(7, 3, seed=5).requires_grad_(True)
    k = randn(12, 3, seed=6).requires_grad_(True)
    q_groups = torch.tensor([0, 1, 0, 2, 1, 0, 2])
    k_groups = torch.tensor([0, 1, 2, 0, 1, 2, 0, 1, 2, 0, 1, 2])
    q_ids = torch.arange(7)
    k_ids = torch.tensor([0, 0, 1, 1, 2, 2, 3, 3, 4, 4, 5, 9])
    valid = torch.tensor([1, 1, 1, 0, 1, 1, 1, 1, 0, 1, 1, 1], dtype=torch.bool)
    span = (torch.tensor([5, 4, 3, 2, 1, 0, 5]), 2)
    cases = [
        {"groups": (q_groups, k_groups)},
        {"exclude": (q_ids, k_ids), "key_valid": valid},
        {"exclude_span": span, "key_valid": valid},
    ]
    for kwargs in cases:
        ref_kwargs = {**kwargs}
        if "exclude_span" in ref_kwargs:
            ref_kwargs["span"] = ref_kwargs.pop("exclude_span")
        row = matmul_logsumexp(q, k, chunk, **kwargs)
        want = dense_lse(q, k, **ref_kwargs)
        torch.testing.assert_close(row, want, rtol=1e-12, atol=1e-12)
        got_grad = torch.autograd.grad(row.sum(), (q, k))
        want_grad = torch.autograd.grad(want.sum(), (q, k))
        for g, w in zip(got_grad, want_grad):
            torch.testing.assert_close(g, w, rtol=1e-10, atol=1e-12)


def test_span_and_id_exclusion_agree():
    """TCL's own-sample locals: span (start i, width L) == ids (i vs column // L)."""
    q, k = randn(5, 3, seed=7), randn(5 * 4, 3, seed=8)
    own = torch.arange(5)
    by_span = matmul_logsumexp(q, k, 2, exclude_span=(own, 4))
    by_ids = matmul_logsumexp(q, k, 2, exclude=(own, torch.arange(20) // 4))
    torch.testing.assert_close(by_span, by_ids, rtol=0, atol=0)


@pytest.mark.parametrize("chunk", [None, 2, 5])
def test_gradcheck(chunk):
    q = randn(5, 3, seed=9).requires_grad_(True)
    k = randn(6, 3, seed=10).requires_grad_(True)
    groups = (torch.tensor([0, 1, 0, 1, 0]), torch.tensor([0, 1, 0, 1, 1, 0]))
    assert torch.autograd.gradcheck(
        lambda x, y: matmul_logsumexp(x, y, chunk, columns=True, groups=groups), (q, k)
    )


def test_a_row_without_kept_pairs_is_minus_inf_with_zero_gradient():
    q = randn(3, 2, seed=11).requires_grad_(True)
    k = randn(4, 2, seed=12).requires_grad_(True)
    groups = (torch.tensor([0, 1, 7]), torch.tensor([0, 1, 0, 1]))  # row 2: no key of group 7
    for chunk in (None, 2):
        row = matmul_logsumexp(q, k, chunk, groups=groups)
        assert row[2] == NEG and torch.isfinite(row[:2]).all()
        gq, gk = torch.autograd.grad(row[:2].sum(), (q, k))
        assert torch.isfinite(gq).all() and torch.isfinite(gk).all()
        assert (gq[2] == 0).all()


def test_input_errors():
    q, k = torch.randn(3, 2), torch.randn(4, 2)
    for bad in (0, -1, 1.5, True):
        with pytest.raises(ValueError, match="chunk_size"):
            matmul_logsumexp(q, k, bad)  # type: ignore[arg-type]
        with pytest.raises(ValueError, match="chunk_size"):
            cross_modal_info_nce(q, q, chunk_size=bad)  # type: ignore[arg-type]
    assert check_chunk_size(None) is None and check_chunk_size(8) == 8
    with pytest.raises(ValueError, match="same D"):
        matmul_logsumexp(q, torch.randn(4, 3))
    with pytest.raises(ValueError, match="key_valid"):
        matmul_logsumexp(q, k, key_valid=torch.ones(4))
    with pytest.raises(ValueError, match=r"groups\[1\] must have shape \(4,\)"):
        matmul_logsumexp(q, k, groups=(torch.zeros(3), torch.zeros(5)))
    with pytest.raises(ValueError, match="width"):
        matmul_logsumexp(q, k, exclude_span=(torch.zeros(3, dtype=torch.long), 0))


def test_check_all_raises_value_error_on_cpu():
    check_all(torch.tensor([True, True]), "unused")
    with pytest.raises(ValueError, match="the message"):
        check_all(torch.tensor([True, False]), "the message")


# ------------------------------------------------------------- chunked InfoNCE


def info_nce_pair(n: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    a = randn(n, 5, seed=seed).requires_grad_(True)
    return a, randn(n, 5, seed=seed + 1).requires_grad_(True)


@pytest.mark.parametrize("n,chunk", [(7, 3), (7, 1), (4, 16), (9, 9), (2, 3)])
@pytest.mark.parametrize("grouped", [False, True])
def test_chunked_info_nce_equals_dense(n, chunk, grouped):
    a, b = info_nce_pair(n, seed=20 + n)
    labels = torch.tensor([0, 1, 0, 2, 1, 0, 2, 1, 1])[:n] if grouped else None
    dense = cross_modal_info_nce(a, b, 0.3, pseudo_labels=labels)
    chunked = cross_modal_info_nce(a, b, 0.3, pseudo_labels=labels, chunk_size=chunk)
    torch.testing.assert_close(chunked, dense, rtol=1e-12, atol=1e-12)
    for g, w in zip(torch.autograd.grad(chunked, (a, b)), torch.autograd.grad(dense, (a, b))):
        torch.testing.assert_close(g, w, rtol=1e-10, atol=1e-12)


def test_chunked_info_nce_both_directions_by_hand():
    """Each direction on its own: rows give a -> b, columns give b -> a (loops, float64)."""
    a, b = info_nce_pair(6, seed=30)
    tau = 0.2
    an, bn = F.normalize(a.detach(), dim=1), F.normalize(b.detach(), dim=1)
    sim = [[float(an[i] @ bn[j]) / tau for j in range(6)] for i in range(6)]
    a2b = sum(math.log(sum(math.exp(x) for x in sim[i])) - sim[i][i] for i in range(6)) / 6
    b2a = (
        sum(math.log(sum(math.exp(sim[i][j]) for i in range(6))) - sim[j][j] for j in range(6)) / 6
    )
    row, col = matmul_logsumexp(an / tau, bn, 4, columns=True)
    positive = (an / tau * bn).sum(dim=1)
    assert float((row - positive).mean()) == pytest.approx(a2b, rel=1e-12)
    assert float((col - positive).mean()) == pytest.approx(b2a, rel=1e-12)
    assert float(cross_modal_info_nce(a, b, tau, chunk_size=4).detach()) == pytest.approx(
        0.5 * (a2b + b2a), rel=1e-12
    )


def test_chunked_info_nce_gradcheck():
    a, b = info_nce_pair(5, seed=40)
    labels = torch.tensor([0, 1, 0, 1, 1])
    assert torch.autograd.gradcheck(
        lambda x, y: cross_modal_info_nce(x, y, 0.5, pseudo_labels=labels, chunk_size=2), (a, b)
    )


def _largest_saved(fn) -> int:
    """numel of the largest tensor autograd keeps for the backward of ``fn()``."""
    sizes: list[int] = []

    def pack(t: torch.Tensor) -> torch.Tensor:
        sizes.append(t.numel())
        return t

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        fn()
    return max(sizes)


def test_chunked_info_nce_keeps_nothing_quadratic_for_backward():
    n, d, chunk = 64, 8, 16
    a = randn(n, d, seed=50).requires_grad_(True)
    b = randn(n, d, seed=51).requires_grad_(True)
    labels = torch.arange(n) % 3
    dense = _largest_saved(lambda: cross_modal_info_nce(a, b, pseudo_labels=labels))
    chunked = _largest_saved(
        lambda: cross_modal_info_nce(a, b, pseudo_labels=labels, chunk_size=chunk)
    )
    assert dense >= n * n  # the test can fail: the dense path keeps (N, N) logits
    assert chunked <= n * d  # inputs only; the (N, N) scores are recomputed


def test_half_precision_runs_and_stays_close():
    a, b = randn(33, 16, seed=60).float(), randn(33, 16, seed=61).float()
    dense = cross_modal_info_nce(a, b, 0.1)
    for dtype in (torch.bfloat16, torch.float16):
        got = cross_modal_info_nce(a.to(dtype), b.to(dtype), 0.1, chunk_size=8)
        assert got.dtype == torch.float32  # statistics in float32
        assert float(got) == pytest.approx(float(dense), rel=2e-2)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        got = cross_modal_info_nce(a, b, 0.1, chunk_size=8)
    assert float(got) == pytest.approx(float(dense), rel=2e-2)


# ------------------------------------------------- gather_distributed, 2 ranks

WORLD, TOTAL = 2, 6
GROUPS = torch.tensor([0, 1, 1, 0, 1, 0])


def _rank_result(rank: int, world: int, chunk: int | None) -> dict[str, torch.Tensor]:
    n = TOTAL // world
    rows = slice(rank * n, (rank + 1) * n)
    a = randn(TOTAL, 4, seed=70)[rows].clone().requires_grad_(True)
    b = randn(TOTAL, 4, seed=71)[rows].clone().requires_grad_(True)
    out: dict[str, torch.Tensor] = {}
    for name, labels in (("plain", None), ("grouped", GROUPS[rows])):
        loss = cross_modal_info_nce(
            a, b, 0.25, gather_distributed=world > 1, pseudo_labels=labels, chunk_size=chunk
        )
        ga, gb = torch.autograd.grad(loss, (a, b))
        out[f"{name}.loss"] = loss.detach()
        out[f"{name}.a"], out[f"{name}.b"] = ga, gb
    return out


def _worker(rank: int, store: str, out: str) -> None:
    import torch.distributed as dist

    dist.init_process_group("gloo", store=dist.FileStore(store, WORLD), rank=rank, world_size=WORLD)
    result = _rank_result(rank, WORLD, chunk=2)
    parts: dict[str, torch.Tensor] = {}
    for key, value in result.items():
        gathered = [torch.empty_like(value) for _ in range(WORLD)]
        dist.all_gather(gathered, value.contiguous())
        parts[key] = torch.stack(gathered) if value.dim() == 0 else torch.cat(gathered)
    if rank == 0:
        torch.save(parts, out)
    dist.barrier()
    dist.destroy_process_group()


@pytest.mark.slow
def test_chunked_gather_distributed_equals_one_dense_process(tmp_path: Path) -> None:
    out = tmp_path / "ranks.pt"
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    code = (
        f"import sys; sys.path.insert(0, {str(HERE)!r}); import test_streaming_lse as t; "
        f"t._worker(int(sys.argv[1]), {str(tmp_path / 'store')!r}, {str(out)!r})"
    )
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", code, str(r)], env=env, stderr=subprocess.PIPE, text=True
        )
        for r in range(WORLD)
    ]
    for p in procs:
        try:
            _, err = p.communicate(timeout=120)
        except subprocess.TimeoutExpired:
            for q in procs:
                q.kill()
            pytest.fail("DDP worker timed out")
        assert p.returncode == 0, err
    ranks = torch.load(out, weights_only=True)
    single = _rank_result(0, 1, chunk=None)  # one process, dense, whole batch
    for name in ("plain", "grouped"):
        # DDP averages: the rank mean of the losses is the single-process loss, and each
        # rank's input gradient is 1/world of the single-process one.
        torch.testing.assert_close(
            ranks[f"{name}.loss"].mean(), single[f"{name}.loss"], rtol=1e-10, atol=1e-12
        )
        for x in ("a", "b"):
            torch.testing.assert_close(
                ranks[f"{name}.{x}"] / WORLD, single[f"{name}.{x}"], rtol=1e-10, atol=1e-12
            )
