#!/usr/bin/env python
"""Pipeline-overhead benchmark: the host's training step against a hand-written one.

Issue 11, item 3. Two measurements, each against a baseline taken in the same run:

**Training throughput.** One workload is trained twice for the same number of steps:

* ``host``: exactly what ``lightly-mm train`` builds
  (:func:`lightly_mm_plugins.training.run.build_components`: plugin lookup, the
  registered view inside the seeded, resumable data module, the encoders, the
  registered ``clip`` objective with its batch validation, the
  :class:`~lightly_mm_plugins.training.module.MultimodalModule` with its per-step
  seeding, finiteness check and logging);
* ``hand``: a hand-written :class:`HandWrittenCLIP` LightningModule doing the same
  work without the host: the same encoder modules (copied, same weights), the same
  projection heads as plain ``nn.Linear`` (same weights), CLIP's symmetric InfoNCE
  with a learnable temperature written out, a plain ``Dataset`` applying the same
  torchvision augmentation, the default collate, the same batches, AdamW with the
  same warm-up + cosine schedule and the same gradient clipping.

Both run under identical ``pl.Trainer`` settings (no logger, no checkpoints, no
progress bar: I/O a hand-written script would have too). Throughput is samples per
second over the steps after ``--warmup`` steps, timed from the end of one training
step to the end of another (data loading and augmentation included). Each
implementation runs ``--repeats`` times, each in a fresh worker process,
interleaved (host, hand, hand, host, ...), and the table shows medians and the
ratio ``host / hand`` (target: at least 0.95).

On the ``vectors`` workload (no augmentation) both implementations see the same
batches from the same weights, so their losses must agree step by step; the table
shows the largest difference, which checks that the two do the same work.

Workloads: ``vectors``: the synthetic shared/unique data (two 100-d vector
modalities, MLP encoders 512-512-128): little arithmetic per sample, so the
host's per-step overhead is most visible. ``digits``: the embedded default data
(``lightly-mm train``'s default: small ResNet on 16x16 images with SimCLR-style
augmentation, frozen MiniLM whose caption cache is filled before timing, i.e. the
steady state after the first epoch).

**Start-up.** Wall time of fresh Python processes (median of ``--startup-repeats``,
interleaved, after one discarded round that also writes the bytecode caches):
``python -c pass``, ``import lightly``,
``import lightly_mm_plugins``, plugin discovery (``get_host().plugins()``, which
reads entry points and calls every plugin's hooks), the same after ``import
lightly`` (what a Lightly script pays on top of Lightly; target: under 50 ms), and
the ``lightly-mm plugins`` command.

Example:
    python benchmarks/pipeline.py            # both workloads, CPU: writes results/pipeline.md
    python benchmarks/pipeline.py --quick    # smoke configuration, writes nothing
    python benchmarks/pipeline.py --workloads vectors --profile  # cProfile of both
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
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "benchmarks" / "results"

#: Workload name -> ``TrainConfig`` fields (method clip everywhere).
WORKLOADS: dict[str, dict[str, Any]] = {
    "vectors": {"data": "synthetic", "limit_train_samples": 4096},
    "digits": {"data": "default"},
}
#: Timed steps per run when ``--steps`` is not given (a run's window is then several
#: seconds on a CPU: short windows make the ratio noisy).
DEFAULT_STEPS = {"vectors": 200, "digits": 30}


#: Steps whose losses are compared on same-batch workloads. The two implementations
#: compute the same loss in different float expressions; the rounding differences
#: (1e-7) grow through training (1e-3 after 30 steps at lr 1e-3), so only the first
#: steps are a check of equal work.
LOSS_CHECK_STEPS = 5


# --------------------------------------------------------------------- worker side
def _hand_written_module() -> Any:
    """The baseline LightningModule class (built lazily: the parent process never imports torch)."""
    import math

    import pytorch_lightning as pl
    import torch
    import torch.nn.functional as F
    from torch import Tensor, nn

    class HandWrittenCLIP(pl.LightningModule):
        """Two encoders, two linear heads, symmetric InfoNCE with a learnable ``log(1/tau)``.

        ``L = (CE(s, I) + CE(s^T, I)) / 2`` with ``s = exp(t) * norm(h_a) norm(h_b)^T``
        and ``exp(t)`` clamped at 100, as CLIP. Written without any host code.
        """

        def __init__(
            self,
            encoder_a: nn.Module,
            encoder_b: nn.Module,
            head_a: nn.Linear,
            head_b: nn.Linear,
            log_scale: float,
            lr: float,
            weight_decay: float,
            warmup_steps: int,
            total_steps: int,
        ) -> None:
            super().__init__()
            self.encoder_a, self.encoder_b = encoder_a, encoder_b
            self.head_a, self.head_b = head_a, head_b
            self.log_scale = nn.Parameter(torch.tensor(log_scale))
            self.lr, self.weight_decay = lr, weight_decay
            self.warmup_steps, self.total_steps = warmup_steps, total_steps

        def training_step(self, batch: tuple[Any, Any], batch_idx: int) -> Tensor:
            x_a, x_b = batch
            z_a = F.normalize(self.head_a(self.encoder_a(x_a)), dim=-1)
            z_b = F.normalize(self.head_b(self.encoder_b(x_b)), dim=-1)
            logits = self.log_scale.exp().clamp(max=100.0) * z_a @ z_b.T
            target = torch.arange(len(logits), device=logits.device)
            loss = (F.cross_entropy(logits, target) + F.cross_entropy(logits.T, target)) / 2
            self.log("train_loss", loss, prog_bar=True, batch_size=len(logits))
            return loss

        def configure_optimizers(self) -> Any:
            opt = torch.optim.AdamW(self.parameters(), lr=self.lr, weight_decay=self.weight_decay)
            warmup, total = self.warmup_steps, self.total_steps

            def lr_lambda(step: int) -> float:
                if step < warmup:
                    return (step + 1) / max(1, warmup)
                progress = (step - warmup) / max(1, total - warmup)
                return 0.5 * (1.0 + math.cos(math.pi * min(1.0, progress)))

            sched = torch.optim.lr_scheduler.LambdaLR(opt, lr_lambda)
            return {"optimizer": opt, "lr_scheduler": {"scheduler": sched, "interval": "step"}}

    return HandWrittenCLIP


def _hand_written_data(
    train_set: Any, kinds: dict[str, str], image_size: int, seed: int, seeded: bool
) -> Any:
    """Dataset + batch sampler of the baseline: one random observation per modality,
    images through the same torchvision v2 augmentation as the ``clip`` view.

    ``seeded``: before each sample, seed Python's, NumPy's and torch's CPU generators
    from ``(seed, epoch, index)`` as the host does (the augmentation of a sample then
    does not depend on where a run resumed), without the host's save/restore."""
    import random

    import numpy as np
    import torch
    from torch.utils.data import Dataset
    from torchvision.transforms import v2

    mean, std = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)
    augment = v2.Compose(
        [
            v2.ToImage(),
            v2.RGB(),
            v2.RandomResizedCrop(image_size, scale=(0.5, 1.0), antialias=True),
            v2.RandomApply([v2.ColorJitter(0.4, 0.4, 0.4, 0.1)], p=0.8),
            v2.RandomGrayscale(p=0.2),
            v2.ToDtype(torch.float32, scale=True),
            v2.Normalize(mean, std),
        ]
    )
    names = list(kinds)
    samples = [train_set[i].observations for i in range(len(train_set))]

    class Pairs(Dataset[Any]):
        def __init__(self) -> None:
            self.seeds: list[int] = []  # this epoch's per-sample seeds (hand-seeded)

        def __len__(self) -> int:
            return len(samples)

        def __getitem__(self, index: int) -> tuple[Any, Any]:
            if seeded:
                s = self.seeds[index]
                random.seed(s)
                np.random.seed(s)
                torch.default_generator.manual_seed(s)
            out = []
            for m in names:
                obs = random.choice(samples[index][m])
                if kinds[m] == "image":
                    obs = augment(obs)
                elif kinds[m] == "vector":
                    obs = torch.as_tensor(obs, dtype=torch.float32)
                out.append(obs)
            return out[0], out[1]

    dataset = Pairs()

    class ShuffledBatches:
        """Equal-size shuffled batches, a new permutation per epoch (seed*100003+epoch),
        i.e. the same batches the host's sampler yields on one device."""

        def __init__(self, n: int, batch_size: int, seed: int) -> None:
            self.n, self.batch_size, self.seed, self.epoch = n, batch_size, seed, 0

        def __len__(self) -> int:
            return self.n // self.batch_size

        def __iter__(self) -> Any:
            g = torch.Generator().manual_seed(self.seed * 100_003 + self.epoch)
            order = torch.randperm(self.n, generator=g).tolist()
            if seeded:
                sequence = np.random.SeedSequence([self.seed, self.epoch, 0x5EED])
                dataset.seeds = sequence.generate_state(self.n).tolist()
            self.epoch += 1
            for b in range(len(self)):
                yield order[b * self.batch_size : (b + 1) * self.batch_size]

    return dataset, ShuffledBatches


def _step_timer(device: str) -> Any:
    import pytorch_lightning as pl
    import torch

    class StepTimer(pl.Callback):
        """Wall-clock time at the end of every training step, and its loss."""

        def __init__(self) -> None:
            self.ends: list[float] = []
            self.losses: list[Any] = []

        def on_train_batch_end(self, trainer: Any, module: Any, outputs: Any, *args: Any) -> None:
            if device == "cuda":
                torch.cuda.synchronize()
            self.ends.append(time.perf_counter())
            loss = outputs["loss"] if isinstance(outputs, dict) else outputs
            self.losses.append(loss.detach())

    return StepTimer()


def _fill_caption_cache(module: Any, kinds: dict[str, str], train_set: Any, cache: Path) -> None:
    """Fill the frozen text encoder's caption cache (from ``cache`` when it exists)."""
    import torch

    for m, kind in kinds.items():
        if kind != "text":
            continue
        encoder = module.encoders[m]
        if not hasattr(encoder, "_cache") or getattr(encoder, "trainable", False):
            continue
        path = cache / f"captions-{m}.pt"
        if path.exists():
            encoder._cache.update(torch.load(path, weights_only=True))
            continue
        captions = sorted({c for i in range(len(train_set)) for c in train_set[i].observations[m]})
        with torch.no_grad():
            for start in range(0, len(captions), 256):
                encoder(captions[start : start + 256])
        torch.save(dict(encoder._cache), path)


def run_worker(cfg: dict[str, Any]) -> dict[str, Any]:
    """Train one implementation for ``warmup + steps`` steps; step end times and losses."""
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
    import warnings

    import pytorch_lightning as pl
    import torch
    from torch import nn

    from lightly_mm_plugins.training.run import TrainConfig, build_components

    warnings.filterwarnings("ignore")
    torch.set_num_threads(cfg["threads"])
    seed = 0
    pl.seed_everything(seed, workers=True, verbose=False)
    train_cfg = TrainConfig(
        method="clip",
        batch_size=cfg["batch_size"],
        seed=seed,
        num_workers=cfg["num_workers"],
        **WORKLOADS[cfg["workload"]],
    )
    parts = build_components(train_cfg)
    module, dm = parts["module"], parts["datamodule"]
    kinds: dict[str, str] = parts["kinds"]
    _fill_caption_cache(module, kinds, dm.train_set, Path(cfg["cache_dir"]))

    steps_per_epoch = dm.batches_per_epoch(0)
    total_steps = steps_per_epoch * module.total_epochs
    timer = _step_timer(cfg["device"])
    trainer = pl.Trainer(
        max_steps=cfg["warmup"] + cfg["steps"],
        accelerator=cfg["device"],
        devices=1,
        precision=cfg["precision"],
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        num_sanity_val_steps=0,
        gradient_clip_val=1.0,
        use_distributed_sampler=False,
        reload_dataloaders_every_n_epochs=1,
        callbacks=[timer],
    )
    profiler = None
    if cfg.get("profile"):
        import cProfile

        profiler = cProfile.Profile()
    if cfg["impl"] == "host":
        if profiler:
            profiler.enable()
        trainer.fit(module, datamodule=dm)
    else:
        from torch.utils.data import DataLoader

        names = list(kinds)
        heads = []
        for m in names:
            proj = module.objective.heads[m]
            linears = [layer for layer in proj.modules() if isinstance(layer, nn.Linear)]
            assert len(linears) == 1, "the clip objective's heads are one Linear layer"
            head = nn.Linear(linears[0].in_features, linears[0].out_features)
            head.load_state_dict(linears[0].state_dict())
            heads.append(head)
        model = _hand_written_module()(
            module.encoders[names[0]],
            module.encoders[names[1]],
            heads[0],
            heads[1],
            log_scale=float(module.objective.loss_fn.log_scale.detach()),
            lr=train_cfg.lr,
            weight_decay=train_cfg.weight_decay,
            warmup_steps=int(train_cfg.warmup_epochs * steps_per_epoch),
            total_steps=total_steps,
        )
        image_size = int(getattr(dm.train_set, "default_image_size", 32))
        seeded = cfg["impl"] == "hand-seeded"
        dataset, batches = _hand_written_data(dm.train_set, kinds, image_size, seed, seeded)
        loader = DataLoader(
            dataset,
            batch_sampler=batches(len(dataset), cfg["batch_size"], seed),
            num_workers=cfg["num_workers"],
        )
        del module
        if profiler:
            profiler.enable()
        trainer.fit(model, train_dataloaders=loader)
    if profiler:
        import io
        import pstats

        profiler.disable()
        text = io.StringIO()
        pstats.Stats(profiler, stream=text).sort_stats(
            os.environ.get("PIPELINE_PROFILE_SORT", "tottime")
        ).print_stats(int(os.environ.get("PIPELINE_PROFILE_ROWS", "25")))
        print(
            f"### cProfile, {cfg['impl']} ({cfg['workload']}), top 25 by own time", file=sys.stderr
        )
        print(text.getvalue(), file=sys.stderr)
    losses = [float(x) for x in timer.losses]
    return {"ends": timer.ends, "losses": losses, "steps_per_epoch": steps_per_epoch}


# --------------------------------------------------------------------- parent side
def _worker(cfg: dict[str, Any], timeout: float) -> dict[str, Any]:
    proc = subprocess.run(
        [sys.executable, __file__, "--worker", json.dumps(cfg)],
        capture_output=True,
        text=True,
        timeout=timeout,
        cwd=ROOT,
    )
    if cfg.get("profile"):
        print(proc.stderr[proc.stderr.find("### cProfile") :], file=sys.stderr)
    if proc.returncode != 0:
        raise RuntimeError(
            f"worker {cfg['impl']}/{cfg['workload']} failed (exit {proc.returncode}):\n"
            + proc.stderr[-3000:]
        )
    return json.loads(proc.stdout.strip().splitlines()[-1])  # type: ignore[no-any-return]


def throughput(result: dict[str, Any], warmup: int, batch_size: int) -> float:
    """Samples per second between the end of step ``warmup`` and the end of the last step."""
    ends = result["ends"]
    steps = len(ends) - warmup
    return steps * batch_size / (ends[-1] - ends[warmup - 1])


def measure_training(args: argparse.Namespace) -> list[dict[str, Any]]:
    rows = []
    cache_dir = Path(args.cache_dir)
    cache_dir.mkdir(parents=True, exist_ok=True)
    for workload in args.workloads:
        steps = args.steps or DEFAULT_STEPS[workload]
        base = {
            "workload": workload,
            "batch_size": args.batch_size,
            "warmup": args.warmup,
            "steps": steps,
            "threads": args.threads,
            "device": args.device,
            "precision": args.precision,
            "cache_dir": str(cache_dir),
            "num_workers": args.num_workers,
        }
        impls = ["host", *args.baselines]
        runs: dict[str, list[dict[str, Any]]] = {impl: [] for impl in impls}
        for r in range(args.repeats):
            order = impls[r % len(impls) :] + impls[: r % len(impls)]
            for impl in order if r % 2 == 0 else reversed(order):
                log(f"{workload}: {impl} run {r + 1}/{args.repeats}")
                profile = args.profile and r == 0
                res = _worker({**base, "impl": impl, "profile": profile}, args.worker_timeout)
                res["samples_per_s"] = throughput(res, args.warmup, args.batch_size)
                log(f"  {res['samples_per_s']:.0f} samples/s")
                runs[impl].append(res)
        host = [x["samples_per_s"] for x in runs["host"]]
        same_batches = WORKLOADS[workload]["data"] != "default"
        for baseline in args.baselines:
            other = [x["samples_per_s"] for x in runs[baseline]]
            loss_diff = None
            if same_batches:
                k = LOSS_CHECK_STEPS
                loss_diff = max(
                    abs(a - b)
                    for h, w in zip(runs["host"], runs[baseline])
                    for a, b in zip(h["losses"][:k], w["losses"][:k])
                )
            rows.append(
                {
                    "workload": workload,
                    "baseline": baseline,
                    "steps": steps,
                    "batch_size": args.batch_size,
                    "host": host,
                    "baseline_samples_per_s": other,
                    "ratio": statistics.median(host) / statistics.median(other),
                    "pair_ratios": [h / w for h, w in zip(host, other)],
                    "loss_diff": loss_diff,
                    "steps_per_epoch": runs["host"][0]["steps_per_epoch"],
                }
            )
    return rows


def _lightly_mm_command() -> list[str]:
    script = Path(sys.executable).with_name("lightly-mm")
    if script.exists():
        return [str(script), "plugins"]
    return [sys.executable, "-c", "from lightly_mm_plugins.cli import main; main(['plugins'])"]


#: Start-up cases: name -> the statement a fresh process times (``None``: the
#: ``lightly-mm plugins`` command, timed from outside only).
STARTUP_CASES: dict[str, str | None] = {
    "python -c pass": "pass",
    "import lightly": "import lightly",
    "import lightly_mm_plugins": "import lightly_mm_plugins",
    "import lightly_mm_plugins + discovery": (
        "import lightly_mm_plugins as h; h.get_host().plugins()"
    ),
    "import lightly + lightly_mm_plugins + discovery": (
        "import lightly; import lightly_mm_plugins as h; h.get_host().plugins()"
    ),
    "lightly-mm plugins": None,
}
_TIMED = "import time; _t = time.perf_counter(); {stmt}; print(time.perf_counter() - _t)"


def measure_startup(args: argparse.Namespace) -> list[dict[str, Any]]:
    """Per case: wall time of the process and, inside it, of the statement alone."""
    # Bytecode caching on (Python's default; some containers set
    # PYTHONDONTWRITEBYTECODE, which makes every run compile the sources again):
    # the discarded first round writes the caches. The processes run in an empty
    # directory so that ``''`` on ``sys.path`` (the working directory) shadows nothing.
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1"}
    env.pop("PYTHONDONTWRITEBYTECODE", None)
    wall: dict[str, list[float]] = {name: [] for name in STARTUP_CASES}
    inside: dict[str, list[float]] = {name: [] for name in STARTUP_CASES}
    names = list(STARTUP_CASES)
    with tempfile.TemporaryDirectory() as empty:
        for r in range(args.startup_repeats + 1):
            for name in names if r % 2 == 0 else names[::-1]:
                stmt = STARTUP_CASES[name]
                cmd = (
                    _lightly_mm_command()
                    if stmt is None
                    else [sys.executable, "-c", _TIMED.format(stmt=stmt)]
                )
                t0 = time.perf_counter()
                proc = subprocess.run(
                    cmd, check=True, env=env, cwd=empty, capture_output=True, text=True
                )
                elapsed = time.perf_counter() - t0
                if r == 0:  # warms the file and bytecode caches
                    continue
                wall[name].append(elapsed)
                if stmt is not None:
                    inside[name].append(float(proc.stdout.strip().splitlines()[-1]))
    return [
        {"command": name, "seconds": wall[name], "inside_seconds": inside[name]}
        for name in STARTUP_CASES
    ]


# --------------------------------------------------------------------------- output
def log(message: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


def machine() -> str:
    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    load = ""
    if hasattr(os, "getloadavg"):
        load = f", load average {os.getloadavg()[0]:.1f} at the end"
    return f"{cpu}, {os.cpu_count()} cores{load}, python {platform.python_version()}"


def versions() -> str:
    out = subprocess.run(
        [
            sys.executable,
            "-c",
            "import torch, pytorch_lightning, lightly; "
            "print(f'torch {torch.__version__}, pytorch_lightning {pytorch_lightning.__version__}, "
            "lightly {lightly.__version__}')",
        ],
        capture_output=True,
        text=True,
    )
    return out.stdout.strip()


def git_commit() -> str:
    try:
        head = subprocess.run(
            ["git", "-C", str(ROOT), "rev-parse", "--short", "HEAD"], capture_output=True, text=True
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "-C", str(ROOT), "status", "--porcelain", "--untracked-files=no"],
            capture_output=True,
            text=True,
        ).stdout.strip()
        return head + (" (modified)" if dirty else "")
    except OSError:
        return "?"


def _verdict(ok: bool) -> str:
    return "**met**" if ok else "**missed**"


def render(
    args: argparse.Namespace,
    training: list[dict[str, Any]],
    startup: list[dict[str, Any]],
    argv: list[str],
) -> str:
    lines = [
        "# Pipeline overhead: host vs hand-written Lightning module",
        "",
        f"- command: `{' '.join(['python benchmarks/pipeline.py', shlex.join(argv)]).strip()}`",
        f"- machine: {machine()}",
        f"- software: {versions()}, commit {git_commit()}",
        f"- date: {dt.datetime.now(dt.timezone.utc).strftime('%Y-%m-%d %H:%M UTC')}",
        f"- device {args.device}, precision {args.precision}, {args.threads} torch thread(s), "
        f"{args.num_workers} DataLoader worker(s)",
        "",
    ]
    if training:
        lines += [
            "## Training throughput (method `clip`)",
            "",
            f"Samples per second over the timed steps after {args.warmup} warm-up steps "
            f"(batch size {args.batch_size}), median of {args.repeats} runs per implementation, "
            "each in a fresh process, interleaved. Baselines: `hand` is the hand-written "
            "LightningModule and data set; `hand-seeded` the same, seeding the random "
            "generators per sample from (seed, epoch, index) as the host does (so that a "
            "resumed run sees the same augmentations). `host / baseline` is the ratio of the "
            "medians (target ≥ 0.95); `per pair` the ratios of runs taken next to each other "
            "(on a shared machine they differ by ±15%: look at both).",
            "",
            "| workload | baseline | timed steps | host samples/s | baseline samples/s "
            "| host / baseline | median of pairs | per pair | host ms/step | baseline ms/step "
            "| max loss difference, first steps | target |",
            "|---|---|---:|---:|---:|---:|---:|---|---:|---:|---:|---|",
        ]
        for row in training:
            host = statistics.median(row["host"])
            hand = statistics.median(row["baseline_samples_per_s"])
            pairs = " / ".join(f"{x:.2f}" for x in row["pair_ratios"])
            diff = (
                "n/a (random augmentations)"
                if row["loss_diff"] is None
                else f"{row['loss_diff']:.1e}"
            )
            lines.append(
                f"| {row['workload']} | {row['baseline']} | {row['steps']} | {host:,.0f} "
                f"| {hand:,.0f} "
                f"| {row['ratio']:.3f} | {statistics.median(row['pair_ratios']):.3f} | {pairs} "
                f"| {1000 * args.batch_size / host:.1f} | {1000 * args.batch_size / hand:.1f} "
                f"| {diff} | {_verdict(row['ratio'] >= 0.95)} |"
            )
        lines.append("")
    if startup:
        wall = {s["command"]: 1000 * statistics.median(s["seconds"]) for s in startup}
        inside = {
            s["command"]: 1000 * statistics.median(s["inside_seconds"])
            for s in startup
            if s["inside_seconds"]
        }
        lines += [
            "## Start-up",
            "",
            f"Median of {args.startup_repeats} fresh processes per command (interleaved, after "
            "one discarded round that fills the file and bytecode caches). `in-process ms`: "
            "the statement alone, timed inside the process (interpreter start-up excluded; "
            "much less noisy); `wall ms`: the whole process.",
            "",
            "| command | in-process ms | over `import lightly`, in-process | wall ms "
            "| min wall ms | wall over `python -c pass` |",
            "|---|---:|---:|---:|---:|---:|",
        ]
        for s in startup:
            name = s["command"]
            cell = f"{inside[name]:.1f}" if name in inside else "—"
            over = (
                f"{inside[name] - inside['import lightly']:+.1f}"
                if name in inside and "lightly_mm" in name
                else ""
            )
            lines.append(
                f"| `{name}` | {cell} | {over} | {wall[name]:.0f} "
                f"| {1000 * min(s['seconds']):.0f} | {wall[name] - wall['python -c pass']:+.0f} |"
            )
        key = "import lightly + lightly_mm_plugins + discovery"
        extra = inside[key] - inside["import lightly"]
        extra_wall = wall[key] - wall["import lightly"]
        lines += [
            "",
            f"Discovery on top of `import lightly`: {extra:+.1f} ms in-process "
            f"({extra_wall:+.0f} ms wall), target < 50 ms: {_verdict(extra < 50)}. "
            f"`lightly-mm plugins` takes {wall['lightly-mm plugins']:.0f} ms wall against "
            f"{wall['import lightly']:.0f} ms for a process that imports lightly.",
            "",
        ]
    return "\n".join(lines)


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("--workloads", default="vectors,digits", help="comma-separated: vectors, digits")
    p.add_argument(
        "--baselines",
        default="hand,hand-seeded",
        help="comma-separated: hand (plain hand-written), hand-seeded (+ per-sample seeding)",
    )
    p.add_argument("--batch-size", type=int, default=128)
    p.add_argument(
        "--steps",
        type=int,
        default=None,
        help="timed steps per run (default: vectors 200, digits 30)",
    )
    p.add_argument("--warmup", type=int, default=5, help="untimed steps before them")
    p.add_argument("--repeats", type=int, default=5, help="runs per implementation")
    p.add_argument("--startup-repeats", type=int, default=20)
    p.add_argument("--threads", type=int, default=1, help="torch threads (default 1)")
    p.add_argument(
        "--num-workers",
        type=int,
        default=0,
        help="DataLoader workers of every implementation (lightly-mm train's default: 0)",
    )
    p.add_argument("--device", default="cpu", choices=["cpu", "cuda"])
    p.add_argument(
        "--precision", default=None, help="Lightning precision (cpu: 32-true, cuda: bf16-mixed)"
    )
    p.add_argument("--no-training", action="store_true", help="only the start-up table")
    p.add_argument("--no-startup", action="store_true", help="only the training table")
    p.add_argument("--profile", action="store_true", help="print cProfile of the first run of each")
    p.add_argument("--quick", action="store_true", help="smoke configuration; writes nothing")
    p.add_argument(
        "--output",
        type=Path,
        default=None,
        help="Markdown path (default results/pipeline[-cuda].md)",
    )
    p.add_argument("--no-write", action="store_true")
    p.add_argument(
        "--cache-dir",
        default=str(Path(tempfile.gettempdir()) / "lightly-mm-bench-pipeline"),
        help="where the filled caption cache is kept between workers",
    )
    p.add_argument("--worker-timeout", type=float, default=900.0)
    p.add_argument("--worker", help=argparse.SUPPRESS)
    return p


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    args = build_parser().parse_args(argv)
    if args.worker:
        print(json.dumps(run_worker(json.loads(args.worker))))
        return 0
    args.workloads = [w.strip() for w in args.workloads.split(",") if w.strip()]
    unknown = [w for w in args.workloads if w not in WORKLOADS]
    if unknown:
        raise SystemExit(f"unknown workload(s) {unknown}; choose from {sorted(WORKLOADS)}")
    args.baselines = [b.strip() for b in args.baselines.split(",") if b.strip()]
    bad = [b for b in args.baselines if b not in ("hand", "hand-seeded")]
    if bad or not args.baselines:
        raise SystemExit(f"unknown --baselines {bad}; choose from hand, hand-seeded")
    if args.num_workers and "hand-seeded" in args.baselines:
        raise SystemExit("--num-workers > 0 works with --baselines hand only")
    if args.quick:
        args.workloads, args.steps, args.warmup, args.repeats = ["vectors"], 3, 1, 1
        args.batch_size, args.startup_repeats, args.no_write = 32, 1, True
    if args.warmup < 1 or (args.steps is not None and args.steps < 1) or args.repeats < 1:
        raise SystemExit("--warmup, --steps and --repeats must be at least 1")
    args.precision = args.precision or ("bf16-mixed" if args.device == "cuda" else "32-true")
    training = [] if args.no_training else measure_training(args)
    startup = [] if args.no_startup else measure_startup(args)
    text = render(args, training, startup, argv)
    print(text)
    if not args.no_write:
        out = args.output or RESULTS / (
            "pipeline.md" if args.device == "cpu" else "pipeline-cuda.md"
        )
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(text + "\n")
        out.with_suffix(".json").write_text(
            json.dumps({"argv": argv, "training": training, "startup": startup}, indent=2) + "\n"
        )
        log(f"wrote {out} and {out.with_suffix('.json').name}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
