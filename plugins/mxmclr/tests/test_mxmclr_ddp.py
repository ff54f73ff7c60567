"""gather_distributed: 2 gloo ranks with unequal fold counts and a shared id == 1 process."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

WORKER = Path(__file__).with_name("mxmclr_ddp_worker.py")


def _run(world: int, tmp: Path, chunk: int | None = None) -> list[dict]:
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    store, out = tmp / f"store{world}", tmp / f"out{world}"
    extra = [] if chunk is None else [str(chunk)]
    procs = [
        subprocess.Popen(
            [sys.executable, str(WORKER), str(r), str(world), str(store), str(out), *extra],
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for r in range(world)
    ]
    for p in procs:
        try:
            _, err = p.communicate(timeout=120)
        except subprocess.TimeoutExpired:
            for q in procs:
                q.kill()
            pytest.fail("DDP worker timed out")
        assert p.returncode == 0, err
    return [torch.load(f"{out}.rank{r}", weights_only=True) for r in range(world)]


@pytest.mark.slow
@pytest.mark.parametrize("chunk", [None, 3])
def test_two_ranks_with_unequal_folds_equal_one_process(tmp_path, chunk):
    single = _run(1, tmp_path)[0]  # dense, one process
    ranks = _run(2, tmp_path, chunk)
    torch.testing.assert_close(ranks[0]["loss"], single["loss"], rtol=1e-10, atol=1e-12)
    torch.testing.assert_close(ranks[0]["temp"], single["temp"], rtol=1e-10, atol=1e-12)
    for r, part in enumerate(ranks):
        lo, hi = 2 * r, 2 * r + 2
        torch.testing.assert_close(part["a"], single["a"][lo:hi], rtol=1e-10, atol=1e-12)
        folds = part["b"].shape[1]  # rank 0 was padded to 3 folds only inside the loss
        torch.testing.assert_close(part["b"], single["b"][lo:hi, :folds], rtol=1e-10, atol=1e-12)
    assert ranks[0]["b"].shape[1] == 2
