"""``lightly-mm train --devices 2 --accelerator cpu``: Lightning ``ddp_spawn`` over gloo,
end to end through the command line."""

from __future__ import annotations

import csv
import json
import math
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from lightly_mm_plugins.training.checkpointing import load_checkpoint_file, load_exported

LIGHTLY_MM = Path(sys.executable).parent / "lightly-mm"


@pytest.mark.slow
def test_two_process_cpu_run_shards_batches_and_finishes(tmp_path):
    out = tmp_path / "ddp"
    cmd = [
        str(LIGHTLY_MM),
        "train",
        "--method",
        "clip",
        "--data",
        "synthetic",
        "--limit-train-samples",
        "64",
        "--batch-size",
        "8",
        "--epochs",
        "1",
        "--devices",
        "2",
        "--accelerator",
        "cpu",
        "--no-eval",
        "--trace-batches",
        "--quiet",
        "--out",
        str(out),
    ]
    env = dict(os.environ, HF_HUB_OFFLINE="1", OMP_NUM_THREADS="1", LIGHTLY_MM_TRACEBACK="1")
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]

    # Both ranks trained 64 / (8 x 2) = 4 steps, on different instances: per step
    # disjoint batches, and over the epoch every instance exactly once.
    traces = {
        r: [json.loads(line) for line in (out / "batch_trace" / f"rank{r}.jsonl").open()]
        for r in (0, 1)
    }
    assert [t["step"] for t in traces[0]] == [t["step"] for t in traces[1]] == [0, 1, 2, 3]
    for a, b in zip(traces[0], traces[1]):
        assert len(a["ids"]) == len(b["ids"]) == 8
        assert not set(a["ids"]) & set(b["ids"])
    seen = [i for r in (0, 1) for t in traces[r] for i in t["ids"]]
    assert len(seen) == len(set(seen)) == 64

    # The loss (averaged over the ranks) was logged at every step.
    rows = list(csv.DictReader(next((out / "logs").glob("version_*/metrics.csv")).open()))
    losses = [float(r["train_loss"]) for r in rows if r.get("train_loss")]
    assert len(losses) == 4 and all(math.isfinite(v) for v in losses)

    # The main process wrote the outputs from the workers' final state.
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["config"]["devices"] == "2" and "stopped_at_epoch" not in metrics
    exported = load_exported(out / "encoders.pt")
    ckpt = load_checkpoint_file(out / "checkpoints" / "last.ckpt")
    assert ckpt["lightly_mm"]["epochs_done"] == 1
    for m, state in exported["encoders"].items():
        for key, value in state.items():
            torch.testing.assert_close(value, ckpt["state_dict"][f"encoders.{m}.{key}"])
