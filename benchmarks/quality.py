#!/usr/bin/env python
"""Quality table: every method on the digits and on the synthetic shared/unique data.

Trains each method with ``lightly-mm train`` under one fixed protocol per data set
(same encoders, epochs, batch size, learning rate and seeds for every method), then
prints and writes a Markdown table of mean ± std over the seeds:

* **digits** (the embedded default data, images + captions): linear-probe accuracy
  on the image features and on image + text features, cross-modal retrieval R@1/R@5
  in both directions;
* **synthetic** (FactorCL's shared/unique data, ``x1``/``x2`` vectors): linear-probe
  accuracy on ``[x1, x2]`` features for labels computed from the shared latent only,
  from one unique latent only (x1's, x2's) and from all three (FactorCL notebook).

A "random init" row (the same encoders before training, from the ``init`` metrics of
the first method's runs) shows what training adds. Runs are subprocesses writing
into ``--runs-dir/<data>/<method>-s<seed>``; a run whose ``metrics.json`` exists
with the same protocol is reused, so an interrupted table resumes where it stopped.

Example:
    python benchmarks/quality.py                       # full table (hours on a CPU)
    python benchmarks/quality.py --data synthetic --methods clip,cct --seeds 0,1,2
    python benchmarks/quality.py --quick               # smoke: tiny, writes nothing
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import platform
import shlex
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "benchmarks" / "results"
METHODS = ("clip", "cct", "mcl", "mxm-clr", "tcl", "factorcl")

#: One protocol per data set: every method trains with exactly these arguments.
PROTOCOLS: dict[str, list[str]] = {
    "digits": "--data digits --batch-size 64 --epochs 3".split(),
    "synthetic": "--data synthetic --limit-train-samples 2000 --batch-size 64 --epochs 5".split(),
}
QUICK: dict[str, list[str]] = {
    "digits": "--data digits --limit-train-samples 64 --batch-size 32 --epochs 1".split(),
    "synthetic": "--data synthetic --limit-train-samples 64 --batch-size 32 --epochs 1".split(),
}
#: Method arguments a data set needs: vectors have no local features for TCL's
#: local-to-global term, so TCL trains its cross-modal and intra-modal terms there.
METHOD_ARGS: dict[tuple[str, str], list[str]] = {
    ("synthetic", "tcl"): ["--method-args", "local_weight=0"],
}
#: (column title, metric key) per data set.
COLUMNS: dict[str, list[tuple[str, str]]] = {
    "digits": [
        ("probe image", "linear_probe/image"),
        ("probe image+text", "linear_probe/joint"),
        ("i→t R@1", "retrieval/image_to_text_R@1"),
        ("i→t R@5", "retrieval/image_to_text_R@5"),
        ("t→i R@1", "retrieval/text_to_image_R@1"),
        ("t→i R@5", "retrieval/text_to_image_R@5"),
    ],
    "synthetic": [
        ("shared labels", "linear_probe/joint[shared]"),
        ("unique-to-x1 labels", "linear_probe/joint[unique1]"),
        ("unique-to-x2 labels", "linear_probe/joint[unique2]"),
        ("all-factor labels", "linear_probe/joint[all]"),
        ("x1→x2 R@1", "retrieval/x1_to_x2_R@1"),
        ("x1→x2 R@5", "retrieval/x1_to_x2_R@5"),
    ],
}


def run_args(data: str, method: str, seed: int, out: Path, quick: bool) -> list[str]:
    """The ``lightly-mm train`` arguments of one run (protocol + method + seed)."""
    protocol = (QUICK if quick else PROTOCOLS)[data]
    return [
        "train",
        "--quiet",
        "--method",
        method,
        "--seed",
        str(seed),
        "--out",
        str(out),
        *protocol,
        *METHOD_ARGS.get((data, method), []),
    ]


def _same_protocol(metrics: dict[str, Any], args: list[str]) -> bool:
    cfg = metrics.get("config", {})
    flags = dict(zip(args[::2], args[1::2]))
    checks = {
        "--batch-size": "batch_size",
        "--epochs": "epochs",
        "--limit-train-samples": "limit_train_samples",
        "--data": "data",
    }
    return all(str(cfg.get(key)) == flags[flag] for flag, key in checks.items() if flag in flags)


def train_one(data: str, method: str, seed: int, runs_dir: Path, quick: bool) -> dict[str, Any]:
    """Train (or reuse) one run; returns its ``metrics.json`` content."""
    out = runs_dir / data / f"{method}-s{seed}"
    args = run_args(data, method, seed, out, quick)
    metrics_file = out / "metrics.json"
    if metrics_file.exists():
        metrics = json.loads(metrics_file.read_text())
        if "trained" in metrics and _same_protocol(metrics, (QUICK if quick else PROTOCOLS)[data]):
            print(f"reuse  {data:9s} {method:9s} seed {seed} ({out})", flush=True)
            return metrics
        raise SystemExit(
            f"{out} holds a run with another protocol; pass another --runs-dir or delete it"
        )
    cmd = [sys.executable, "-m", "lightly_mm_plugins.cli", *args]
    if out.exists():  # an unfinished run (no metrics.json): start it again
        cmd.append("--overwrite")
    t0 = time.time()
    print(f"train  {data:9s} {method:9s} seed {seed} ...", end=" ", flush=True)
    proc = subprocess.run(cmd, capture_output=True, text=True)
    if proc.returncode != 0:
        print("FAILED")
        raise SystemExit(f"{shlex.join(cmd)} failed:\n{proc.stderr[-3000:]}")
    print(f"{time.time() - t0:.0f} s", flush=True)
    return json.loads(metrics_file.read_text())


def mean_std(values: list[float]) -> tuple[float, float]:
    """Mean and sample standard deviation (0 for a single value)."""
    if not values:
        return float("nan"), float("nan")
    std = statistics.stdev(values) if len(values) > 1 else 0.0
    return statistics.fmean(values), std


def summarize(
    runs: dict[str, list[dict[str, Any]]], columns: list[tuple[str, str]]
) -> dict[str, dict[str, tuple[float, float]]]:
    """method -> column -> (mean, std) over its runs; plus a ``random init`` row."""
    table: dict[str, dict[str, tuple[float, float]]] = {}
    first = next(iter(runs.values()), [])
    init = [r["init"] for r in first if "init" in r]
    if init:
        table["random init"] = {
            title: mean_std([m[key] for m in init if key in m]) for title, key in columns
        }
    for method, results in runs.items():
        trained = [r["trained"] for r in results]
        table[method] = {
            title: mean_std([m[key] for m in trained if key in m]) for title, key in columns
        }
    return table


def format_table(table: dict[str, dict[str, tuple[float, float]]], columns: list[str]) -> str:
    """Markdown, best trained mean per column in bold."""
    best = {
        c: max(
            (v[c][0] for name, v in table.items() if name != "random init" and c in v),
            default=float("nan"),
        )
        for c in columns
    }
    lines = ["| method | " + " | ".join(columns) + " |", "|---|" + "---|" * len(columns)]
    for name, values in table.items():
        cells = []
        for c in columns:
            mean, std = values.get(c, (float("nan"), float("nan")))
            cell = "–" if mean != mean else f"{mean:.3f} ± {std:.3f}"
            cells.append(f"**{cell}**" if name != "random init" and mean == best[c] else cell)
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def plot(tables: dict[str, dict[str, dict[str, tuple[float, float]]]], path: Path) -> None:
    """One panel per data set: grouped bars (mean) with std error bars."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, len(tables), figsize=(7 * len(tables), 4), squeeze=False)
    for ax, (data, table) in zip(axes[0], tables.items()):
        columns = [t for t, _ in COLUMNS[data]]
        width = 0.8 / max(len(table), 1)
        for i, (name, values) in enumerate(table.items()):
            xs = [j + i * width for j in range(len(columns))]
            means = [values[c][0] for c in columns]
            stds = [values[c][1] for c in columns]
            ax.bar(xs, means, width, yerr=stds, label=name, capsize=2)
        ax.set_xticks([j + 0.4 - width / 2 for j in range(len(columns))], columns, rotation=20)
        ax.set_title(data)
        ax.set_ylim(0, 1)
    axes[0][0].legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def machine() -> str:
    import torch

    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return (
        f"{cpu}, {os.cpu_count()} cores, torch {torch.__version__}, "
        f"python {platform.python_version()}"
    )


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--data", default="digits,synthetic", help="comma-separated data sets")
    p.add_argument("--methods", default=",".join(METHODS), help="comma-separated objectives")
    p.add_argument("--seeds", default="0,1,2", help="comma-separated seeds")
    p.add_argument("--runs-dir", default="lightly_mm_runs/quality", help="where runs go")
    p.add_argument("--quick", action="store_true", help="tiny smoke protocol; writes nothing")
    p.add_argument("--results", default=str(RESULTS), help="where the table is written")
    return p


def main(argv: list[str] | None = None) -> str:
    args = build_parser().parse_args(argv)
    datasets = [d for d in args.data.split(",") if d]
    unknown = sorted(set(datasets) - set(PROTOCOLS))
    if unknown:
        raise SystemExit(f"unknown data set(s) {unknown}; use some of {sorted(PROTOCOLS)}")
    methods = [m for m in args.methods.split(",") if m]
    seeds = [int(s) for s in args.seeds.split(",") if s]
    runs_dir = Path(args.runs_dir)
    t0 = time.time()
    tables: dict[str, dict[str, dict[str, tuple[float, float]]]] = {}
    for data in datasets:
        runs = {m: [train_one(data, m, s, runs_dir, args.quick) for s in seeds] for m in methods}
        tables[data] = summarize(runs, COLUMNS[data])
    command = "python benchmarks/quality.py " + shlex.join(sys.argv[1:] if argv is None else argv)
    parts = [
        "# Quality table",
        "",
        f"Command: `{command.strip()}`  ",
        f"Machine: {machine()}  ",
        f"Date: {dt.date.today().isoformat()}; seeds {seeds}; mean ± std (sample std) "
        "over seeds; best trained mean in bold.",
    ]
    for data in datasets:
        protocol = shlex.join((QUICK if args.quick else PROTOCOLS)[data])
        extra = [f"{m}: `{shlex.join(v)}`" for (d, m), v in METHOD_ARGS.items() if d == data]
        parts += [
            "",
            f"## {data}",
            "",
            f"Protocol (every method): `lightly-mm train {protocol} --seed S`"
            + (f"; plus {', '.join(extra)}" if extra else ""),
            "",
            format_table(tables[data], [t for t, _ in COLUMNS[data]]),
        ]
    parts.append(f"\n({time.time() - t0:.0f} s for this invocation, reused runs included)")
    text = "\n".join(parts)
    print(text)
    if not args.quick:
        results = Path(args.results)
        results.mkdir(parents=True, exist_ok=True)
        (results / "quality.md").write_text(text + "\n")
        (results / "quality.json").write_text(
            json.dumps({d: {m: dict(v) for m, v in t.items()} for d, t in tables.items()}, indent=1)
        )
        plot(tables, results / "quality.png")
    return text


if __name__ == "__main__":
    main()
