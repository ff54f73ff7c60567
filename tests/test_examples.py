"""Every Lightly-style example script runs for a few steps with its objective taken by name."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

EXAMPLES = Path(__file__).resolve().parents[1] / "examples" / "lightly"
SCRIPTS = sorted(EXAMPLES.glob("*.py"))


def test_there_is_a_script_per_method():
    assert {p.stem for p in SCRIPTS} == {"clip", "tcl", "mxmclr", "mcl", "cct", "factorcl"}


@pytest.mark.slow
@pytest.mark.parametrize("script", SCRIPTS, ids=lambda p: p.stem)
def test_example_script_runs(script, tmp_path):
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": "1"}
    proc = subprocess.run(
        [sys.executable, str(script), "--max-steps", "3", "--batch-size", "16"],
        capture_output=True,
        text=True,
        timeout=600,
        env=env,
        cwd=tmp_path,
    )
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-4000:]
    assert "final train_loss" in proc.stdout
    if script.stem == "mcl":  # the stage boundary ran: one clustering, stage 1 trained
        assert "stages run: 2; clusterings: 1" in proc.stdout
    assert len(script.read_text().splitlines()) <= 130, "keep the example short"
