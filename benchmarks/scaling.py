#!/usr/bin/env python
"""Dense vs streaming (chunked) contrastive losses: time and peak memory vs size.

Two sweeps, each run against its dense baseline in the same run (issue 11, part 2):

* **InfoNCE vs batch size** ``N``: the host's symmetric
  :func:`lightly_mm_plugins.losses.cross_modal_info_nce` on two ``(N, D)``
  tensors, dense (``chunk_size=None``: two ``(N, N)`` logit matrices kept for
  the backward) against the streaming path (``chunk_size=C``: row blocks, a
  running log-sum-exp per row and column, the backward recomputes the blocks);
* **MXM-CLR vs observations per instance** ``V``: :class:`MXMCLRLoss` on ``B``
  instances with ``V`` observations of both modalities (two ``(B V) x (B V)``
  score matrices dense), dense against ``chunk_size=C``.

Per point: the median of ``--repeats`` forward + backward steps after
``--warmup`` discarded ones, and the peak extra memory of one step (CPU: the
resident-set high-water mark of the measuring process above its level before
the step, see :func:`peak_extra_cpu`; CUDA: ``torch.cuda.max_memory_allocated``
minus the memory allocated before the step). A point whose extrapolated cost
exceeds ``--time-budget`` or ``--memory-budget`` is skipped (and larger ones of
the same row). Points run in one worker subprocess that is restarted if it dies.

Example:
    python benchmarks/scaling.py                       # CPU, 1 thread, writes results
    python benchmarks/scaling.py --quick               # smoke configuration, writes nothing
    python benchmarks/scaling.py --device cuda --max-n 65536
"""

from __future__ import annotations

import argparse
import datetime as dt
import gc
import json
import math
import os
import platform
import statistics
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "benchmarks" / "results"
#: glibc allocator settings of the worker while it times (as benchmarks/losses.py):
#: fixed thresholds so every point is timed under the same allocator behaviour.
MALLOC_ENV = {"MALLOC_MMAP_THRESHOLD_": str(32 * 2**20), "MALLOC_TRIM_THRESHOLD_": str(64 * 2**20)}
M_TRIM_THRESHOLD, M_MMAP_THRESHOLD = -1, -3  # mallopt parameters (glibc malloc.h)


# =====================================================================================
# Worker side (a subprocess): one JSON task per stdin line, one JSON answer per line.
# =====================================================================================


def _status_kib(key: str) -> int:
    with open("/proc/self/status") as fh:
        for line in fh:
            if line.startswith(key + ":"):
                return int(line.split()[1])
    raise KeyError(key)


def _glibc() -> Any | None:
    import ctypes
    import ctypes.util

    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        libc.mallopt.argtypes = [ctypes.c_int, ctypes.c_int]
        libc.malloc_trim.argtypes = [ctypes.c_size_t]
        return libc
    except (OSError, AttributeError):
        return None


def peak_extra_cpu(step: Callable[[], None]) -> int | None:
    """Bytes the resident set of this process grows above its level before ``step()``.

    Linux only: free heap pages are handed back (``malloc_trim``) and glibc's
    mmap threshold is lowered to 64 KiB for the step (each tensor of 64 KiB or
    more gets its own mapping, returned on free), then writing ``5`` to
    ``/proc/self/clear_refs`` resets the high-water mark ``VmHWM`` to ``VmRSS``.
    The result is ``VmHWM - VmRSS(before)`` after the step (4 KiB pages), or None
    where ``/proc`` does not offer this.
    """
    libc = _glibc()
    gc.collect()
    if libc is not None:
        libc.malloc_trim(0)
        libc.mallopt(M_MMAP_THRESHOLD, 64 * 2**10)
        libc.mallopt(M_TRIM_THRESHOLD, 64 * 2**10)
    try:
        with open("/proc/self/clear_refs", "w") as fh:
            fh.write("5")
        before = _status_kib("VmRSS")
        step()
        return max(0, _status_kib("VmHWM") - before) * 1024
    except OSError:
        return None
    finally:
        if libc is not None:
            libc.mallopt(M_MMAP_THRESHOLD, int(MALLOC_ENV["MALLOC_MMAP_THRESHOLD_"]))
            libc.mallopt(M_TRIM_THRESHOLD, int(MALLOC_ENV["MALLOC_TRIM_THRESHOLD_"]))


def measure_point(task: dict[str, Any]) -> dict[str, Any]:
    """Build one point's inputs and loss, time its step, measure its peak memory."""
    import torch

    device = torch.device(task["device"])
    gen = torch.Generator(device="cpu").manual_seed(0)

    def randn(*shape: int) -> Any:
        return torch.randn(*shape, generator=gen).to(device).requires_grad_(True)

    chunk = task["chunk"]
    if task["kind"] == "infonce":
        from lightly_mm_plugins.losses import cross_modal_info_nce

        a, b = randn(task["n"], task["d"]), randn(task["n"], task["d"])
        inputs = [a, b]

        def loss() -> Any:
            return cross_modal_info_nce(a, b, 0.07, chunk_size=chunk)

    else:
        from lightly_mm_mxmclr.loss import MXMCLRLoss

        loss_fn = MXMCLRLoss(temperature=0.07, soft_weight=0.5, chunk_size=chunk).to(device)
        a = randn(task["n"], task["folds"], task["d"])
        b = randn(task["n"], task["folds"], task["d"])
        inputs = [a, b]

        def loss() -> Any:
            return loss_fn(a, b)

    def sync() -> None:
        if device.type == "cuda":
            torch.cuda.synchronize(device)

    def step() -> None:
        for x in inputs:
            x.grad = None
        loss().backward()
        sync()

    times = []
    for i in range(task["warmup"] + task["repeats"]):
        start = time.perf_counter()
        step()
        if i >= task["warmup"]:
            times.append(time.perf_counter() - start)
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
        before = torch.cuda.memory_allocated(device)
        step()
        peak: int | None = torch.cuda.max_memory_allocated(device) - before
    else:
        peak = peak_extra_cpu(step)
    return {"time": statistics.median(times), "times": times, "peak": peak}


def worker_main(config: str) -> None:
    import torch

    cfg = json.loads(config)
    torch.set_num_threads(cfg["threads"])
    torch.set_float32_matmul_precision("highest")
    for line in sys.stdin:
        task = json.loads(line)
        try:
            answer = measure_point(task)
        except Exception as exc:  # reported in the table, the run goes on
            answer = {"error": f"{type(exc).__name__}: {str(exc).splitlines()[0][:120]}"}
        sys.stdout.write(json.dumps(answer) + "\n")
        sys.stdout.flush()


# =====================================================================================
# Driver side
# =====================================================================================


class Worker:
    """The measuring subprocess; restarted after a crash (e.g. killed for memory)."""

    def __init__(self, config: dict[str, Any]) -> None:
        self.config = config
        self.proc: subprocess.Popen[str] | None = None

    def _start(self) -> subprocess.Popen[str]:
        env = {**os.environ, **(MALLOC_ENV if self.config["device"] == "cpu" else {})}
        env.setdefault("OMP_NUM_THREADS", str(self.config["threads"]))
        return subprocess.Popen(
            [sys.executable, str(Path(__file__).resolve()), "--_worker", json.dumps(self.config)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
            env=env,
        )

    def ask(self, task: dict[str, Any], timeout: float) -> dict[str, Any]:
        if self.proc is None or self.proc.poll() is not None:
            self.proc = self._start()
        proc = self.proc
        assert proc.stdin is not None and proc.stdout is not None
        answer: list[str] = []
        try:
            proc.stdin.write(json.dumps(task) + "\n")
            proc.stdin.flush()
        except BrokenPipeError:
            self.stop()
            return {"error": "worker died"}
        reader = threading.Thread(target=lambda: answer.append(proc.stdout.readline()))  # type: ignore[union-attr]
        reader.daemon = True
        reader.start()
        reader.join(timeout)
        if reader.is_alive() or not answer or not answer[0]:
            timed_out = reader.is_alive()
            self.stop(kill=True)
            return {"error": f"timed out after {timeout:.0f} s" if timed_out else "worker died"}
        return json.loads(answer[0])  # type: ignore[no-any-return]

    def stop(self, kill: bool = False) -> None:
        if self.proc is None:
            return
        proc, self.proc = self.proc, None
        if kill:
            proc.kill()
        else:
            if proc.stdin is not None:
                proc.stdin.close()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


@dataclass
class Point:
    row: str
    x: int
    time: float | None = None
    peak: int | None = None
    note: str = ""
    times: list[float] = field(default_factory=list)


@dataclass
class Row:
    label: str
    kind: str  # "infonce" | "mxmclr"
    chunk: int | None

    @property
    def dense(self) -> bool:
        return self.chunk is None


def _ints(text: str) -> list[int]:
    return [int(x) for x in text.split(",") if x.strip()]


def available_memory() -> int | None:
    try:
        with open("/proc/meminfo") as fh:
            for line in fh:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return None


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0],
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    p.add_argument("--device", choices=["cpu", "cuda"], default="cpu")
    p.add_argument("--threads", type=int, default=1, help="torch threads of the worker")
    p.add_argument(
        "--batch-sizes", type=_ints, default=None, help="N of the InfoNCE sweep (default 256..)"
    )
    p.add_argument("--max-n", type=int, default=None, help="largest N (CPU 16384, CUDA 65536)")
    p.add_argument("--dim", type=int, default=128, help="embedding size D")
    p.add_argument("--chunks", type=_ints, default=[256, 2048], help="chunk sizes compared")
    p.add_argument("--folds", type=_ints, default=[1, 2, 4, 8, 16], help="V of the MXM-CLR sweep")
    p.add_argument("--fold-batch", type=int, default=None, help="B of the MXM-CLR sweep")
    p.add_argument("--repeats", type=int, default=5)
    p.add_argument("--warmup", type=int, default=1)
    p.add_argument("--time-budget", type=float, default=120.0, help="seconds per point")
    p.add_argument("--memory-budget", type=float, default=None, help="GiB per point")
    p.add_argument("--quick", action="store_true", help="smoke configuration, writes nothing")
    p.add_argument("--no-write", action="store_true")
    p.add_argument("--output", type=Path, default=None, help="Markdown file (PNG next to it)")
    p.add_argument("--_worker", help=argparse.SUPPRESS)
    return p


def resolve(args: argparse.Namespace) -> argparse.Namespace:
    cuda = args.device == "cuda"
    if args.quick:
        args.batch_sizes = [64, 128]
        args.dim = 16
        args.chunks = [32]
        args.folds = [1, 2]
        args.fold_batch = 16
        args.repeats, args.warmup = 2, 1
        args.no_write = True
    if args.max_n is None:
        args.max_n = 65536 if cuda else 16384
    if args.batch_sizes is None:
        sizes, n = [], 256
        while n <= args.max_n:
            sizes.append(n)
            n *= 2
        args.batch_sizes = sizes
    args.batch_sizes = [n for n in args.batch_sizes if n <= args.max_n] or args.batch_sizes[:1]
    if args.fold_batch is None:
        args.fold_batch = 1024 if cuda else 256
    if args.memory_budget is None:
        if cuda:
            import torch

            total = torch.cuda.get_device_properties(0).total_memory
            args.memory_budget = 0.9 * total / 2**30
        else:
            avail = available_memory()
            args.memory_budget = 0.5 * avail / 2**30 if avail else 8.0
    if args.output is None:
        args.output = RESULTS / f"streaming-{args.device}.md"
    return args


def extrapolate(points: list[Point], x: int, dense: bool) -> tuple[float | None, float | None]:
    """Time (~x^2, or the measured slope if steeper) and memory (dense ~x^2, chunked ~x)."""
    done = [p for p in points if p.time is not None]
    if not done:
        return None, None
    last = done[-1]
    ratio = x / last.x
    power = 2.0
    if len(done) >= 2 and done[-2].time:
        slope = math.log(last.time / done[-2].time) / math.log(last.x / done[-2].x)  # type: ignore[operator]
        power = max(power, slope)
    seconds = last.time * ratio**power  # type: ignore[operator]
    memory = None if last.peak is None else last.peak * ratio ** (2.0 if dense else 1.5)
    return seconds, memory


def run_sweep(
    args: argparse.Namespace, worker: Worker, rows: list[Row], xs: list[int], kind: str
) -> dict[str, list[Point]]:
    results: dict[str, list[Point]] = {row.label: [] for row in rows}
    steps = args.warmup + args.repeats + 1
    budget_bytes = args.memory_budget * 2**30
    for x in xs:
        for row in rows:
            done = results[row.label]
            if done and done[-1].note.startswith(("skipped", "failed")):
                done.append(Point(row.label, x, note=done[-1].note.split(":")[0] + ": larger"))
                continue
            seconds, memory = extrapolate(done, x, row.dense)
            if seconds is not None and seconds * steps > args.time_budget:
                note = f"skipped: est. {seconds * steps:.0f} s > {args.time_budget:.0f} s"
                done.append(Point(row.label, x, note=note))
                continue
            if memory is not None and memory > budget_bytes:
                note = f"skipped: est. {memory / 2**30:.1f} GiB > {args.memory_budget:.1f} GiB"
                done.append(Point(row.label, x, note=note))
                continue
            task = {
                "kind": kind,
                "device": args.device,
                "d": args.dim,
                "chunk": row.chunk,
                "warmup": args.warmup,
                "repeats": args.repeats,
                "n": x if kind == "infonce" else args.fold_batch,
                "folds": x if kind == "mxmclr" else 1,
            }
            timeout = max(120.0, 4 * args.time_budget)
            answer = worker.ask(task, timeout)
            if "error" in answer:
                done.append(Point(row.label, x, note=f"failed: {answer['error']}"))
            else:
                done.append(
                    Point(row.label, x, answer["time"], answer["peak"], "", answer["times"])
                )
            point = done[-1]
            shown = f"{point.time * 1e3:.1f} ms" if point.time is not None else point.note
            print(f"  {row.label} x={x}: {shown}", file=sys.stderr, flush=True)
    return results


def _ms(p: Point) -> str:
    return f"{p.time * 1e3:,.1f}" if p.time is not None else (p.note or "—")


def _mib(p: Point) -> str:
    if p.time is None:
        return "—"
    return "n/a" if p.peak is None else f"{p.peak / 2**20:,.1f}"


def _ratio(x: float | None, ref: float | None) -> str:
    if x is None or ref is None or ref <= 0:
        return "—"
    return f"{x / ref:.2f}×"


def table(results: dict[str, list[Point]], rows: list[Row], xname: str) -> list[str]:
    dense = next(r for r in rows if r.dense)
    out = [
        f"| row | {xname} | fwd+bwd ms | time / dense | peak extra MiB | memory / dense |",
        "|---|---:|---:|---:|---:|---:|",
    ]
    xs = [p.x for p in results[dense.label]]
    for i, x in enumerate(xs):
        ref = results[dense.label][i]
        for row in rows:
            p = results[row.label][i]
            out.append(
                f"| {row.label} | {x} | {_ms(p)} | {_ratio(p.time, ref.time)} | {_mib(p)} | "
                f"{_ratio(float(p.peak) if p.peak is not None and p.time else None, ref.peak)} |"
            )
    return out


def exponents(results: dict[str, list[Point]], rows: list[Row], xname: str) -> list[str]:
    out = [
        f"| row | {xname} range | time ~ {xname}^k | memory ~ {xname}^k |",
        "|---|---|---:|---:|",
    ]
    for row in rows:
        pts = [p for p in results[row.label] if p.time is not None]
        if len(pts) < 2:
            continue
        p0, p1 = pts[-2], pts[-1]
        span = math.log(p1.x / p0.x)
        kt = math.log(p1.time / p0.time) / span  # type: ignore[operator]
        km = "—"
        if p0.peak and p1.peak:
            km = f"{math.log(p1.peak / p0.peak) / span:.2f}"
        out.append(f"| {row.label} | {p0.x}–{p1.x} | {kt:.2f} | {km} |")
    return out


def plot(
    path: Path,
    sweeps: list[tuple[str, str, dict[str, list[Point]], list[Row]]],
    setting: str,
) -> None:
    """Log-log time and peak memory, one panel row per sweep; dense solid, chunked dashed."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(len(sweeps), 2, figsize=(13, 4.6 * len(sweeps)), squeeze=False)
    for (title, xname, results, rows), (ax_t, ax_m) in zip(sweeps, axes):
        for j, row in enumerate(rows):
            pts = [p for p in results[row.label] if p.time is not None]
            if not pts:
                continue
            style = {
                "color": "black" if row.dense else f"C{j % 10}",
                "linestyle": "-" if row.dense else "--",
                "marker": "o",
            }
            ax_t.plot([p.x for p in pts], [p.time * 1e3 for p in pts], label=row.label, **style)  # type: ignore[operator]
            mem = [(p.x, p.peak / 2**20) for p in pts if p.peak]
            if mem:
                ax_m.plot(*zip(*mem), label=row.label, **style)
        for ax, ylabel in ((ax_t, "fwd+bwd time [ms]"), (ax_m, "peak extra memory [MiB]")):
            ax.set_xscale("log", base=2)
            ax.set_yscale("log")
            ax.set_xlabel(xname)
            ax.set_ylabel(ylabel)
            ax.set_title(f"{title}: {ylabel.split(' [')[0]} ({setting})", fontsize=10)
            ax.grid(True, which="both", alpha=0.3)
            _guides(ax)
            ax.legend(fontsize=8)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110, bbox_inches="tight")
    plt.close(fig)


def _guides(ax: Any) -> None:
    """Dotted ~x and ~x^2 guides from the lowest left point, to read exponents."""
    lines = [ln for ln in ax.get_lines() if len(ln.get_xdata())]
    if not lines:
        return
    x0 = min(float(min(ln.get_xdata())) for ln in lines)
    x1 = max(float(max(ln.get_xdata())) for ln in lines)
    y0 = min(float(min(ln.get_ydata())) for ln in lines)
    for power, name in ((1, "~x"), (2, "~x²")):
        ax.plot([x0, x1], [y0, y0 * (x1 / x0) ** power], ":", color="grey", linewidth=1)
        ax.annotate(name, (x1, y0 * (x1 / x0) ** power), fontsize=7, color="grey")


def header(args: argparse.Namespace, argv: list[str]) -> list[str]:
    import torch

    if args.device == "cuda":
        machine = torch.cuda.get_device_name(0)
        memory = "`torch.cuda.max_memory_allocated()` minus memory allocated before the step"
    else:
        machine = f"{platform.processor() or platform.machine()}, {os.cpu_count()} logical cores"
        memory = (
            "resident-set high-water mark of the worker process (`malloc_trim`, mmap threshold "
            "64 KiB during the step, `/proc/self/clear_refs` reset, `VmHWM` − `VmRSS` before)"
        )
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    return [
        f"# Streaming vs dense contrastive losses: {args.device}",
        "",
        f"- Command: `{' '.join(['python benchmarks/scaling.py', *argv])}`",
        f"- Date: {dt.datetime.now(dt.timezone.utc):%Y-%m-%d %H:%M} UTC; load average at "
        f"start {load:.1f}",
        f"- Machine: {machine}; torch {torch.__version__}, {args.threads} thread(s), float32",
        f"- Timing: median of {args.repeats} forward+backward steps after {args.warmup} "
        "warm-up step(s), gradients of the inputs only",
        f"- Peak extra memory: {memory}",
        f"- Budgets: {args.time_budget:.0f} s per point, {args.memory_budget:.1f} GiB",
        "",
    ]


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    args = build_parser().parse_args(argv)
    if args._worker:
        worker_main(args._worker)
        return 0
    args = resolve(args)
    worker = Worker({"device": args.device, "threads": args.threads})
    started = time.time()
    try:
        info_rows = [Row("InfoNCE dense", "infonce", None)] + [
            Row(f"InfoNCE chunk {c}", "infonce", c) for c in args.chunks
        ]
        mxm_rows = [Row("MXM-CLR dense", "mxmclr", None)] + [
            Row(f"MXM-CLR chunk {c}", "mxmclr", c) for c in args.chunks
        ]
        print("InfoNCE sweep", file=sys.stderr)
        info = run_sweep(args, worker, info_rows, args.batch_sizes, "infonce")
        print("MXM-CLR sweep", file=sys.stderr)
        mxm = run_sweep(args, worker, mxm_rows, args.folds, "mxmclr")
    finally:
        worker.stop()
    lines = header(args, argv)
    lines += [
        f"## InfoNCE vs batch size N (D = {args.dim})",
        "",
        "`cross_modal_info_nce(a, b, 0.07, chunk_size=C)` on two `(N, D)` tensors; ratios to "
        "the dense row at the same N, same run.",
        "",
        *table(info, info_rows, "N"),
        "",
        f"## MXM-CLR vs observations per instance V (B = {args.fold_batch}, D = {args.dim})",
        "",
        "`MXMCLRLoss(chunk_size=C)` on `(B, V, D)` of both modalities: score matrices "
        "`(B V) x (B V)`.",
        "",
        *table(mxm, mxm_rows, "V"),
        "",
        "## Scaling exponents (log-log slope between the two largest measured points)",
        "",
        *exponents(info, info_rows, "N"),
        "",
        *exponents(mxm, mxm_rows, "V"),
        "",
        f"Total {time.time() - started:.0f} s.",
    ]
    text = "\n".join(lines) + "\n"
    print(text)
    if not args.no_write:
        args.output.parent.mkdir(parents=True, exist_ok=True)
        args.output.write_text(text)
        png = args.output.with_suffix(".png")
        setting = f"{args.device}, {args.threads} thread(s), D = {args.dim}"
        plot(
            png,
            [
                ("InfoNCE", "batch size N", info, info_rows),
                (f"MXM-CLR, B = {args.fold_batch}", "observations per instance V", mxm, mxm_rows),
            ],
            setting,
        )
        print(f"wrote {args.output} and {png}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
