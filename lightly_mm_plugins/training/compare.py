"""``lightly-mm compare``: several methods on the same data and seeds, mean ± std.

Example:
    >>> summarize({"clip": [{"knn/image": 0.5}, {"knn/image": 0.7}]})["clip"]["knn/image"]
    [0.6, 0.1414213562373095]
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

import torch

from .config import config_from_args
from .validation import compare_seeds


def compare_from_args(args: argparse.Namespace) -> dict[str, Any]:
    """Train every ``--methods`` x ``--seeds`` run into ``OUT/<method>-seed<S>``, then
    write ``compare.md``, ``compare.json`` and ``compare.png`` into ``OUT``."""
    from .plots import plot_compare
    from .run import train

    methods = [m.strip() for m in args.methods.split(",") if m.strip()]
    seeds = compare_seeds(args.seeds)
    table: dict[str, list[dict[str, float]]] = {}
    for method in methods:
        for seed in seeds:
            cfg = config_from_args(
                args,
                method=method,
                seed=seed,
                out=str(Path(args.out) / f"{method}-seed{seed}"),
                eval_init=False,
            )
            table.setdefault(method, []).append(train(cfg).get("trained", {}))
    summary = summarize(table)
    text = format_compare_table(summary, seeds)
    print(text)
    out = Path(args.out)
    (out / "compare.md").write_text(text + "\n")
    (out / "compare.json").write_text(json.dumps(summary, indent=2))
    plot_compare(summary, out / "compare.png")
    return summary


def summarize(table: dict[str, list[dict[str, float]]]) -> dict[str, dict[str, list[float]]]:
    """method -> metric -> [mean, std] over seeds."""
    out: dict[str, dict[str, list[float]]] = {}
    for method, runs in table.items():
        keys = sorted(set().union(*[r.keys() for r in runs])) if runs else []
        out[method] = {}
        for k in keys:
            vals = torch.tensor([r[k] for r in runs if k in r], dtype=torch.float64)
            std = float(vals.std()) if len(vals) > 1 else 0.0
            out[method][k] = [float(vals.mean()), std]
    return out


def format_compare_table(summary: dict[str, dict[str, list[float]]], seeds: list[int]) -> str:
    metrics = sorted(set().union(*[m.keys() for m in summary.values()])) if summary else []
    header = "| method | " + " | ".join(metrics) + " |"
    sep = "|---|" + "---|" * len(metrics)
    rows = [f"Mean ± std over seeds {seeds}", "", header, sep]
    for method, vals in summary.items():
        cells = [f"{vals[k][0]:.3f} ± {vals[k][1]:.3f}" if k in vals else "-" for k in metrics]
        rows.append(f"| {method} | " + " | ".join(cells) + " |")
    return "\n".join(rows)
