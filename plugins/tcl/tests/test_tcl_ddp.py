"""Two gloo ranks with ``gather_distributed=True`` equal one process on the whole batch.

Complements the host's ``tests/test_ddp.py`` (which runs the default objective
with pseudo labels) on the paths it does not reach: the queue in the loss
(second step, after an all-gathered enqueue), online locals with gradient
(``local_from_momentum=False``), text locals of a different length on each
rank (padded before the gather) and a caption without any valid token (LMI's
mean over the global batch). Gradients: DDP averages parameter gradients, so
``mean_r grad_r`` must equal the single-process gradient; an input row's
gradient on its rank is ``world`` times the single-process one.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import torch

torch.set_num_threads(1)

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

WORLD = 2
TOTAL = 6
DIMS = {"image": 6, "text": 5}
TOKENS = 5
#: Valid tokens per caption: rank 0 holds lengths <= 3, rank 1 has an empty caption.
LENGTHS = [1, 3, 2, 5, 0, 4]
CONFIGS = {
    "queue_online_locals": {"local_from_momentum": False},
    "pseudo_labels": {},
}


def make_batch(rank: int, world: int):  # -> EncodedBatch (imported in the worker)
    from lightly_mm_plugins.api import EncodedBatch

    g = torch.Generator().manual_seed(0)

    def randn(*shape: int) -> torch.Tensor:
        return torch.randn(*shape, generator=g, dtype=torch.float64)

    emb = {"image": randn(TOTAL, 2, DIMS["image"]), "text": randn(TOTAL, 1, DIMS["text"])}
    mom = {m: randn(*e.shape) for m, e in emb.items()}
    local = {
        "image": randn(TOTAL, 2, 16, DIMS["image"]),
        "text": randn(TOTAL, 1, TOKENS, DIMS["text"]),
    }
    mom_local = {m: randn(*x.shape) for m, x in local.items()}
    lengths = torch.tensor(LENGTHS)
    masks = {
        "image": torch.ones(TOTAL, 2, 16, dtype=torch.bool),
        "text": (torch.arange(TOKENS)[None] < lengths[:, None]).unsqueeze(1),
    }
    n = TOTAL // world
    rows = slice(rank * n, (rank + 1) * n)
    # Pad the text to the longest caption of this rank only (as a per-rank collate does).
    keep = int(lengths[rows].max()) if world > 1 else TOKENS
    emb = {m: e[rows].clone().requires_grad_(True) for m, e in emb.items()}
    local = {m: x[rows].clone() for m, x in local.items()}
    local["text"] = local["text"][:, :, :keep]
    local = {m: x.requires_grad_(True) for m, x in local.items()}
    mom_local = {m: x[rows] for m, x in mom_local.items()}
    mom_local["text"] = mom_local["text"][:, :, :keep]
    masks = {m: x[rows] for m, x in masks.items()}
    masks["text"] = masks["text"][:, :, :keep]
    return EncodedBatch.from_tensors(
        emb,
        instance_ids=torch.arange(TOTAL)[rows],
        momentum={m: e[rows] for m, e in mom.items()},
        local=local,
        momentum_local=mom_local,
        local_masks=masks,
        pseudo_labels=torch.tensor([0, 1, 1, 0, 1, 0])[rows],
    )


def run(config: str, rank: int, world: int) -> dict[str, object]:
    """Two training forwards; gradients and buffers after the second."""
    import torch.distributed as dist
    from lightly_mm_tcl.objective import TCLObjective

    torch.manual_seed(0)
    obj = TCLObjective(
        DIMS,
        embed_dim=4,
        queue_size=10,
        local_pool_grid=2,
        gather_distributed=world > 1,
        **CONFIGS[config],
    ).double()
    obj.train()
    obj(make_batch(rank, world))
    batch = make_batch(rank, world)
    if config != "pseudo_labels":
        batch.pseudo_labels = None
    loss = obj(batch).loss
    loss.backward()
    grads = {n: p.grad.clone() for n, p in obj.named_parameters() if p.grad is not None}
    inputs = {}
    for kind, tensors in (("emb", batch.embeddings), ("local", batch.local)):
        for m, x in tensors.items():
            grad = torch.zeros_like(x) if x.grad is None else x.grad / world
            if kind == "local" and m == "text":  # back to the full token length
                grad = torch.nn.functional.pad(grad, (0, 0, 0, TOKENS - grad.shape[2]))
            inputs[f"{kind}.{m}"] = grad
    value = loss.detach().clone()
    if world > 1:
        for g in grads.values():
            dist.all_reduce(g)
            g /= world
        dist.all_reduce(value)
        value /= world
        for name, x in list(inputs.items()):
            parts = [torch.empty_like(x) for _ in range(world)]
            dist.all_gather(parts, x.contiguous())
            inputs[name] = torch.cat(parts)
    buffers = {n: b.clone() for n, b in obj.named_buffers()}
    return {"loss": value, "grads": grads, "inputs": inputs, "buffers": buffers}


def _worker(rank: int, store: str, out: str) -> None:
    import torch.distributed as dist

    dist.init_process_group("gloo", store=dist.FileStore(store, WORLD), rank=rank, world_size=WORLD)
    results = {c: run(c, rank, WORLD) for c in CONFIGS}
    if rank == 0:
        torch.save(results, out)
    dist.barrier()
    dist.destroy_process_group()


def test_two_ranks_equal_one_process(tmp_path: Path) -> None:
    out = tmp_path / "ranks.pt"
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    code = (
        f"import sys; sys.path.insert(0, {str(HERE)!r}); import test_tcl_ddp as t; "
        f"t._worker(int(sys.argv[1]), {str(tmp_path / 'store')!r}, {str(out)!r})"
    )
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", code, str(r)], env=env, stderr=subprocess.PIPE, text=True
        )
        for r in range(WORLD)
    ]
    for p in procs:
        _, err = p.communicate(timeout=120)
        assert p.returncode == 0, err
    ranks = torch.load(out, weights_only=True)
    for config in CONFIGS:
        single = run(config, 0, 1)
        got = ranks[config]
        torch.testing.assert_close(got["loss"], single["loss"], rtol=1e-9, atol=1e-12)
        assert got["grads"].keys() == single["grads"].keys()
        for kind in ("grads", "inputs", "buffers"):
            for name, value in single[kind].items():
                torch.testing.assert_close(
                    got[kind][name],
                    value,
                    rtol=1e-9,
                    atol=1e-12,
                    msg=lambda m, c=config, k=kind, n=name: f"{c}: {k} {n} differs: {m}",
                )
