"""Print a Markdown table of metrics from several ``lightly-mm train`` output folders.

Usage::

    python benchmarks/runs_table.py LABEL=OUT_DIR [LABEL=OUT_DIR ...] [--metrics a,b,c]

Each OUT_DIR holds the ``metrics.json`` a run wrote; the table shows the trained
metrics (and the wall time) side by side, one row per run.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("runs", nargs="+", help="LABEL=OUT_DIR")
    parser.add_argument("--metrics", default=None, help="comma-separated metric names")
    args = parser.parse_args()
    rows = []
    for spec in args.runs:
        label, _, out = spec.partition("=")
        data = json.loads((Path(out) / "metrics.json").read_text())
        rows.append((label, data["trained"], data.get("wall_time_s")))
    metrics = (
        args.metrics.split(",") if args.metrics else sorted(set().union(*(r[1] for r in rows)))
    )
    print("| run | " + " | ".join(metrics) + " | wall s |")
    print("|---|" + "---|" * (len(metrics) + 1))
    for label, trained, wall in rows:
        cells = [f"{trained[m]:.3f}" if m in trained else "-" for m in metrics]
        print(f"| {label} | " + " | ".join(cells) + f" | {wall} |")


if __name__ == "__main__":
    main()
