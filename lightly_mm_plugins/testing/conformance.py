"""Run the conformance checks on one installed plugin and report every broken promise.

:func:`check_plugin` finds the plugin by distribution or entry-point name, checks
that its entry point loads and registers something, then runs the checks of each
kind (:data:`CHECKS`) on everything it registers; :func:`assert_plugin_conforms`
raises one ``AssertionError`` listing all broken promises.

Example:
    >>> from lightly_mm_plugins.testing.conformance import check_plugin
    >>> [str(r) for r in check_plugin("no-such-plugin")]
    ["plugin 'no-such-plugin' / is installed: BROKEN: no such plugin found"]
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass

from ..manager import PluginHost, normalize_dist
from ..registry import Entry
from .component_checks import encoder_checks, scheduler_checks, view_checks
from .objective_checks import objective_checks

__all__ = ["CHECKS", "CheckResult", "assert_plugin_conforms", "check_plugin"]


@dataclass
class CheckResult:
    """One check of one component: passed, or the broken promise."""

    kind: str
    name: str
    check: str
    ok: bool
    message: str = ""

    def __str__(self) -> str:
        state = "ok" if self.ok else f"BROKEN: {self.message}"
        return f"{self.kind} {self.name!r} / {self.check}: {state}"


#: The checks of each registry kind: ``kind -> (entry -> (name, check) pairs)``.
CHECKS: dict[str, Callable[[Entry], Iterator[tuple[str, Callable[[], None]]]]] = {
    "objectives": objective_checks,
    "views": view_checks,
    "stage_schedulers": scheduler_checks,
    "encoders": encoder_checks,
}


def check_plugin(plugin: str, host: PluginHost | None = None) -> list[CheckResult]:
    """Run every check on what ``plugin`` (distribution or entry-point name) registers."""
    host = host or PluginHost(strict=False)
    wanted = normalize_dist(plugin)
    infos = [
        i
        for i in host.plugins()
        if wanted in (normalize_dist(i.name), normalize_dist(i.distribution))
    ]
    results: list[CheckResult] = []
    if not infos:
        return [CheckResult("plugin", plugin, "is installed", False, "no such plugin found")]
    info = infos[0]
    loaded = info.status in ("active", "builtin")
    results.append(
        CheckResult(
            "plugin",
            plugin,
            "entry point loads and validates",
            loaded,
            "; ".join(f.summary() for f in info.failures) or info.reason,
        )
    )
    if not loaded:
        return results
    results.append(
        CheckResult(
            "plugin", plugin, "registers something", bool(info.provides), "registered nothing"
        )
    )
    for kind, names in info.provides.items():
        for name in names:
            entry = host.registry(kind).get(name)
            for check_name, fn in CHECKS.get(kind, lambda e: iter(()))(entry):
                try:
                    fn()
                except Exception as exc:
                    results.append(
                        CheckResult(kind, name, check_name, False, f"{type(exc).__name__}: {exc}")
                    )
                    if check_name.startswith("builds"):
                        break
                else:
                    results.append(CheckResult(kind, name, check_name, True))
    return results


def assert_plugin_conforms(plugin: str, host: PluginHost | None = None) -> list[CheckResult]:
    """Raise ``AssertionError`` listing every broken promise of ``plugin``."""
    results = check_plugin(plugin, host)
    broken = [r for r in results if not r.ok]
    if broken:
        raise AssertionError(
            f"plugin {plugin!r} breaks {len(broken)} promise(s):\n"
            + "\n".join(f"  - {r}" for r in broken)
        )
    return results
