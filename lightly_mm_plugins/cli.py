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

Flags are parsed with jsonargparse (as LightningCLI): ``train`` / ``compare``
take ``--config run.yaml`` and ``--print-config``.

Errors the user can fix end the command with one line ``lightly-mm <command>:
error: <message>`` on stderr instead of a traceback. Everything that can be
checked before any work starts is (:func:`check_names`: every setting, the
components and their arguments, the data spec, the devices, the run folder):
exit status 2. Errors found while running (bad data records, a changed run on
``--resume``, a corrupt checkpoint: :class:`~lightly_mm_plugins.errors.LightlyMMError`
and ``ValueError``) exit with 1. Set ``LIGHTLY_MM_TRACEBACK=1`` to get the traceback.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import sys
import typing
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import jsonargparse

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


def build_parser() -> Any:
    """The ``lightly-mm`` parser (jsonargparse, as LightningCLI).

    ``train`` and ``compare`` take ``--config FILE.yaml`` (keys are the flag
    names with underscores, e.g. ``batch_size: 64``; flags given after it
    override it; a run folder's ``config.yaml`` loads back) and
    ``--print-config`` (print the resolved YAML and exit).
    """
    from .training.cli_args import add_compare_arguments, add_train_arguments

    parser = _Parser(
        prog="lightly-mm",
        description="Multimodal self-supervised learning with Lightly, as plugins.",
    )
    commands = parser.add_subcommands(dest="command")

    p = _Parser(prog="lightly-mm plugins")
    p.add_argument("action", nargs="?", choices=["list", "check"], default="list")
    p.add_argument("--json", action="store_true", help="print a JSON object")
    p.add_argument("--all", action="store_true", help="include the host's built-ins")
    p.add_argument(
        "--requirements",
        action="store_true",
        help="print what each objective needs from a training script (views, momentum, "
        "local features, labels, pseudo labels, auxiliary step, stages) as a Markdown table",
    )
    commands.add_subcommand("plugins", p, help="list installed plugins and what they provide")

    for name, add, text in (
        ("train", add_train_arguments, "pretrain encoders with a method and evaluate them"),
        ("compare", add_compare_arguments, "run several methods on the same data and seeds"),
    ):
        sub = _Parser(prog=f"lightly-mm {name}", print_config="--print-config")
        sub.add_argument(
            "--config",
            action="config",
            help="a YAML file of settings (flag names with underscores); flags after it win",
        )
        add(sub)
        commands.add_subcommand(name, sub, help=text)

    from .cli_data import add_to_shards_arguments

    data = _Parser(prog="lightly-mm data")
    commands.add_subcommand("data", data, help="data set tools (to-shards)")
    shards = _Parser(
        prog="lightly-mm data to-shards",
        description="Write an annotation file (.jsonl, COCO/Karpathy .json, .csv/.tsv) as "
        "WebDataset tar shards (image + json {captions, label} per key) and sizes.json.",
    )
    add_to_shards_arguments(shards)
    data.add_subcommands(dest="data_command").add_subcommand(
        "to-shards", shards, help="write an annotation file as WebDataset tar shards"
    )
    return parser


def train_settings() -> list[str]:
    """The keys of a ``lightly-mm train --config`` file (the ``train`` flags' names)."""
    sub = build_parser()._subcommands_action._name_parser_map["train"]
    skip = {"help", "config", "print_config"}
    return [a.dest for a in sub._actions if a.dest not in skip and a.dest != "==SUPPRESS=="]


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    """``lightly-mm`` flags as a flat namespace: ``command`` plus its own settings."""
    parsed = build_parser().parse_args(list(sys.argv[1:] if argv is None else argv))
    values = parsed[parsed.command].as_dict()
    values.pop("config", None)
    if parsed.command == "data":  # a nested command: its own settings, flat
        inner = values["data_command"]
        values = {"data_command": inner, **values[inner]}
    return argparse.Namespace(command=parsed.command, **values)


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
    from .training.outdir import check_run_folder
    from .training.validation import compare_seeds, validate_config

    if args.command == "train":
        cfg = config_from_args(args)
        validate_config(cfg)
        check_run_folder(cfg.out, resume=cfg.resume, overwrite=cfg.overwrite)
        return
    methods = [m.strip() for m in str(args.methods).split(",") if m.strip()]
    if not methods:
        raise ConfigError("--methods names no method; give e.g. --methods clip,mxm-clr")
    for seed in compare_seeds(args.seeds):
        for method in methods:
            out = str(Path(args.out) / f"{method}-seed{seed}")
            cfg = config_from_args(args, method=method, seed=seed, out=out)
            validate_config(cfg)
            check_run_folder(cfg.out, resume=False, overwrite=cfg.overwrite)


def _fail(args: argparse.Namespace, exc: BaseException, status: int) -> int:
    if os.environ.get(ENV_TRACEBACK, "").strip().lower() in {"1", "true", "yes", "on"}:
        raise exc
    print(f"lightly-mm {args.command}: error: {exc}", file=sys.stderr)
    if status != 2:  # found before anything ran: the message is all there is to it
        print(f"(set {ENV_TRACEBACK}=1 for the traceback)", file=sys.stderr)
    return status


class _Parser(jsonargparse.ArgumentParser):
    """A bad flag or config value is one line (``lightly-mm train: error: ...``), exit 2."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, exit_on_error=True, **kwargs)
        self._name = kwargs.get("prog", "lightly-mm")

    def error(self, message: str, ex: Exception | None = None) -> typing.NoReturn:  # type: ignore[override]
        text = " ".join(str(message).split())
        text = re.sub(r'Parser key "(\w+)":', lambda m: "argument " + _flag(m.group(1)) + ":", text)
        text = re.sub(r"Expected a <class '(\w+)'>\.? Got value:", r"expected \1, got", text)
        print(f"{self._name}: error: {text} (see {self._name} --help)", file=sys.stderr)
        sys.exit(2)


def _flag(dest: str) -> str:
    return "--" + dest.replace("_", "-")


def _commands() -> dict[str, typing.Callable[[argparse.Namespace], int]]:
    from .cli_data import to_shards_from_args
    from .training.cli_args import run_compare, run_train

    return {
        "plugins": cmd_plugins,
        "train": run_train,
        "compare": run_compare,
        "data": to_shards_from_args,
    }


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    try:
        check_names(args)
    except LightlyMMError as exc:
        return _fail(args, exc, 2)
    try:
        result = _commands()[args.command](args)
    except (LightlyMMError, ValueError) as exc:
        return _fail(args, exc, 1)
    return int(result or 0)


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
