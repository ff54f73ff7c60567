"""Arguments of ``lightly-mm train`` / ``compare`` (no heavy imports here)."""

from __future__ import annotations

import argparse
import json
from typing import Any


def _kv(text: str) -> dict[str, Any]:
    """Parse ``key=value,key=value`` (values as JSON when possible); a mapping (from a
    ``--config`` file) is taken as it is."""
    if isinstance(text, dict):
        return dict(text)
    out: dict[str, Any] = {}
    if not text:
        return out
    for part in text.split(","):
        if "=" not in part:
            raise argparse.ArgumentTypeError(
                f"expected key=value pairs separated by commas, got {part!r}"
            )
        key, value = part.split("=", 1)
        try:
            out[key.strip()] = json.loads(value)
        except json.JSONDecodeError:
            out[key.strip()] = value
    return out


def _fractions(text: Any) -> Any:
    """``TRAIN,VAL`` as two floats; anything else is kept as given, for the
    validation layer to name (``--split-fractions ...: must be ...``). A pair
    (the default, or a list in a ``--config`` file) is taken as it is."""
    if isinstance(text, (list, tuple)):
        return tuple(text)
    try:
        train, val = (float(x) for x in text.split(","))
    except ValueError:
        return text
    return (train, val)


def _names(text: Any) -> list[str]:
    """``epochs,precision`` -> ``["epochs", "precision"]`` (a list from a config file too)."""
    if isinstance(text, (list, tuple)):
        text = ",".join(map(str, text))
    return [n.strip().lstrip("-").replace("-", "_") for n in text.split(",") if n.strip()]


def _common(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--data",
        default="default",
        help="'default' (embedded digits + captions), 'synthetic' (FactorCL "
        "vectors), or an annotation file: .jsonl, COCO captions or Karpathy split .json, "
        ".csv / .tsv",
    )
    p.add_argument(
        "--image-root",
        default=None,
        metavar="DIR",
        help="folder the annotation file's image names are relative to (default: the "
        "annotation file's folder, then an images/ folder beside it)",
    )
    p.add_argument(
        "--csv-img-key",
        default=None,
        metavar="COLUMN",
        help="CSV/TSV column of the image file names (default: image)",
    )
    p.add_argument(
        "--csv-caption-key",
        default=None,
        metavar="COLUMN",
        help="CSV/TSV column of the captions (default: caption)",
    )
    p.add_argument(
        "--csv-separator",
        default=None,
        metavar="CHAR",
        help="CSV/TSV field separator (default: a tab for .tsv files, ',' otherwise)",
    )
    p.add_argument(
        "--test-data",
        default=None,
        metavar="FILE",
        help="a separate annotation file to evaluate on (all of it); default: the test "
        "split of --data",
    )
    p.add_argument(
        "--split-fractions",
        type=_fractions,
        default=(0.7, 0.15),
        metavar="TRAIN,VAL",
        help="train and val fractions of the seeded split of --data (test gets the rest; "
        "default 0.7,0.15); a file whose records name their split, e.g. a Karpathy file, "
        "uses its own",
    )
    p.add_argument(
        "--epochs",
        type=int,
        default=None,
        help="epochs per stage (default: 3 on the embedded data, 10 elsewhere)",
    )
    p.add_argument("--batch-size", type=int, default=128)
    p.add_argument("--lr", type=float, default=1e-3)
    p.add_argument("--weight-decay", type=float, default=1e-4)
    p.add_argument("--warmup-epochs", type=float, default=0.5)
    p.add_argument(
        "--image-size",
        type=int,
        default=None,
        help="image side length (default: the data set's, 16 for the digits)",
    )
    p.add_argument(
        "--image-encoder",
        default=None,
        help="a registered image encoder: small-resnet (default), resnet18, resnet50, vit, "
        "timm:<any timm model> (extra [timm]), open_clip:<model> (extra [open_clip]), or one a "
        "plugin registers; random init unless --image-weights",
    )
    p.add_argument(
        "--image-weights",
        default=None,
        metavar="PATH",
        help="weights of the image encoder: a .safetensors file or a state dict "
        "(read with torch.load(weights_only=True)); nothing is downloaded",
    )
    p.add_argument(
        "--text-encoder",
        default=None,
        help="minilm (default, offline), hf:<local transformers / sentence-transformers "
        "folder> (or the folder itself), open_clip:<model>, or one a plugin registers",
    )
    p.add_argument(
        "--text-weights",
        default=None,
        metavar="PATH",
        help="weights of the text encoder (.safetensors or a weights_only state dict)",
    )
    p.add_argument(
        "--train-text", action="store_true", help="fine-tune the text transformer (default: frozen)"
    )
    p.add_argument("--accelerator", default="auto", choices=["auto", "cpu", "gpu", "cuda"])
    p.add_argument("--devices", default="1", help="number of devices (DDP when > 1)")
    p.add_argument(
        "--precision",
        default=None,
        help="Lightning precision (default: bf16-mixed on GPU, 32 on CPU)",
    )
    p.add_argument(
        "--num-workers",
        type=int,
        default=None,
        help="DataLoader worker processes that decode and augment (default: 0 for the "
        "embedded data, min(4, CPU cores - 1) for annotation files)",
    )
    p.add_argument(
        "--limit-train-samples",
        type=int,
        default=None,
        help="use only the first N training instances (quick runs)",
    )
    p.add_argument(
        "--on-error",
        choices=["raise", "skip"],
        default="raise",
        help="bad data: fail fast (default) or skip and count",
    )
    p.add_argument(
        "--checkpoint-every-n-steps",
        type=int,
        default=500,
        metavar="N",
        help="also write OUT/checkpoints/last.ckpt every N training batches inside an "
        "epoch, so that --resume continues from there (default 500; 0: only at epoch ends)",
    )
    p.add_argument("--quiet", action="store_true", help="no progress bar")


def add_train_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--method", required=True, help="a registered objective name")
    p.add_argument(
        "--method-args",
        type=_kv,
        default={},
        help="objective keyword arguments, e.g. temperature=0.1,projection_dim=64",
    )
    p.add_argument("--view", default=None, help="view name (default: the objective's)")
    p.add_argument("--view-args", type=_kv, default={})
    p.add_argument(
        "--scheduler",
        default=None,
        help="stage scheduler name (default: the objective's, else 'single')",
    )
    p.add_argument("--scheduler-args", type=_kv, default={})
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", default="lightly_mm_runs/run", help="output directory")
    p.add_argument(
        "--resume",
        action="store_true",
        help="continue from OUT/checkpoints/last.ckpt if it exists (also from inside an epoch)",
    )
    p.add_argument(
        "--allow-changed",
        type=_names,
        default=[],
        metavar="FLAGS",
        help="with --resume: settings that may differ from the checkpoint's run "
        "(epochs, accelerator, devices, precision; comma separated). Any other change "
        "is refused",
    )
    p.add_argument(
        "--overwrite",
        action="store_true",
        help="delete the outputs of the run already in OUT and start a new one (without it, "
        "a non-empty OUT is refused; --resume continues the run there)",
    )
    p.add_argument(
        "--no-eval",
        action="store_true",
        help="skip the evaluation before and after training (only train and write encoders.pt)",
    )
    p.add_argument(
        "--trace-batches",
        action="store_true",
        help="append every training batch's instance ids to OUT/batch_trace/rank<R>.jsonl "
        "(debugging data sharding and resume)",
    )
    _common(p)


def add_compare_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--methods", required=True, help="comma-separated objective names")
    p.add_argument("--seeds", default="0", help="comma-separated seeds")
    p.add_argument("--out", default="lightly_mm_runs/compare")
    p.add_argument(
        "--overwrite",
        action="store_true",
        help="replace earlier runs in OUT/<method>-seed<S> (without it they are refused)",
    )
    _common(p)


def run_train(args: argparse.Namespace) -> int:
    from .run import train_from_args

    train_from_args(args)
    return 0


def run_compare(args: argparse.Namespace) -> int:
    from .compare import compare_from_args

    compare_from_args(args)
    return 0
