"""The ``lightly-mm`` command.

* ``lightly-mm plugins [--json] [--all]``: installed plugins, their status and
  what each registered; never crashes because of a plugin.
* ``lightly-mm plugins check``: exit 1 on any load failure or name conflict.
* ``lightly-mm plugins --requirements [--json]``: what each objective needs from a
  training script (:mod:`lightly_mm_plugins.requirements_table`).
* ``lightly-mm train --method NAME ...``: the main job (see ``--help``).
* ``lightly-mm compare --methods a,b``: several methods on the same data/seeds.
* ``lightly-mm data to-shards ANNOTATIONS OUT_DIR``: WebDataset shards from an
  annotation file.

Errors the user can fix (an unknown method, view or scheduler, bad data, an
argument a method does not take: :class:`~lightly_mm_plugins.errors.LightlyMMError`
and ``ValueError``) end the command with ``lightly-mm <command>: error: <message>``
on stderr instead of a traceback: exit status 2 when found before anything ran
(component names are checked first, so ``compare`` does not train the first
method before it finds a typo in the second), 1 otherwise. Set
``LIGHTLY_MM_TRACEBACK=1`` to get the traceback.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import typing
from collections.abc import Sequence
from typing import Any

from .errors import ConfigError, LightlyMMError
from .manager import PluginHost, get_host
from .registry import KINDS

ENV_TRACEBACK = "LIGHTLY_MM_TRACEBACK"


def _plugins_report(host: PluginHost, include_builtin: bool) -> dict[str, Any]:
    plugins = []
    for info in host.plugins():
        if info.status == "builtin" and not include_builtin:
            continue
        plugins.append(
            {
                "name": info.name,
                "distribution": info.distribution,
                "version": info.version,
                "entry_point": info.entry_point,
                "status": info.status,
                "reason": info.reason,
                "provides": {k: sorted(v) for k, v in sorted(info.provides.items())},
                "errors": [{"stage": f.stage, "error": f.error} for f in info.failures],
            }
        )
    conflicts = [
        {
            "kind": kind,
            "name": name,
            "distributions": [f"{e.distribution} {e.version}" for e in entries],
        }
        for kind, by_name in host.conflicts().items()
        for name, entries in by_name.items()
    ]
    components = {
        kind: [
            {"name": e.name, "plugin": e.distribution, "description": e.description}
            for e in host.registry(kind).entries()
        ]
        for kind in KINDS
    }
    return {
        "plugins": plugins,
        "conflicts": conflicts,
        "failures": [
            {
                "distribution": f.distribution,
                "version": f.version,
                "stage": f.stage,
                "error": f.error,
            }
            for f in host.failures()
        ],
        "components": components,
    }


def _print_table(report: dict[str, Any]) -> None:
    rows = [("PLUGIN", "VERSION", "STATUS", "PROVIDES")]
    for p in report["plugins"]:
        if p["status"] == "failed":
            what = "; ".join(f"{e['stage']}: {e['error']}" for e in p["errors"])
        elif p["status"] == "disabled":
            what = f"({p['reason']})"
        else:
            what = "; ".join(
                f"{kind.replace('_', ' ')}: {', '.join(names)}"
                for kind, names in p["provides"].items()
            )
        rows.append((p["distribution"], p["version"], p["status"], what))
    widths = [max(len(r[i]) for r in rows) for i in range(3)]
    for r in rows:
        print("  ".join(r[i].ljust(widths[i]) for i in range(3)) + "  " + r[3])
    if not report["plugins"]:
        print("(no plugins installed or loaded)")
    if report["conflicts"]:
        print("\nConflicts:")
        for c in report["conflicts"]:
            print(f"  {c['kind']} {c['name']!r}: {', '.join(c['distributions'])}")
    else:
        print("\nConflicts: none")
    print("\nComponents:")
    for kind, entries in report["components"].items():
        names = ", ".join(e["name"] for e in entries) or "(none)"
        print(f"  {kind.replace('_', ' ')}: {names}")


def cmd_plugins(args: argparse.Namespace) -> int:
    if getattr(args, "requirements", False):
        from .requirements_table import requirements_markdown, requirements_rows

        if args.json:
            print(json.dumps(requirements_rows(), indent=2))
        else:
            print(requirements_markdown())
        return 0
    try:
        host = get_host()
        report = _plugins_report(host, include_builtin=args.all)
    except Exception as exc:
        if getattr(args, "action", None) == "check":
            print(f"lightly-mm plugins check: FAILED: {exc}", file=sys.stderr)
            return 1
        raise
    if args.json:
        print(json.dumps(report, indent=2))
    else:
        _print_table(report)
    if getattr(args, "action", None) == "check":
        problems = len(report["failures"]) + len(report["conflicts"])
        if problems:
            print(
                f"\nlightly-mm plugins check: {len(report['failures'])} failure(s), "
                f"{len(report['conflicts'])} conflict(s)",
                file=sys.stderr,
            )
            return 1
        print("\nlightly-mm plugins check: OK")
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(
        prog="lightly-mm",
        description="Multimodal self-supervised learning with Lightly, as plugins.",
    )
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("plugins", help="list installed plugins and what they provide")
    p.add_argument("action", nargs="?", choices=["list", "check"], default="list")
    p.add_argument("--json", action="store_true", help="print a JSON object")
    p.add_argument("--all", action="store_true", help="include the host's built-ins")
    p.add_argument(
        "--requirements",
        action="store_true",
        help="print what each objective needs from a training script (views, momentum, "
        "local features, labels, pseudo labels, auxiliary step, stages) as a Markdown table",
    )
    p.set_defaults(func=cmd_plugins)

    from .training.cli_args import add_compare_arguments, add_train_arguments

    t = sub.add_parser("train", help="pretrain encoders with a method and evaluate them")
    add_train_arguments(t)
    c = sub.add_parser("compare", help="run several methods on the same data and seeds")
    add_compare_arguments(c)
    from .data.commands import add_data_arguments

    add_data_arguments(sub)
    return parser


def check_names(args: argparse.Namespace) -> None:
    """Check every setting of ``train`` / ``compare`` before loading data, encoders or models.

    One :class:`~lightly_mm_plugins.training.config.TrainConfig` per run the
    command will start, each through
    :func:`~lightly_mm_plugins.training.validation.validate_config` (values,
    components and their ``--*-args``, ``--data``, devices); ``compare``
    checks every method before it trains the first. Raises a
    :class:`~lightly_mm_plugins.errors.LightlyMMError` naming the flag.
    """
    if args.command not in ("train", "compare"):
        return
    from .training.config import config_from_args
    from .training.validation import validate_config

    if args.command == "train":
        validate_config(config_from_args(args))
        return
    methods = [m.strip() for m in str(args.methods).split(",") if m.strip()]
    if not methods:
        raise ConfigError("--methods names no method; give e.g. --methods clip,mxm-clr")
    for seed in compare_seeds(args.seeds):
        for method in methods:
            validate_config(config_from_args(args, method=method, seed=seed))


def compare_seeds(text: str) -> list[int]:
    """The seeds of ``compare --seeds 0,1,2`` (ConfigError naming the bad one)."""
    parts = [s.strip() for s in str(text).split(",") if s.strip()]
    if not parts or not all(p.isdigit() for p in parts):
        raise ConfigError(f"--seeds {text!r}: must be comma-separated integers >= 0, e.g. 0,1,2")
    return [int(p) for p in parts]


def _fail(args: argparse.Namespace, exc: BaseException, status: int) -> int:
    if os.environ.get(ENV_TRACEBACK, "").strip().lower() in {"1", "true", "yes", "on"}:
        raise exc
    print(f"lightly-mm {args.command}: error: {exc}", file=sys.stderr)
    if status != 2:  # found before anything ran: the message is all there is to it
        print(f"(set {ENV_TRACEBACK}=1 for the traceback)", file=sys.stderr)
    return status


class _Parser(argparse.ArgumentParser):
    """argparse, but a bad flag is one line (``lightly-mm train: error: ...``), exit 2."""

    def error(self, message: str) -> typing.NoReturn:
        self.exit(2, f"{self.prog}: error: {message} (see {self.prog} --help)\n")


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        check_names(args)
    except LightlyMMError as exc:
        return _fail(args, exc, 2)
    try:
        result = args.func(args)
    except (LightlyMMError, ValueError) as exc:
        return _fail(args, exc, 1)
    return int(result or 0)


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
