"""The group batch sampler: the behaviour of the official ``MCL_batch_sampler_DDP``."""

from __future__ import annotations

import pytest
import torch
from lightly_mm_mcl.scheduler import MCLScheduler, _epoch_seed, group_batches

# group sizes 10, 7, 3, 12 (labels deliberately not contiguous: 0, 4, 5, 9)
SIZES = {0: 10, 4: 7, 5: 3, 9: 12}


def _groups(seed: int = 0) -> torch.Tensor:
    labels = torch.cat([torch.full((n,), g) for g, n in SIZES.items()])
    return labels[torch.randperm(labels.numel(), generator=torch.Generator().manual_seed(seed))]


def _official(groups: torch.Tensor, bs: int, world: int, rank: int, perms: dict) -> list:
    """The official sampler's loop, written from ``my_training/data.py`` with given shuffles."""
    num = int(groups.max()) + 1
    members = {i: (groups == i).nonzero().flatten().tolist() for i in range(num)}
    lists: dict[int, list[int]] = {i: [] for i in range(num)}
    for i in range(num):
        rand_idx = perms.get(i, [])
        for j in range(len(rand_idx) // world // bs * bs * world):
            if j % world == rank:
                lists[i].append(members[i][rand_idx[j]])
    out, batch, modulo = [], [], 0
    while any(len(v) > 0 for v in lists.values()):
        if lists[modulo]:
            batch.append(lists[modulo].pop())
            if len(batch) == bs:
                out.append(batch)
                batch = []
                modulo = (modulo + 1) % num
        else:
            batch = []
            modulo = (modulo + 1) % num
    return out


@pytest.mark.parametrize("world", [1, 2, 3])
def test_single_group_sizes_round_robin_and_rank_split(world):
    groups = _groups()
    bs = 2
    per_rank = [group_batches(groups, bs, world, r, seed=1, epoch=4) for r in range(world)]
    gbs = bs * world
    batches_per_group = {g: n // gbs for g, n in SIZES.items()}
    # round-robin order over groups (ascending label), skipping exhausted / too small groups
    order = []
    for k in range(max(batches_per_group.values())):
        order += [g for g in sorted(SIZES) if k < batches_per_group[g]]
    for batches in per_rank:
        assert len(batches) == len(order), "every rank gets the same number of batches"
        assert all(len(b) == bs for b in batches)
        seq = []
        for b in batches:
            labels = groups[b].unique()
            assert labels.numel() == 1, "every batch comes from one group"
            seq.append(int(labels))
        assert seq == order
    if world * bs > 3:
        assert all(5 not in groups[b].tolist() for b in per_rank[0]), "3-member group never used"
    seen = [i for batches in per_rank for b in batches for i in b]
    assert len(seen) == len(set(seen)), "ranks are disjoint and no index repeats in an epoch"
    for step in range(len(order)):  # the global batch at each step: one group, B*W distinct
        union = [i for r in range(world) for i in per_rank[r][step]]
        assert len(set(union)) == gbs
        assert groups[union].unique().numel() == 1
    assert len(seen) == sum(n * gbs for n in batches_per_group.values())


def test_matches_the_official_loop_given_the_same_shuffles():
    groups = _groups(3)
    bs, world, seed, epoch = 2, 2, 5, 1
    gen = torch.Generator().manual_seed(_epoch_seed(seed, epoch))
    perms = {g: torch.randperm(n, generator=gen).tolist() for g, n in sorted(SIZES.items())}
    for rank in range(world):
        ours = group_batches(groups, bs, world, rank, seed=seed, epoch=epoch)
        official = _official(groups, bs, world, rank, perms)
        assert len(ours) == len(official)
        # same group sequence; the official sampler pops from the end, so the k-th batch of a
        # group is our (last - k)-th batch of that group, in reverse order
        by_group_ours: dict[int, list] = {}
        by_group_official: dict[int, list] = {}
        for b in ours:
            by_group_ours.setdefault(int(groups[b[0]]), []).append(b)
        for b in official:
            by_group_official.setdefault(int(groups[b[0]]), []).append(b)
        assert [int(groups[b[0]]) for b in ours] == [int(groups[b[0]]) for b in official]
        for g, batches in by_group_official.items():
            assert [list(reversed(b)) for b in reversed(batches)] == by_group_ours[g]


def test_deterministic_per_seed_and_epoch():
    groups = _groups()
    a = group_batches(groups, 2, 2, 1, seed=0, epoch=3)
    assert a == group_batches(groups, 2, 2, 1, seed=0, epoch=3)
    assert a != group_batches(groups, 2, 2, 1, seed=0, epoch=4)
    assert a != group_batches(groups, 2, 2, 1, seed=1, epoch=3)


def test_no_full_group_is_a_clear_error():
    with pytest.raises(ValueError, match="sampler='mask'"):
        group_batches(_groups(), batch_size=8, world_size=2)
    with pytest.raises(ValueError, match="rank"):
        group_batches(_groups(), batch_size=2, world_size=2, rank=2)


def test_scheduler_maps_dataset_indices_through_instance_ids():
    """batch_sampler returns dataset indices; labels are looked up by instance id."""
    n = 24
    ids_clustered = torch.arange(n) + 1000
    labels = (torch.arange(n) % 3).long()
    sched = MCLScheduler(epochs=1, num_stages=2, num_clusters=3, sampler="group")
    sched.load_state_dict(
        {
            "format": 1,
            "num_clusters": 3,
            "instance_ids": ids_clustered,
            "cluster_labels": labels[None],
        }
    )
    dataset_ids = ids_clustered.flip(0)  # dataset index i holds instance 1000 + n - 1 - i
    assert sched.batch_sampler(0, dataset_ids, 4, 1, 0, 0, 0) is None
    batches = sched.batch_sampler(1, dataset_ids, 4, 1, 0, seed=0, epoch=0)
    assert len(batches) == 6
    for b in batches:
        inst = dataset_ids[b]
        assert labels[inst - 1000].unique().numel() == 1
    mask_mode = MCLScheduler(epochs=1, num_stages=2, num_clusters=3, sampler="mask")
    mask_mode.load_state_dict(sched.state_dict())
    assert mask_mode.batch_sampler(1, dataset_ids, 4, 1, 0, 0, 0) is None
    assert mask_mode.pseudo_labels(1, dataset_ids).tolist() == labels.flip(0).tolist()
