"""Issue #18 item 7: a run prints its progress bars and the results table, nothing else.

``lightly-mm train`` runs as a user runs it (a subprocess, the default data with
its text encoder); stderr has no warning, tip or Lightning info line, and
``--quiet`` prints only the results table.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

TINY = [
    *("--method", "clip", "--limit-train-samples", "16", "--batch-size", "8"),
    *("--epochs", "1", "--image-size", "8"),
]
NOISE = re.compile(r"warn|deprecat|Tip:|GPU available|TPU available|\.py:\d+|v_num", re.I)


def lightly_mm(*argv: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("LIGHTLY_MM_")}
    env.update(OMP_NUM_THREADS="1", PYTHONWARNINGS="default")  # show what a user sees
    return subprocess.run(
        [sys.executable, "-m", "lightly_mm_plugins.cli", "train", *TINY, *argv],
        capture_output=True,
        text=True,
        env=env,
        timeout=300,
    )


@pytest.mark.slow
def test_a_run_prints_no_warning(tmp_path: Path) -> None:
    proc = lightly_mm("--out", str(tmp_path / "run"))  # with both evaluations
    assert proc.returncode == 0, proc.stderr
    noisy = [line for line in proc.stderr.splitlines() if NOISE.search(line)]
    assert noisy == [], "\n".join(noisy)
    assert "Loading weights" not in proc.stderr  # the text encoder's loading bar
    assert "Results: method=clip" in proc.stdout and "v_num" not in proc.stdout


@pytest.mark.slow
def test_quiet_prints_only_the_results_table(tmp_path: Path) -> None:
    proc = lightly_mm("--quiet", "--no-eval", "--out", str(tmp_path / "run"))
    assert proc.returncode == 0, proc.stderr
    assert proc.stderr == ""
    lines = proc.stdout.strip().splitlines()
    assert lines[0].startswith("Results: method=clip data=default seed=0")
    assert lines[-2:] == [
        "(evaluation skipped: --no-eval)",
        f"Written to {tmp_path / 'run'}: encoders.pt, metrics.json, checkpoints/, logs/, *.png",
    ]
