"""benchmarks/quality.py: aggregation maths, protocol reuse, and a quick end-to-end run."""

from __future__ import annotations

import importlib.util
import json
import statistics
import sys
from pathlib import Path
from types import ModuleType

import pytest

ROOT = Path(__file__).resolve().parent.parent


def _load() -> ModuleType:
    spec = importlib.util.spec_from_file_location("bench_quality", ROOT / "benchmarks/quality.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules["bench_quality"] = module
    spec.loader.exec_module(module)
    return module


def test_summary_is_mean_and_sample_std_with_a_random_init_row() -> None:
    q = _load()
    columns = [("acc", "linear_probe/joint")]
    runs = {
        "a": [
            {"init": {"linear_probe/joint": 0.5}, "trained": {"linear_probe/joint": 0.7}},
            {"init": {"linear_probe/joint": 0.6}, "trained": {"linear_probe/joint": 0.9}},
        ],
        "b": [{"trained": {"linear_probe/joint": 0.8}}, {"trained": {}}],
    }
    table = q.summarize(runs, columns)
    assert list(table) == ["random init", "a", "b"]
    assert table["random init"]["acc"] == pytest.approx((0.55, statistics.stdev([0.5, 0.6])))
    assert table["a"]["acc"] == pytest.approx((0.8, statistics.stdev([0.7, 0.9])))
    assert table["b"]["acc"] == (0.8, 0.0)  # the run without the metric is not a zero
    text = q.format_table(table, ["acc"])
    assert "| a | **0.800 ± 0.141** |" in text
    assert "| b | **0.800 ± 0.000** |" in text  # ties are both bold
    assert "| random init | 0.550 ± 0.071 |" in text  # never bold


def test_a_run_with_another_protocol_is_not_reused(tmp_path: Path) -> None:
    q = _load()
    out = tmp_path / "synthetic" / "clip-s0"
    out.mkdir(parents=True)
    cfg = {"data": "synthetic", "batch_size": 8, "epochs": 1, "limit_train_samples": 64}
    (out / "metrics.json").write_text(json.dumps({"config": cfg, "trained": {}}))
    with pytest.raises(SystemExit, match="another protocol"):
        q.train_one("synthetic", "clip", 0, tmp_path, quick=True)
    cfg["batch_size"] = 32
    (out / "metrics.json").write_text(json.dumps({"config": cfg, "trained": {"x": 1.0}}))
    assert q.train_one("synthetic", "clip", 0, tmp_path, quick=True)["trained"] == {"x": 1.0}


def test_quick_run_trains_and_prints_the_table(tmp_path: Path) -> None:
    q = _load()
    results = tmp_path / "results"
    text = q.main(
        [
            *("--quick", "--data", "synthetic", "--methods", "clip", "--seeds", "0"),
            *("--runs-dir", str(tmp_path / "runs"), "--results", str(results)),
        ]
    )
    assert (tmp_path / "runs" / "synthetic" / "clip-s0" / "metrics.json").exists()
    rows = [line for line in text.splitlines() if line.startswith("| ")]
    assert rows[0].startswith("| method | shared labels | unique-to-x1 labels")
    assert [r.split("|")[1].strip() for r in rows[1:]] == ["random init", "clip"]
    assert "–" not in rows[2], "every column has a value"
    assert not results.exists(), "a --quick run writes no results"
