"""MCLScheduler: stages, clustering at stage ends, pseudo-label integration, combine, state."""

from __future__ import annotations

import io

import pytest
import torch
import torch.nn.functional as F
from lightly_mm_mcl import scheduler as sched_mod
from lightly_mm_mcl.clustering import kmeans_labels
from lightly_mm_mcl.scheduler import MCLScheduler, combine_pseudo_labels

from lightly_mm_plugins.api import StageContext


def _context(stage, features, ids):
    return StageContext(stage=stage, embed_training_set=lambda: (features, ids))


def _same_partition(a: torch.Tensor, b: torch.Tensor) -> bool:
    """True iff two labelings induce the same partition (cluster ids are arbitrary)."""
    return bool(((a[:, None] == a[None, :]) == (b[:, None] == b[None, :])).all())


# ----------------------------------------------------------------- integration


def test_mixed_radix_combination_exact_values():
    k = 3
    c0 = torch.tensor([0, 1, 2, 2, 1, 0])
    c1 = torch.tensor([2, 2, 0, 1, 1, 0])
    # p = c0 * K + c1, written out by hand
    assert combine_pseudo_labels([c0], k).tolist() == [0, 1, 2, 2, 1, 0]
    assert combine_pseudo_labels([c0, c1], k).tolist() == [2, 5, 6, 7, 4, 0]
    c2 = torch.tensor([1, 0, 0, 2, 1, 2])
    # ((c0 K + c1) K + c2)
    assert combine_pseudo_labels([c0, c1, c2], k).tolist() == [7, 15, 18, 23, 13, 2]


def test_combination_groups_are_intersections_of_all_clusterings():
    g = torch.Generator().manual_seed(0)
    labels = [torch.randint(0, 4, (200,), generator=g) for _ in range(3)]
    p = combine_pseudo_labels(labels, 4)
    joint = (labels[0][:, None] == labels[0][None]) & (labels[1][:, None] == labels[1][None])
    joint &= labels[2][:, None] == labels[2][None]
    assert torch.equal(p[:, None] == p[None], joint)


def test_official_cluster_py_loop_uses_only_the_current_stage():
    """Documents the bug: the official loop reloads the current stage's labels every time."""
    k, stage = 10, 2
    files = {
        0: torch.tensor([1, 1, 2, 3]),
        1: torch.tensor([0, 4, 4, 4]),
        2: torch.tensor([5, 5, 5, 6]),
    }
    buggy = torch.zeros(4, dtype=torch.long)
    for _s in range(stage + 1):
        buggy = buggy * k + files[stage]  # what cluster.py does (loads <stage>, not <s>)
    assert torch.equal(buggy, files[stage] * (1 + k + k**2))
    intended = combine_pseudo_labels([files[0], files[1], files[2]], k)
    assert intended.tolist() == [105, 145, 245, 346]
    assert not _same_partition(buggy, intended)


def test_combination_rejects_out_of_range_labels():
    with pytest.raises(ValueError, match=r"\[0, 3\)"):
        combine_pseudo_labels([torch.tensor([0, 3])], 3)


def test_scheduler_integrates_stage_labels_by_instance_id(monkeypatch):
    """Two stage ends with hand-made cluster labels; ids come in a different order in stage 1."""
    given = {
        0: torch.tensor([0, 1, 2, 2, 1, 0]),  # aligned with ids0
        1: torch.tensor([2, 2, 0, 1, 1, 0]),  # aligned with ids1
    }
    seen: list[torch.Tensor] = []

    def fake_kmeans(features, k, *, seed, **kwargs):
        seen.append(features)
        return given[seed - 7]

    monkeypatch.setattr(sched_mod, "kmeans_labels", fake_kmeans)
    sched = MCLScheduler(epochs=1, num_stages=3, num_clusters=3, seed=7, sampler="mask")
    ids0 = torch.tensor([10, 11, 12, 13, 14, 15])
    ids1 = torch.tensor([15, 14, 13, 12, 11, 10])
    feats = torch.randn(6, 4) * 5
    sched.on_stage_end(_context(0, feats, ids0))
    assert torch.allclose(seen[0].norm(dim=1), torch.ones(6)), "features are L2-normalised"
    assert torch.allclose(seen[0], F.normalize(feats, dim=1))
    assert sched.pseudo_labels(0, ids0) is None
    assert sched.pseudo_labels(1, ids0).tolist() == [0, 1, 2, 2, 1, 0]
    sched.on_stage_end(_context(1, feats, ids1))
    # stage-1 label of id 10 is given[1][5] = 0, of id 11 is given[1][4] = 1, ...
    c1_by_ids0 = torch.tensor([0, 1, 1, 0, 2, 2])
    expected = (given[0] * 3 + c1_by_ids0).tolist()
    assert sched.pseudo_labels(2, ids0).tolist() == expected == [0, 4, 7, 6, 5, 2]
    query = torch.tensor([13, 10])
    assert sched.pseudo_labels(2, query).tolist() == [6, 0]
    assert sched.pseudo_labels(1, query).tolist() == [2, 0]


def test_pseudo_labels_before_clustering_is_a_clear_error():
    sched = MCLScheduler(epochs=1, num_stages=3, sampler="group")
    with pytest.raises(RuntimeError, match="on_stage_end"):
        sched.pseudo_labels(1, torch.arange(4))
    with pytest.raises(RuntimeError, match="on_stage_end"):
        sched.batch_sampler(1, torch.arange(4), 2, 1, 0, 0, 0)


def test_unknown_instance_id_is_rejected(monkeypatch):
    monkeypatch.setattr(sched_mod, "kmeans_labels", lambda f, k, **kw: torch.zeros(4).long())
    sched = MCLScheduler(epochs=1, num_stages=2, num_clusters=2)
    sched.on_stage_end(_context(0, torch.randn(4, 3), torch.arange(4)))
    with pytest.raises(ValueError, match=r"\[9\]"):
        sched.pseudo_labels(1, torch.tensor([1, 9]))


def test_real_kmeans_recovers_separated_factors_over_two_stages():
    """Stage 0 features carry factor a, stage 1 features factor b: groups = (a, b) pairs."""
    g = torch.Generator().manual_seed(0)
    n = 120
    a = torch.arange(n) % 2
    b = (torch.arange(n) // 2) % 3
    centres_a = torch.tensor([[1.0, 0.0, 0.0], [0.0, 1.0, 0.0]])
    centres_b = torch.tensor([[1.0, 0.0, 0.0], [0.0, 1.0, 0.0], [0.0, 0.0, 1.0]])
    f0 = centres_a[a] * 3 + 0.05 * torch.randn(n, 3, generator=g)
    f1 = centres_b[b] + 0.05 * torch.randn(n, 3, generator=g)
    for backend in ("sklearn", "torch"):
        sched = MCLScheduler(epochs=1, num_stages=3, num_clusters=2, kmeans=backend)
        sched.on_stage_end(_context(0, f0, torch.arange(n)))
        assert _same_partition(sched.pseudo_labels(1, torch.arange(n)), a)
        sched.num_clusters = 3  # the second clustering into 3 (test-only shortcut)
        sched.on_stage_end(_context(1, f1, torch.arange(n)))
        p = sched.pseudo_labels(2, torch.arange(n))
        assert _same_partition(p, a * 3 + b), backend


def test_kmeans_backends_deterministic_and_agree():
    g = torch.Generator().manual_seed(1)
    centres = torch.randn(5, 8, generator=g) * 4
    truth = torch.arange(300) % 5
    x = centres[truth] + 0.3 * torch.randn(300, 8, generator=g)
    for backend in ("sklearn", "torch"):
        l1 = kmeans_labels(x, 5, backend=backend, seed=3)
        l2 = kmeans_labels(x, 5, backend=backend, seed=3)
        assert torch.equal(l1, l2)
        assert l1.dtype == torch.long and l1.shape == (300,)
        assert _same_partition(l1, truth), backend
    with pytest.raises(ValueError, match="num_clusters"):
        kmeans_labels(x[:3], 5)
    with pytest.raises(ValueError, match="backend"):
        kmeans_labels(x, 5, backend="faiss")


# --------------------------------------------------------------------- stages


def test_plans_freeze_and_reinit_only_after_stage0():
    sched = MCLScheduler(epochs=3)
    assert sched.num_stages() == 4 and sched.num_clusters == 10 and sched.sampler == "mask"
    p0, p1 = sched.plan(0), sched.plan(1)
    assert (p0.epochs, p0.freeze, p0.reinit_from_stage0) == (3, (), False)
    assert (p1.epochs, p1.freeze, p1.reinit_from_stage0) == (3, ("text",), True)
    assert MCLScheduler(freeze="none").plan(1).freeze == ()
    assert MCLScheduler(freeze="image+text").plan(2).freeze == ("image", "text")
    assert MCLScheduler(freeze=[]).plan(1).freeze == ()
    with pytest.raises(ValueError, match="stage"):
        sched.plan(4)
    with pytest.raises(ValueError, match="sampler"):
        MCLScheduler(sampler="cluster")
    with pytest.raises(ValueError, match="overflow"):
        MCLScheduler(num_stages=30, num_clusters=10)
    assert MCLScheduler(sampler="mask").needs_pseudo_labels
    assert not MCLScheduler(sampler="group").needs_pseudo_labels


def test_no_clustering_after_the_last_stage():
    calls = []
    sched = MCLScheduler(epochs=1, num_stages=2, num_clusters=2)
    ctx = StageContext(stage=1, embed_training_set=lambda: calls.append(1) or (None, None))
    sched.on_stage_end(ctx)
    assert calls == []


# -------------------------------------------------------------------- combine


def test_combine_concatenates_then_normalises_once():
    sched = MCLScheduler()
    f0 = torch.tensor([[3.0, 0.0], [1.0, 1.0]])
    f1 = torch.tensor([[0.0, 4.0], [0.0, 0.0]])
    out = sched.combine([f0, f1])
    expected = torch.tensor([[0.6, 0.0, 0.0, 0.8], [0.5**0.5, 0.5**0.5, 0.0, 0.0]])
    torch.testing.assert_close(out, expected)
    # per-stage normalisation first would give [1, 0, 0, 1] / sqrt(2) for row 0
    assert not torch.allclose(out[0], torch.tensor([1.0, 0.0, 0.0, 1.0]) / 2**0.5)
    three = sched.combine([torch.randn(5, 2), torch.randn(5, 3), torch.randn(5, 4)])
    assert three.shape == (5, 9)
    torch.testing.assert_close(three.norm(dim=1), torch.ones(5))
    with pytest.raises(ValueError, match="stage 1"):
        sched.combine([torch.randn(5, 2), torch.randn(4, 2)])


# ---------------------------------------------------------------------- state


def _clustered(monkeypatch, stages_done: int) -> MCLScheduler:
    g = torch.Generator().manual_seed(5)
    labels = [torch.randint(0, 3, (40,), generator=g) for _ in range(stages_done)]
    it = iter(labels)
    monkeypatch.setattr(sched_mod, "kmeans_labels", lambda f, k, **kw: next(it))
    sched = MCLScheduler(epochs=1, num_stages=3, num_clusters=3)
    ids = torch.arange(100, 140)
    for s in range(stages_done):
        sched.on_stage_end(_context(s, torch.randn(40, 4), ids))
    return sched


def test_state_dict_round_trip_with_weights_only_load(monkeypatch):
    """Resume mid-stage: a fresh scheduler loaded from the checkpoint behaves identically."""
    sched = _clustered(monkeypatch, 2)
    buf = io.BytesIO()
    torch.save(sched.state_dict(), buf)
    buf.seek(0)
    state = torch.load(buf, weights_only=True)
    assert state["cluster_labels"].shape == (2, 40)
    fresh = MCLScheduler(epochs=1, num_stages=3, num_clusters=3)
    fresh.load_state_dict(state)
    ids = torch.arange(100, 140)
    for stage in (1, 2):
        assert torch.equal(fresh.pseudo_labels(stage, ids), sched.pseudo_labels(stage, ids))
        assert fresh.batch_sampler(stage, ids, 2, 1, 0, 0, 3) == sched.batch_sampler(
            stage, ids, 2, 1, 0, 0, 3
        )
    # the state of an unclustered scheduler round-trips too
    buf = io.BytesIO()
    torch.save(MCLScheduler().state_dict(), buf)
    buf.seek(0)
    empty = MCLScheduler()
    empty.load_state_dict(torch.load(buf, weights_only=True))
    assert empty.cluster_labels == [] and empty.instance_ids is None


def test_load_state_dict_rejects_other_num_clusters(monkeypatch):
    state = _clustered(monkeypatch, 1).state_dict()
    with pytest.raises(ValueError, match="num_clusters=3"):
        MCLScheduler(num_clusters=10).load_state_dict(state)


_DDP_WORKER = """
import sys, torch, torch.distributed as dist
from lightly_mm_mcl import scheduler as m
from lightly_mm_plugins.api import StageContext
rank, store_path, out = int(sys.argv[1]), sys.argv[2], sys.argv[3]
dist.init_process_group("gloo", store=dist.FileStore(store_path, 2), rank=rank, world_size=2)
# every rank clusters; pretend rank 1's k-means came out differently
mine = torch.tensor([0, 1, 2, 0, 1, 2]) if rank == 0 else torch.zeros(6).long()
m.kmeans_labels = lambda f, k, **kw: mine
s = m.MCLScheduler(epochs=1, num_stages=2, num_clusters=3, sampler="group")
feats = torch.randn(6, 3)
s.on_stage_end(StageContext(stage=0, embed_training_set=lambda: (feats, torch.arange(6))))
torch.save({"labels": s.pseudo_labels(1, torch.arange(6)),
            "batches": s.batch_sampler(1, torch.arange(6), 1, 2, rank, 0, 0)}, out)
dist.barrier()
dist.destroy_process_group()
"""


def test_ddp_ranks_share_rank0_labels_and_split_global_batches(tmp_path):
    import os
    import subprocess
    import sys

    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    store = tmp_path / "store"
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", _DDP_WORKER, str(r), str(store), str(tmp_path / f"r{r}")],
            env=env,
            stderr=subprocess.PIPE,
            text=True,
        )
        for r in range(2)
    ]
    for p in procs:
        _, err = p.communicate(timeout=120)
        assert p.returncode == 0, err
    out = [torch.load(tmp_path / f"r{r}", weights_only=True) for r in range(2)]
    assert out[0]["labels"].tolist() == out[1]["labels"].tolist() == [0, 1, 2, 0, 1, 2]
    assert len(out[0]["batches"]) == len(out[1]["batches"]) == 3
    for b0, b1 in zip(out[0]["batches"], out[1]["batches"]):
        assert b0 != b1 and out[0]["labels"][b0] == out[0]["labels"][b1]
