"""The shared/unique table of the plugin README: FactorCL-SUP, FactorCL-SSL, CLIP, raw inputs.

On the synthetic data (``--data synthetic``), with one protocol for every method:
``--limit-train-samples 2000 --batch-size 64 --epochs 5``, MLP encoders, AdamW.

* **FactorCL-SSL** and **CLIP** train once per seed without labels and are probed
  (logistic regression on both modalities' representations) on every label variant;
* **FactorCL-SUP** trains once per seed *and label variant* (its objective uses the
  labels: ``--data synthetic:<variant> --method-args num_classes=2``) and is probed
  on the labels it was trained with;
* **random init**: the same encoders before training (the SSL runs' ``init``
  metrics); **raw [x1, x2]**: a logistic regression on the inputs themselves.

Two probes per trained run: on what the pipeline evaluates (the objective's
``representation``: FactorCL's ten head outputs ``[shared, unique]``, MultiBench's
convention; CLIP's encoder features), and ``--backbone`` on the encoders' outputs
``[e1(x1), e2(x2)]`` reloaded from ``encoders.pt`` (the official synthetic notebook's
protocol, 256-d for every method).

Missing runs are trained (subprocesses of ``lightly-mm train``), existing ones in
``--runs-dir`` are reused, so the table resumes after an interruption::

    python plugins/factorcl/experiments/shared_unique.py --runs-dir runs/fcl --seeds 0,1,2 --lr 1e-4
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
from pathlib import Path

import torch

from lightly_mm_plugins.data import load_dataset
from lightly_mm_plugins.evaluation import linear_probe

PROTOCOL = "--limit-train-samples 2000 --batch-size 64 --epochs 5".split()
VARIANTS = ("shared", "unique1", "unique2", "all")
TITLES = {
    "shared": "shared only (`w_12`)",
    "unique1": "unique to x1 (`w_1`)",
    "unique2": "unique to x2 (`w_2`)",
    "all": "all three (notebook setting)",
}


def runs(seed: int) -> dict[str, list[str]]:
    """Run name -> method arguments, for one seed."""
    out = {
        f"ssl-s{seed}": ["--method", "factorcl", "--data", "synthetic"],
        f"clip-s{seed}": ["--method", "clip", "--data", "synthetic"],
    }
    for v in VARIANTS:
        out[f"sup-{v}-s{seed}"] = [
            *("--method", "factorcl-sup", "--data", f"synthetic:{v}"),
            *("--method-args", "num_classes=2"),
        ]
    return out


def train_missing(runs_dir: Path, seeds: list[int], lr: float | None = None) -> None:
    cli = Path(sys.executable).with_name("lightly-mm")
    for seed in seeds:
        for name, args in runs(seed).items():
            if (runs_dir / name / "metrics.json").exists():
                continue
            cmd = [str(cli), "train", "--quiet", *args, *PROTOCOL, "--seed", str(seed)]
            if lr is not None:
                cmd += ["--lr", str(lr)]
            print("training", name, flush=True)
            if (runs_dir / name).exists():  # unfinished (no metrics.json): start again
                cmd.append("--overwrite")
            subprocess.run([*cmd, "--out", str(runs_dir / name)], check=True)


def raw_logreg(limit: int = 2000) -> dict[str, float]:
    """Logistic regression on the raw ``[x1, x2]`` per label variant (same splits)."""
    train, test = load_dataset("synthetic", "train"), load_dataset("synthetic", "test")
    train = train.subset(list(range(min(limit, len(train)))))

    (xtr, ytr), (xte, yte) = _arrays(train), _arrays(test)
    ftr, fte = torch.cat([xtr["x1"], xtr["x2"]], 1), torch.cat([xte["x1"], xte["x2"]], 1)
    return {v: linear_probe(ftr, ytr[v], fte, yte[v]) for v in VARIANTS}


def _arrays(ds) -> tuple[dict[str, torch.Tensor], dict[str, torch.Tensor]]:
    xs = {m: torch.stack([s.observations[m][0] for s in ds]) for m in ("x1", "x2")}
    return xs, {v: torch.tensor([s.extras["labels"][v] for s in ds]) for v in VARIANTS}


def backbone_probe(run: Path) -> dict[str, float]:
    """Logistic regression on ``[e1(x1), e2(x2)]`` of the run's trained encoders."""
    from lightly_mm_plugins.encoders import build_encoder

    cfg = json.loads((run / "metrics.json").read_text())["config"]
    state = torch.load(run / "encoders.pt", map_location="cpu", weights_only=True)
    train = load_dataset("synthetic", "train")
    train = train.subset(list(range(min(cfg["limit_train_samples"], len(train)))))
    (xtr, ytr), (xte, yte) = _arrays(train), _arrays(load_dataset("synthetic", "test"))
    feats: dict[str, list[torch.Tensor]] = {"train": [], "test": []}
    for m in ("x1", "x2"):
        encoder = build_encoder("vector", input_dim=xtr[m].shape[1])
        encoder.load_state_dict(state["encoders"][m])
        encoder.eval()
        with torch.no_grad():
            feats["train"].append(encoder(xtr[m].float()))
            feats["test"].append(encoder(xte[m].float()))
    ftr, fte = torch.cat(feats["train"], 1), torch.cat(feats["test"], 1)
    return {v: linear_probe(ftr, ytr[v], fte, yte[v]) for v in VARIANTS}


def cell(values: list[float]) -> str:
    if not values:
        return "–"
    std = statistics.stdev(values) if len(values) > 1 else 0.0
    return f"{statistics.fmean(values):.3f} ± {std:.3f}"


def table(runs_dir: Path, seeds: list[int], backbone: bool = False) -> str:
    cache: dict[Path, dict[str, float]] = {}

    def metric(name: str, part: str, variant: str) -> list[float]:
        out = []
        for s in seeds:
            run = runs_dir / f"{name}-s{s}"
            if not (run / "metrics.json").exists():
                continue
            if backbone and part == "trained":
                if run not in cache:
                    cache[run] = backbone_probe(run)
                out.append(cache[run][variant])
            else:
                metrics = json.loads((run / "metrics.json").read_text())
                out.append(metrics[part][f"linear_probe/joint[{variant}]"])
        return out

    raw = raw_logreg()
    lines = [
        f"Mean ± std over seeds {seeds}; linear probe on "
        + (
            "the backbones' `[e1(x1), e2(x2)]`." if backbone else "each objective's representation."
        ),
        "",
        "| labels from | random init | FactorCL-SUP | FactorCL-SSL | CLIP | raw `[x1, x2]` |",
        "|---|---|---|---|---|---|",
    ]
    for v in VARIANTS:
        cells = [
            cell(metric("ssl", "init", v)),
            cell(metric(f"sup-{v}", "trained", v)),
            cell(metric("ssl", "trained", v)),
            cell(metric("clip", "trained", v)),
            f"{raw[v]:.3f}",
        ]
        lines.append(f"| {TITLES[v]} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--runs-dir", default="lightly_mm_runs/factorcl-table")
    parser.add_argument("--seeds", default="0,1,2")
    parser.add_argument("--no-train", action="store_true", help="only tabulate existing runs")
    parser.add_argument("--lr", type=float, default=None, help="default: the CLI's 1e-3")
    parser.add_argument("--backbone", action="store_true", help="probe [e1(x1), e2(x2)] too")
    args = parser.parse_args()
    seeds = [int(s) for s in args.seeds.split(",")]
    runs_dir = Path(args.runs_dir)
    if not args.no_train:
        train_missing(runs_dir, seeds, args.lr)
    print(table(runs_dir, seeds))
    if args.backbone:
        print()
        print(table(runs_dir, seeds, backbone=True))


if __name__ == "__main__":
    main()
