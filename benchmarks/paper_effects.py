"""Each paper's claimed effect, measured small: MCL, CCT and TCL experiments + the results page.

Plain PyTorch loops on small synthetic data that call the plugins' objectives
(``torch.set_num_threads(1)``, everything seeded), so one run takes seconds:

* ``mcl``: feature suppression (``plugins/mcl/experiments/suppression.py``'s data and
  loops): single-stage CLIP vs MCL's stages at the same total number of epochs.
* ``cct``: CCT (CACR weighting) vs CLIP at batch sizes 16 / 64 / 256 and the **same number
  of steps**: does CCT depend less on the number of negatives?
* ``tcl``: TCL (all terms: CMA + IMC + LMI) vs TCL cross-modal only (CMA with the same
  queue and momentum distillation) vs CLIP, with 0 / 20 / 40 % of the training captions
  replaced by another instance's caption, the same number of steps.
* ``report``: ``benchmarks/results/paper-effects.md`` tables (mean ± std) and the PNG from
  the JSON-lines files of all experiments (FactorCL's from
  ``plugins/factorcl/experiments/upstream_protocol.py``).

Data for ``cct`` / ``tcl`` ("paired sets"): ``K`` classes with prototypes; instance
semantics ``s = P[c] + z`` (``z ~ N(0, I)``); an "image" is a set of ``L`` local vectors
(a random linear map of ``s`` reshaped to ``(L, d)`` plus noise), a "caption" likewise with
another map and noise. Encoders: a per-element MLP, global feature = mean of the locals
(the locals feed TCL's LMI). Image views: noise + dropping 25 % of the locals. Metrics on a
clean held-out set: image→text R@1 in the joint space, and a linear probe of the class on
the image encoder's features.

Every experiment appends one JSON line per (setting, seed) to ``--out`` and skips lines
that exist, so an interrupted run resumes::

    python benchmarks/paper_effects.py tcl --seeds 0,1,2   # -> benchmarks/results/paper-effects/
    python benchmarks/paper_effects.py report
"""

from __future__ import annotations

import argparse
import copy
import importlib.util
import json
import statistics
import time
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from lightly_mm_plugins.api import EncodedBatch

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results" / "paper-effects"


# --------------------------------------------------------------------------- io


def load_rows(path: Path) -> list[dict[str, Any]]:
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def run_grid(
    out: Path, jobs: Iterable[dict[str, Any]], fn: Callable[[dict[str, Any]], dict[str, float]]
) -> None:
    """Run ``fn(job)`` for every job whose key is not in ``out`` yet; append the rows."""
    out.parent.mkdir(parents=True, exist_ok=True)
    done = {json.dumps(r["job"], sort_keys=True) for r in load_rows(out)}
    for job in jobs:
        key = json.dumps(job, sort_keys=True)
        if key in done:
            continue
        t0 = time.time()
        metrics = fn(job)
        row = {"job": job, **metrics, "seconds": round(time.time() - t0, 1)}
        print(json.dumps(row), flush=True)
        with out.open("a") as f:
            f.write(json.dumps(row) + "\n")


# ------------------------------------------------------------------- paired sets


class PairedSets:
    """Synthetic "image" / "caption" local-vector sets sharing a class and an instance code."""

    def __init__(
        self,
        n: int,
        seed: int,
        classes: int = 20,
        sem_dim: int = 8,
        locals_: int = 8,
        local_dim: int = 16,
        noise: float = 0.5,
        proto_scale: float = 2.0,
        data_seed: int = 12345,
    ) -> None:
        g = torch.Generator().manual_seed(data_seed)  # the same maps for every split/seed
        self.proto = proto_scale * torch.randn(classes, sem_dim, generator=g) / sem_dim**0.5
        self.maps = {
            m: torch.randn(sem_dim, locals_ * local_dim, generator=g) for m in ("image", "text")
        }
        g = torch.Generator().manual_seed(seed)
        self.y = torch.randint(classes, (n,), generator=g)
        s = self.proto[self.y] + torch.randn(n, sem_dim, generator=g) / sem_dim**0.5
        self.x = {
            m: (
                (s @ w) / sem_dim**0.5 + noise * torch.randn(n, locals_ * local_dim, generator=g)
            ).reshape(n, locals_, local_dim)
            for m, w in self.maps.items()
        }
        # the noise-free image, for views with their own observation noise (diagnostic)
        self.clean_image = ((s @ self.maps["image"]) / sem_dim**0.5).reshape(n, locals_, local_dim)
        self.noise = noise
        self.n = n

    def mismatch(self, fraction: float, seed: int) -> None:
        """Replace the captions of ``fraction`` of the instances by other instances' captions."""
        g = torch.Generator().manual_seed(777 + seed)
        k = round(fraction * self.n)
        idx = torch.randperm(self.n, generator=g)[:k]
        self.x["text"][idx] = self.x["text"][idx[torch.randperm(k, generator=g)]].clone()


def augment_image(x: Tensor, g: torch.Generator) -> Tensor:
    """Noise (std 0.3) + zero 25 % of the locals (per instance)."""
    keep = (torch.rand(x.shape[:2], generator=g) > 0.25).float()[..., None]
    return (x + 0.3 * torch.randn(x.shape, generator=g)) * keep


class SetEncoder(nn.Module):
    """Per-element MLP; ``forward`` returns ``(global (N, D), locals (N, L, D))``."""

    def __init__(self, d_in: int, hidden: int, d_out: int) -> None:
        super().__init__()
        self.net = nn.Sequential(nn.Linear(d_in, hidden), nn.ReLU(), nn.Linear(hidden, d_out))

    def forward(self, x: Tensor) -> tuple[Tensor, Tensor]:
        h = self.net(x)
        return h.mean(1), h


def make_objective(method: str, dim: int, args: argparse.Namespace) -> nn.Module:
    import lightly_mm_plugins as lmm

    dims, mods = {"image": dim, "text": dim}, ("image", "text")
    if method == "clip":
        return lmm.create_objective(
            "clip", embedding_dims=dims, modalities=mods, projection_dim=dim
        )
    if method == "cct":
        return lmm.create_objective(
            "cct",
            embedding_dims=dims,
            modalities=mods,
            projection_dim=dim,
            tau_neg=getattr(args, "tau_neg", 0.9),
        )
    if method == "cct-uniform":  # CACR's own ablation: uniform weights (choice='none')
        return lmm.create_objective(
            "cct", embedding_dims=dims, modalities=mods, projection_dim=dim, weighting="uniform"
        )
    weights = {
        "tcl": {},  # CMA + IMC + LMI
        "tcl-imc": {"local_weight": 0.0},  # CMA + IMC
        "tcl-cma": {"intra_modal_weight": 0.0, "local_weight": 0.0},  # cross-modal only
    }[method]
    return lmm.create_objective(
        "tcl",
        embedding_dims=dims,
        modalities=mods,
        embed_dim=dim,
        queue_size=args.queue,
        local_pool_grid=None,
        momentum=getattr(args, "momentum", 0.995),
        **weights,
    )


@torch.no_grad()
def evaluate(
    enc: nn.ModuleDict, obj: nn.Module, train: PairedSets, test: PairedSets
) -> dict[str, float]:
    from sklearn.linear_model import LogisticRegression
    from sklearn.preprocessing import StandardScaler

    enc.eval()
    obj.eval()
    g_tr = enc["image"](train.x["image"])[0]
    g_te = {m: enc[m](test.x[m])[0] for m in ("image", "text")}
    z = {m: F.normalize(obj.joint_embedding(m, g_te[m]), dim=1) for m in g_te}
    r1 = float((z["image"] @ z["text"].T).argmax(1).eq(torch.arange(test.n)).float().mean())
    sc = StandardScaler().fit(g_tr.numpy())
    clf = LogisticRegression(max_iter=1000).fit(sc.transform(g_tr.numpy()), train.y.numpy())
    acc = float(clf.score(sc.transform(g_te["image"].numpy()), test.y.numpy()))
    enc.train()
    obj.train()
    return {"i2t_r1": r1, "probe_image": acc}


def train_paired(job: dict[str, Any], args: argparse.Namespace) -> dict[str, float]:
    """``args.steps`` steps of ``job['method']`` at ``job['batch']``; clean test metrics."""
    return evaluate(*fit_paired(job, args))


def fit_paired(
    job: dict[str, Any], args: argparse.Namespace
) -> tuple[nn.ModuleDict, nn.Module, PairedSets, PairedSets]:
    """The training loop of :func:`train_paired`; returns encoders, objective and data."""
    from lightly.models.utils import update_momentum

    seed, method, batch = job["seed"], job["method"], job["batch"]
    train = PairedSets(args.train, seed=10 * seed + 1)
    train.mismatch(job.get("mismatch", 0.0), seed)
    test = PairedSets(args.test, seed=10 * seed + 2)
    torch.manual_seed(seed)
    local_dim = train.x["image"].shape[-1]
    enc = nn.ModuleDict(
        {m: SetEncoder(local_dim, args.hidden, args.dim) for m in ("image", "text")}
    )
    obj = make_objective(method, args.dim, args)
    tcl = method.startswith("tcl")
    mom = copy.deepcopy(enc).requires_grad_(False) if tcl else None
    params = [*enc.parameters(), *(p for p in obj.parameters() if p.requires_grad)]
    opt = torch.optim.AdamW(params, lr=args.lr, weight_decay=1e-4)
    g = torch.Generator().manual_seed(seed)
    for _ in range(args.steps):
        idx = torch.randint(train.n, (batch,), generator=g)
        img, txt = train.x["image"][idx], train.x["text"][idx]
        if job.get("view_noise") == "fresh":  # each view observes the image with new noise
            clean = train.clean_image[idx]
            views = [
                augment_image(clean + train.noise * torch.randn(clean.shape, generator=g), g)
                for _ in range(2 if tcl else 1)
            ]
        else:
            views = [augment_image(img, g) for _ in range(2 if tcl else 1)]
        gi, li = zip(*(enc["image"](v) for v in views))
        gt, lt = enc["text"](txt)
        kw: dict[str, Any] = {}
        if mom is not None:
            update_momentum(enc, mom, obj.momentum)
            with torch.no_grad():
                mi, mli = zip(*(mom["image"](v) for v in views))
                mt, mlt = mom["text"](txt)
            kw = {
                "local": {"image": torch.stack(li, 1), "text": lt[:, None]},
                "momentum": {"image": torch.stack(mi, 1), "text": mt[:, None]},
                "momentum_local": {"image": torch.stack(mli, 1), "text": mlt[:, None]},
            }
        emb = {"image": torch.stack(gi, 1), "text": gt[:, None]}
        loss = obj(EncodedBatch.from_tensors(emb, instance_ids=idx, **kw)).loss
        opt.zero_grad()
        loss.backward()
        opt.step()
    return enc, obj, train, test


def cmd_cct(args: argparse.Namespace) -> None:
    extra = {} if args.tau_neg == 0.9 else {"tau_neg": args.tau_neg}
    jobs = [
        {"method": m, "batch": b, "seed": s, "steps": args.steps, **extra}
        for s in args.seeds
        for b in args.batches
        for m in args.methods
    ]
    run_grid(Path(args.out), jobs, lambda j: train_paired(j, args))


def cmd_tcl(args: argparse.Namespace) -> None:
    extra: dict[str, Any] = {} if args.momentum == 0.995 else {"momentum": args.momentum}
    if args.fresh_view_noise:
        extra["view_noise"] = "fresh"
    jobs = [
        {"method": m, "batch": args.batch, "mismatch": f, "seed": s, "steps": args.steps, **extra}
        for s in args.seeds
        for f in args.mismatch
        for m in args.methods
    ]
    run_grid(Path(args.out), jobs, lambda j: train_paired(j, args))


# --------------------------------------------------------------------------- mcl


def _suppression_module() -> Any:
    import sys

    if "mcl_suppression" in sys.modules:
        return sys.modules["mcl_suppression"]
    path = ROOT / "plugins" / "mcl" / "experiments" / "suppression.py"
    spec = importlib.util.spec_from_file_location("mcl_suppression", path)
    assert spec is not None and spec.loader is not None
    mod = importlib.util.module_from_spec(spec)
    sys.modules["mcl_suppression"] = mod  # dataclasses look their module up
    spec.loader.exec_module(mod)
    return mod


MCL_VARIANTS: dict[str, dict[str, Any]] = {
    # the capacity-limited variant of the MCL README: 3-d embeddings, a linear hard factor
    "capacity": {"hard_kind": "linear", "hard_scale": 1.0, "latent_dim": 8, "embed_dim": 3},
    # the default (radial hard factor, 8-d embeddings)
    "radial": {},
}
MCL_ROWS = ("single", "stage0", "wide", "control", "mask", "group")


def mcl_args(variant: str, epochs: int, train: int, test: int) -> argparse.Namespace:
    base = dict(
        train=train,
        test=test,
        easy_classes=16,
        hard_classes=4,
        easy_scale=4.0,
        hard_scale=3.0,
        hard_kind="radial",
        noise=0.3,
        latent_dim=4,
        input_dim=32,
        hidden=64,
        embed_dim=8,
        temperature=0.1,
        lr=1e-3,
        batch_size=128,
        epochs=epochs,
        stages=2,
        clusters=10,
    )
    base.update(MCL_VARIANTS[variant])
    return argparse.Namespace(**base)


def mcl_job(job: dict[str, Any], train: int, test: int) -> dict[str, float]:
    sup = _suppression_module()
    torch.set_num_threads(1)
    a = mcl_args(job["variant"], job["epochs"], train, test)
    seed, row = job["seed"], job["row"]
    tr, te = sup.make_data(a, seed)
    total = a.stages * a.epochs
    if row == "single":
        res = sup.single_stage(a, seed, tr, te, total)
    elif row == "stage0":
        res = sup.single_stage(a, seed, tr, te, a.epochs)
    elif row == "wide":
        res = sup.single_stage(a, seed, tr, te, total, a.stages * a.embed_dim)
    elif row == "control":
        res = sup.multi_stage(a, seed, tr, te, None)
    else:
        res = sup.multi_stage(a, seed, tr, te, row)
    raw = sup.probes(tr.x["x1"], te.x["x1"], tr, te)
    return {"easy": res[0], "hard": res[1], "raw_easy": raw[0], "raw_hard": raw[1]}


def cmd_mcl(args: argparse.Namespace) -> None:
    jobs = [
        {"variant": v, "epochs": e, "row": r, "seed": s}
        for v, e in (x.split(":") for x in args.variants)
        for s in args.seeds
        for r in args.rows
    ]
    jobs = [{**j, "epochs": int(j["epochs"])} for j in jobs]
    run_grid(Path(args.out), jobs, lambda j: mcl_job(j, args.train, args.test))


# ------------------------------------------------------------------------ report


def cell(values: list[float], seeds_expected: int) -> str:
    if not values:
        return "–"
    std = statistics.stdev(values) if len(values) > 1 else 0.0
    mark = "" if len(values) >= seeds_expected else f" ({len(values)}/{seeds_expected} seeds)"
    return f"{statistics.fmean(values):.3f} ± {std:.3f}{mark}"


def group(
    rows: list[dict[str, Any]], key: Callable[[dict[str, Any]], Any], metric: str
) -> dict[Any, list[float]]:
    out: dict[Any, list[float]] = {}
    for r in rows:
        out.setdefault(key(r), []).append(r[metric])
    return out


FCL_ROWS = (
    # label, project method, official-code method (None: not a trained method)
    ("raw `[x1, x2]` (inputs, no encoder)", "raw", None),
    ("random-init backbones (untrained)", "random-init", None),
    ("FactorCL-SUP", "proj-sup", "up-sup"),
    ("FactorCL-SSL", "proj-ssl", "up-ssl"),
    ("FactorCL-SSL, the plugin's defaults (pipeline heads / CLUB)", "proj-ssl-defaults", None),
    ("contrastive baseline (project: CLIP; official: SimCLR)", "proj-clip", "up-simclr"),
)


def factorcl_table(rows: list[dict[str, Any]], seeds: int) -> str:
    acc = group(rows, lambda r: r["method"], "acc")
    acc_pp = group(
        [r for r in rows if "acc_project_probe" in r], lambda r: r["method"], "acc_project_probe"
    )
    sec = group(rows, lambda r: r["method"], "seconds")
    proto = rows[0] if rows else {}
    lines = [
        f"N = {proto.get('n')} (80/20 split), batch {proto.get('batch_size')}, "
        f"{proto.get('epochs')} epochs FactorCL / {proto.get('simclr_epochs')} epochs contrastive, "
        f"Adam lr {proto.get('lr')}. Official probe: `LogisticRegression(max_iter=200)` on "
        "`[e1(x1), e2(x2)]`, test accuracy; pipeline probe: the project's `linear_probe` "
        "(standardised features, `max_iter=1000`) on the same features.",
        "",
        "| method | project, official probe | official code, official probe "
        "| project, pipeline probe | official code, pipeline probe | s/run (project / official) |",
        "|---|---|---|---|---|---|",
    ]
    for label, ours, theirs in FCL_ROWS:
        if ours not in acc:
            continue
        keys = (ours, theirs) if theirs else (ours,)
        t = " / ".join(f"{statistics.fmean(sec[k]):.0f}" if sec.get(k) else "–" for k in keys)
        other = "same data" if theirs is None else "–"
        cells = [
            cell(acc.get(ours, []), seeds),
            cell(acc.get(theirs, []), seeds) if theirs else other,
            cell(acc_pp.get(ours, []), seeds),
            cell(acc_pp.get(theirs, []), seeds) if theirs else other,
        ]
        lines.append(f"| {label} | " + " | ".join(cells) + f" | {t} |")
    return "\n".join(lines)


MCL_TITLES = {
    "single": "single-stage, {t} epochs",
    "stage0": "stage 0 only, {e} epochs",
    "wide": "single-stage, {t} epochs, 2x wider embedding",
    "control": "2 stages, ordinary negatives, concat",
    "group": "MCL 2 stages, group sampler (official), concat",
    "mask": "MCL 2 stages, negative mask, concat",
}


def mcl_table(rows: list[dict[str, Any]], seeds: int) -> str:
    lines = []
    for variant in dict.fromkeys((r["job"]["variant"], r["job"]["epochs"]) for r in rows):
        sub = [r for r in rows if (r["job"]["variant"], r["job"]["epochs"]) == variant]
        easy = group(sub, lambda r: r["job"]["row"], "easy")
        hard = group(sub, lambda r: r["job"]["row"], "hard")
        raw_e = group(sub, lambda r: r["job"]["seed"], "raw_easy")
        raw_h = group(sub, lambda r: r["job"]["seed"], "raw_hard")
        e = variant[1]
        lines += [
            f"Variant `{variant[0]}`, {e} epochs per stage:",
            "",
            "| representation (x1) | easy factor a | hard factor b |",
            "|---|---|---|",
            f"| raw x1 (input) | {cell([v[0] for v in raw_e.values()], seeds)} "
            f"| {cell([v[0] for v in raw_h.values()], seeds)} |",
        ]
        for row, title in MCL_TITLES.items():
            if row in easy:
                lines.append(
                    f"| {title.format(t=2 * e, e=e)} | {cell(easy[row], seeds)} "
                    f"| {cell(hard[row], seeds)} |"
                )
        lines.append("")
    return "\n".join(lines).rstrip()


def method_label(row: dict[str, Any]) -> str:
    job = row["job"]
    extra = [f"{k} {job[k]}" for k in ("momentum", "tau_neg", "view_noise") if k in job]
    return job["method"] + (f" ({', '.join(extra)})" if extra else "")


def grid_table(
    rows: list[dict[str, Any]], seeds: int, col: str, col_title: Callable[[Any], str]
) -> str:
    cols = sorted({r["job"][col] for r in rows})
    methods = list(dict.fromkeys(method_label(r) for r in rows))
    lines = []
    for metric, title in (("i2t_r1", "image→text R@1"), ("probe_image", "class probe (image)")):
        vals = group(rows, lambda r: (method_label(r), r["job"][col]), metric)
        lines += [
            f"{title}:",
            "",
            "| method | " + " | ".join(col_title(c) for c in cols) + " |",
            "|---|" + "---|" * len(cols),
        ]
        for m in methods:
            lines.append(
                f"| {m} | " + " | ".join(cell(vals.get((m, c), []), seeds) for c in cols) + " |"
            )
        lines.append("")
    return "\n".join(lines).rstrip()


def plot(data: dict[str, list[dict[str, Any]]], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 4, figsize=(18, 4))

    def bars(ax: Any, labels: list[str], vals: list[list[float]], title: str) -> None:
        means = [statistics.fmean(v) if v else float("nan") for v in vals]
        stds = [statistics.stdev(v) if len(v) > 1 else 0.0 for v in vals]
        ax.bar(range(len(labels)), means, yerr=stds, capsize=3)
        ax.set_xticks(range(len(labels)), labels, rotation=45, ha="right", fontsize=8)
        ax.set_title(title, fontsize=10)
        finite = [m for m in means if m == m]
        if finite:
            ax.set_ylim(max(0.0, min(finite) - 0.1), min(1.0, max(finite) + 0.05))

    acc = group(data["factorcl"], lambda r: r["method"], "acc")
    keys = [
        "raw",
        "random-init",
        "proj-sup",
        "up-sup",
        "proj-ssl",
        "up-ssl",
        "proj-clip",
        "up-simclr",
    ]
    bars(axes[0], keys, [acc.get(k, []) for k in keys], "FactorCL synthetic: probe accuracy")
    hard = group(data["mcl"], lambda r: r["job"]["row"], "hard")
    rows = [r for r in MCL_TITLES if r in hard]
    bars(axes[1], rows, [hard[r] for r in rows], "MCL: hard-factor probe")
    for ax, name, col, title in (
        (axes[2], "cct", "batch", "CCT vs CLIP: R@1 vs batch size"),
        (axes[3], "tcl", "mismatch", "TCL: R@1 vs mismatched captions"),
    ):
        rows_ = data[name]
        vals = group(rows_, lambda r, c=col: (r["job"]["method"], r["job"][c]), "i2t_r1")
        for m in dict.fromkeys(r["job"]["method"] for r in rows_):
            xs = sorted({c for (mm, c) in vals if mm == m})
            ys = [statistics.fmean(vals[(m, c)]) for c in xs]
            es = [statistics.stdev(vals[(m, c)]) if len(vals[(m, c)]) > 1 else 0 for c in xs]
            ax.errorbar(xs, ys, yerr=es, marker="o", capsize=3, label=m)
        if col == "batch":
            ax.set_xscale("log", base=2)
        ax.set_xlabel(col)
        ax.set_title(title, fontsize=10)
        ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=90)


def replace_block(text: str, name: str, body: str) -> str:
    start, end = f"<!-- table:{name} -->", f"<!-- /table:{name} -->"
    if start not in text or end not in text:
        raise SystemExit(f"{name}: markers {start} ... {end} are missing from the page")
    head, rest = text.split(start, 1)
    _, tail = rest.split(end, 1)
    return f"{head}{start}\n{body}\n{end}{tail}"


def cmd_report(args: argparse.Namespace) -> None:
    res = Path(args.results)
    names = ("factorcl", "mcl", "cct", "tcl", "tcl-diagnostics", "cct-diagnostics")
    data = {k: load_rows(res / f"{k}.jsonl") for k in names}
    seeds = args.expected_seeds
    tables = {
        "factorcl": factorcl_table(data["factorcl"], seeds),
        "mcl": mcl_table(data["mcl"], seeds),
        "cct": grid_table(data["cct"], seeds, "batch", lambda b: f"batch {b}"),
        "tcl": grid_table(data["tcl"], seeds, "mismatch", lambda f: f"{100 * f:.0f} % mismatched"),
    }
    if data["cct-diagnostics"]:
        tables["cct-diagnostics"] = grid_table(
            data["cct-diagnostics"], seeds, "batch", lambda b: f"batch {b}"
        )
    if data["tcl-diagnostics"]:
        tables["tcl-diagnostics"] = grid_table(
            data["tcl-diagnostics"], seeds, "mismatch", lambda f: f"{100 * f:.0f} % mismatched"
        )
    page = Path(args.page)
    text = page.read_text()
    for name, body in tables.items():
        text = replace_block(text, name, body)
    page.write_text(text)
    plot(data, Path(args.plot))
    print(f"wrote {page} and {args.plot}")


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    sub = p.add_subparsers(dest="cmd", required=True)

    def ints(s: str) -> list[int]:
        return [int(x) for x in s.split(",")]

    def floats(s: str) -> list[float]:
        return [float(x) for x in s.split(",")]

    def strs(s: str) -> list[str]:
        return [x for x in s.split(",") if x]

    for name in ("cct", "tcl"):
        q = sub.add_parser(name)
        q.add_argument("--seeds", type=ints, default=[0, 1, 2])
        q.add_argument("--steps", type=int, default=300)
        q.add_argument("--train", type=int, default=4000)
        q.add_argument("--test", type=int, default=500)
        q.add_argument("--hidden", type=int, default=64)
        q.add_argument("--dim", type=int, default=32)
        q.add_argument("--lr", type=float, default=1e-3)
        q.add_argument("--queue", type=int, default=1024)
        q.add_argument("--out", default=str(RESULTS / f"{name}.jsonl"))
        if name == "cct":
            q.add_argument("--batches", type=ints, default=[16, 64, 256])
            q.add_argument("--methods", type=strs, default=["clip", "cct", "cct-uniform"])
            q.add_argument("--tau-neg", type=float, default=0.9, help="CCT's tau- (README 0.9)")
        else:
            q.add_argument("--batch", type=int, default=128)
            q.add_argument("--mismatch", type=floats, default=[0.0, 0.2, 0.4])
            q.add_argument("--methods", type=strs, default=["clip", "tcl-cma", "tcl"])
            q.add_argument(
                "--momentum", type=float, default=0.995, help="TCL's EMA decay (paper 0.995)"
            )
            q.add_argument(
                "--fresh-view-noise",
                action="store_true",
                help="diagnostic: each image view gets its own observation noise",
            )
    q = sub.add_parser("mcl")
    q.add_argument("--seeds", type=ints, default=[0, 1, 2])
    q.add_argument("--variants", type=strs, default=["capacity:10"])
    q.add_argument("--rows", type=strs, default=list(MCL_ROWS))
    q.add_argument("--train", type=int, default=3000)
    q.add_argument("--test", type=int, default=1000)
    q.add_argument("--out", default=str(RESULTS / "mcl.jsonl"))
    q = sub.add_parser("report")
    q.add_argument("--results", default=str(RESULTS))
    q.add_argument("--page", default=str(ROOT / "benchmarks" / "results" / "paper-effects.md"))
    q.add_argument("--plot", default=str(ROOT / "benchmarks" / "results" / "paper-effects.png"))
    q.add_argument("--expected-seeds", type=int, default=3)
    args = p.parse_args(argv)
    torch.set_num_threads(1)
    {"cct": cmd_cct, "tcl": cmd_tcl, "mcl": cmd_mcl, "report": cmd_report}[args.cmd](args)


if __name__ == "__main__":
    main()
