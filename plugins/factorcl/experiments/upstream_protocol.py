"""FactorCL at the official synthetic protocol, the project's objectives next to upstream's code.

Protocol (official ``Synthetic/synthetic_example.ipynb`` + ``synthetic_model.py``):

* data: the official generator (``{'12': 10, '1': 6, '2': 6}`` latent blocks, 100-d
  observations, label from all blocks), drawn by the project's
  :func:`lightly_mm_factorcl.synthetic.generate_data` (same distribution, seeded
  ``numpy`` generator), split 80/20 with ``random_split``;
* nets: backbones ``mlp(100, 512, 128, layers=2)``, heads ``mlp(128, 128, 128, 1)``
  (3 Linear = ``head_layers=3``), critics hidden 512, ``layers=1``;
* training: Adam lr 1e-4 (main and CLUB critics), one CLUB step per batch on a fresh
  batch drawn from the whole data set (``dataset.sample_batch``), shuffled
  ``drop_last`` batches; SSL conditional CLUB on ``[g(x1), g(x1)]`` as
  ``synthetic_model.FactorCLSSL`` (``club_cond_on_augmentation=False``); SUP conditions
  ``x1`` only with ``onehot(y)`` of width 20 (``condition_both=False``, ``num_classes=20``);
* probe: ``LogisticRegression(max_iter=200)`` on the backbones' ``[e1(x1), e2(x2)]``
  (the notebook), test accuracy; also on the raw ``[x1, x2]``.

Methods: ``proj-sup`` / ``proj-ssl`` (the project's ``FactorCLSupObjective`` /
``FactorCLObjective`` configured as ``synthetic_model.py``), ``proj-ssl-defaults`` (the
plugin's defaults: 2-layer heads, conditional CLUB on the augmented views, CLUB step on
the same batch, as in the pipeline), ``proj-clip`` (the project's CLIP objective, T = 0.07 fixed,
same heads), and with ``--upstream PATH`` (a local checkout of pliang279/FactorCL,
imported, never copied) ``up-sup`` / ``up-ssl`` / ``up-simclr`` (upstream's
``FactorCLSUP`` / ``FactorCLSSL`` with ``train_sup_model``, ``SupConModel`` with
``train_supcon``), every one on the same arrays, split and seed. ``random-init``
probes the untrained backbones. Results are appended to ``--out`` (JSON lines), one
line per (seed, method); existing lines are skipped, so the run resumes::

    python plugins/factorcl/experiments/upstream_protocol.py --upstream /path/to/FactorCL \\
        --n 6000 --batch-size 64 --epochs 5 --seeds 0,1,2 --out factorcl-upstream.jsonl
"""

from __future__ import annotations

import argparse
import json
import random
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn

from lightly_mm_plugins.api import EncodedBatch

DIM_IN, HIDDEN, EMBED = 100, 512, 128
PROJECT = ("random-init", "raw", "proj-sup", "proj-ssl", "proj-clip")
UPSTREAM = ("up-sup", "up-ssl", "up-simclr")


def mlp(d_in: int, hidden: int, d_out: int, layers: int) -> nn.Sequential:
    """``Linear, ReLU, (Linear, ReLU) x layers, Linear`` (the official ``mlp`` layout)."""
    mods: list[nn.Module] = [nn.Linear(d_in, hidden), nn.ReLU()]
    for _ in range(layers):
        mods += [nn.Linear(hidden, hidden), nn.ReLU()]
    mods.append(nn.Linear(hidden, d_out))
    return nn.Sequential(*mods)


def make_data(n: int, seed: int) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    """``(x, y, train_idx, test_idx)``: ``x (2, n, 100)`` float, ``y (n, 1)``, 80/20 split."""
    from lightly_mm_factorcl.synthetic import generate_data

    data = generate_data(n, seed=seed)
    x = torch.from_numpy(np.stack(data.xs)).float()
    y = torch.from_numpy(np.asarray(data.labels).reshape(-1, 1)).float()
    perm = torch.randperm(n, generator=torch.Generator().manual_seed(seed))
    cut = int(0.8 * n)
    return x, y, perm[:cut], perm[cut:]


def probe(f_tr: np.ndarray, y_tr: np.ndarray, f_te: np.ndarray, y_te: np.ndarray) -> float:
    """The notebook's probe: ``LogisticRegression(max_iter=200)``, test accuracy."""
    import warnings

    from sklearn.exceptions import ConvergenceWarning
    from sklearn.linear_model import LogisticRegression

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        clf = LogisticRegression(max_iter=200).fit(f_tr, y_tr.ravel())
    return float(clf.score(f_te, y_te.ravel()))


@torch.no_grad()
def probe_backbones(
    backbones: nn.ModuleList, x: Tensor, y: Tensor, tr: Tensor, te: Tensor
) -> dict[str, float]:
    """Official probe (``acc``) and the pipeline's ``linear_probe`` (``acc_project_probe``:
    standardised features, ``max_iter=1000``) on the same ``[e1(x1), e2(x2)]``."""
    backbones.eval()
    feats = torch.cat([backbones[0](x[0]), backbones[1](x[1])], dim=1)
    backbones.train()
    return both_probes(feats, y, tr, te)


def both_probes(feats: Tensor, y: Tensor, tr: Tensor, te: Tensor) -> dict[str, float]:
    from lightly_mm_plugins.evaluation import linear_probe

    f, labels = feats.numpy(), y.numpy()
    return {
        "acc": probe(f[tr], labels[tr], f[te], labels[te]),
        "acc_project_probe": linear_probe(feats[tr], y[tr, 0].long(), feats[te], y[te, 0].long()),
    }


def augment(x: Tensor, rng: random.Random) -> Tensor:
    """Per sample one official family (swap / noise / drop / identity), ``augment_single``."""
    from lightly_mm_factorcl.views import augment_vector

    return torch.stack([augment_vector(row, rng.randrange(4), rng.randrange(2**31)) for row in x])


def batches(train_idx: Tensor, batch_size: int, epoch: int, seed: int) -> list[Tensor]:
    g = torch.Generator().manual_seed(seed * 1000 + epoch)
    perm = train_idx[torch.randperm(len(train_idx), generator=g)]
    return [perm[i : i + batch_size] for i in range(0, len(perm) - batch_size + 1, batch_size)]


def train_project(
    method: str, x: Tensor, y: Tensor, tr: Tensor, args: argparse.Namespace, seed: int
) -> nn.ModuleList:
    """The project's objective in the official loop; returns the trained backbones."""
    import lightly_mm_plugins as lmm

    torch.manual_seed(seed)
    rng = random.Random(seed)
    backbones = nn.ModuleList(mlp(DIM_IN, HIDDEN, EMBED, 2) for _ in range(2))
    dims, mods = {"x1": EMBED, "x2": EMBED}, ("x1", "x2")
    common = {"head_layers": 3, "critic_hidden_dim": args.critic_hidden}
    ssl = method.startswith("proj-ssl")
    if method == "proj-ssl-defaults":  # the plugin's defaults (multibench convention)
        obj = lmm.create_objective("factorcl", embedding_dims=dims, modalities=mods)
    elif method == "proj-ssl":
        obj = lmm.create_objective(
            "factorcl",
            embedding_dims=dims,
            modalities=mods,
            club_cond_on_augmentation=False,
            **common,
        )
    elif method == "proj-sup":
        obj = lmm.create_objective(
            "factorcl-sup",
            embedding_dims=dims,
            modalities=mods,
            num_classes=20,
            condition_both=False,
            **common,
        )
    else:
        obj = lmm.create_objective(
            "clip",
            embedding_dims=dims,
            modalities=mods,
            projection_dim=EMBED,
            projection_layers=3,
            temperature=0.07,
            learnable_temperature=False,
        )
    aux = list(obj.auxiliary_parameters()) if hasattr(obj, "auxiliary_parameters") else []
    aux_ids = {id(p) for p in aux}
    main = [p for p in [*backbones.parameters(), *obj.parameters()] if id(p) not in aux_ids]
    opt = torch.optim.Adam(main, lr=args.lr)
    opt_aux = torch.optim.Adam(aux, lr=args.lr) if aux else None
    labels = y[:, 0].long()
    epochs = args.simclr_epochs if method == "proj-clip" else args.epochs

    def encoded(idx: Tensor, grad: bool = True) -> EncodedBatch:
        with torch.set_grad_enabled(grad):
            e = [backbones[m](x[m, idx]) for m in range(2)]
            if ssl:
                a = [backbones[m](augment(x[m, idx], rng)) for m in range(2)]
                emb = {k: torch.stack([e[m], a[m]], 1) for m, k in enumerate(mods)}
            else:
                emb = {k: e[m] for m, k in enumerate(mods)}
        return EncodedBatch.from_tensors(emb, labels=labels[idx] if method == "proj-sup" else None)

    n = x.shape[1]
    for epoch in range(epochs):
        for idx in batches(tr, args.batch_size, epoch, seed):
            loss = obj(encoded(idx)).loss
            opt.zero_grad()
            loss.backward()
            opt.step()
            if opt_aux is not None:  # official: a fresh batch from the whole data set
                fresh = torch.from_numpy(np.random.choice(n, args.batch_size, replace=False))
                if method == "proj-ssl-defaults":  # the pipeline: the same batch
                    fresh = idx
                aux_loss = obj.auxiliary_loss(encoded(fresh, grad=False))
                opt_aux.zero_grad()
                aux_loss.backward()
                opt_aux.step()
    return backbones


def train_upstream(
    method: str, x: Tensor, y: Tensor, tr: Tensor, args: argparse.Namespace, seed: int
) -> nn.ModuleList:
    """Upstream's own model and training function (imported from ``--upstream``)."""
    from torch.utils.data import DataLoader, Subset

    sys.path.insert(0, str(Path(args.upstream).resolve()))
    # upstream calls .cuda() unconditionally; on this CPU run it is the identity
    torch.Tensor.cuda = lambda self, *a, **k: self  # type: ignore[method-assign]
    nn.Module.cuda = lambda self, *a, **k: self  # type: ignore[method-assign]
    import synthetic_model as um  # type: ignore[import-not-found]
    from Synthetic.dataset import MultimodalDataset  # type: ignore[import-not-found]

    if args.critic_hidden != 512:
        raise SystemExit("--critic-hidden applies to the project's objectives only")
    torch.manual_seed(seed)
    dataset = MultimodalDataset(x.numpy(), y.numpy())
    loader = DataLoader(
        Subset(dataset, tr.tolist()),
        batch_size=args.batch_size,
        shuffle=True,
        drop_last=True,
        generator=torch.Generator().manual_seed(seed),
    )
    if method == "up-sup":
        model = um.FactorCLSUP(DIM_IN, DIM_IN, 20, HIDDEN, EMBED, lr=args.lr)
        um.train_sup_model(
            model,
            loader,
            dataset,
            num_epoch=args.epochs,
            num_club_iter=1,
            batch_size=args.batch_size,
        )
    elif method == "up-ssl":
        model = um.FactorCLSSL(DIM_IN, DIM_IN, HIDDEN, EMBED, lr=args.lr)
        um.train_sup_model(
            model,
            loader,
            dataset,
            num_epoch=args.epochs,
            num_club_iter=1,
            batch_size=args.batch_size,
        )
    else:
        model = um.SupConModel(DIM_IN, DIM_IN, HIDDEN, EMBED, use_label=False)
        opt = torch.optim.Adam(model.parameters(), lr=args.lr)
        um.train_supcon(model, loader, opt, num_epoch=args.simclr_epochs)
    model.eval()
    if hasattr(model, "backbones"):
        return model.backbones
    return nn.ModuleList([model.encoder_x1, model.encoder_x2])


def run_one(method: str, seed: int, args: argparse.Namespace) -> dict[str, Any]:
    x, y, tr, te = make_data(args.n, seed)
    np.random.seed(seed)
    t0 = time.time()
    if method == "raw":
        accs = both_probes(torch.cat([x[0], x[1]], 1), y, tr, te)
    elif method == "random-init":
        torch.manual_seed(seed)
        accs = probe_backbones(
            nn.ModuleList(mlp(DIM_IN, HIDDEN, EMBED, 2) for _ in range(2)), x, y, tr, te
        )
    else:
        train = train_upstream if method.startswith("up-") else train_project
        accs = probe_backbones(train(method, x, y, tr, args, seed), x, y, tr, te)
    return {
        "method": method,
        "seed": seed,
        **accs,
        "seconds": round(time.time() - t0, 1),
        **protocol(args),
    }


def protocol(args: argparse.Namespace) -> dict[str, Any]:
    keys = ("n", "batch_size", "epochs", "simclr_epochs", "lr", "critic_hidden")
    return {k: getattr(args, k) for k in keys}


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--upstream", default=None, help="local checkout of pliang279/FactorCL")
    p.add_argument("--n", type=int, default=6000, help="samples (80%% train); notebook 30000")
    p.add_argument("--batch-size", type=int, default=64, help="notebook 256")
    p.add_argument("--epochs", type=int, default=5, help="FactorCL epochs; notebook 10")
    p.add_argument("--simclr-epochs", type=int, default=10, help="SimCLR/CLIP epochs; notebook 20")
    p.add_argument("--lr", type=float, default=1e-4)
    p.add_argument("--critic-hidden", type=int, default=512)
    p.add_argument("--seeds", default="0,1,2")
    p.add_argument("--methods", default=",".join(PROJECT + UPSTREAM))
    p.add_argument("--out", default="factorcl-upstream.jsonl")
    args = p.parse_args(argv)
    torch.set_num_threads(1)
    out = Path(args.out)
    done = set()
    if out.exists():
        for line in out.read_text().splitlines():
            r = json.loads(line)
            if all(r.get(k) == v for k, v in protocol(args).items()):
                done.add((r["method"], r["seed"]))
    methods = [m for m in args.methods.split(",") if m]
    if args.upstream is None:
        methods = [m for m in methods if not m.startswith("up-")]
    for seed in [int(s) for s in args.seeds.split(",")]:
        for method in methods:
            if (method, seed) in done:
                continue
            row = run_one(method, seed, args)
            print(json.dumps(row), flush=True)
            with out.open("a") as f:
                f.write(json.dumps(row) + "\n")


if __name__ == "__main__":
    main()
