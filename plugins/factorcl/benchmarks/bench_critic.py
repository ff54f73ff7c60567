"""Fast (broadcast) vs tiled (official) concat critic: time and memory at B=256.

Measures one InfoNCE bound forward + backward with the official critic
(hidden 512, layers 1, ReLU) for the input sizes of FactorCL's unconditional
(128 + 128) and SSL-conditional (256 + 256) terms, on the CPU, one thread.

* time: median wall time of ``--repeats`` forward+backward passes.
* saved: bytes of the tensors autograd keeps for backward (unique storages,
  counted with ``torch.autograd.graph.saved_tensors_hooks``).
* peak RSS: increase of the process's peak resident memory over a fresh
  process that only built the inputs (each case runs in its own subprocess).

Usage::

    python plugins/factorcl/benchmarks/bench_critic.py [--batch 256] [--repeats 5]
"""

from __future__ import annotations

import argparse
import json
import resource
import statistics
import subprocess
import sys
import time


def _case(batch: int, dim: int, efficient: bool, repeats: int, measure: str) -> dict:
    import torch

    torch.set_num_threads(1)
    torch.manual_seed(0)
    from lightly_mm_factorcl.loss import InfoNCEBound

    bound = InfoNCEBound(dim, dim, efficient=efficient)
    x = torch.randn(batch, dim, requires_grad=True)
    y = torch.randn(batch, dim, requires_grad=True)
    base = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    if measure == "baseline":
        return {"rss_kib": base}
    saved: dict[int, int] = {}

    def pack(t: torch.Tensor) -> torch.Tensor:
        storage = t.untyped_storage()
        saved[storage.data_ptr()] = storage.nbytes()
        return t

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        loss = bound(x, y)
    loss.backward()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        loss = bound(x, y)
        loss.backward()
        times.append(time.perf_counter() - start)
    return {
        "time_s": statistics.median(times),
        "saved_mib": sum(saved.values()) / 2**20,
        "rss_kib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--batch", type=int, default=256)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--case", default=None, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.case:
        dim, efficient, measure = args.case.split(",")
        print(json.dumps(_case(args.batch, int(dim), efficient == "1", args.repeats, measure)))
        return

    def run(dim: int, efficient: bool, measure: str) -> dict:
        flag = "1" if efficient else "0"
        out = subprocess.run(
            [
                sys.executable,
                __file__,
                "--batch",
                str(args.batch),
                "--repeats",
                str(args.repeats),
                "--case",
                f"{dim},{flag},{measure}",
            ],
            check=True,
            capture_output=True,
            text=True,
        )
        return json.loads(out.stdout)

    print(f"B={args.batch}, hidden 512, layers 1, CPU 1 thread, forward+backward of InfoNCEBound")
    print(
        "| critic input | variant | time (s) | saved for backward (MiB) | peak RSS increase (MiB) |"
    )
    print("|---|---|---|---|---|")
    for dim in (128, 256):
        base = run(dim, True, "baseline")["rss_kib"]
        for efficient in (False, True):
            r = run(dim, efficient, "full")
            name = "fast (broadcast)" if efficient else "tiled (official)"
            rss = (r["rss_kib"] - base) / 1024
            print(
                f"| {dim} + {dim} | {name} | {r['time_s']:.3f} | {r['saved_mib']:.0f} | {rss:.0f} |"
            )


if __name__ == "__main__":
    main()
