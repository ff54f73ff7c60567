"""Plugin discovery, selection and failure isolation.

:class:`PluginHost` finds plugins through the entry-point group
``lightly_mm_plugins`` (``importlib.metadata.entry_points(group=...)``) and
loads them one at a time (never pluggy's ``load_setuptools_entrypoints``, whose
first failing import takes the host down and which silently drops duplicate
names). Loading is lazy: nothing is imported until a registry is first used.
Pluggy calls the hooks, one plugin at a time
(:meth:`pluggy.PluginManager.subset_hook_caller`), so that each plugin's
``register`` is bound to it and a plugin whose hook raises loses all its
registrations without affecting the others. ``LIGHTLY_MM_TRACE_PLUGINS=1``
turns on pluggy's tracing (every hook call and registration, on stderr).

Selection, applied before anything is imported (names are distribution or
entry-point names, compared after PEP 503 normalisation):

* ``load=`` argument or ``LIGHTLY_MM_LOAD_PLUGINS``: allow-list; unset = all,
  empty string = none, comma-separated names otherwise.
* ``disable=`` argument or ``LIGHTLY_MM_DISABLE_PLUGINS``: deny-list.
* ``strict=True`` or ``LIGHTLY_MM_STRICT_PLUGINS=1``: re-raise plugin failures
  instead of recording them (for CI).

Example:
    >>> from lightly_mm_plugins.manager import PluginHost
    >>> host = PluginHost(load=[])          # no installed plugin
    >>> host.registry("objectives").names()
    []
"""

from __future__ import annotations

import os
import re
import sys
import threading
import warnings
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from types import ModuleType
from typing import TYPE_CHECKING, Any

import pluggy

from . import hookspecs
from .errors import PluginError
from .registry import KINDS, Entry, Registry, validate_name

if TYPE_CHECKING:
    from importlib.metadata import EntryPoint


ENV_LOAD = "LIGHTLY_MM_LOAD_PLUGINS"
ENV_DISABLE = "LIGHTLY_MM_DISABLE_PLUGINS"
ENV_STRICT = "LIGHTLY_MM_STRICT_PLUGINS"
ENV_TRACE = "LIGHTLY_MM_TRACE_PLUGINS"
BUILTIN_NAME = "lightly-mm-plugins (built-in)"


def normalize_dist(name: str) -> str:
    """PEP 503 normalisation: ``Lightly_MM.clip`` -> ``lightly-mm-clip``.

    The one name normaliser of plugin selection (distribution and entry-point names).
    """
    return re.sub(r"[-_.]+", "-", name).lower()


def _name_and_version(ep: EntryPoint) -> tuple[str, str]:
    """Distribution name and version of an entry point, from the metadata header only.

    ``dist.name`` / ``dist.version`` each parse the whole ``METADATA`` file (long
    description included) with :mod:`email`: ~5 ms per plugin and field on a slow CPU.
    """
    dist = getattr(ep, "dist", None)
    if dist is None:
        return ep.name, "?"
    text = dist.read_text("METADATA") or dist.read_text("PKG-INFO") or ""
    header: dict[str, str] = {}
    for line in text.split("\n\n", 1)[0].splitlines():
        key, sep, value = line.partition(":")
        if sep and key in ("Name", "Version"):
            header.setdefault(key, value.strip())
    return header.get("Name", ep.name), header.get("Version", "?")


def _parse_list(value: str | None) -> set[str] | None:
    if value is None:
        return None
    return {normalize_dist(v.strip()) for v in value.split(",") if v.strip()}


def _env_flag(name: str) -> bool:
    return os.environ.get(name, "").strip().lower() in {"1", "true", "yes", "on"}


@dataclass
class PluginFailure:
    """Why a plugin is not (fully) active."""

    plugin: str
    distribution: str
    version: str
    stage: str
    error: str
    traceback: str = ""

    def summary(self) -> str:
        return f"plugin {self.distribution!r} {self.version} failed at {self.stage}: {self.error}"


@dataclass
class PluginInfo:
    """One installed (or in-process registered) plugin and its status."""

    name: str
    distribution: str
    version: str
    entry_point: str
    status: str  # "builtin", "active", "disabled", "failed"
    reason: str = ""
    provides: dict[str, list[str]] = field(default_factory=dict)
    failures: list[PluginFailure] = field(default_factory=list)


class PluginHost:
    """Discovers plugins, calls their hooks and keeps one registry per kind.

    Args:
        load: Allow-list of plugin names (None: environment / all).
        disable: Deny-list of plugin names (None: environment / none).
        strict: Re-raise plugin failures (None: environment).
        entry_points: Entry points to use instead of the installed ones
            (for tests).
        autoload: Discover installed plugins (False: only in-process ones).
    """

    def __init__(
        self,
        load: Iterable[str] | None = None,
        disable: Iterable[str] | None = None,
        strict: bool | None = None,
        entry_points: Sequence[EntryPoint] | None = None,
        autoload: bool = True,
    ) -> None:
        self._allow = (
            {normalize_dist(n) for n in load}
            if load is not None
            else _parse_list(os.environ.get(ENV_LOAD))
        )
        self._deny = (
            {normalize_dist(n) for n in disable}
            if disable is not None
            else (_parse_list(os.environ.get(ENV_DISABLE)) or set())
        )
        self.strict = _env_flag(ENV_STRICT) if strict is None else strict
        self._entry_points = entry_points
        self._autoload = autoload
        self.pm = pluggy.PluginManager(hookspecs.PROJECT_NAME)
        self.pm.add_hookspecs(hookspecs)
        #: pluggy's tracer for registrations (writes only when tracing is on).
        self._trace = self.pm.trace.root.get("register")
        if _env_flag(ENV_TRACE):
            self.pm.trace.root.setwriter(sys.stderr.write)
            self.pm.enable_tracing()
        self._plugins: dict[str, PluginInfo] = {}
        self._failures: list[PluginFailure] = []
        self._registries: dict[str, Registry] = {}
        self._discovered = False
        self._lock = threading.RLock()

    # ------------------------------------------------------------------ loading
    def _discover(self) -> None:
        with self._lock:
            if self._discovered:
                return
            self._discovered = True
            self._register_builtin()
            if not self._autoload:
                return
            if self._entry_points is not None:
                eps = list(self._entry_points)
            else:
                from importlib.metadata import entry_points

                eps = list(entry_points(group=hookspecs.ENTRY_POINT_GROUP))
            seen: set[str] = set()
            for ep in sorted(eps, key=lambda e: e.name):
                self._load_entry_point(ep, seen)
            if self._allow:
                known = {normalize_dist(i.distribution) for i in self._plugins.values()}
                known |= {normalize_dist(n) for n in self._plugins}
                for missing in sorted(self._allow - known):
                    warnings.warn(
                        f"lightly-mm: plugin {missing!r} named in the allow-list is not installed",
                        stacklevel=3,
                    )

    def _register_builtin(self) -> None:
        from . import __version__, builtin

        info = PluginInfo(
            name=BUILTIN_NAME,
            distribution="lightly-mm-plugins",
            version=__version__,
            entry_point="lightly_mm_plugins.builtin",
            status="builtin",
        )
        self._plugins[BUILTIN_NAME] = info
        self.pm.register(builtin, name=BUILTIN_NAME)

    def _load_entry_point(self, ep: EntryPoint, seen: set[str]) -> None:
        dist_name, version = _name_and_version(ep)
        name = ep.name
        keys = {normalize_dist(name), normalize_dist(dist_name)}
        info = PluginInfo(
            name=name,
            distribution=dist_name,
            version=version,
            entry_point=ep.value,
            status="active",
        )
        if name in seen:
            self._fail(info, "discover", f"duplicate entry-point name {name!r}")
            return
        seen.add(name)
        self._plugins[name] = info
        if keys & self._deny:
            info.status, info.reason = "disabled", f"disabled by {ENV_DISABLE}"
            self.pm.set_blocked(name)
            return
        if self._allow is not None and not keys & self._allow:
            info.status, info.reason = "disabled", f"not in {ENV_LOAD}"
            self.pm.set_blocked(name)
            return
        try:
            module = ep.load()
        except Exception as exc:
            self._fail(info, "import", exc)
            return
        self._register_module(module, info)

    def _register_module(self, module: ModuleType | object, info: PluginInfo) -> None:
        wanted = getattr(module, "LIGHTLY_MM_HOOKSPEC", None)
        if wanted is not None:
            host_major = hookspecs.HOOKSPEC_VERSION.split(".")[0]
            if str(wanted).split(".")[0] != host_major:
                self._fail(
                    info,
                    "validate",
                    f"built for hook spec {wanted}, this host implements "
                    f"{hookspecs.HOOKSPEC_VERSION}; install a matching version of "
                    "lightly-mm-plugins or of the plugin",
                )
                return
        try:
            self.pm.register(module, name=info.name)
            self.pm.check_pending()
        except Exception as exc:
            self.pm.unregister(name=info.name)
            self._fail(info, "validate", exc)
            return

    def _fail(self, info: PluginInfo, stage: str, exc: BaseException | str) -> None:
        if isinstance(exc, BaseException):
            error = f"{type(exc).__name__}: {exc}"
            import traceback

            tb = "".join(traceback.format_exception(exc))
        else:
            error, tb = exc, ""
        failure = PluginFailure(info.name, info.distribution, info.version, stage, error, tb)
        info.status = "failed"
        info.failures.append(failure)
        self._failures.append(failure)
        if self.strict:
            if isinstance(exc, BaseException):
                raise PluginError(failure.summary()) from exc
            raise PluginError(failure.summary())
        warnings.warn(
            f"lightly-mm: {failure.summary()}. Disable it with {ENV_DISABLE}={info.distribution}.",
            stacklevel=4,
        )

    def register_plugin(
        self,
        plugin: ModuleType | object,
        name: str | None = None,
        distribution: str | None = None,
        version: str = "0",
    ) -> str:
        """Register a plugin object in-process, without an entry point.

        Useful in tests and notebooks. Returns the plugin name. Registries
        that were already built are rebuilt.
        """
        self._discover()
        with self._lock:
            name = name or getattr(plugin, "__name__", None) or type(plugin).__name__
            if name in self._plugins:
                raise PluginError(f"a plugin named {name!r} is already registered")
            info = PluginInfo(
                name=name,
                distribution=distribution or name,
                version=version,
                entry_point="(in-process)",
                status="active",
            )
            self._plugins[name] = info
            self._register_module(plugin, info)
            self._registries.clear()
            return name

    def unregister_plugin(self, name: str) -> None:
        """Remove an in-process plugin again (registries are rebuilt)."""
        with self._lock:
            if name in self._plugins:
                self.pm.unregister(name=name)
                del self._plugins[name]
                self._failures = [f for f in self._failures if f.plugin != name]
                self._registries.clear()

    # --------------------------------------------------------------- registries
    def registry(self, kind: str) -> Registry:
        """The registry of ``kind`` (views, objectives, heads, stage_schedulers)."""
        kind = kind.replace("-", "_")
        if kind not in KINDS:
            raise ValueError(f"unknown kind {kind!r}; use one of {', '.join(KINDS)}")
        self._discover()
        with self._lock:
            if not self._registries:
                self._build_all()
            return self._registries[kind]

    def _build_all(self) -> None:
        """Call every plugin's hooks; a plugin failing in one hook loses all its entries.

        All kinds are built together so that the result does not depend on which
        registry was asked for first.
        """
        registries = {kind: Registry(kind, failure_hint=self._failure_hint) for kind in KINDS}
        failed: set[str] = set()
        for kind in KINDS:
            hook_name = f"register_{kind}"
            impls = getattr(self.pm.hook, hook_name).get_hookimpls()
            for impl in reversed(impls):  # pluggy's call order: last registered first
                info = self._plugins.get(impl.plugin_name)
                if info is None or info.status == "failed" or info.name in failed:
                    continue
                # This plugin's implementation alone, called by pluggy.
                call = self.pm.subset_hook_caller(
                    hook_name, [i.plugin for i in impls if i.plugin is not impl.plugin]
                )
                try:
                    call(register=self._make_register(kind, registries[kind], info))
                except Exception as exc:
                    failed.add(info.name)
                    for reg in registries.values():
                        reg.discard_plugin(info.name)
                    info.provides.clear()
                    self._registries = registries  # strict mode raises from _fail
                    self._fail(info, hook_name, exc)
        self._registries = registries

    def _make_register(
        self, kind: str, registry: Registry, info: PluginInfo
    ) -> Callable[..., None]:
        own: set[str] = set()

        def register(
            name: str,
            factory: Callable[..., Any] | str,
            *,
            description: str = "",
            **metadata: Any,
        ) -> None:
            key = validate_name(name)
            if not (callable(factory) or (isinstance(factory, str) and ":" in factory)):
                raise TypeError(
                    f"factory for {key!r} must be a callable or a 'module:attr' "
                    f"string, got {factory!r}"
                )
            if key in own:
                raise PluginError(
                    f"plugin {info.distribution!r} registered {kind[:-1]} {key!r} twice"
                )
            own.add(key)
            entry = Entry(
                kind=kind,
                name=key,
                factory=factory,
                description=description,
                metadata=dict(metadata),
                plugin=info.name,
                distribution=info.distribution,
                version=info.version,
            )
            registry.add(entry)
            info.provides.setdefault(kind, []).append(key)
            self._trace(info.distribution, kind, key)

        return register

    def _failure_hint(self) -> str:
        if not self._failures:
            return ""
        return "Plugins that failed to load (one may provide it): " + "; ".join(
            f.summary() for f in self._failures
        )

    # ------------------------------------------------------------------ reports
    def plugins(self) -> list[PluginInfo]:
        """Every known plugin with status and what it registered (builds all kinds)."""
        for kind in KINDS:
            self.registry(kind)
        return sorted(self._plugins.values(), key=lambda i: i.distribution)

    def failures(self) -> list[PluginFailure]:
        self.plugins()
        return list(self._failures)

    def conflicts(self) -> dict[str, dict[str, list[Entry]]]:
        return {kind: c for kind in KINDS if (c := self.registry(kind).conflicts())}

    def create(self, kind: str, name: str, /, **kwargs: Any) -> Any:
        return self.registry(kind).create(name, **kwargs)


_default_host: PluginHost | None = None
_default_lock = threading.Lock()


def get_host() -> PluginHost:
    """The process-wide host (created on first use from the environment)."""
    global _default_host
    with _default_lock:
        if _default_host is None:
            _default_host = PluginHost()
        return _default_host


def reset_host(host: PluginHost | None = None) -> None:
    """Replace the process-wide host (tests; after installing a plugin)."""
    global _default_host
    with _default_lock:
        _default_host = host
