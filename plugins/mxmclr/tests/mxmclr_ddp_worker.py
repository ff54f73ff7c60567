"""Worker of test_mxmclr_ddp.py: one rank of a gloo group (or the single process).

Ranks hold different numbers of caption folds (2 on rank 0, 3 on rank 1) and
share one instance id across ranks. An optional fifth argument is the loss's
``chunk_size`` (streaming path). Writes the loss, the gradients of the
inputs (of this rank's slice) and of the learnable temperature.
"""

from __future__ import annotations

import sys

import torch
import torch.distributed as dist
from lightly_mm_mxmclr.loss import MXMCLRLoss


def data() -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(0)
    a = torch.randn(4, 2, 3, generator=g, dtype=torch.float64)
    b = torch.randn(4, 3, 3, generator=g, dtype=torch.float64)
    mask_a = torch.tensor([[1, 1], [1, 0], [1, 1], [1, 1]]).bool()
    mask_b = torch.tensor([[1, 1, 0], [1, 0, 0], [1, 1, 1], [1, 0, 1]]).bool()
    b[~mask_b] = 0
    ids = torch.tensor([0, 1, 1, 2])  # id 1 on both ranks: one instance
    groups = torch.tensor([0, 0, 0, 1])
    return {"a": a, "b": b, "mask_a": mask_a, "mask_b": mask_b, "ids": ids, "groups": groups}


def main() -> None:
    rank, world, store_path, out = int(sys.argv[1]), int(sys.argv[2]), sys.argv[3], sys.argv[4]
    chunk = int(sys.argv[5]) if len(sys.argv) > 5 else None  # rows per block (streaming)
    torch.set_num_threads(1)
    if world > 1:
        store = dist.FileStore(store_path, world)
        dist.init_process_group("gloo", store=store, rank=rank, world_size=world)
    d = data()
    if world > 1:
        lo, hi = 2 * rank, 2 * rank + 2
        d = {k: v[lo:hi] for k, v in d.items()}
        if rank == 0:  # rank 0 never saw a third caption: its batch has 2 folds
            d["b"], d["mask_b"] = d["b"][:, :2], d["mask_b"][:, :2]
    a = d["a"].clone().requires_grad_(True)
    b = d["b"].clone().requires_grad_(True)
    loss_fn = MXMCLRLoss(
        temperature=0.2,
        soft_weight=0.5,
        learnable_temperature=True,
        gather_distributed=world > 1,
        chunk_size=chunk,
    ).double()
    loss = loss_fn(a, b, d["mask_a"], d["mask_b"], d["ids"], d["groups"])
    loss.backward()
    temp_grad = loss_fn.log_scale.grad.clone()
    value = loss.detach().clone()
    if world > 1:
        dist.all_reduce(temp_grad)
        dist.all_reduce(value)
        temp_grad, value = temp_grad / world, value / world
    torch.save(
        {"loss": value, "a": a.grad / world, "b": b.grad / world, "temp": temp_grad},
        f"{out}.rank{rank}",
    )
    if world > 1:
        dist.barrier()
        dist.destroy_process_group()


if __name__ == "__main__":
    main()
