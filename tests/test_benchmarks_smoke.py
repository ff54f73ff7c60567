"""Smoke test of benchmarks/losses.py: the quick configuration runs and prints its table.

Timings are never asserted (a benchmark's numbers depend on the machine); what is
checked is that the script runs end to end in a subprocess, prints the Markdown
table with every expected row and batch size, that its similarity-FLOP model
agrees with torch's own FLOP counter for the two references, and that a smoke
run writes nothing into ``benchmarks/results``.
"""

from __future__ import annotations

import importlib.util
import subprocess
import sys
from pathlib import Path
from types import ModuleType

import pytest

ROOT = Path(__file__).resolve().parent.parent
SCRIPT = ROOT / "benchmarks" / "losses.py"


def _load() -> ModuleType:
    spec = importlib.util.spec_from_file_location("bench_losses", SCRIPT)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules["bench_losses"] = module
    spec.loader.exec_module(module)
    return module


def _cells(line: str) -> list[str]:
    return [c.strip() for c in line.strip().strip("|").split("|")]


@pytest.fixture(scope="module")
def quick_run() -> subprocess.CompletedProcess[str]:
    results = ROOT / "benchmarks" / "results"
    before = sorted(results.iterdir()) if results.exists() else []
    proc = subprocess.run(
        [sys.executable, str(SCRIPT), "--quick", "--objectives", "clip", "--threads", "1"],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=ROOT,
    )
    after = sorted(results.iterdir()) if results.exists() else []
    assert after == before, "a --quick run must not write into benchmarks/results"
    return proc


def test_quick_run_prints_the_table(quick_run: subprocess.CompletedProcess[str]) -> None:
    assert quick_run.returncode == 0, quick_run.stderr[-3000:]
    out = quick_run.stdout
    assert "## Full table, D = 32" in out
    assert "## Summary: time× / memory× of NTXentLoss" in out
    assert "## Matmul rate (same run)" in out
    rows = [_cells(line) for line in out.splitlines() if line.startswith("| ")]
    full = [r for r in rows if len(r) == 12 and r[1] in ("64", "128")]
    labels = {(r[0], r[1]) for r in full}
    for b in ("64", "128"):
        for label in ("NTXentLoss (lightly)", "cross_modal_info_nce (host)", "clip"):
            assert (label, b) in labels, f"row {label!r} at B={b} missing:\n{out}"
        assert ("clip · CLIPLoss", b) in labels
    for r in full:
        assert r[2] not in ("—", ""), f"no time measured for {r[0]} B={r[1]}"
        assert float(r[2].replace(",", "")) > 0
        if r[0] == "NTXentLoss (lightly)":
            assert r[3] == "1.00×"


def test_similarity_model_matches_torch_flop_counter(
    quick_run: subprocess.CompletedProcess[str],
) -> None:
    """For bare references the similarity matmuls are all the matmuls torch counts."""
    rows = [_cells(line) for line in quick_run.stdout.splitlines() if line.startswith("| ")]
    checked = 0
    for r in rows:
        if len(r) == 12 and r[0] in ("NTXentLoss (lightly)", "clip · CLIPLoss"):
            assert r[6] == r[8], f"{r[0]} B={r[1]}: model {r[6]} GFLOP vs counted {r[8]}"
            checked += 1
    assert checked == 4


def test_batch_size_and_variant_arguments() -> None:
    bench = _load()
    parser = bench.build_parser()
    argv = ["--batch-sizes", "256,1024,4096", "--max-batch", "16384"]
    args = bench.resolve_args(parser.parse_args(argv), argv)
    assert args.batch_sizes == [256, 1024, 4096, 16384]
    argv = ["--max-batch", "1024"]
    assert bench.resolve_args(parser.parse_args(argv), argv).batch_sizes == [256, 1024]
    argv = ["--quick"]
    quick = bench.resolve_args(parser.parse_args(argv), argv)
    assert (quick.batch_sizes, quick.dims, quick.repeats, quick.no_write) == (
        [64, 128],
        [32],
        2,
        True,
    )
    label, name, kwargs = bench.parse_variant("tcl-noq=tcl:queue_size=0,alpha=0.5")
    assert (label, name, kwargs) == ("tcl-noq", "tcl", {"queue_size": 0, "alpha": 0.5})
    # FLOP model: 2 (B x B) similarities in P=8, both operands with gradient -> 3x.
    flops, text = bench.sim_model([(1, 4, 4, 8, 2, "BxB"), (1, 4, 4, 8, 2, "BxB")])
    assert flops == 2 * 2 * 4 * 4 * 8 * 3
    assert text == "2·BxB·8 (3x)"


def test_estimate_extrapolates_conservatively() -> None:
    bench = _load()
    small = bench.Result("x", 256, 128, time=0.01, peak=2**20)
    seconds, memory = bench.estimate([small], 1024, steps=10)
    assert seconds == pytest.approx(0.01 * 16 * 10)  # at least ~B^2
    assert memory == pytest.approx(16 * 2**20)
    cubic = [small, bench.Result("x", 512, 128, time=0.08, peak=4 * 2**20)]
    seconds, _ = bench.estimate(cubic, 1024, steps=1)
    assert seconds == pytest.approx(0.08 * 8)  # a measured B^3 trend is kept


def test_scaling_quick_run_prints_both_sweeps_and_writes_nothing() -> None:
    """benchmarks/scaling.py --quick: dense vs chunked InfoNCE and MXM-CLR, ratios to dense."""
    results = ROOT / "benchmarks" / "results"
    before = sorted(results.iterdir()) if results.exists() else []
    proc = subprocess.run(
        [sys.executable, str(ROOT / "benchmarks" / "scaling.py"), "--quick"],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=ROOT,
    )
    after = sorted(results.iterdir()) if results.exists() else []
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert after == before, "a --quick run must not write into benchmarks/results"
    rows = [_cells(line) for line in proc.stdout.splitlines() if line.startswith("| ")]
    points = {(r[0], r[1]): r for r in rows if len(r) == 6 and r[1].isdigit()}
    for label, xs in (("InfoNCE", ("64", "128")), ("MXM-CLR", ("1", "2"))):
        for x in xs:
            dense, chunked = points[(f"{label} dense", x)], points[(f"{label} chunk 32", x)]
            assert dense[3] == "1.00×", dense
            assert float(dense[2].replace(",", "")) > 0 and float(chunked[2].replace(",", "")) > 0
            assert chunked[3].endswith("×")


PIPELINE = ROOT / "benchmarks" / "pipeline.py"


def test_pipeline_benchmark_quick_run_prints_both_tables() -> None:
    """``benchmarks/pipeline.py --quick``: host and hand-written steps train on the same
    batches from the same weights, so their first losses agree (a check that the
    baseline does the same work; timings are printed, never asserted)."""
    results = ROOT / "benchmarks" / "results"
    before = sorted(results.iterdir())
    proc = subprocess.run(
        [sys.executable, str(PIPELINE), "--quick", "--threads", "1"],
        capture_output=True,
        text=True,
        timeout=300,
        cwd=ROOT,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert sorted(results.iterdir()) == before, "a --quick run must not write results"
    out = proc.stdout
    assert "## Training throughput (method `clip`)" in out and "## Start-up" in out
    table = [_cells(line) for line in out.splitlines() if line.startswith("| ")]
    rows = {r[0]: r for r in table}
    vectors = {r[1]: r for r in table if r[0] == "vectors"}
    assert set(vectors) == {"hand", "hand-seeded"}, out
    for row in vectors.values():
        host, hand = (float(x.replace(",", "")) for x in row[3:5])
        assert host > 0 and hand > 0
        assert float(row[-2]) < 1e-4, f"host and hand-written losses differ: {row}"
    for command in ("`import lightly`", "`import lightly_mm_plugins + discovery`"):
        assert command in rows, out
    assert "`lightly-mm plugins`" in rows


def test_vs_open_clip_rows_and_ratios() -> None:
    pytest.importorskip("open_clip")
    bench = _load()
    rows, section = bench.vs_open_clip([12, 24], dim=8, repeats=1, threads=1)
    names = {r["row"] for r in rows}
    assert bench.VS_OPEN_CLIP in names and "MXMCLRLoss, 3x3 folds (N/3 instances)" in names
    assert all(r["ratio"] > 0 for r in rows)
    assert [r["ratio"] for r in rows if r["row"] == bench.VS_OPEN_CLIP] == [1.0, 1.0]
    assert section.startswith("## Against open_clip's ClipLoss")


def test_official_cacr_and_memory_tables() -> None:
    pytest.importorskip("open_clip")
    bench = _load()
    cacr = bench.vs_official_cacr(8, 3, 20, 4, repeats=1, threads=1)
    values = cacr.split("same values (loss ")[1].split(")")[0].split(" vs ")
    assert float(values[0]) == pytest.approx(float(values[1]), rel=1e-5)  # same loss
    memory = bench.chunked_memory(30, 4, 8, threads=1)
    assert memory.count("\n| ") == 6  # header + five rows
