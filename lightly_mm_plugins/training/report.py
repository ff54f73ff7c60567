"""What a finished run writes: ``encoders.pt``, ``metrics.json``, plots, the results table.

Example:
    >>> from lightly_mm_plugins.training.config import TrainConfig
    >>> table = format_results_table({"trained": {"knn/image": 0.5}}, TrainConfig())
    >>> table.splitlines()[3]
    'knn/image                                   -      0.500'
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from .checkpointing import atomic_torch_save, atomic_write_text
from .config import TrainConfig


def write_outputs(cfg: TrainConfig, results: dict[str, Any], parts: dict[str, Any]) -> None:
    """``encoders.pt``, ``metrics.json``, the plots and the results table."""
    from .plots import plot_loss_curve, plot_results

    out, module = Path(cfg.out), parts["module"]
    atomic_torch_save(
        {
            "encoders": {m: e.state_dict() for m, e in module.encoders.items()},
            "objective": module.objective.state_dict(),
            "method": cfg.method,
            "kinds": parts["kinds"],
            "image_encoder": cfg.image_encoder,
            "image_weights": cfg.image_weights,
            "text_encoder": cfg.text_encoder,
            "text_weights": cfg.text_weights,
        },
        out / "encoders.pt",
    )
    serialisable = {k: v for k, v in results.items() if k != "module"}
    atomic_write_text(json.dumps(serialisable, indent=2, default=str), out / "metrics.json")
    plot_loss_curve(
        sorted((out / "logs").glob("version_*/metrics.csv")),
        module.stage_starts,
        out / "loss_curve.png",
    )
    if "trained" in results:
        plot_results(results, out / "results.png", title=f"{cfg.method} on {cfg.data}")
    print(format_results_table(results, cfg))


def format_results_table(results: dict[str, Any], cfg: TrainConfig) -> str:
    trained = results.get("trained", {})
    init = results.get("init", {})
    lines = [
        "",
        f"Results: method={cfg.method} data={cfg.data} seed={cfg.seed} "
        f"({results.get('wall_time_s', '?')} s)",
        f"{'metric':32s} {'random init':>12s} {'trained':>10s}",
    ]
    aliases = results.get("metric_aliases", {})
    for key in sorted(trained):
        if key in aliases:
            continue
        before = f"{init[key]:.3f}" if key in init else "-"
        lines.append(f"{key:32s} {before:>12s} {trained[key]:>10.3f}")
    names = sorted({key.rsplit("[", 1)[1].rstrip("]") for key in aliases})
    if names:
        lines.append(
            f"(label set {', '.join(map(repr, names))} = the data set's labels: its probes are "
            f"the linear_probe/* rows, fitted once; metrics.json has both keys)"
        )
    if trained:
        note = _retrieval_features_note(trained)
    elif not cfg.eval_final:
        note = "(evaluation skipped: --no-eval)"
    else:
        note = "(nothing measured: " + _why_nothing_measured(results) + ")"
    if note:
        lines.append(note)
    lines.append(f"Written to {cfg.out}: encoders.pt, metrics.json, checkpoints/, logs/, *.png")
    return "\n".join(lines)


def _why_nothing_measured(results: dict[str, Any]) -> str:
    """Why an evaluation that ran produced no metric."""
    kinds = results.get("resolved", {}).get("modalities") or {}
    reasons = ["the data set has no labels for a linear probe or kNN"]
    if len(kinds) < 2:
        reasons.append("it has one modality, so there is no cross-modal retrieval")
    else:
        reasons.append("the objective has no joint embedding space for retrieval")
    return "; ".join(reasons)


def _retrieval_features_note(results: dict[str, float]) -> str:
    if any(k.startswith("retrieval/") for k in results):
        return ""
    return "(no cross-modal retrieval: this objective has no joint embedding space)"
