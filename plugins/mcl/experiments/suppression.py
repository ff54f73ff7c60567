"""Feature suppression, shown small: single-stage CLIP-style training vs MCL on synthetic vectors.

Data: every instance has two independent label-bearing factors,

* ``a`` (easy): one of ``--easy-classes`` values, written into both views as a
  large-amplitude prototype vector (linearly separable at a glance);
* ``b`` (hard): one of ``--hard-classes`` values. Default ``--hard-kind radial``:
  only the norm of a small random vector carries ``b`` (its direction is drawn
  independently per view), so ``b`` needs a non-linear feature; ``linear``: a
  small-amplitude prototype vector,

and two "modalities" ``x1``, ``x2`` (two noisy views of the same ``(a, b)``,
different random projections). A tiny MLP per modality is trained with the
CLIP-style symmetric InfoNCE (``MCLObjective`` wrapping the ``clip``
objective) in a plain PyTorch loop. Within a random batch most negatives
differ in ``a``, so ``a`` alone nearly solves the contrastive task and ``b``
gets little gradient: feature suppression.

Compared, all with the same number of epochs in total (``stages x epochs``):

* ``single-stage``: ordinary training for all epochs; features of the last model.
* ``stage 0 only``: the first ``epochs`` epochs.
* ``single-stage, wider``: embedding ``stages`` times wider (the concatenation's size).
* ``multi-stage, ordinary negatives``: the MCL procedure (stages restarted from
  the stage-0 model, features of all stages concatenated) but with ordinary
  batches -- controls for "more features by concatenation".
* ``MCL (group sampler)`` / ``MCL (negative mask)``: :class:`MCLScheduler`
  clusters after each stage; the next stage draws single-group batches or masks
  other-group negatives; final features ``normalize(cat(stage features))``.

The table reports linear-probe test accuracy (scikit-learn logistic
regression on ``x1``'s features) for each factor, per seed and mean ± std. Run::

    python plugins/mcl/experiments/suppression.py   # 4 seeds: 1-3 minutes on 1 thread

Everything is seeded; ``torch.set_num_threads(1)``.
"""

from __future__ import annotations

import argparse
import copy
import time
from dataclasses import dataclass

import numpy as np
import torch
from lightly_mm_mcl.objective import MCLObjective
from lightly_mm_mcl.scheduler import MCLScheduler
from torch import Tensor, nn

from lightly_mm_plugins.api import EncodedBatch, StageContext

MODS = ("x1", "x2")


@dataclass
class Data:
    x: dict[str, Tensor]  # modality -> (N, input_dim)
    a: Tensor  # (N,) easy factor
    b: Tensor  # (N,) hard factor


def make_data(args: argparse.Namespace, seed: int) -> tuple[Data, Data]:
    """Two views of (a, b) in random orthogonal mixtures of a latent vector, plus noise.

    The latent is ``[P_a[a], H_b]`` with ``P_a`` random prototypes of norm
    ``easy_scale``. ``hard_kind="linear"``: ``H_b = P_b[b]`` (prototypes of norm
    ``hard_scale``). ``hard_kind="radial"``: ``H_b = r_b u`` with ``u`` a random
    unit vector drawn *independently for each view* and radius
    ``r_b = hard_scale (1 + b) / hard_classes``: only the norm is shared, so
    ``b`` needs a non-linear feature (a linear probe of the raw input is at chance).
    """
    g = torch.Generator().manual_seed(1000 + seed)
    d_lat = args.latent_dim
    proto_a = torch.randn(args.easy_classes, d_lat, generator=g)
    proto_b = torch.randn(args.hard_classes, d_lat, generator=g)
    proto_a = args.easy_scale * proto_a / proto_a.norm(dim=1, keepdim=True)
    proto_b = args.hard_scale * proto_b / proto_b.norm(dim=1, keepdim=True)
    mix = {
        m: torch.linalg.qr(torch.randn(2 * d_lat, args.input_dim, generator=g).T)[0].T for m in MODS
    }
    n = args.train + args.test
    a = torch.randint(args.easy_classes, (n,), generator=g)
    b = torch.randint(args.hard_classes, (n,), generator=g)
    radius = args.hard_scale * (1.0 + b.float()) / args.hard_classes
    x = {}
    for m in MODS:
        easy = proto_a[a]
        if args.hard_kind == "radial":
            u = torch.randn(n, d_lat, generator=g)
            hard = radius[:, None] * u / u.norm(dim=1, keepdim=True)
        else:
            hard = proto_b[b]
        clean = torch.cat([easy, hard], dim=1) @ mix[m]
        x[m] = clean + args.noise * torch.randn(n, args.input_dim, generator=g)
    tr, te = slice(0, args.train), slice(args.train, n)
    return (
        Data({m: v[tr] for m, v in x.items()}, a[tr], b[tr]),
        Data({m: v[te] for m, v in x.items()}, a[te], b[te]),
    )


def mlp(d_in: int, hidden: int, d_out: int) -> nn.Module:
    return nn.Sequential(nn.Linear(d_in, hidden), nn.ReLU(), nn.Linear(hidden, d_out))


def new_model(
    args: argparse.Namespace, seed: int, embed_dim: int | None = None
) -> tuple[nn.ModuleDict, MCLObjective]:
    torch.manual_seed(seed)
    dim = embed_dim or args.embed_dim
    enc = nn.ModuleDict({m: mlp(args.input_dim, args.hidden, dim) for m in MODS})
    obj = MCLObjective(
        {m: dim for m in MODS},
        modalities=MODS,
        inner="clip",
        inner_kwargs={
            "projection_dim": dim,
            "temperature": args.temperature,
            "learnable_temperature": False,
        },
    )
    return enc, obj


@torch.no_grad()
def embed(enc: nn.ModuleDict, data: Data, modality: str | None = None) -> Tensor:
    enc.eval()
    if modality is None:  # what the pipeline clusters: all modalities concatenated
        out = torch.cat([enc[m](data.x[m]) for m in MODS], dim=1)
    else:
        out = enc[modality](data.x[modality])
    enc.train()
    return out


def train_stage(
    enc: nn.ModuleDict,
    obj: MCLObjective,
    data: Data,
    args: argparse.Namespace,
    epochs: int,
    seed: int,
    first_epoch: int,
    sched: MCLScheduler | None = None,
    stage: int = 0,
) -> None:
    """``epochs`` epochs of CLIP-style training; MCL's negatives with ``sched`` in stage >= 1."""
    obj.set_stage(stage)  # this loop is the stage driver (stage 0: all negatives)
    params = list(enc.parameters()) + list(obj.parameters())
    opt = torch.optim.Adam(params, lr=args.lr)
    n = data.a.numel()
    ids = torch.arange(n)
    for epoch in range(first_epoch, first_epoch + epochs):
        batches = None
        if sched is not None and stage > 0:
            batches = sched.batch_sampler(stage, ids, args.batch_size, 1, 0, seed, epoch)
        if batches is None:
            g = torch.Generator().manual_seed(seed * 100_003 + epoch)
            perm = torch.randperm(n, generator=g)
            batches = [
                perm[i : i + args.batch_size]
                for i in range(0, n - args.batch_size + 1, args.batch_size)
            ]
        for idx in batches:
            idx = torch.as_tensor(idx)
            pseudo = sched.pseudo_labels(stage, idx) if sched is not None and stage > 0 else None
            batch = EncodedBatch.from_tensors(
                {m: enc[m](data.x[m][idx]) for m in MODS}, instance_ids=idx, pseudo_labels=pseudo
            )
            loss = obj(batch).loss
            opt.zero_grad()
            loss.backward()
            opt.step()


def probe(train_f: Tensor, train_y: Tensor, test_f: Tensor, test_y: Tensor) -> float:
    """Linear-probe test accuracy (standardised features, logistic regression)."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.preprocessing import StandardScaler

    sc = StandardScaler().fit(train_f.numpy())
    clf = LogisticRegression(max_iter=2000, C=1.0)
    clf.fit(sc.transform(train_f.numpy()), train_y.numpy())
    return float(clf.score(sc.transform(test_f.numpy()), test_y.numpy()))


def probes(feats_tr: Tensor, feats_te: Tensor, tr: Data, te: Data) -> tuple[float, float]:
    return probe(feats_tr, tr.a, feats_te, te.a), probe(feats_tr, tr.b, feats_te, te.b)


def multi_stage(
    args: argparse.Namespace, seed: int, tr: Data, te: Data, sampler: str | None
) -> tuple[float, float]:
    """The MCL procedure; ``sampler=None``: same stages but ordinary negatives (control)."""
    enc, obj = new_model(args, seed)
    sched = MCLScheduler(
        epochs=args.epochs,
        num_stages=args.stages,
        num_clusters=args.clusters,
        freeze=(),
        reinit_from_stage0=True,
        sampler=sampler or "mask",
        seed=seed,
    )
    stage_models: list[nn.ModuleDict] = []
    stage0: nn.ModuleDict | None = None
    for stage in range(args.stages):
        if stage > 0 and stage0 is not None:
            enc.load_state_dict(stage0.state_dict())  # reinit_from_stage0
        train_stage(
            enc,
            obj,
            tr,
            args,
            args.epochs,
            seed,
            stage * args.epochs,
            sched if sampler else None,
            stage,
        )
        stage_models.append(copy.deepcopy(enc))
        if stage == 0:
            stage0 = stage_models[0]
        if stage < args.stages - 1 and sampler:
            sched.on_stage_end(
                StageContext(
                    stage=stage,
                    embed_training_set=lambda: (embed(enc, tr), torch.arange(tr.a.numel())),
                )
            )
    f_tr = sched.combine([embed(m, tr, "x1") for m in stage_models])
    f_te = sched.combine([embed(m, te, "x1") for m in stage_models])
    return probes(f_tr, f_te, tr, te)


def single_stage(
    args: argparse.Namespace, seed: int, tr: Data, te: Data, epochs: int, dim: int | None = None
) -> tuple[float, float]:
    enc, obj = new_model(args, seed, dim)
    train_stage(enc, obj, tr, args, epochs, seed, 0)
    return probes(embed(enc, tr, "x1"), embed(enc, te, "x1"), tr, te)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--seeds", type=int, default=4)
    p.add_argument("--train", type=int, default=3000)
    p.add_argument("--test", type=int, default=1000)
    p.add_argument("--easy-classes", type=int, default=16)
    p.add_argument("--hard-classes", type=int, default=4)
    p.add_argument("--easy-scale", type=float, default=4.0)
    p.add_argument("--hard-scale", type=float, default=3.0)
    p.add_argument("--hard-kind", choices=("linear", "radial"), default="radial")
    p.add_argument("--noise", type=float, default=0.3)
    p.add_argument("--latent-dim", type=int, default=4)
    p.add_argument("--input-dim", type=int, default=32)
    p.add_argument("--hidden", type=int, default=64)
    p.add_argument("--embed-dim", type=int, default=8)
    p.add_argument("--temperature", type=float, default=0.1)
    p.add_argument("--lr", type=float, default=1e-3)
    p.add_argument("--batch-size", type=int, default=128)
    p.add_argument("--epochs", type=int, default=10, help="epochs per stage")
    p.add_argument("--stages", type=int, default=2)
    p.add_argument("--clusters", type=int, default=10)
    p.add_argument("--only", default="", help="comma-separated subset of rows (debugging)")
    args = p.parse_args()
    torch.set_num_threads(1)
    t0 = time.time()
    rows: dict[str, list[tuple[float, float]]] = {}
    names = {
        "raw x1 (input)": None,
        f"single-stage, {args.stages * args.epochs} epochs": "single",
        f"stage 0 only, {args.epochs} epochs": "stage0",
        f"single-stage, {args.stages * args.epochs} epochs, {args.stages}x wider": "wide",
        f"{args.stages} stages, ordinary negatives, concat": "control",
        f"MCL {args.stages} stages, group sampler, concat": "group",
        f"MCL {args.stages} stages, negative mask, concat": "mask",
    }
    only = {s.strip() for s in args.only.split(",") if s.strip()}
    for seed in range(args.seeds):
        tr, te = make_data(args, seed)
        for name, kind in names.items():
            if only and (kind or "raw") not in only:
                continue
            if kind is None:
                res = probes(tr.x["x1"], te.x["x1"], tr, te)
            elif kind == "single":
                res = single_stage(args, seed, tr, te, args.stages * args.epochs)
            elif kind == "wide":
                res = single_stage(
                    args, seed, tr, te, args.stages * args.epochs, args.stages * args.embed_dim
                )
            elif kind == "stage0":
                res = single_stage(args, seed, tr, te, args.epochs)
            elif kind == "control":
                res = multi_stage(args, seed, tr, te, None)
            else:
                res = multi_stage(args, seed, tr, te, kind)
            rows.setdefault(name, []).append(res)
            print(f"seed {seed} | {name:<46} | a {res[0]:.3f} | b {res[1]:.3f}", flush=True)
    chance_a, chance_b = 1 / args.easy_classes, 1 / args.hard_classes
    print(f"linear probe test accuracy on x1 features, mean ± std over {args.seeds} seeds")
    print(f"(chance: easy a {chance_a:.3f}, hard b {chance_b:.3f}); settings: {vars(args)}")
    print(f"| {'representation':<46} | {'easy a':>13} | {'hard b':>13} |")
    print(f"|{'-' * 48}|{'-' * 15}|{'-' * 15}|")
    for name, res in rows.items():
        arr = np.array(res)
        ma, mb = arr.mean(0)
        sa, sb = arr.std(0)
        print(f"| {name:<46} | {ma:.3f} ± {sa:.3f} | {mb:.3f} ± {sb:.3f} |")
    print(f"wall time {time.time() - t0:.0f} s")


if __name__ == "__main__":
    main()
