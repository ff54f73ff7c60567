"""Logistic regression on the raw inputs [x1, x2] of the synthetic data (upper reference).

Same splits and training subset as the table in the plugin README::

    python plugins/factorcl/experiments/raw_logreg.py --limit-train-samples 2000
"""

from __future__ import annotations

import argparse

import torch

from lightly_mm_plugins.data import load_dataset
from lightly_mm_plugins.evaluation import linear_probe


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--limit-train-samples", type=int, default=2000)
    args = parser.parse_args()
    train = load_dataset("synthetic", "train")
    test = load_dataset("synthetic", "test")
    train = train.subset(list(range(min(args.limit_train_samples, len(train)))))

    def arrays(ds):
        x = torch.stack([torch.cat([s.observations["x1"][0], s.observations["x2"][0]]) for s in ds])
        labels = {
            k: torch.tensor([s.extras["labels"][k] for s in ds]) for k in ds[0].extras["labels"]
        }
        return x, labels

    (xtr, ytr), (xte, yte) = arrays(train), arrays(test)
    for name in sorted(ytr):
        acc = linear_probe(xtr, ytr[name], xte, yte[name])
        print(f"raw [x1, x2] logistic regression, label {name}: {acc:.3f}")


if __name__ == "__main__":
    main()
