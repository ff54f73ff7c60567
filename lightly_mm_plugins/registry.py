"""Name -> factory tables, one per kind of component.

A :class:`Registry` holds the entries one kind (views, objectives, heads,
stage schedulers, encoders) collected from all plugins. Names are unique per kind: a
name registered by two distributions becomes a *conflict*, asking for it
raises :class:`PluginConflictError` naming both, and every other name keeps
working.
"""

from __future__ import annotations

import importlib
import inspect
import re
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol

from .errors import (
    ArgumentError,
    PluginConflictError,
    PluginError,
    UnknownComponentError,
)

KINDS: tuple[str, ...] = ("views", "objectives", "heads", "stage_schedulers", "encoders")
KIND_SINGULAR = {
    "views": "view",
    "objectives": "objective",
    "heads": "head",
    "stage_schedulers": "stage scheduler",
    "encoders": "encoder",
}


def _close_matches(word: str, candidates: Any, n: int, cutoff: float) -> list[str]:
    """``difflib.get_close_matches``, imported only when an error message needs it."""
    import difflib

    return difflib.get_close_matches(word, list(candidates), n=n, cutoff=cutoff)


_NAME_RE = re.compile(r"^[a-z0-9][a-z0-9_.-]*$")


class Register(Protocol):
    """The callable each hook receives (see :mod:`lightly_mm_plugins.hookspecs`)."""

    def __call__(
        self,
        name: str,
        factory: Callable[..., Any] | str,
        *,
        description: str = "",
        **metadata: Any,
    ) -> None: ...


@dataclass(frozen=True)
class Entry:
    """One registered component and where it came from."""

    kind: str
    name: str
    factory: Callable[..., Any] | str
    description: str
    metadata: dict[str, Any]
    plugin: str
    distribution: str
    version: str

    def resolve(self) -> Callable[..., Any]:
        """The factory callable, importing a ``"module:attr"`` string on demand."""
        if not isinstance(self.factory, str):
            return self.factory
        module_name, _, attr = self.factory.partition(":")
        try:
            module = importlib.import_module(module_name)
            obj: Any = module
            for part in attr.split("."):
                obj = getattr(obj, part)
        except Exception as exc:
            raise PluginError(
                f"{KIND_SINGULAR[self.kind]} {self.name!r} from plugin "
                f"{self.distribution!r} {self.version}: cannot import factory "
                f"{self.factory!r} ({type(exc).__name__}: {exc})"
            ) from exc
        if not callable(obj):
            raise PluginError(
                f"{KIND_SINGULAR[self.kind]} {self.name!r}: factory {self.factory!r} "
                "is not callable"
            )
        return obj  # type: ignore[no-any-return]

    def create(self, **kwargs: Any) -> Any:
        """Build the component; an argument the factory does not take is an ArgumentError."""
        factory = self.resolve()
        check_arguments(factory, kwargs, f"{KIND_SINGULAR[self.kind]} {self.name!r}")
        return factory(**kwargs)


def check_arguments(
    factory: Callable[..., Any],
    kwargs: Mapping[str, Any],
    what: str,
    *,
    check_missing: bool = True,
) -> None:
    """Raise :class:`ArgumentError` if ``factory`` cannot take the keyword ``kwargs``.

    Names the unknown arguments, the accepted ones and close matches (a typo in
    ``--method-args``), instead of Python's bare "unexpected keyword argument"
    from deep inside a plugin. Factories taking ``**kwargs`` or without a
    signature are not checked. ``check_missing=False`` checks only the names
    given (the CLI checks user arguments before the host adds its own).
    """
    try:
        params = inspect.signature(factory).parameters
    except (TypeError, ValueError):
        return
    if any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params.values()):
        return
    accepted = [
        n
        for n, p in params.items()
        if p.kind in (inspect.Parameter.POSITIONAL_OR_KEYWORD, inspect.Parameter.KEYWORD_ONLY)
    ]
    unknown = [k for k in kwargs if k not in accepted]
    if unknown:
        msg = (
            f"{what} does not accept argument(s) {', '.join(map(repr, unknown))}; it accepts: "
            + (", ".join(accepted) or "(none)")
        )
        hints = [
            f"{close[0]!r} instead of {k!r}"
            for k in unknown
            if (close := _close_matches(k, accepted, n=1, cutoff=0.6))
        ]
        if hints:
            msg += "; did you mean " + ", ".join(hints) + "?"
        raise ArgumentError(msg)
    missing = [
        n
        for n, p in params.items()
        if p.default is inspect.Parameter.empty
        and p.kind in (inspect.Parameter.POSITIONAL_OR_KEYWORD, inspect.Parameter.KEYWORD_ONLY)
        and n not in kwargs
    ]
    if missing and check_missing:
        raise ArgumentError(f"{what} needs argument(s) {', '.join(map(repr, missing))} (not given)")


@dataclass
class Registry:
    """Entries of one kind, keyed by normalised name."""

    kind: str
    _entries: dict[str, Entry] = field(default_factory=dict)
    _conflicts: dict[str, list[Entry]] = field(default_factory=dict)
    #: Describes plugin load failures for "unknown name" errors.
    failure_hint: Callable[[], str] = field(default=lambda: "")

    def add(self, entry: Entry) -> None:
        if entry.name in self._conflicts:
            self._conflicts[entry.name].append(entry)
            return
        previous = self._entries.get(entry.name)
        if previous is None:
            self._entries[entry.name] = entry
            return
        del self._entries[entry.name]
        self._conflicts[entry.name] = [previous, entry]

    def discard_plugin(self, plugin: str) -> None:
        """Remove every entry a plugin registered (rollback after a failure)."""
        for name in [n for n, e in self._entries.items() if e.plugin == plugin]:
            del self._entries[name]
        for name, entries in list(self._conflicts.items()):
            kept = [e for e in entries if e.plugin != plugin]
            if len(kept) == len(entries):
                continue
            del self._conflicts[name]
            for e in kept:
                self.add(e)

    def names(self) -> list[str]:
        """Available (non-conflicting) names, sorted."""
        return sorted(self._entries)

    def entries(self) -> list[Entry]:
        return [self._entries[n] for n in self.names()]

    def conflicts(self) -> dict[str, list[Entry]]:
        return {n: list(es) for n, es in sorted(self._conflicts.items())}

    def __contains__(self, name: object) -> bool:
        return isinstance(name, str) and normalize_name(name) in self._entries

    def __iter__(self) -> Iterator[Entry]:
        return iter(self.entries())

    def __len__(self) -> int:
        return len(self._entries)

    def get(self, name: str) -> Entry:
        """The entry for ``name``; raises a helpful error if missing or conflicting."""
        key = normalize_name(name)
        if key in self._entries:
            return self._entries[key]
        singular = KIND_SINGULAR[self.kind]
        if key in self._conflicts:
            entries = self._conflicts[key]
            who = ", ".join(f"{e.distribution} {e.version}" for e in entries)
            raise PluginConflictError(
                f"{singular} {key!r} is registered by {len(entries)} plugins: {who}. "
                f"Uninstall one, or disable it with "
                f"LIGHTLY_MM_DISABLE_PLUGINS={entries[-1].distribution}."
            )
        available = self.names()
        msg = f"unknown {singular} {name!r}; available: " + (
            ", ".join(available) if available else "(none)"
        )
        close = _close_matches(key, available, n=3, cutoff=0.5)
        if close:
            msg += "; did you mean " + " or ".join(repr(c) for c in close) + "?"
        hint = self.failure_hint()
        if hint:
            msg += f"{'' if msg.endswith('?') else '.'} {hint}"
        raise UnknownComponentError(msg)

    def create(self, name: str, /, **kwargs: Any) -> Any:
        """Build component ``name`` with keyword arguments."""
        return self.get(name).create(**kwargs)


def normalize_name(name: str) -> str:
    return name.strip().lower()


def validate_name(name: str) -> str:
    """Normalise a component name or raise ``ValueError`` naming the rule."""
    if not isinstance(name, str):
        raise ValueError(f"component name must be a string, got {name!r}")
    key = normalize_name(name)
    if not _NAME_RE.match(key):
        raise ValueError(
            f"invalid component name {name!r}: use lower-case letters, digits, "
            "'-', '_' and '.', starting with a letter or digit"
        )
    return key
