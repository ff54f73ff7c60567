"""DDP equivalence: 2 gloo processes == 1 process on the concatenated batch.

For every registered objective that takes ``gather_distributed``, two CPU
processes (torch.distributed, gloo, spawned here, bounded in time) each see
half of a float64 batch; their loss and DDP-averaged gradients on the encoders
and the objective's parameters must equal one process on the whole batch to
1e-6 relative, and buffers (queues) must be identical across ranks.
"""

from __future__ import annotations

import inspect
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

import lightly_mm_plugins as lmm

WORKER = Path(__file__).with_name("ddp_worker.py")


def _gathering_objectives() -> list[str]:
    names = []
    for entry in lmm.get_host().registry("objectives").entries():
        try:
            params = inspect.signature(entry.resolve()).parameters
        except Exception:
            continue
        if "gather_distributed" in params:
            names.append(entry.name)
    return names


def _run(method: str, world: int, tmp: Path, total: int = 8) -> list[dict]:
    store = tmp / f"store-{world}"
    out = tmp / f"out-{world}"
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(WORKER.parent)}
    procs = [
        subprocess.Popen(
            [
                sys.executable,
                str(WORKER),
                method,
                str(r),
                str(world),
                str(total),
                str(store),
                str(out),
            ],
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for r in range(world)
    ]
    for p in procs:
        try:
            _, err = p.communicate(timeout=180)
        except subprocess.TimeoutExpired:
            for q in procs:
                q.kill()
            pytest.fail(f"{method}: DDP worker timed out")
        assert p.returncode == 0, err
    return [torch.load(f"{out}.rank{r}", weights_only=True) for r in range(world)]


@pytest.mark.slow
@pytest.mark.parametrize("method", _gathering_objectives())
def test_two_ranks_equal_one_process(method, tmp_path):
    single = _run(method, 1, tmp_path)[0]
    ranks = _run(method, 2, tmp_path)
    torch.testing.assert_close(ranks[0]["loss"], single["loss"], rtol=1e-6, atol=1e-9)
    for name, grad in single["grads"].items():
        torch.testing.assert_close(
            ranks[0]["grads"][name],
            grad,
            rtol=1e-6,
            atol=1e-9,
            msg=lambda m, n=name: f"{method}: gradient of {n} differs: {m}",
        )
    for name, buf in ranks[0]["buffers"].items():
        torch.testing.assert_close(ranks[1]["buffers"][name], buf, rtol=0, atol=0)
        torch.testing.assert_close(
            buf,
            single["buffers"][name],
            rtol=1e-6,
            atol=1e-9,
            msg=lambda m, n=name: f"{method}: buffer {n} differs from one process: {m}",
        )


def test_clip_is_covered():
    assert "clip" in _gathering_objectives()
