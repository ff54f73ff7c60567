"""Entry points of one group, read without importing :mod:`importlib.metadata`.

Plugin discovery needs only the ``[lightly_mm_plugins]`` section of the installed
distributions' ``entry_points.txt``. Importing :mod:`importlib.metadata` alone costs
about 50 ms (it pulls in ``email``, ``zipfile`` and ``csv``), more than the whole
start-up budget of discovery (issue 11: under 50 ms on top of ``import lightly``).
:func:`entry_points` returns what ``importlib.metadata.entry_points(group=group)``
returns, reading the files directly:

* every ``*.dist-info`` / ``*.egg-info`` directory of every ``sys.path`` directory,
  in ``sys.path`` order; a distribution seen earlier (same normalised name) shadows
  later copies, as in :mod:`importlib.metadata`;
* the distribution's name and version from the header of its ``METADATA`` (or
  ``PKG-INFO``), read only for distributions that have entry points in the group.

Anything else falls back to :mod:`importlib.metadata`: a zip file or an ``.egg``
on ``sys.path``, or a ``sys.meta_path`` finder other than the standard path finder
that provides distributions. ``tests/test_entry_points.py`` checks both agree.

Example:
    >>> from lightly_mm_plugins.entry_points import entry_points
    >>> [ep.name for ep in entry_points("console_scripts")]  # doctest: +SKIP
    ['lightly-mm', ...]
"""

from __future__ import annotations

import importlib
import os
import re
import sys
from collections.abc import Iterable
from typing import Any

#: ``module[:attr[.attr]] [extras]``, the grammar ``importlib.metadata.EntryPoint`` loads.
_VALUE = re.compile(r"(?P<module>[\w.]+)\s*(:\s*(?P<attr>[\w.]+)\s*)?((?P<extras>\[.*\])\s*)?$")


class Distribution:
    """The installed distribution an entry point belongs to.

    (Plain classes, not dataclasses: building a dataclass costs ~1 ms at import.)
    """

    __slots__ = ("name", "version")

    def __init__(self, name: str, version: str) -> None:
        self.name, self.version = name, version

    def __repr__(self) -> str:
        return f"Distribution(name={self.name!r}, version={self.version!r})"


class EntryPoint:
    """One entry point: ``name = value`` in ``group`` of ``dist``."""

    __slots__ = ("dist", "group", "name", "value")

    def __init__(self, name: str, value: str, group: str, dist: Distribution | None = None):
        self.name, self.value, self.group, self.dist = name, value, group, dist

    def __repr__(self) -> str:
        return f"EntryPoint(name={self.name!r}, value={self.value!r}, group={self.group!r})"

    def load(self) -> Any:
        """Import the module and return the object the value names."""
        match = _VALUE.match(self.value)
        if match is None:
            raise ValueError(f"malformed entry point value {self.value!r} of {self.name!r}")
        obj: Any = importlib.import_module(match.group("module"))
        for attr in (match.group("attr") or "").split("."):
            if attr:
                obj = getattr(obj, attr)
        return obj


def normalize(name: str) -> str:
    """PEP 503 normalisation with ``_`` (how :mod:`importlib.metadata` keys names)."""
    return re.sub(r"[-_.]+", "-", name).lower().replace("-", "_")


def _needs_fallback(paths: Iterable[str]) -> bool:
    from importlib.machinery import PathFinder

    for finder in sys.meta_path:
        if finder is not PathFinder and hasattr(finder, "find_distributions"):
            return True
    for entry in paths:
        if entry.endswith(".egg") or os.path.isfile(entry or "."):
            return True
    return False


def _section(text: str, group: str) -> list[tuple[str, str]]:
    """``(name, value)`` pairs of the ``[group]`` section of an ``entry_points.txt``."""
    pairs: list[tuple[str, str]] = []
    current = None
    for raw in text.splitlines():
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        if line.startswith("[") and line.endswith("]"):
            current = line.strip("[]")
            continue
        if current == group and "=" in line:
            name, _, value = line.partition("=")
            pairs.append((name.strip(), value.strip()))
    return pairs


def _header(info_dir: str) -> dict[str, str]:
    """``Name`` and ``Version`` from the metadata header of a ``.dist-info``/``.egg-info``."""
    out: dict[str, str] = {}
    for filename in ("METADATA", "PKG-INFO"):
        try:
            with open(os.path.join(info_dir, filename), encoding="utf-8") as fh:
                for line in fh:
                    if not line.strip():
                        break
                    key, sep, value = line.partition(":")
                    if sep and key in ("Name", "Version") and key not in out:
                        out[key] = value.strip()
            return out
        except OSError:
            continue
    return out


def _scan(group: str, paths: Iterable[str]) -> list[EntryPoint]:
    seen: set[str] = set()
    found: list[EntryPoint] = []
    for entry in paths:
        root = entry or "."
        try:
            children = os.listdir(root)
        except OSError:
            continue
        for child in children:
            low = child.lower()
            if not low.endswith((".dist-info", ".egg-info")):
                continue
            key = normalize(low.rpartition(".")[0].partition("-")[0])
            if key in seen:
                continue
            seen.add(key)
            info_dir = os.path.join(root, child)
            try:
                with open(os.path.join(info_dir, "entry_points.txt"), encoding="utf-8") as fh:
                    text = fh.read()
            except OSError:
                continue
            if f"[{group}]" not in text:
                continue
            pairs = _section(text, group)
            if not pairs:
                continue
            header = _header(info_dir)
            dist = Distribution(
                header.get("Name", child.partition("-")[0]), header.get("Version", "?")
            )
            found += [EntryPoint(name, value, group, dist) for name, value in pairs]
    return found


def entry_points(group: str) -> list[Any]:
    """The entry points of ``group`` of every installed distribution.

    Equal to ``list(importlib.metadata.entry_points(group=group))`` (name, value,
    group, ``dist.name``, ``dist.version``, ``load()``), without importing
    :mod:`importlib.metadata` unless the environment needs it (see the module doc).
    """
    paths = list(sys.path)
    if _needs_fallback(paths):
        import importlib.metadata as md

        return list(md.entry_points(group=group))
    return _scan(group, paths)
