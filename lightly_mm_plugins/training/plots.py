"""PNG plots of a run: loss curve per stage, evaluation results, comparisons."""

from __future__ import annotations

import csv
from collections.abc import Sequence
from pathlib import Path
from typing import Any


def _pyplot() -> Any:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def plot_loss_curve(metrics_csvs: Sequence[Path], stage_starts: Sequence[int], out: Path) -> None:
    """Training loss against step, one colour per stage (resumed runs append logs)."""
    points: list[tuple[int, int, float]] = []
    for metrics_csv in metrics_csvs:
        with metrics_csv.open() as f:
            for row in csv.DictReader(f):
                value = row.get("train_loss")
                if value:
                    epoch = int(float(row.get("epoch") or 0))
                    points.append((int(row["step"]), epoch, float(value)))
    points.sort()
    if not points:
        return
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(6, 3.5))
    for s in range(len(stage_starts) - 1):
        lo, hi = stage_starts[s], stage_starts[s + 1]
        pts = [(st, v) for st, ep, v in points if lo <= ep < hi]
        if pts:
            ax.plot([p[0] for p in pts], [p[1] for p in pts], label=f"stage {s}")
    ax.set_xlabel("step")
    ax.set_ylabel("train loss")
    ax.legend()
    fig.tight_layout()
    fig.savefig(out, dpi=100)
    plt.close(fig)


def plot_results(results: dict[str, Any], out: Path, title: str = "") -> None:
    """Bar chart of every evaluation metric, random init vs trained."""
    trained = results.get("trained", {})
    if not trained:
        return
    init = results.get("init", {})
    aliases = results.get("metric_aliases", {})  # the same probe under a label set's name
    keys = sorted(k for k in trained if k not in aliases)
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(max(6, 0.6 * len(keys)), 4))
    xs = range(len(keys))
    if init:
        ax.bar([x - 0.2 for x in xs], [init.get(k, 0.0) for k in keys], 0.4, label="random init")
    ax.bar([x + 0.2 for x in xs], [trained[k] for k in keys], 0.4, label="trained")
    ax.set_xticks(list(xs))
    ax.set_xticklabels(keys, rotation=60, ha="right", fontsize=8)
    ax.set_ylim(0, 1)
    ax.set_title(title)
    ax.legend()
    fig.tight_layout()
    fig.savefig(out, dpi=100)
    plt.close(fig)


def plot_compare(summary: dict[str, dict[str, list[float]]], out: Path) -> None:
    """Grouped bars: one group per metric, one bar per method (mean ± std)."""
    if not summary:
        return
    metrics = sorted(set().union(*[m.keys() for m in summary.values()]))
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(max(6, 0.8 * len(metrics)), 4))
    width = 0.8 / len(summary)
    for i, (method, vals) in enumerate(summary.items()):
        xs = [j + i * width for j in range(len(metrics))]
        ax.bar(
            xs,
            [vals.get(k, [0, 0])[0] for k in metrics],
            width,
            yerr=[vals.get(k, [0, 0])[1] for k in metrics],
            label=method,
        )
    ax.set_xticks([j + 0.4 - width / 2 for j in range(len(metrics))])
    ax.set_xticklabels(metrics, rotation=60, ha="right", fontsize=8)
    ax.set_ylim(0, 1)
    ax.legend()
    fig.tight_layout()
    fig.savefig(out, dpi=100)
    plt.close(fig)
