"""Worker for the DDP equivalence test (spawned by tests/test_ddp.py).

Each rank encodes its half of a fixed float64 batch with tiny linear encoders,
computes the objective with ``gather_distributed=True`` and backpropagates;
gradients are then averaged across ranks exactly as DDP does. Rank 0 writes
its loss, averaged gradients and objective state so the test can compare them
with one process on the whole batch.
"""

from __future__ import annotations

import sys
from typing import Any

import torch
import torch.distributed as dist
from torch import nn

from lightly_mm_plugins import get_host
from lightly_mm_plugins.testing import EMBEDDING_DIMS, random_batch

INPUT_DIM = 10


def build(method: str, world: int) -> tuple[nn.Module, nn.ModuleDict]:
    torch.manual_seed(0)
    obj = (
        get_host()
        .create(
            "objectives",
            method,
            embedding_dims=dict(EMBEDDING_DIMS),
            modalities=tuple(EMBEDDING_DIMS),
            gather_distributed=world > 1,
        )
        .double()
    )
    enc = nn.ModuleDict({m: nn.Linear(INPUT_DIM, d) for m, d in EMBEDDING_DIMS.items()}).double()
    return obj, enc


def step(method: str, rank: int, world: int, total: int) -> dict[str, Any]:
    obj, enc = build(method, world)
    template = random_batch(obj, batch_size=total, seed=1, dtype=torch.float64)
    g = torch.Generator().manual_seed(2)
    inputs = {
        m: torch.randn(*e.shape[:2], INPUT_DIM, generator=g, dtype=torch.float64)
        for m, e in template.embeddings.items()
    }
    n = total // world
    lo, hi = rank * n, (rank + 1) * n
    emb = {m: enc[m](x[lo:hi]) for m, x in inputs.items()}
    batch = template.replace(
        embeddings=emb,
        masks={m: t[lo:hi] for m, t in template.masks.items()},
        instance_ids=template.instance_ids[lo:hi],
        labels=None if template.labels is None else template.labels[lo:hi],
        pseudo_labels=None if template.pseudo_labels is None else template.pseudo_labels[lo:hi],
        momentum=None
        if template.momentum is None
        else {m: t[lo:hi] for m, t in template.momentum.items()},
        local=None if template.local is None else {m: t[lo:hi] for m, t in template.local.items()},
        local_masks=None
        if template.local_masks is None
        else {m: t[lo:hi] for m, t in template.local_masks.items()},
        momentum_local=None
        if template.momentum_local is None
        else {m: t[lo:hi] for m, t in template.momentum_local.items()},
    )
    torch.manual_seed(3)
    loss = obj(batch).loss
    loss.backward()
    params = dict(enc.named_parameters(prefix="enc"))
    params.update(dict(obj.named_parameters(prefix="obj")))
    grads = {}
    for name, p in params.items():
        grad = p.grad if p.grad is not None else torch.zeros_like(p)
        if world > 1:
            dist.all_reduce(grad)
            grad = grad / world
        grads[name] = grad
    loss_value = loss.detach().clone()
    if world > 1:
        dist.all_reduce(loss_value)
        loss_value = loss_value / world
    buffers = {k: v.clone() for k, v in obj.named_buffers()}
    return {"loss": loss_value, "grads": grads, "buffers": buffers}


def main() -> None:
    method, rank, world, total, store_path, out_path = sys.argv[1:7]
    rank_i, world_i = int(rank), int(world)
    if world_i > 1:
        store = dist.FileStore(store_path, world_i)
        dist.init_process_group("gloo", store=store, rank=rank_i, world_size=world_i)
    result = step(method, rank_i, world_i, int(total))
    torch.save(result, f"{out_path}.rank{rank_i}")
    if world_i > 1:
        dist.barrier()
        dist.destroy_process_group()


if __name__ == "__main__":
    main()
